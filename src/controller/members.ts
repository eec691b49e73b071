import * as k8s from "@kubernetes/client-node";
import { A } from "../core/annotations.js";
import type { MergePatch, ReplicaSetLike } from "../core/member-patches.js";
import { annotationsOf } from "../core/objects.js";
import { podsBlockingDrain, type PodLike } from "../core/window-policy.js";
import { groupMembers } from "../core/window.js";
import { JSON_PATCH, MERGE_PATCH } from "../k8s/constants.js";
import { apiStatus, ignoreNotFound } from "../k8s/errors.js";
import { guardedPatch, testsStillHold } from "../k8s/guarded-patch.js";
import type { WatchedCache } from "../k8s/informer.js";
import type { Group, GroupMembers } from "./deps.js";

/** The informers a window's waiting passes read instead of listing (trimmed objects, see k8s/trim.ts). */
export interface MemberCaches {
  deployments: WatchedCache<k8s.V1Deployment>;
  pods: WatchedCache<k8s.V1Pod>;
  cronJobs: WatchedCache<k8s.V1CronJob>;
}

const ofGroup = (cronJobs: readonly k8s.V1CronJob[], group: Group) => cronJobs.filter((c) => annotationsOf(c)[A.database] === group.name);

/**
 * A group's members: Deployments, CronJobs, pods and ReplicaSets read fresh from the API
 * for every decision and write, and from the caches for the passes that only wait.
 */
export class Members implements GroupMembers {
  private readonly apps: k8s.AppsV1Api;
  private readonly batch: k8s.BatchV1Api;
  private readonly core: k8s.CoreV1Api;

  constructor(kc: k8s.KubeConfig, private readonly caches: MemberCaches) {
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.batch = kc.makeApiClient(k8s.BatchV1Api);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
  }

  async read(namespace: string, group: string): Promise<Group> {
    const list = await this.apps.listNamespacedDeployment({ namespace });
    return { namespace, name: group, deployments: groupMembers(list.items, group) };
  }

  cached(namespace: string, group: string): Group {
    return { namespace, name: group, deployments: groupMembers(this.caches.deployments.list(namespace), group) };
  }

  async cronJobs(group: Group): Promise<k8s.V1CronJob[]> {
    const list = await this.batch.listNamespacedCronJob({ namespace: group.namespace });
    return ofGroup(list.items, group);
  }

  async patchCronJob(namespace: string, name: string, patch: MergePatch): Promise<void> {
    await this.batch.patchNamespacedCronJob({ name, namespace, body: patch }, MERGE_PATCH);
  }

  /**
   * `patch` written only over the member as it was read: its spec and annotations, which
   * the patch was decided on (see guardedPatch), so a replica count the gate records is
   * never one a user changed a moment before. False when the member changed (or is gone),
   * or the apiserver gave up on its own retries under concurrent writes (409).
   */
  private async patchDeployment(deployment: k8s.V1Deployment, patch: MergePatch): Promise<boolean> {
    const name = deployment.metadata!.name!;
    const namespace = deployment.metadata!.namespace!;
    try {
      await this.apps.patchNamespacedDeployment({ name, namespace, body: guardedPatch(deployment, patch) }, JSON_PATCH);
      return true;
    } catch (error) {
      // Gone, or still conflicting after the apiserver's own retries of a patch without a resourceVersion: read again.
      if (apiStatus(error) === 404 || apiStatus(error) === 409) return false;
      if (apiStatus(error) !== 422) throw error;
      // A failed guard and an invalid patch are both 422: the member as it is now tells which.
      const current = await this.apps.readNamespacedDeployment({ name, namespace }).catch((e: unknown) => {
        if (apiStatus(e) === 404) return undefined;
        throw e;
      });
      if (current && testsStillHold(deployment, current)) throw error;
      return false;
    }
  }

  /** In parallel (a group of 20 would otherwise wait 20 round trips); the first round uses the pass's read. */
  async patchEach(
    group: Group, what: string, patchFor: (d: k8s.V1Deployment) => MergePatch | undefined,
    afterEach?: (patched: k8s.V1Deployment) => Promise<void>,
  ): Promise<string[]> {
    const patched: string[] = [];
    let members = group.deployments;
    for (let round = 0; ; round++) {
      const work = members.flatMap((d) => {
        const patch = patchFor(d);
        return patch ? [{ d, patch }] : [];
      });
      const results = await Promise.all(work.map(async ({ d, patch }) => {
        if (!(await this.patchDeployment(d, patch))) return undefined;
        await afterEach?.(d);
        return d.metadata!.name!;
      }));
      patched.push(...results.filter((name): name is string => name !== undefined));
      if (results.every((name) => name !== undefined)) return patched;
      if (round > 20) throw new Error(`deployments of group ${group.name} keep changing; could not ${what}`);
      members = (await this.read(group.namespace, group.name)).deployments;
    }
  }

