import fastJsonPatch, { type Operation } from "fast-json-patch";
import { A, HOLD_ANNOTATIONS } from "./annotations.js";
import { allow, deny, patched, type Decision } from "./decision.js";
import { readMemberSpec } from "./member-spec.js";
import { NO_PROGRESS_DEADLINE } from "./member-patches.js";
import {
  annotationsOf,
  containerNames,
  type AdmissionRequest,
  type Deployment,
  type Scale,
} from "./objects.js";
import { applyIngressChange, decideIngress, isSwitched, type Ingress } from "./ingress-switch.js";
import { isHeld, isHolding, Phase } from "./phase.js";
import { injectSidecar, sidecarPort } from "./sidecar-injection.js";
import { compareVersions } from "./version.js";

const { compare, escapePathComponent } = fastJsonPatch;

/** What the gate knows of a database group, from its caches (never an API call). */
export interface GroupState {
  /** The version the group's migrations have reached. */
  appliedVersion?: string;
  /** The open window's target, while one runs. */
  window?: { version: string };
}

export interface AdmissionContext {
  /** `system:serviceaccount:<namespace>:<name>` of the gate itself. */
  gateUsername: string;
  excludedNamespaces: ReadonlySet<string>;
  /** `except`: a Deployment to leave out of the window computation (the one being admitted). */
  group(namespace: string, database: string, except?: string): GroupState;
  deployment(namespace: string, name: string): Deployment | undefined;
  /** The image the maintenance sidecar runs (the gate's own); unset, nothing is injected. */
  sidecarImage?: string;
  /** Whether the namespace's maintenance flag is on; unset (no flag cache), Ingresses pass untouched. */
  maintenanceOn?: (namespace: string) => boolean;
  /**
   * The application namespaces the gate's RBAC lets it act in (`--namespaces`, the chart's
   * `rbac.namespaces`); unset: any (a cluster-wide binding). Elsewhere it could hold a
   * Deployment and never release it, so opting in there is refused.
   */
  actsIn?: ReadonlySet<string>;
}

function passesUntouched(request: AdmissionRequest, context: AdmissionContext): boolean {
  return (
    request.userInfo.username === context.gateUsername ||
    context.excludedNamespaces.has(request.namespace ?? "") ||
    (request.operation !== "CREATE" && request.operation !== "UPDATE")
  );
}

const isDeployment = (request: AdmissionRequest) =>
  request.kind.group === "apps" && request.kind.kind === "Deployment" && !request.subResource;

const isScale = (request: AdmissionRequest) =>
  request.resource.group === "apps" && request.resource.resource === "deployments" && request.subResource === "scale";

/**
 * The mutating webhook: holds an opted-in Deployment whose target schema version is not
 * the applied one, and keeps the gate-owned annotations as stored. A hold costs no
 * downtime: `spec.paused` keeps the new template from rolling out while the old pods keep
 * serving at their current count (a first install starts none); the asked-for count is
 * recorded, and the window scales to zero only at its quiesce step. Pure: the same input always gives the same patch, and applying
 * the patch then asking again gives no patch (safe under reinvocation).
 */
export function mutate(request: AdmissionRequest, context: AdmissionContext): Decision {
  if (passesUntouched(request, context) || !isDeployment(request)) return allow();
  const incoming = request.object as Deployment | undefined;
  if (!incoming) return allow();
  return patched([...holdOperations(request, context, incoming), ...sidecarOperations(incoming, context)]);
}

/**
 * Injects the maintenance sidecar into the pod template of a Deployment that asks for it.
 * The template (not each Pod) carries it, so `kubectl get deploy -o yaml` shows what runs.
 */
function sidecarOperations(incoming: Deployment, context: AdmissionContext): Operation[] {
  const { port } = sidecarPort(annotationsOf(incoming));
  if (port === undefined || !context.sidecarImage) return [];
  const template = incoming.spec?.template ?? {};
  const result = injectSidecar(template, context.sidecarImage, port);
  return compare({ spec: { template } }, { spec: { template: result } });
}

