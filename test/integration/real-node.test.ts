import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import { request } from "node:http";
import pg from "pg";
import type { V1Deployment, V1Pod } from "@kubernetes/client-node";
import { pinnedVersions } from "../../src/local/binaries.js";
import type { RealNode } from "../../src/local/real-node.js";
import { pollUntil } from "../../src/util/wait.js";
import { makeCert, type ServingCert } from "../../src/local/certs.js";
import { apiErrorMessage, onTeardown, testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { podDatabaseUrl, requireRealNode, testAppImage } from "../support/real-node.js";

/** A serving certificate for Service app in `ns`, as the apiserver dials it (app.<ns>.svc). */
function servingCert(ns: string): Promise<ServingCert> {
  return makeCert([`DNS:app.${ns}.svc`, `DNS:app.${ns}.svc.cluster.local`]);
}

/** GET over a fresh connection (no keep-alive, so each request is balanced anew). */
function get(host: string, port: number, path: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, agent: false, timeout: 10_000 }, (res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET http://${host}:${port}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

function appDeployment(node: RealNode, image: string, env: Record<string, string>): V1Deployment {
  const tls = { name: "tls", secret: { secretName: "app-tls" } };
  return {
    metadata: { name: "app" },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: "app" } },
      template: {
        metadata: { labels: { app: "app" } },
        spec: {
          ...node.placement,
          containers: [{
            name: "app",
            image,
            imagePullPolicy: "Never",
            env: Object.entries(env).map(([name, value]) => ({ name, value })),
            ports: [{ containerPort: 8080 }, { containerPort: 8443 }],
            readinessProbe: { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 1 },
            volumeMounts: [{ name: "tls", mountPath: "/tls", readOnly: true }],
          }],
          volumes: [tls],
        },
      },
    },
  };
}

