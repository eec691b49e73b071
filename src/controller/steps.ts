import type * as k8s from "@kubernetes/client-node";
import type { DatabaseTarget } from "../core/database-secret.js";
import {
  changedByWindow,
  cronJobResumePatch,
  cronJobSuspendPatch,
  deadlineBackPatch,
  isQuiesced,
  previousTemplate,
  quiescePatch,
  restorePatch,
  rollbackPatch,
  rolloutReady,
  type ReplicaSetLike,
} from "../core/member-patches.js";
import type { Runner } from "../core/member-spec.js";
import { annotationsOf } from "../core/objects.js";
import { isHeld, isHolding } from "../core/phase.js";
import { ENDINGS, finalResult, podsServing, stepStarted, windowSecret } from "../core/window-policy.js";
import { A } from "../core/annotations.js";
import { formatMs, migrationJobName, StepFailure, type Step, type WindowState } from "../core/window.js";
import { LostLeadership } from "../k8s/leader.js";
import type { Group, WindowDeps } from "./deps.js";

/**
 * The window's steps, one function each. A step takes the record and the group as read at
 * the start of the pass, does its part, and says whether it is done (with what it changed
 * in the record) or must be looked at again later; it never sleeps on the group's worker.
 * A StepFailure is for the user to fix; any other error is retried.
 */
export interface StepContext {
  deps: WindowDeps;
  group: Group;
  state: WindowState;
  /** The group was read from the informer cache (see startsFromCache), not listed for this pass. */
  fromCache?: boolean;
}

/** `record`: keep `outcome` in the record before the step goes on (the step runs again next pass). */
export type StepResult = { kind: "done"; outcome?: Partial<WindowState> } | { kind: "wait"; ms: number } | { kind: "record"; outcome: Partial<WindowState> };
export type StepBody = (context: StepContext) => Promise<StepResult>;

/** How soon a waiting step (pods going, a Job, a rollout) is looked at again. */
export const POLL_MS = 100;
const JOB_POLL_MS = 250;

const done = (outcome?: Partial<WindowState>): StepResult => ({ kind: "done", ...(outcome ? { outcome } : {}) });
const wait = (ms: number): StepResult => ({ kind: "wait", ms });
const iso = (ms: number) => new Date(ms).toISOString();
const names = (members: readonly k8s.V1Deployment[]) => members.map((d) => d.metadata!.name!);

async function maintenanceOn({ deps, group, state }: StepContext): Promise<StepResult> {
  if (!state.maintenance) return done();
  const { owned } = await deps.maintenance.turnOn(group.namespace, state.id);
  return done({ maintenanceOwned: owned || state.maintenanceOwned === true });
}

async function quiesce(context: StepContext): Promise<StepResult> {
  const { deps, group, state } = context;
  const target = targetAhead(context);
  openMigrationSession(context, target);
  const message = `window ${state.id}: quiesced for the migration to schema version ${state.version}`;
  // Each member's pods stop once it is at zero, at once, not at the controller-manager's pace.
  const stopMembers = () => deps.members.scaleToZero(group, (d) => quiescePatch(d, message));
  // Beside the members, not before them: reading the CronJobs is slow, and the pods need not wait for it.
  const suspendCronJobs = async () => {
    const cronJobs = await deps.members.cronJobs(group);
    const suspended: string[] = [];
    for (const cronJob of cronJobs) {
      if (cronJob.spec?.suspend) continue;
      await deps.members.patchCronJob(group.namespace, cronJob.metadata!.name!, cronJobSuspendPatch);
      suspended.push(`cronjob/${cronJob.metadata!.name}`);
    }
    return { all: cronJobs.map((c) => c.metadata!.name!), suspended };
  };
  const [{ scaled, podsListedAt }, cronJobs] = await Promise.all([stopMembers(), suspendCronJobs()]);
  const changed = [...scaled, ...cronJobs.suspended];
  if (changed.length > 0) {
    await deps.narrate(group.deployments, "Normal", "Quiesced", `window ${state.id}: scaled to zero for the migration: ${changed.join(", ")}`);
  }
  return done({ quiescedAt: state.quiescedAt ?? iso(deps.now()), cronJobs: cronJobs.all, ...(podsListedAt ? { podsListedAt } : {}) });
}

