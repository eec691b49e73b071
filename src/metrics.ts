import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Every Prometheus metric schema-gate exposes on /metrics, in one registry. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "schema_gate_process_" });
  return {
    registry,
    admissionDuration: new Histogram({
      name: "schema_gate_admission_duration_seconds",
      help: "Time to answer one AdmissionReview, by webhook and outcome",
      labelNames: ["webhook", "outcome"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    windows: new Counter({
      name: "schema_gate_windows_total",
      help: "Migration windows finished, by result (done, skipped, failed, rolled_back, aborted)",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    migrationDuration: new Histogram({
      name: "schema_gate_migration_duration_seconds",
      help: "Time the migration itself took, by runner and result",
      labelNames: ["runner", "result"] as const,
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
      registers: [registry],
    }),
    downtime: new Histogram({
      name: "schema_gate_downtime_seconds",
      help: "Time from the first member scaled to zero until every member was ready again",
      buckets: [1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900],
      registers: [registry],
    }),
    sessionsTerminated: new Counter({
      name: "schema_gate_sessions_terminated_total",
      help: "Database sessions the gate terminated to get exclusive access",
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