function holdOperations(request: AdmissionRequest, context: AdmissionContext, incoming: Deployment): Operation[] {
  const stored = incoming.metadata?.annotations;
  if (!stored?.[A.database]) return [];
  const old = request.operation === "UPDATE" ? (request.oldObject as Deployment | undefined) : undefined;

  // Only a few annotations, replicas, paused and the progress deadline ever change: the hold
  // writes its changes down as edits over the incoming object and turns those into the patch
  // (HoldEdits.patch).
  const edits = new HoldEdits(stored, incoming.spec);
  const oldAnnotations = annotationsOf(old);
  const carry = (key: string) => edits.set(key, oldAnnotations[key]);
  // Users may not declare a version applied: that would skip its migration.
  carry(A.appliedVersion);

  if (isHolding(oldAnnotations[A.phase])) {
    for (const key of HOLD_ANNOTATIONS) carry(key);
    // A re-applied manifest (helm upgrade again, kubectl apply) asks for the count the gate
    // already recorded: keep the hold rather than treat it as a scale-up.
    const desired = Number(oldAnnotations[A.desiredReplicas]);
    const current = old?.spec?.replicas ?? 0;
    if (edits.replicas === desired && desired !== current) edits.replicas = current;
    // A manifest that does not mention `paused` (most) keeps it; one that unpauses does not.
    if (old?.spec?.paused === true) edits.paused = true;
    return edits.patch();
  }

  const parsed = readMemberSpec(stored, containerNames(incoming));
  const group = parsed.ok ? context.group(request.namespace ?? "", parsed.spec.database, request.name) : {};
  const version = parsed.ok ? parsed.spec.version : undefined;
  const applied = edits.get(A.appliedVersion) ?? group.appliedVersion;
  // Malformed annotations are the validating webhook's to report: hold nothing for them.
  const holdNeeded = version !== undefined && version !== applied;

  if (!holdNeeded) {
    for (const key of HOLD_ANNOTATIONS) carry(key);
    if (version !== undefined && edits.get(A.appliedVersion) === undefined && applied !== undefined) {
      edits.set(A.appliedVersion, applied);
    }
  } else if (!alreadyHeld(edits)) {
    // The check above makes this idempotent: on reinvocation the object is already held,
    // and its recorded count must not become the 0 this step wrote.
    // The apiserver defaults replicas to 1 before admission; be as forgiving for raw input.
    edits.set(A.desiredReplicas, String(edits.replicas ?? 1));
    edits.set(A.phase, Phase.Pending);
    edits.set(A.message,
      `held: waiting for the migration window of database group "${parsed.ok ? parsed.spec.database : ""}" ` +
      `to schema version "${version}"${old ? " (the running pods keep serving until the window stops them)" : ""}`);
    edits.paused = true;
    // Old pods keep serving at the count they run at; a first install has none to start.
    edits.replicas = old?.spec?.replicas ?? 0;
    putDeadlineAside(edits);
  }
  return edits.patch();
}

/**
 * A hold's Deployment has no progress deadline while it is paused (`NO_PROGRESS_DEADLINE`,
 * which the Deployment controller reads as none), and its own is recorded for the restore's
 * unpause. With a deadline, the controller marks every pause and every resume with a
 * Progressing condition (DeploymentPaused, DeploymentResumed): a status write of its own,
 * after which its next write in the same sync is refused as stale and done again. At the
 * restore those came, for each member, before its new ReplicaSet in the controller's
 * rate-limited queue (20 requests a second), inside the downtime. A paused Deployment is
 * never timed out, so the deadline did nothing during the hold. Only the hold's start puts
 * it aside: a manifest applied again during the hold that names a deadline keeps it, and the
 * restore then leaves that one (see `deadlineBack`).
 */
function putDeadlineAside(edits: HoldEdits): void {
  edits.set(A.progressDeadline, undefined);
  const own = edits.progressDeadline;
  if (own === undefined || own === NO_PROGRESS_DEADLINE) return;
  edits.set(A.progressDeadline, String(own));
  edits.progressDeadline = NO_PROGRESS_DEADLINE;
}

/** The fields of a Deployment's spec that a hold changes. */
interface HeldSpec {
  replicas?: number;
  paused?: boolean;
  progressDeadlineSeconds?: number;
}

/**
 * The hold's changes to a Deployment's annotations, replicas, paused and progress deadline,
 * over the values it came with. Kept as edits, not as a changed copy: on the admission path
 * of every opted-in Deployment, adding keys to a copied annotations map cost V8 more than
 * the rest of the decision.
 */
class HoldEdits {
  private readonly annotations = new Map<string, string | undefined>();
  private readonly storedSpec: HeldSpec;
  replicas: number | undefined;
  paused: boolean | undefined;
  progressDeadline: number | undefined;

