import { restorePatch, reholdPatch } from "../core/member-patches.js";
import { heldMembers, planWindow, StepFailure, type WindowState } from "../core/window.js";
import { openWindow, settle } from "../core/window-policy.js";
import { isConnectionError } from "../db/errors.js";
import type { Group, StoredWindow, WindowDeps } from "./deps.js";
import { AGAIN, DONE, warnOnce, type GroupMemory, type Result } from "./pass.js";

/** How soon a group whose database could not be asked what is pending is looked at again. */
const PENDING_CHECK_RETRY_MS = 5000;

/**
 * With no open window: release holds that need no migration, or open a window once the
 * settle delay has passed.
 */
export async function considerOpening(deps: WindowDeps, group: Group, stored: StoredWindow, memory: GroupMemory): Promise<Result> {
  const plan = planWindow(group.deployments);
  if (plan.kind === "none") {
    memory.settling = undefined;
    return DONE;
  }
  const held = heldMembers(group.deployments);
  if (plan.kind === "invalid") {
    await warnOnce(deps, group, memory, "InvalidAnnotations", `deployment ${group.namespace}/${plan.member}: ${plan.problem}`, held);
    return DONE;
  }
  // A hold somebody bypassed: the held Deployments stay paused until their window.
  if ((await deps.members.patchEach(group, "keep them paused", reholdPatch)).length > 0) return AGAIN;

  const previous = stored.state;
  if (previous?.version === plan.version && previous.result === "Done") {
    // Joined just after its window restored the group: the version is in, release it.
    const message = `schema version ${plan.version} applied by window ${previous.id}`;
    await deps.members.patchEach(group, "release them", (d) => restorePatch(d, plan.version, message));
    return DONE;
  }
  if (memory.pendingSeen !== plan.version) {
    const checked = plan.spec.runner.kind === "sql"
      ? await releaseIfNothingPending(deps, group, plan.spec.secret, plan.spec.runner.configMap, plan.version, memory)
      : await claimDatabase(deps, group, plan.spec.secret, plan.version, memory);
    if (checked) return checked;
  }

  const now = deps.now();
  const { settling, waitMs } = settle(memory.settling, group.deployments, now, deps.settleMs);
  memory.settling = settling;
  if (waitMs > 0) return { requeueAfterMs: waitMs };
  Object.assign(memory, { settling: undefined, pendingSeen: undefined, reported: undefined });

  const state: WindowState = openWindow(plan, group.deployments, now, deps.newSuffix());
  await deps.records.save(group.namespace, state, stored.version);
  deps.log.info({ namespace: group.namespace, group: group.name, window: state.id, version: state.version, owner: state.owner, runner: state.runner.kind }, "window opened");
  await deps.narrate(group.deployments, "Normal", "WindowOpened",
    `window ${state.id}: migrating database group ${group.name} to schema version ${state.version} ` +
    `(${state.runner.kind === "sql" ? `SQL files of ${state.runner.configMap}` : "a Job"}; ${held.length} held, ${group.deployments.length} member(s))`);
  return AGAIN;
}

const owner = (group: Group) => `${group.namespace}/${group.name}`;

async function reportCheckFailure(deps: WindowDeps, group: Group, memory: GroupMemory, error: unknown): Promise<Result> {
  const message = error instanceof StepFailure || isConnectionError(error)
    ? (error as Error).message
    : `could not check pending migrations: ${(error as Error).message}`;
  await warnOnce(deps, group, memory, "MigrationCheckFailed", `database group ${group.name}: ${message}; the gate retries every few seconds`, heldMembers(group.deployments));
  return { requeueAfterMs: PENDING_CHECK_RETRY_MS };
}

/**
 * A Job runner's group claims its database before a window stops anything, as the SQL
 * runner's check does: a database another group owns is refused while the old pods serve.
 */
async function claimDatabase(deps: WindowDeps, group: Group, secret: string, version: string, memory: GroupMemory): Promise<Result | undefined> {
  try {
    await deps.database.claim(await deps.database.target(group.namespace, secret), owner(group));
    memory.pendingSeen = version;
    return undefined;
  } catch (error) {
    return reportCheckFailure(deps, group, memory, error);
  }
}

/**
 * The SQL runner knows what is pending: with nothing to apply the hold is released with
 * no window and no downtime. Returns the pass's result when it decided, else undefined.
 */
async function releaseIfNothingPending(deps: WindowDeps, group: Group, secret: string, configMap: string, version: string, memory: GroupMemory): Promise<Result | undefined> {
  try {
    const target = await deps.database.target(group.namespace, secret);
    const files = await deps.database.sqlFiles(group.namespace, configMap);
    if (!(await deps.database.recordIfNothingPending(target, owner(group), files, version))) {
      // Pending files stay pending until a window applies them: no need to ask again while settling.
      memory.pendingSeen = version;
      return undefined;
    }
  } catch (error) {
    return reportCheckFailure(deps, group, memory, error);
  }
  const message = `schema version ${version}: nothing to migrate; released without a window`;
  const released = await deps.members.patchEach(group, "release them", (d) => restorePatch(d, version, message));
  deps.metrics.windows.inc({ result: "skipped" });
  await deps.narrate(group.deployments.filter((d) => released.includes(d.metadata!.name!)), "Normal", "NoMigrationPending",
    `schema version ${version}: every SQL file of ${configMap} is applied already; hold released without a window`);
  deps.log.info({ namespace: group.namespace, group: group.name, version, released }, "nothing pending; hold released");
  memory.settling = undefined;
  return DONE;
}
