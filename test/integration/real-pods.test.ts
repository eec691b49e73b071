import { strict as assert } from "node:assert";
import type { V1Pod } from "@kubernetes/client-node";
import { A } from "../../src/core/annotations.js";
import { BACKEND_PORT, BACKEND_SERVICE } from "../../src/core/ingress-switch.js";
import { SIDECAR_NAME } from "../../src/core/sidecar-injection.js";
import type { RealNode } from "../../src/local/real-node.js";
import { pollUntil } from "../../src/util/wait.js";
import { waitForWebhooks, type GateProcess } from "../support/gate.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { gateForRealShop, get, withClient } from "../support/real-shop.js";
import {
  apply,
  migrationAnnotations,
  schemaGate,
  setFlag,
  shopDeployment,
  sidecarApp,
  spread,
  untilEachAnswers,
  type SidecarApp,
} from "../support/real-pods.js";
import { eventsOf, GROUP, shopDatabase, shopReady, windowSettled } from "../support/shop.js";

/** Run with node -e in the backend's container: can it write, is its root read-only, is a token there. */
const INSIDE_PROBE = `const fs = require("fs"); let write; try { fs.writeFileSync("/tmp/probe", "x"); write = "written"; } catch (e) { write = e.code; }
  const root = fs.readFileSync("/proc/mounts", "utf8").split("\\n").find((l) => l.split(" ")[1] === "/");
  console.log(JSON.stringify({ write, root: root.split(" ")[3].split(",")[0], uid: process.getuid(),
    token: fs.existsSync("/var/run/secrets/kubernetes.io/serviceaccount") }));`;

