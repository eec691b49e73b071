import * as k8s from "@kubernetes/client-node";
import { A } from "../core/annotations.js";
import { annotationsOf } from "../core/objects.js";
import { isHolding, Phase } from "../core/phase.js";
import { matchesSelector } from "../core/selector.js";
import { groupMembers } from "../core/window.js";
import { apiStatus } from "../k8s/errors.js";

const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);

/** The group-member side of a window: reads and patches Deployments, CronJobs and pods. */
export class Members {
  private readonly apps: k8s.AppsV1Api;
  private readonly batch: k8s.BatchV1Api;
  private readonly core: k8s.CoreV1Api;

  constructor(kc: k8s.KubeConfig) {
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.batch = kc.makeApiClient(k8s.BatchV1Api);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
  }

  /** The group's Deployments, read fresh from the API (the window never acts on a stale cache). */
  async deployments(namespace: string, group: string): Promise<k8s.V1Deployment[]> {
    const list = await this.apps.listNamespacedDeployment({ namespace });
    return groupMembers(list.items, group);
  }

  async cronJobs(namespace: string, group: string): Promise<k8s.V1CronJob[]> {
    const list = await this.batch.listNamespacedCronJob({ namespace });
    return list.items.filter((c) => annotationsOf(c)[A.database] === group);
  }

  /**
   * A merge patch guarded by the resourceVersion the caller read, so a replica count the
   * gate records is never one a user changed a moment before. Returns false on conflict.
   */
  async patchDeployment(deployment: k8s.V1Deployment, patch: Record<string, unknown>): Promise<boolean> {
    const { name, namespace, resourceVersion } = deployment.metadata!;
    const body = { ...patch, metadata: { ...(patch.metadata as object), resourceVersion } };
    try {
      await this.apps.patchNamespacedDeployment({ name: name!, namespace: namespace!, body }, MERGE);
      return true;
    } catch (error) {
      if (apiStatus(error) === 409) return false;
      throw error;
    }
  }

  /**
   * Patches every member `patchFor` returns a patch for, in parallel (a group of 20 would
   * otherwise wait 20 round trips), each guarded by the resourceVersion it was read at. A
   * member changed meanwhile is read again and reconsidered until none conflicts. Returns
   * the names patched.
   */
  private async patchEach(
    namespace: string,
    group: string,
    what: string,
    patchFor: (d: k8s.V1Deployment) => Record<string, unknown> | undefined,
  ): Promise<string[]> {
    const patched: string[] = [];
    for (let round = 0; ; round++) {
      const work = (await this.deployments(namespace, group)).flatMap((d) => {
        const patch = patchFor(d);
        return patch ? [{ d, patch }] : [];
      });
      const results = await Promise.all(work.map(async ({ d, patch }) => ((await this.patchDeployment(d, patch)) ? d.metadata!.name! : undefined)));
      patched.push(...results.filter((name): name is string => name !== undefined));
      if (results.every((name) => name !== undefined)) return patched;
      if (round > 20) throw new Error(`deployments of group ${group} keep changing; could not ${what}`);
    }
  }

  /**
   * Scales every member to zero, recording its replica count in `desired-replicas` in the
   * same patch (a kill between the two cannot lose it), and suspends the group's CronJobs.
   * Returns the names it changed.
   */
  async quiesce(namespace: string, group: string, message: string): Promise<string[]> {
    const changed = await this.patchEach(namespace, group, "scale them to zero", (d) => {
      const phase = annotationsOf(d)[A.phase];
      if (phase === Phase.Migrating && d.spec?.replicas === 0) return undefined;
      return {
        metadata: {
          annotations: {
            [A.phase]: Phase.Migrating,
            [A.message]: message,
            ...(isHolding(phase) ? {} : { [A.desiredReplicas]: String(d.spec?.replicas ?? 1) }),
          },
        },
        spec: { replicas: 0 },
      };
    });
    for (const c of await this.cronJobs(namespace, group)) {
      if (c.spec?.suspend) continue;
      await this.batch.patchNamespacedCronJob(
        {
          name: c.metadata!.name!,
          namespace,
          body: { metadata: { annotations: { [A.phase]: Phase.Migrating } }, spec: { suspend: true } },
        },
        MERGE,
      );
      changed.push(`cronjob/${c.metadata!.name}`);
    }
    return changed;
  }

  /** Pods of the group's Deployments and of its CronJobs' Jobs that still exist (terminating ones count). */
  async podsLeft(namespace: string, group: string): Promise<string[]> {
    const [deployments, cronJobs, pods] = await Promise.all([
      this.deployments(namespace, group),
      this.cronJobs(namespace, group),
      this.core.listNamespacedPod({ namespace }),
    ]);
    const jobs = new Set(cronJobs.flatMap((c) => (c.status?.active ?? []).map((ref) => ref.name)));
    return pods.items
      .filter(
        (pod) =>
          deployments.some((d) => matchesSelector(pod.metadata?.labels, d.spec?.selector)) ||
          jobs.has(pod.metadata?.labels?.["job-name"]),
      )
      .map((pod) => pod.metadata!.name!);
  }

