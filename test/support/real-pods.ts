import { strict as assert } from "node:assert";
import { join } from "node:path";
import type { V1Deployment, V1Pod } from "@kubernetes/client-node";
import { A } from "../../src/core/annotations.js";
import { FLAG_NAME } from "../../src/core/maintenance-flag.js";
import { projectRoot } from "../../src/local/paths.js";
import type { RealNode } from "../../src/local/real-node.js";
import { run } from "../../src/util/exec.js";
import { pollUntil } from "../../src/util/wait.js";
import { SIDECAR_PORT, SIDECAR_PORT_NAME } from "../../src/core/sidecar-injection.js";
import { testNamespace, type TestEnv } from "./env.js";
import { waitForWebhooks } from "./gate.js";
import { get } from "./real-shop.js";
import { GROUP, shopDatabase } from "./shop.js";

/** `schema-gate <args>` as a user runs it against the local cluster; its stdout. */
export async function schemaGate(env: TestEnv, args: string[]): Promise<string> {
  return (await run(process.execPath, [join(projectRoot, "bin", "schema-gate.js"), ...args, "--kubeconfig", env.cluster.kubeconfig])).stdout;
}

export interface ShopDeploymentOptions {
  name: string;
  image: string;
  replicas: number;
  version?: string;
  annotations?: Record<string, string>;
  /** Extra environment (MIGRATION_SQL for the app's migrate command). */
  env?: Record<string, string>;
}

/** A Deployment of the shop app on the real node, its DATABASE_URL from the group's Secret. */
export function shopDeployment(node: RealNode, o: ShopDeploymentOptions): V1Deployment {
  const env = { SERVICE_NAME: o.name, SCHEMA_VERSION: o.version ?? "", ...o.env };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: o.name, annotations: o.annotations ?? {} },
    spec: {
      replicas: o.replicas,
      selector: { matchLabels: { app: o.name } },
      template: {
        metadata: { labels: { app: o.name } },
        spec: {
          ...node.placement,
          terminationGracePeriodSeconds: 5,
          containers: [{
            name: "app",
            image: o.image,
            imagePullPolicy: "Never",
            env: [
              { name: "DATABASE_URL", valueFrom: { secretKeyRef: { name: GROUP, key: "url" } } },
              ...Object.entries(env).map(([name, value]) => ({ name, value })),
            ],
            ports: [{ containerPort: 8080 }],
            readinessProbe: { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 1 },
          }],
        },
      },
    },
  };
}

/** `kubectl apply` of an object, as a user would. */
export const apply = (env: TestEnv, namespace: string, object: object) =>
  env.cluster.kubectl(["apply", "-n", namespace, "-f", "-"], JSON.stringify(object));

/** Sets the namespace's maintenance flag `enabled` by `kubectl apply`-ing its ConfigMap. */
export async function setFlag(env: TestEnv, namespace: string, enabled: boolean, message = "Upgrading the shop database"): Promise<void> {
  const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: FLAG_NAME }, data: { enabled: String(enabled), message } };
  await apply(env, namespace, configMap);
}

/**
 * The pods of app `name` once every container of each, the native sidecar included, reports
 * ready: from then on their probes change nothing, and the kubelet syncs them on its period.
 */
export async function readyPods(env: TestEnv, namespace: string, name: string, count: number): Promise<V1Pod[]> {
  const allReady = (p: V1Pod) => [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])].every((c) => c.ready);
  return pollUntil(async () => {
    const pods = (await env.core.listNamespacedPod({ namespace, labelSelector: `app=${name}` })).items
      .filter((p) => !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") && allReady(p));
    return pods.length === count ? pods : undefined;
  }, { timeoutMs: 90_000, what: `${count} ready pod(s) of ${name} in ${namespace}` });
}

/**
 * GET / on each address every 100 ms until it answers `status`; resolves with the
 * milliseconds from `since` to each one's first such answer.
 */
export function untilEachAnswers(
  addresses: Array<{ host: string; port: number }>, status: number, since = Date.now(), timeoutMs = 150_000,
): Promise<number[]> {
  const started = since;
  return Promise.all(addresses.map(({ host, port }) => pollUntil(async () => {
    const answer = await get(host, port, "/", 1000).catch(() => undefined);
    return answer?.status === status ? Date.now() - started : undefined;
  }, { timeoutMs, intervalMs: 100, what: `http://${host}:${port}/ to answer ${status}` })));
}

/** min / median / max of samples in seconds. */
export function spread(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  const f = (v: number) => `${(v / 1000).toFixed(1)}s`;
  return `min ${f(s[0]!)}, median ${f(median)}, max ${f(s[s.length - 1]!)} (${s.length} samples: ${s.map(f).join(" ")})`;
}

export const migrationAnnotations = (version: string) => ({
  [A.database]: GROUP,
  [A.schemaVersion]: version,
  [A.databaseSecret]: GROUP,
  // The image's node binary is the host's, at the host's path.
  [A.migrationCommand]: JSON.stringify([process.execPath, "/app/server.mjs", "migrate"]),
});

export interface SidecarApp {
  ns: string;
  /** Service web's ClusterIP (port 80, to the sidecar's port). */
  serviceIP: string;
  pods: V1Pod[];
  /** Each pod's sidecar, by pod IP. */
  sidecars: Array<{ host: string; port: number }>;
}

/**
 * A namespace with the shop app as Deployment `web` annotated for the sidecar, Service
 * `web` to the sidecar's port, optionally an Ingress annotated for maintenance, and the
 * flag on from the start with `flag` as its message.
 */
export async function sidecarApp(
  env: TestEnv, node: RealNode, o: { image: string; replicas: number; ingress: boolean; flag?: string },
): Promise<SidecarApp> {
  const ns = await testNamespace("real-maint");
  await waitForWebhooks(env, ns);
  await shopDatabase(env, ns, node.hostAddress);
  if (o.flag) await setFlag(env, ns, true, o.flag);
  const web = shopDeployment(node, { name: "web", image: o.image, replicas: o.replicas, version: "1", annotations: { [A.sidecar]: "8080" } });
  await apply(env, ns, web);
  await apply(env, ns, { apiVersion: "v1", kind: "Service", metadata: { name: "web" },
    spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: SIDECAR_PORT_NAME }] } });
  if (o.ingress) {
    await apply(env, ns, { apiVersion: "networking.k8s.io/v1", kind: "Ingress", metadata: { name: "shop", annotations: { [A.maintenance]: "true" } },
      spec: { rules: [{ http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "web", port: { number: 80 } } } }] } }] } });
  }
  const pods = await readyPods(env, ns, "web", o.replicas);
  const serviceIP = (await env.core.readNamespacedService({ name: "web", namespace: ns })).spec!.clusterIP!;
  // kube-proxy programs the Service a moment after its endpoints are ready.
  await untilEachAnswers([{ host: serviceIP, port: 80 }], o.flag ? 503 : 200, Date.now(), 20_000);
  const sidecars = pods.map((p) => ({ host: p.status!.podIP!, port: SIDECAR_PORT }));
  const answers = await Promise.all(sidecars.map(async ({ host, port }) => `${host} ${(await get(host, port, "/")).status}`));
  assert.deepEqual(answers, sidecars.map(({ host }) => `${host} ${o.flag ? 503 : 200}`), `each sidecar answers as the flag ${o.flag ? "on" : "off"} at the start`);
  return { ns, serviceIP, pods, sidecars };
}
