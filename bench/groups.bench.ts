/**
 * npm run bench:groups — many database groups upgraded at once on kwok: GROUPS namespaces
 * (default 100), each one group of SIZE Deployments (default 5) with its own database, are
 * installed, then upgraded together to a version with one more SQL file. Checks that every
 * window completes and applied the file exactly once (each database's history), and prints
 * the total time, the slowest window and the API requests the gate made per window.
 *
 * The gate's requests are counted by the apiserver itself: a FlowSchema matches the gate's
 * ServiceAccount alone, and apiserver_flowcontrol_dispatched_requests_total for it is read
 * before and after the upgrade (a watch counts once, when it starts).
 */
import pg from "pg";
import YAML from "yaml";
import { A } from "../src/core/annotations.js";
import { ensureKwokNodes } from "../src/local/cluster.js";
import { formatMs, type WindowState } from "../src/core/window.js";
import { GATE_NAMESPACE, GATE_SA, startGate, waitForWebhooks } from "../test/support/gate.js";
import { stopTestEnv, testEnv, testNamespace, type TestEnv } from "../test/support/env.js";
import { shopDatabase, windowSettled } from "../test/support/shop.js";

const GROUPS = Number(process.env.BENCH_GROUPS ?? 100);
const SIZE = Number(process.env.BENCH_GROUP_SIZE ?? 5);
const PARALLEL = 8;
const FLOW_SCHEMA = "schema-gate-bench";
const FILES_V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int;" };
const FILES_V2 = { ...FILES_V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int NOT NULL DEFAULT 0;" };

function group(version: string, files: Record<string, string>): string {
  const deployments = Array.from({ length: SIZE }, (_, i) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: `svc-${i}`,
      annotations: { [A.database]: "shop-db", [A.schemaVersion]: version, [A.databaseSecret]: "shop-db", [A.migrationConfigMap]: "shop-migrations" },
    },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: `svc-${i}` } },
      template: { metadata: { labels: { app: `svc-${i}` } }, spec: { containers: [{ name: "app", image: `registry.example/svc:${version}` }] } },
    },
  }));
  const configMap = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shop-migrations" }, data: files };
  return [configMap, ...deployments].map((o) => YAML.stringify(o)).join("---\n");
}

/** Runs `work` over `items`, at most PARALLEL at a time. */
async function eachLimited<T, R>(items: T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  }));
  return results;
}

async function gateRequests(env: TestEnv): Promise<number> {
  const metrics = await env.cluster.kubectl(["get", "--raw", "/metrics"]);
  let total = 0;
  for (const line of metrics.split("\n")) {
    if (line.startsWith("apiserver_flowcontrol_dispatched_requests_total{") && line.includes(`flow_schema="${FLOW_SCHEMA}"`)) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

async function countGateRequests(env: TestEnv): Promise<void> {
  await env.cluster.kubectl(["apply", "-f", "-"], YAML.stringify({
    apiVersion: "flowcontrol.apiserver.k8s.io/v1",
    kind: "FlowSchema",
    metadata: { name: FLOW_SCHEMA },
    spec: {
      matchingPrecedence: 500,
      priorityLevelConfiguration: { name: "workload-high" },
      distinguisherMethod: { type: "ByUser" },
      rules: [{
        subjects: [{ kind: "ServiceAccount", serviceAccount: { name: GATE_SA, namespace: GATE_NAMESPACE } }],
        resourceRules: [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"], clusterScope: true }],
        nonResourceRules: [{ verbs: ["*"], nonResourceURLs: ["*"] }],
      }],
    },
  }));
}

async function appliedOnce(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>("SELECT count(*) AS n FROM schema_gate_history WHERE file = '002-stock.sql'");
    return rows[0]?.n === "1";
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const env = await testEnv();
  // Each group's pods and its maintenance backend, at 110 pods a node.
  if (env.cluster.kind === "kwok") await ensureKwokNodes(Math.ceil((GROUPS * (SIZE + 1)) / 100) + 1);
  await countGateRequests(env);
  await startGate(env, ["--settle", "1", "--lease-duration", "5"]);
  console.log(`${GROUPS} database groups of ${SIZE} Deployments each (kwok nodes), one gate process; installing…`);
  const groups = await eachLimited(Array.from({ length: GROUPS }, (_, i) => i), async (i) => {
    const ns = await testNamespace(`bench-groups-${i}`);
    if (i === 0) await waitForWebhooks(env, ns);
    const { url } = await shopDatabase(env, ns);
    await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], group("1", FILES_V1));
    return { ns, url };
  });
  await eachLimited(groups, ({ ns }) => windowSettled(env, ns, "1", 600_000));
  console.log("installed; upgrading every group to schema version 2 at once");

  const before = await gateRequests(env);
  const started = Date.now();
  await eachLimited(groups, ({ ns }) => env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], group("2", FILES_V2)));
  const states: WindowState[] = await eachLimited(groups, ({ ns }) => windowSettled(env, ns, "2", 900_000));
  const total = Date.now() - started;
  const requests = (await gateRequests(env)) - before;

  const failed = states.filter((s) => s.result !== "Done");
  const once = await eachLimited(groups, ({ url }) => appliedOnce(url));
  const windows = states.map((s) => Object.values(s.timings).reduce((a, b) => a + (b ?? 0), 0));
  const slowest = Math.max(...windows);
  const median = [...windows].sort((a, b) => a - b)[Math.floor(windows.length / 2)]!;
  console.log(`\nwindows completed: ${states.length - failed.length} of ${states.length}` +
    (failed.length ? ` (not Done: ${failed.map((s) => `${s.group}: ${s.result ?? s.failure?.message}`).join("; ")})` : ""));
  console.log(`002-stock.sql applied exactly once: ${once.filter(Boolean).length} of ${once.length} databases`);
  console.log(`total, first apply to last window ended: ${formatMs(total)}`);
  console.log(`window duration (sum of its steps): median ${formatMs(median)}, slowest ${formatMs(slowest)}`);
  console.log(`API requests by the gate during the upgrade: ${requests} (${(requests / GROUPS).toFixed(1)} per window; ` +
    "apiserver_flowcontrol_dispatched_requests_total of a FlowSchema matching only its ServiceAccount)");
  if (failed.length || once.some((ok) => !ok)) process.exitCode = 1;
}

try {
  await main();
} finally {
  await stopTestEnv();
}
