import type * as k8s from "@kubernetes/client-node";
import type { WatchedCache } from "../../src/k8s/informer.js";

/** A cache over a list that a test controls, as an informer's would answer: synced, no events, never known to be fresh. */
export function fixedCache<T extends k8s.KubernetesObject>(objects: () => readonly T[]): WatchedCache<T> {
  return {
    list: (namespace) => objects().filter((o) => !namespace || o.metadata?.namespace === namespace),
    get: (name, namespace) => objects().find((o) => o.metadata?.name === name && o.metadata?.namespace === namespace),
    synced: () => true,
    reflects: () => false,
    on: () => undefined,
    stop: async () => undefined,
  };
}
