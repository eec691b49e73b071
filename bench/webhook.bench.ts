/**
 * npm run bench:webhook — latency and throughput of /mutate and /validate with a real
 * captured AdmissionReview, next to a bare node:https JSON echo (the floor any Node
 * webhook pays for TLS, HTTP and JSON) measured in the same run. Servers run in a child
 * process so the load generator does not share their event loop. Prints figures only.
 * A second echo answers with the gate's own patch for the review, precomputed: the floor
 * of a webhook that mutates, for reading how much of /mutate is its answer's size.
 */
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, Agent, request } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { mutate, validate, type AdmissionContext } from "../src/core/admission.js";
import { createLogger } from "../src/logger.js";
import { projectRoot } from "../src/local/paths.js";
import { createMetrics } from "../src/metrics.js";
import { run } from "../src/util/exec.js";
import { parseReview, respond } from "../src/webhook/review.js";
import { createWebhookApp, serveHttps } from "../src/webhook/server.js";
import { CertificateSource } from "../src/webhook/tls.js";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const WARMUP = 500;
const CONCURRENCY = [1, 16];

interface Ports {
  echo: number;
  patchEcho: number;
  gate: number;
}

const FIXTURE = join(projectRoot, "test", "fixtures", "admission", "deployment-update.json");

/** A bare JSON echo: parses the review and answers with `answer(uid)`. */
async function echoServer(tls: { cert: Buffer; key: Buffer }, answer: (uid: string) => unknown): Promise<number> {
  const echo = createServer(tls, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const review = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(answer(review.request.uid)));
    });
  });
  echo.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
  return (echo.address() as AddressInfo).port;
}

async function serveAll(certDir: string): Promise<Ports> {
  const tls = { cert: readFileSync(join(certDir, "tls.crt")), key: readFileSync(join(certDir, "tls.key")) };
  const echo = await echoServer(tls, (uid) => ({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid, allowed: true } }));
  const context: AdmissionContext = {
    gateUsername: "system:serviceaccount:schema-gate:schema-gate",
    excludedNamespaces: new Set(["kube-system", "schema-gate"]),
    group: () => ({ appliedVersion: "7" }),
    deployment: () => undefined,
  };
  const log = createLogger({ level: "warn" });
  const certs = new CertificateSource(join(certDir, "tls.crt"), join(certDir, "tls.key"), log);
  const app = createWebhookApp({
    context, mutate, validate, metrics: createMetrics(), log, cachesReady: () => true, tlsReady: () => true,
  });
  const gate = await serveHttps(app, certs, { host: "127.0.0.1", port: 0 });
  const parsed = parseReview(readFileSync(FIXTURE, "utf8"));
  if (!parsed.ok) throw new Error(`the bench's review does not parse: ${parsed.message}`);
  const { response } = respond(parsed.request.uid, mutate(parsed.request, context));
  const patchEcho = await echoServer(tls, (uid) => ({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { ...response, uid } }));
  return { echo, patchEcho, gate: gate.port };
}

function once(agent: Agent, port: number, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = request({ host: "127.0.0.1", port, path, method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      res.on("data", () => undefined);
      res.on("end", () => {
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
        else resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function measure(port: number, path: string, body: string, concurrency: number, ca: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, ca });
  const drive = async (count: number, latencies: number[]) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) {
          next++;
          latencies.push(await once(agent, port, path, body));
        }
      }),
    );
  };
  await drive(WARMUP, []);
  const latencies: number[] = [];
  const started = process.hrtime.bigint();
  await drive(REQUESTS, latencies);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]!;
  return { p50: pct(50), p99: pct(99), rps: REQUESTS / seconds };
}

async function main(): Promise<void> {
  const certDir = join(projectRoot, ".artifacts", "bench-certs");
  await run("bash", [join(projectRoot, "certs", "generate.sh"), certDir, "IP:127.0.0.1"]);
  const ca = readFileSync(join(certDir, "ca.crt"), "utf8");
  const child = fork(fileURLToPath(import.meta.url), ["--serve", certDir], { execArgv: process.execArgv, stdio: "inherit" });
  const ports = await new Promise<Ports>((resolve) => child.once("message", (m) => resolve(m as Ports)));

  const body = readFileSync(FIXTURE, "utf8");
  console.log(`AdmissionReview: captured Deployment UPDATE, ${body.length} bytes; ${REQUESTS} requests per row after ${WARMUP} warm-up`);
  console.log(`node ${process.version}, servers in a child process, keep-alive TLS connections\n`);
  // The floor and the gate are measured in turns, ROUNDS times. This machine's speed drifts
  // by tens of percent within seconds, more than the difference the ratios are meant to show,
  // so each ratio is taken within its round (the endpoint against the echo measured just
  // before it) and the median of those is printed; the other figures are medians too.
  console.log("echo + patch: the echo answering with the gate's patch for this review (precomputed), the floor of a webhook that mutates");
  console.log(`${ROUNDS} rounds of echo, echo + patch, /mutate, /validate in turn; medians over the rounds, each ratio the median of its rounds' ratios\n`);
  console.log("endpoint        conc   p50 ms   p99 ms      req/s   p50 / echo   p99 / echo");
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  for (const concurrency of CONCURRENCY) {
    const rounds: Record<string, Array<{ p50: number; p99: number; rps: number }>> = { echo: [], "echo + patch": [], "/mutate": [], "/validate": [] };
    for (let round = 0; round < ROUNDS; round++) {
      rounds.echo!.push(await measure(ports.echo, "/", body, concurrency, ca));
      rounds["echo + patch"]!.push(await measure(ports.patchEcho, "/", body, concurrency, ca));
      for (const path of ["/mutate", "/validate"]) rounds[path]!.push(await measure(ports.gate, path, body, concurrency, ca));
    }
    const echo = rounds.echo!;
    for (const name of ["echo", "echo + patch", "/mutate", "/validate"]) {
      const r = rounds[name]!;
      const of = (pick: (x: { p50: number; p99: number; rps: number }) => number) => median(r.map(pick));
      const ratio = (pick: (x: { p50: number; p99: number }) => number) => median(r.map((x, i) => pick(x) / pick(echo[i]!)));
      const label = name === "echo" ? "echo (floor)" : name;
      console.log(`${label.padEnd(15)} ${String(concurrency).padStart(4)} ${of((x) => x.p50).toFixed(3).padStart(8)} ${of((x) => x.p99).toFixed(3).padStart(8)} ` +
        `${of((x) => x.rps).toFixed(0).padStart(10)}   ${`${ratio((x) => x.p50).toFixed(2)}x`.padStart(10)}   ${`${ratio((x) => x.p99).toFixed(2)}x`.padStart(10)}`);
    }
  }
  console.log("\ntarget: p99 (and p50) of /mutate and /validate at concurrency 16 within 1.2x of the echo floor");
  child.kill();
}

if (process.argv[2] === "--serve") {
  // Ends as a normal exit, so a `node --cpu-prof` run of the bench writes the servers' profile too.
  process.once("SIGTERM", () => process.exit(0));
  const ports = await serveAll(process.argv[3]!);
  process.send!(ports);
} else {
  await main();
}
