import { strict as assert } from "node:assert";
import type { V1Pod } from "@kubernetes/client-node";
import type { RealNode } from "../../src/local/real-node.js";
import { STEPS, type WindowState } from "../../src/core/window.js";
import { startGate, waitForWebhooks, type GateProcess } from "../support/gate.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { requireRealNode } from "../support/real-node.js";
import { releaseShop, SHOP_SERVICES, shopDatabase, shopReady, windowSettled } from "../support/shop.js";
import {
  backendStarts,
  followLogs,
  get,
  itemsLocks,
  loggedAt,
  pollService,
  runs,
  realShopValues,
  serviceAnswers,
  shopAppImage,
  withClient,
  type Answer,
  type Poll,
} from "../support/real-shop.js";

const GATE_ARGS = ["--settle", "1", "--lease-duration", "3"];
const V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };
const V2 = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int NOT NULL DEFAULT 0;" };
const SLOW_MS = 6000;
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)}s`;

describe("real shop: the shop chart's services as real pods on the real node, through a window", function () {
  let env: TestEnv;
  let node: RealNode;
  let gate: GateProcess;
  let ns: string;
  let url: string;
  let image: string;

  const shopPods = async (): Promise<V1Pod[]> =>
    (await env.core.listNamespacedPod({ namespace: ns })).items.filter((p) => !p.metadata?.deletionTimestamp);

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    env = await testEnv();
    node = requireRealNode(env);
    image = (await shopAppImage(node)).name;
    gate = await startGate(env, GATE_ARGS);
    ns = await testNamespace("real-shop");
    await waitForWebhooks(env, ns);
    ({ url } = await shopDatabase(env, ns, node.hostAddress));
  });
  after(async () => gate?.stop());

  it("runs orders, billing and catalog as real pods, each holding a transaction that blocks ALTER TABLE items", async function () {
    this.timeout(180_000);
    const started = Date.now();
    await releaseShop(env, ns, realShopValues(node, image, "1", V1));
    const state = await windowSettled(env, ns, "1");
    assert.equal(state.result, "Done", JSON.stringify(state.failure));
    await shopReady(env, ns);
    console.log(`      (first install: window and ${Object.values(SHOP_SERVICES).reduce((a: number, b: number) => a + b, 0)} pods Ready in ${seconds(Date.now() - started)})`);

    const pods = await shopPods();
    assert.equal(pods.length, 5);
    for (const pod of pods) {
      assert.equal(pod.spec?.nodeName, node.name, pod.metadata?.name);
      assert.match(pod.status?.containerStatuses?.[0]?.containerID ?? "", /^containerd:\/\//);
    }
    for (const [name, replicas] of Object.entries(SHOP_SERVICES)) {
      const answers = await serviceAnswers(env, ns, name, replicas, "1");
      assert.deepEqual(answers[0]?.body.columns, ["id", "name", "price"]);
    }

    // The app itself holds the lock: every pod's session, idle in a transaction that read items.
    const locks = await itemsLocks(url, node);
    assert.deepEqual(locks.map((l) => l.addr).sort(), pods.map((p) => p.status?.podIP).sort());
    assert.deepEqual([...new Set(locks.map((l) => l.application))].sort(), ["billing", "catalog", "orders"]);
    assert.ok(locks.every((l) => l.state === "idle in transaction"), JSON.stringify(locks));
    await assert.rejects(
      withClient(url, async (c) => {
        await c.query("SET lock_timeout = '500ms'");
        await c.query("ALTER TABLE items ADD COLUMN probe int");
      }),
      /lock timeout/,
    );
  });

  it("helm upgrade to 2: SIGTERM stops the old pods, the migration commits, then the new pods start and every service answers", async function () {
    this.timeout(240_000);
    const old = await shopPods();
    const logs = new Map(old.map((p) => [p.metadata!.name!, followLogs(env, ns, p.metadata!.name!)]));
    await Promise.all([...logs.values()].map((l) =>
      new Promise<void>((resolve) => {
        const check = () => (l.text().includes("listening") ? resolve() : setTimeout(check, 50));
        check();
      })));
    const orders = (await env.core.readNamespacedService({ name: "orders", namespace: ns })).spec!.clusterIP!;
    const poller = pollService(orders);
    // A request in flight at the SIGTERM: the app must finish it before it exits.
    const catalogPod = old.find((p) => p.metadata?.name?.startsWith("catalog-"))!;
    const slow = get(catalogPod.status!.podIP!, 8080, `/slow?ms=${SLOW_MS}`, SLOW_MS + 10_000);

    const upgraded = Date.now();
    await releaseShop(env, ns, realShopValues(node, image, "2", V2));
    const state = await windowSettled(env, ns, "2", 120_000);
    assert.equal(state.result, "Done", JSON.stringify(state.failure));
    await shopReady(env, ns);
    const ready = Date.now();
    const answers: Record<string, Answer[]> = {};
    for (const [name, replicas] of Object.entries(SHOP_SERVICES)) answers[name] = await serviceAnswers(env, ns, name, replicas, "2");
    const polls = await poller.stop();

    const inFlight = await slow;
    assert.equal(inFlight.status, 200);
    assert.equal(inFlight.body.terminatedMeanwhile, true, "the slow request was not in flight at the SIGTERM");
    await Promise.all([...logs.values()].map((l) => l.ended));
    const committed = Date.parse(state.committedAt!);
    const stops = checkOldPodsStopped(logs, committed);
    const { starts, sessions } = await checkNewPodsAfterCommit(old, committed);

    for (const [name, replicas] of Object.entries(SHOP_SERVICES)) {
      assert.equal(answers[name]!.length, replicas, name);
      for (const a of answers[name]!) assert.deepEqual(a.body.columns, ["id", "name", "price", "stock"]);
      const d = await env.apps.readNamespacedDeployment({ name, namespace: ns });
      assert.equal(d.spec?.replicas, replicas, name);
      const endpoints = await env.cluster.kubectl(["get", "endpointslices", "-n", ns, "-l", `kubernetes.io/service-name=${name}`,
        "-o", "jsonpath={.items[*].endpoints[*].addresses[0]}"]);
      assert.equal(endpoints.split(/\s+/).filter(Boolean).length, replicas, `${name} endpoints: ${endpoints}`);
    }

    report(state, { upgraded, ready, stops, starts, sessions, polls, inFlight });
  });

  /** Every old pod logged SIGTERM, finished, closed its pool and exited, all before the commit. */
  function checkOldPodsStopped(logs: Map<string, { text: () => string }>, committed: number): number[] {
    const stops: number[] = [];
    for (const [pod, log] of logs) {
      const text = log.text();
      const sigterm = loggedAt(text, /SIGTERM received/);
      const closed = loggedAt(text, /pool closed, exiting/);
      assert.ok(sigterm && closed, `${pod} did not log SIGTERM and its pool's closing:\n${text}`);
      assert.match(text, /in-flight requests finished/);
      assert.ok(closed < committed, `${pod} closed its pool at ${new Date(closed).toISOString()}, after the commit`);
      stops.push(sigterm, closed);
    }
    return stops;
  }

  /**
   * The new pods' containers (kubelet start times) and every pod session on the database
   * (microseconds: none of the old pods' is left) began after the commit.
   */
  async function checkNewPodsAfterCommit(old: V1Pod[], committed: number): Promise<{ starts: number[]; sessions: number[] }> {
    const oldNames = new Set(old.map((p) => p.metadata?.name));
    const fresh = (await shopPods()).filter((p) => !oldNames.has(p.metadata?.name));
    assert.equal(fresh.length, 5);
    const starts: number[] = [];
    for (const pod of fresh) {
      assert.equal(pod.spec?.nodeName, node.name);
      assert.equal(pod.spec?.containers[0]?.env?.find((e) => e.name === "SCHEMA_VERSION")?.value, "2");
      const startedAt = Date.parse(String(pod.status?.containerStatuses?.[0]?.state?.running?.startedAt));
      // The kubelet's start times have second precision: compare at that resolution.
      assert.ok(startedAt >= Math.floor(committed / 1000) * 1000, `${pod.metadata?.name} started at ${startedAt}, before the commit`);
      starts.push(startedAt);
    }
    const sessions = await backendStarts(url, node);
    const freshIPs = new Set(fresh.map((p) => p.status?.podIP));
    assert.ok(sessions.filter((s) => freshIPs.has(s.addr)).length >= 5, JSON.stringify(sessions));
    for (const s of sessions) assert.ok(s.started.getTime() > committed, `session from ${s.addr} began ${s.started.toISOString()}, before the commit`);
    return { starts, sessions: sessions.map((s) => s.started.getTime()) };
  }

  function report(
    state: WindowState,
    m: { upgraded: number; ready: number; stops: number[]; starts: number[]; sessions: number[]; polls: Poll[]; inFlight: Answer },
  ): void {
    const at = (iso?: string) => Date.parse(iso!);
    const committed = at(state.committedAt);
    const ok = m.polls.filter((p) => p.outcome.startsWith("version"));
    const lastOld = Math.max(...ok.filter((p) => p.outcome === "version 1").map((p) => p.at));
    const firstNew = Math.min(...ok.filter((p) => p.outcome === "version 2").map((p) => p.at));
    const steps = STEPS.filter((s) => state.timings[s] !== undefined).map((s) => `${s} ${state.timings[s]} ms`).join(", ");
    console.log(`      window steps: ${steps}`);
    // The webhook holds the upgraded Deployments at 0 at admission: the old pods get SIGTERM before the quiesce step runs.
    console.log(`      from the helm upgrade: first SIGTERM ${seconds(Math.min(...m.stops) - m.upgraded)}, quiesce step ${seconds(at(state.quiescedAt) - m.upgraded)}, ` +
      `last pool closed ${seconds(Math.max(...m.stops) - m.upgraded)} (the in-flight ${SLOW_MS / 1000} s request finished first), commit ${seconds(committed - m.upgraded)}`);
    console.log(`      after the commit: new pods' sessions opened ${seconds(Math.min(...m.sessions) - committed)} to ${seconds(Math.max(...m.sessions) - committed)}, ` +
      `containers started (kubelet, 1 s precision) ${m.starts.map((t) => seconds(t - committed)).join(" ")}; every service ready at its replicas ${seconds(m.ready - committed)}`);
    console.log(`      orders through its Service every 100 ms: ${runs(m.polls)}; downtime (last v1 answer -> first v2 answer) ${seconds(firstNew - lastOld)}, ` +
      `${m.polls.filter((p) => !p.outcome.startsWith("version")).length} refused or timed out`);
    console.log(`      sessions the gate terminated: ${JSON.stringify(state.sessions ?? [])}; the in-flight /slow?ms=${SLOW_MS} request answered ${m.inFlight.status}`);
  }
});
