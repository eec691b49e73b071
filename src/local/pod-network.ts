import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../util/exec.js";
import { CNI_NETWORK, POD_BRIDGE, POD_GATEWAY, POD_SUBNET, SERVICE_SUBNET, type NodeLayout } from "./node-layout.js";

// The real node's pod network: a Linux bridge (cni0) with the host on 10.88.0.1, pod
// addresses from host-local IPAM (its allocations kept in the node's directory), portmap
// for hostPorts. No masquerading, and a FORWARD rule drops what pods send off the bridge:
// pods reach each other, Services and the host's own addresses, and nothing beyond.
// Service addresses are routed to the bridge too, so no packet for one leaves the machine.

/**
 * FORWARD rules, first to last: traffic between pods (also through a Service) passes even
 * where another program (Docker) set the chain's policy to DROP; traffic from pods to
 * anywhere off the bridge is dropped.
 */
const FORWARD_RULES = [
  ["-i", POD_BRIDGE, "-o", POD_BRIDGE, "-m", "comment", "--comment", "schema-gate real node: pod to pod", "-j", "ACCEPT"],
  ["-i", POD_BRIDGE, "!", "-o", POD_BRIDGE, "-m", "comment", "--comment", "schema-gate real node: pods reach only the host", "-j", "DROP"],
];
const prefix = Number(POD_SUBNET.split("/")[1]);

function conflist(layout: NodeLayout): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: CNI_NETWORK,
    plugins: [
      {
        type: "bridge",
        bridge: POD_BRIDGE,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: POD_SUBNET, gateway: POD_GATEWAY }]],
          routes: [{ dst: "0.0.0.0/0" }],
          dataDir: layout.cniDataDir,
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  }, null, 2);
}

async function ip(args: string[]): Promise<string> {
  return (await run("ip", args)).stdout;
}

/**
 * Creates the bridge with the host's address on it before anything else of the node, so
 * the apiserver can advertise and PostgreSQL can listen on 10.88.0.1 from the start.
 */
export async function ensurePodBridge(): Promise<void> {
  const links = await ip(["-o", "link", "show"]);
  if (!new RegExp(`^\\d+: ${POD_BRIDGE}[:@]`, "m").test(links)) {
    await ip(["link", "add", POD_BRIDGE, "type", "bridge"]);
  }
  const addresses = await ip(["-o", "-4", "addr", "show", "dev", POD_BRIDGE]);
  if (!addresses.includes(`inet ${POD_GATEWAY}/`)) {
    await ip(["addr", "add", `${POD_GATEWAY}/${prefix}`, "dev", POD_BRIDGE]);
  }
  await ip(["link", "set", POD_BRIDGE, "up"]);
  // Service addresses kube-proxy has not programmed yet go to the bridge (and find no one
  // there) rather than out of the default route; the route goes with the bridge.
  await ip(["route", "replace", SERVICE_SUBNET, "dev", POD_BRIDGE]);
}

/**
 * Kernel settings the node needs on: forwarding (Service traffic is routed through the
 * host) and iptables for bridged traffic (so a Service reply between two pods on the
 * bridge is un-NATed). Each one's value before is kept in the node's directory.
 */
export const SYSCTLS = ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/bridge/bridge-nf-call-iptables"];
const savedValue = (layout: NodeLayout, path: string) => join(layout.dir, `${path.split("/").pop()}.before`);

/** Writes the CNI configuration, turns the SYSCTLS on (old values kept for teardown), adds the FORWARD rules. */
export async function setUpPodNetwork(layout: NodeLayout): Promise<void> {
  await ensurePodBridge();
  await mkdir(layout.cniConfDir, { recursive: true });
  await mkdir(layout.cniDataDir, { recursive: true });
  await writeFile(join(layout.cniConfDir, "10-schema-gate.conflist"), conflist(layout));
  for (const path of SYSCTLS) {
    const saved = savedValue(layout, path);
    if (!existsSync(saved)) await writeFile(saved, await readFile(path, "utf8"));
    await writeFile(path, "1\n");
  }
  for (const rule of [...FORWARD_RULES].reverse()) {
    const present = await run("iptables", ["-C", "FORWARD", ...rule]).then(() => true, () => false);
    if (!present) await run("iptables", ["-I", "FORWARD", "1", ...rule]);
  }
}

/** Removes the bridge and the FORWARD rules, and puts the SYSCTLS back as they were. */
export async function tearDownPodNetwork(layout: NodeLayout): Promise<void> {
  for (const rule of FORWARD_RULES) {
    while (await run("iptables", ["-D", "FORWARD", ...rule]).then(() => true, () => false));
  }
  const links = await ip(["-o", "link", "show"]);
  if (new RegExp(`^\\d+: ${POD_BRIDGE}[:@]`, "m").test(links)) await ip(["link", "delete", POD_BRIDGE]);
  for (const path of SYSCTLS) {
    const saved = savedValue(layout, path);
    if (existsSync(saved)) await writeFile(path, await readFile(saved, "utf8"));
  }
}
