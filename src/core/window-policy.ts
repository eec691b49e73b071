import { A } from "./annotations.js";
import { DEFAULT_TIMEOUT_SECONDS, readMemberSpec } from "./member-spec.js";
import { WINDOW_LABEL } from "./migration-job.js";
import { matchesSelector } from "./selector.js";
import { annotationsOf, containerNames, type Workload } from "./objects.js";
import {
  heldMembers,
  isBeforeCommit,
  nextStep,
  retryToken,
  type Step,
  type WindowPlan,
  type WindowResult,
  type WindowState,
} from "./window.js";

/**
 * What a window decides, as functions of its record, its members and the clock. The
 * controller only carries these decisions out; every one is table-tested.
 */

const iso = (ms: number) => new Date(ms).toISOString();

/** A new window's record, for a group whose plan asks for one. `suffix` makes the id unique. */
export function openWindow(plan: Extract<WindowPlan, { kind: "open" }>, members: readonly Workload[], now: number, suffix: string): WindowState {
  const applied = members.map((d) => annotationsOf(d)[A.appliedVersion]).find((v) => v !== undefined);
  const { spec, version, owner } = plan;
  return {
    id: `${spec.database}-${now.toString(36)}-${suffix}`,
    group: spec.database,
    version,
    ...(applied !== undefined ? { fromVersion: applied } : {}),
    owner,
    runner: spec.runner,
    onFailure: spec.onFailure,
    maintenance: spec.maintenance,
    startedAt: iso(now),
    deadline: iso(now + spec.timeoutSeconds * 1000),
    step: "maintenance-on",
    stepStartedAt: iso(now),
    attempt: 1,
    retryToken: retryToken(members),
    timings: {},
  };
}

/**
 * Where a retried window resumes: a failure after the commit picks up at the step that
 * failed; one before it starts over from quiesce (members may have come back meanwhile).
 */
export function resumeStep(failure: WindowState["failure"]): Step {
  return failure && !isBeforeCommit(failure.step) ? failure.step : "quiesce";
}

/** The owner's `timeout` as it is now (the user may have raised it with the fix), else the default. */
function ownerTimeoutSeconds(members: readonly Workload[], owner: string): number {
  const member = members.find((d) => d.metadata?.name === owner);
  const parsed = member ? readMemberSpec(annotationsOf(member), containerNames(member)) : undefined;
  return parsed?.ok ? parsed.spec.timeoutSeconds : DEFAULT_TIMEOUT_SECONDS;
}

/**
 * The record after a user asked for a retry of a failed window. It gets a fresh deadline:
 * a fix that took longer than the first deadline must not make the retry fail at once.
 */
export function retryWindow(state: WindowState, members: readonly Workload[], now: number): WindowState {
  const { failure: _failure, ...rest } = state;
  return {
    ...rest,
    attempt: state.attempt + 1,
    retryToken: retryToken(members),
    step: resumeStep(state.failure),
    stepStartedAt: iso(now),
    deadline: iso(now + ownerTimeoutSeconds(members, state.owner) * 1000),
  };
}

/** The record after a user asked for an abort: undo everything without migrating. */
export function abortWindow(state: WindowState, now: number): WindowState {
  const { failure: _failure, ...rest } = state;
  return { ...rest, step: "rollback", ending: "abort", stepStartedAt: iso(now) };
}

export const expiryMessage = (state: WindowState) => `the window deadline (${state.deadline}) passed during step ${state.step}`;

/** What a failed step leads to: undo it (on-failure: rollback, before the commit) or hold for the user. */
export type FailureReaction = { kind: "rollback"; state: WindowState } | { kind: "hold"; state: WindowState };

/**
 * `committed`: the runner says the migration is in although the record is at migrate (a
 * gate that died after the commit, before the record said so, leaves migrate to be redone,
 * and the redo can fail on its way to finding nothing left): never rolled back onto.
 */
export function reactToFailure(state: WindowState, message: string, now: number, committed = false): FailureReaction {
  // A first install has no earlier revision to return to: it can only be held.
  const canRollBack = state.onFailure === "rollback" && isBeforeCommit(state.step) && state.fromVersion !== undefined && !committed;
  if (canRollBack) {
    const { failure: _failure, ...rest } = state;
    return { kind: "rollback", state: { ...rest, step: "rollback", ending: "rollback", rollbackReason: message, stepStartedAt: iso(now) } };
  }
  return { kind: "hold", state: { ...state, failure: { step: state.step, message, at: iso(now) } } };
}

export const finalResult = (state: Pick<WindowState, "ending">): WindowResult =>
  state.ending === "abort" ? "Aborted" : state.ending === "rollback" ? "RolledBack" : "Done";

/** Which step follows: a rollback joins the normal path at maintenance-off. */
export const stepAfter = (step: Step): Step => nextStep(step === "rollback" ? "readiness" : step);