/** Whether the group may have CronJobs: unknown (a record from before the quiesce kept them) counts as yes. */
const hasCronJobs = (state: WindowState) => state.cronJobs === undefined || state.cronJobs.length > 0;

/**
 * The steps that write no member read the group from the caches, not a LIST each pass
 * (a round trip each inside the downtime): those that mostly wait, looked at every POLL_MS
 * and ended only once the API confirms what the caches show, and terminate and verify,
 * which only need the Secret's name and the abort and retry annotations. The Job runner
 * reads its owner's whole template from the API itself. restore reads the cache too once
 * it shows every member quiesced (see startsFromCache).
 */
export const CACHED_STEPS: ReadonlySet<Step> = new Set<Step>(["drain", "terminate", "migrate", "verify", "readiness"]);

/**
 * Whether a pass reads the group from the cache: the CACHED_STEPS, and restore when the
 * cache shows every member as the quiesce left it (at zero, Migrating), so that the LIST,
 * a consistent read that waits for the apiserver's cache, is not a round trip inside the
 * downtime before the members come back. A cache behind that (a watch that lags or
 * restarts) shows some member still running: that pass lists. What the cache may still
 * miss, the restore finds in a LIST it reads beside its patches: a member the cache does
 * not show yet, or shows with nothing to restore, would otherwise get no patch at all (no
 * guard would catch it) and stay at zero. A patch made from a member the cache shows older
 * than it is fails its guard, and that member is read again.
 */
export function startsFromCache(step: Step, cached: Group): boolean {
  if (CACHED_STEPS.has(step)) return true;
  return step === "restore" && cached.deployments.length > 0 && cached.deployments.every(isQuiesced);
}

/**
 * The steps that may start before the record says they started: the write of the step
 * before them goes on meanwhile (a round trip less inside the downtime each). A replica
 * that dies before that write lands leaves the record one step back, and its successor
 * redoes that step, which is safe for each before these: quiesce (the members are at zero
 * already), drain, migrate (the ledger, or the Job, says it is in). Every other step reads
 * what it needs meanwhile, and its first write waits in the fence for the writes before it,
 * so the record says `quiesce` before a member stops, `migrate` before the migration's
 * first write and `restore` before a member comes back. restore waits on purpose: a record
 * left at migrate with members already back would have its successor redo migrate, which
 * ends every other session on the database, theirs included.
 */
export const RUNS_AHEAD_OF_RECORD: ReadonlySet<Step> = new Set<Step>(["drain", "terminate", "verify", "readiness"]);

/**
 * Whether a step is known, as it starts, to have nothing to do: verify once the migration's
 * session read the ledger back, or after a Job (its success is the runner's own record). Its
 * start is not written on its own, a round trip inside the downtime before the restore: the
 * next step's write carries it. A gate that dies meanwhile leaves the record at migrate, and
 * its successor redoes migrate, which finds the migration in (the ledger, or the Job).
 */
export const endsAtOnce = (state: WindowState): boolean =>
  state.step === "verify" && (state.runner.kind === "job" || state.verified === true);

/**
 * Waits for the members' pods to be gone; the window's deadline bounds it (decideWindow
 * expires it). The caches say when. A pod cache that has not seen as far as the quiesce's
 * read of the pods (restarted, lagging) may miss one, so then one read of the API confirms.
 */
async function drain(context: StepContext): Promise<StepResult> {
  const { deps, group, state } = context;
  const target = targetAhead(context);
  filesAhead(context);
  if ((await deps.members.podsLeft(group, "cache")).length > 0) return wait(POLL_MS);
  // The pods are gone: the session the quiesce opened, or a new one if it was closed meanwhile.
  openMigrationSession(context, target);
  // A cache that has seen past the quiesce's own read of the pods shows at least as much as
  // that read: nothing the API adds but the wait of a consistent LIST. CronJobs' runs are
  // confirmed by the API (the cache may not show a run that just started).
  if (!hasCronJobs(state) && state.podsListedAt && deps.members.podsCacheReflects(state.podsListedAt)) return done();
  return (await deps.members.podsLeft(group, "api", { cronJobs: hasCronJobs(state) })).length === 0 ? done() : wait(POLL_MS);
}

/**
 * The database the Secret names, read ahead for terminate and migrate (kept briefly, see
 * util/recently): off the downtime's path. A failure is theirs to report: they read again.
 */
