import { A } from "./annotations.js";
import { annotationsOf } from "./objects.js";
import { isHeld, isHolding, Phase } from "./phase.js";
import type { WindowState } from "./window.js";

/**
 * The patch a window writes to each member, decided here and written by the members
 * adapter (one conflict-retrying path). `undefined` means the member needs no write,
 * which is also how a repeated step knows it is already done.
 */
export type MergePatch = Record<string, unknown>;

/** The least of a Deployment these decisions read; client objects and raw JSON both fit. */
export interface Member {
  metadata?: { name?: string; uid?: string; generation?: number; annotations?: Record<string, string> };
  spec?: { replicas?: number; paused?: boolean; progressDeadlineSeconds?: number; minReadySeconds?: number; template?: unknown };
  status?: { observedGeneration?: number; updatedReplicas?: number; availableReplicas?: number; replicas?: number };
}

export interface ReplicaSetLike {
  metadata?: { annotations?: Record<string, string>; labels?: Record<string, string>; ownerReferences?: Array<{ uid?: string }> };
  spec?: { template?: unknown };
}

/**
 * `spec.progressDeadlineSeconds` that the Deployment controller reads as no deadline
 * (math.MaxInt32): a paused hold's, its own recorded in `progress-deadline-seconds`
 * (see `putDeadlineAside` in admission.ts).
 */
export const NO_PROGRESS_DEADLINE = 2147483647;

/**
 * The progress deadline a held member gets back as it leaves its hold: the one its hold put
 * aside, when the member still has none (a manifest applied during the hold that named
 * one keeps it), and the record removed. A recorded deadline that its minReadySeconds has
 * since reached would be refused with the whole patch, so the member then keeps none.
 */
function deadlineBack(member: Member): { annotations: Record<string, null>; spec: { progressDeadlineSeconds?: number } } | undefined {
  const recorded = annotationsOf(member)[A.progressDeadline];
  if (recorded === undefined) return undefined;
  const seconds = Number(recorded);
  const valid = /^\d+$/.test(recorded) && seconds > (member.spec?.minReadySeconds ?? 0) && seconds <= NO_PROGRESS_DEADLINE;
  const back = valid && member.spec?.progressDeadlineSeconds === NO_PROGRESS_DEADLINE;
  return { annotations: { [A.progressDeadline]: null }, spec: back ? { progressDeadlineSeconds: seconds } : {} };
}

/** The replica count a held member returns to (`desired-replicas`, else 1). */
export function desiredReplicas(member: Member): number {
  const recorded = Number(annotationsOf(member)[A.desiredReplicas]);
  return Number.isInteger(recorded) && recorded >= 0 ? recorded : 1;
}

/** As the quiesce leaves a member: Migrating, at zero. */
export const isQuiesced = (member: Member): boolean => annotationsOf(member)[A.phase] === Phase.Migrating && member.spec?.replicas === 0;

/** Scale to zero with the replica count recorded in the same patch, so a kill between the two cannot lose it. */
export function quiescePatch(member: Member, message: string): MergePatch | undefined {
  if (isQuiesced(member)) return undefined;
  const phase = annotationsOf(member)[A.phase];
  return {
    metadata: {
      annotations: {
        [A.phase]: Phase.Migrating,
        [A.message]: message,
        ...(isHolding(phase) ? {} : { [A.desiredReplicas]: String(member.spec?.replicas ?? 1) }),
      },
    },
    spec: { replicas: 0 },
  };
}

/**
 * A held member back at its recorded replicas with `applied-version` written. A member
 * that asks for another version (two upgrades raced, or a stale cache let one through)
 * is not released on this schema: it goes back to Pending for a window of its own.
 */
