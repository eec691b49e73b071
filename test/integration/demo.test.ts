import { strict as assert } from "node:assert";
import { DEMO_NAMESPACE, nextUpgradeArgs, runDemo } from "../../src/demo/demo.js";
import type { WindowState } from "../../src/core/window.js";
import { windowSettled } from "../support/shop.js";
import { gateIdentity } from "../support/gate.js";
import { testEnv } from "../support/env.js";

describe("the demo scenario (npm run demo) on the real control plane and PostgreSQL", function () {
  it("installs the shop, upgrades it through a window that terminates the open sessions, and ends with everything at version 2", async function () {
    this.timeout(5 * 60_000);
    const env = await testEnv();
    const lines: string[] = [];
    let kept: WindowState | undefined;
    // --keep: with the gate still running, the upgrade it suggests goes through a window of its own.
    const result = await runDemo(env.cluster, env.postgres, (line) => lines.push(line), await gateIdentity(env), async () => {
      await env.cluster.helm(nextUpgradeArgs(env.cluster.kubeconfig));
      kept = await windowSettled(env, DEMO_NAMESPACE, "3");
    });
    const printed = lines.join("\n");
    assert.equal(result.window.result, "Done", printed);
    assert.equal(result.window.version, "2");
    assert.deepEqual(result.columns, ["id", "name", "price_cents"]);
    assert.deepEqual(result.deployments, [
      { name: "billing", replicas: 2, ready: 2, version: "2" },
      { name: "catalog", replicas: 1, ready: 1, version: "2" },
      { name: "orders", replicas: 2, ready: 2, version: "2" },
    ]);
    assert.ok(result.pageSeenWhileOn, "the maintenance page answered 503 while the flag was on");
    // What a person watching sees: every step with its duration, the sessions, the page.
    for (const step of ["maintenance-on", "quiesce", "drain", "terminate", "migrate", "verify", "restore", "readiness", "maintenance-off"]) {
      assert.match(printed, new RegExp(`✓ ${step} +\\d+\\.\\d\\ds`), step);
    }
    assert.match(printed, /terminated \d session\(s\): .*orders \(idle in transaction\)/);
    assert.match(printed, /maintenance page is on: http:\/\/127\.0\.0\.1:\d+\//);
    assert.equal(kept?.result, "Done", JSON.stringify(kept?.failure));
  });
});
