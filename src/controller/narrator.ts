import type * as k8s from "@kubernetes/client-node";
import type { EventRecorder } from "../k8s/events.js";
import type { Narrate } from "./deps.js";

/**
 * The window's Events, off the window's path: a step hands them over and goes on (a group
 * of 20 would otherwise wait for 20 Events at every step, inside the downtime). They are
 * written per namespace in the order they were told, each batch's Deployments in parallel,
 * and only while this replica leads: a deposed replica's queued Events are dropped.
 */
export function narrator(record: EventRecorder, leading: () => boolean): { narrate: Narrate; flush(maxMs: number): Promise<void> } {
  const queues = new Map<string, Promise<void>>();
  const narrate: Narrate = (targets, type, reason, message) => {
    const namespace = targets[0]?.metadata?.namespace;
    if (!namespace) return Promise.resolve();
    const write = async () => {
      if (!leading()) return;
      await Promise.all(targets.map((d) => record(eventTarget(d), type, reason, message)));
    };
    // The recorder logs and swallows its failures; the chain never rejects.
    const queued = (queues.get(namespace) ?? Promise.resolve()).then(write, write);
    queues.set(namespace, queued);
    void queued.finally(() => {
      if (queues.get(namespace) === queued) queues.delete(namespace);
    });
    return Promise.resolve();
  };
  return {
    narrate,
    /** Waits, at most `maxMs`, for the queued Events to be written (at shutdown). */
    async flush(maxMs) {
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, maxMs).unref()));
      await Promise.race([Promise.all([...queues.values()]), limit]);
      clearTimeout(timer);
    },
  };
}

function eventTarget(d: k8s.V1Deployment) {
  return { kind: "Deployment", apiVersion: "apps/v1", name: d.metadata!.name!, namespace: d.metadata!.namespace!, uid: d.metadata!.uid };
}
