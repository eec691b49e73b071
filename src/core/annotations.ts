/** The user-facing annotation names (README "Opting a Deployment in"). */
const PREFIX = "schema-gate.dev/";

export const A = {
  database: `${PREFIX}database`,
  schemaVersion: `${PREFIX}schema-version`,
  databaseSecret: `${PREFIX}database-secret`,
  migrationConfigMap: `${PREFIX}migration-configmap`,
  migrationCommand: `${PREFIX}migration-command`,
  migrationContainer: `${PREFIX}migration-container`,
  onFailure: `${PREFIX}on-failure`,
  timeout: `${PREFIX}timeout`,
  maintenance: `${PREFIX}maintenance`,
  sidecar: `${PREFIX}sidecar`,
  allowDowngrade: `${PREFIX}allow-downgrade`,
  retry: `${PREFIX}retry`,
  abort: `${PREFIX}abort`,
  // Written by the gate only.
  phase: `${PREFIX}phase`,
  desiredReplicas: `${PREFIX}desired-replicas`,
  appliedVersion: `${PREFIX}applied-version`,
  message: `${PREFIX}message`,
  /** The `spec.progressDeadlineSeconds` a paused hold put aside (see admission.ts, NO_PROGRESS_DEADLINE). */
  progressDeadline: `${PREFIX}progress-deadline-seconds`,
  /** On a sidecar's pod: the flag state it was nudged to re-read (see maintenance/sidecar-nudge.ts). */
  flagSeen: `${PREFIX}flag-seen`,
} as const;

/** The gate-owned annotations that describe a hold (with `applied-version`, all the gate writes). */
export const HOLD_ANNOTATIONS = [A.phase, A.desiredReplicas, A.message, A.progressDeadline] as const;

export type Annotations = Record<string, string>;
