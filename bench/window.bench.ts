/**
 * npm run bench:window — the downtime of one migration window (first old pod gone to
 * last new pod Ready) split into its steps, for groups of 1, 5 and 20 Deployments, next to
 * the scripted approach (delete the Deployments, run the migration, recreate them, wait
 * for Ready) timed in the same run on the same cluster and PostgreSQL, several windows of
 * each (BENCH_WINDOWS, default 5; the figures are their medians), the two approaches in
 * turns, timed by a watch on the pods. The gate's own
 * overhead is the downtime minus what kubectl, Kubernetes and PostgreSQL take anyway:
 * kubectl submitting the Deployments one by one, the old pods stopping and terminating
 * (drain: first old pod stopped to the last one ended, on the pod watch, for both approaches),
 * the SQL itself and the new pods becoming Ready. What is left is the gate's own work
 * inside the downtime: telling that the pods are gone, ending other sessions, verifying,
 * restoring the members, and the writes of its record between steps. Prints figures only.
 */
import pg from "pg";
import YAML from "yaml";
import { A } from "../src/core/annotations.js";
import { formatMs } from "../src/core/window.js";
import { startGate, waitForWebhooks } from "../test/support/gate.js";
import { stopTestEnv, testEnv, testNamespace, type TestEnv } from "../test/support/env.js";
import { requireRealNode, testAppImage } from "../test/support/real-node.js";
import { shopDatabase, windowSettled } from "../test/support/shop.js";
import { allReady, noneServing, oldEnded, oldGone, oneStopped, podStages, PodWatch } from "./pod-watch.js";

const SIZES = (process.env.BENCH_SIZES ?? "1,5,20").split(",").map(Number);
const SETTLE_SECONDS = 0.5;
/** Windows of each approach per size in one run; the figures are their medians. */
const WINDOWS = Number(process.env.BENCH_WINDOWS ?? 5);
/**
 * The pause before each upgrade (BENCH_REST_MS, default none): the controller-manager's
 * clients are rate limited (20 requests a second, a burst of 30), and back-to-back windows
 * start with the bucket the last one emptied; a rest of 2 s or more starts each one full.
 */
const REST_MS = Number(process.env.BENCH_REST_MS ?? 0);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Where the pods run: kwok nodes (pods Ready at once), or with BENCH_REAL_NODE=1 the local
 * cluster's real node, as real containers of a small app that keeps a PostgreSQL pool open,
 * is Ready when it answers HTTP and closes its pool on SIGTERM.
 */
let podSpec: (version: string, url: string) => Record<string, unknown> = (version) => ({
  containers: [{ name: "app", image: `registry.example/svc:${version}` }],
});

/** Where pods reach PostgreSQL (the bridge address on the real node). */
let dbHost: string | undefined;

async function useRealNode(env: TestEnv): Promise<void> {
  const node = requireRealNode(env);
  const image = (await testAppImage(node)).name;
  dbHost = node.hostAddress;
  podSpec = (version, url) => ({
    ...node.placement,
    terminationGracePeriodSeconds: 10,
    containers: [{
      name: "app", image, imagePullPolicy: "Never",
      env: [{ name: "DATABASE_URL", value: url }, { name: "SCHEMA_VERSION", value: version }],
      readinessProbe: { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 1 },
    }],
  });
}

function deployments(count: number, version: string, optIn: boolean, url: string): string {
  return Array.from({ length: count }, (_, i) => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: `svc-${i}`,
      annotations: optIn
        ? { [A.database]: "shop-db", [A.schemaVersion]: version, [A.databaseSecret]: "shop-db", [A.migrationConfigMap]: "shop-migrations" }
        : {},
    },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: `svc-${i}` } },
      template: { metadata: { labels: { app: `svc-${i}`, version } }, spec: podSpec(version, url) },
    },
  })).map((d) => YAML.stringify(d)).join("---\n");
}

const migrations = (files: Record<string, string>) =>
  YAML.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "shop-migrations" }, data: files });

/** The migration of window `n` (1 for the first upgrade, 2 for the next, ...): one ALTER TABLE each, the same for both approaches. */
const migration = (n: number) => `ALTER TABLE items ADD COLUMN stock_${n} int NOT NULL DEFAULT 0;`;
const migrationFilesUpTo = (n: number) => ({
  "001-items.sql": "ALTER TABLE items ADD COLUMN price int;",
  ...Object.fromEntries(Array.from({ length: n }, (_, i) => [`${String(i + 2).padStart(3, "0")}-stock.sql`, migration(i + 1)])),
});

/** One approach on its own namespace: its upgrade to window n's version, timed on the namespace's pod watch. */
interface Approach {
  upgrade: (n: number, version: string) => Promise<Record<string, number>>;
  stop: () => void;
}

