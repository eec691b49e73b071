import * as k8s from "@kubernetes/client-node";
import { maskCredentials } from "../core/mask.js";
import { buildMigrationJob } from "../core/migration-job.js";
import type { Runner } from "../core/member-spec.js";
import { migrationJobName, StepFailure, type WindowState } from "../core/window.js";
import { apiStatus, ignoreNotFound } from "../k8s/errors.js";
import type { JobState, MigrationJobs } from "./deps.js";

/**
 * The Job runner against the API: the window's Job has a deterministic name, so a
 * restarted gate finds the one it made instead of making another; a failed Job is
 * reported with its reason and the tail of its pod's log.
 */
export class JobRunner implements MigrationJobs {
  private readonly apps: k8s.AppsV1Api;
  private readonly batch: k8s.BatchV1Api;
  private readonly core: k8s.CoreV1Api;

  constructor(kc: k8s.KubeConfig) {
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.batch = kc.makeApiClient(k8s.BatchV1Api);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
  }

  /** The owner is read again from the API: the Job takes its whole pod template, which the caches do not keep. */
  async ensure(owner: k8s.V1Deployment, state: WindowState, runner: Extract<Runner, { kind: "job" }>, deadline: number): Promise<string> {
    const namespace = owner.metadata!.namespace!;
    const name = owner.metadata!.name!;
    const whole = await this.apps.readNamespacedDeployment({ name, namespace }).catch((error: unknown) => {
      if (apiStatus(error) === 404) throw new StepFailure(`deployment ${namespace}/${name}, whose template the migration Job uses, no longer exists`);
      throw error;
    });
    const body = buildMigrationJob(whole, state, runner, (deadline - Date.now()) / 1000) as k8s.V1Job;
    try {
      await this.batch.createNamespacedJob({ namespace, body });
    } catch (error) {
      if (apiStatus(error) !== 409) throw error;
    }
    return migrationJobName(state);
  }

  async state(namespace: string, name: string): Promise<JobState> {
    let job: k8s.V1Job;
    try {
      job = await this.batch.readNamespacedJob({ name, namespace });
    } catch (error) {
      if (apiStatus(error) === 404) return { kind: "missing" };
      throw error;
    }
    // Deleted with foreground propagation, the Job stays until its pods are gone.
    if (job.metadata?.deletionTimestamp) return { kind: "stopping" };
    const conditions = job.status?.conditions ?? [];
    if (conditions.some((c) => c.type === "Complete" && c.status === "True")) return { kind: "complete" };
    const failed = conditions.find((c) => c.type === "Failed" && c.status === "True");
    if (!failed) return { kind: "running" };
    const tail = await this.logTail(namespace, name);
    return {
      kind: "failed",
      // The log tail goes into Events and annotations: no credential the tool printed goes with it.
      message: maskCredentials(
        `migration Job ${namespace}/${name} failed (${failed.reason ?? "Failed"}: ${failed.message ?? "no message"})` +
          (tail ? `; last log lines:\n${tail}` : ""),
      ),
    };
  }

  async stop(namespace: string, name: string): Promise<void> {
    await ignoreNotFound(this.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: "Foreground" }));
  }

  /** The last lines of the Job's newest pod, or a note saying why there are none. */
  private async logTail(namespace: string, job: string): Promise<string> {
    const unavailable = (error: unknown) => `(log not available: ${(error as Error).message.split("\n")[0]})`;
    try {
      const pods = await this.core.listNamespacedPod({ namespace, labelSelector: `job-name=${job}` });
      const pod = pods.items.sort((a, b) => String(b.metadata?.creationTimestamp).localeCompare(String(a.metadata?.creationTimestamp)))[0];
      if (!pod) return "(no pod was created)";
      const terminated = pod.status?.containerStatuses?.find((s) => s.state?.terminated)?.state?.terminated;
      const exit = terminated ? `pod ${pod.metadata!.name} exited with code ${terminated.exitCode}${terminated.message ? `: ${terminated.message}` : ""}` : "";
      const log = await this.core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace, tailLines: 20 }).then(
        (text) => String(text).trimEnd(),
        unavailable,
      );
      return [exit, log].filter(Boolean).join("\n");
    } catch (error) {
      return unavailable(error);
    }
  }
}
