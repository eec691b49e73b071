import * as k8s from "@kubernetes/client-node";
import type { TestEnv } from "../test/support/env.js";

/** A pod as the bench looks at it: its version label, whether it is terminating, whether it has ended, whether it is Ready. */
export interface WatchedPod {
  version: string | undefined;
  terminating: boolean;
  /** Its containers have exited (phase Succeeded or Failed): it holds no connection, though its object may stay a while. */
  ended: boolean;
  ready: boolean;
  /** When the watch first saw it, saw it bound to a node, saw a container running, saw it Ready (ms). */
  seenAt: number;
  boundAt?: number;
  runningAt?: number;
  readyAt?: number;
}

/**
 * The namespace's pods as a watch delivers them, so that the bench times each change when
 * it arrives (a poll would add up to its interval at both ends of a downtime of a few
 * hundred milliseconds, and load the apiserver it measures). `until` resolves with the
 * time of the event after which its test first held.
 */
export class PodWatch {
  readonly pods = new Map<string, WatchedPod>();
  private readonly waiters: Array<{ test: (pods: ReadonlyMap<string, WatchedPod>) => boolean; resolve: (at: number) => void }> = [];
  private abort?: AbortController;
  private failure?: Error;

  private constructor(private readonly namespace: string) {}

  static async start(env: TestEnv, namespace: string): Promise<PodWatch> {
    const watch = new PodWatch(namespace);
    const list = await env.core.listNamespacedPod({ namespace });
    const now = Date.now();
    for (const pod of list.items) watch.pods.set(pod.metadata!.name!, describe(pod, now, undefined));
    watch.abort = await new k8s.Watch(env.kc).watch(`/api/v1/namespaces/${namespace}/pods`, { resourceVersion: list.metadata?.resourceVersion },
      (type: string, pod: k8s.V1Pod) => watch.seen(type, pod),
      (error) => {
        if (error && !watch.abort?.signal.aborted) watch.failure = error as Error;
      });
    return watch;
  }

  until(test: (pods: ReadonlyMap<string, WatchedPod>) => boolean, what: string, timeoutMs = 300_000): Promise<number> {
    if (test(this.pods)) return Promise.resolve(Date.now());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(this.failure ?? new Error(`timed out after ${timeoutMs} ms waiting for ${what} in ${this.namespace}`)), timeoutMs);
      this.waiters.push({ test, resolve: (at) => { clearTimeout(timer); resolve(at); } });
    });
  }

  stop(): void {
    this.abort?.abort();
  }

  private seen(type: string, pod: k8s.V1Pod): void {
    const at = Date.now();
    const name = pod.metadata?.name;
    if (!name) return;
    if (type === "DELETED") this.pods.delete(name);
    else if (type === "ADDED" || type === "MODIFIED") this.pods.set(name, describe(pod, at, this.pods.get(name)));
    else return;
    for (const waiter of [...this.waiters]) {
      if (!waiter.test(this.pods)) continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(at);
    }
  }
}

function describe(pod: k8s.V1Pod, at: number, before: WatchedPod | undefined): WatchedPod {
  const ready = pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
  const running = pod.status?.containerStatuses?.some((c) => c.state?.running) ?? false;
  return {
    version: pod.metadata?.labels?.version,
    terminating: Boolean(pod.metadata?.deletionTimestamp),
    ended: pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed",
    ready,
    seenAt: before?.seenAt ?? at,
    boundAt: before?.boundAt ?? (pod.spec?.nodeName ? at : undefined),
    runningAt: before?.runningAt ?? (running ? at : undefined),
    readyAt: before?.readyAt ?? (ready ? at : undefined),
  };
}

/**
 * When the pods of `version` came, relative to `from` (ms): the first and last one seen, the
 * last one bound to a node, running a container, Ready.
 */
export function podStages(pods: ReadonlyMap<string, WatchedPod>, version: string, from: number): Record<string, number> {
  const mine = values(pods).filter((p) => p.version === version);
  const last = (times: Array<number | undefined>) => Math.max(...times.map((t) => t ?? Number.NaN)) - from;
  return {
    "first seen": Math.min(...mine.map((p) => p.seenAt)) - from,
    "last seen": last(mine.map((p) => p.seenAt)),
    "last bound": last(mine.map((p) => p.boundAt)),
    "last running": last(mine.map((p) => p.runningAt)),
    "last ready": last(mine.map((p) => p.readyAt)),
  };
}

const values = (pods: ReadonlyMap<string, WatchedPod>) => [...pods.values()];

/** Fewer than `count` pods serve the old version (one stopped: terminating or gone). */
export const oneStopped = (count: number, version: string) => (pods: ReadonlyMap<string, WatchedPod>) =>
  values(pods).filter((p) => p.version !== version && !p.terminating).length < count;

/** No pod serves the old version any more (each one terminating or gone). */
export const noneServing = (version: string) => (pods: ReadonlyMap<string, WatchedPod>) =>
  values(pods).every((p) => p.version === version || p.terminating);

/** Every pod of an older version has ended (or is gone): none runs any more. */
export const oldEnded = (version: string) => (pods: ReadonlyMap<string, WatchedPod>) =>
  values(pods).every((p) => p.version === version || p.ended);

/** No pod of an older version is left, not even an ended one. */
export const oldGone = (version: string) => (pods: ReadonlyMap<string, WatchedPod>) =>
  values(pods).every((p) => p.version === version);

/** No old pod is left and `count` pods of `version` are Ready. */
export const allReady = (count: number, version: string) => (pods: ReadonlyMap<string, WatchedPod>) =>
  values(pods).every((p) => p.version === version) && values(pods).filter((p) => p.version === version && !p.terminating && p.ready).length === count;
