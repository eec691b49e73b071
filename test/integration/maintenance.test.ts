import { strict as assert } from "node:assert";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { A } from "../../src/core/annotations.js";
import { BACKEND_SERVICE, ORIGINAL_SPEC } from "../../src/core/ingress-switch.js";
import { FLAG_NAME, parseFlag } from "../../src/core/maintenance-flag.js";
import { BYPASS_SECRET, SIDECAR_NAME } from "../../src/core/sidecar-injection.js";
import { projectRoot } from "../../src/local/paths.js";
import { run } from "../../src/util/exec.js";
import { pollUntil } from "../../src/util/wait.js";
import { startGate, waitForWebhooks, type GateProcess } from "../support/gate.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { releaseShop, shopDatabase, shopReady, windowSettled } from "../support/shop.js";

const IMAGE = "registry.example/schema-gate:test";
const V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };
const V2 = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int NOT NULL DEFAULT 0;" };
const INGRESS = { enabled: true };

interface RawIngress {
  metadata: { resourceVersion: string; annotations?: Record<string, string> };
  spec: { rules: Array<{ http: { paths: Array<{ path: string; backend: { service: { name: string } } }> } }> };
}

/** The Ingress exactly as the apiserver returns it (kubectl's JSON, no client model in between). */
async function rawIngress(env: TestEnv, namespace: string, name: string): Promise<RawIngress> {
  return JSON.parse(await env.cluster.kubectl(["get", "ingress", name, "-n", namespace, "-o", "json"]));
}

/** The Ingress spec the release's manifest asks for (what restoring must give back). */
async function chartIngressSpec(env: TestEnv, namespace: string): Promise<unknown> {
  const manifest = await env.cluster.helm(["get", "manifest", "shop", "-n", namespace, "--kubeconfig", env.cluster.kubeconfig]);
  const docs = YAML.parseAllDocuments(manifest).map((d) => d.toJSON()).filter(Boolean);
  return docs.find((d) => d.kind === "Ingress" && d.metadata.name === "shop").spec;
}

const backends = (ingress: RawIngress) => ingress.spec.rules.flatMap((r) => r.http.paths.map((p) => p.backend.service.name));

async function flagOf(env: TestEnv, namespace: string) {
  const map = await env.core.readNamespacedConfigMap({ name: FLAG_NAME, namespace }).catch(() => undefined);
  return { data: map?.data ?? {}, flag: parseFlag(map?.data) };
}

function switchedIngress(env: TestEnv, namespace: string, what: string, check: (i: RawIngress) => boolean = () => true) {
  return pollUntil(
    async () => {
      const ingress = await rawIngress(env, namespace, "shop");
      return backends(ingress).every((b) => b === BACKEND_SERVICE) && check(ingress) ? ingress : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, what },
  );
}

async function cli(env: TestEnv, args: string[]): Promise<string> {
  const result = await run(process.execPath, [join(projectRoot, "bin", "schema-gate.js"), ...args, "--kubeconfig", env.cluster.kubeconfig]);
  return result.stdout;
}