describe("real node: pods that really run, beside the kwok nodes", function () {
  let env: TestEnv;
  let node: RealNode;
  let ns: string;
  let serviceIP: string;
  let pods: V1Pod[];
  let cert: ServingCert;

  const appPods = async () =>
    (await env.core.listNamespacedPod({ namespace: ns, labelSelector: "app=app" })).items.filter((p) => !p.metadata?.deletionTimestamp);

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    env = await testEnv();
    node = requireRealNode(env);
    const image = await testAppImage(node);
    ns = await testNamespace("real-node");
    cert = await servingCert(ns);
    await env.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "app-tls" }, type: "kubernetes.io/tls", stringData: { "tls.crt": cert.cert, "tls.key": cert.key } },
    });
    const service = await env.core.createNamespacedService({
      namespace: ns,
      body: {
        metadata: { name: "app" },
        spec: {
          selector: { app: "app" },
          ports: [{ name: "http", port: 80, targetPort: 8080 }, { name: "webhook", port: 443, targetPort: 8443 }],
        },
      },
    });
    serviceIP = service.spec?.clusterIP ?? "";
    const started = Date.now();
    await env.apps.createNamespacedDeployment({
      namespace: ns,
      body: appDeployment(node, image.name, {
        DATABASE_URL: podDatabaseUrl(env, node),
        PEER_URL: `http://${serviceIP}/`,
        TLS_DIR: "/tls",
      }),
    });
    await pollUntil(
      async () => {
        const d = await env.apps.readNamespacedDeployment({ name: "app", namespace: ns });
        return d.status?.readyReplicas === 2 ? true : undefined;
      },
      { timeoutMs: 90_000, what: "2 ready pods of app on the real node" },
    );
    console.log(`      (2 pods Ready on the real node ${((Date.now() - started) / 1000).toFixed(1)}s after the Deployment was created)`);
    pods = await appPods();
  });

  it("runs them as containers on the real node with pod-network addresses, each holding PostgreSQL connections", async function () {
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      assert.equal(pod.spec?.nodeName, node.name);
      assert.match(pod.status?.podIP ?? "", /^10\.88\./);
      assert.match(pod.status?.containerStatuses?.[0]?.containerID ?? "", /^containerd:\/\//);
    }
    const client = new pg.Client({ connectionString: env.postgres.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ addr: string }>(
        "SELECT host(client_addr) AS addr FROM pg_stat_activity WHERE client_addr <<= $1::inet",
        [node.podSubnet],
      );
      for (const pod of pods) assert.ok(rows.some((r) => r.addr === pod.status?.podIP), `a connection from ${pod.metadata?.name}`);
    } finally {
      await client.end();
    }
  });

  it("shows the container's output with kubectl logs", async function () {
    const logs = await env.cluster.kubectl(["logs", "-n", ns, pods[0]?.metadata?.name ?? ""]);
    assert.match(logs, new RegExp(`connected to PostgreSQL ${node.hostAddress.replace(/\./g, "\\.")}`));
  });

  it("balances a ClusterIP Service over both pods through kube-proxy, from the host and from a pod", async function () {
    // kube-proxy programs the Service a moment after its endpoints become ready.
    await pollUntil(() => get(serviceIP, 80, "/healthz").then((r) => (r.status === 200 ? true : undefined)), {
      timeoutMs: 20_000,
      what: `Service app (${serviceIP}) to answer through kube-proxy`,
    });
    // The second endpoint can reach kube-proxy's rules a moment after the first (the
    // EndpointSlice follows the pods' readiness, kube-proxy the EndpointSlice).
    const seen = new Set<string>();
    await pollUntil(async () => {
      const { status, body } = await get(serviceIP, 80, "/");
      assert.equal(status, 200);
      assert.equal(body.database.db, env.postgres.database);
      seen.add(body.pod);
      return seen.size === 2 ? true : undefined;
    }, { timeoutMs: 20_000, intervalMs: 20, what: "both pods to answer through the Service" });
    assert.deepEqual([...seen].sort(), pods.map((p) => p.metadata?.name).sort());
    const viaPod = await get(pods[0]?.status?.podIP ?? "", 8080, "/peer");
    assert.equal(viaPod.status, 200);
    assert.ok(pods.some((p) => p.metadata?.name === viaPod.body.body.pod), "the Service answered the pod with one of the app's pods");
  });

  it("reaches the apiserver from a pod through the kubernetes Service, verifying its certificate", async function () {
    const { status, body } = await get(pods[0]?.status?.podIP ?? "", 8080, "/kubernetes");
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.status, 200);
    assert.equal(body.body.gitVersion, (await pinnedVersions()).kubernetes);
  });

  it("resolves Service names through cluster DNS, and no name outside the cluster", async function () {
    const podIP = pods[0]?.status?.podIP ?? "";
    const resolve = async (name: string) => (await get(podIP, 8080, `/dns?name=${encodeURIComponent(name)}`)).body;
    assert.deepEqual((await resolve("app")).addresses, [serviceIP], "the short name, through the search path");
    assert.deepEqual((await resolve(`app.${ns}.svc.${node.clusterDomain}`)).addresses, [serviceIP]);
    const kubernetes = await env.core.readNamespacedService({ name: "kubernetes", namespace: "default" });
    assert.deepEqual((await resolve("kubernetes.default.svc")).addresses, [kubernetes.spec?.clusterIP]);
    const outside = await resolve("example.com");
    assert.ok(outside.error, `example.com must not resolve from a pod here: ${JSON.stringify(outside)}`);
  });

  it("has the apiserver call a webhook registered by Service reference, answered by a pod", async function () {
    const name = `real-node-${ns}`;
    await env.admission.createValidatingWebhookConfiguration({
      body: {
        metadata: { name },
        webhooks: [{
          name: "app.real-node.schema-gate.dev",
          clientConfig: { service: { namespace: ns, name: "app", port: 443, path: "/validate" }, caBundle: cert.caBundle },
          rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"] }],
          namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } },
          failurePolicy: "Fail",
          sideEffects: "None",
          admissionReviewVersions: ["v1"],
          timeoutSeconds: 5,
        }],
      },
    });
    onTeardown(() => env.admission.deleteValidatingWebhookConfiguration({ name }));
    // The apiserver picks up a new webhook configuration a moment later.
    let attempt = 0;
    const denial = await pollUntil(async () => {
      try {
        await env.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: `denied-${attempt++}` } } });
        return undefined;
      } catch (error) {
        return apiErrorMessage(error);
      }
    }, { timeoutMs: 30_000, what: "the webhook to deny a ConfigMap" });
    assert.match(denial, /denied by pod app-/);
    assert.ok(pods.some((p) => denial.includes(p.metadata?.name ?? "?")), denial);
    await env.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "allowed" } } });
  });

  it("delivers SIGTERM when a pod is deleted: the app closes its pool and exits long before the grace period", async function () {
    const pod = pods[1] as V1Pod;
    const name = pod.metadata?.name ?? "";
    const follow = spawn(env.cluster.binaries.kubectl, ["logs", "-f", "-n", ns, name], {
      env: { ...process.env, KUBECONFIG: env.cluster.kubeconfig },
    });
    let output = "";
    follow.stdout.on("data", (chunk) => (output += chunk));
    const ended = new Promise((resolve) => follow.on("close", resolve));
    await pollUntil(async () => (output.includes("listening") ? true : undefined), { timeoutMs: 20_000, what: "kubectl logs -f to follow" });
    const started = Date.now();
    await env.core.deleteNamespacedPod({ name, namespace: ns });
    await pollUntil(
      async () => ((await env.core.listNamespacedPod({ namespace: ns })).items.some((p) => p.metadata?.name === name) ? undefined : true),
      { timeoutMs: 40_000, what: `pod ${name} to be gone` },
    );
    const seconds = (Date.now() - started) / 1000;
    console.log(`      (pod gone ${seconds.toFixed(1)}s after delete, grace period 30 s)`);
    await ended;
    assert.match(output, /SIGTERM received/);
    assert.match(output, /pool closed, exiting/);
    assert.ok(seconds < 15, `the pod took ${seconds}s to go: the app did not exit on SIGTERM`);
  });
});
