import { A } from "./annotations.js";
import { annotationsOf, type Workload } from "./objects.js";
import { isHolding, Phase } from "./phase.js";
import { describeStep, type WindowState } from "./window.js";

/** Exit codes of `schema-gate wait`, for CI pipelines. */
export const WaitExit = { Done: 0, Failed: 1, NotOptedIn: 2, Undone: 3, Timeout: 4 } as const;

export type WaitOutcome =
  | { kind: "exit"; code: number; phase: string; message: string }
  | { kind: "waiting"; line: string };

/**
 * What `schema-gate wait` says about one Deployment, given it, its group's window record
 * and the clock: an exit code once the window has ended, else a progress line.
 */
export function waitOutcome(deployment: Workload, state: WindowState | undefined, now: number): WaitOutcome {
  const a = annotationsOf(deployment);
  const where = `deployment ${deployment.metadata?.namespace}/${deployment.metadata?.name}`;
  const group = a[A.database];
  const exit = (code: number, phase: string, message: string): WaitOutcome => ({ kind: "exit", code, phase, message });
  if (!group) return exit(WaitExit.NotOptedIn, "", `${where} is not opted in (no ${A.database})`);
  const phase = a[A.phase];
  if (phase === Phase.Failed || (state?.failure && !state.result && isHolding(phase))) {
    return exit(WaitExit.Failed, Phase.Failed, `${where}: window failed: ${state?.failure?.message ?? a[A.message] ?? ""}\n` +
      `fix the cause, then: schema-gate retry ${group} -n ${deployment.metadata?.namespace} (or abort)`);
  }
  const windowOpen = state !== undefined && !state.result && state.version === a[A.schemaVersion];
  if (!isHolding(phase)) {
    if (phase === Phase.RolledBack || phase === Phase.Aborted) {
      return exit(WaitExit.Undone, phase, `${where}: window ${phase === Phase.Aborted ? "aborted" : "rolled back"}; schema version ${a[A.appliedVersion] ?? "unchanged"}`);
    }
    // Done once the window that applied it has ended too (its readiness step included).
    if ((!a[A.schemaVersion] || a[A.appliedVersion] === a[A.schemaVersion]) && !windowOpen) {
      const status = (deployment as { status?: { readyReplicas?: number } }).status;
      const ready = `${status?.readyReplicas ?? 0}/${deployment.spec?.replicas ?? 0} ready`;
      return exit(WaitExit.Done, Phase.Done, `${where}: schema version ${a[A.appliedVersion] ?? "-"} applied, ${ready}`);
    }
  }
  if (windowOpen) {
    return { kind: "waiting", line: `window ${group}: ${describeStep(state.step)}, ${Math.round((now - Date.parse(state.startedAt)) / 1000)}s so far` };
  }
  return { kind: "waiting", line: `${where}: ${phase ?? "waiting"}: ${a[A.message] ?? "waiting for the gate"}` };
}

/** A group's phase as `schema-gate status` shows it. */
export function groupPhase(state: WindowState | undefined, members: readonly Workload[]): string {
  if (state && !state.result) return state.failure ? Phase.Failed : "Running";
  if (members.some((d) => isHolding(annotationsOf(d)[A.phase]))) return Phase.Pending;
  return state?.result ?? "Idle";
}

/** Whether a user may ask a group's window for a retry or an abort now, and if not, why. */
export function checkWindowRequest(state: WindowState | undefined, group: string, namespace: string, what: "retry" | "abort"): string | undefined {
  if (!state || state.result) return `database group "${group}" in ${namespace} has no open window to ${what}`;
  if (what === "retry" && !state.failure) return `the window of "${group}" has not failed (step ${state.step}); nothing to retry`;
  return undefined;
}
