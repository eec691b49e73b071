import * as k8s from "@kubernetes/client-node";
import {
  applyIngressChange,
  BACKEND_PORT,
  BACKEND_SERVICE,
  decideIngress,
  isSwitched,
  ORIGINAL_SPEC,
  routesOf,
  switchable,
  type IngressSpec,
} from "../core/ingress-switch.js";
import { claimManualData, FLAG_NAME, FlagKey, parseFlag, type Route } from "../core/maintenance-flag.js";
import {
  BYPASS_KEY,
  BYPASS_MOUNT,
  FLAG_MOUNT,
  PAGE_CONTAINER_BASICS,
  PAGE_VOLUMES,
  SIDECAR_PATH_PREFIX,
} from "../core/sidecar-injection.js";
import { apiStatus } from "../k8s/errors.js";
import type { EventRecorder } from "../k8s/events.js";
import type { WatchedCache } from "../k8s/informer.js";
import type { Leadership } from "../k8s/leader.js";
import type { Logger } from "../logger.js";
import { SerialWork } from "../util/serial-work.js";

const MERGE = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
const MANAGED = { "app.kubernetes.io/managed-by": "schema-gate" };
const BACKEND_LABELS = { ...MANAGED, "app.kubernetes.io/name": BACKEND_SERVICE };
const PAGE_PORT = 8080;
const RESYNC_MS = 10_000;
const RETRY_MS = 1000;

export interface MaintenanceControllerOptions {
  kc: k8s.KubeConfig;
  flags: WatchedCache<k8s.V1ConfigMap>;
  ingresses: WatchedCache<k8s.V1Ingress>;
  leadership: Leadership;
  events: EventRecorder;
  /** The gate's image: the maintenance backend runs `schema-gate page` from it. */
  image?: string;
  log: Logger;
}

/**
 * Keeps each namespace's annotated Ingresses in line with its maintenance flag: switched to
 * the maintenance backend (made ready first) while the flag is on, restored exactly when it
 * is off. Level-based: every pass reads the flag and the Ingresses afresh from the caches,
 * so hand edits, `helm upgrade` and a restarted gate all converge the same way.
 */
