import { strict as assert } from "node:assert";
import * as k8s from "@kubernetes/client-node";
import type { V1Deployment } from "@kubernetes/client-node";
import { A } from "../../src/core/annotations.js";
import { CommandError, run } from "../../src/util/exec.js";
import { pollUntil, sleep } from "../../src/util/wait.js";
import { apiErrorMessage, testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { GATE_NAMESPACE, gateIdentity, startGate, waitForWebhooks, type GateProcess } from "../support/gate.js";
import { SCALE_CONDITION, SCALE_WEBHOOK } from "../../src/core/scale-guard.js";

import { SHOP_CHART as chart } from "../support/shop.js";

function manifest(name: string, annotations: Record<string, string>, replicas = 3): string {
  return JSON.stringify({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, annotations },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image: `registry.example/${name}:1` }] } },
    },
  });
}

const optIn = (version: string) => ({
  [A.database]: "orders-db",
  [A.schemaVersion]: version,
  [A.databaseSecret]: "orders-db",
  [A.migrationConfigMap]: "orders-migrations",
});

/** The number of AdmissionReviews the gate has answered, from its /metrics. */
async function admissionCount(gate: GateProcess): Promise<number> {
  const { body } = await gate.get("/metrics");
  return [...body.matchAll(/^schema_gate_admission_duration_seconds_count\{[^}]*\} (\d+)/gm)].reduce(
    (sum, m) => sum + Number(m[1]),
    0,
  );
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return error instanceof CommandError ? error.stderr : apiErrorMessage(error);
  }
  assert.fail("expected the request to be refused");
}

const GATE_ARGS = ["--settle", "3600", "--lease-duration", "3"];

