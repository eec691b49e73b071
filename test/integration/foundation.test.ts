import { strict as assert } from "node:assert";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import pg from "pg";
import type { V1Deployment } from "@kubernetes/client-node";
import { pinnedVersions } from "../../src/local/binaries.js";
import { pollUntil } from "../../src/util/wait.js";
import { makeLoopbackCert } from "../../src/local/certs.js";
import { localClusterDir } from "../../src/local/cluster.js";
import { POD_GATEWAY } from "../../src/local/node-layout.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { listeners, namesDir, type Listener } from "../support/listeners.js";

function deployment(name: string, replicas: number): V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: "app", image: "registry.example/app:1" }] },
      },
    },
  };
}

describe("foundation: the real control plane and PostgreSQL the tests run against", function () {
  let env: TestEnv;
  let ns: string;

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    env = await testEnv();
    ns = await testNamespace("foundation");
  });

  it("reports the pinned Kubernetes server version", async function () {
    if (env.cluster.kind !== "kwok") this.skip();
    const version = JSON.parse(await env.cluster.kubectl(["version", "-o", "json"]));
    const pinned = await pinnedVersions();
    assert.equal(version.serverVersion.gitVersion, pinned.kubernetes);
    assert.equal(version.clientVersion.gitVersion, pinned.kubernetes);
  });

  it("runs a Deployment's pods to Ready on kwok nodes and removes them when scaled to 0", async function () {
    await env.apps.createNamespacedDeployment({ namespace: ns, body: deployment("web", 3) });
    const ready = await pollUntil(
      async () => {
        const d = await env.apps.readNamespacedDeployment({ name: "web", namespace: ns });
        return d.status?.readyReplicas === 3 ? d : undefined;
      },
      { timeoutMs: 60_000, what: "3 ready replicas of web" },
    );
    assert.equal(ready.status?.availableReplicas, 3);
    const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: "app=web" });
    assert.equal(pods.items.length, 3);
    for (const pod of pods.items) {
      assert.equal(pod.status?.phase, "Running");
      assert.ok(pod.spec?.nodeName, "pod was scheduled onto a node");
    }

    await env.apps.patchNamespacedDeploymentScale(
      { name: "web", namespace: ns, body: [{ op: "replace", path: "/spec/replicas", value: 0 }] },
    );
    await pollUntil(
      async () => {
        const left = await env.core.listNamespacedPod({ namespace: ns, labelSelector: "app=web" });
        return left.items.length === 0 ? true : undefined;
      },
      { timeoutMs: 60_000, what: "web's pods to be deleted" },
    );
  });

  it("completes a Job", async function () {
    await env.batch.createNamespacedJob({
      namespace: ns,
      body: {
        metadata: { name: "once" },
        spec: {
          backoffLimit: 0,
          template: { spec: { restartPolicy: "Never", containers: [{ name: "run", image: "registry.example/job:1" }] } },
        },
      },
    });
    const job = await pollUntil(
      async () => {
        const j = await env.batch.readNamespacedJob({ name: "once", namespace: ns });
        return j.status?.succeeded === 1 ? j : undefined;
      },
      { timeoutMs: 60_000, what: "Job once to succeed" },
    );
    assert.ok(job.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True"));
  });

  it("calls an HTTPS admission webhook served on 127.0.0.1 and registered by url + caBundle", async function () {
    const cert = await makeLoopbackCert();
    const seen: Array<{ operation: string; kind: string; name: string; namespace: string }> = [];
    const server: Server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        const review = JSON.parse(body);
        const r = review.request;
        seen.push({ operation: r.operation, kind: r.kind.kind, name: r.name, namespace: r.namespace });
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({
          apiVersion: "admission.k8s.io/v1",
          kind: "AdmissionReview",
          response: { uid: r.uid, allowed: true },
        }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const hookName = `probe-${ns}`;
    try {
      await env.admission.createValidatingWebhookConfiguration({
        body: {
          metadata: { name: hookName },
          webhooks: [{
            name: "probe.schema-gate.dev",
            admissionReviewVersions: ["v1"],
            sideEffects: "None",
            failurePolicy: "Ignore",
            timeoutSeconds: 5,
            clientConfig: { url: `https://127.0.0.1:${port}/validate`, caBundle: cert.caBundle },
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } },
            rules: [{ apiGroups: ["apps"], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["deployments"] }],
          }],
        },
      });
      await env.apps.createNamespacedDeployment({ namespace: ns, body: deployment("hooked", 1) });
      // The apiserver loads webhook configurations asynchronously: update until the hook fires.
      let n = 0;
      await pollUntil(
        async () => {
          await env.apps.patchNamespacedDeployment({
            name: "hooked",
            namespace: ns,
            body: [{ op: "add", path: "/metadata/annotations", value: { probe: String(++n) } }],
          });
          return seen.length > 0 ? true : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 500, what: "the apiserver to call the probe webhook" },
      );
      assert.deepEqual(seen[0], { operation: "UPDATE", kind: "Deployment", name: "hooked", namespace: ns });
    } finally {
      await env.admission.deleteValidatingWebhookConfiguration({ name: hookName }).catch(() => undefined);
      server.close();
    }
  });

  it("round-trips a query through the PostgreSQL server", async function () {
    const client = new pg.Client({ connectionString: env.postgres.url });
    await client.connect();
    try {
      await client.query("CREATE TABLE IF NOT EXISTS probe (id int primary key, note text)");
      await client.query("INSERT INTO probe VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET note = $2", [1, "hello"]);
      const { rows } = await client.query("SELECT note, current_user AS who FROM probe WHERE id = 1");
      assert.deepEqual(rows, [{ note: "hello", who: "postgres" }]);
    } finally {
      await client.end();
    }
  });

  it("listens on loopback only (and on the pod bridge for what the real node's pods use): no etcd or apiserver on every interface", async function () {
    if (env.cluster.kind !== "kwok") this.skip();
    const dirs = [localClusterDir(), env.postgres.dataDir, ...(env.cluster.realNode ? [env.cluster.realNode.dir] : [])];
    const found = await listeners((_pid, args) => dirs.some((dir) => namesDir(args, dir)));
    const programs = new Set(found.map((l) => l.program));
    for (const program of ["etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "postgres"]) {
      assert.ok([...programs].some((p) => p.startsWith(program)), `no listener of ${program} found among ${[...programs].join(", ")}`);
    }
    // The control plane stays on loopback even with a real node: its pods reach the apiserver
    // through a forwarder on the bridge, and nothing of theirs needs etcd or the others.
    const loopback = ["127.0.0.1", "[::1]"];
    const controlPlane = /^(etcd|kube-apiserver|kube-controller|kube-scheduler|kwok)/;
    const allowed = (l: Listener) =>
      loopback.includes(l.address) || (env.cluster.realNode !== undefined && !controlPlane.test(l.program) && l.address === POD_GATEWAY);
    const open = found.filter((l) => !allowed(l)).map((l) => `${l.program} (pid ${l.pid}) on ${l.address}:${l.port}`);
    assert.deepEqual(open, [], "listening beyond loopback (and the pod bridge)");
  });
});
