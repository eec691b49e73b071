import { writeFile } from "node:fs/promises";
import { stringify } from "yaml";
import { startDaemon, waitForDaemon } from "./daemon.js";
import { POD_SUBNET, type NodeLayout } from "./node-layout.js";

// kube-proxy on the real node, in iptables mode: Services' cluster IPs work from pods and
// from the host. NodePorts open only on the bridge address, never on the host's network.

function configuration(layout: NodeLayout, kubeconfig: string): object {
  return {
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    clientConnection: { kubeconfig },
    hostnameOverride: layout.nodeName,
    mode: "iptables",
    clusterCIDR: POD_SUBNET,
    nodePortAddresses: [POD_SUBNET],
    healthzBindAddress: "127.0.0.1:10256",
    metricsBindAddress: "127.0.0.1:10249",
    // Leave the machine's conntrack table size alone (the VM may not allow changing it).
    conntrack: { maxPerCore: 0 },
    iptables: { minSyncPeriod: "0s" },
  };
}

export async function startKubeProxy(layout: NodeLayout, binary: string, kubeconfig: string): Promise<void> {
  await writeFile(layout.kubeProxyConfig, stringify(configuration(layout, kubeconfig)));
  await startDaemon({ name: "kube-proxy", dir: layout.dir, file: binary, args: [`--config=${layout.kubeProxyConfig}`] });
  await waitForDaemon(layout.dir, "kube-proxy", async () => {
    const response = await fetch("http://127.0.0.1:10256/healthz").catch(() => undefined);
    return response !== undefined && response.status < 500;
  }, { timeoutMs: 60_000, what: "kube-proxy's health endpoint" });
}
