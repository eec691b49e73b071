import http from "node:http";
import type { AddressInfo } from "node:net";
import * as k8s from "@kubernetes/client-node";
import { FLAG_NAME } from "../core/maintenance-flag.js";
import { gateImageOnNode, realShopValues, shopAppImage } from "../local/app-image.js";
import type { Cluster } from "../local/cluster.js";
import { gateGet, prepareLocalGate, spawnGate, type LocalGateIdentity } from "../local/gate.js";
import { installGate, uninstallGate } from "../local/gate-install.js";
import { answerKind, get, pollEvery, runs } from "../local/http-probe.js";
import { startIngressController } from "../local/ingress-controller.js";
import { MountedConfigMap } from "../local/mounted-configmap.js";
import type { RealNode } from "../local/real-node.js";
import { createLogger } from "../logger.js";
import { startPageServer } from "../page/page-server.js";
import { pollUntil, sleep } from "../util/wait.js";

// Where the demo's shop runs: on the real node (real pods, the gate installed in-cluster,
// the Ingress served by HAProxy), or, without one, on kwok nodes with the gate as a local
// process and the page served here.

type Say = (line: string) => void;

export interface DemoSite {
  /** The chart's values for a schema version. */
  values(version: string, sql: Record<string, string>): Record<string, unknown>;
  /** Printed when the maintenance page is on. */
  pageLine: string;
  /** Whether the maintenance page answers 503 now. */
  pageServed(): Promise<boolean>;
  /** Around the upgrade: what answers at the URL before; after, the answers meanwhile (runs of the same outcome). */
  watchUpgrade(say: Say): Promise<{ stop(version: string): Promise<string[] | undefined> }>;
  /** Where to see the page while a window runs (--keep). */
  pageUrl: string;
  stop(): Promise<void>;
}

export interface SiteContext {
  cluster: Cluster;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  namespace: string;
  say: Say;
}

const HOST = "shop.example";

/** The real node: the shop's pods run there, the gate is installed with `kubectl apply -k`, HAProxy serves the Ingress. */
export async function realNodeSite(node: RealNode, ctx: SiteContext): Promise<DemoSite> {
  ctx.say("  building the images (the gate's and the shop app's; cached after a first run) and importing them into the node");
  const [gate, app] = await Promise.all([gateImageOnNode(node), shopAppImage(node)]);
  await installGate(ctx.cluster, node, gate.name, [
    `--namespaces=${ctx.namespace}`, "--settle=1", "--lease-duration=5", "--log-level=warn",
    `--image=${gate.name}`, `--backend-placement=${JSON.stringify(node.placement)}`,
  ], { apps: ctx.kc.makeApiClient(k8s.AppsV1Api), namespace: ctx.namespace });
  ctx.say("  the gate runs in-cluster: two pods on the real node (kubectl apply -k manifests/ with the local image)");
  const controller = await startIngressController({ kc: ctx.kc, dir: node.dir, log: createLogger({ level: "warn", name: "ingress" }) });
  const url = `${controller.url}/`;
  const curl = `curl -H 'Host: ${HOST}' ${url}`;
  ctx.say(`  the Ingress controller (HAProxy) listens at ${url}; the shop is host ${HOST} there`);
  const through = (timeoutMs = 1000) => get("127.0.0.1", controller.port, "/", timeoutMs, { host: HOST, accept: "application/json" })
    .then(answerKind, (e: NodeJS.ErrnoException) => `other ${e.code ?? e.message}`);
  const answers = async (version: string) => {
    await pollUntil(async () => ((await through()) === `app ${version}` ? true : undefined),
      { timeoutMs: 30_000, what: `version ${version} to answer through the Ingress at ${url}` });
  };
  return {
    values: (version, sql) => ({
      ...realShopValues(node, app.name, version, sql),
      ingress: { enabled: true, className: "haproxy", host: HOST, ordersPath: "/api" },
    }),
    pageLine: `maintenance page is on through the Ingress: ${curl} answers 503 (the gate's backend pod on the real node)`,
    pageServed: async () => (await through()) === "page",
    pageUrl: `${url} (Host: ${HOST}), e.g. ${curl}`,
    async watchUpgrade(say) {
      await answers("1");
      say(`  through the Ingress before the upgrade: ${curl} -> app 1 (real pods on node ${node.name})`);
      const poller = pollEvery(() => through());
      return {
        async stop(version) {
          await answers(version);
          await sleep(1000); // the poller's own answers from the new version too
          const summary = runs(await poller.stop());
          say(`  through the Ingress every 100 ms during the upgrade: ${summary}`);
          say(`  through the Ingress after the upgrade: ${curl} -> app ${version}`);
          return summary.split(", ").map((r) => r.replace(/ x\d+$/, ""));
        },
      };
    },
    async stop() {
      await controller.stop();
      await uninstallGate(ctx.cluster);
    },
  };
}