describe("real pods: the Job runner, the maintenance backend and the sidecar on the real node", function () {
  let env: TestEnv;
  let node: RealNode;
  let gate: GateProcess;
  let shopImage: string;
  let pageImage: string;

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    env = await testEnv();
    ({ node, shopImage, pageImage, gate } = await gateForRealShop(env));
  });
  after(async () => gate?.stop());

  const MESSAGE = "Upgrading the shop database";
  let turningOn: SidecarApp;
  let turningOff: SidecarApp;
  let sidecarsOn: Promise<number[]> | undefined;
  let sidecarsOff: Promise<number[]> | undefined;
  let flippedAt: number;
  /** How long before the flip each pod of `app` started (a just-started pod is still being synced). */
  const ages = (app: SidecarApp) => app.pods.map((p) => `${((flippedAt - Date.parse(String(p.status?.startTime))) / 1000).toFixed(0)}s`).join(" ");

  // Two namespaces of the same app with the sidecar, one turning the flag on and one off, so
  // that the two waits for the kubelet (up to a minute and a half each) overlap, and overlap
  // the Job runner's tests too: the flags flip here, the sidecars' figures come last.
  describe("maintenance: the backend the gate creates, the flag flipped", function () {
    before(async function () {
      this.timeout(180_000);
      const app = (flag: boolean, ingress: boolean) =>
        sidecarApp(env, node, { image: shopImage, replicas: 3, ingress, ...(flag ? { flag: MESSAGE } : {}) });
      [turningOn, turningOff] = await Promise.all([app(false, true), app(true, false)]);
      for (const pod of [...turningOn.pods, ...turningOff.pods]) {
        assert.equal(pod.spec?.nodeName, node.name);
        assert.deepEqual(pod.spec?.initContainers?.map((c) => [c.name, c.image, c.restartPolicy]), [[SIDECAR_NAME, pageImage, "Always"]]);
        assert.ok(pod.status?.initContainerStatuses?.[0]?.state?.running, `${pod.metadata?.name}'s sidecar runs`);
      }
      assert.equal((await get(turningOn.serviceIP, 80, "/")).body.service, "web", "the app answers while the flag is off");
      assert.equal((await get(turningOff.serviceIP, 80, "/")).status, 503, "the page answers where the pods started with the flag on");
    });

    it("runs the backend as a real pod, read-only and without a token, serving the page through its Service via kube-proxy", async function () {
      const ns = turningOn.ns;
      // From the flips on, each sidecar is watched for its first answer of the other kind (figures below).
      flippedAt = Date.now();
      await Promise.all([setFlag(env, ns, true, MESSAGE), setFlag(env, turningOff.ns, false, MESSAGE)]);
      sidecarsOn = untilEachAnswers(turningOn.sidecars, 503, flippedAt);
      sidecarsOff = untilEachAnswers(turningOff.sidecars, 200, flippedAt);
      for (const p of [sidecarsOn, sidecarsOff]) p.catch(() => undefined);
      const pod = await pollUntil(async () => {
        const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: `app.kubernetes.io/name=${BACKEND_SERVICE}` });
        return pods.items.find((p) => p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
      }, { timeoutMs: 60_000, what: "the maintenance backend's pod to be Ready" });
      assert.equal(pod.spec?.nodeName, node.name);
      assert.match(pod.status?.containerStatuses?.[0]?.containerID ?? "", /^containerd:\/\//);
      assert.equal(pod.spec?.automountServiceAccountToken, false);
      const container = pod.spec!.containers[0]!;
      assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
      assert.ok(!container.volumeMounts?.some((m) => m.mountPath.startsWith("/var/run/secrets/kubernetes.io")), "no token mounted");
      // From inside the container (kubectl exec through the kubelet): a read-only root, no token.
      const inside = JSON.parse(await env.cluster.kubectl(["exec", "-n", ns, pod.metadata!.name!, "-c", "page", "--", process.execPath, "-e", INSIDE_PROBE]));
      assert.deepEqual(inside, { write: "EROFS", root: "ro", uid: 1000, token: false });
      const service = await env.core.readNamespacedService({ name: BACKEND_SERVICE, namespace: ns });
      // Ready is the kubelet's word; kube-proxy routes the Service once the EndpointSlice reaches
      // it, a moment later (until then the connection is refused).
      const page = await pollUntil(
        () => fetch(`http://${service.spec!.clusterIP}:${BACKEND_PORT}/checkout`, { headers: { accept: "text/html" } }),
        { timeoutMs: 15_000, what: "the maintenance backend's Service to answer through kube-proxy" },
      );
      assert.equal(page.status, 503);
      assert.match(page.headers.get("retry-after") ?? "", /^\d+$/);
      assert.match(await page.text(), new RegExp(MESSAGE));
      await pollUntil(async () => {
        const name = await env.cluster.kubectl(["get", "ingress", "shop", "-n", ns, "-o", "jsonpath={.spec.rules[0].http.paths[0].backend.service.name}"]);
        return name === BACKEND_SERVICE ? true : undefined;
      }, { timeoutMs: 10_000, what: "Ingress shop to point at the backend" });
    });
  });

  describe("the Job runner", function () {
    let ns: string;
    let url: string;
    let password: string;
    const ledger = (version: string, sql: string) => shopDeployment(node, {
      name: "ledger", image: shopImage, replicas: 1, version, annotations: migrationAnnotations(version), env: { MIGRATION_SQL: sql },
    });
    const jobPod = async (version: string): Promise<V1Pod> => {
      const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: "job-name" });
      const pod = pods.items.find((p) => p.spec?.containers[0]?.env?.some((e) => e.name === "SCHEMA_VERSION" && e.value === version));
      assert.ok(pod, `the migration pod of version ${version}`);
      return pod;
    };

    before(async function () {
      ns = await testNamespace("real-jobs");
      await waitForWebhooks(env, ns);
      ({ url } = await shopDatabase(env, ns, node.hostAddress));
      password = env.postgres.password;
    });

    it("runs the app's migrate command as a real container that commits the change, then starts the app", async function () {
      await apply(env, ns, ledger("1", "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0"));
      const state = await windowSettled(env, ns, "1");
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      const pod = await jobPod("1");
      assert.equal(pod.spec?.nodeName, node.name);
      const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
      assert.match(pod.status?.containerStatuses?.[0]?.containerID ?? "", /^containerd:\/\//);
      assert.equal(terminated?.exitCode, 0);
      const schema = await withClient(url, async (c) => ({
        columns: (await c.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position")).rows.map((r) => r.column_name),
        migrations: (await c.query("SELECT version FROM shop_migrations")).rows.map((r) => r.version),
      }));
      assert.deepEqual(schema, { columns: ["id", "name", "price"], migrations: ["1"] });
      await shopReady(env, ns, { ledger: 1 });
      console.log(`      (migrate step, Job created to complete: ${state.timings.migrate} ms)`);
    });

    it("shows a migration that exits 1 with its real exit code and log tail, password masked, in the record, the CLI and an Event", async function () {
      await apply(env, ns, ledger("2", "ALTER TABLE items ADD COLUMN price int"));
      const state = await windowSettled(env, ns, "2");
      assert.equal(state.result, undefined);
      const pod = await jobPod("2");
      assert.equal(pod.spec?.nodeName, node.name);
      assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 1);
      const failure = state.failure!.message;
      console.log(`      record's failure: ${failure.replace(/\n/g, "\n        ")}`);
      // What the container printed, as the kubelet kept it, reached the record.
      assert.match(failure, /migration Job .* failed .*exited with code 1/s);
      assert.match(failure, /migrate: schema version 2 failed: column "price" of relation "items" already exists/);
      assert.match(failure, /migrate: connecting to postgres:\/\/[^:]+:\*\*\*@10\.88\.0\.1:/);
      const record = await env.cluster.kubectl(["get", "migrationwindow", GROUP, "-n", ns, "-o", "json"]);
      const status = await schemaGate(env, ["status", "-n", ns]);
      const event = await pollUntil(async () => (await eventsOf(env, ns, "ledger")).find((e) => e.reason === "WindowFailed"),
        { timeoutMs: 10_000, what: "the WindowFailed Event" });
      for (const [where, text] of [["the MigrationWindow", record], ["schema-gate status", status], ["the Event", event.message ?? ""]]) {
        assert.match(text!, /exited with code 1/, where);
        assert.match(text!, /column \\?"price\\?" of relation \\?"items\\?" already exists/, where);
        assert.ok(!text!.includes(password) && !text!.includes(encodeURIComponent(password)), `${where} shows the password`);
      }
      assert.match(status, /shop-db {2}Failed/);
      const ledgerDeployment = await env.apps.readNamespacedDeployment({ name: "ledger", namespace: ns });
      assert.equal(ledgerDeployment.metadata?.annotations?.[A.phase], "Failed");
      assert.equal(ledgerDeployment.spec?.replicas, 0, "held at zero");
      assert.deepEqual(await withClient(url, async (c) => (await c.query("SELECT version FROM shop_migrations")).rows.map((r) => r.version)), ["1"]);
    });
  });

  describe("maintenance: the injected sidecar, as the kubelet refreshes the flag", function () {
    before(() => assert.ok(sidecarsOn && sidecarsOff, "the flags were flipped (the backend's test)"));

    // The kubelet rewrites a mounted ConfigMap when it next syncs the pod (syncFrequency,
    // 1 min by default, plus jitter); the gate annotates the sidecars' pods when the flag
    // turns on or off, which has it sync them at once. Figures, not assertions on time.
    it("switches each sidecar to the page once the kubelet refreshes the mounted flag, and the app's Service with them", async function () {
      this.timeout(180_000);
      const on = (await sidecarsOn)!;
      console.log(`      flag on -> each sidecar's first page (the gate nudges the pods, the kubelet rewrites the mounted flag): ${spread(on)}; pods started ${ages(turningOn)} before`);
      for (const p of (await env.core.listNamespacedPod({ namespace: turningOn.ns, labelSelector: "app=web" })).items) {
        assert.match(p.metadata?.annotations?.[A.flagSeen] ?? "", /^on-/, `${p.metadata?.name} was nudged for the flag turned on`);
      }
      const page = await fetch(`http://${turningOn.serviceIP}/`, { headers: { accept: "application/json" } });
      assert.equal(page.status, 503);
      assert.equal((await page.json() as { message: string }).message, MESSAGE);
    });

    it("proxies to the app again once the kubelet refreshes the flag turned off, and the gate removes the backend", async function () {
      this.timeout(180_000);
      const off = (await sidecarsOff)!;
      console.log(`      flag off -> each sidecar's first app answer: ${spread(off)}; pods started ${ages(turningOff)} before`);
      const app = await get(turningOff.serviceIP, 80, "/");
      assert.equal(app.status, 200);
      assert.equal(app.body.service, "web");
      // And back: the pods that switched to the page follow the flag turned off.
      const since = Date.now();
      await setFlag(env, turningOn.ns, false, MESSAGE);
      const back = await untilEachAnswers(turningOn.sidecars, 200, since);
      console.log(`      flag off again -> each sidecar's first app answer: ${spread(back)}`);
      assert.equal((await get(turningOn.serviceIP, 80, "/")).body.service, "web");
      await pollUntil(async () => (await env.apps.listNamespacedDeployment({ namespace: turningOn.ns })).items.some((d) => d.metadata?.name === BACKEND_SERVICE) ? undefined : true,
        { timeoutMs: 30_000, what: "the gate to remove the maintenance backend" });
    });
  });
});
