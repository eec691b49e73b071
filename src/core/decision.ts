import type { Operation } from "fast-json-patch";

/** What the webhook answers; the HTTP layer turns each into an AdmissionReview response. */
export type Decision =
  | { kind: "allow"; warnings?: string[] }
  | { kind: "patch"; patch: Operation[]; warnings?: string[] }
  | { kind: "deny"; code: number; reason: DenyReason; message: string };

export type DenyReason = "Invalid" | "Forbidden" | "Conflict" | "BadRequest";

export const allow = (warnings?: string[]): Decision => (warnings?.length ? { kind: "allow", warnings } : { kind: "allow" });

export const deny = (reason: DenyReason, message: string): Decision => ({
  kind: "deny",
  code: { Invalid: 422, Forbidden: 403, Conflict: 409, BadRequest: 400 }[reason],
  reason,
  message,
});

export const patched = (patch: Operation[], warnings?: string[]): Decision =>
  patch.length === 0 ? allow(warnings) : { kind: "patch", patch, ...(warnings?.length ? { warnings } : {}) };
