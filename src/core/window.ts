import { A } from "./annotations.js";
import { readMemberSpec, type MemberSpec, type Runner } from "./member-spec.js";
import { annotationsOf, containerNames, type Workload } from "./objects.js";
import { isHolding } from "./phase.js";

/**
 * The steps of a migration window, in the order the README's "What happens in a window" gives. A window's durable progress is
 * the step it is in: every step is idempotent, so a gate killed mid-step runs it again.
 */
export const STEPS = [
  "maintenance-on",
  "quiesce",
  "drain",
  "terminate",
  "migrate",
  "verify",
  "restore",
  "readiness",
  "maintenance-off",
] as const;
export type Step = (typeof STEPS)[number] | "rollback" | "finished";

/** Steps before the migration commits: a deadline or an abort may still end the window without it. */
const BEFORE_COMMIT: ReadonlySet<Step> = new Set(["maintenance-on", "quiesce", "drain", "terminate", "migrate"]);

export type WindowResult = "Done" | "RolledBack" | "Aborted";

export interface SessionRecord {
  pid: number;
  user: string;
  applicationName: string;
  state: string;
}

/** What the terminate step ended, and the pooler's pause when the Secret names its console. */
export interface Terminated {
  sessions: SessionRecord[];
  /** How long the PAUSE waited, and whether the pooler's server connections were released without terminating them. */
  paused?: { database: string; waitedMs: number; drained: boolean };
}

/** The window record, kept in the group's MigrationWindow (`status.window`). */
export interface WindowState {
  /** Unique per window; names its Jobs and marks the maintenance flag it owns. */
  id: string;
  group: string;
  version: string;
  /** The group's applied version when the window opened (what a rollback returns to). */
  fromVersion?: string;
  /** The Deployment whose annotations chose the runner and policies. */
  owner: string;
  runner: Runner;
  onFailure: "hold" | "rollback";
  maintenance: boolean;
  startedAt: string;
  deadline: string;
  step: Step;
  /** When the current step began: a step that waits (drain, a Job, readiness) is timed and bounded from it. */
  stepStartedAt?: string;
  /** Raised by every retry; part of the Job name so a retried Job is a new one. */
  attempt: number;
  /** The members' `retry` annotations when the window last (re)started. */
  retryToken: string;
  /** Set while the window is failed and held (onFailure: hold). */
  failure?: { step: Step; message: string; at: string };
  result?: WindowResult;
  /** Why the window is being undone, once it is. */
  ending?: "rollback" | "abort";
  rollbackReason?: string;
  maintenanceOwned?: boolean;
  sessions?: SessionRecord[];
  /**
   * Set before the gate PAUSEs the pooler (terminate) and cleared once it RESUMEd it: while
   * set and the window is past the pause (poolerStaysPaused), a pass does nothing but resume.
   */
  poolerPaused?: boolean;
  /** When the first member was scaled to zero, and when the migration committed. */
  quiescedAt?: string;
  /**
   * The group's CronJobs as the quiesce found them (suspended then, or by their user before).
   * An empty list spares the drain and the restore a read of the CronJobs from the API,
   * which is a slow one inside the downtime (their apiserver cache rarely changes).
   */
  cronJobs?: string[];
  /**
   * The resourceVersion of the pod list the quiesce stopped the pods from: once the pod cache
   * shows that version or a later one and no pod of the group, the drain is over without a
   * read of the API (a consistent LIST waits, inside the downtime, for the apiserver's cache).
   */
  podsListedAt?: string;
  committedAt?: string;
  /**
   * Set when the SQL runner read the version back from its ledger in the migration's own
   * session, right after the commit: the verify step then opens no session of its own.
   */
  verified?: boolean;
  /** Milliseconds each step took (the last run of it). */
  timings: Partial<Record<Step, number>>;
}


/**
 * A step's 1-based position among STEPS, as progress shows it: a rollback stands where
 * restoring would (just before maintenance-off), `finished` after the last step.
 */
export function stepNumber(step: Step): number {
  if (step === "rollback") return STEPS.length - 1;
  if (step === "finished") return STEPS.length;
  return STEPS.indexOf(step) + 1;
}

/** e.g. "migrate (5/9)" */
export const describeStep = (step: Step): string => `${step} (${stepNumber(step)}/${STEPS.length})`;

