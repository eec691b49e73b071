import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { userInfo } from "node:os";

/** Where Debian's containernetworking-plugins puts the CNI binaries. */
export const CNI_BIN_DIR = process.env.SCHEMA_GATE_CNI_BIN_DIR ?? "/usr/lib/cni";

/** What the real node runs, and the Debian package that provides each. */
const COMMANDS: Array<[command: string, pkg: string]> = [
  ["containerd", "containerd"],
  ["containerd-shim-runc-v2", "containerd"],
  ["ctr", "containerd"],
  ["runc", "runc"],
  ["iptables", "iptables"],
  ["iptables-save", "iptables"],
  ["conntrack", "conntrack"],
  ["ip", "iproute2"],
  ["mount", "mount"],
  ["tar", "tar"],
  ["ldd", "libc-bin"],
  ["go", "golang (Go 1.26+, for the pause image)"],
];
const CNI_PLUGINS = ["bridge", "host-local", "portmap", "loopback"];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function onPath(command: string): boolean {
  const dirs = (process.env.PATH ?? "").split(delimiter).concat(["/usr/sbin", "/sbin"]);
  return dirs.some((dir) => dir && executable(join(dir, command)));
}

/**
 * Why this machine cannot run the real node (root, commands, CNI plugins), naming what is
 * missing and how to install it; undefined when nothing is missing.
 */
export function realNodeMissing(): string | undefined {
  const problems: string[] = [];
  if (userInfo().uid !== 0) {
    problems.push("root (containerd, the kubelet and kube-proxy manage mounts, cgroups and iptables): run as root");
  }
  const packages = new Set<string>();
  const commands = COMMANDS.filter(([command]) => !onPath(command));
  for (const [, pkg] of commands) packages.add(pkg);
  if (commands.length) problems.push(`commands not found: ${commands.map(([c]) => c).join(", ")}`);
  const plugins = CNI_PLUGINS.filter((p) => !executable(join(CNI_BIN_DIR, p)));
  if (plugins.length) {
    problems.push(`CNI plugins not found in ${CNI_BIN_DIR}: ${plugins.join(", ")}`);
    packages.add("containernetworking-plugins");
  }
  if (!existsSync("/proc/sys/net/bridge/bridge-nf-call-iptables")) {
    problems.push("the kernel's br_netfilter (iptables for bridged traffic): modprobe br_netfilter");
  }
  if (!/\toverlay$/m.test(readFileSync("/proc/filesystems", "utf8"))) {
    problems.push("the kernel's overlay filesystem (containerd's snapshotter): modprobe overlay");
  }
  if (!problems.length) return undefined;
  const apt = [...packages].filter((p) => !p.includes(" "));
  const install = apt.length ? `; install with: apt-get install -y ${apt.join(" ")}` : "";
  return `the real node cannot start on this machine: ${problems.join("; ")}${install}`;
}