export function restorePatch(member: Member, version: string, message: string, { deadlineLater = false } = {}): MergePatch | undefined {
  const annotations = annotationsOf(member);
  if (!isHolding(annotations[A.phase])) return undefined;
  const wants = annotations[A.schemaVersion];
  if (wants !== undefined && wants !== version) {
    const waiting = `waiting for a window to schema version ${wants} (this window applied ${version})`;
    if (annotations[A.phase] === Phase.Pending && annotations[A.message] === waiting) return undefined;
    return { metadata: { annotations: { [A.phase]: Phase.Pending, [A.message]: waiting } } };
  }
  const unpause = heldPaused(member, version);
  const deadline = deadlineLater ? undefined : deadlineBack(member);
  const revision = deadlineLater && unpause ? nextRevision(member) : undefined;
  return {
    metadata: { annotations: {
      [A.phase]: Phase.Done, [A.appliedVersion]: version, [A.message]: message, [A.desiredReplicas]: null, ...deadline?.annotations,
      ...(revision ? { [REVISION]: revision } : {}),
    } },
    // Unpausing rolls the held template out, now that its schema is in.
    spec: { replicas: desiredReplicas(member), ...(unpause ? { paused: false } : {}), ...deadline?.spec },
  };
}

/** The annotation the Deployment controller keeps at the revision of a Deployment's newest ReplicaSet. */
const REVISION = "deployment.kubernetes.io/revision";

/**
 * The revision the Deployment controller gives the ReplicaSet it makes for a held template
 * once the member is unpaused: one past the member's own (its newest ReplicaSet's: held
 * paused, none was made for the new template). Its first sync of the member then has no
 * revision to write, and with no progress deadline yet (see `deadlineBack`) no condition
 * either, so it makes the ReplicaSet with one status write instead of two, the second of
 * which it sent over the first's stale copy and had refused (409) and redone: at 20
 * members, 40 fewer requests in its rate-limited queue (20 a second) before the last new
 * ReplicaSet. Should the controller count otherwise, it writes its own, as it always did.
 */
function nextRevision(member: Member): string | undefined {
  const current = annotationsOf(member)[REVISION] ?? "0";
  return /^\d+$/.test(current) ? String(Number(current) + 1) : undefined;
}

/**
 * A restored member's progress deadline given back once the window's rollouts are done
 * (the restore keeps it aside, see `nextRevision`); nothing for a member the gate holds,
 * whose unpausing patch gives it back.
 */
export function deadlineBackPatch(member: Member): MergePatch | undefined {
  if (isHeld(annotationsOf(member))) return undefined;
  const deadline = deadlineBack(member);
  if (!deadline) return undefined;
  return { metadata: { annotations: deadline.annotations }, ...(Object.keys(deadline.spec).length > 0 ? { spec: deadline.spec } : {}) };
}

/** Paused by the hold: the member carries the version the gate held it for. */
const heldPaused = (member: Member, version: string | undefined) =>
  member.spec?.paused === true && version !== undefined && annotationsOf(member)[A.schemaVersion] === version;

/**
 * A hold somebody bypassed (unpaused while held, or held by a gate from before holds
 * paused): paused again, so the new template cannot roll out before its migration.
 */
export function reholdPatch(member: Member): MergePatch | undefined {
  const annotations = annotationsOf(member);
  if (!isHeld(annotations) || member.spec?.paused === true || annotations[A.schemaVersion] === undefined) return undefined;
  if (annotations[A.schemaVersion] === annotations[A.appliedVersion]) return undefined;
  return { spec: { paused: true } };
}

/** Phase and message on a held member (Failed, or Migrating again on retry). */
export function markPatch(member: Member, phase: Phase, message: string): MergePatch | undefined {
  const annotations = annotationsOf(member);
  if (!isHolding(annotations[A.phase])) return undefined;
  if (annotations[A.phase] === phase && annotations[A.message] === message) return undefined;
  return { metadata: { annotations: { [A.phase]: phase, [A.message]: message } } };
}

/** `abort` removed once an aborted window ended, so the next window is not aborted too. */
export const clearAbortPatch = (member: Member): MergePatch | undefined =>
  annotationsOf(member)[A.abort] === undefined ? undefined : { metadata: { annotations: { [A.abort]: null } } };

/** Whether rolling this member back means returning it to an earlier pod template. */
export function changedByWindow(member: Member, state: Pick<WindowState, "version">): boolean {
  const annotations = annotationsOf(member);
  return annotations[A.schemaVersion] === state.version && annotations[A.appliedVersion] !== state.version;
}

