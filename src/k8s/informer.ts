import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../logger.js";

export interface WatchedCache<T extends k8s.KubernetesObject> {
  list(namespace?: string): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  /** Synced, and not failing for longer than the grace: what readiness reports. */
  synced(): boolean;
  on(event: "add" | "update" | "delete", handler: (object: T) => void): void;
  stop(): Promise<void>;
}

export interface InformerOptions {
  /** First pause before restarting a failed watch; it doubles up to 30 s. */
  restartDelayMs?: number;
  /** How long a cache may be failing before it counts as not synced (readiness turns false). */
  staleAfterMs?: number;
  now?: () => number;
  /** The client's informer (a fake in unit tests). */
  make?: typeof k8s.makeInformer;
}

/**
 * An informer that keeps itself running. The client's informer stops on most watch
 * errors (an expired resourceVersion, a dropped connection); this restarts it with a
 * growing back-off until a restart succeeds, and a cache that has been failing for
 * longer than the grace reports itself not synced, so `/readyz` says so instead of
 * serving from a cache that silently went stale.
 */
export async function startInformer<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  list: () => Promise<k8s.KubernetesListObject<T>>,
  log: Logger,
  labelSelector?: string,
  options: InformerOptions = {},
): Promise<WatchedCache<T>> {
  const now = options.now ?? (() => performance.now());
  const firstDelay = options.restartDelayMs ?? 1000;
  const informer = (options.make ?? k8s.makeInformer)<T>(kc, path, list, labelSelector);
  let stopped = false;
  let failingSince: number | undefined;
  let restarting = false;

  const restart = (delay: number) => {
    if (stopped) return;
    restarting = true;
    setTimeout(() => {
      if (stopped) return;
      informer.start().then(
        () => {
          restarting = false;
          failingSince = undefined;
          log.info({ path }, "informer restarted");
        },
        (error: unknown) => {
          log.warn({ path, err: error }, "informer restart failed; trying again");
          restart(Math.min(delay * 2, 30_000));
        },
      );
    }, delay).unref?.();
  };

  informer.on(k8s.ERROR, (error) => {
    if (stopped) return;
    failingSince ??= now();
    log.warn({ path, err: error }, "watch ended; restarting informer");
    if (!restarting) restart(firstDelay);
  });
  await informer.start();
  const staleAfter = options.staleAfterMs ?? 30_000;
  return {
    list: (namespace) => informer.list(namespace),
    get: (name, namespace) => informer.get(name, namespace),
    synced: () => failingSince === undefined || now() - failingSince < staleAfter,
    on: (event, handler) => informer.on(event, handler),
    stop: async () => {
      stopped = true;
      await informer.stop();
    },
  };
}