  constructor(private readonly stored: Record<string, string>, spec: Deployment["spec"]) {
    const { replicas, paused, progressDeadlineSeconds } = (spec ?? {}) as HeldSpec;
    this.storedSpec = { replicas, paused, progressDeadlineSeconds };
    this.replicas = replicas;
    this.paused = paused;
    this.progressDeadline = progressDeadlineSeconds;
  }

  get(key: string): string | undefined {
    return this.annotations.has(key) ? this.annotations.get(key) : this.stored[key];
  }

  /** Sets an annotation; undefined removes it. */
  set(key: string, value: string | undefined): void {
    this.annotations.set(key, value);
  }

  /** The JSON Patch operations that make the stored object say what the edits say (none for no change). */
  patch(): Operation[] {
    const operations: Operation[] = [];
    const change = (path: string, before: unknown, after: unknown) => {
      if (before === after) return;
      if (after === undefined) operations.push({ op: "remove", path });
      else operations.push({ op: before === undefined ? "add" : "replace", path, value: after } as Operation);
    };
    change("/spec/replicas", this.storedSpec.replicas, this.replicas);
    change("/spec/paused", this.storedSpec.paused, this.paused);
    change("/spec/progressDeadlineSeconds", this.storedSpec.progressDeadlineSeconds, this.progressDeadline);
    for (const [key, value] of this.annotations) change(`/metadata/annotations/${escapePathComponent(key)}`, this.stored[key], value);
    return operations;
  }
}

function alreadyHeld(edits: HoldEdits): boolean {
  return edits.get(A.phase) === Phase.Pending && edits.paused === true && /^\d+$/.test(edits.get(A.desiredReplicas) ?? "");
}

function validateScale(request: AdmissionRequest, context: AdmissionContext): Decision {
  const target = context.deployment(request.namespace ?? "", request.name ?? "");
  // Only Deployments the scale guard lists reach this webhook (held ones, or every one of a
  // namespace that holds one when the list grew long): one missing from the cache is one
  // the gate cannot vouch for yet, so it fails closed.
  if (!target) {
    return deny(
      "Conflict",
      `deployment ${request.namespace}/${request.name} is not yet in schema-gate's cache, and scaling is guarded here ` +
        `while a migration window holds Deployments; try again in a few seconds`,
    );
  }
  const annotations = annotationsOf(target);
  if (!isHeld(annotations)) return allow();
  const next = (request.object as Scale | undefined)?.spec?.replicas;
  const current = (request.oldObject as Scale | undefined)?.spec?.replicas ?? target?.spec?.replicas;
  if (next === current) return allow();
  return deny("Forbidden", heldMessage(request, annotations));
}

function heldMessage(request: AdmissionRequest, annotations: Record<string, string>): string {
  return (
    `deployment ${request.namespace}/${request.name} is held by schema-gate for the migration window of database ` +
    `group "${annotations[A.database]}" (phase ${annotations[A.phase]}); its replicas are set back to ` +
    `${annotations[A.desiredReplicas] ?? "the recorded count"} when the window completes. ` +
    `Wait with \`schema-gate wait ${request.name} -n ${request.namespace}\`, or end the window with ` +
    `\`schema-gate abort ${annotations[A.database]} -n ${request.namespace}\``
  );
}

/**
 * The validating webhook: clear errors for bad annotations, no scaling of a held
 * Deployment by anyone but the gate, one target version per open window, no silent
 * downgrades.
 */
