import * as k8s from "@kubernetes/client-node";
import type { ServeConfig } from "./config.js";
import { mutate, mutateIngress, validate } from "./core/admission.js";
import { startWindowController } from "./controller/window-controller.js";
import { eventRecorder } from "./k8s/events.js";
import { cachedAdmissionContext } from "./k8s/group-view.js";
import { startLeaderElection } from "./k8s/leader.js";
import { startInformer, type WatchedCache } from "./k8s/informer.js";
import { startScaleGuard } from "./k8s/scale-guard.js";
import { trimConfigMap, trimCronJob, trimDeployment, trimIngress, trimPod } from "./k8s/trim.js";
import { loadKubeConfig } from "./k8s/kubeconfig.js";
import type { Logger } from "./logger.js";
import { startMaintenanceController } from "./maintenance/controller.js";
import { FlagSwitch } from "./maintenance/switch.js";
import { FLAG_NAME, parseFlag } from "./core/maintenance-flag.js";
import { createMetrics, type Metrics } from "./metrics.js";
import { createWebhookApp, serveHttps, type RunningServer } from "./webhook/server.js";
import { CertificateSource } from "./webhook/tls.js";

export interface Gate {
  port: number;
  stop(): Promise<void>;
}

type Deployments = WatchedCache<k8s.V1Deployment>;

/** Pods that can still hold a connection: ended ones leave the cache (they arrive as deletions). */
const LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed";

/**
 * The caches only the controller side reads: maintenance flags (by name), Ingresses, and
 * the pods and CronJobs the drain step waits on. Each keeps only what is read (trim.ts).
 */
async function controllerCaches(kc: k8s.KubeConfig, log: Logger) {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const networking = kc.makeApiClient(k8s.NetworkingV1Api);
  const batch = kc.makeApiClient(k8s.BatchV1Api);
  const flagSelector = `metadata.name=${FLAG_NAME}`;
  const [flags, ingresses, pods, cronJobs] = await Promise.all([
    startInformer<k8s.V1ConfigMap>(
      kc, "/api/v1/configmaps", (page) => core.listConfigMapForAllNamespaces({ ...page, fieldSelector: flagSelector }),
      log.child({ informer: "maintenance-flags" }), undefined, { transform: trimConfigMap, fieldSelector: flagSelector },
    ),
    startInformer<k8s.V1Ingress>(
      kc, "/apis/networking.k8s.io/v1/ingresses", (page) => networking.listIngressForAllNamespaces(page),
      log.child({ informer: "ingresses" }), undefined, { transform: trimIngress },
    ),
    startInformer<k8s.V1Pod>(
      kc, "/api/v1/pods", (page) => core.listPodForAllNamespaces({ ...page, fieldSelector: LIVE_PODS }),
      log.child({ informer: "pods" }), undefined, { transform: trimPod, fieldSelector: LIVE_PODS },
    ),
    startInformer<k8s.V1CronJob>(
      kc, "/apis/batch/v1/cronjobs", (page) => batch.listCronJobForAllNamespaces(page),
      log.child({ informer: "cronjobs" }), undefined, { transform: trimCronJob },
    ),
  ]);
  return { flags, ingresses, pods, cronJobs };
}

type ControllerCaches = Awaited<ReturnType<typeof controllerCaches>>;