export function nextStep(step: Step): Step {
  const index = STEPS.indexOf(step as (typeof STEPS)[number]);
  return index < 0 || index === STEPS.length - 1 ? "finished" : STEPS[index + 1]!;
}

/** The controller's record read back from the API: checked, so a hand-edited one gives a clear error. */
export function parseWindowState(value: unknown): { ok: true; state?: WindowState } | { ok: false; problem: string } {
  if (value === undefined || value === null) return { ok: true };
  const state = value as WindowState;
  if (typeof state !== "object" || typeof state.id !== "string" || typeof state.version !== "string" || typeof state.step !== "string") {
    return { ok: false, problem: "status.window is not a window record (id, version or step missing); delete the MigrationWindow to start over" };
  }
  return { ok: true, state };
}

const byName = (a: Workload, b: Workload) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? "");

/** Opted-in Deployments of one database group, by name. */
export function groupMembers<T extends Workload>(deployments: readonly T[], group: string): T[] {
  return deployments.filter((d) => annotationsOf(d)[A.database] === group).sort(byName);
}

/** Members whose update is held, waiting for (or in) a window, by name. */
export function heldMembers<T extends Workload>(members: readonly T[]): T[] {
  return members
    .filter((d) => isHolding(annotationsOf(d)[A.phase]) && annotationsOf(d)[A.schemaVersion] !== undefined)
    .sort(byName);
}

export type WindowPlan =
  | { kind: "none" }
  | { kind: "invalid"; member: string; problem: string }
  | { kind: "open"; version: string; owner: string; spec: MemberSpec & { runner: Runner; secret: string } };

/**
 * What a group with held members asks for: the target version and the member that
 * decides runner and policies (the first held member, by name, that carries a runner).
 */
export function planWindow(members: readonly Workload[]): WindowPlan {
  for (const member of heldMembers(members)) {
    const name = member.metadata?.name ?? "";
    const parsed = readMemberSpec(annotationsOf(member), containerNames(member));
    if (!parsed.ok) return { kind: "invalid", member: name, problem: parsed.problems.join("; ") };
    const { spec } = parsed;
    if (spec.runner && spec.version !== undefined && spec.secret !== undefined) {
      return { kind: "open", version: spec.version, owner: name, spec: { ...spec, runner: spec.runner, secret: spec.secret } };
    }
  }
  return { kind: "none" };
}

/** The members' retry annotations, as one comparable token. */
export function retryToken(members: readonly Workload[]): string {
  return members
    .map((d) => annotationsOf(d)[A.retry])
    .filter((value): value is string => value !== undefined)
    .join(",");
}

export const abortRequested = (members: readonly Workload[]) => members.some((d) => annotationsOf(d)[A.abort] === "true");

/** What the window should do now, given its record, its members and the clock. */
export type WindowAction =
  | { kind: "idle" }
  | { kind: "run"; step: Step }
  | { kind: "abort" }
  | { kind: "retry" }
  | { kind: "expire" }
  | { kind: "wait-for-user" };

export function decideWindow(state: WindowState, members: readonly Workload[], now: number): WindowAction {
  if (state.result) return { kind: "idle" };
  const committed = !BEFORE_COMMIT.has(state.step) && state.step !== "rollback";
  if (abortRequested(members) && !committed && state.step !== "rollback") return { kind: "abort" };
  if (state.failure) {
    if (retryToken(members) !== state.retryToken) return { kind: "retry" };
    return { kind: "wait-for-user" };
  }
  if (!committed && state.step !== "rollback" && now > Date.parse(state.deadline)) return { kind: "expire" };
  return { kind: "run", step: state.step };
}

/** A step that failed for a reason a user must fix (not a dropped connection). */
export class StepFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StepFailure";
  }
}

export const isBeforeCommit = (step: Step) => BEFORE_COMMIT.has(step);

/** The Job runner's Job for one attempt of a window: deterministic, DNS-1123, at most 63 characters. */
export function migrationJobName(state: Pick<WindowState, "group" | "id" | "attempt">): string {
  let hash = 0x811c9dc5;
  for (const char of `${state.id}/${state.attempt}`) {
    hash ^= char.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `migrate-${state.group.slice(0, 40).replace(/-+$/, "")}-${hash.toString(36)}`;
}

/** Duration in a human unit for Events and the CLI. */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`;
}
