import { spawn } from "node:child_process";
import { request, type IncomingHttpHeaders } from "node:http";
import pg from "pg";
import type { RealNode } from "../../src/local/real-node.js";
import { pollUntil } from "../../src/util/wait.js";
import type { TestEnv } from "./env.js";
import { nodeAppImage } from "./real-node.js";

/** test/support/shop-app as an image. */
export const shopAppImage = (node: RealNode) => nodeAppImage(node, "shop-app", "localhost/schema-gate-shop-app");

/** The shop chart's values that run its services as real pods on the real node. */
export function realShopValues(node: RealNode, appImage: string, version: string, sql: Record<string, string>): Record<string, unknown> {
  return {
    schemaVersion: version,
    sql,
    appImage,
    expose: true,
    pod: { ...node.placement, imagePullPolicy: "Never", versionEnv: true, httpPort: 8080, readinessPath: "/healthz" },
  };
}

export interface Answer {
  status: number;
  body: any;
  headers: IncomingHttpHeaders;
}

/** GET over a fresh connection (no keep-alive, so each request is balanced anew). */
export function get(host: string, port: number, path: string, timeoutMs = 10_000, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => {
        const answer = { status: res.statusCode ?? 0, headers: res.headers };
        try {
          resolve({ ...answer, body: JSON.parse(body) });
        } catch {
          resolve({ ...answer, body });
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET http://${host}:${port}${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** `kubectl logs -f` of a pod, from now until its container ends. */
export function followLogs(env: TestEnv, namespace: string, pod: string): { text: () => string; ended: Promise<unknown> } {
  const follow = spawn(env.cluster.binaries.kubectl, ["logs", "-f", "-n", namespace, pod], {
    env: { ...process.env, KUBECONFIG: env.cluster.kubeconfig },
  });
  let output = "";
  follow.stdout.on("data", (chunk) => (output += chunk));
  follow.stderr.on("data", (chunk) => (output += chunk));
  return { text: () => output, ended: new Promise((resolve) => follow.on("close", resolve)) };
}

/** The time of the first log line (ISO timestamp first, as the shop app prints) matching `pattern`. */
export function loggedAt(log: string, pattern: RegExp): number | undefined {
  const line = log.split("\n").find((l) => pattern.test(l));
  return line ? Date.parse(line.split(" ")[0]!) : undefined;
}

/** Runs `fn` on a short-lived session to `url`. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface ItemsLock {
  application: string;
  addr: string;
  state: string;
}

/** Sessions from pods on the real node (the host's own address aside: the gate, the test) holding a lock on `items`. */
export function itemsLocks(url: string, node: RealNode): Promise<ItemsLock[]> {
  return withClient(url, async (client) => (await client.query<ItemsLock>(
    `SELECT a.application_name AS application, host(a.client_addr) AS addr, a.state
       FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.relation = 'items'::regclass AND l.granted AND a.client_addr <<= $1::inet AND a.client_addr <> $2::inet
      ORDER BY 1, 2`, [node.podSubnet, node.hostAddress])).rows);
}

/** When each session from a pod on the real node to this database began (microsecond precision), by client address. */
export function backendStarts(url: string, node: RealNode): Promise<Array<{ addr: string; started: Date }>> {
  return withClient(url, async (client) => (await client.query(
    `SELECT host(client_addr) AS addr, backend_start AS started FROM pg_stat_activity
      WHERE datname = current_database() AND client_addr <<= $1::inet AND client_addr <> $2::inet`,
    [node.podSubnet, node.hostAddress])).rows);
}

/** Polls Service `name` (its ClusterIP, from the host) until `replicas` distinct pods of `version` answered. */
export async function serviceAnswers(env: TestEnv, namespace: string, name: string, replicas: number, version: string): Promise<Answer[]> {
  const service = await env.core.readNamespacedService({ name, namespace });
  const ip = service.spec?.clusterIP ?? "";
  const pods = new Map<string, Answer>();
  await pollUntil(async () => {
    const answer = await get(ip, 80, "/", 2000).catch(() => undefined);
    if (answer?.status === 200 && answer.body.version === version && answer.body.service === name) pods.set(answer.body.pod, answer);
    return pods.size >= replicas ? true : undefined;
  }, { timeoutMs: 30_000, intervalMs: 20, what: `${replicas} pod(s) of ${name} at version ${version} to answer through ${ip}` });
  return [...pods.values()];
}

export interface Poll {
  at: number;
  outcome: string;
}

/** Calls `probe` every `everyMs` (one at a time) until stopped; records each outcome it names. */
export function pollEvery(probe: () => Promise<string>, everyMs = 100): { stop: () => Promise<Poll[]> } {
  const polls: Poll[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      polls.push({ at, outcome: await probe() });
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, everyMs - (Date.now() - at))));
    }
  })();
  return { stop: async () => ((running = false), await loop, polls) };
}

/** GET / on `ip` every `everyMs` until stopped; each outcome is the version that answered or the error. */
export function pollService(ip: string, everyMs = 100): { stop: () => Promise<Poll[]> } {
  return pollEvery(() => get(ip, 80, "/", 1000).then(
    (a) => (a.status === 200 ? `version ${a.body.version}` : `HTTP ${a.status}`),
    (e: NodeJS.ErrnoException) => e.code ?? "timeout",
  ), everyMs);
}

/** Runs of the same outcome, e.g. "version 1 x31, ECONNREFUSED x40, version 2 x12". */
export function runs(polls: Poll[]): string {
  const out: Array<{ outcome: string; n: number }> = [];
  for (const { outcome } of polls) {
    const last = out[out.length - 1];
    if (last?.outcome === outcome) last.n++;
    else out.push({ outcome, n: 1 });
  }
  return out.map((r) => `${r.outcome} x${r.n}`).join(", ");
}