/** kwok nodes (pods are not run): the gate as a local process, the page served here by `schema-gate sidecar`. */
export async function localSite(ctx: SiteContext, identity?: LocalGateIdentity): Promise<DemoSite> {
  const id = identity ?? (await prepareLocalGate(ctx.cluster, ctx.kc));
  const gate = spawnGate(id, ["--settle", "1", "--lease-duration", "5", "--image", "registry.example/schema-gate:demo", "--log-level", "warn"]);
  let gateOutput = "";
  gate.stdout!.on("data", (c: Buffer) => (gateOutput += c.toString()));
  gate.stderr!.on("data", (c: Buffer) => (gateOutput += c.toString()));
  const page = await startLocalPage(ctx.core, ctx.namespace);
  const stop = async () => {
    await page.stop();
    gate.kill("SIGTERM");
    await new Promise((resolve) => (gate.exitCode === null ? gate.once("exit", resolve) : resolve(undefined)));
  };
  try {
    await pollUntil(async () => (gate.exitCode === null ? (await gateGet(id, "/readyz").then((r) => r.status === 200, () => false)) || undefined : Promise.reject(new Error(gateOutput))), {
      timeoutMs: 30_000, what: "the gate to be ready",
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    values: (schemaVersion, sql) => ({ schemaVersion, sql, ingress: { enabled: true } }),
    pageLine: `maintenance page is on: ${page.url} (the same page the Ingress's backend and the sidecar serve)`,
    pageServed: () => fetch(page.url).then((r) => r.status === 503, () => false),
    pageUrl: page.url,
    watchUpgrade: async () => ({ stop: async () => undefined }),
    stop,
  };
}

/**
 * The maintenance page on this machine: `schema-gate sidecar` in front of a tiny stand-in app,
 * reading the flag ConfigMap mirrored into a directory the way the kubelet mounts it.
 */
async function startLocalPage(core: k8s.CoreV1Api, namespace: string): Promise<{ url: string; stop(): Promise<void> }> {
  const app = http.createServer((_req, res) => res.end("the shop (stand-in app)\n"));
  await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
  const mount = await MountedConfigMap.create();
  let last = "";
  const mirror = async () => {
    const map = await core.readNamespacedConfigMap({ name: FLAG_NAME, namespace }).catch(() => undefined);
    const text = JSON.stringify(map?.data ?? {});
    if (text !== last) await mount.write(map?.data ?? {});
    last = text;
  };
  const timer = setInterval(() => void mirror().catch(() => undefined), 200);
  const server = await startPageServer(
    { host: "127.0.0.1", port: 0, upstream: new URL(`http://127.0.0.1:${(app.address() as AddressInfo).port}`), flagDir: mount.dir, logLevel: "warn" },
    createLogger({ level: "warn" }),
  );
  return {
    url: `http://127.0.0.1:${server.port}/`,
    stop: async () => {
      clearInterval(timer);
      await server.stop();
      app.closeAllConnections();
      await new Promise((r) => app.close(r));
    },
  };
}
