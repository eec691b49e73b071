import { createHash } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import { A } from "../core/annotations.js";
import type { Flag } from "../core/maintenance-flag.js";
import { annotationsOf } from "../core/objects.js";
import { matchesSelector } from "../core/selector.js";
import { MERGE_PATCH } from "../k8s/constants.js";
import { apiStatus } from "../k8s/errors.js";
import type { WatchedCache } from "../k8s/informer.js";
import type { Logger } from "../logger.js";

const PARALLEL = 8;

/** What a sidecar shows, as a short token: a pod is nudged when it changes (not for progress). */
export function flagShown(flag: Pick<Flag, "enabled" | "message" | "retryAfter" | "pageHtml">): string {
  const digest = createHash("sha256").update(JSON.stringify([flag.message, flag.retryAfter, flag.pageHtml ?? ""])).digest("hex").slice(0, 12);
  return `${flag.enabled ? "on" : "off"}-${digest}`;
}

/**
 * The kubelet rewrites a mounted ConfigMap when it next syncs the pod: up to about 90 s
 * after the flag changed (syncFrequency, 1 min, plus jitter). Any change to a pod makes it
 * sync at once, so when the flag turns on or off (or its message changes) the gate writes
 * `flag-seen` on each pod of a Deployment with the sidecar: the sidecars follow within about
 * a second. Best effort: a pod it cannot write still follows at the kubelet's next sync.
 * (Patching pods adds no power to what the gate holds: it may patch their Deployments.)
 */
export class SidecarNudge {
  /** Per namespace, pod uid -> the flag state it was last nudged for. Lost on restart: a pod is then nudged once more. */
  private readonly nudged = new Map<string, Map<string, string>>();
  private refused = false;

  constructor(
    private readonly core: Pick<k8s.CoreV1Api, "patchNamespacedPod">,
    private readonly deployments: WatchedCache<k8s.V1Deployment>,
    private readonly pods: WatchedCache<k8s.V1Pod>,
    private readonly log: Logger,
    /** Asked before each write: a replica that stopped leading mid-pass writes no more. */
    private readonly leading: () => boolean = () => true,
  ) {}

  async nudge(namespace: string, flag: Flag): Promise<void> {
    const withSidecar = this.deployments.list(namespace).filter((d) => annotationsOf(d)[A.sidecar] !== undefined);
    if (withSidecar.length === 0) {
      this.nudged.delete(namespace);
      return;
    }
    const state = flagShown(flag);
    const live = this.pods.list(namespace).filter((pod) =>
      !pod.metadata?.deletionTimestamp && withSidecar.some((d) => matchesSelector(pod.metadata?.labels, d.spec?.selector)));
    // What is remembered of the namespace's pods that are gone goes with them.
    const before = this.nudged.get(namespace);
    const seen = new Map(live.flatMap((pod) => {
      const uid = pod.metadata?.uid ?? "";
      const was = before?.get(uid);
      return was === undefined ? [] : [[uid, was] as const];
    }));
    this.nudged.set(namespace, seen);
    const due = live.filter((pod) => seen.get(pod.metadata?.uid ?? "") !== state);
    for (let i = 0; i < due.length; i += PARALLEL) await Promise.all(due.slice(i, i + PARALLEL).map((pod) => this.write(pod, state, seen)));
  }

  private async write(pod: k8s.V1Pod, state: string, seen: Map<string, string>): Promise<void> {
    const { name, namespace, uid } = pod.metadata as { name: string; namespace: string; uid: string };
    if (!this.leading()) return;
    try {
      await this.core.patchNamespacedPod({ name, namespace, body: { metadata: { annotations: { [A.flagSeen]: state } } } }, MERGE_PATCH);
      seen.set(uid, state);
    } catch (error) {
      if (apiStatus(error) === 404) return;
      if (apiStatus(error) === 403 && !this.refused) {
        this.refused = true;
        this.log.warn({ namespace, pod: name }, `may not patch pods in ${namespace}; sidecars follow the flag at the kubelet's next sync (up to about 90 s): grant pods "patch" as the workloads ClusterRole does`);
      }
      if (apiStatus(error) === 403) seen.set(uid, state);
      // Anything else is tried again at the namespace's next pass.
      else this.log.warn({ err: error, namespace, pod: name }, "could not nudge a sidecar's pod to re-read the flag");
    }
  }
}
