import { poolerResumeCommand, type DatabaseTarget } from "../core/database-secret.js";
import { StepFailure, type WindowState } from "../core/window.js";
import { LostLeadership } from "../k8s/leader.js";
import type { Group, WindowDeps } from "./deps.js";
import { AGAIN, RETRY_MS, warnOnce, type GroupMemory, type Result } from "./pass.js";
import { groupDatabase } from "./steps.js";

/**
 * The window is past the stretch where the pooler stays paused (the migration is in, or the
 * window failed, aborted or rolls back) and the record says it is paused: this pass only
 * RESUMEs it. Until that works the window waits, warning with the command to run by hand,
 * so no member comes back to a pooler that holds its queries. A Secret that no longer
 * names the pooler leaves the gate nothing to resume: it says so and goes on.
 */
export async function resumeThePooler(deps: WindowDeps, group: Group, state: WindowState, version: string, memory: GroupMemory): Promise<Result> {
  const where = `window ${state.id}`;
  let target: DatabaseTarget | undefined;
  try {
    target = await groupDatabase({ deps, group, state });
  } catch (error) {
    if (!(error instanceof StepFailure)) throw error;
    return forget(deps, group, state, version, `${where}: cannot tell which pooler to resume (${error.message}); RESUME the database on the pooler's admin console by hand if it is still paused`);
  }
  if (!target.pooler) {
    return forget(deps, group, state, version, `${where}: the Secret no longer names the pooler's console, so the gate cannot resume it; RESUME ${target.database} on the pooler's admin console by hand if it is still paused`);
  }
  try {
    await deps.database.resumePooler(target);
  } catch (error) {
    if (error instanceof LostLeadership) throw error;
    await warnOnce(deps, group, memory, "PoolerNotResumed",
      `${where}: could not resume PgBouncer database ${target.pooler.database} (${(error as Error).message}), so it may still be PAUSED: client queries wait in the pooler until it is resumed. ` +
      `The gate tries again every ${RETRY_MS / 1000}s and holds the window meanwhile; to resume by hand run: ${poolerResumeCommand(target.pooler)}`);
    return { requeueAfterMs: RETRY_MS };
  }
  memory.reported = undefined;
  await deps.records.save(group.namespace, { ...state, poolerPaused: false }, version);
  await deps.narrate(group.deployments, "Normal", "PoolerResumed", `${where}: resumed PgBouncer database ${target.pooler.database}; client queries waiting in the pooler go on`);
  return AGAIN;
}

async function forget(deps: WindowDeps, group: Group, state: WindowState, version: string, message: string): Promise<Result> {
  deps.log.warn({ namespace: group.namespace, group: state.group, window: state.id }, message);
  await deps.narrate(group.deployments, "Warning", "PoolerNotResumed", message);
  await deps.records.save(group.namespace, { ...state, poolerPaused: false }, version);
  return AGAIN;
}
