import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import http from "node:http";
import { Agent, request } from "node:https";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mutate, mutateIngress, validate, type AdmissionContext } from "../../src/core/admission.js";
import { makeLoopbackCert } from "../../src/local/certs.js";
import { MountedConfigMap } from "../../src/local/mounted-configmap.js";
import { projectRoot } from "../../src/local/paths.js";
import { createLogger } from "../../src/logger.js";
import { createMetrics } from "../../src/metrics.js";
import { freePort } from "../../src/util/net.js";
import { pollUntil } from "../../src/util/wait.js";
import { createWebhookApp, serveHttps, type RunningServer } from "../../src/webhook/server.js";
import { CertificateSource } from "../../src/webhook/tls.js";
import { admissionReview } from "../support/fixtures.js";
import { hostileBody, hostileRequest, random } from "../support/fuzz.js";

const INPUTS = Number(process.env.SCHEMA_GATE_FUZZ_INPUTS ?? 10_000);
const CONCURRENCY = 16;
const SEED = Number(process.env.SCHEMA_GATE_FUZZ_SEED ?? 20261201);

/** Runs `send` for inputs 0..count-1, `CONCURRENCY` at a time. */
async function inParallel(count: number, send: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) await send(next++);
  }));
}

const ingressReview = () => {
  const review = admissionReview("deployment-create");
  review.request.kind = { group: "networking.k8s.io", version: "v1", kind: "Ingress" };
  review.request.resource = { group: "networking.k8s.io", version: "v1", resource: "ingresses" };
  review.request.object = {
    apiVersion: "networking.k8s.io/v1", kind: "Ingress",
    metadata: { name: "shop", namespace: "shop", annotations: { "schema-gate.dev/maintenance": "true", "schema-gate.dev/original-spec": "{}" } },
    spec: { rules: [{ host: "shop.example", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "orders", port: { number: 80 } } } }] } }] },
  };
  return review;
};

