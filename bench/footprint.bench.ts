/**
 * npm run bench:footprint — the gate's memory: the compiled `schema-gate serve` (dist/,
 * as the image runs it, with the image's Node flags) against the local cluster, idle,
 * with 1,000 Deployments (one kwok pod each) and 1,000 Ingresses in its caches, and after
 * 10,000 AdmissionReviews to /mutate and /validate; next to a bare Node process that
 * imports the same libraries and does nothing. RSS from /proc/<pid>/status, RSS and heap
 * from the gate's own /metrics. Prints figures only.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { Agent, request } from "node:https";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { build } from "esbuild";
import { bundleOptions } from "../tools/bundle.mjs";
import { A } from "../src/core/annotations.js";
import { acquireCluster } from "../src/local/cluster.js";
import { gateGet, GATE_NAMESPACE, GATE_SA, prepareLocalGate, unregisterWebhooks, type LocalGateIdentity } from "../src/local/gate.js";
import { projectRoot } from "../src/local/paths.js";
import { pollUntil, sleep } from "../src/util/wait.js";

const OBJECTS = Number(process.env.BENCH_OBJECTS ?? 1000);
const REVIEWS = Number(process.env.BENCH_REVIEWS ?? 10_000);
/** Every this many Deployments is opted in (a database group, no version: admitted, never held). */
const OPT_IN_EVERY = 10;
const CONCURRENCY = 16;
/** A checkout whose dist/ (built) to run instead of this one's, with its Dockerfile's flags: to compare two builds. */
const GATE_ROOT = process.env.BENCH_GATE_ROOT ?? projectRoot;
/** The Node flags and environment the image gives the gate (Dockerfile), read from there so the two cannot drift. */
const IMAGE = imageSettings();
/**
 * The libraries `schema-gate serve` loads, for the baseline processes: the package's runtime
 * dependencies, read from package.json (a list written here named express long after the
 * gate dropped it, and the bench failed to start).
 */
const LIBRARIES = Object.keys((JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { dependencies: Record<string, string> }).dependencies);

function imageSettings(): { flags: string[]; env: Record<string, string> } {
  const dockerfile = readFileSync(join(GATE_ROOT, "Dockerfile"), "utf8");
  const entrypoint = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(dockerfile)?.[1];
  const argv = entrypoint ? (JSON.parse(entrypoint) as string[]) : [];
  const pairs = [...dockerfile.matchAll(/^ENV\s+(.+)$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
  const env = Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]));
  return { flags: argv.slice(1).filter((arg) => arg.startsWith("--")), env };
}

interface Figures {
  /** VmRSS: the median of the samples, and their lowest and highest. */
  rssMb: number;
  rssRange?: [number, number];
  metricsRssMb?: number;
  heapUsedMb: number;
}

/** Samples a phase this many times, a second apart: garbage collection moves one sample by 10-20 MB. */
const SAMPLES = 15;

const mb = (bytes: number) => bytes / 1024 / 1024;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function vmRss(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(line?.split(/\s+/)[1]) / 1024;
}

function metric(text: string, suffix: string): number {
  const line = text.split("\n").find((l) => l.startsWith("schema_gate_process_") && l.split(" ")[0]!.endsWith(suffix));
  return Number(line?.split(" ")[1]);
}

async function gateFigures(id: LocalGateIdentity, pid: number): Promise<Figures> {
  const rss: number[] = [];
  const metricsRss: number[] = [];
  const heap: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    if (i > 0) await sleep(1000);
    rss.push(vmRss(pid));
    const { body } = await gateGet(id, "/metrics");
    metricsRss.push(mb(metric(body, "process_resident_memory_bytes")));
    heap.push(mb(metric(body, "nodejs_heap_size_used_bytes")));
  }
  return { rssMb: median(rss), rssRange: [Math.min(...rss), Math.max(...rss)], metricsRssMb: median(metricsRss), heapUsedMb: median(heap) };
}

/** A module that imports the gate's libraries, prints its memory once settled, and stays. */
const BASELINE_SOURCE = `${LIBRARIES.map((l) => `await import(${JSON.stringify(l)});`).join("\n")}
setTimeout(() => console.log(JSON.stringify(process.memoryUsage())), 3000);
setInterval(() => {}, 1 << 30);
`;

