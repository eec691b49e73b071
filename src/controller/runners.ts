import * as k8s from "@kubernetes/client-node";
import type pg from "pg";
import { readDatabaseSecret, type DatabaseTarget } from "../core/database-secret.js";
import { buildMigrationJob } from "../core/migration-job.js";
import { migrationFiles, type MigrationFile } from "../core/migrations.js";
import { migrationJobName, StepFailure, type WindowState } from "../core/window.js";
import { apiStatus } from "../k8s/errors.js";
import { openSession, type SessionOptions } from "../db/connect.js";
import { MigrationError } from "../db/sql-runner.js";
import { sleep } from "../util/wait.js";


/**
 * Errors that say the database (or the network to it) went away rather than that the
 * migration is wrong: the window retries these until its deadline.
 * 08xxx connection exceptions; 57P01-57P03 shutdown and startup; 53300 too many connections.
 */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof StepFailure) return false;
  const e = error as { code?: string; sqlState?: string; message?: string };
  const state = e.sqlState ?? (typeof e.code === "string" ? e.code : "");
  if (/^08/.test(state) || ["57P01", "57P02", "57P03", "53300"].includes(state)) return true;
  if (["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EPIPE"].includes(state)) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(e.message ?? "");
}

/** The database a group's Secret points at. A missing or malformed Secret is the user's to fix. */
export async function databaseTarget(core: k8s.CoreV1Api, namespace: string, name: string): Promise<DatabaseTarget> {
  let secret: k8s.V1Secret;
  try {
    secret = await core.readNamespacedSecret({ name, namespace });
  } catch (error) {
    if (apiStatus(error) === 404) {
      throw new StepFailure(`Secret ${namespace}/${name} (named by schema-gate.dev/database-secret) does not exist; create it with key "url" or PGHOST/PGUSER/PGPASSWORD/PGDATABASE`);
    }
    if (apiStatus(error) === 403) {
      throw new StepFailure(`the gate may not read Secret ${namespace}/${name}; check the schema-gate ClusterRole grants secrets "get"`);
    }
    throw error;
  }
  const parsed = readDatabaseSecret(`${namespace}/${name}`, secret.data);
  if (!parsed.ok) throw new StepFailure(parsed.problem);
  return parsed.target;
}

export async function sqlFiles(core: k8s.CoreV1Api, namespace: string, name: string): Promise<MigrationFile[]> {
  let map: k8s.V1ConfigMap;
  try {
    map = await core.readNamespacedConfigMap({ name, namespace });
  } catch (error) {
    if (apiStatus(error) === 404) {
      throw new StepFailure(`ConfigMap ${namespace}/${name} (named by schema-gate.dev/migration-configmap) does not exist; create it with the *.sql files`);
    }
    throw error;
  }
  const files = migrationFiles(map.data);
  if (files.length === 0) {
    throw new StepFailure(`ConfigMap ${namespace}/${name} has no *.sql keys; add the migration files (e.g. 001-create.sql)`);
  }
  return files;
}

export async function withSession<T>(target: DatabaseTarget, options: SessionOptions, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await openSession(target, options);
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A SQL runner error as a window failure (its message already names file, line and column). */
export function migrationFailure(error: unknown): unknown {
  if (error instanceof MigrationError && !isConnectionError(error)) return new StepFailure(error.message);
  return error;
}

export interface JobOutcome {
  name: string;
  created: boolean;
}

/**
 * The Job runner: creates the window's Job (a deterministic name, so a restarted gate
 * finds the one it made instead of making another) and waits until it succeeds; a failed
 * Job becomes a StepFailure with its reason and the tail of its pod's log.
 */
export async function runMigrationJob(
  kc: k8s.KubeConfig,
  deployment: k8s.V1Deployment,
  state: WindowState,
  runner: { command: string[]; container?: string },
  options: { deadline: number; stillLeading: () => boolean; onWaiting?: (job: k8s.V1Job) => void },
): Promise<JobOutcome> {
  const batch = kc.makeApiClient(k8s.BatchV1Api);
  const namespace = deployment.metadata!.namespace!;
  const name = migrationJobName(state);
  let created = false;
  try {
    await batch.readNamespacedJob({ name, namespace });
  } catch (error) {
    if (apiStatus(error) !== 404) throw error;
    const body = buildMigrationJob(deployment, state, runner, (options.deadline - Date.now()) / 1000) as k8s.V1Job;
    try {
      await batch.createNamespacedJob({ namespace, body });
      created = true;
    } catch (createError) {
      if (apiStatus(createError) !== 409) throw createError;
    }
  }
  for (;;) {
    if (!options.stillLeading()) throw new Error("leadership lost while waiting for the migration Job");
    const job = await batch.readNamespacedJob({ name, namespace });
    const conditions = job.status?.conditions ?? [];
    if (conditions.some((c) => c.type === "Complete" && c.status === "True")) return { name, created };
    const failed = conditions.find((c) => c.type === "Failed" && c.status === "True");
    if (failed) {
      const tail = await logTail(kc, namespace, name);
      throw new StepFailure(
        `migration Job ${namespace}/${name} failed (${failed.reason ?? "Failed"}: ${failed.message ?? "no message"})` +
          (tail ? `; last log lines:\n${tail}` : ""),
      );
    }
    if (Date.now() > options.deadline) {
      throw new StepFailure(`migration Job ${namespace}/${name} did not finish before the window deadline`);
    }
    options.onWaiting?.(job);
    await sleep(250);
  }
}

/** The last lines of the Job's newest pod, or a note saying why there are none. */
async function logTail(kc: k8s.KubeConfig, namespace: string, job: string): Promise<string> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  try {
    const pods = await core.listNamespacedPod({ namespace, labelSelector: `job-name=${job}` });
    const pod = pods.items.sort((a, b) => String(b.metadata?.creationTimestamp).localeCompare(String(a.metadata?.creationTimestamp)))[0];
    if (!pod) return "(no pod was created)";
    const terminated = pod.status?.containerStatuses?.find((s) => s.state?.terminated)?.state?.terminated;
    const exit = terminated ? `pod ${pod.metadata!.name} exited with code ${terminated.exitCode}${terminated.message ? `: ${terminated.message}` : ""}` : "";
    try {
      const log = await core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace, tailLines: 20 });
      return [exit, String(log).trimEnd()].filter(Boolean).join("\n");
    } catch (error) {
      return [exit, `(log not available: ${(error as Error).message.split("\n")[0]})`].filter(Boolean).join("\n");
    }
  } catch (error) {
    return `(log not available: ${(error as Error).message.split("\n")[0]})`;
  }
}
