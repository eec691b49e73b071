import { markPatch, clearAbortPatch } from "../core/member-patches.js";
import { Phase } from "../core/phase.js";
import {
  abortWindow,
  completeStep,
  ENDINGS,
  expiryMessage,
  poolerStaysPaused,
  reactToFailure,
  retryWindow,
} from "../core/window-policy.js";
import { decideWindow, formatMs, planWindow, StepFailure, type Step, type WindowState } from "../core/window.js";
import { A } from "../core/annotations.js";
import { maskCredentials } from "../core/mask.js";
import { isConnectionError } from "../db/errors.js";
import { LostLeadership } from "../k8s/leader.js";
import { fence, type Group, type WindowDeps } from "./deps.js";
import { considerOpening } from "./opening.js";
import { AGAIN, DONE, rememberedRecords, RETRY_MS, warnOnce, type GroupMemory, type RememberedRecords, type Result } from "./pass.js";
import { resumeThePooler } from "./pooler.js";
import { askRunner, endsAtOnce, STEP_BODIES, startsFromCache, RUNS_AHEAD_OF_RECORD, type StepBody, type StepResult } from "./steps.js";

/** How soon a window waiting for a stopped Job to be gone looks again. */
const JOB_STOP_POLL_MS = 250;

/**
 * One pass over a database group, level-based: read the group and its window record
 * once, decide (in core) what the window does now, take that one step and record it.
 * Throws LostLeadership when this replica no longer leads; it then writes nothing more.
 */
export async function reconcileGroup(
  unfenced: WindowDeps,
  namespace: string,
  name: string,
  memory: GroupMemory,
  steps: Record<Step, StepBody> = STEP_BODIES,
): Promise<Result> {
  if (!unfenced.leading()) {
    memory.record = undefined;
    return DONE;
  }
  const records = rememberedRecords(unfenced.records, memory, unfenced.leading);
  // Writes wait for the record's queued writes, except in a step that may run ahead of it.
  let ahead = false;
  const deps = fence({ ...unfenced, records }, () => (ahead ? Promise.resolve() : records.written()));
  const stored = await deps.records.read(namespace, name);
  const state = stored.state;
  memory.step = state && !state.result ? state.step : undefined;
  if (state?.poolerPaused && !poolerStaysPaused(state)) {
    return resumeThePooler(deps, await deps.members.read(namespace, name), state, stored.version!, memory);
  }
  if (!state || state.result) {
    // Most passes (every event of an opted-in member) find nothing held: the cache says so
    // without a LIST. A member held since shows in the cache, and its event kicks a pass.
    const cached = deps.members.cached(namespace, name);
    const group = planWindow(cached.deployments).kind === "none" ? cached : await deps.members.read(namespace, name);
    return considerOpening(deps, group, stored, memory);
  }
  ahead = RUNS_AHEAD_OF_RECORD.has(state.step);
  // A step that writes no member reads the caches, not a LIST each time (restore too, see startsFromCache).
  const cached = deps.members.cached(namespace, name);
  const fromCache = startsFromCache(state.step, cached);
  const group = fromCache ? cached : await deps.members.read(namespace, name);
  const now = deps.now();
  const action = decideWindow(state, group.deployments, now);
  switch (action.kind) {
    case "idle":
    case "wait-for-user":
      return DONE;
    case "abort":
    case "expire": {
      const settled = state.step === "migrate" ? await settleMigration(deps, group, state, stored.version!, action.kind) : undefined;
      if (settled) return settled;
      if (action.kind === "expire") {
        await failWindow(deps, group, state, stored.version, expiryMessage(state));
        return AGAIN;
      }
      await deps.records.save(namespace, abortWindow(state, now), stored.version);
      await deps.narrate(group.deployments, "Normal", "WindowAborting", `window ${state.id}: abort requested; returning every member to its previous state without migrating`);
      return AGAIN;
    }
    case "retry": {
      const retried = retryWindow(state, group.deployments, now);
      await deps.records.save(namespace, retried, stored.version);
      await deps.members.patchEach(group, "mark them Migrating", (d) =>
        markPatch(d, Phase.Migrating, `retrying the window to schema version ${state.version} from step ${retried.step}`));
      await deps.narrate(group.deployments, "Normal", "WindowRetry", `window ${state.id}: retry requested; resuming at step ${retried.step} (attempt ${retried.attempt})`);
      return AGAIN;
    }
    case "run":
      return runStep(deps, records, { group, fromCache }, state, stored.version!, memory, steps[state.step]);
  }
}

/**
 * An abort or the deadline in the migrate step: a migration that committed finishes the
 * window (never a rollback onto a migrated schema); a Job still running is stopped first.
 * Undefined when the window may end as asked.
 */
async function settleMigration(deps: WindowDeps, group: Group, state: WindowState, version: string, asked: "abort" | "expire"): Promise<Result | undefined> {
  const answer = await askRunner({ deps, group, state });
  if (answer === "stopping") return { requeueAfterMs: JOB_STOP_POLL_MS };
  if (answer === "not-committed") return undefined;
  const now = deps.now();
  await deps.records.save(group.namespace, completeStep(state, { committedAt: new Date(now).toISOString() }, now), version);
  await deps.narrate(group.deployments, "Warning", "MigrationCommitted",
    `window ${state.id}: ${asked === "abort" ? "the abort" : "the deadline"} came after the migration to schema version ${state.version} committed; the window finishes instead of undoing it`);
  return AGAIN;
}