/** A bare Node process with the gate's libraries loaded, as installed or bundled the way the gate is. */
async function baseline(bundled: boolean): Promise<Figures> {
  const dir = join(projectRoot, ".artifacts", "footprint-baseline");
  await mkdir(dir, { recursive: true });
  const entry = join(dir, "libraries.mjs");
  await writeFile(entry, BASELINE_SOURCE);
  const file = bundled ? join(dir, "libraries.bundle.mjs") : entry;
  if (bundled) await build({ ...bundleOptions, entryPoints: [entry], outfile: file, sourcemap: false, nodePaths: [join(projectRoot, "node_modules")] });
  const child = spawn(process.execPath, [...IMAGE.flags, file], { cwd: projectRoot, stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...IMAGE.env } });
  const usage = await new Promise<NodeJS.MemoryUsage>((resolve) => child.stdout!.once("data", (chunk: Buffer) => resolve(JSON.parse(chunk.toString()))));
  const figures = { rssMb: vmRss(child.pid!), heapUsedMb: mb(usage.heapUsed) };
  child.kill();
  return figures;
}

function startCompiledGate(id: LocalGateIdentity): ChildProcess {
  const args = [
    ...IMAGE.flags, join(GATE_ROOT, "dist", "cli", "main.js"), "serve",
    "--kubeconfig", id.kubeconfig, "--host", "127.0.0.1", "--port", String(id.port),
    "--tls-cert-file", join(id.cert.dir, "tls.crt"), "--tls-key-file", join(id.cert.dir, "tls.key"),
    "--namespace", GATE_NAMESPACE, "--service-account", GATE_SA, "--log-level", "warn",
  ];
  return spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, ...IMAGE.env, KUBECONFIG: "" } });
}

/** A Deployment as `kubectl apply` leaves it: a modest pod template and the applied manifest in an annotation. */
function deployment(i: number): k8s.V1Deployment {
  const name = `svc-${i}`;
  const manifest: k8s.V1Deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels: { app: name, team: `team-${i % 20}` }, annotations: i % OPT_IN_EVERY === 0 ? { [A.database]: `db-${i % 50}` } : {} },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name, team: `team-${i % 20}` } },
        spec: {
          containers: [{
            name: "app",
            image: `registry.example/${name}:1.0.${i}`,
            ports: [{ name: "http", containerPort: 8080 }],
            env: Array.from({ length: 8 }, (_, e) => ({ name: `SETTING_${e}`, value: `value-${e}-of-${name}` })),
            resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } },
            readinessProbe: { httpGet: { path: "/healthz", port: 8080 }, periodSeconds: 5 },
          }],
        },
      },
    },
  };
  const annotations = { ...manifest.metadata!.annotations, "kubectl.kubernetes.io/last-applied-configuration": JSON.stringify(manifest) };
  return { ...manifest, metadata: { ...manifest.metadata, annotations } };
}

function ingress(i: number): k8s.V1Ingress {
  const name = `svc-${i}`;
  const manifest: k8s.V1Ingress = {
    apiVersion: "networking.k8s.io/v1",
    kind: "Ingress",
    metadata: { name, annotations: i % OPT_IN_EVERY === 0 ? { [A.maintenance]: "true" } : {} },
    spec: {
      rules: [{ host: `${name}.shop.example`, http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name, port: { number: 80 } } } }] } }],
      tls: [{ hosts: [`${name}.shop.example`], secretName: `${name}-tls` }],
    },
  };
  const annotations = { ...manifest.metadata!.annotations, "kubectl.kubernetes.io/last-applied-configuration": JSON.stringify(manifest) };
  return { ...manifest, metadata: { ...manifest.metadata, annotations } };
}

async function inParallel(count: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) await work(next++);
  }));
}

/** The local cluster's kwok nodes take 110 pods each: one more, kwok-managed, takes the bench's. */
const BENCH_NODE = "bench-footprint";

async function createNode(core: k8s.CoreV1Api): Promise<void> {
  const pods = String(OBJECTS + 100);
  // The apiserver keeps a Node's status as created; kwok then keeps it Ready.
  await core.createNode({
    body: {
      metadata: { name: BENCH_NODE, annotations: { "kwok.x-k8s.io/node": "fake" }, labels: { type: "kwok", "kubernetes.io/hostname": BENCH_NODE } },
      status: { allocatable: { cpu: "1000", memory: "4Ti", pods }, capacity: { cpu: "1000", memory: "4Ti", pods } },
    },
  }).catch((error: unknown) => {
    if ((error as { code?: number }).code !== 409) throw error;
  });
}

async function createObjects(kc: k8s.KubeConfig, namespace: string): Promise<number> {
  const started = Date.now();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const networking = kc.makeApiClient(k8s.NetworkingV1Api);
  await createNode(core);
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await inParallel(OBJECTS, (i) => apps.createNamespacedDeployment({ namespace, body: deployment(i) }));
  await inParallel(OBJECTS, (i) => networking.createNamespacedIngress({ namespace, body: ingress(i) }));
  await pollUntil(async () => {
    const pods = await core.listNamespacedPod({ namespace, fieldSelector: "status.phase=Running" });
    return pods.items.length >= OBJECTS ? true : undefined;
  }, { timeoutMs: 600_000, intervalMs: 2000, what: `${OBJECTS} kwok pods Running` });
  return Date.now() - started;
}