function targetAhead(context: StepContext): Promise<DatabaseTarget> {
  const target = Promise.resolve().then(() => groupDatabase(context));
  target.catch(() => undefined);
  return target;
}

/** The window's key for what its steps read ahead for each other (the SQL files): its id and attempt. */
const attemptKey = (state: WindowState) => `${state.id}/${state.attempt}`;

/** The SQL files, read ahead for migrate (a round trip inside the downtime otherwise); a failure is migrate's to report. */
function filesAhead({ deps, group, state }: StepContext): void {
  if (state.runner.kind === "sql") deps.database.sqlFiles(group.namespace, state.runner.configMap, attemptKey(state)).catch(() => undefined);
}

/**
 * Opens the SQL migration's session ahead (see SessionsAhead): from the quiesce, so that
 * its connection is made while the pods stop, and again from a drain that outlived it.
 */
function openMigrationSession({ deps, state }: StepContext, target: Promise<DatabaseTarget>): void {
  if (state.runner.kind !== "sql") return;
  void target.then((t) => deps.database.openAhead(t, { statementTimeoutMs: statementTimeout(state, deps.now()) }), () => undefined);
}

/** The migration's statements may run until the window's deadline (at least a second). */
const statementTimeout = (state: WindowState, now: number) => Math.max(1000, Date.parse(state.deadline) - now);

/** The group as the database knows it (its advisory lock and its claim on the database). */
export function databaseOwner({ group, state }: Pick<StepContext, "group" | "state">): string {
  return `${group.namespace}/${state.group}`;
}

export function groupDatabase({ deps, group, state }: StepContext): Promise<DatabaseTarget> {
  const secret = windowSecret(group.deployments, state);
  if (!secret) throw new StepFailure(`no member of database group ${state.group} names a ${A.databaseSecret} any more`);
  return deps.database.target(group.namespace, secret);
}

async function terminate(context: StepContext): Promise<StepResult> {
  const { deps, group, state } = context;
  const target = await groupDatabase(context);
  // Recorded before the PAUSE (a gate killed right after it still knows to resume), once the
  // consoles took the gate's login: a refused one fails the window with nothing paused.
  if (target.pooler && !state.poolerPaused) {
    await deps.database.checkPooler(target);
    return { kind: "record", outcome: { poolerPaused: true } };
  }
  const { sessions, paused } = await deps.database.terminateOthers(target);
  if (paused) {
    await deps.narrate(group.deployments, "Normal", "PoolerPaused",
      `window ${state.id}: paused PgBouncer database ${paused.database} (${target.pooler!.consoles.map((c) => `${c.host}:${c.port}`).join(", ")}): ` +
      (paused.drained
        ? `its server connections were released in ${formatMs(paused.waitedMs)}`
        : `after ${formatMs(paused.waitedMs)} some clients still held server connections; their sessions were terminated`) +
      "; client queries wait in the pooler until the migration is done");
  }
  deps.metrics.sessionsTerminated.inc(sessions.length);
  const list = sessions.map((s) => `pid ${s.pid} (user ${s.user}, application "${s.applicationName}", ${s.state})`).join(", ");
  await deps.narrate(group.deployments, "Normal", "SessionsTerminated",
    sessions.length === 0
      ? `window ${state.id}: no other session on database ${target.database}`
      : `window ${state.id}: terminated ${sessions.length} session(s) on database ${target.database}: ${list}`);
  return done({ sessions: sessions.map(({ pid, user, applicationName, state: s }) => ({ pid, user, applicationName, state: s })) });
}

async function migrateSql(context: StepContext, runner: Extract<Runner, { kind: "sql" }>): Promise<StepResult> {
  const { deps, group, state } = context;
  const started = deps.now();
  const [target, files] = await Promise.all([groupDatabase(context), deps.database.sqlFiles(group.namespace, runner.configMap, attemptKey(state))]);
  const observe = (result: string) => deps.metrics.migrationDuration.observe({ runner: "sql", result }, (deps.now() - started) / 1000);
  let applied: { ran: string[]; recorded: boolean };
  try {
    applied = await deps.database.applySql(target, databaseOwner(context), files, state.version, {
      statementTimeoutMs: statementTimeout(state, deps.now()),
      // A replica deposed meanwhile lets the file in flight commit and starts no other: the
      // successor applies the rest (its migrate step first ends this session).
      onFile: (file, ms) => {
        deps.log.info({ namespace: group.namespace, group: state.group, window: state.id, file, ms }, "migration file applied");
        if (!deps.leading()) throw new LostLeadership(`lost the Lease while applying SQL files; stopped after ${file}`);
      },
    });
  } catch (error) {
    if (error instanceof StepFailure) observe("failure");
    throw error;
  }
  observe("success");
  const { ran, recorded } = applied;
  await deps.narrate(group.deployments, "Normal", "Migrated",
    `window ${state.id}: applied ${ran.length} SQL file(s) in ${formatMs(deps.now() - started)}${ran.length ? `: ${ran.join(", ")}` : ""}`);
  return done({ committedAt: iso(deps.now()), verified: recorded });
}

