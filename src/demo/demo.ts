import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import pg from "pg";
import YAML from "yaml";
import { FLAG_NAME, parseFlag } from "../core/maintenance-flag.js";
import { describeStep, STEPS, type WindowState } from "../core/window.js";
import { WindowStore } from "../controller/window-store.js";
import type { Cluster } from "../local/cluster.js";
import { grantNamespace, type LocalGateIdentity } from "../local/gate.js";
import { openAppSessions } from "../local/app-sessions.js";
import { projectRoot } from "../local/paths.js";
import type { PostgresServer } from "../local/postgres.js";
import { localSite, realNodeSite, type DemoSite } from "./sites.js";
import { pollUntil, sleep } from "../util/wait.js";
import { loadKubeConfig } from "../k8s/kubeconfig.js";

export const DEMO_NAMESPACE = "shop-demo";
export const DEMO_GROUP = "shop-db";
const CHART = join(projectRoot, "examples", "shop-chart");
/** The chart as a user in the checkout names it. */
const CHART_PATH = "examples/shop-chart";
const V1 = { "001-items.sql": "CREATE TABLE items (id int PRIMARY KEY, name text);\nINSERT INTO items VALUES (1, 'tea'), (2, 'cake');" };
/** Needs exclusive access: ALTER TABLE waits for every session that touched the table. */
const V2 = { ...V1, "002-price.sql": "ALTER TABLE items ADD COLUMN price_cents int NOT NULL DEFAULT 0;\nCREATE INDEX items_price ON items (price_cents);" };

export interface DemoResult {
  window: WindowState;
  columns: string[];
  deployments: Array<{ name: string; replicas: number; ready: number; version?: string }>;
  pageSeenWhileOn: boolean;
  /** On the real node: what answered through the Ingress during the upgrade, runs of the same outcome in order (e.g. app 1, page, app 2). */
  throughIngress?: string[];
}

type Say = (line: string) => void;

/**
 * The demo: the shop chart (three services, one database) installed with Helm, then a
 * `helm upgrade` whose migration needs the database to itself, through a window shown as it
 * happens. Runs against any cluster and PostgreSQL; `npm run demo` gives it the local ones.
 */
