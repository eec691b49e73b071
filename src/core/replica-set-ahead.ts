import { createHash } from "node:crypto";
import { A } from "./annotations.js";
import type { MergePatch } from "./member-patches.js";
import { annotationsOf } from "./objects.js";
import { isHolding } from "./phase.js";

/**
 * The ReplicaSet a held member rolls out to, made by the gate at zero when its window opens,
 * and scaled by the gate as the restore unpauses the member: what the Deployment controller
 * would do next, without queueing behind its client's rate limit (20 requests a second by
 * default). At 20 Deployments that controller was still working off the quiesce's status
 * writes at the restore, and made the new ReplicaSets up to 1.4 s after the unpausing patch.
 *
 * The Deployment controller takes as a Deployment's new ReplicaSet the oldest one it owns
 * whose pod template equals the Deployment's, ignoring the `pod-template-hash` label (its
 * FindNewReplicaSet): it adopts this one as it would its own, gives it the next revision and
 * carries on from it. A paused Deployment at zero (as the quiesce leaves it) keeps it at zero.
 * The name and the hash label are the gate's own hash of the template, not the controller's.
 */

/** The label that keeps a Deployment's ReplicaSets apart (the controller's DefaultDeploymentUniqueLabelKey). */
export const TEMPLATE_HASH_LABEL = "pod-template-hash";

interface OwnerRef { uid?: string; controller?: boolean }
interface Selector { matchLabels?: Record<string, string>; matchExpressions?: unknown[] }
interface Template { metadata?: { labels?: Record<string, string> }; spec?: unknown }

export interface AheadMember {
  metadata?: { name?: string; namespace?: string; uid?: string; annotations?: Record<string, string> };
  spec?: {
    replicas?: number; paused?: boolean; minReadySeconds?: number; selector?: Selector; template?: Template;
    strategy?: { type?: string; rollingUpdate?: { maxSurge?: number | string } };
  };
}

export interface AheadReplicaSet {
  metadata?: { name?: string; resourceVersion?: string; creationTimestamp?: Date | string; annotations?: Record<string, string>; ownerReferences?: OwnerRef[] };
  spec?: { replicas?: number; template?: Template };
  status?: { replicas?: number };
}

/** The Deployment controller's annotations: the revision, and the replicas it last scaled a ReplicaSet for. */
const REVISION = "deployment.kubernetes.io/revision";
const DESIRED = "deployment.kubernetes.io/desired-replicas";
const MAX = "deployment.kubernetes.io/max-replicas";

/**
 * A ReplicaSet the gate made ahead that never ran: still at zero, and never scaled by the
 * Deployment controller or the restore (both write `desired-replicas` when they scale). Its
 * template is one whose migration never committed: never a revision to return to.
 */
export const neverRan = (rs: { metadata?: { annotations?: Record<string, string> }; spec?: { replicas?: number } }): boolean =>
  rs.metadata?.annotations?.[A.madeAheadFor] !== undefined && rs.metadata.annotations[DESIRED] === undefined && (rs.spec?.replicas ?? 0) === 0;

/** JSON as the API means it: absent, null, empty object and empty array alike (the apiserver's semantic equality). */
function canonical(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) {
    const items = value.map(canonical);
    return items.length > 0 ? items : undefined;
  }
  if (value !== null && typeof value === "object") {
    const entries = Object.keys(value).sort()
      .map((key) => [key, canonical((value as Record<string, unknown>)[key])] as const)
      .filter(([, v]) => v !== undefined);
    return entries.length > 0 ? Object.fromEntries(entries) : undefined;
  }
  return value ?? undefined;
}

function withoutHash(template: Template | undefined): unknown {
  const copy = JSON.parse(JSON.stringify(template ?? {})) as Template;
  delete copy.metadata?.labels?.[TEMPLATE_HASH_LABEL];
  return canonical(copy);
}

/** Whether two pod templates are the same but for the hash label. */
export const sameTemplate = (a: Template | undefined, b: Template | undefined): boolean =>
  JSON.stringify(withoutHash(a)) === JSON.stringify(withoutHash(b));

// The characters the apiserver's generated names use (no vowels, no 0, 1, 3).
const ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

/** Ten characters of a hash of the template (without its hash label): a name suffix and a label value. */
export function templateHash(template: Template | undefined): string {
  const digest = createHash("sha256").update(JSON.stringify(withoutHash(template))).digest();
  return Array.from(digest.subarray(0, 10), (byte) => ALPHABET[byte % ALPHABET.length]).join("");
}

export const ownedBy = (member: AheadMember) => (rs: AheadReplicaSet) =>
  rs.metadata?.ownerReferences?.some((o) => o.controller === true && o.uid === member.metadata?.uid) ?? false;

