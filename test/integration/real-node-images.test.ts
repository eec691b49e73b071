import { strict as assert } from "node:assert";
import { request } from "node:http";
import type { RealNode } from "../../src/local/real-node.js";
import { pollUntil } from "../../src/util/wait.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { gateImageOnNode, requireRealNode } from "../support/real-node.js";

describe("real node: images built here, and nothing pulled", function () {
  let env: TestEnv;
  let node: RealNode;
  let ns: string;

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    env = await testEnv();
    node = requireRealNode(env);
    ns = await testNamespace("real-node-images");
  });

  it("runs the gate's own image (built without Docker) as non-root on a read-only root: schema-gate page serves the page", async function () {
    const image = await gateImageOnNode(node);
    await env.core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: "flag" }, data: { enabled: "true", message: "Upgrading the shop database" } },
    });
    await env.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: "page" },
        spec: {
          ...node.placement,
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true },
          containers: [{
            name: "page",
            image: image.name,
            imagePullPolicy: "Never",
            args: ["page"],
            securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
            volumeMounts: [{ name: "flag", mountPath: "/etc/schema-gate/maintenance", readOnly: true }],
            readinessProbe: { httpGet: { path: "/.schema-gate/healthz", port: 8080 }, periodSeconds: 1 },
          }],
          volumes: [{ name: "flag", configMap: { name: "flag" } }],
        },
      },
    });
    const pod = await pollUntil(async () => {
      const p = await env.core.readNamespacedPod({ name: "page", namespace: ns });
      return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? p : undefined;
    }, { timeoutMs: 60_000, what: "the page pod to be Ready" });
    const response = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = request({ host: pod.status?.podIP, port: 8080, path: "/checkout", headers: { accept: "text/html" }, agent: false }, (res) => {
        let body = "";
        res.on("data", (chunk) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(response.status, 503);
    assert.ok(response.headers["retry-after"], "Retry-After");
    assert.match(response.body, /Upgrading the shop database/);
  });


  it("is left to its kubelet by kwok, and pulls nothing: an image not imported stays unpulled, a pull stops at loopback", async function () {
    const pinned = (name: string, imagePullPolicy: string) => env.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name },
        spec: { ...node.placement, containers: [{ name: "app", image: "registry.example/not-imported:1", imagePullPolicy }] },
      },
    });
    await pinned("never", "Never");
    await pinned("always", "Always");
    const waiting = (name: string) => pollUntil(async () => {
      const pod = await env.core.readNamespacedPod({ name, namespace: ns });
      const state = pod.status?.containerStatuses?.[0]?.state?.waiting;
      return state?.reason && state.reason !== "ContainerCreating" ? { phase: pod.status?.phase, ...state } : undefined;
    }, { timeoutMs: 30_000, what: `the kubelet to report pod ${name}'s image` });
    const never = await waiting("never");
    assert.equal(never.reason, "ErrImageNeverPull");
    assert.equal(never.phase, "Pending", "kwok would have made it Running");
    const always = await waiting("always");
    assert.match(always.reason ?? "", /ErrImagePull|ImagePullBackOff/);
    if (always.reason === "ErrImagePull") assert.match(always.message ?? "", /proxyconnect tcp: dial tcp 127\.0\.0\.1:9/);
  });

});