export async function runDemo(
  cluster: Cluster,
  postgres: PostgresServer,
  say: Say,
  /** A gate identity prepared already (the test suite's), for a cluster without a real node; otherwise one is made. */
  identity?: LocalGateIdentity,
  /** `--keep`: called after the window with the gate still running; the demo ends when it returns. */
  keep?: (running: { pageUrl: string }) => Promise<void>,
): Promise<DemoResult> {
  const kc = loadKubeConfig(cluster.kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const helm = (args: string[]) => cluster.helm([...args, "-n", DEMO_NAMESPACE, "--kubeconfig", cluster.kubeconfig]);
  const node = cluster.realNode;
  say(node
    ? `• the local cluster has a real node (${node.name}): the shop's pods really run there, the gate is installed in-cluster, HAProxy serves the Ingress`
    : `• no real node, so the shop runs on kwok nodes (its pods are not run) and the gate as a local process: ${cluster.realNodeProblem ?? "unknown reason"}`);

  say("• preparing: namespace, database, the gate");
  await cluster.kubectl(["delete", "namespace", DEMO_NAMESPACE, "--ignore-not-found", "--wait"]);
  await core.createNamespace({ body: { metadata: { name: DEMO_NAMESPACE } } });
  await grantNamespace(cluster, DEMO_NAMESPACE);
  // Pods on the real node reach PostgreSQL at the host's address on the pod bridge.
  if (node) await postgres.listenAlso(node.hostAddress, node.podSubnet);
  const database = `shop_demo_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const url = `postgres://${postgres.user}:${encodeURIComponent(postgres.password)}@${node?.hostAddress ?? postgres.host}:${postgres.port}/${database}`;
  await core.createNamespacedSecret({ namespace: DEMO_NAMESPACE, body: { metadata: { name: DEMO_GROUP }, stringData: { url } } });

  const ctx = { cluster, kc, core, namespace: DEMO_NAMESPACE, say };
  const site = node ? await realNodeSite(node, ctx) : await localSite(ctx, identity);
  try {
    const values = async (schemaVersion: string, sql: Record<string, string>) => {
      const dir = await mkdtemp(join(tmpdir(), "schema-gate-demo-"));
      await writeFile(join(dir, "values.yaml"), YAML.stringify(site.values(schemaVersion, sql)));
      return join(dir, "values.yaml");
    };

    say(`• helm install shop (schema version 1): orders, billing, catalog share database "${DEMO_GROUP}"`);
    await helm(["upgrade", "--install", "shop", CHART, "-f", await values("1", V1)]);
    await follow(kc, core, "1", say, site);
    await rolloutReady(apps, say);

    say("• the services connect; one leaves a transaction open on the table (as real apps do)");
    const sessions = await openAppSessions(url, ["orders", "billing", "catalog"]);
    const watch = await site.watchUpgrade(say);

    say("• helm upgrade shop (schema version 2: ALTER TABLE items, which needs the table to itself)");
    const started = Date.now();
    await helm(["upgrade", "shop", CHART, "-f", await values("2", V2)]);
    say(`  helm returned in ${((Date.now() - started) / 1000).toFixed(1)}s with every service held: paused, its old pods serving until the window stops them`);
    const { state, pageSeenWhileOn } = await follow(kc, core, "2", say, site);
    await rolloutReady(apps, say);
    const throughIngress = await watch.stop("2");
    for (const client of sessions) await client.end().catch(() => undefined);

    const { columns, deployments } = await finalState(apps, url);
    say("");
    say(`final state: window ${state.result}; table items has columns ${columns.join(", ")}`);
    for (const d of deployments) say(`  ${d.name.padEnd(8)} ${d.ready}/${d.replicas} ready, schema version ${d.version}`);
    await keep?.({ pageUrl: site.pageUrl });
    return { window: state, columns, deployments, pageSeenWhileOn, ...(throughIngress ? { throughIngress } : {}) };
  } finally {
    await site.stop();
  }
}

/** Prints the window's steps as they happen, with durations, sessions and the page URL. */
async function follow(kc: k8s.KubeConfig, core: k8s.CoreV1Api, version: string, say: Say, site: DemoSite): Promise<{ state: WindowState; pageSeenWhileOn: boolean }> {
  const shown = new Set<string>();
  let pageShown = false;
  let pageSeenWhileOn = false;
  let lastStep = "";
  const started = Date.now();
  const records = new WindowStore(kc);
  for (;;) {
    const state = (await records.read(DEMO_NAMESPACE, DEMO_GROUP).catch(() => ({ state: undefined }))).state;
    if (state && state.version === version) {
      for (const step of STEPS) {
        const ms = state.timings[step];
        if (ms === undefined || shown.has(step)) continue;
        shown.add(step);
        let line = `  ✓ ${step.padEnd(16)} ${(ms / 1000).toFixed(2)}s`;
        if (step === "terminate" && state.sessions) {
          line += `  terminated ${state.sessions.length} session(s): ${state.sessions.map((s) => `${s.applicationName || s.user} (${s.state})`).join(", ")}`;
        }
        say(line);
      }
      if (!state.result && state.step !== lastStep) {
        lastStep = state.step;
        say(`  … ${describeStep(state.step)}`);
      }
      const flag = await core.readNamespacedConfigMap({ name: FLAG_NAME, namespace: DEMO_NAMESPACE }).catch(() => undefined);
      if (parseFlag(flag?.data).enabled) {
        if (!pageShown) say(`  ${site.pageLine}`);
        pageShown = true;
        pageSeenWhileOn ||= await site.pageServed();
      }
      if (state.result || state.failure) {
        say(state.failure ? `  ✗ failed: ${state.failure.message}` : `  window ${state.result} in ${((Date.now() - Date.parse(state.startedAt)) / 1000).toFixed(1)}s`);
        return { state, pageSeenWhileOn };
      }
    } else if (Date.now() - started > 120_000) {
      throw new Error(`no window for schema version ${version} appeared in 2 minutes; is the gate running?`);
    }
    await sleep(100);
  }
}

async function rolloutReady(apps: k8s.AppsV1Api, say: Say): Promise<void> {
  await pollUntil(
    async () => {
      const list = await apps.listNamespacedDeployment({ namespace: DEMO_NAMESPACE });
      const members = list.items.filter((d) => d.metadata?.annotations?.["schema-gate.dev/database"]);
      return members.length === 3 && members.every((d) => (d.status?.readyReplicas ?? 0) === d.spec?.replicas && d.spec?.replicas! > 0) || undefined;
    },
    { timeoutMs: 90_000, what: "the shop services to be ready" },
  );
  say("  every service is back at its replicas and ready");
}

/** The `helm upgrade` that `--keep` suggests trying: a third schema version with one more file. */
export function nextUpgradeArgs(kubeconfig: string): string[] {
  return [
    "upgrade", "shop", CHART_PATH, "-n", DEMO_NAMESPACE, "--kubeconfig", kubeconfig, "--reuse-values",
    "--set", "schemaVersion=3", "--set-string", "sql.003-note\\.sql=ALTER TABLE items ADD COLUMN note text;",
  ];
}

/** The table's columns and each service's replicas and applied version, as the demo ends. */
async function finalState(apps: k8s.AppsV1Api, url: string): Promise<Pick<DemoResult, "columns" | "deployments">> {
  const check = new pg.Client({ connectionString: url });
  await check.connect();
  const columns = (await check.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position")).rows.map((r) => r.column_name as string);
  await check.end();
  const deployments = (await apps.listNamespacedDeployment({ namespace: DEMO_NAMESPACE })).items
    .filter((d) => d.metadata?.annotations?.["schema-gate.dev/database"])
    .map((d) => ({
      name: d.metadata!.name!,
      replicas: d.spec?.replicas ?? 0,
      ready: d.status?.readyReplicas ?? 0,
      ...(d.metadata?.annotations?.["schema-gate.dev/applied-version"] ? { version: d.metadata.annotations["schema-gate.dev/applied-version"] } : {}),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { columns, deployments };
}
