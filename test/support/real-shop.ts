import { spawn } from "node:child_process";
import { get, pollEvery, type Answer, type Poll } from "../../src/local/http-probe.js";
import pg from "pg";
import type { RealNode } from "../../src/local/real-node.js";
import { pollUntil } from "../../src/util/wait.js";
import { shopAppImage } from "../../src/local/app-image.js";
import type { TestEnv } from "./env.js";
import { startGate, type GateProcess } from "./gate.js";
import { gateImageOnNode, requireRealNode } from "./real-node.js";

export { realShopValues, shopAppImage } from "../../src/local/app-image.js";

/**
 * The real node with the shop app's and the gate's images on it, and a gate (settle 1 s,
 * lease 3 s) whose maintenance backend runs there from the gate's image.
 */
export async function gateForRealShop(env: TestEnv): Promise<{ node: RealNode; shopImage: string; pageImage: string; gate: GateProcess }> {
  const node = requireRealNode(env);
  const [shop, page] = await Promise.all([shopAppImage(node), gateImageOnNode(node)]);
  const gate = await startGate(env, ["--settle", "1", "--lease-duration", "3", "--image", page.name, "--backend-placement", JSON.stringify(node.placement)]);
  return { node, shopImage: shop.name, pageImage: page.name, gate };
}
export { answerKind, get, pollEvery, runs, type Answer, type Poll } from "../../src/local/http-probe.js";

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

/** GET / on `ip` every `everyMs` until stopped; each outcome is the version that answered or the error. */
export function pollService(ip: string, everyMs = 100): { stop: () => Promise<Poll[]> } {
  return pollEvery(() => get(ip, 80, "/", 1000).then(
    (a) => (a.status === 200 ? `version ${a.body.version}` : `HTTP ${a.status}`),
    (e: NodeJS.ErrnoException) => e.code ?? "timeout",
  ), everyMs);
}

