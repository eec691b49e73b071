import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../logger.js";

export interface WatchedCache<T extends k8s.KubernetesObject> {
  list(namespace?: string): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  synced(): boolean;
  on(event: "add" | "update" | "delete", handler: (object: T) => void): void;
  stop(): Promise<void>;
}

/**
 * An informer that keeps itself running. The client's informer stops on most watch
 * errors (an expired resourceVersion, a dropped connection); this restarts it after a
 * short back-off, so the cache never silently goes stale.
 */
export async function startInformer<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  list: () => Promise<k8s.KubernetesListObject<T>>,
  log: Logger,
  labelSelector?: string,
): Promise<WatchedCache<T>> {
  const informer = k8s.makeInformer<T>(kc, path, list, labelSelector);
  let synced = false;
  let stopped = false;
  informer.on(k8s.ERROR, (error) => {
    if (stopped) return;
    log.warn({ path, err: error }, "watch ended; restarting informer");
    setTimeout(() => {
      if (!stopped) informer.start().catch((e: unknown) => log.warn({ path, err: e }, "informer restart failed"));
    }, 1000).unref();
  });
  await informer.start();
  synced = true;
  return {
    list: (namespace) => informer.list(namespace),
    get: (name, namespace) => informer.get(name, namespace),
    synced: () => synced,
    on: (event, handler) => informer.on(event, handler),
    stop: async () => {
      stopped = true;
      await informer.stop();
    },
  };
}