/**
 * A held member returned to where it was before the window: its previous template (when
 * the window changed it), its recorded replicas and the previous schema version. A first
 * install has no earlier revision: it stays at zero, released to its owner.
 */
export function rollbackPatch(member: Member, state: WindowState, previous: unknown | undefined, verb: string): MergePatch | undefined {
  const annotations = annotationsOf(member);
  if (!isHeld(annotations)) return undefined;
  const changed = changedByWindow(member, state);
  const deadline = deadlineBack(member);
  const leaveHold = { ...(member.spec?.paused === true ? { paused: false } : {}), ...deadline?.spec };
  if (changed && previous === undefined) {
    return {
      metadata: { annotations: {
        [A.phase]: Phase.Aborted, [A.desiredReplicas]: null, ...deadline?.annotations,
        [A.message]: `window ${state.id} ${verb}; no earlier revision to return to, so it stays at zero: scale it up or re-apply once the migration is fixed`,
      } },
      ...(Object.keys(leaveHold).length > 0 ? { spec: leaveHold } : {}),
    };
  }
  return {
    metadata: {
      annotations: {
        [A.phase]: state.ending === "abort" ? Phase.Aborted : Phase.RolledBack,
        [A.desiredReplicas]: null,
        ...deadline?.annotations,
        [A.message]: `window ${state.id} ${verb}; back on the previous revision at schema version ${state.fromVersion ?? "(none)"}`,
        ...(changed && state.fromVersion !== undefined ? { [A.schemaVersion]: state.fromVersion } : {}),
      },
    },
    spec: { replicas: desiredReplicas(member), ...leaveHold, ...(changed && previous !== undefined ? { template: previous } : {}) },
  };
}

const revisionOf = (object: { metadata?: { annotations?: Record<string, string> } }) =>
  Number(object.metadata?.annotations?.[REVISION] ?? "0");

function podSpecOf(template: unknown): string {
  return JSON.stringify((template as { spec?: unknown } | undefined)?.spec ?? {});
}

/**
 * The pod template the member ran before its current one, from its ReplicaSets (what
 * `kubectl rollout undo` uses): the newest whose template differs. Undefined for a first
 * revision.
 */
export function previousTemplate(member: Member, replicaSets: readonly ReplicaSetLike[]): unknown | undefined {
  const revision = revisionOf(member);
  const current = podSpecOf(member.spec?.template);
  const previous = replicaSets
    .filter((rs) => rs.metadata?.ownerReferences?.some((o) => o.uid === member.metadata?.uid))
    // Paused by the hold, the Deployment's revision is still the old ReplicaSet's: it counts too
    // (unpaused, the current revision's ReplicaSet has the current template and is passed over).
    .filter((rs) => revisionOf(rs) <= revision || revision === 0)
    .sort((a, b) => revisionOf(b) - revisionOf(a))
    .find((rs) => podSpecOf(rs.spec?.template) !== current);
  if (!previous) return undefined;
  const template = structuredClone(previous.spec!.template) as { metadata?: { labels?: Record<string, string> } };
  delete template.metadata?.labels?.["pod-template-hash"];
  return template;
}

/** Whether a rollout is complete: the controller saw the spec and every replica is updated and available. */
export function rolloutReady(member: Member): boolean {
  const want = member.spec?.replicas ?? 1;
  const status = member.status ?? {};
  return (
    (status.observedGeneration ?? 0) >= (member.metadata?.generation ?? 0) &&
    (status.updatedReplicas ?? 0) >= want &&
    (status.availableReplicas ?? 0) >= want &&
    (status.replicas ?? 0) <= want
  );
}

/** CronJobs of a group: suspended while quiesced, resumed when the window ends. */
export const cronJobSuspendPatch: MergePatch = { metadata: { annotations: { [A.phase]: Phase.Migrating } }, spec: { suspend: true } };
export const cronJobResumePatch: MergePatch = { metadata: { annotations: { [A.phase]: null } }, spec: { suspend: false } };