export function startMaintenanceController(options: MaintenanceControllerOptions): { stop(): Promise<void> } {
  const { kc, flags, ingresses, leadership, events, log } = options;
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const networking = kc.makeApiClient(k8s.NetworkingV1Api);
  let stopped = false;
  const work = new SerialWork(() => !stopped && leadership.isLeader());
  const retryLater = (namespace: string) => setTimeout(() => kick(namespace), RETRY_MS).unref();

  const kick = (namespace: string | undefined) => {
    if (!namespace) return;
    work.kick(namespace, async () => {
      try {
        if (!(await reconcile(namespace))) retryLater(namespace);
      } catch (error) {
        log.warn({ err: error, namespace }, "maintenance pass failed; retrying");
        retryLater(namespace);
      }
    });
  };

  const namespaces = () =>
    new Set([
      ...flags.list().map((c) => c.metadata?.namespace),
      ...ingresses.list().filter((i) => switchable(i) || isSwitched(i)).map((i) => i.metadata?.namespace),
    ]);
  for (const event of ["add", "update", "delete"] as const) {
    flags.on(event, (c) => kick(c.metadata?.namespace));
    ingresses.on(event, (i) => {
      if (switchable(i) || isSwitched(i)) kick(i.metadata?.namespace);
    });
  }
  const resync = setInterval(() => namespaces().forEach(kick), RESYNC_MS);
  resync.unref();
  void leadership.acquired().then(() => namespaces().forEach(kick));

  /** One pass over a namespace; false asks for another pass shortly (waiting on something). */
  async function reconcile(namespace: string): Promise<boolean> {
    const configMap = flags.get(FLAG_NAME, namespace);
    const flag = parseFlag(configMap?.data);
    const claim = claimManualData(flag, new Date());
    if (claim && configMap) {
      await core.patchNamespacedConfigMap({ name: FLAG_NAME, namespace, body: { data: claim } }, MERGE);
      log.info({ namespace }, "maintenance turned on by hand; recorded owner manual");
      await events(flagTarget(configMap), "Normal", "MaintenanceOn", `maintenance turned on in ${namespace} (owner manual)`);
    }

    const relevant = ingresses.list(namespace).filter((i) => switchable(i) || isSwitched(i));
    // The backend is ready before any Ingress points at it.
    if (flag.enabled && relevant.some(switchable) && !(await ensureBackend(namespace))) return false;

    let settled = true;
    const routes: Route[] = [];
    for (const ingress of relevant) {
      const change = decideIngress(ingress, flag.enabled);
      const name = ingress.metadata!.name!;
      if (change) {
        try {
          await networking.replaceNamespacedIngress({ name, namespace, body: applyIngressChange(ingress, change) });
        } catch (error) {
          // Someone wrote it meanwhile: the next pass sees their version.
          if (apiStatus(error) === 409) {
            settled = false;
            continue;
          }
          throw error;
        }
        const restored = change.originalSpec === undefined;
        if (restored || !isSwitched(ingress)) {
          log.info({ namespace, ingress: name, restored }, restored ? "ingress restored" : "ingress switched to maintenance");
          await events(
            { kind: "Ingress", apiVersion: "networking.k8s.io/v1", name, namespace, uid: ingress.metadata?.uid },
            "Normal",
            restored ? "IngressRestored" : "IngressSwitched",
            restored
              ? "maintenance is off: the Ingress's own spec is back"
              : `maintenance is on: every backend now points at Service ${BACKEND_SERVICE} (original spec kept in annotation ${ORIGINAL_SPEC})`,
          );
        } else {
          log.info({ namespace, ingress: name }, "ingress changed during maintenance; kept switched, new spec recorded");
        }
      }
      if (flag.enabled && switchable(ingress)) {
        const original = change?.originalSpec ?? ingress.metadata?.annotations?.[ORIGINAL_SPEC];
        if (original) routes.push(...(await routesFor(namespace, JSON.parse(original) as IngressSpec)));
      }
    }

    if (flag.enabled && configMap) {
      const text = JSON.stringify(routes);
      if ((configMap.data?.[FlagKey.routes] ?? "[]") !== text) {
        await core.patchNamespacedConfigMap({ name: FLAG_NAME, namespace, body: { data: { [FlagKey.routes]: text } } }, MERGE);
      }
    }
    if (!flag.enabled && settled && !relevant.some(isSwitched)) await removeBackend(namespace);
    return settled;
  }

  /** Where each path of an Ingress's real spec leads, for the bypass token. */
  async function routesFor(namespace: string, spec: IngressSpec): Promise<Route[]> {
    const named = new Map<string, number | undefined>();
    for (const rule of spec.rules ?? []) {
      for (const path of rule.http?.paths ?? []) {
        const service = path.backend.service;
        if (service?.port?.name && !named.has(`${service.name}/${service.port.name}`)) {
          const found = await core.readNamespacedService({ name: service.name, namespace }).catch(() => undefined);
          named.set(`${service.name}/${service.port.name}`, found?.spec?.ports?.find((p) => p.name === service.port!.name)?.port);
        }
      }
    }
    return routesOf(spec, (service, port) => {
      const number = port.number ?? named.get(`${service}/${port.name}`);
      return number === undefined ? undefined : `http://${service}.${namespace}.svc:${number}`;
    });
  }

  /** The maintenance backend: a Deployment running the page and its Service. True once it is ready. */
  async function ensureBackend(namespace: string): Promise<boolean> {
    const existing = await apps.readNamespacedDeployment({ name: BACKEND_SERVICE, namespace }).catch((error: unknown) => {
      if (apiStatus(error) === 404) return undefined;
      throw error;
    });
    if (!existing && !options.image) {
      log.warn({ namespace }, "cannot create the maintenance backend: the gate does not know its image (--image)");
      return false;
    }
    if (!existing) {
      await apps.createNamespacedDeployment({ namespace, body: backendDeployment(options.image!) });
      log.info({ namespace }, "maintenance backend created");
    }
    // Also when only the Deployment was left: someone may have deleted the Service.
    await core.createNamespacedService({ namespace, body: backendService() }).catch((error: unknown) => {
      if (apiStatus(error) !== 409) throw error;
    });
    if (!existing) return false;
    const ready = (existing.status?.readyReplicas ?? 0) >= 1 && existing.status?.observedGeneration === existing.metadata?.generation;
    if (!ready) log.debug({ namespace }, "waiting for the maintenance backend to be ready");
    return ready;
  }

  async function removeBackend(namespace: string): Promise<void> {
    const ignoreMissing = (error: unknown) => {
      if (apiStatus(error) !== 404) throw error;
    };
    const existing = await apps.readNamespacedDeployment({ name: BACKEND_SERVICE, namespace }).catch(() => undefined);
    if (existing?.metadata?.labels?.["app.kubernetes.io/managed-by"] !== "schema-gate") return;
    await core.deleteNamespacedService({ name: BACKEND_SERVICE, namespace }).catch(ignoreMissing);
    await apps.deleteNamespacedDeployment({ name: BACKEND_SERVICE, namespace }).catch(ignoreMissing);
    log.info({ namespace }, "maintenance backend removed");
  }

  return {
    async stop() {
      stopped = true;
      clearInterval(resync);
      await work.settle(2500);
    },
  };
}

const flagTarget = (configMap: k8s.V1ConfigMap) => ({
  kind: "ConfigMap",
  apiVersion: "v1",
  name: FLAG_NAME,
  namespace: configMap.metadata!.namespace!,
  uid: configMap.metadata?.uid,
});

function backendService(): k8s.V1Service {
  return {
    metadata: { name: BACKEND_SERVICE, labels: BACKEND_LABELS },
    spec: {
      selector: BACKEND_LABELS,
      ports: [{ name: "http", port: BACKEND_PORT, targetPort: PAGE_PORT, protocol: "TCP" }],
    },
  };
}

function backendDeployment(image: string): k8s.V1Deployment {
  const health = { httpGet: { path: `${SIDECAR_PATH_PREFIX}healthz`, port: PAGE_PORT } };
  return {
    metadata: { name: BACKEND_SERVICE, labels: BACKEND_LABELS },
    spec: {
      replicas: 1,
      selector: { matchLabels: BACKEND_LABELS },
      template: {
        metadata: { labels: BACKEND_LABELS },
        spec: {
          automountServiceAccountToken: false,
          containers: [
            {
              name: "page",
              image,
              args: ["page", `--listen=0.0.0.0:${PAGE_PORT}`, `--flag-dir=${FLAG_MOUNT}`, `--bypass-file=${BYPASS_MOUNT}/${BYPASS_KEY}`],
              ports: [{ name: "http", containerPort: PAGE_PORT }],
              readinessProbe: { ...health, periodSeconds: 2 },
              ...structuredClone(PAGE_CONTAINER_BASICS),
            },
          ],
          volumes: structuredClone(PAGE_VOLUMES),
        },
      },
    },
  };
}
