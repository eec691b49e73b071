import * as k8s from "@kubernetes/client-node";
import { writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { apiStatus } from "../k8s/errors.js";
import { startInformer, type WatchedCache } from "../k8s/informer.js";
import type { Logger } from "../logger.js";
import { run } from "../util/exec.js";
import { freePort } from "../util/net.js";
import { sleep } from "../util/wait.js";
import { runningDaemon, startDaemon, terminate, waitForDaemon } from "./daemon.js";
import { INGRESS_CLASS, INGRESS_CONTROLLER, renderHaproxyConfig } from "./haproxy-config.js";

// The local cluster's Ingress controller: real HAProxy (Debian's package) as the data
// plane, driven from here. It watches the Ingresses of class `haproxy` and the
// EndpointSlices of their Services, renders haproxy.cfg (src/local/haproxy-config.ts) and
// reloads HAProxy in master-worker mode (SIGUSR2; the listening socket passes to the new
// worker over the runtime API's socket, so no connection is refused meanwhile). See
// README, "The real node".

const DAEMON = "haproxy";
const HAPROXY = "/usr/sbin/haproxy";
/** Changes arriving together (a rollout's slices, a switch of two Ingresses) make one reload. */
const DEBOUNCE_MS = 50;

export interface IngressController {
  /** http://127.0.0.1:<port>: HAProxy's listener. */
  url: string;
  port: number;
  /** Resolves once HAProxy serves what the cluster holds now (a reload done, if one was due). */
  settled(): Promise<void>;
  /** How many times HAProxy was reloaded since the start. */
  reloads(): number;
  stop(): Promise<void>;
}

export interface IngressControllerOptions {
  kc: k8s.KubeConfig;
  /** Where the config, the sockets, the pid file and the log go (the real node's directory). */
  dir: string;
  log: Logger;
  port?: number;
}

/** The IngressClass `haproxy` of controller schema-gate.dev/local-haproxy, created if missing. */
async function ensureIngressClass(kc: k8s.KubeConfig): Promise<void> {
  const networking = kc.makeApiClient(k8s.NetworkingV1Api);
  await networking.createIngressClass({
    body: { metadata: { name: INGRESS_CLASS }, spec: { controller: INGRESS_CONTROLLER } },
  }).catch((error: unknown) => {
    if (apiStatus(error) !== 409) throw error;
  });
}

/** One command on HAProxy's runtime API; its whole answer. */
function runtimeCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = "";
    const conn = connect(socket, () => conn.end(`${command}\n`));
    conn.setTimeout(2000, () => conn.destroy(new Error(`HAProxy's runtime API did not answer "${command}"`)));
    conn.on("data", (chunk) => (answer += chunk));
    conn.on("end", () => resolve(answer));
    conn.on("error", reject);
  });
}

/** The pid of the worker that holds the runtime socket now (the newest). */
async function workerPid(socket: string): Promise<number | undefined> {
  const info = await runtimeCommand(socket, "show info").catch(() => "");
  const pid = /^Pid: (\d+)$/m.exec(info)?.[1];
  return pid ? Number(pid) : undefined;
}

/** Caches of what the controller renders from: Ingresses, Services, EndpointSlices, all namespaces. */
async function watchCluster(kc: k8s.KubeConfig, log: Logger) {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const networking = kc.makeApiClient(k8s.NetworkingV1Api);
  const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
  return Promise.all([
    startInformer<k8s.V1Ingress>(kc, "/apis/networking.k8s.io/v1/ingresses", () => networking.listIngressForAllNamespaces(), log),
    startInformer<k8s.V1Service>(kc, "/api/v1/services", () => core.listServiceForAllNamespaces(), log),
    startInformer<k8s.V1EndpointSlice>(kc, "/apis/discovery.k8s.io/v1/endpointslices", () => discovery.listEndpointSliceForAllNamespaces(), log),
  ]);
}

/**
 * Reloads HAProxy with the config file as it is now, if `haproxy -c` accepts it (else the
 * running config stays, and the log says why); waits until the new worker answers.
 */
async function reload(master: number, config: string, statsSocket: string, log: Logger): Promise<boolean> {
  const check = await run(HAPROXY, ["-c", "-q", "-f", config]).catch((error: Error) => error);
  if (check instanceof Error) {
    log.error({ err: check }, "haproxy.cfg rendered from the Ingresses is invalid; keeping the running config");
    return false;
  }
  const before = await workerPid(statsSocket);
  process.kill(master, "SIGUSR2");
  for (let i = 0; i < 200; i++) {
    const now = await workerPid(statsSocket);
    if (now !== undefined && now !== before) break;
    await sleep(25);
  }
  log.info({ worker: await workerPid(statsSocket) }, "HAProxy reloaded");
  return true;
}

/**
 * Starts HAProxy on 127.0.0.1 with the Ingresses of class `haproxy` and keeps it in line
 * with them until stopped (an HAProxy an earlier run left is stopped first).
 */
export async function startIngressController(options: IngressControllerOptions): Promise<IngressController> {
  const { kc, dir, log } = options;
  if (!(await run(HAPROXY, ["-v"]).catch(() => undefined))) {
    throw new Error(`the local Ingress controller needs HAProxy at ${HAPROXY}: apt-get install haproxy (tools/system-packages.sh installs it)`);
  }
  await ensureIngressClass(kc);
  const port = options.port ?? (await freePort());
  const config = join(dir, "haproxy.cfg");
  const statsSocket = join(dir, "haproxy.sock");
  const caches = await watchCluster(kc, log);
  const [ingresses, services, endpointSlices] = caches;
  const render = () => renderHaproxyConfig(
    { ingresses: ingresses.list(), services: services.list(), endpointSlices: endpointSlices.list() },
    { bind: `127.0.0.1:${port}`, statsSocket },
  );

  // An HAProxy an earlier run left behind goes first (it may hold the socket).
  const earlier = await runningDaemon(dir, DAEMON);
  if (earlier) await terminate([earlier], 2000);
  let applied = render();
  await writeFile(config, applied);
  const master = await startDaemon({ name: DAEMON, dir, file: HAPROXY, args: ["-W", "-db", "-f", config] });
  await waitForDaemon(dir, DAEMON, async () => (await workerPid(statsSocket)) !== undefined, { timeoutMs: 10_000, what: "HAProxy to start" });

  let reloads = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let work: Promise<void> = Promise.resolve();

  /** Writes the config and reloads, if it changed. */
  const apply = async () => {
    const text = render();
    if (stopped || text === applied) return;
    await writeFile(config, text);
    if (!(await reload(master, config, statsSocket, log))) return;
    applied = text;
    reloads++;
  };
  const schedule = () => {
    if (timer || stopped) return;
    timer = setTimeout(() => {
      timer = undefined;
      work = work.then(apply).catch((error: unknown) => log.error({ err: error }, "could not reload HAProxy"));
    }, DEBOUNCE_MS);
  };
  for (const cache of caches) {
    for (const event of ["add", "update", "delete"] as const) (cache as WatchedCache<k8s.KubernetesObject>).on(event, schedule);
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    reloads: () => reloads,
    settled: async () => {
      schedule();
      while (timer) await sleep(DEBOUNCE_MS);
      await work;
    },
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await work;
      await Promise.all(caches.map((c) => c.stop()));
      await terminate([master], 5000);
    },
  };
}