/** The Job runner: make the window's Job once, then look at it until it ends. */
async function migrateJob({ deps, group, state }: StepContext, runner: Extract<Runner, { kind: "job" }>): Promise<StepResult> {
  const owner = group.deployments.find((d) => d.metadata?.name === state.owner);
  if (!owner) throw new StepFailure(`deployment ${group.namespace}/${state.owner}, whose template the migration Job uses, no longer exists`);
  const name = migrationJobName(state);
  let job = await deps.jobs.state(group.namespace, name);
  if (job.kind === "missing") {
    await deps.jobs.ensure(owner, state, runner, Date.parse(state.deadline));
    job = { kind: "running" };
  }
  if (job.kind === "running" || job.kind === "stopping") return wait(JOB_POLL_MS);
  const seconds = (deps.now() - stepStarted(state, deps.now())) / 1000;
  if (job.kind === "failed") {
    deps.metrics.migrationDuration.observe({ runner: "job", result: "failure" }, seconds);
    throw new StepFailure(job.message);
  }
  deps.metrics.migrationDuration.observe({ runner: "job", result: "success" }, seconds);
  await deps.narrate(group.deployments, "Normal", "Migrated", `window ${state.id}: migration Job ${name} completed in ${formatMs(seconds * 1000)}`);
  return done({ committedAt: iso(deps.now()) });
}

const migrate = (context: StepContext): Promise<StepResult> =>
  context.state.runner.kind === "sql" ? migrateSql(context, context.state.runner) : migrateJob(context, context.state.runner);

async function verify(context: StepContext): Promise<StepResult> {
  const { deps, state } = context;
  // The Job's success is the runner's own record, and the migration's session read its
  // ledger right after the commit (endsAtOnce); a window resumed from an older record asks again.
  if (endsAtOnce(state)) return done();
  const recorded = await deps.database.versionRecorded(await groupDatabase(context), databaseOwner(context), state.version);
  if (!recorded) throw new StepFailure(`schema version ${state.version} is not recorded as applied after the migration`);
  return done();
}

async function resumeCronJobs({ deps, group, state }: StepContext): Promise<void> {
  if (!hasCronJobs(state)) return;
  for (const cronJob of await deps.members.cronJobs(group)) {
    if (isHolding(annotationsOf(cronJob)[A.phase])) await deps.members.patchCronJob(group.namespace, cronJob.metadata!.name!, cronJobResumePatch);
  }
}

async function restore(context: StepContext): Promise<StepResult> {
  const { deps, group, state } = context;
  const message = `schema version ${state.version} applied by window ${state.id}`;
  // The progress deadlines stay aside until maintenance-off: see nextRevision in member-patches.ts.
  const patchFor = (d: k8s.V1Deployment) => restorePatch(d, state.version, message, { deadlineLater: true });
  const restoring = Promise.all([deps.members.patchEach(group, "restore them", patchFor), resumeCronJobs(context)]);
  // From the cache: the members the API lists and the cached round did not patch are looked at again (startsFromCache).
  const listed = context.fromCache ? deps.members.read(group.namespace, group.name) : undefined;
  listed?.catch(() => undefined); // awaited below
  const [restored] = await restoring;
  let members = group.deployments;
  let confirmed = true;
  if (listed) {
    // A LIST that failed after the cached round: the step runs again, and then lists first
    // (the members it restored no longer look quiesced), rather than waiting out a retry.
    const read = await listed.catch((error: unknown) => error as Error);
    if (read instanceof Error) {
      deps.log.warn({ err: read, namespace: group.namespace, group: state.group, window: state.id }, "could not list the group beside the restore; looking again");
      confirmed = false;
    } else {
      members = read.deployments;
      const rest = members.filter((d) => !restored.includes(d.metadata!.name!));
      restored.push(...(await deps.members.patchEach({ ...group, deployments: rest }, "restore them", patchFor)));
    }
  }
  if (restored.length > 0) await deps.narrate(members, "Normal", "Restored", `window ${state.id}: replicas restored: ${restored.join(", ")}`);
  return confirmed ? done() : wait(POLL_MS);
}

