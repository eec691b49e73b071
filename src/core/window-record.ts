import type { WindowState } from "./window.js";

/**
 * The window record as a MigrationWindow custom resource (schema-gate.dev/v1alpha1), one
 * per database group, named after it: the controller's whole state in `status.window`,
 * and what people read (`kubectl get`, `kubectl wait`) beside it.
 */
export const WINDOW_API = { group: "schema-gate.dev", version: "v1alpha1", plural: "migrationwindows", kind: "MigrationWindow" } as const;

export interface Condition {
  type: "Ready" | "Progressing" | "Failed";
  status: "True" | "False";
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface WindowStatus {
  phase: string;
  step: string;
  version: string;
  fromVersion?: string;
  windowId: string;
  message: string;
  conditions: Condition[];
  window: WindowState;
}

/** Running, Failed (held for retry or abort), or how it ended. */
export const windowPhase = (state: WindowState): string => state.result ?? (state.failure ? "Failed" : "Running");

type Wanted = Omit<Condition, "lastTransitionTime">;

function wantedConditions(state: WindowState): Wanted[] {
  const c = (type: Condition["type"], on: boolean, reason: string, message: string): Wanted => ({ type, status: on ? "True" : "False", reason, message });
  switch (windowPhase(state)) {
    case "Done":
      return [c("Ready", true, "Migrated", `schema version ${state.version} applied`), c("Progressing", false, "Done", "the window ended"), c("Failed", false, "Done", "")];
    case "RolledBack":
      return [c("Ready", false, "RolledBack", `back on schema version ${state.fromVersion ?? "(none)"}`), c("Progressing", false, "RolledBack", "the window ended"), c("Failed", true, "RolledBack", state.rollbackReason ?? "")];
    case "Aborted":
      return [c("Ready", false, "Aborted", "aborted by request; nothing migrated"), c("Progressing", false, "Aborted", "the window ended"), c("Failed", false, "Aborted", "")];
    case "Failed":
      return [
        c("Ready", false, "WindowFailed", `held after step ${state.failure!.step} failed`),
        c("Progressing", false, "WaitingForUser", "fix the cause, then retry or abort"),
        c("Failed", true, "StepFailed", `step ${state.failure!.step}: ${state.failure!.message}`),
      ];
    default:
      return [c("Ready", false, "WindowOpen", `migrating to schema version ${state.version}`), c("Progressing", true, "Step", `step ${state.step}`), c("Failed", false, "Running", "")];
  }
}

/**
 * The status to write for a window. A condition keeps its lastTransitionTime while its
 * status stays the same (the Kubernetes convention), so `kubectl wait` and alerts see when
 * it really changed.
 */
export function windowStatus(state: WindowState, previous: readonly Condition[] | undefined, now: Date): WindowStatus {
  const conditions = wantedConditions(state).map((wanted): Condition => {
    const before = previous?.find((p) => p.type === wanted.type);
    const lastTransitionTime = before && before.status === wanted.status ? before.lastTransitionTime : now.toISOString();
    return { ...wanted, lastTransitionTime };
  });
  const failedMessage = conditions.find((x) => x.type === "Failed" && x.status === "True")?.message;
  return {
    phase: windowPhase(state),
    step: state.step,
    version: state.version,
    ...(state.fromVersion !== undefined ? { fromVersion: state.fromVersion } : {}),
    windowId: state.id,
    message: failedMessage ?? conditions.find((x) => x.type === "Ready")!.message,
    conditions,
    window: state,
  };
}