function review(agent: Agent, id: LocalGateIdentity, path: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: id.port, path, method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
      res.on("data", () => undefined);
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function reviews(id: LocalGateIdentity, namespace: string): Promise<void> {
  const fixture = JSON.parse(readFileSync(join(projectRoot, "test", "fixtures", "admission", "deployment-update.json"), "utf8"));
  fixture.request.namespace = namespace;
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: id.cert.ca });
  await inParallel(REVIEWS, (i) => {
    fixture.request.uid = `bench-${i}`;
    return review(agent, id, i % 2 === 0 ? "/mutate" : "/validate", JSON.stringify(fixture));
  });
  agent.destroy();
}

function row(name: string, f: Figures, base: Figures): string {
  const range = f.rssRange ? `${f.rssRange[0].toFixed(0)}-${f.rssRange[1].toFixed(0)}` : "-";
  const metrics = f.metricsRssMb === undefined ? "-" : f.metricsRssMb.toFixed(1);
  const over = f.rssMb - base.rssMb;
  return `${name.padEnd(38)} ${f.rssMb.toFixed(1).padStart(7)} ${range.padStart(9)} ${metrics.padStart(8)} ${f.heapUsedMb.toFixed(1).padStart(8)}   ${over >= 0 ? "+" : ""}${over.toFixed(1)} MB`;
}

async function main(): Promise<void> {
  const cluster = await acquireCluster();
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const id = await prepareLocalGate(cluster, kc);
  const namespace = `bench-footprint-${Date.now().toString(36)}`;
  let gate: ChildProcess | undefined;
  try {
    const base = await baseline(false);
    const bundledBase = await baseline(true);
    gate = startCompiledGate(id);
    await pollUntil(async () => ((await gateGet(id, "/readyz").catch(() => ({ status: 0 }))).status === 200 ? true : undefined),
      { timeoutMs: 60_000, what: "the gate's /readyz" });
    await sleep(5000);
    const idle = await gateFigures(id, gate.pid!);
    const createdMs = await createObjects(kc, namespace);
    await sleep(15_000); // the last watch events in
    const cached = await gateFigures(id, gate.pid!);
    const started = Date.now();
    await reviews(id, namespace);
    const reviewMs = Date.now() - started;
    await sleep(5000);
    const reviewed = await gateFigures(id, gate.pid!);

    console.log(`gate: ${GATE_ROOT === projectRoot ? "this checkout's" : `${GATE_ROOT}'s`} dist/; node ${process.version}, the image's Node flags and environment: ${[...IMAGE.flags, ...Object.entries(IMAGE.env).map(([k, v]) => `${k}=${v}`)].join(" ")}; ${OBJECTS} Deployments (1 kwok pod each, every ${OPT_IN_EVERY}th opted in) and ${OBJECTS} Ingresses created and Running in ${(createdMs / 1000).toFixed(1)} s`);
    console.log(`${REVIEWS} AdmissionReviews (captured Deployment UPDATE, half /mutate, half /validate, ${CONCURRENCY} at a time) in ${(reviewMs / 1000).toFixed(1)} s\n`);
    console.log(`${"process".padEnd(38)}  RSS MB  min-max  metrics  heap MB   RSS over baseline`);
    console.log(row(`bare node + ${LIBRARIES.length} libraries (baseline)`, base, base));
    console.log(row("the same libraries bundled", bundledBase, base));
    console.log(row("gate idle (empty cluster)", idle, base));
    console.log(row(`gate, ${OBJECTS * 2} objects + ${OBJECTS} pods cached`, cached, base));
    console.log(row(`gate, after ${REVIEWS} reviews`, reviewed, base));
    console.log(`\nRSS: /proc/<pid>/status VmRSS, median of ${SAMPLES} samples a second apart (and their range); metrics: the gate's process_resident_memory_bytes; heap: nodejs_heap_size_used_bytes (baselines: process.memoryUsage, one sample)`);
    console.log("target: RSS ≤ 100 MB with the objects cached");
  } finally {
    gate?.kill("SIGTERM");
    await unregisterWebhooks(cluster).catch(() => undefined);
    await kc.makeApiClient(k8s.CoreV1Api).deleteNamespace({ name: namespace }).catch(() => undefined);
    await kc.makeApiClient(k8s.CoreV1Api).deleteNode({ name: BENCH_NODE }).catch(() => undefined);
    if (!process.env.SCHEMA_GATE_KEEP_CLUSTER) await cluster.release();
  }
}

await main();