  async pods(namespace: string, from: "cache" | "api"): Promise<readonly PodLike[]> {
    return from === "cache" ? this.caches.pods.list(namespace) : (await this.core.listNamespacedPod({ namespace })).items;
  }

  async podsLeft(group: Group, from: "cache" | "api", options: { cronJobs?: boolean } = {}): Promise<string[]> {
    const [cronJobs, pods] = from === "cache"
      ? [ofGroup(this.caches.cronJobs.list(group.namespace), group), this.caches.pods.list(group.namespace)]
      : await Promise.all([
        options.cronJobs === false ? [] : this.cronJobs(group),
        this.core.listNamespacedPod({ namespace: group.namespace }).then((list) => list.items),
      ]);
    const runs = new Set(cronJobs.flatMap((c) => (c.status?.active ?? []).flatMap((ref) => (ref.name ? [ref.name] : []))));
    return podsBlockingDrain(pods, group.deployments, runs);
  }

  /**
   * Scales each member to zero (`patchFor`, as patchEach) and stops its pods as soon as its own
   * patch is in, not once every member's is: its ReplicaSets to zero and its pods deleted
   * (each with its own grace period), what the Deployment and ReplicaSet controllers would do
   * next, without queueing behind the controller-manager's client rate limit (20 requests a
   * second by default; it took 2 s for 20 Deployments). So the members stop together. The
   * ReplicaSets and pods are read once, beside the patches: a paused member makes no new
   * ReplicaSet. A member at zero already (a quiesce run again) has its pods stopped too.
   * Returns the members patched and the resourceVersion of that pod list.
   */
  async scaleToZero(group: Group, patchFor: (d: k8s.V1Deployment) => MergePatch | undefined): Promise<{ scaled: string[]; podsListedAt?: string }> {
    const { namespace } = group;
    const listed = Promise.all([
      this.apps.listNamespacedReplicaSet({ namespace }),
      this.core.listNamespacedPod({ namespace }),
    ]);
    listed.catch(() => undefined); // awaited below
    const stopped = new Set<string>();
    const stop = async (member: k8s.V1Deployment) => {
      stopped.add(member.metadata!.name!);
      const [sets, pods] = await listed;
      await this.stopMemberPods(member, sets.items, pods.items);
    };
    const scaled = await this.patchEach(group, "scale them to zero", patchFor, stop);
    await Promise.all(group.deployments.filter((d) => !stopped.has(d.metadata!.name!)).map(stop));
    return { scaled, podsListedAt: (await listed)[1].metadata?.resourceVersion };
  }

  /** One member's ReplicaSets to zero and their running pods deleted; only after the member's own patch to zero. */
  private async stopMemberPods(member: k8s.V1Deployment, sets: readonly k8s.V1ReplicaSet[], pods: readonly k8s.V1Pod[]): Promise<void> {
    const namespace = member.metadata!.namespace!;
    const owned = sets.filter((rs) => rs.metadata?.ownerReferences?.some((o) => o.controller && o.uid === member.metadata?.uid));
    await Promise.all(owned.filter((rs) => (rs.spec?.replicas ?? 0) > 0).map((rs) =>
      ignoreNotFound(this.apps.patchNamespacedReplicaSet({ name: rs.metadata!.name!, namespace, body: { spec: { replicas: 0 } } }, MERGE_PATCH))));
    const uids = new Set(owned.map((rs) => rs.metadata?.uid));
    const running = pods.filter((p) => !p.metadata?.deletionTimestamp && p.metadata?.ownerReferences?.some((o) => o.controller && uids.has(o.uid)));
    await Promise.all(running.map((p) => ignoreNotFound(this.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace }))));
  }

  /** Whether the pod cache shows the pods as they were at `resourceVersion` or later (see WatchedCache.reflects). */
  podsCacheReflects(resourceVersion: string): boolean {
    return this.caches.pods.reflects(resourceVersion);
  }

  async replicaSets(namespace: string): Promise<ReplicaSetLike[]> {
    return (await this.apps.listNamespacedReplicaSet({ namespace })).items;
  }
}
