import { strict as assert } from "node:assert";
import { join } from "node:path";
import { A } from "../../src/core/annotations.js";
import { projectRoot } from "../../src/local/paths.js";
import { CommandError, run } from "../../src/util/exec.js";
import { startGate, waitForWebhooks, type GateProcess } from "../support/gate.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { deploymentsOf, GROUP, releaseShop, shopDatabase, shopReady, windowSettled } from "../support/shop.js";

const V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };
const BROKEN = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int;\nUPDATE items SET stock = nope;" };
const FIXED = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int;" };
const BROKEN3 = { ...FIXED, "003-more.sql": "ALTER TABLE items ADD COLUMN more int;\nUPDATE items SET more = nope;" };

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the operator CLI as a user would, against the test cluster's kubeconfig. */
async function cli(env: TestEnv, args: string[]): Promise<CliResult> {
  try {
    const out = await run(process.execPath, [join(projectRoot, "bin", "schema-gate.js"), ...args, "--kubeconfig", env.cluster.kubeconfig]);
    return { code: 0, ...out };
  } catch (error) {
    if (error instanceof CommandError) return { code: error.exitCode ?? -1, stdout: error.stdout, stderr: error.stderr };
    throw error;
  }
}

describe("the operator CLI against the real apiserver", function () {
  let env: TestEnv;
  let gate: GateProcess;
  let ns: string;

  before(async function () {
    this.timeout(10 * 60_000);
    env = await testEnv();
    gate = await startGate(env, ["--settle", "1", "--lease-duration", "3"]);
    ns = await testNamespace("cli");
    await waitForWebhooks(env, ns);
    await shopDatabase(env, ns);
  });
  after(async () => gate?.stop());

  it("wait exits 0 once the window is Done; status shows the group, its versions and members", async function () {
    await releaseShop(env, ns, { schemaVersion: "1", sql: V1, onFailure: "hold" });
    const waited = await cli(env, ["wait", "orders", "-n", ns, "--timeout", "90"]);
    assert.equal(waited.code, 0, waited.stdout + waited.stderr);
    // The window ends once the new pods serve; the Deployment's status may count them a moment later.
    assert.match(waited.stdout, /schema version 1 applied, [0-2]\/2 ready/);
    await shopReady(env, ns);

    const json = JSON.parse((await cli(env, ["status", "-n", ns, "-o", "json"])).stdout);
    const group = json.groups.find((g: { group: string }) => g.group === GROUP);
    assert.equal(group.phase, "Done");
    assert.equal(group.appliedVersion, "1");
    assert.deepEqual(group.members.map((m: { name: string; replicas: number }) => `${m.name}=${m.replicas}`), ["billing=2", "catalog=1", "orders=2"]);
    assert.ok(group.events.some((e: { reason: string }) => e.reason === "WindowDone"), JSON.stringify(group.events));
    const text = await cli(env, ["status", "-n", ns]);
    assert.match(text.stdout, new RegExp(`${ns}/${GROUP}  Done  schema 1`));
  });

  it("wait exits 1 on a failed window with the reason; retry after a fix completes it", async function () {
    await releaseShop(env, ns, { schemaVersion: "2", sql: BROKEN, onFailure: "hold" });
    const waited = await cli(env, ["wait", "billing", "-n", ns, "--timeout", "90"]);
    assert.equal(waited.code, 1, waited.stdout + waited.stderr);
    assert.match(waited.stdout, /window failed: .*002-stock\.sql:2:26/);
    assert.match(waited.stdout, new RegExp(`schema-gate retry ${GROUP} -n ${ns}`));
    const status = await cli(env, ["status", "-n", ns]);
    assert.match(status.stdout, /Failed  schema 1 -> 2/);
    assert.match(status.stdout, /orders +Failed +0\/0 ready \(held; 2 when released\)/);

    await releaseShop(env, ns, { schemaVersion: "2", sql: FIXED, onFailure: "hold" });
    const retried = await cli(env, ["retry", GROUP, "-n", ns]);
    assert.match(retried.stdout, /retry requested on deployment/);
    const done = await cli(env, ["wait", "billing", "-n", ns, "--timeout", "90", "-o", "json"]);
    assert.equal(done.code, 0, done.stdout + done.stderr);
    assert.equal(JSON.parse(done.stdout).phase, "Done");
  });

  it("abort ends a failed window; wait exits 3 and the group keeps its schema version", async function () {
    await releaseShop(env, ns, { schemaVersion: "3", sql: BROKEN3, onFailure: "hold" });
    assert.equal((await cli(env, ["wait", "orders", "-n", ns, "--timeout", "90"])).code, 1);
    const aborted = await cli(env, ["abort", GROUP, "-n", ns]);
    assert.match(aborted.stdout, /abort requested/);
    const waited = await cli(env, ["wait", "orders", "-n", ns, "--timeout", "90"]);
    assert.equal(waited.code, 3, waited.stdout + waited.stderr);
    assert.match(waited.stdout, /window aborted; schema version 2/);
    const state = await windowSettled(env, ns, "3");
    assert.equal(state.result, "Aborted");
    for (const [name, d] of await deploymentsOf(env, ns)) assert.equal(d.metadata?.annotations?.[A.schemaVersion], "2", name);
  });

  it("explains what it cannot do: retry without a failed window, wait on a Deployment that is not opted in", async function () {
    const retry = await cli(env, ["retry", GROUP, "-n", ns]);
    assert.equal(retry.code, 1);
    assert.match(retry.stderr, /has no open window to retry/);
    await env.apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: "plain" },
        spec: { selector: { matchLabels: { app: "plain" } }, template: { metadata: { labels: { app: "plain" } }, spec: { containers: [{ name: "a", image: "x" }] } } },
      },
    });
    const wait = await cli(env, ["wait", "plain", "-n", ns]);
    assert.equal(wait.code, 2);
    assert.match(wait.stdout, /is not opted in/);
  });
});
