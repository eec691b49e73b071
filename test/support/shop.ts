import { writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import pg from "pg";
import YAML from "yaml";
import { A } from "../../src/core/annotations.js";
import type { DatabaseTarget } from "../../src/core/database-secret.js";
import type { Step, WindowState } from "../../src/core/window.js";
import { WINDOW_API } from "../../src/core/window-record.js";
import { WindowStore } from "../../src/controller/window-store.js";
import { projectRoot } from "../../src/local/paths.js";
import { pollUntil } from "../../src/util/wait.js";
import { openAppSessions } from "../../src/local/app-sessions.js";
import type { TestEnv } from "./env.js";

export const SHOP_CHART = join(projectRoot, "examples", "shop-chart");
export const SHOP_SERVICES = { orders: 2, billing: 2, catalog: 1 } as const;
export const GROUP = "shop-db";

let databases = 0;

/**
 * A fresh database on the test PostgreSQL with the application's table, and a Secret naming it
 * at `host` (pods on the real node and the gate on the host both reach the bridge address).
 */
export async function shopDatabase(env: TestEnv, namespace: string, host = env.postgres.host): Promise<{ target: DatabaseTarget; url: string }> {
  const pgServer = env.postgres;
  const database = `shop_${process.pid}_${++databases}`;
  const admin = new pg.Client({ connectionString: pgServer.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const url = `postgres://${pgServer.user}:${encodeURIComponent(pgServer.password)}@${host}:${pgServer.port}/${database}`;
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await setup.query("CREATE TABLE items (id int PRIMARY KEY, name text)");
  await setup.end();
  await env.core.createNamespacedSecret({
    namespace,
    body: { metadata: { name: GROUP }, stringData: { url } },
  });
  return {
    url,
    target: { host, port: pgServer.port, user: pgServer.user, password: pgServer.password, database },
  };
}

/** `helm upgrade --install` of the shop chart with the given values (schema version, SQL files, ...). */
export async function releaseShop(env: TestEnv, namespace: string, values: Record<string, unknown>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "schema-gate-values-"));
  const file = join(dir, "values.yaml");
  await writeFile(file, YAML.stringify(values));
  await env.cluster.helm([
    "upgrade", "--install", "shop", SHOP_CHART, "-n", namespace, "--kubeconfig", env.cluster.kubeconfig, "-f", file,
  ]);
}

export async function windowRecord(env: TestEnv, namespace: string, group = GROUP): Promise<WindowState | undefined> {
  return (await new WindowStore(env.kc).read(namespace, group)).state;
}

function pollWindow(env: TestEnv, namespace: string, done: (state: WindowState) => unknown, what: string, timeoutMs: number): Promise<WindowState> {
  return pollUntil(
    async () => {
      const state = await windowRecord(env, namespace);
      return state && done(state) ? state : undefined;
    },
    { timeoutMs, intervalMs: 200, what },
  );
}

/** Waits until the group's window for `version` has a result, or is held failed. */
export function windowSettled(env: TestEnv, namespace: string, version: string, timeoutMs = 90_000): Promise<WindowState> {
  return pollWindow(env, namespace, (s) => s.version === version && (s.result || s.failure),
    `the window to schema version ${version} in ${namespace} to end`, timeoutMs);
}

/** Waits until the group's window has a result (past a failure it was held at: retry, abort). */
export function windowEnded(env: TestEnv, namespace: string, what: string): Promise<WindowState> {
  return pollWindow(env, namespace, (s) => s.result, what, 60_000);
}

export async function deploymentsOf(env: TestEnv, namespace: string): Promise<Map<string, k8s.V1Deployment>> {
  const list = await env.apps.listNamespacedDeployment({ namespace });
  return new Map(list.items.map((d) => [d.metadata!.name!, d]));
}

export async function eventsOf(env: TestEnv, namespace: string, name: string): Promise<k8s.CoreV1Event[]> {
  const list = await env.core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
  // Timestamps have second precision; etcd's revision (resourceVersion) orders creation exactly.
  return list.items.sort((a, b) => Number(a.metadata?.resourceVersion) - Number(b.metadata?.resourceVersion));
}

/** Waits until every shop Deployment is back at its replicas with every pod ready. */
export async function shopReady(env: TestEnv, namespace: string, replicas: Record<string, number> = SHOP_SERVICES): Promise<void> {
  await pollUntil(
    async () => {
      const all = await deploymentsOf(env, namespace);
      return Object.entries(replicas).every(([name, n]) => {
        const d = all.get(name);
        return d?.spec?.replicas === n && (d.status?.readyReplicas ?? 0) === n && (d.status?.replicas ?? 0) === n;
      }) || undefined;
    },
    { timeoutMs: 90_000, intervalMs: 250, what: `the shop Deployments in ${namespace} to be ready` },
  );
}

/** The shop services' database sessions (see src/local/app-sessions.ts). */
export const appSessions = (url: string, names: readonly string[] = Object.keys(SHOP_SERVICES)): Promise<pg.Client[]> =>
  openAppSessions(url, names);

/** A Deployment `ledger-<version>` of group shop-db whose migration is a command run as a Job from its new image. */
export const ledger = (version: string, nodeSelector?: Record<string, string>) =>
  JSON.stringify({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: `ledger-${version}`,
      annotations: {
        [A.database]: GROUP,
        [A.schemaVersion]: version,
        [A.databaseSecret]: "shop-db",
        [A.migrationCommand]: JSON.stringify(["./ledger", "migrate", "--to", version]),
      },
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: `ledger-${version}` } },
      template: {
        metadata: { labels: { app: `ledger-${version}` } },
        spec: {
          ...(nodeSelector ? { nodeSelector } : {}),
          containers: [{ name: "ledger", image: `registry.example/ledger:${version}`, env: [{ name: "MODE", value: "web" }] }],
        },
      },
    },
  });

/** The gate's history table: each applied file with the version that brought it. */
export async function history(url: string): Promise<Array<{ file: string; version: string }>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query("SELECT file, version FROM schema_gate_history ORDER BY file")).rows;
  } finally {
    await client.end();
  }
}

/** Resolves once the group's record is at `step` of the window to `version` (a watch sees every write). */
export function windowEntersStep(env: TestEnv, namespace: string, version: string, step: Step): { entered: Promise<void>; cancel(): void } {
  let controller: AbortController | undefined;
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  const entered = new Promise<void>((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the window to ${version} did not enter step ${step} within 60 s`)), 60_000);
    const path = `/apis/${WINDOW_API.group}/${WINDOW_API.version}/namespaces/${namespace}/${WINDOW_API.plural}`;
    void new k8s.Watch(env.kc).watch(path, {}, (_type, object: { status?: { window?: WindowState } }) => {
      const state = object.status?.window;
      if (state?.version !== version || state.step !== step) return;
      clearTimeout(timer);
      resolve();
      controller?.abort();
    }, (error) => {
      if (error && !cancelled) reject(error);
    }).then((c) => {
      controller = c;
      if (cancelled) c.abort();
    }, reject);
  });
  entered.catch(() => undefined); // awaited by the caller; a cancelled watch is not a failure
  return { entered, cancel: () => { cancelled = true; clearTimeout(timer); controller?.abort(); } };
}

/** The columns of the shop's `items` table, in order. */
export async function columns(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position");
    return rows.map((r) => r.column_name as string);
  } finally {
    await client.end();
  }
}
