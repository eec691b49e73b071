import type * as k8s from "@kubernetes/client-node";
import type { EventRecorder } from "../k8s/events.js";
import type { Narrate } from "./deps.js";

/** The longest an Event told `after-downtime` waits for the next one told `now`. */
export const AFTER_DOWNTIME_MS = 10_000;

/**
 * The window's Events, off the window's path: a step hands them over and goes on (a group
 * of 20 would otherwise wait for 20 Events at every step, inside the downtime). They are
 * written per namespace in the order they were told, each batch's Deployments in parallel,
 * and only while this replica leads: a deposed replica's queued Events are dropped.
 *
 * Events told `after-downtime` (a step's Normal news from inside the downtime: 20 members
 * make 80 writes between the quiesce and the restore) wait until the next Event told `now`
 * (the window's end, a warning, a failure), or AFTER_DOWNTIME_MS, and carry the time they
 * were told. The window record and the log say the same at once.
 */
export function narrator(record: EventRecorder, leading: () => boolean, afterDowntimeMs = AFTER_DOWNTIME_MS): {
  narrate: Narrate;
  /** Writes the namespace's held Events now (the downtime is over). */
  release(namespace: string): void;
  flush(maxMs: number): Promise<void>;
} {
  const queues = new Map<string, Promise<void>>();
  const held = new Map<string, { writes: Array<() => Promise<void>>; timer: NodeJS.Timeout }>();
  const enqueue = (namespace: string, write: () => Promise<void>) => {
    // The recorder logs and swallows its failures; the chain never rejects.
    const queued = (queues.get(namespace) ?? Promise.resolve()).then(write, write);
    queues.set(namespace, queued);
    void queued.finally(() => {
      if (queues.get(namespace) === queued) queues.delete(namespace);
    });
  };
  const release = (namespace: string) => {
    const kept = held.get(namespace);
    if (!kept) return;
    held.delete(namespace);
    clearTimeout(kept.timer);
    for (const write of kept.writes) enqueue(namespace, write);
  };
  const narrate: Narrate = (targets, type, reason, message, timing = "now") => {
    const namespace = targets[0]?.metadata?.namespace;
    if (!namespace) return Promise.resolve();
    const at = new Date();
    const write = async () => {
      if (!leading()) return;
      await Promise.all(targets.map((d) => record(eventTarget(d), type, reason, message, at)));
    };
    if (timing === "after-downtime") {
      const kept = held.get(namespace) ?? { writes: [], timer: setTimeout(() => release(namespace), afterDowntimeMs) };
      kept.timer.unref();
      kept.writes.push(write);
      held.set(namespace, kept);
      return Promise.resolve();
    }
    release(namespace);
    enqueue(namespace, write);
    return Promise.resolve();
  };
  return {
    narrate,
    release,
    /** Writes what is held, then waits, at most `maxMs`, for the queued Events to be written (at shutdown). */
    async flush(maxMs) {
      for (const namespace of [...held.keys()]) release(namespace);
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
