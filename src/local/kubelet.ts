import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { stringify } from "yaml";
import { run } from "../util/exec.js";
import { CLUSTER_DOMAIN } from "./cluster-dns.js";
import { startDaemon, waitForDaemon } from "./daemon.js";
import { POD_GATEWAY, REAL_NODE_LABEL, type NodeLayout } from "./node-layout.js";

export interface KubeletOptions {
  binary: string;
  kubeconfig: string;
  /** The cluster's CA, for client certificates the apiserver might present. */
  clientCA: string;
  /** Cluster DNS server addresses (CoreDNS on the bridge address). */
  clusterDNS?: string[];
}

function kubeletConfiguration(layout: NodeLayout, options: KubeletOptions): object {
  return {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    // Anyone who reaches port 10250 on 10.88.0.1 may use the kubelet API. kwok's apiserver
    // has no kubelet client certificate, so this is how `kubectl logs/exec` work here; it
    // is acceptable only for this throwaway test cluster on loopback and the pod bridge.
    authentication: { anonymous: { enabled: true }, webhook: { enabled: false }, x509: { clientCAFile: options.clientCA } },
    authorization: { mode: "AlwaysAllow" },
    address: POD_GATEWAY,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    // Kubernetes 1.35+ refuses cgroup v1 unless told; this machine has only v1 controllers.
    failCgroupV1: false,
    cgroupDriver: "cgroupfs",
    failSwapOn: false,
    containerRuntimeEndpoint: `unix://${layout.socket}`,
    // Pods with dnsPolicy Default (and the search list of the others) get this file rather
    // than the host's: a nameserver on their own loopback, so such a lookup fails at once
    // instead of going to the host's resolver.
    resolvConf: layout.resolvConf,
    clusterDomain: CLUSTER_DOMAIN,
    clusterDNS: options.clusterDNS ?? [],
    podLogsDir: join(layout.dir, "pod-logs"),
    volumePluginDir: join(layout.dir, "volume-plugins"),
    // Real workloads opt in with a toleration and a nodeSelector; everything else (the
    // kwok suites' pods, whose images exist nowhere) stays on the kwok nodes.
    registerWithTaints: [{ key: REAL_NODE_LABEL, value: "true", effect: "NoSchedule" }],
    serializeImagePulls: false,
    // syncFrequency (1 min) and configMapAndSecretChangeDetectionStrategy (Watch) keep their
    // defaults: how late a pod sees a changed ConfigMap (the maintenance flag the sidecar
    // reads) is then what users' clusters do, and what the real-pods suite measures.
    // A test machine's disk may be fuller than a server's; do not evict for it.
    evictionHard: { "memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%" },
    imageGCHighThresholdPercent: 99,
    imageGCLowThresholdPercent: 98,
  };
}

export async function startKubelet(layout: NodeLayout, options: KubeletOptions): Promise<void> {
  await mkdir(layout.kubeletRoot, { recursive: true });
  await writeFile(layout.resolvConf, "nameserver 127.0.0.1\n");
  await writeFile(layout.kubeletConfig, stringify(kubeletConfiguration(layout, options)));
  await startDaemon({
    name: "kubelet",
    dir: layout.dir,
    file: options.binary,
    args: [
      `--config=${layout.kubeletConfig}`,
      `--kubeconfig=${options.kubeconfig}`,
      `--root-dir=${layout.kubeletRoot}`,
      `--cert-dir=${join(layout.kubeletRoot, "pki")}`,
      `--hostname-override=${layout.nodeName}`,
      `--node-ip=${POD_GATEWAY}`,
      `--node-labels=${REAL_NODE_LABEL}=true`,
    ],
  });
}

/** Waits until the node has registered and reports Ready. */
export async function waitNodeReady(layout: NodeLayout, kubectl: string, kubeconfig: string, timeoutMs = 120_000): Promise<void> {
  await waitForDaemon(layout.dir, "kubelet", async () => {
    const { stdout } = await run(kubectl, [
      "--kubeconfig", kubeconfig, "get", "node", layout.nodeName, "--ignore-not-found",
      "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ], { timeoutMs: 10_000 });
    return stdout.trim() === "True";
  }, { timeoutMs, what: `node ${layout.nodeName} to be Ready` });
}
