import * as k8s from "@kubernetes/client-node";
import { acquireCluster, type Cluster } from "../../src/local/cluster.js";
import { grantNamespace } from "../../src/local/gate.js";
import { startPostgres, type PostgresServer } from "../../src/local/postgres.js";
import { loadKubeConfig } from "../../src/k8s/kubeconfig.js";

export interface TestEnv {
  cluster: Cluster;
  postgres: PostgresServer;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  batch: k8s.BatchV1Api;
  admission: k8s.AdmissionregistrationV1Api;
}

let shared: Promise<TestEnv> | undefined;
const namespaces: string[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

/** Runs at teardown, before namespaces are deleted (webhook configurations, processes). */
export function onTeardown(cleanup: () => Promise<unknown>): void {
  cleanups.push(cleanup);
}

/**
 * The real control plane and PostgreSQL shared by every integration test of one run,
 * started on first use and stopped by the root teardown in hooks.ts.
 */
export function testEnv(): Promise<TestEnv> {
  shared ??= (async () => {
    const [cluster, postgres] = await Promise.all([acquireCluster(), startPostgres()]);
    // Pods on the real node reach PostgreSQL at the host's address on the pod bridge.
    if (cluster.realNode) await postgres.listenAlso(cluster.realNode.hostAddress, cluster.realNode.podSubnet);
    const kc = loadKubeConfig(cluster.kubeconfig);
    return {
      cluster,
      postgres,
      kc,
      core: kc.makeApiClient(k8s.CoreV1Api),
      apps: kc.makeApiClient(k8s.AppsV1Api),
      batch: kc.makeApiClient(k8s.BatchV1Api),
      admission: kc.makeApiClient(k8s.AdmissionregistrationV1Api),
    };
  })();
  return shared;
}

/** A fresh namespace for one test file, deleted at teardown. */
export async function testNamespace(prefix: string): Promise<string> {
  const env = await testEnv();
  const name = `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e4)}`;
  await env.core.createNamespace({ body: { metadata: { name, labels: { "schema-gate.dev/test": "true" } } } });
  namespaces.push(name);
  // The gate acts only where a RoleBinding lets it (README, "RBAC").
  await grantNamespace(env.cluster, name);
  return name;
}

export async function stopTestEnv(): Promise<void> {
  if (!shared) return;
  const env = await shared.catch(() => undefined);
  shared = undefined;
  if (!env) return;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  await Promise.all(
    namespaces.splice(0).map((name) => env.core.deleteNamespace({ name }).catch(() => undefined)),
  );
  await env.postgres.stop();
  if (!process.env.SCHEMA_GATE_KEEP_CLUSTER) await env.cluster.release();
}

export { apiErrorMessage } from "../../src/k8s/errors.js";