describe("admission webhook against the real apiserver", function () {
  let env: TestEnv;
  let ns: string;
  let gate: GateProcess;
  let kubectl: (args: string[], input?: string) => Promise<string>;
  let asGate: (args: string[]) => Promise<string>;
  const get = (name: string) => env.apps.readNamespacedDeployment({ name, namespace: ns });

  before(async function () {
    this.timeout(60 * 60_000);
    env = await testEnv();
    ns = await testNamespace("webhook");
    // The leader keeps the scale guard; a settle longer than the suite keeps its windows from opening.
    gate = await startGate(env, GATE_ARGS);
    await waitForWebhooks(env, ns);
    kubectl = (args, input) => env.cluster.kubectl(["-n", ns, ...args], input);
    const id = await gateIdentity(env);
    asGate = (args) => run(env.cluster.binaries.kubectl, ["--kubeconfig", id.kubeconfig, "-n", ns, ...args]).then((r) => r.stdout);
  });
  // The next test file starts its own gate on the same port.
  after(async () => gate?.stop());

  it("stores an opted-in Deployment with a new version held at 0 replicas", async function () {
    await kubectl(["apply", "-f", "-"], manifest("ledger", optIn("7")));
    const stored = await get("ledger");
    assert.equal(stored.spec?.replicas, 0);
    const annotations = stored.metadata?.annotations ?? {};
    assert.equal(annotations[A.phase], "Pending");
    assert.equal(annotations[A.desiredReplicas], "3");
    assert.match(annotations[A.message] ?? "", /"orders-db" to schema version "7"/);
    await sleep(1000);
    const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: "app=ledger" });
    assert.equal(pods.items.length, 0, "no pod of the held version may start");
  });

  it("stores an unannotated Deployment untouched, without calling the webhook", async function () {
    const before = await admissionCount(gate);
    await kubectl(["apply", "-f", "-"], manifest("plain", {}, 2));
    await kubectl(["scale", "deployment/plain", "--replicas=3"]);
    const stored = await get("plain");
    assert.equal(stored.spec?.replicas, 3);
    assert.deepEqual(
      Object.keys(stored.metadata?.annotations ?? {}).filter((k) => k.startsWith("schema-gate.dev/")),
      [],
    );
    assert.equal(await admissionCount(gate), before, "the webhook saw a request for an unannotated Deployment");
  });

  it("refuses kubectl scale on a held Deployment with the gate's message, and lets the gate scale it", async function () {
    // The gate lists held Deployments in the scale webhook's match condition; the apiserver picks that up asynchronously.
    await pollUntil(
      async () => {
        try {
          await kubectl(["scale", "deployment/ledger", "--replicas=5", "--dry-run=server"]);
          return undefined;
        } catch (error) {
          return /held by schema-gate/.test((error as CommandError).stderr) ? true : undefined;
        }
      },
      { timeoutMs: 20_000, intervalMs: 250, what: "scale requests for ledger to reach the gate" },
    );
    const message = await failure(kubectl(["scale", "deployment/ledger", "--replicas=5"]));
    assert.match(message, /deployment .*\/ledger is held by schema-gate for the migration window of database group "orders-db"/);
    assert.match(message, /schema-gate wait ledger/);
    assert.equal((await get("ledger")).spec?.replicas, 0);

    const edit = await failure(kubectl(["patch", "deployment/ledger", "--type=merge", "-p", '{"spec":{"replicas":4}}']));
    assert.match(edit, /held by schema-gate/);

    await asGate(["scale", "deployment/ledger", "--replicas=2"]);
    assert.equal((await get("ledger")).spec?.replicas, 2);
    await asGate(["scale", "deployment/ledger", "--replicas=0"]);
  });

  it("answers a bad annotation with a message naming it, its value and the fix", async function () {
    const message = await failure(
      kubectl(["apply", "-f", "-"], manifest("bad", { ...optIn("7"), [A.timeout]: "15", [A.onFailure]: "panic" })),
    );
    assert.match(message, /schema-gate\.dev\/timeout: "15" is not a duration between 1s and 24h; write e\.g\. "15m"/);
    assert.match(message, /schema-gate\.dev\/on-failure: "panic" is not a failure policy; use "hold" or "rollback"/);
  });

  it("returns the held object on a server-side dry run and changes nothing", async function () {
    const out = await kubectl(["apply", "--dry-run=server", "-o", "json", "-f", "-"], manifest("dry", optIn("7"), 4));
    const shown = JSON.parse(out) as V1Deployment;
    assert.equal(shown.spec?.replicas, 0);
    assert.equal(shown.metadata?.annotations?.[A.desiredReplicas], "4");
    const absent = await failure(get("dry"));
    assert.match(absent, /not found/);

    const before = await get("ledger");
    const upgraded = await kubectl(["apply", "--dry-run=server", "-o", "json", "-f", "-"], manifest("ledger", optIn("8"), 3));
    assert.equal((JSON.parse(upgraded) as V1Deployment).metadata?.annotations?.[A.schemaVersion], "8");
    const after = await get("ledger");
    assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion);
    assert.equal(after.metadata?.annotations?.[A.schemaVersion], "7");
  });

  it("holds all three services of a helm upgrade to a new schema version", async function () {
    const helm = (args: string[]) => env.cluster.helm([...args, "-n", ns, "--kubeconfig", env.cluster.kubeconfig]);
    await helm(["install", "shop", chart, "--set", "schemaVersion=1"]);
    // Stand in for the window controller: version 1 is applied and the services run.
    for (const [name, replicas] of [["orders", 2], ["billing", 2], ["catalog", 1]] as const) {
      await asGate(["annotate", `deployment/${name}`, "--overwrite", `${A.appliedVersion}=1`, `${A.phase}=Done`, `${A.desiredReplicas}-`]);
      await asGate(["scale", `deployment/${name}`, `--replicas=${replicas}`]);
      await asGate(["rollout", "resume", `deployment/${name}`]);
    }
    await asGate(["rollout", "status", "deployment/billing", "--timeout=60s"]);
    await helm(["upgrade", "shop", chart, "--set", "schemaVersion=2"]);
    for (const [name, replicas] of [["orders", 2], ["billing", 2], ["catalog", 1]] as const) {
      const stored = await get(name);
      assert.equal(stored.spec?.paused, true, `${name} is held: its new template does not roll out`);
      assert.equal(stored.spec?.replicas, replicas, `${name}'s old pods keep serving until the window quiesces it`);
      assert.equal(stored.metadata?.annotations?.[A.phase], "Pending");
      assert.equal(stored.metadata?.annotations?.[A.desiredReplicas], String(replicas));
      assert.equal(stored.metadata?.annotations?.[A.appliedVersion], "1");
      assert.equal(stored.spec?.template?.spec?.containers[0]?.image, `registry.example/shop-${name}:2`);
    }
    // Running the same upgrade again re-asserts the chart's replicas: the hold stays.
    await helm(["upgrade", "shop", chart, "--set", "schemaVersion=2"]);
    const again = await get("billing");
    assert.deepEqual([again.spec?.paused, again.spec?.replicas], [true, 2]);
    // Old pods still serve, and none of the new template started.
    const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: "app.kubernetes.io/name=billing" });
    assert.ok(pods.items.length > 0 && pods.items.every((p) => p.spec?.containers[0]?.image === "registry.example/shop-billing:1"),
      pods.items.map((p) => p.spec?.containers[0]?.image).join(", "));
  });

  it("fails closed for opted-in Deployments and stays invisible to others while the gate is down", async function () {
    await gate.stop();
    try {
      await kubectl(["scale", "deployment/plain", "--replicas=1"]);
      await kubectl(["annotate", "deployment/plain", "touched=yes"]);
      assert.equal((await get("plain")).spec?.replicas, 1);
      const refused = await failure(kubectl(["annotate", "deployment/catalog", "touched=yes"]));
      assert.match(refused, /failed calling webhook "(hold|validate)\.schema-gate\.dev"/);
      assert.equal((await get("catalog")).metadata?.annotations?.touched, undefined);
    } finally {
      gate = await startGate(env, GATE_ARGS);
    }
  });

  it("has only the leading replica write the scale guard: a follower leaves it alone, and writes it once it leads", async function () {
    this.timeout(120_000);
    const admission = env.kc.makeApiClient(k8s.AdmissionregistrationV1Api);
    const leases = env.kc.makeApiClient(k8s.CoordinationV1Api);
    const expression = async () => {
      const config = await admission.readValidatingWebhookConfiguration({ name: "schema-gate" });
      const hook = config.webhooks!.find((h) => h.name === SCALE_WEBHOOK)!;
      return hook.matchConditions!.find((m) => m.name === SCALE_CONDITION)!.expression;
    };
    await gate.stop();
    // Another replica leads: a Lease the test keeps renewing.
    const lease = { name: "schema-gate-controller", namespace: GATE_NAMESPACE };
    await leases.deleteNamespacedLease(lease).catch(() => undefined);
    const spec = () => ({ holderIdentity: "another-replica", leaseDurationSeconds: 3, renewTime: new k8s.V1MicroTime() });
    await leases.createNamespacedLease({ namespace: GATE_NAMESPACE, body: { metadata: { name: lease.name }, spec: spec() } });
    let renewing = true;
    const renewer = (async () => {
      while (renewing) {
        const current = await leases.readNamespacedLease(lease);
        await leases.replaceNamespacedLease({ ...lease, body: { ...current, spec: spec() } }).catch(() => undefined);
        await sleep(500);
      }
    })();
    try {
      gate = await startGate(env, GATE_ARGS);
      const stale = "request.namespace + '/' + request.name in []";
      const config = await admission.readValidatingWebhookConfiguration({ name: "schema-gate" });
      const w = config.webhooks!.findIndex((h) => h.name === SCALE_WEBHOOK);
      const c = config.webhooks![w]!.matchConditions!.findIndex((m) => m.name === SCALE_CONDITION);
      await admission.patchValidatingWebhookConfiguration(
        { name: "schema-gate", body: [{ op: "replace", path: `/webhooks/${w}/matchConditions/${c}/expression`, value: stale }] },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
      );
      await sleep(7000); // more than one of the guard's 5 s repairs
      assert.equal(await expression(), stale, "a replica that does not lead wrote the scale guard");
    } finally {
      renewing = false;
      await renewer;
    }
    const written = await pollUntil(async () => {
      const current = await expression();
      return current.includes(`'${ns}/ledger'`) ? current : undefined;
    }, { timeoutMs: 30_000, intervalMs: 250, what: "the gate, once leading, to list the held ledger in the scale guard" });
    assert.match(written, /^request\.namespace \+ '\/' \+ request\.name in \[/);
  });
});
