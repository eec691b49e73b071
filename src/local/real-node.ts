import { existsSync, readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BRIDGE_DAEMON, startApiserverBridge } from "./apiserver-bridge.js";
import type { Binaries } from "./binaries.js";
import { CLUSTER_DOMAIN, startClusterDNS } from "./cluster-dns.js";
import { importImage, startContainerd } from "./containerd.js";
import { alive, runningDaemon } from "./daemon.js";
import { pauseImage, type LocalImage } from "./images.js";
import { startKubeProxy } from "./kube-proxy.js";
import { startKubelet, waitNodeReady } from "./kubelet.js";
import { cleanUpRealNode } from "./node-cleanup.js";
import { nodeLayout, POD_GATEWAY, POD_SUBNET, REAL_NODE_LABEL, type NodeLayout } from "./node-layout.js";
import { realNodeMissing } from "./node-prereqs.js";
import { setUpPodNetwork } from "./pod-network.js";

// A real kubelet node beside the kwok nodes: containerd, runc, CNI and kube-proxy, where
// pods are real processes. See README, "The real node".

export interface RealNode {
  /** The node's name in the cluster. */
  name: string;
  /** The host's address on the pod bridge: pods reach host services (PostgreSQL, the apiserver) here. */
  hostAddress: string;
  podSubnet: string;
  /** Pods resolve `<service>.<namespace>.svc.<clusterDomain>` through cluster DNS. */
  clusterDomain: string;
  /** What a pod spec needs to land on the real node: its label and a toleration of its taint. */
  placement: {
    nodeSelector: Record<string, string>;
    tolerations: Array<{ key: string; operator: "Equal"; value: string; effect: "NoSchedule" }>;
  };
  /** Imports a locally built image into the node's containerd (pods use it with imagePullPolicy Never). */
  importImage(image: LocalImage): Promise<void>;
  /** The node's directory (logs of containerd, kubelet, kube-proxy). */
  dir: string;
}

/**
 * Why the local cluster has no real node, or undefined when it should get one: turned off
 * with SCHEMA_GATE_REAL_NODE=0, or the machine lacks root or a package.
 */
export function realNodeUnavailable(clusterName: string): string | undefined {
  if (process.env.SCHEMA_GATE_REAL_NODE === "0") {
    return "the real node is turned off (SCHEMA_GATE_REAL_NODE=0); unset it to start the local cluster with a real node";
  }
  const other = otherRealNode(clusterName);
  if (other) {
    return `the real node of cluster "${other}" runs on this machine, and there can be one (it owns cni0 and the kubelet's ports); ` +
      `stop it with: SCHEMA_GATE_CLUSTER_NAME=${other} npm run cluster:down`;
  }
  return realNodeMissing();
}

/** The cluster whose real node runs on this machine, other than `clusterName`'s. */
function otherRealNode(clusterName: string): string | undefined {
  const root = dirname(nodeLayout(clusterName).dir);
  if (!existsSync(root)) return undefined;
  return readdirSync(root).find((name) => {
    if (name === clusterName) return false;
    const pidFile = join(root, name, "kubelet.pid");
    return existsSync(pidFile) && alive(Number(readFileSync(pidFile, "utf8").trim()));
  });
}

function handle(layout: NodeLayout): RealNode {
  return {
    name: layout.nodeName,
    hostAddress: POD_GATEWAY,
    podSubnet: POD_SUBNET,
    clusterDomain: CLUSTER_DOMAIN,
    placement: {
      nodeSelector: { [REAL_NODE_LABEL]: "true" },
      tolerations: [{ key: REAL_NODE_LABEL, operator: "Equal", value: "true", effect: "NoSchedule" }],
    },
    importImage: (image) => importImage(layout, image.tar),
    dir: layout.dir,
  };
}

export interface RealNodeOptions {
  clusterName: string;
  binaries: Binaries;
  /** An admin kubeconfig of the cluster (the kubelet and kube-proxy use it). */
  kubeconfig: string;
  /** The cluster's CA certificate. */
  clientCA: string;
}

async function running(layout: NodeLayout): Promise<boolean> {
  for (const name of ["containerd", "kubelet", "kube-proxy", "coredns", BRIDGE_DAEMON]) {
    if (!(await runningDaemon(layout.dir, name))) return false;
  }
  return true;
}

/**
 * Starts the cluster's real node, or keeps it when all its daemons still run. Whatever an
 * earlier run left (a half-started or killed node) is removed first.
 */
export async function startRealNode(options: RealNodeOptions): Promise<RealNode> {
  const layout = nodeLayout(options.clusterName);
  const { binaries, kubeconfig } = options;
  if (await running(layout)) {
    await waitNodeReady(layout, binaries.kubectl, kubeconfig, 60_000);
    return handle(layout);
  }
  const started = Date.now();
  await cleanUpRealNode(layout, { kubeProxy: binaries["kube-proxy"], machineWide: true });
  await mkdir(layout.dir, { recursive: true });
  const pause = await pauseImage();
  await setUpPodNetwork(layout);
  await startApiserverBridge(layout, kubeconfig);
  await startContainerd(layout, pause.name);
  await importImage(layout, pause.tar);
  await startKubelet(layout, { binary: binaries.kubelet, kubeconfig, clientCA: options.clientCA, clusterDNS: [POD_GATEWAY] });
  await Promise.all([
    startKubeProxy(layout, binaries["kube-proxy"], kubeconfig),
    startClusterDNS(layout, binaries.coredns, kubeconfig),
    waitNodeReady(layout, binaries.kubectl, kubeconfig),
  ]);
  process.stderr.write(`[cluster] real node "${layout.nodeName}" Ready in ${((Date.now() - started) / 1000).toFixed(1)}s (logs in ${layout.dir})\n`);
  return handle(layout);
}

/** Copies the node's logs out of its directory (which cleanup deletes); returns where they went. */
export async function keepLogs(clusterName: string): Promise<string> {
  const { dir } = nodeLayout(clusterName);
  const out = join(dirname(dirname(dir)), "logs", `real-node-${clusterName}`);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  for (const file of existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".log")) : []) {
    await copyFile(join(dir, file), join(out, file));
  }
  return out;
}

/**
 * Stops the cluster's real node and removes everything it made; what exists once per
 * machine (the bridge, iptables chains) stays while another cluster's real node runs.
 */
export async function stopRealNode(clusterName: string, binaries: Binaries): Promise<void> {
  const machineWide = otherRealNode(clusterName) === undefined;
  await cleanUpRealNode(nodeLayout(clusterName), { kubeProxy: binaries["kube-proxy"], machineWide });
}
