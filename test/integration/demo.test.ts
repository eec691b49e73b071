import { strict as assert } from "node:assert";
import { DEMO_NAMESPACE, nextUpgradeArgs, runDemo } from "../../src/demo/demo.js";
import type { WindowState } from "../../src/core/window.js";
import { windowSettled } from "../support/shop.js";
import { gateIdentity, reregisterLocalWebhooks } from "../support/gate.js";
import { testEnv } from "../support/env.js";
import { requireRealNode } from "../support/real-node.js";

describe("the demo scenario (npm run demo) on the real node: real shop pods, the in-cluster gate, the Ingress through HAProxy", function () {
  after(async function () {
    this.timeout(60_000);
    const env = await testEnv();
    // The demo's in-cluster gate took over the webhook configurations; the suites' local gates get them back.
    await reregisterLocalWebhooks(env);
    // The demo leaves its shop running for a person to look at; the suites after this one need the node's cores.
    await env.core.deleteNamespace({ name: DEMO_NAMESPACE }).catch(() => undefined);
  });

  it("installs the shop, upgrades it through a window that terminates the open sessions, and ends with everything at version 2", async function () {
    this.timeout(8 * 60_000);
    const env = await testEnv();
    const node = requireRealNode(env);
    const lines: string[] = [];
    let kept: WindowState | undefined;
    let shopPods: string[] = [];
    // --keep: with the gate still running, the upgrade it suggests goes through a window of its own.
    const result = await runDemo(env.cluster, env.postgres, (line) => lines.push(line), await gateIdentity(env), async () => {
      shopPods = (await env.core.listNamespacedPod({ namespace: DEMO_NAMESPACE, labelSelector: "app.kubernetes.io/name in (orders,billing,catalog)" })).items
        .filter((p) => !p.metadata?.deletionTimestamp)
        .map((p) => `${p.metadata?.labels?.["app.kubernetes.io/name"]} ${p.status?.phase} on ${p.spec?.nodeName}`)
        .sort();
      await env.cluster.helm(nextUpgradeArgs(env.cluster.kubeconfig));
      kept = await windowSettled(env, DEMO_NAMESPACE, "3", 180_000);
    });
    const printed = lines.join("\n");
    console.log(`      ${lines.filter((l) => /through the Ingress every|helm returned|window Done in/.test(l)).map((l) => l.trim()).join("\n      ")}`);
    assert.equal(result.window.result, "Done", printed);
    assert.equal(result.window.version, "2");
    assert.deepEqual(result.columns, ["id", "name", "price_cents"]);
    assert.deepEqual(result.deployments, [
      { name: "billing", replicas: 2, ready: 2, version: "2" },
      { name: "catalog", replicas: 1, ready: 1, version: "2" },
      { name: "orders", replicas: 2, ready: 2, version: "2" },
    ]);
    const on = `Running on ${node.name}`;
    assert.deepEqual(shopPods, [`billing ${on}`, `billing ${on}`, `catalog ${on}`, `orders ${on}`, `orders ${on}`]);
    // Through the Ingress controller's URL: the app, the page during the window, the new version, nothing else.
    assert.deepEqual(result.throughIngress, ["app 1", "page", "app 2"], printed);
    assert.ok(result.pageSeenWhileOn, "the maintenance page answered 503 through the Ingress while the flag was on");
    // What a person watching sees: every step with its duration, the sessions, the page.
    for (const step of ["maintenance-on", "quiesce", "drain", "terminate", "migrate", "verify", "restore", "readiness", "maintenance-off"]) {
      assert.match(printed, new RegExp(`✓ ${step} +\\d+\\.\\d\\ds`), step);
    }
    assert.match(printed, /terminated \d session\(s\): .*orders \(idle in transaction\)/);
    assert.match(printed, /the local cluster has a real node/);
    assert.match(printed, /maintenance page is on through the Ingress: curl -H 'Host: shop\.example' http:\/\/127\.0\.0\.1:\d+\/ answers 503/);
    assert.match(printed, /through the Ingress every 100 ms during the upgrade: app 1 x\d+, page x\d+, app 2 x\d+$/m);
    assert.equal(kept?.result, "Done", JSON.stringify(kept?.failure));
  });

  it("without a real node, says why and runs the shop on kwok nodes with the gate as a local process", async function () {
    this.timeout(4 * 60_000);
    const env = await testEnv();
    await reregisterLocalWebhooks(env); // the in-cluster gate of the test above had them
    const lines: string[] = [];
    const cluster = { ...env.cluster, realNode: undefined, realNodeProblem: "the real node is turned off (SCHEMA_GATE_REAL_NODE=0)" };
    const result = await runDemo(cluster, env.postgres, (line) => lines.push(line), await gateIdentity(env));
    const printed = lines.join("\n");
    assert.equal(result.window.result, "Done", printed);
    assert.deepEqual(result.columns, ["id", "name", "price_cents"]);
    assert.equal(result.throughIngress, undefined);
    assert.ok(result.pageSeenWhileOn, "the local maintenance page answered 503 while the flag was on");
    assert.match(lines[0]!, /^• no real node, so the shop runs on kwok nodes \(its pods are not run\) and the gate as a local process: the real node is turned off \(SCHEMA_GATE_REAL_NODE=0\)$/);
    assert.match(printed, /maintenance page is on: http:\/\/127\.0\.0\.1:\d+\//);
    const nodes = (await env.core.listNamespacedPod({ namespace: DEMO_NAMESPACE })).items.map((p) => p.spec?.nodeName);
    assert.ok(nodes.length > 0 && !nodes.includes(requireRealNode(env).name), `pods on ${nodes.join(", ")}`);
  });
});