async function runStep(
  deps: WindowDeps, records: RememberedRecords, read: { group: Group; fromCache: boolean }, state: WindowState, version: string, memory: GroupMemory, body: StepBody,
): Promise<Result> {
  const { group, fromCache } = read;
  const { namespace } = group;
  const where = { namespace, group: state.group, window: state.id, step: state.step };
  if (!state.stepStartedAt) {
    // A record kept by an earlier version: time (and bound) the step from now.
    await deps.records.save(namespace, { ...state, stepStartedAt: new Date(deps.now()).toISOString() }, version);
    return AGAIN;
  }
  const announce = `${state.id}/${state.attempt}/${state.step}`;
  if (memory.announced !== announce) {
    memory.announced = announce;
    deps.log.info(where, "step started");
    if (state.maintenance && state.step !== "maintenance-on" && state.step !== "finished") deps.showProgress(namespace, state);
  }
  let result: StepResult;
  try {
    result = await body({ deps, group, state, fromCache });
  } catch (error) {
    if (error instanceof StepFailure) {
      await failWindow(deps, group, state, version, error.message);
      return AGAIN;
    }
    if (error instanceof LostLeadership) throw error;
    const reason = isConnectionError(error) ? "DatabaseUnavailable" : "StepRetrying";
    await warnOnce(deps, group, memory, reason, `step ${state.step}: ${(error as Error).message}; retrying in ${RETRY_MS / 1000}s`);
    return { requeueAfterMs: RETRY_MS };
  }
  if (result.kind === "wait") return { requeueAfterMs: result.ms };
  if (result.kind === "record") {
    await deps.records.save(namespace, { ...state, ...result.outcome }, version);
    return AGAIN;
  }
  memory.reported = undefined;
  const next = completeStep(state, result.outcome, deps.now());
  // The next step starts while its record is written: one that may run ahead of it
  // wholly, the others up to their first write (the fence makes that wait).
  if (next.result) await deps.records.save(namespace, next, version);
  else if (endsAtOnce(next)) records.keep(namespace, next);
  else records.saveBehind(namespace, next);
  deps.log.info({ ...where, ms: next.timings[state.step] }, "step finished");
  if (next.result) await finish(deps, group, next);
  // Also after the end: a member held for another version gets its window next.
  return AGAIN;
}

/** A step failed for the user to see: roll back (when the policy and the step allow) or hold the group for retry or abort. */
export async function failWindow(deps: WindowDeps, group: Group, state: WindowState, version: string | undefined, reported: string): Promise<void> {
  const { namespace } = group;
  // Database errors and tools' output reach the record, annotations and Events: no credentials.
  const message = maskCredentials(reported);
  const reaction = reactToFailure(state, message, deps.now(), await committedAnyway(deps, group, state));
  deps.log.error({ namespace, group: state.group, window: state.id, step: state.step }, `window failed: ${message}`);
  if (reaction.kind === "rollback") {
    await deps.records.save(namespace, reaction.state, version);
    await deps.narrate(group.deployments, "Warning", "WindowFailed", `window ${state.id} failed in step ${state.step}: ${message}. Rolling back (on-failure: rollback)`);
  } else {
    // Members first: once the record says failed, a reader of it finds them marked too.
    const marked = `window failed in step ${state.step}: ${message}`.slice(0, 4000);
    await deps.members.patchEach(group, "mark them Failed", (d) => markPatch(d, Phase.Failed, marked));
    await deps.records.save(namespace, reaction.state, version);
    await deps.narrate(group.deployments, "Warning", "WindowFailed",
      `window ${state.id} failed in step ${state.step}: ${message}. The group stays quiesced; fix the cause and run ` +
      `\`schema-gate retry ${state.group} -n ${namespace}\` (or annotate ${A.retry}), or \`schema-gate abort ${state.group} -n ${namespace}\``);
  }
  deps.metrics.windows.inc({ result: "failed" });
}

/**
 * Before a failure in migrate is rolled back: whether the runner says the migration is in
 * all the same (see reactToFailure). A runner that cannot be asked counts as yes: holding
 * is the cautious answer, rolling back onto a migrated schema is not.
 */
async function committedAnyway(deps: WindowDeps, group: Group, state: WindowState): Promise<boolean> {
  if (state.step !== "migrate" || state.onFailure !== "rollback") return false;
  return (await askRunner({ deps, group, state }).catch(() => "committed" as const)) === "committed";
}

async function finish(deps: WindowDeps, group: Group, state: WindowState): Promise<void> {
  const result = state.result!;
  const total = deps.now() - Date.parse(state.startedAt);
  if (result === "Aborted") await deps.members.patchEach(group, "remove the abort annotation", clearAbortPatch);
  const parts = Object.entries(state.timings).map(([s, ms]) => `${s} ${formatMs(ms)}`).join(", ");
  const message = result === "Done"
    ? `window ${state.id}: schema version ${state.version} applied; group restored in ${formatMs(total)} (${parts})`
    : `window ${state.id}: ${ENDINGS[result].verb}; members returned to their previous state in ${formatMs(total)}`;
  deps.log.info({ namespace: group.namespace, group: state.group, window: state.id, result, ms: total, timings: state.timings }, "window finished");
  await deps.narrate(group.deployments, "Normal", ENDINGS[result].reason, message);
  deps.metrics.windows.inc({ result: ENDINGS[result].metric });
}
