import { strict as assert } from "node:assert";
import * as k8s from "@kubernetes/client-node";
import pg from "pg";
import { installGate, uninstallGate } from "../../src/local/gate-install.js";
import { pollUntil } from "../../src/util/wait.js";
import type { Step } from "../../src/core/window.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { GATE_NAMESPACE, gateIdentity, reregisterLocalWebhooks } from "../support/gate.js";
import { gateImageOnNode, requireRealNode } from "../support/real-node.js";
import { releaseShop, shopDatabase, shopReady, windowRecord, windowSettled } from "../support/shop.js";

const LEASE = "schema-gate-controller";

async function historyOf(url: string): Promise<Map<string, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ file: string; n: string }>("SELECT file, count(*) AS n FROM schema_gate_history GROUP BY file");
    return new Map(rows.map((r) => [r.file, Number(r.n)]));
  } finally {
    await client.end();
  }
}

describe("the gate installed in-cluster (kubectl apply -k): two pods on the real node, the leader killed mid-window", function () {
  let env: TestEnv;
  let ns: string;
  let url: string;
  let leases: k8s.CoordinationV1Api;
  const files: Record<string, string> = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };

  const holder = async () => (await leases.readNamespacedLease({ name: LEASE, namespace: GATE_NAMESPACE })).spec?.holderIdentity ?? "";
  const gatePods = async () =>
    (await env.core.listNamespacedPod({ namespace: GATE_NAMESPACE, labelSelector: "app.kubernetes.io/name=schema-gate" })).items
      .filter((p) => !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"));

  before(async function () {
    this.timeout(60 * 60_000);
    env = await testEnv();
    const node = requireRealNode(env);
    leases = env.kc.makeApiClient(k8s.CoordinationV1Api);
    const image = await gateImageOnNode(node);
    await gateIdentity(env); // the namespace, CRD and RBAC, as the other suites have them
    ns = await testNamespace("in-cluster");
    ({ url } = await shopDatabase(env, ns, node.hostAddress));
    await installGate(env.cluster, node, image.name, [`--namespaces=${ns}`, "--lease-duration=3", "--settle=1"], { apps: env.apps, namespace: ns });
    // The webhooks now call the Service; the pods are the only gate running.
    await pollUntil(async () => ((await holder()).startsWith("schema-gate-") ? true : undefined),
      { timeoutMs: 30_000, what: "a gate pod to hold the controller's Lease" });
    await releaseShop(env, ns, { schemaVersion: "1", sql: files, onFailure: "hold" });
    assert.equal((await windowSettled(env, ns, "1", 120_000)).result, "Done");
  });

  after(async function () {
    this.timeout(120_000);
    if (!env) return;
    await uninstallGate(env.cluster);
    await reregisterLocalWebhooks(env);
  });

  it("runs two gate pods from the image on the real node, admitting through the Service", async function () {
    const pods = await gatePods();
    assert.equal(pods.length, 2, pods.map((p) => p.metadata?.name).join(", "));
    for (const pod of pods) assert.equal(pod.spec?.nodeName, requireRealNode(env).name);
    const deployment = await env.apps.readNamespacedDeployment({ name: "billing", namespace: ns });
    assert.equal(deployment.metadata?.annotations?.["schema-gate.dev/applied-version"], "1");
  });

  for (const [version, step] of [["2", "quiesce"], ["3", "migrate"], ["4", "restore"]] as const) {
    it(`lets the other pod finish a window whose leader is killed at ${step}; every file applied once`, async function () {
      this.timeout(300_000);
      const before = await holder();
      // A migration that takes long enough for the kill to land inside it.
      files[`00${version}-step.sql`] = `SELECT pg_sleep(${step === "migrate" ? 3 : 0}); ALTER TABLE items ADD COLUMN v${version} int;`;
      await releaseShop(env, ns, { schemaVersion: version, sql: files, onFailure: "hold" });
      await pollUntil(async () => {
        const record = await windowRecord(env, ns);
        return record?.version === version && record.step === (step as Step) ? true : undefined;
      }, { timeoutMs: 60_000, intervalMs: 20, what: `the window to ${version} to reach ${step}` });
      const leader = before.split("_")[0]!;
      await env.cluster.kubectl(["-n", GATE_NAMESPACE, "delete", "pod", leader, "--grace-period=0", "--force"]);
      const state = await windowSettled(env, ns, version, 240_000);
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      const after = await holder();
      assert.notEqual(after.split("_")[0], leader, `the Lease went from ${before} to ${after}`);
      const history = await historyOf(url);
      for (const file of Object.keys(files)) assert.equal(history.get(file), 1, `${file} applied ${history.get(file) ?? 0} times`);
      await shopReady(env, ns);
      await pollUntil(async () => ((await gatePods()).length === 2 ? true : undefined), { timeoutMs: 60_000, what: "two gate pods again" });
    });
  }
});
