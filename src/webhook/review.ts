import type { Decision } from "../core/decision.js";
import type { AdmissionRequest } from "../core/objects.js";

/** admission.k8s.io/v1 AdmissionReview as sent back to the apiserver. */
export interface AdmissionReviewResponse {
  apiVersion: "admission.k8s.io/v1";
  kind: "AdmissionReview";
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; reason?: string; message: string };
    patchType?: "JSONPatch";
    patch?: string;
    warnings?: string[];
  };
}

function review(response: AdmissionReviewResponse["response"]): AdmissionReviewResponse {
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response };
}

/** The answer for a decision of the core. */
export function respond(uid: string, decision: Decision): AdmissionReviewResponse {
  switch (decision.kind) {
    case "allow":
      return review({ uid, allowed: true, ...(decision.warnings ? { warnings: decision.warnings } : {}) });
    case "patch":
      return review({
        uid,
        allowed: true,
        patchType: "JSONPatch",
        patch: Buffer.from(JSON.stringify(decision.patch)).toString("base64"),
        ...(decision.warnings ? { warnings: decision.warnings } : {}),
      });
    case "deny":
      return review({
        uid,
        allowed: false,
        status: { code: decision.code, reason: decision.reason, message: decision.message },
      });
  }
}

/**
 * A request the gate could not judge (unreadable body, a bug). Still a valid
 * AdmissionReview: a bare HTTP error would make the apiserver apply the failure policy
 * with a message that tells the user nothing.
 */
export function errored(uid: string, code: number, message: string): AdmissionReviewResponse {
  return review({ uid, allowed: false, status: { code, reason: code >= 500 ? "InternalError" : "BadRequest", message } });
}

export type ParsedReview = { ok: true; request: AdmissionRequest } | { ok: false; uid: string; message: string };

// When the body cannot be parsed, the uid may still be readable, and answering with it lets
// the apiserver match the response to its request.
export function sniffUid(body: string): string {
  return /"uid"\s*:\s*"([0-9a-fA-F-]{1,64})"/.exec(body.slice(0, 4096))?.[1] ?? "";
}

/** Decodes an AdmissionReview body once; any shape problem becomes a message naming it. */
export function parseReview(body: string): ParsedReview {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    return { ok: false, uid: sniffUid(body), message: `request body is not JSON: ${(error as Error).message}` };
  }
  const value = parsed as { apiVersion?: unknown; kind?: unknown; request?: Record<string, unknown> } | null;
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, uid: "", message: "request body is not an AdmissionReview object" };
  }
  const uid = typeof value.request?.uid === "string" ? value.request.uid : "";
  if (value.kind !== "AdmissionReview" || value.apiVersion !== "admission.k8s.io/v1") {
    return {
      ok: false,
      uid,
      message: `expected kind AdmissionReview, apiVersion admission.k8s.io/v1; got kind ${JSON.stringify(value.kind)}, ` +
        `apiVersion ${JSON.stringify(value.apiVersion)} (set admissionReviewVersions: ["v1"] in the webhook configuration)`,
    };
  }
  const request = value.request;
  if (!request || typeof request !== "object") return { ok: false, uid, message: "AdmissionReview has no request" };
  if (!uid) return { ok: false, uid, message: "AdmissionReview request has no uid" };
  const kind = request.kind as { kind?: unknown } | undefined;
  const resource = request.resource as { resource?: unknown } | undefined;
  if (typeof kind?.kind !== "string" || typeof resource?.resource !== "string") {
    return { ok: false, uid, message: "AdmissionReview request lacks kind or resource" };
  }
  if (typeof request.operation !== "string") return { ok: false, uid, message: "AdmissionReview request lacks operation" };
  const needsObject = request.operation === "CREATE" || request.operation === "UPDATE";
  if (needsObject && (!request.object || typeof request.object !== "object")) {
    return { ok: false, uid, message: `AdmissionReview ${request.operation} request has no object` };
  }
  if (request.operation === "UPDATE" && (!request.oldObject || typeof request.oldObject !== "object")) {
    return { ok: false, uid, message: "AdmissionReview UPDATE request has no oldObject" };
  }
  return { ok: true, request: { ...(request as unknown as AdmissionRequest), userInfo: (request.userInfo as AdmissionRequest["userInfo"]) ?? {} } };
}