/** When the record's current step began (a record written before this was kept began now). */
export const stepStarted = (state: WindowState, now: number): number =>
  state.stepStartedAt ? Date.parse(state.stepStartedAt) : now;

/** The record once its current step is done: the step's effect, its time, the next step, the result at the end. */
export function completeStep(state: WindowState, outcome: Partial<WindowState> | undefined, now: number): WindowState {
  const after = stepAfter(state.step);
  const next: WindowState = {
    ...state,
    ...(outcome ?? {}),
    step: after,
    stepStartedAt: iso(now),
    timings: { ...state.timings, [state.step]: now - stepStarted(state, now) },
  };
  if (after === "finished") next.result = finalResult(state);
  return next;
}

/**
 * Whether the pooler stays paused where the window is: from the terminate step through a
 * SQL migration, which the gate runs on its own direct session. A Job's tool may connect
 * through the pooler, so the pooler is resumed before the Job starts; a failed, aborted or
 * rolling-back window resumes it too, so it is never left paused.
 */
export function poolerStaysPaused(state: WindowState): boolean {
  if (state.failure || state.ending || state.result) return false;
  return state.step === "terminate" || (state.step === "migrate" && state.runner.kind === "sql");
}

/** The held members and the versions they ask for: when this changes, the settle delay starts again. */
export const heldKey = (members: readonly Workload[]) =>
  heldMembers(members).map((d) => `${d.metadata?.name}@${annotationsOf(d)[A.schemaVersion]}`).join(",");

export interface Settling {
  held: string;
  since: number;
}

/**
 * The settle delay: a window opens once the set of held members has stayed the same for
 * `settleMs`, so every Deployment of one `helm upgrade` joins the same window.
 */
export function settle(previous: Settling | undefined, members: readonly Workload[], now: number, settleMs: number): { settling: Settling; waitMs: number } {
  const held = heldKey(members);
  const settling = previous && previous.held === held ? previous : { held, since: now };
  return { settling, waitMs: Math.max(0, settling.since + settleMs - now) };
}

/** How each end of a window shows in metrics, Events and messages. */
export const ENDINGS: Record<WindowResult, { metric: string; reason: string; verb: string }> = {
  Done: { metric: "done", reason: "WindowDone", verb: "done" },
  Aborted: { metric: "aborted", reason: "WindowAborted", verb: "aborted" },
  RolledBack: { metric: "rolled_back", reason: "WindowRolledBack", verb: "rolled back" },
};

/** The Secret a window reaches its database with: the owner's, else any member's that names one. */
export function windowSecret(members: readonly Workload[], state: Pick<WindowState, "owner">): string | undefined {
  const owner = members.find((d) => d.metadata?.name === state.owner) ?? members.find((d) => annotationsOf(d)[A.databaseSecret]);
  return owner ? annotationsOf(owner)[A.databaseSecret] : undefined;
}

export interface PodLike {
  metadata?: { name?: string; labels?: Record<string, string>; deletionTimestamp?: unknown };
  status?: { phase?: string; conditions?: Array<{ type?: string; status?: string }> };
}

/**
 * Whether a restored member serves at its replica count: that many Ready pods matching its
 * selector, none of them terminating. After the drain only pods of the restored template
 * exist, so these are the new version's; the Deployment's own status says the same later,
 * when the controller-manager's rate-limited status writes catch up (seconds, for 20
 * Deployments). A member with minReadySeconds waits for its status, which counts them.
 */
export function podsServing(
  member: { spec?: { replicas?: number; minReadySeconds?: number; selector?: Parameters<typeof matchesSelector>[1] } },
  pods: readonly PodLike[],
): boolean {
  if ((member.spec?.minReadySeconds ?? 0) > 0) return false;
  const ready = pods.filter((pod) => !pod.metadata?.deletionTimestamp && pod.status?.phase === "Running" &&
    pod.metadata?.labels?.[WINDOW_LABEL] === undefined && matchesSelector(pod.metadata?.labels, member.spec?.selector) &&
    pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
  return ready.length >= (member.spec?.replicas ?? 1);
}

/**
 * The pods the drain step waits for: those of the group's Deployments and of its CronJobs'
 * running Jobs, terminating ones included. A pod that has ended holds no connection, and a
 * migration pod of the gate's own (it carries the pod template's labels) is not a client.
 */
export function podsBlockingDrain(
  pods: readonly PodLike[],
  members: ReadonlyArray<{ spec?: { selector?: Parameters<typeof matchesSelector>[1] } }>,
  cronJobRuns: ReadonlySet<string>,
): string[] {
  return pods
    .filter((pod) => pod.status?.phase !== "Succeeded" && pod.status?.phase !== "Failed")
    .filter((pod) => pod.metadata?.labels?.[WINDOW_LABEL] === undefined)
    .filter((pod) => members.some((d) => matchesSelector(pod.metadata?.labels, d.spec?.selector)) || cronJobRuns.has(pod.metadata?.labels?.["job-name"] ?? ""))
    .map((pod) => pod.metadata?.name ?? "");
}