/** The gate: `count` opted-in Deployments at version 1, then versions 2, 3, ..., one SQL file each. */
async function gateApproach(env: TestEnv, count: number): Promise<Approach> {
  const ns = await testNamespace(`bench-gate-${count}`);
  await waitForWebhooks(env, ns);
  const { url } = await shopDatabase(env, ns, dbHost);
  await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], migrations(migrationFilesUpTo(0)));
  await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], deployments(count, "1", true, url));
  await windowSettled(env, ns, "1", 300_000);
  return approach(env, ns, count, async (n, version, pods) => {
    const stopped = pods.until(oneStopped(count, version), "the first old pod to stop");
    const allStopped = pods.until(noneServing(version), "the last old pod to stop");
    const ended = pods.until(oldEnded(version), "the old pods to end");
    const ready = pods.until(allReady(count, version), `${count} pods of version ${version} to be Ready`);
    await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], migrations(migrationFilesUpTo(n)));
    const applied = env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], deployments(count, version, true, url));
    let submitted = 0;
    void applied.then(() => (submitted = Date.now()));
    const [started, lastStopped, endedAt, newReady] = await Promise.all([stopped, allStopped, ended, ready]);
    await applied;
    const state = await windowSettled(env, ns, version, 300_000);
    if (state.result !== "Done") throw new Error(`window ended ${state.result ?? JSON.stringify(state.failure)}`);
    const t = state.timings;
    const downtime = newReady - started;
    // kubectl applies one object after another: how long after the first pod stopped the last apply returned
    // (negative: before; with the paused hold the old pods serve through the apply and the settle delay).
    const submit = submitted - started;
    const drain = endedAt - started;
    const waitingOnOthers = Math.max(0, submit) + drain + (t.migrate ?? 0) + (t.readiness ?? 0);
    return {
      downtime,
      submit,
      // How long after the window opened the first old pod stopped: the opening costs no downtime.
      "open→first stop": started - Date.parse(state.startedAt),
      "stops spread": lastStopped - started,
      drain,
      quiesce: t.quiesce ?? 0,
      terminate: t.terminate ?? 0,
      migrate: t.migrate ?? 0,
      verify: t.verify ?? 0,
      restore: t.restore ?? 0,
      readiness: t.readiness ?? 0,
      overhead: Math.max(0, downtime - waitingOnOthers),
      ...newPods(pods, version, endedAt),
    };
  });
}

/** The scripted approach, each cycle: delete the Deployments, wait for their pods to be gone, migrate, re-apply, wait for Ready. */
async function scriptedApproach(env: TestEnv, count: number): Promise<Approach> {
  const ns = await testNamespace(`bench-script-${count}`);
  const { url } = await shopDatabase(env, ns, dbHost);
  await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], deployments(count, "1", false, url));
  return approach(env, ns, count, async (n, version, pods) => {
    // Downtime starts when the first pod stops serving (marked terminating or gone), as for the gate.
    const stopped = pods.until(oneStopped(count, version), "the first pod to stop");
    const allStopped = pods.until(noneServing(version), "the last pod to stop");
    const ended = pods.until(oldEnded(version), "the pods to end");
    const gone = pods.until(oldGone(version), "the pods to be gone");
    await env.cluster.kubectl(["-n", ns, "delete", "deployments", "--all", "--wait=false"]);
    const [started, lastStopped, endedAt, goneAt] = await Promise.all([stopped, allStopped, ended, gone]);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(migration(n));
    await client.end();
    const migrated = Date.now();
    const ready = pods.until(allReady(count, version), `${count} pods of version ${version} to be Ready`);
    await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], deployments(count, version, false, url));
    const newReady = await ready;
    return {
      downtime: newReady - started, "stops spread": lastStopped - started, drain: endedAt - started,
      // It migrates once the pods are gone, as `kubectl wait --for=delete` would have it; the gate's drain ends as they end.
      gone: goneAt - endedAt, migrate: migrated - goneAt, readiness: newReady - migrated,
      ...newPods(pods, version, endedAt),
    };
  });
}

/** The new pods' stages, after the old ones ended, as `pods: <stage>` figures. */
const STAGE = "pods: ";
const newPods = (pods: PodWatch, version: string, endedAt: number) =>
  Object.fromEntries(Object.entries(podStages(pods.pods, version, endedAt)).map(([stage, ms]) => [`${STAGE}${stage}`, ms]));

/** Once version 1's `count` pods are Ready: the approach's upgrades, each timed by `upgrade` on the namespace's pod watch. */
async function approach(
  env: TestEnv, ns: string, count: number,
  upgrade: (n: number, version: string, pods: PodWatch) => Promise<Record<string, number>>,
): Promise<Approach> {
  const pods = await PodWatch.start(env, ns);
  try {
    await pods.until(allReady(count, "1"), `${count} pods of version 1 to be Ready`);
  } catch (error) {
    pods.stop();
    throw error;
  }
  return { upgrade: (n, version) => upgrade(n, version, pods), stop: () => pods.stop() };
}

