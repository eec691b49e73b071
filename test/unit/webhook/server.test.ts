import { strict as assert } from "node:assert";
import { X509Certificate } from "node:crypto";
import { Agent, request } from "node:https";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AdmissionContext } from "../../../src/core/admission.js";
import { mutate, validate } from "../../../src/core/admission.js";
import { createLogger } from "../../../src/logger.js";
import { createMetrics } from "../../../src/metrics.js";
import { run } from "../../../src/util/exec.js";
import { projectRoot } from "../../../src/local/paths.js";
import { createWebhookApp, serveHttps, type Decide, type RunningServer } from "../../../src/webhook/server.js";
import { CertificateSource } from "../../../src/webhook/tls.js";
import { pollUntil } from "../../../src/util/wait.js";
import { makeLoopbackCert, type ServingCert } from "../../../src/local/certs.js";
import { admissionReview } from "../../support/fixtures.js";

const context: AdmissionContext = {
  gateUsername: "system:serviceaccount:schema-gate:schema-gate",
  excludedNamespaces: new Set(["kube-system"]),
  group: () => ({}),
  deployment: () => undefined,
};

interface Reply {
  status: number;
  body: string;
  cert?: string;
}

function post(port: number, ca: string, path: string, body: string | Buffer, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, method: "POST", ca, agent: agent ?? false, headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        // Read now: a keep-alive socket goes back to the pool (and off the response) at the end.
        const peer = (res.socket as import("node:tls").TLSSocket).getPeerCertificate?.();
        res.on("data", (c) => (text += c));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, body: text, ...(peer?.fingerprint256 ? { cert: peer.fingerprint256 } : {}) });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("webhook HTTP server", function () {
  this.timeout(30_000);
  let cert: ServingCert;
  let server: RunningServer;
  let cachesReady = false;
  let decide: { mutate: Decide } = { mutate };
  const review = (name: Parameters<typeof admissionReview>[0]) => JSON.stringify(admissionReview(name));
  const call = (path: string, body: string | Buffer, agent?: Agent) => post(server.port, cert.ca, path, body, agent);
  const answer = async (path: string, body: string | Buffer) => {
    const reply = await call(path, body);
    assert.equal(reply.status, 200, "every outcome is an AdmissionReview with HTTP 200");
    const parsed = JSON.parse(reply.body);
    assert.equal(parsed.apiVersion, "admission.k8s.io/v1");
    assert.equal(parsed.kind, "AdmissionReview");
    return parsed.response;
  };

  before(async () => {
    cert = await makeLoopbackCert();
    const certs = new CertificateSource(join(cert.dir, "tls.crt"), join(cert.dir, "tls.key"), createLogger({ level: "silent" }));
    await certs.reload();
    const app = createWebhookApp({
      context,
      mutate: (r, c) => decide.mutate(r, c),
      validate,
      metrics: createMetrics(),
      log: createLogger({ level: "silent" }),
      cachesReady: () => cachesReady,
      tlsReady: () => certs.healthy(),
      bodyLimitBytes: 1024 * 1024,
    });
    server = await serveHttps(app, certs, { host: "127.0.0.1", port: 0 });
  });
  after(() => server.close());
  afterEach(() => (decide = { mutate }));

  it("answers a real AdmissionReview with the request's uid and a base64 JSON Patch", async () => {
    const response = await answer("/mutate", review("deployment-create"));
    assert.equal(response.uid, admissionReview("deployment-create").request.uid);
    assert.equal(response.allowed, true);
    assert.equal(response.patchType, "JSONPatch");
    const patch = JSON.parse(Buffer.from(response.patch, "base64").toString());
    assert.ok(patch.some((op: { path: string; value: unknown }) => op.path === "/spec/replicas" && op.value === 0));
  });

  it("answers a denial with status code, reason and message", async () => {
    const body = admissionReview("deployment-create");
    body.request.object.metadata.annotations["schema-gate.dev/on-failure"] = "explode";
    const response = await answer("/validate", JSON.stringify(body));
    assert.equal(response.allowed, false);
    assert.equal(response.status.code, 422);
    assert.match(response.status.message, /on-failure: "explode"/);
  });

  const malformed: Array<[string, () => string | Buffer, RegExp, string]> = [
    ["bad JSON (uid still recovered)", () => review("deployment-create").slice(0, 300), /not JSON/, admissionReview("deployment-create").request.uid],
    ["a JSON array", () => "[1,2]", /not an AdmissionReview object/, ""],
    ["the wrong kind", () => JSON.stringify({ ...admissionReview("deployment-create"), kind: "Deployment" }), /expected kind AdmissionReview.*admissionReviewVersions/, admissionReview("deployment-create").request.uid],
    ["the v1beta1 API", () => JSON.stringify({ ...admissionReview("deployment-create"), apiVersion: "admission.k8s.io/v1beta1" }), /apiVersion "admission\.k8s\.io\/v1beta1"/, admissionReview("deployment-create").request.uid],
    ["no request", () => JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" }), /has no request/, ""],
    ["a missing object", () => {
      const r = admissionReview("deployment-create");
      delete r.request.object;
      return JSON.stringify(r);
    }, /CREATE request has no object/, admissionReview("deployment-create").request.uid],
    ["an UPDATE without oldObject", () => {
      const r = admissionReview("deployment-update");
      delete r.request.oldObject;
      return JSON.stringify(r);
    }, /UPDATE request has no oldObject/, admissionReview("deployment-update").request.uid],
    ["an empty body", () => "", /not JSON/, ""],
  ];
  for (const [what, body, message, uid] of malformed) {
    it(`answers ${what} with a clean denial`, async () => {
      const response = await answer("/mutate", body());
      assert.equal(response.allowed, false);
      assert.equal(response.status.code, 400);
      assert.match(response.status.message, message);
      assert.equal(response.uid, uid);
    });
  }

  it("answers a body over the limit without reading it, and keeps serving on the connection", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: cert.ca });
    const huge = review("deployment-create").replace('"object":', `"padding":"${"x".repeat(2 * 1024 * 1024)}","object":`);
    const reply = await call("/mutate", huge, agent);
    const response = JSON.parse(reply.body).response;
    assert.equal(response.status.code, 413);
    assert.match(response.status.message, /exceeds the webhook's limit of 1048576 bytes/);
    assert.equal(response.uid, admissionReview("deployment-create").request.uid);
    const next = await call("/mutate", review("deployment-create"), agent);
    assert.equal(JSON.parse(next.body).response.allowed, true);
    agent.destroy();
  });

  it("turns an exception in the decision into an errored AdmissionReview, not a bare 500", async () => {
    decide = { mutate: () => { throw new Error("boom"); } };
    const response = await answer("/mutate", review("deployment-create"));
    assert.equal(response.allowed, false);
    assert.equal(response.status.code, 500);
    assert.match(response.status.message, /schema-gate failed to decide: boom/);
  });

  it("reports not ready until the caches have synced", async () => {
    const get = (path: string) =>
      new Promise<number>((resolve, reject) =>
        request({ host: "127.0.0.1", port: server.port, path, ca: cert.ca, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on("error", reject).end(),
      );
    cachesReady = false;
    assert.equal(await get("/readyz"), 503);
    assert.equal(await get("/healthz"), 200);
    cachesReady = true;
    assert.equal(await get("/readyz"), 200);
  });

  it("picks up a renewed certificate for new connections without dropping open ones", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: cert.ca });
    const first = await call("/mutate", review("deployment-create"), agent);
    const before = new X509Certificate(cert.cert).fingerprint256;
    assert.equal(first.cert, before);
    // Same CA, new serving key and certificate, written the way certs/generate.sh renews them.
    await run("bash", [join(projectRoot, "certs", "generate.sh"), cert.dir, "IP:127.0.0.1"]);
    const renewed = new X509Certificate(await readFile(join(cert.dir, "tls.crt"))).fingerprint256;
    assert.notEqual(renewed, before);
    const fresh = await pollUntil(
      async () => {
        const reply = await call("/mutate", review("deployment-create"));
        return reply.cert === renewed ? reply : undefined;
      },
      { timeoutMs: 10_000, what: "the renewed certificate to be served" },
    );
    assert.equal(JSON.parse(fresh.body).response.allowed, true);
    const reused = await call("/mutate", review("deployment-create"), agent);
    assert.equal(reused.cert, before, "the open connection carried on with its certificate");
    assert.equal(JSON.parse(reused.body).response.allowed, true);
    agent.destroy();
  });
});