describe("maintenance against the real apiserver", function () {
  let env: TestEnv;
  let gate: GateProcess;

  before(async function () {
    this.timeout(10 * 60_000);
    env = await testEnv();
    gate = await startGate(env, ["--settle", "1", "--lease-duration", "3", "--image", IMAGE, "--ingress-propagation", "1"]);
  });
  after(async () => gate?.stop());

  describe("a release with an annotated Ingress", function () {
    let ns: string;

    before(async function () {
      ns = await testNamespace("maint");
      await waitForWebhooks(env, ns);
      await shopDatabase(env, ns);
    });

    it("a window switches the annotated Ingress to a ready backend first and restores it exactly at the end", async function () {
      await releaseShop(env, ns, { schemaVersion: "1", sql: V1, ingress: INGRESS });
      const untouched = await rawIngress(env, ns, "billing-webhooks");
      const during = await switchedIngress(env, ns, "the window to switch Ingress shop");
      const backend = await env.apps.readNamespacedDeployment({ name: BACKEND_SERVICE, namespace: ns });
      assert.ok((backend.status?.readyReplicas ?? 0) >= 1, "the maintenance backend is ready while the Ingress points at it");
      assert.equal(backend.spec?.template.spec?.containers[0]?.image, IMAGE);
      // Asked to go, the backend's pod keeps serving while the Ingress controllers follow the restore.
      assert.equal(backend.spec?.template.spec?.containers[0]?.lifecycle?.preStop?.sleep?.seconds, 1);
      await env.core.readNamespacedService({ name: BACKEND_SERVICE, namespace: ns });

      const state = await windowSettled(env, ns, "1");
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      assert.equal(state.maintenanceOwned, true);
      // Once the Ingress is switched, the step gives the Ingress controllers their second (--ingress-propagation) before any pod stops.
      assert.ok((state.timings["maintenance-on"] ?? 0) >= 1000, `maintenance-on took ${state.timings["maintenance-on"]} ms`);
      const after = await pollUntil(
        async () => {
          const i = await rawIngress(env, ns, "shop");
          return i.metadata.annotations?.[ORIGINAL_SPEC] === undefined ? i : undefined;
        },
        { timeoutMs: 30_000, what: "Ingress shop to be restored" },
      );
      assert.deepEqual(after.spec, await chartIngressSpec(env, ns));
      assert.deepEqual(JSON.parse(during.metadata.annotations![ORIGINAL_SPEC]!), after.spec);
      assert.equal((await rawIngress(env, ns, "billing-webhooks")).metadata.resourceVersion, untouched.metadata.resourceVersion,
        "the unannotated Ingress was never written");
      const { flag } = await flagOf(env, ns);
      assert.equal(flag.enabled, false, "the window turned off the flag it turned on");
      await pollUntil(
        async () => (await env.apps.listNamespacedDeployment({ namespace: ns })).items.some((d) => d.metadata?.name === BACKEND_SERVICE) ? undefined : true,
        { timeoutMs: 30_000, what: "the maintenance backend to be removed" },
      );

      // The Ingress was switched before any service stopped and restored after they started.
      const events = (await env.core.listNamespacedEvent({ namespace: ns })).items
        .sort((a, b) => Number(a.metadata?.resourceVersion) - Number(b.metadata?.resourceVersion))
        .map((e) => e.reason);
      const at = (reason: string) => events.indexOf(reason);
      assert.ok(at("IngressSwitched") >= 0 && at("IngressSwitched") < at("Quiesced"), events.join(","));
      assert.ok(events.lastIndexOf("Restored") < events.lastIndexOf("IngressRestored"), events.join(","));
    });

    it("follows a flag turned on by kubectl within a moment, keeps it through a window, and takes in a helm upgrade", async function () {
      const started = Date.now();
      await env.cluster.kubectl([
        "create", "configmap", FLAG_NAME, "-n", ns, "--from-literal=enabled=true", "--from-literal=message=Back at 10:30",
        "--dry-run=client", "-o", "yaml",
      ]).then((yaml) => env.cluster.kubectl(["apply", "-f", "-"], yaml));
      const switched = await switchedIngress(env, ns, "a hand-set flag to switch Ingress shop");
      console.log(`      flag set by kubectl -> Ingress switched: ${Date.now() - started} ms`);
      const { flag, data } = await flagOf(env, ns);
      assert.equal(flag.owner, "manual");
      assert.ok(flag.since, "since recorded");
      assert.equal(data.message, "Back at 10:30");
      assert.deepEqual(
        flag.routes.map((r) => `${r.host}${r.path} -> ${r.url}`).sort(),
        [`shop.example/ -> http://catalog.${ns}.svc:80`, `shop.example/api -> http://orders.${ns}.svc:80`],
        "the bypass routes, with the named port resolved",
      );

      // A release during maintenance: new schema version, and the Ingress's path changed.
      // Every version of the Ingress stored from here on is watched: none may route to the app.
      const stored: RawIngress[] = [];
      const watch = await new k8s.Watch(env.kc).watch(
        `/apis/networking.k8s.io/v1/namespaces/${ns}/ingresses`,
        { resourceVersion: switched.metadata.resourceVersion, fieldSelector: "metadata.name=shop" },
        (type, object) => void (type === "MODIFIED" && stored.push(object as RawIngress)),
        () => undefined,
      );
      await releaseShop(env, ns, { schemaVersion: "2", sql: V2, ingress: { ...INGRESS, ordersPath: "/api/v2" } });
      const state = await windowSettled(env, ns, "2");
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      assert.notEqual(state.maintenanceOwned, true, "the window did not own the hand-set flag");
      await shopReady(env, ns);
      const still = await switchedIngress(env, ns, "Ingress shop to stay switched with the new spec recorded", (i) =>
        i.metadata.annotations?.[ORIGINAL_SPEC]?.includes("/api/v2") === true);
      assert.notEqual(still.metadata.resourceVersion, switched.metadata.resourceVersion);
      await pollUntil(async () => stored.some((i) => i.metadata.resourceVersion === still.metadata.resourceVersion) || undefined,
        { timeoutMs: 10_000, what: "the watch to see the upgraded Ingress" });
      watch.abort();
      for (const version of stored) {
        assert.deepEqual([...new Set(backends(version))], [BACKEND_SERVICE], `stored version ${version.metadata.resourceVersion} routes to the app`);
      }
      const after = await flagOf(env, ns);
      assert.equal(after.flag.enabled, true, "the window left the hand-set flag on");
      assert.equal(after.flag.owner, "manual");

      const again = await cli(env, ["maintenance", "on", "-n", ns]);
      assert.match(again, /maintenance on in namespace .* \(it already was, owner manual\)/);
      assert.match(again, /bypass: .*schema-gate-maintenance-bypass \(just created\)/);
      const secret = await env.core.readNamespacedSecret({ name: BYPASS_SECRET, namespace: ns });
      assert.ok(Buffer.from(secret.data?.token ?? "", "base64").length >= 16, "a bypass token exists");

      const out = await cli(env, ["maintenance", "off", "-n", ns]);
      assert.match(out, /maintenance off in namespace/);
      assert.match(out, /1 Ingress restored/);
      const restored = await rawIngress(env, ns, "shop");
      assert.equal(restored.metadata.annotations?.[ORIGINAL_SPEC], undefined);
      assert.deepEqual(restored.spec, await chartIngressSpec(env, ns), "restored to the spec of the upgrade made during maintenance");
    });

    it("refuses to turn off by hand a flag a window owns, unless forced", async function () {
      await env.core.patchNamespacedConfigMap(
        { name: FLAG_NAME, namespace: ns, body: { data: { enabled: "true", owner: "window-x", since: "t" } } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
      await assert.rejects(cli(env, ["maintenance", "off", "-n", ns, "--no-wait"]), /turned on by window-x.*--force/s);
      assert.equal((await flagOf(env, ns)).flag.enabled, true);
      await cli(env, ["maintenance", "off", "-n", ns, "--force"]);
      assert.equal((await flagOf(env, ns)).flag.enabled, false);
    });
  });

  describe("the sidecar", function () {
    it("is injected into a Deployment that asks for it; kubectl apply stores it and its pods run", async function () {
      const ns = await testNamespace("sidecar");
      await waitForWebhooks(env, ns);
      const manifest = {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "web", namespace: ns, annotations: { [A.sidecar]: "8080" } },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: { containers: [{ name: "app", image: "registry.example/web:1", ports: [{ containerPort: 8080 }] }] },
          },
        },
      };
      await env.cluster.kubectl(["apply", "-f", "-"], JSON.stringify(manifest));
      const stored = await env.apps.readNamespacedDeployment({ name: "web", namespace: ns });
      const init = stored.spec?.template.spec?.initContainers ?? [];
      assert.deepEqual(init.map((c) => [c.name, c.image, c.restartPolicy]), [[SIDECAR_NAME, IMAGE, "Always"]]);
      assert.deepEqual(stored.spec?.template.spec?.volumes?.map((v) => v.configMap?.name ?? v.secret?.secretName), [FLAG_NAME, BYPASS_SECRET]);
      // Applying the same manifest again changes nothing: the injection is stable.
      const generation = stored.metadata?.generation;
      await env.cluster.kubectl(["apply", "-f", "-"], JSON.stringify(manifest));
      assert.equal((await env.apps.readNamespacedDeployment({ name: "web", namespace: ns })).metadata?.generation, generation);
      await pollUntil(
        async () => {
          const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: "app=web" });
          const ready = pods.items.filter((p) => p.status?.phase === "Running" && p.spec?.initContainers?.[0]?.name === SIDECAR_NAME);
          return ready.length === 2 ? true : undefined;
        },
        { timeoutMs: 60_000, what: "web's two pods with the sidecar to run on the kwok nodes" },
      );
    });
  });
});