/**
 * WINDOWS upgrades of each approach, in turn (the gate first in odd rounds, the script
 * first in even ones), each after a rest of REST_MS: this machine's speed drifts over a
 * run, and in turns the drift falls on both alike.
 */
async function inTurns(gate: Approach, script: Approach): Promise<{ gate: Array<Record<string, number>>; script: Array<Record<string, number>> }> {
  const results = { gate: [] as Array<Record<string, number>>, script: [] as Array<Record<string, number>> };
  for (let n = 1; n <= WINDOWS; n++) {
    const order = n % 2 === 1 ? (["gate", "script"] as const) : (["script", "gate"] as const);
    for (const which of order) {
      await sleep(REST_MS);
      results[which].push(await (which === "gate" ? gate : script).upgrade(n, String(n + 1)));
    }
  }
  return results;
}

/** The median of each figure over the windows (each figure on its own). */
function medians(results: Array<Record<string, number>>): Record<string, number> {
  const keys = Object.keys(results[0]!);
  return Object.fromEntries(keys.map((k) => [k, median(results.map((r) => r[k]!))]));
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const env = await testEnv();
try {
  const onRealNode = process.env.BENCH_REAL_NODE === "1";
  if (onRealNode) await useRealNode(env);
  console.log(`pods on ${onRealNode ? `the real node (real containers, real termination): ${env.cluster.realNode?.name}` : "kwok nodes (BENCH_REAL_NODE=1 for the real node)"}`);
  await startGate(env, ["--settle", String(SETTLE_SECONDS), "--lease-duration", "3", "--log-level", "warn"]);
  console.log(`bench:window — ${SIZES.join(", ")} Deployments of 1 replica, one ALTER TABLE a window; gate settle ${SETTLE_SECONDS}s; each figure the median of ${WINDOWS} windows of each approach (BENCH_WINDOWS), in turns, ${REST_MS} ms rest before each (BENCH_REST_MS)`);
  const rows: string[][] = [];
  const overheads: string[] = [];
  const podRows: string[] = [];
  for (const count of SIZES) {
    const approaches = [await gateApproach(env, count), await scriptedApproach(env, count)] as const;
    const results = await inTurns(...approaches).finally(() => approaches.forEach((a) => a.stop()));
    const gate = medians(results.gate);
    const script = medians(results.script);
    rows.push([
      String(count),
      formatMs(gate.downtime!), `${(gate.downtime! / script.downtime!).toFixed(2)}x`, formatMs(gate.submit!), formatMs(gate["open→first stop"]!),
      `${formatMs(gate["stops spread"]!)} / ${formatMs(script["stops spread"]!)}`, formatMs(gate.drain!), formatMs(gate.quiesce!),
      formatMs(gate.terminate!), formatMs(gate.migrate!), formatMs(gate.restore!), formatMs(gate.readiness!),
      formatMs(gate.overhead!), formatMs(script.downtime!),
      `${formatMs(script.drain!)} / ${formatMs(script.gone!)} / ${formatMs(script.migrate!)} / ${formatMs(script.readiness!)}`,
    ]);
    const stages = Object.keys(gate).filter((k) => k.startsWith(STAGE));
    podRows.push(`${count}: ${stages.map((k) => `${k.slice(STAGE.length)} ${formatMs(gate[k]!)} / ${formatMs(script[k]!)}`).join(", ")}`);
    overheads.push(`${count}: ${results.gate.map((r) => formatMs(r.overhead!)).join(", ")}`);
  }
  const header = [
    "deployments", "gate downtime", "ratio", "kubectl submit", "open→first stop", "stops spread (gate / script)", "drain", "quiesce step",
    "terminate", "migrate", "restore", "readiness", "gate overhead", "scripted downtime", "scripted drain / until gone / migrate / ready",
  ];
  console.log(`| ${header.join(" | ")} |`);
  console.log(`|${header.map(() => "---").join("|")}|`);
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
  console.log("ratio = median gate downtime / median scripted downtime (same run); downtime = first old pod stopped -> last new pod ready; open→first stop: how long after the window opened the first old pod stopped (the settle delay and the opening are outside the downtime)");
  console.log("stops spread = first old pod stopped -> last old pod stopped; drain = first old pod stopped -> last old pod ended (containers exited, or gone), both on the pod watch, for both approaches (the gate's quiesce step runs inside it); until gone: the script then waits for the pod objects to be deleted");
  console.log("gate overhead = gate downtime - kubectl submit (if after the first stop) - drain - migrate - readiness (what kubectl, Kubernetes and PostgreSQL take in either approach); restore counts in it");
  console.log(`gate overhead of each window, by size: ${overheads.join("; ")}`);
  console.log(`the new pods, after the last old one ended (gate / script, on the pod watch), by size: ${podRows.join("; ")}`);
} finally {
  await stopTestEnv();
}