describe(`hostile input on every listener (${INPUTS} seeded inputs each, seed ${SEED})`, function () {
  this.timeout(5 * 60_000);

  describe("the webhook server", function () {
    let server: RunningServer;
    let ca: string;
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const context: AdmissionContext = {
      gateUsername: "system:serviceaccount:schema-gate:schema-gate",
      excludedNamespaces: new Set(["kube-system"]),
      group: () => ({}),
      deployment: () => undefined,
      maintenanceOn: () => true,
    };

    before(async () => {
      const cert = await makeLoopbackCert();
      ca = cert.ca;
      const log = createLogger({ level: "silent" });
      const certs = new CertificateSource(join(cert.dir, "tls.crt"), join(cert.dir, "tls.key"), log);
      await certs.reload();
      const app = createWebhookApp({ context, mutate, validate, mutateIngress, metrics: createMetrics(), log, cachesReady: () => true, tlsReady: () => certs.healthy() });
      server = await serveHttps(app, certs, { host: "127.0.0.1", port: 0 });
    });
    after(async () => {
      agent.destroy();
      await server?.close();
    });

    const post = (path: string, body: string | Buffer) => new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: server.port, path, method: "POST", ca, agent, headers: { "content-type": "application/json" } }, (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on("error", reject);
      req.end(body);
    });

    const fixtures = { "/mutate": ["deployment-create", "deployment-update"], "/validate": ["deployment-update", "deployment-scale"], "/mutate-ingress": [] } as const;
    for (const path of ["/mutate", "/validate", "/mutate-ingress"] as const) {
      it(`${path}: every answer is a well-formed AdmissionReview with the request's uid, and the server still serves`, async () => {
        const rand = random(SEED + path.length);
        const counts = { allowed: 0, denied: 0, patched: 0 };
        await inParallel(INPUTS, async () => {
          const names = fixtures[path];
          const document = names.length ? admissionReview(names[Math.floor(rand() * names.length)]!) : ingressReview();
          const body = hostileBody(rand, document);
          const reply = await post(path, body);
          assert.equal(reply.status, 200, `HTTP ${reply.status} for ${String(body).slice(0, 200)}`);
          const review = JSON.parse(reply.text);
          assert.equal(review.kind, "AdmissionReview");
          assert.equal(typeof review.response?.allowed, "boolean");
          let sent: any;
          try {
            sent = JSON.parse(String(body));
          } catch {
            sent = undefined;
          }
          const uid = sent?.request?.uid;
          if (typeof uid === "string") assert.equal(review.response.uid, uid);
          if (review.response.patch) counts.patched++;
          else if (review.response.allowed) counts.allowed++;
          else counts.denied++;
        });
        console.log(`      ${path}: ${INPUTS} inputs, 0 crashes: ${counts.allowed} allowed, ${counts.patched} patched, ${counts.denied} denied`);
        const valid = path === "/mutate-ingress" ? ingressReview() : admissionReview(fixtures[path][0]!);
        const healthy = await post(path, JSON.stringify(valid));
        assert.equal(JSON.parse(healthy.text).response.uid, valid.request.uid);
      });
    }
  });

  for (const command of ["sidecar", "page"] as const) {
    describe(`schema-gate ${command}`, function () {
      let app: http.Server;
      let url: string;
      let child: ReturnType<typeof spawn>;

      before(async () => {
        app = http.createServer((req, res) => {
          req.resume();
          res.end("hello from the app");
        });
        await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
        const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
        const routes = JSON.stringify([{ host: "shop.example", path: "/", pathType: "Prefix", url: appUrl }, { host: "x", path: "/", pathType: "Prefix", url: "http://[" }]);
        const flags = await MountedConfigMap.create({ enabled: "true", message: "back soon", routes });
        const bypassDir = await mkdtemp(join(tmpdir(), "schema-gate-fuzz-"));
        await writeFile(join(bypassDir, "token"), "fuzz-token");
        const port = await freePort();
        url = `http://127.0.0.1:${port}`;
        child = spawn(process.execPath, [
          join(projectRoot, "bin", "schema-gate.js"), command, `--listen=127.0.0.1:${port}`, `--flag-dir=${flags.dir}`,
          `--bypass-file=${join(bypassDir, "token")}`, ...(command === "sidecar" ? [`--upstream=${appUrl}`] : []),
        ], { stdio: ["ignore", "ignore", "inherit"] });
        await pollUntil(async () => ((await fetch(`${url}/.schema-gate/healthz`).catch(() => undefined))?.ok ? true : undefined), {
          timeoutMs: 15_000, intervalMs: 100, what: `schema-gate ${command} to listen`,
        });
      });
      after(async () => {
        child?.kill("SIGTERM");
        await new Promise((resolve) => app?.close(resolve));
      });

      /** Sends one raw request and returns the status line ("" when the server closed without one). */
      const raw = (text: string) => new Promise<string>((resolve, reject) => {
        const { port } = new URL(url);
        const socket = net.connect(Number(port), "127.0.0.1", () => socket.write(text, "latin1"));
        socket.setTimeout(10_000, () => socket.destroy(new Error(`no answer in 10 s to ${JSON.stringify(text.slice(0, 200))}`)));
        let answer = "";
        socket.on("data", (chunk) => (answer += chunk.toString("latin1")));
        socket.on("close", () => resolve(answer.split("\r\n")[0] ?? ""));
        socket.on("error", reject);
      });

      it("answers every request with an HTTP status and keeps running", async () => {
        const rand = random(SEED + command.length * 7);
        const byStatus = new Map<string, number>();
        await inParallel(INPUTS, async () => {
          const text = hostileRequest(rand);
          const status = await raw(text);
          assert.match(status, /^HTTP\/1\.[01] [1-5]\d\d /, `answer ${JSON.stringify(status)} to ${JSON.stringify(text.slice(0, 300))}`);
          const code = status.split(" ")[1]!;
          byStatus.set(code, (byStatus.get(code) ?? 0) + 1);
          assert.equal(child.exitCode, null, "the process is still running");
        });
        const counts = [...byStatus].sort().map(([code, n]) => `${code}: ${n}`).join(", ");
        console.log(`      ${command}: ${INPUTS} requests, 0 crashes; by status ${counts}`);
        assert.equal((await fetch(`${url}/.schema-gate/healthz`)).status, 200);
      });
    });
  }
});
