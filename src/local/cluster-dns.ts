import { Resolver } from "node:dns/promises";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDaemon, waitForDaemon } from "./daemon.js";
import { POD_GATEWAY, type NodeLayout } from "./node-layout.js";

// Cluster DNS for the real node's pods: CoreDNS (built from its Go module into the cache)
// on the host's bridge address, answering for cluster.local from the apiserver. It
// forwards nothing: a name outside the cluster gets REFUSED, never a query to the host's
// resolver or beyond.

export const CLUSTER_DOMAIN = "cluster.local";

function corefile(kubeconfig: string): string {
  return `.:53 {
    bind ${POD_GATEWAY}
    errors
    kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
        kubeconfig ${kubeconfig}
        pods insecure
    }
    cache 5
}
`;
}

/** Starts CoreDNS on 10.88.0.1:53 and waits until it resolves the `kubernetes` Service. */
export async function startClusterDNS(layout: NodeLayout, binary: string, kubeconfig: string): Promise<void> {
  const config = join(layout.dir, "Corefile");
  await writeFile(config, corefile(kubeconfig));
  await startDaemon({ name: "coredns", dir: layout.dir, file: binary, args: ["-conf", config] });
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([POD_GATEWAY]);
  await waitForDaemon(layout.dir, "coredns", async () => {
    const addresses = await resolver.resolve4(`kubernetes.default.svc.${CLUSTER_DOMAIN}`);
    return addresses.length > 0;
  }, { timeoutMs: 30_000, what: "CoreDNS to resolve kubernetes.default.svc" });
}