const created = (rs: AheadReplicaSet) => Date.parse(String(rs.metadata?.creationTimestamp ?? "")) || 0;

/** The member's ReplicaSet for its current template, as the Deployment controller picks it: the oldest that matches. */
export function currentReplicaSet<T extends AheadReplicaSet>(member: AheadMember, replicaSets: readonly T[]): T | undefined {
  return replicaSets
    .filter(ownedBy(member))
    .filter((rs) => sameTemplate(rs.spec?.template, member.spec?.template))
    .sort((a, b) => created(a) - created(b))[0];
}

/**
 * The ReplicaSet to make for a held, paused member whose template no ReplicaSet of its own
 * has yet, at zero; undefined when it needs none (or has no template in hand, as a trimmed
 * cached copy has none).
 */
export function replicaSetAhead(member: AheadMember, replicaSets: readonly AheadReplicaSet[], windowId: string): Record<string, unknown> | undefined {
  const { metadata, spec } = member;
  if (!metadata?.name || !metadata.uid || !spec?.template || !spec.selector) return undefined;
  if (spec.paused !== true || !isHolding(annotationsOf(member)[A.phase])) return undefined;
  if (currentReplicaSet(member, replicaSets)) return undefined;
  // A paused Deployment with replicas and no ReplicaSet running them would have the controller
  // scale this one up (its FindActiveOrLatest), before the migration: then make none.
  const running = replicaSets.filter(ownedBy(member)).some((rs) => (rs.spec?.replicas ?? 0) > 0);
  if ((spec.replicas ?? 1) > 0 && !running) return undefined;
  const hash = templateHash(spec.template);
  if (metadata.name.length + 1 + hash.length > 253) return undefined;
  const template = JSON.parse(JSON.stringify(spec.template)) as Template;
  template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, [TEMPLATE_HASH_LABEL]: hash } };
  const selector = JSON.parse(JSON.stringify(spec.selector)) as Selector;
  selector.matchLabels = { ...selector.matchLabels, [TEMPLATE_HASH_LABEL]: hash };
  return {
    apiVersion: "apps/v1",
    kind: "ReplicaSet",
    metadata: {
      name: `${metadata.name}-${hash}`,
      namespace: metadata.namespace,
      labels: template.metadata.labels,
      annotations: { [A.madeAheadFor]: windowId },
      ownerReferences: [{ apiVersion: "apps/v1", kind: "Deployment", name: metadata.name, uid: metadata.uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: { replicas: 0, minReadySeconds: spec.minReadySeconds ?? 0, selector, template },
  };
}

/** The surge the Deployment controller allows above `replicas` (its MaxSurge: 25% rounded up by default, none for Recreate). */
export function maxSurge(member: AheadMember, replicas: number): number {
  if (member.spec?.strategy?.type === "Recreate") return 0;
  const surge = member.spec?.strategy?.rollingUpdate?.maxSurge ?? "25%";
  if (typeof surge === "number") return surge;
  const percent = /^(\d+)%$/.exec(surge);
  return percent ? Math.ceil((Number(percent[1]) * replicas) / 100) : Number(surge) || 0;
}

/**
 * The scale the restore gives the member's current ReplicaSet right after its unpausing
 * patch (`member` as that patch returned it): up to the member's replicas, when the
 * Deployment controller has adopted it (its revision is the member's) and every other
 * ReplicaSet of the member is at zero with no pod left, as the drain left them. The patch
 * carries the ReplicaSet's resourceVersion (a change since the restore's read refuses it)
 * and the annotations the controller writes when it scales. Anything else (still paused, a
 * rollout with old pods left, already scaled, not adopted yet) is the Deployment controller's.
 */
export function scaleUpAhead(member: AheadMember, replicaSets: readonly AheadReplicaSet[]): { name: string; patch: MergePatch } | undefined {
  const want = member.spec?.replicas ?? 1;
  if (member.spec?.paused === true || want === 0) return undefined;
  const current = currentReplicaSet(member, replicaSets);
  if (!current?.metadata?.name || !current.metadata.resourceVersion || (current.spec?.replicas ?? 0) >= want) return undefined;
  const revision = current.metadata.annotations?.[REVISION];
  if (revision === undefined || revision !== member.metadata?.annotations?.[REVISION]) return undefined;
  const others = replicaSets.filter(ownedBy(member)).filter((rs) => rs !== current);
  if (others.some((rs) => (rs.spec?.replicas ?? 0) > 0 || (rs.status?.replicas ?? 0) > 0)) return undefined;
  return {
    name: current.metadata.name,
    patch: {
      metadata: { resourceVersion: current.metadata.resourceVersion, annotations: { [DESIRED]: String(want), [MAX]: String(want + maxSurge(member, want)) } },
      spec: { replicas: want },
    },
  };
}
