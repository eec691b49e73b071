import { join } from "node:path";
import { cacheDir } from "./paths.js";

/** The pod network of the real node: the bridge, its address on the host, the subnet. */
export const POD_BRIDGE = "cni0";
export const POD_SUBNET = "10.88.0.0/16";
/** The host's address on the bridge: pods reach the host (apiserver, PostgreSQL) here. */
export const POD_GATEWAY = "10.88.0.1";
export const CNI_NETWORK = "schema-gate";
/** The apiserver's Service range (its own default, pinned) and the `kubernetes` Service's address in it. */
export const SERVICE_SUBNET = "10.0.0.0/24";
export const KUBERNETES_SERVICE_IP = "10.0.0.1";

/** The label and taint of the real node: real workloads select it and tolerate the taint. */
export const REAL_NODE_LABEL = "schema-gate.dev/real-node";

/**
 * Where one cluster's real node keeps everything it makes: containerd's root, state and
 * socket, CNI configuration and IP allocations, the kubelet's root, logs and pid files.
 */
export interface NodeLayout {
  dir: string;
  nodeName: string;
  containerdConfig: string;
  containerdRoot: string;
  containerdState: string;
  socket: string;
  cniConfDir: string;
  cniDataDir: string;
  kubeletRoot: string;
  kubeletConfig: string;
  kubeProxyConfig: string;
  resolvConf: string;
}

export function nodeLayout(clusterName: string): NodeLayout {
  const dir = join(cacheDir, "real-node", clusterName);
  return {
    dir,
    nodeName: "real-node",
    containerdConfig: join(dir, "containerd.toml"),
    containerdRoot: join(dir, "containerd", "root"),
    containerdState: join(dir, "containerd", "state"),
    socket: join(dir, "containerd.sock"),
    cniConfDir: join(dir, "cni", "net.d"),
    cniDataDir: join(dir, "cni", "networks"),
    kubeletRoot: join(dir, "kubelet"),
    kubeletConfig: join(dir, "kubelet.yaml"),
    kubeProxyConfig: join(dir, "kube-proxy.yaml"),
    resolvConf: join(dir, "resolv.conf"),
  };
}