/** Leader election, and under it the window and maintenance controllers. */
function startControllers(
  kc: k8s.KubeConfig,
  config: ServeConfig,
  caches: ControllerCaches & { deployments: Deployments },
  metrics: Metrics,
  image: string | undefined,
  log: Logger,
): { stop(): Promise<void> } {
  const leadership = startLeaderElection(
    kc,
    {
      namespace: config.namespace,
      name: "schema-gate-controller",
      identity: config.identity,
      durationSeconds: config.leaseDurationSeconds,
    },
    log.child({ component: "leader" }),
  );
  leadership.onLost(() => log.warn("window and maintenance controllers paused: leadership lost; they resume if this replica leads again"));
  // The controllers' Events, each asked again as it goes out: a deposed replica sends none (no apiserver refuses a stale Event).
  const events = eventRecorder(kc, "schema-gate", log, () => leadership.isLeader());
  const { deployments, flags, ingresses, pods, cronJobs } = caches;
  const maintenance = startMaintenanceController({
    kc, flags, ingresses, deployments, pods, leadership, events, ...(image ? { image } : {}), backendPlacement: config.backendPlacement,
    backendDrainSeconds: config.ingressPropagationSeconds,
    log: log.child({ component: "maintenance" }),
  });
  const scaleGuard = startScaleGuard(kc, deployments, config.webhookConfigName, leadership, log.child({ component: "scale-guard" }));
  const window = startWindowController({
    kc,
    caches: { deployments, pods, cronJobs },
    leadership,
    events,
    maintenance: new FlagSwitch(kc, ingresses, { propagationMs: config.ingressPropagationSeconds * 1000 }, () => leadership.isLeader()),
    metrics,
    log: log.child({ component: "window" }),
    settleMs: config.settleSeconds * 1000,
  });
  return {
    async stop() {
      scaleGuard.stop();
      await window.stop();
      await maintenance.stop();
      await leadership.stop();
    },
  };
}

/** `schema-gate serve`: wires the caches, the webhook server and the controller together. */
export async function serve(config: ServeConfig, log: Logger): Promise<Gate> {
  const kc = loadKubeConfig(config.kubeconfig);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const metrics = createMetrics();

  const deployments = await startInformer<k8s.V1Deployment>(
    kc, "/apis/apps/v1/deployments", (page) => apps.listDeploymentForAllNamespaces(page), log.child({ informer: "deployments" }),
    undefined, { transform: trimDeployment },
  );
  const image = config.image ?? (await ownImage(kc, config, log));
  const caches = config.controller ? await controllerCaches(kc, log) : undefined;
  const flags = caches?.flags;

  const context = cachedAdmissionContext(deployments, {
    gateUsername: `system:serviceaccount:${config.namespace}:${config.serviceAccount}`,
    excludedNamespaces: new Set(config.excludedNamespaces),
    ...(config.actsIn ? { actsIn: new Set(config.actsIn) } : {}),
    ...(image ? { sidecarImage: image } : {}),
    ...(flags ? { maintenanceOn: (namespace: string) => parseFlag(flags.get(FLAG_NAME, namespace)?.data).enabled } : {}),
  });

  const controllers = caches ? startControllers(kc, config, { deployments, ...caches }, metrics, image, log) : undefined;

  const certs = new CertificateSource(config.tlsCertFile, config.tlsKeyFile, log);
  await certs.reload();
  const app = createWebhookApp({
    context,
    mutate,
    validate,
    mutateIngress,
    metrics,
    log: log.child({ component: "webhook" }),
    cachesReady: () => [deployments, ...Object.values(caches ?? {})].every((cache) => cache.synced()),
    tlsReady: () => certs.healthy(),
  });
  const server: RunningServer = await serveHttps(app, certs, { host: config.host, port: config.port });
  log.info({ port: server.port, namespace: config.namespace }, "schema-gate serving");

  return {
    port: server.port,
    async stop() {
      await controllers?.stop();
      await server.close();
      await deployments.stop();
      await Promise.all(Object.values(caches ?? {}).map((cache) => cache.stop()));
      log.info("schema-gate stopped");
    },
  };
}

/** The gate's image, read from its own Pod: what `kubectl apply -k` (and any image override) deployed. */
async function ownImage(kc: k8s.KubeConfig, config: ServeConfig, log: Logger): Promise<string | undefined> {
  if (!config.podName) {
    log.warn("no --image and no POD_NAME: the maintenance sidecar and backend are not offered");
    return undefined;
  }
  const pod = await kc.makeApiClient(k8s.CoreV1Api).readNamespacedPod({ name: config.podName, namespace: config.namespace });
  return pod.spec?.containers.find((c) => c.name === "schema-gate")?.image ?? pod.spec?.containers[0]?.image;
}