  /**
   * Returns every held member to its recorded replicas with `applied-version` written
   * (phase Done), and resumes the CronJobs the window suspended.
   */
  async restore(namespace: string, group: string, version: string, message: string): Promise<string[]> {
    const restored = await this.patchEach(namespace, group, "restore them", (d) =>
      isHolding(annotationsOf(d)[A.phase])
        ? {
            metadata: {
              annotations: { [A.phase]: Phase.Done, [A.appliedVersion]: version, [A.message]: message, [A.desiredReplicas]: null },
            },
            spec: { replicas: desiredReplicas(d) },
          }
        : undefined,
    );
    await this.resumeCronJobs(namespace, group);
    return restored;
  }

  async resumeCronJobs(namespace: string, group: string): Promise<void> {
    for (const c of await this.cronJobs(namespace, group)) {
      if (!isHolding(annotationsOf(c)[A.phase])) continue;
      await this.batch.patchNamespacedCronJob(
        { name: c.metadata!.name!, namespace, body: { metadata: { annotations: { [A.phase]: null } }, spec: { suspend: false } } },
        MERGE,
      );
    }
  }

  /** Sets phase and message on every held member (Failed, or back to Migrating on retry). */
  async mark(namespace: string, group: string, phase: Phase, message: string): Promise<void> {
    await this.patchEach(namespace, group, `mark them ${phase}`, (d) => {
      const annotations = annotationsOf(d);
      if (!isHolding(annotations[A.phase])) return undefined;
      if (annotations[A.phase] === phase && annotations[A.message] === message) return undefined;
      return { metadata: { annotations: { [A.phase]: phase, [A.message]: message } } };
    });
  }

  /** Removes `abort` once an aborted window has ended, so the next window is not aborted too. */
  async clearAbort(namespace: string, group: string): Promise<void> {
    await this.patchEach(namespace, group, "remove the abort annotation", (d) =>
      annotationsOf(d)[A.abort] === undefined ? undefined : { metadata: { annotations: { [A.abort]: null } } },
    );
  }

  /**
   * The pod template of the revision before the current one, from the Deployment's
   * ReplicaSets (what `kubectl rollout undo` uses). Undefined for a first revision.
   */
  async previousTemplate(deployment: k8s.V1Deployment): Promise<k8s.V1PodTemplateSpec | undefined> {
    const namespace = deployment.metadata!.namespace!;
    const revision = Number(deployment.metadata?.annotations?.["deployment.kubernetes.io/revision"] ?? "0");
    const sets = await this.apps.listNamespacedReplicaSet({ namespace });
    const owned = sets.items
      .filter((rs) => rs.metadata?.ownerReferences?.some((o) => o.uid === deployment.metadata?.uid))
      .map((rs) => ({ rs, revision: Number(rs.metadata?.annotations?.["deployment.kubernetes.io/revision"] ?? "0") }))
      .filter((r) => r.revision < revision || revision === 0)
      .sort((a, b) => b.revision - a.revision);
    const previous = owned.find((r) => !sameTemplate(r.rs.spec?.template, deployment.spec?.template));
    if (!previous) return undefined;
    const template = structuredClone(previous.rs.spec!.template!);
    delete template.metadata?.labels?.["pod-template-hash"];
    return template;
  }

  async readDeployment(namespace: string, name: string): Promise<k8s.V1Deployment | undefined> {
    try {
      return await this.apps.readNamespacedDeployment({ name, namespace });
    } catch (error) {
      if (apiStatus(error) === 404) return undefined;
      throw error;
    }
  }
}

export function desiredReplicas(deployment: k8s.V1Deployment): number {
  const recorded = Number(annotationsOf(deployment)[A.desiredReplicas]);
  return Number.isInteger(recorded) && recorded >= 0 ? recorded : 1;
}

function sameTemplate(a: k8s.V1PodTemplateSpec | undefined, b: k8s.V1PodTemplateSpec | undefined): boolean {
  const strip = (t: k8s.V1PodTemplateSpec | undefined) => {
    const copy = structuredClone(t ?? {});
    delete copy.metadata?.labels?.["pod-template-hash"];
    return JSON.stringify(copy.spec ?? {});
  };
  return strip(a) === strip(b);
}

/** Whether a Deployment's rollout is complete: the controller saw the spec and every replica is updated and available. */
export function rolloutReady(d: k8s.V1Deployment): boolean {
  const want = d.spec?.replicas ?? 1;
  const status = d.status ?? {};
  return (
    (status.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    (status.updatedReplicas ?? 0) >= want &&
    (status.availableReplicas ?? 0) >= want &&
    (status.replicas ?? 0) <= want
  );
}