/** Waits, bounded, for the restored rollouts; the migration is in either way, so a slow one only warns. */
async function readiness({ deps, group, state }: StepContext): Promise<StepResult> {
  // A member is ready when its rollout is, or already when its pods serve (podsServing).
  const notServing = async (members: Group, from: "cache" | "api") => {
    const pods = await deps.members.pods(members.namespace, from);
    return names(members.deployments.filter((d) => !rolloutReady(d) && !podsServing(d, pods)));
  };
  let waiting = await notServing(group, "cache");
  // The cache may not show the restore yet (the quiesced members look ready at zero): the API decides.
  if (waiting.length === 0) waiting = await notServing(await deps.members.read(group.namespace, group.name), "api");
  if (waiting.length === 0) {
    if (state.quiescedAt) deps.metrics.downtime.observe((deps.now() - Date.parse(state.quiescedAt)) / 1000);
    return done();
  }
  if (deps.now() < stepStarted(state, deps.now()) + deps.readinessTimeoutMs) return wait(POLL_MS);
  await deps.narrate(group.deployments, "Warning", "RolloutNotReady",
    `window ${state.id}: the migration is applied but ${waiting.join(", ")} did not become ready in time; check their pods`);
  return done();
}

/** The page off, and beside it the progress deadlines the restore kept aside given back (the rollouts are done). */
async function maintenanceOff({ deps, group, state }: StepContext): Promise<StepResult> {
  await Promise.all([
    state.maintenanceOwned ? deps.maintenance.turnOff(group.namespace, state.id) : undefined,
    deps.members.patchEach(group, "give their progress deadlines back", deadlineBackPatch),
  ]);
  return done();
}

async function rollback(context: StepContext): Promise<StepResult> {
  const { deps, group, state } = context;
  const verb = ENDINGS[finalResult(state)].verb;
  const needsTemplates = group.deployments.some((d) => isHeld(annotationsOf(d)) && changedByWindow(d, state));
  const sets: ReplicaSetLike[] = needsTemplates ? await deps.members.replicaSets(group.namespace) : [];
  await deps.members.patchEach(group, "roll them back", (d) =>
    rollbackPatch(d, state, changedByWindow(d, state) ? previousTemplate(d, sets) : undefined, verb));
  await resumeCronJobs(context);
  await deps.narrate(group.deployments, "Normal", state.ending === "abort" ? "Aborted" : "RolledBack",
    `window ${state.id}: ${verb}; members returned to their previous templates and replicas`);
  return done();
}

/**
 * Before an abort or the deadline ends a window in its migrate step, the runner is asked
 * whether the migration is in (a gate killed just after the commit leaves the record at
 * migrate): SQL, by the recorded version; a Job, by its state. A Job still running is
 * stopped, and the window waits until it is gone, so it cannot commit after the rollback.
 */
export async function askRunner(context: StepContext): Promise<"committed" | "not-committed" | "stopping"> {
  const { deps, group, state } = context;
  if (state.runner.kind === "sql") {
    return (await deps.database.versionRecorded(await groupDatabase(context), databaseOwner(context), state.version)) ? "committed" : "not-committed";
  }
  const name = migrationJobName(state);
  const job = await deps.jobs.state(group.namespace, name);
  if (job.kind === "complete") return "committed";
  if (job.kind === "stopping") return "stopping";
  if (job.kind === "running") {
    await deps.jobs.stop(group.namespace, name);
    return "stopping";
  }
  return "not-committed";
}

export const STEP_BODIES: Record<Step, StepBody> = {
  "maintenance-on": maintenanceOn,
  quiesce,
  drain,
  terminate,
  migrate,
  verify,
  restore,
  readiness,
  "maintenance-off": maintenanceOff,
  rollback,
  finished: async () => done(),
};
