import * as k8s from "@kubernetes/client-node";
import type { BackendPlacement } from "../config.js";
import type { EventRecorder } from "../k8s/events.js";
import type { WatchedCache } from "../k8s/informer.js";
import type { Leadership } from "../k8s/leader.js";
import type { Logger } from "../logger.js";
import { SerialWork } from "../util/serial-work.js";
import { MaintenanceBackend } from "./backend.js";
import { SidecarNudge } from "./sidecar-nudge.js";
import { reconcileNamespace, relevantIngress, type NamespacePassDeps } from "./namespace-pass.js";

const RESYNC_MS = 10_000;
const RETRY_MS = 1000;

export interface MaintenanceControllerOptions {
  kc: k8s.KubeConfig;
  flags: WatchedCache<k8s.V1ConfigMap>;
  ingresses: WatchedCache<k8s.V1Ingress>;
  /** With both, pods with the sidecar are nudged to re-read a flag that turned on or off. */
  deployments?: WatchedCache<k8s.V1Deployment>;
  pods?: WatchedCache<k8s.V1Pod>;
  leadership: Leadership;
  events: EventRecorder;
  /** The gate's image: the maintenance backend runs `schema-gate page` from it. */
  image?: string;
  /** Where the backend's pod may run (nodeSelector, tolerations). */
  backendPlacement?: BackendPlacement;
  /** How long the backend's pod keeps serving once deleted (Ingress controllers still routing to it). */
  backendDrainSeconds?: number;
  log: Logger;
}

/**
 * Keeps each namespace's annotated Ingresses in line with its maintenance flag: switched to
 * the maintenance backend (made ready first) while the flag is on, restored exactly when it
 * is off. Level-based: every pass reads the flag and the Ingresses afresh from the caches,
 * so hand edits, `helm upgrade` and a restarted gate all converge the same way.
 */
export function startMaintenanceController(options: MaintenanceControllerOptions): { stop(): Promise<void> } {
  const { kc, flags, ingresses, leadership, log } = options;
  const deps: NamespacePassDeps = {
    flags,
    ingresses,
    core: kc.makeApiClient(k8s.CoreV1Api),
    networking: kc.makeApiClient(k8s.NetworkingV1Api),
    backend: new MaintenanceBackend(kc, options.image, log, options.backendPlacement, options.backendDrainSeconds),
    events: options.events,
    ...(options.deployments && options.pods ? { sidecars: new SidecarNudge(kc.makeApiClient(k8s.CoreV1Api), options.deployments, options.pods, log, () => leadership.isLeader()) } : {}),
    log,
  };
  let stopped = false;
  const work = new SerialWork(() => !stopped && leadership.isLeader());
  const retryLater = (namespace: string) => setTimeout(() => kick(namespace), RETRY_MS).unref();

  const kick = (namespace: string | undefined) => {
    if (!namespace) return;
    work.kick(namespace, async () => {
      try {
        if (!(await reconcileNamespace(deps, namespace))) retryLater(namespace);
      } catch (error) {
        log.warn({ err: error, namespace }, "maintenance pass failed; retrying");
        retryLater(namespace);
      }
    });
  };

  const namespaces = () =>
    new Set([...flags.list().map((c) => c.metadata?.namespace), ...ingresses.list().filter(relevantIngress).map((i) => i.metadata?.namespace)]);
  for (const event of ["add", "update", "delete"] as const) {
    flags.on(event, (c) => kick(c.metadata?.namespace));
    ingresses.on(event, (i) => {
      if (relevantIngress(i)) kick(i.metadata?.namespace);
    });
  }
  const resync = setInterval(() => namespaces().forEach(kick), RESYNC_MS);
  resync.unref();
  leadership.onAcquired(() => namespaces().forEach(kick));

  return {
    async stop() {
      stopped = true;
      clearInterval(resync);
      await work.settle(2500);
    },
  };
}
