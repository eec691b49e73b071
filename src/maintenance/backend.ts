import * as k8s from "@kubernetes/client-node";
import type { BackendPlacement } from "../config.js";
import { BACKEND_PORT, BACKEND_SERVICE } from "../core/ingress-switch.js";
import {
  BYPASS_KEY,
  BYPASS_MOUNT,
  FLAG_MOUNT,
  PAGE_CONTAINER_BASICS,
  PAGE_VOLUMES,
  SIDECAR_PATH_PREFIX,
} from "../core/sidecar-injection.js";
import { isManaged, MANAGED_BY } from "../k8s/constants.js";
import { apiStatus, ignoreNotFound } from "../k8s/errors.js";
import type { Logger } from "../logger.js";

const BACKEND_LABELS = { ...MANAGED_BY, "app.kubernetes.io/name": BACKEND_SERVICE };
const PAGE_PORT = 8080;

/** The maintenance backend of a namespace: a Deployment running `schema-gate page` and its Service. */
export class MaintenanceBackend {
  private readonly apps: k8s.AppsV1Api;
  private readonly core: k8s.CoreV1Api;

  /** `image`: the gate's own; without it no backend can be made. `placement`: where its pod may run. */
  constructor(
    kc: k8s.KubeConfig,
    private readonly image: string | undefined,
    private readonly log: Logger,
    private readonly placement: BackendPlacement = {},
    private readonly drainSeconds = 0,
  ) {
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
  }

  /** Creates what is missing; true once the backend is ready to be pointed at. */
  async ensure(namespace: string): Promise<boolean> {
    const existing = await this.apps.readNamespacedDeployment({ name: BACKEND_SERVICE, namespace }).catch((error: unknown) => {
      if (apiStatus(error) === 404) return undefined;
      throw error;
    });
    if (!existing && !this.image) {
      this.log.warn({ namespace }, "cannot create the maintenance backend: the gate does not know its image (--image)");
      return false;
    }
    if (!existing) {
      await this.apps.createNamespacedDeployment({ namespace, body: backendDeployment(this.image!, this.placement, this.drainSeconds) });
      this.log.info({ namespace }, "maintenance backend created");
    }
    // Also when only the Deployment was left: someone may have deleted the Service.
    await this.core.createNamespacedService({ namespace, body: backendService() }).catch((error: unknown) => {
      if (apiStatus(error) !== 409) throw error;
    });
    if (!existing) return false;
    const ready = (existing.status?.readyReplicas ?? 0) >= 1 && existing.status?.observedGeneration === existing.metadata?.generation;
    if (!ready) this.log.debug({ namespace }, "waiting for the maintenance backend to be ready");
    return ready;
  }

  /** Removes the backend the gate made (never one somebody else named the same). */
  async remove(namespace: string): Promise<void> {
    const existing = await this.apps.readNamespacedDeployment({ name: BACKEND_SERVICE, namespace }).catch(() => undefined);
    if (!isManaged(existing)) return;
    await ignoreNotFound(this.core.deleteNamespacedService({ name: BACKEND_SERVICE, namespace }));
    await ignoreNotFound(this.apps.deleteNamespacedDeployment({ name: BACKEND_SERVICE, namespace }));
    this.log.info({ namespace }, "maintenance backend removed");
  }
}

function backendService(): k8s.V1Service {
  return {
    metadata: { name: BACKEND_SERVICE, labels: BACKEND_LABELS },
    spec: {
      selector: BACKEND_LABELS,
      ports: [{ name: "http", port: BACKEND_PORT, targetPort: PAGE_PORT, protocol: "TCP" }],
    },
  };
}

function backendDeployment(image: string, placement: BackendPlacement, drainSeconds: number): k8s.V1Deployment {
  const health = { httpGet: { path: `${SIDECAR_PATH_PREFIX}healthz`, port: PAGE_PORT } };
  // Deleted after the Ingresses are restored, the pod still answers what a controller that
  // has not yet reloaded sends it (the kubelet's own sleep: the image needs no shell).
  const drain = drainSeconds > 0 ? { lifecycle: { preStop: { sleep: { seconds: Math.ceil(drainSeconds) } } } } : {};
  return {
    metadata: { name: BACKEND_SERVICE, labels: BACKEND_LABELS },
    spec: {
      replicas: 1,
      selector: { matchLabels: BACKEND_LABELS },
      template: {
        metadata: { labels: BACKEND_LABELS },
        spec: {
          ...(structuredClone(placement) as Pick<k8s.V1PodSpec, "nodeSelector" | "tolerations">),
          automountServiceAccountToken: false,
          containers: [
            {
              name: "page",
              image,
              args: ["page", `--listen=0.0.0.0:${PAGE_PORT}`, `--flag-dir=${FLAG_MOUNT}`, `--bypass-file=${BYPASS_MOUNT}/${BYPASS_KEY}`],
              ports: [{ name: "http", containerPort: PAGE_PORT }],
              readinessProbe: { ...health, periodSeconds: 2 },
              ...drain,
              ...structuredClone(PAGE_CONTAINER_BASICS),
            },
          ],
          volumes: structuredClone(PAGE_VOLUMES),
        },
      },
    },
  };
}
