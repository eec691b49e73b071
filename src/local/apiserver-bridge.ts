import { connect } from "node:net";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import YAML from "yaml";
import { startDaemon, waitForDaemon } from "./daemon.js";
import { POD_GATEWAY, type NodeLayout } from "./node-layout.js";
import { projectRoot } from "./paths.js";

// The apiserver listens on loopback only (etcd and the rest too: nothing of the local
// cluster is reachable from another machine). The real node's pods reach it at the
// `kubernetes` Service, whose endpoint is the address the apiserver advertises: the host's
// address on the pod bridge. A forwarder listens there, on the apiserver's port, and relays
// to loopback; TLS passes through untouched (the serving certificate names the bridge
// address and the Service IP).

export const BRIDGE_DAEMON = "apiserver-bridge";

/** The apiserver's port, from the cluster's kubeconfig. */
async function apiserverPort(kubeconfig: string): Promise<number> {
  const config = YAML.parse(await readFile(kubeconfig, "utf8")) as { clusters?: Array<{ cluster?: { server?: string } }> };
  const server = config.clusters?.[0]?.cluster?.server;
  const port = server ? Number(new URL(server).port) : NaN;
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no apiserver port in ${kubeconfig} (server: ${server ?? "none"})`);
  return port;
}

function reaches(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.setTimeout(1000);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Starts the forwarder from the bridge address to the apiserver on loopback, and waits until it accepts. */
export async function startApiserverBridge(layout: NodeLayout, kubeconfig: string): Promise<void> {
  const port = await apiserverPort(kubeconfig);
  const script = join(projectRoot, "src", "local", "tcp-forward.mjs");
  await startDaemon({ name: BRIDGE_DAEMON, dir: layout.dir, file: process.execPath, args: [script, POD_GATEWAY, String(port), "127.0.0.1"] });
  await waitForDaemon(layout.dir, BRIDGE_DAEMON, () => reaches(POD_GATEWAY, port), {
    timeoutMs: 10_000,
    what: `the apiserver forwarder on ${POD_GATEWAY}:${port}`,
  });
}