export function validate(request: AdmissionRequest, context: AdmissionContext): Decision {
  if (passesUntouched(request, context)) return allow();
  if (isScale(request)) return validateScale(request, context);
  if (!isDeployment(request)) return allow();

  const incoming = request.object as Deployment | undefined;
  const old = request.operation === "UPDATE" ? (request.oldObject as Deployment | undefined) : undefined;
  const annotations = annotationsOf(incoming);
  const oldAnnotations = annotationsOf(old);
  const held = isHeld(oldAnnotations);

  if (!annotations[A.database]) {
    const { problem } = sidecarPort(annotations);
    if (problem) return deny("Invalid", `deployment ${request.namespace}/${request.name} has an invalid schema-gate annotation: ${problem}`);
    if (!held) return allow();
    return deny(
      "Forbidden",
      `${A.database} cannot be removed from deployment ${request.namespace}/${request.name} while it is held ` +
        `(phase ${oldAnnotations[A.phase]}): it would stay at 0 replicas. Let the window finish, or end it with ` +
        `\`schema-gate abort ${oldAnnotations[A.database]} -n ${request.namespace}\`, then remove the annotation`,
    );
  }

  const namespace = request.namespace ?? "";
  if (context.actsIn && !context.actsIn.has(namespace) && !held) {
    const covered = [...context.actsIn].sort().join(", ") || "none";
    return deny(
      "Forbidden",
      `deployment ${namespace}/${request.name} opts in to schema-gate (${A.database}), but schema-gate may not act in ` +
        `namespace "${namespace}" (its RBAC covers: ${covered}), so it could hold the Deployment and never release it. ` +
        `Add "${namespace}" to the chart's rbac.namespaces and upgrade the gate (or apply manifests/namespace-access.yaml ` +
        `in it and add it to the gate's --namespaces), or remove the annotation`,
    );
  }

  const parsed = readMemberSpec(annotations, containerNames(incoming));
  if (!parsed.ok) {
    return deny(
      "Invalid",
      `deployment ${request.namespace}/${request.name} has invalid schema-gate annotations: ${parsed.problems.join("; ")}`,
    );
  }
  const { spec } = parsed;

  if (held && (incoming?.spec?.replicas !== old?.spec?.replicas || Boolean(incoming?.spec?.paused) !== Boolean(old?.spec?.paused))) {
    return deny("Forbidden", heldMessage(request, oldAnnotations));
  }

  if (spec.version !== undefined) {
    const group = context.group(request.namespace ?? "", spec.database, request.name);
    const applied = oldAnnotations[A.appliedVersion] ?? group.appliedVersion;
    if (applied !== undefined && !spec.allowDowngrade && (compareVersions(spec.version, applied) ?? 0) < 0) {
      return deny(
        "Forbidden",
        `${A.schemaVersion}: "${spec.version}" is older than the applied schema version "${applied}" of database group ` +
          `"${spec.database}"; a downgrade needs ${A.allowDowngrade}: "true" on this Deployment (and a migration that goes down)`,
      );
    }
    const open = group.window;
    if (open && spec.version !== open.version && spec.version !== applied) {
      return deny(
        "Conflict",
        `database group "${spec.database}" has a migration window to schema version "${open.version}" open; ` +
          `deployment ${request.namespace}/${request.name} asks for "${spec.version}". Wait for the window ` +
          `(\`schema-gate wait ${request.name} -n ${request.namespace}\`) and upgrade again, or end it with ` +
          `\`schema-gate abort ${spec.database} -n ${request.namespace}\``,
      );
    }
  }
  return allow();
}

const isIngress = (request: AdmissionRequest) =>
  request.kind.group === "networking.k8s.io" && request.kind.kind === "Ingress" && !request.subResource;

/**
 * The Ingress webhook: while a namespace's maintenance is on, an Ingress the gate switched
 * stays switched through a change someone makes (`helm upgrade`, `kubectl apply`): the
 * change goes into the kept spec (restored when maintenance ends) and the stored spec keeps
 * every backend on the maintenance Service, so no stored version routes to the application.
 * Only Ingresses already switched are touched: the first switch waits for the backend to be
 * ready, which only the controller knows. Same decision as the controller's
 * (`decideIngress`), so either may act first and the other finds nothing to do.
 */
export function mutateIngress(request: AdmissionRequest, context: AdmissionContext): Decision {
  if (passesUntouched(request, context) || request.operation !== "UPDATE" || !isIngress(request)) return allow();
  const ingress = request.object as Ingress | undefined;
  if (!ingress || !isSwitched(ingress) || !context.maintenanceOn?.(request.namespace ?? "")) return allow();
  const change = decideIngress(ingress, true);
  if (!change) return allow();
  const patch = compare(ingress, applyIngressChange(ingress, change));
  if (change.originalSpec === undefined) {
    return patched(patch, [`schema-gate: ${A.maintenance} is no longer "true", so this Ingress leaves maintenance with its own spec`]);
  }
  return patched(patch, [
    `schema-gate: maintenance is on in namespace ${request.namespace}; this Ingress keeps pointing at the maintenance page, ` +
      "and the spec you applied is what it gets back when maintenance ends",
  ]);
}
