import { existsSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { readdir, readFile, readlink, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { run } from "../util/exec.js";
import { BRIDGE_DAEMON } from "./apiserver-bridge.js";
import { alive, processesUsing, runningDaemon, terminate } from "./daemon.js";
import { CNI_NETWORK, type NodeLayout } from "./node-layout.js";
import { onPath } from "./node-prereqs.js";
import { tearDownPodNetwork } from "./pod-network.js";

// Removes everything a real node made, whether it is running, half started or left by a
// run that was killed: pod processes, daemons and shims, mounts, network namespaces,
// iptables chains, the bridge, cgroups, CNI cache entries and the node's directory.

const CGROUP_ROOT = "/sys/fs/cgroup";
/** The programs a real node runs, by executable name (the binaries' cache paths vary). */
const NODE_PROGRAMS = ["containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "coredns", "haproxy"];
/** The cgroup the kubelet puts every pod under (cgroupfs driver, default cgroupRoot). */
const POD_CGROUP = "kubepods";

function podCgroupDirs(): string[] {
  if (!existsSync(CGROUP_ROOT)) return [];
  return readdirSync(CGROUP_ROOT)
    .map((hierarchy) => join(CGROUP_ROOT, hierarchy, POD_CGROUP))
    .filter((dir) => existsSync(dir));
}

/** What `read` returns, or undefined when what it reads was removed meanwhile (ENOENT). */
function unlessGone<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/**
 * Each directory under `dir`, children before their parent. A directory removed after its
 * parent was listed (a shim removing its container's cgroup as the cleanup stops it) is
 * passed over, with its subtree.
 */
export function walk(dir: string, visit: (dir: string) => void): void {
  const entries = unlessGone(() => readdirSync(dir, { withFileTypes: true }));
  if (!entries) return;
  for (const entry of entries) {
    if (entry.isDirectory()) walk(join(dir, entry.name), visit);
  }
  visit(dir);
}

/** The pids in the cgroups at and under `dir` (those still there as they are read). */
export function pidsUnder(dir: string): number[] {
  const pids = new Set<number>();
  walk(dir, (cgroup) => {
    const procs = unlessGone(() => readFileSync(join(cgroup, "cgroup.procs"), "utf8")) ?? "";
    procs.split("\n").filter(Boolean).forEach((pid) => pids.add(Number(pid)));
  });
  return [...pids];
}

/** Pids of every process in a pod of the node (containers and pause), found by cgroup. */
const podProcesses = (): number[] => [...new Set(podCgroupDirs().flatMap(pidsUnder))];

function removePodCgroups(): void {
  for (const dir of podCgroupDirs()) {
    walk(dir, (cgroup) => {
      try {
        rmdirSync(cgroup);
      } catch {
        // still busy, or a controller's own file: left for the next cleanup
      }
    });
  }
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4]?.replace(/\\040/g, " "))
    .filter((point): point is string => point !== undefined && (point === dir || point.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

async function unmountAll(dir: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const points = mountsUnder(dir);
    if (!points.length) return;
    for (const point of points) {
      await run("umount", [point]).catch(() => run("umount", ["--lazy", point]).catch(() => undefined));
    }
  }
  const left = mountsUnder(dir);
  if (left.length) throw new Error(`could not unmount ${left.length} mounts under ${dir}, e.g. ${left[0]}; not deleting it`);
}

/**
 * Deletes the KUBE-* chains (kube-proxy's and the kubelet's) and CNI-* chains (portmap's)
 * from every table, with the rules in other chains that jump to them.
 */
async function removeChains(save: string, restore: string): Promise<void> {
  if (!onPath(save)) return;
  const ours = (chain: string) => /^(KUBE|CNI)-/.test(chain);
  for (const table of ["filter", "nat", "mangle", "raw"]) {
    const dump = await run(save, ["-t", table]).then((r) => r.stdout, () => "");
    const chains = [...dump.matchAll(/^:(\S+)/gm)].map((m) => m[1] as string).filter(ours);
    const jumps = dump.split("\n").filter((line) => {
      const m = /^-A (\S+) .*-j (\S+)/.exec(line);
      return m !== null && !ours(m[1] as string) && ours(m[2] as string);
    });
    if (!chains.length && !jumps.length) continue;
    const script = [
      `*${table}`,
      ...jumps.map((line) => line.replace(/^-A /, "-D ")),
      ...chains.map((chain) => `-F ${chain}`),
      ...chains.map((chain) => `-X ${chain}`),
      "COMMIT",
      "",
    ].join("\n");
    await run(restore, ["--noflush"], { input: script });
  }
}

/** Removes `dir` and then its parents up to `stop` (exclusive) while they are empty. */
function removeEmpty(dir: string, stop: string): void {
  for (let d = dir; d !== stop && d.startsWith(`${stop}/`); d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return;
    }
  }
}

async function entries(dir: string): Promise<string[]> {
  return existsSync(dir) ? readdir(dir) : [];
}

/**
 * The few things the kubelet, containerd and libcni keep at fixed machine paths whatever
 * their configured directories: CNI result caches (named after our network and our
 * sandboxes), container log symlinks into our directory, the device-plugin socket, the
 * shims' socket directory. Ours are removed, and their directories when left empty.
 */
async function removeFixedPathLeftovers(layout: NodeLayout): Promise<void> {
  const sandboxes = await entries(join(layout.containerdRoot, "io.containerd.grpc.v1.cri", "sandboxes"));
  const results = "/var/lib/cni/results";
  for (const entry of await entries(results)) {
    if (entry.startsWith(`${CNI_NETWORK}-`) || sandboxes.some((id) => entry.includes(id))) await rm(join(results, entry), { force: true });
  }
  removeEmpty(results, "/var/lib");
  const logs = "/var/log/containers";
  for (const entry of await entries(logs)) {
    const target = await readlink(join(logs, entry)).catch(() => "");
    if (target.startsWith(`${layout.dir}/`)) await rm(join(logs, entry), { force: true });
  }
  removeEmpty(logs, "/var/log");
  if (!(await runningKubelets())) {
    const plugins = "/var/lib/kubelet/device-plugins";
    for (const file of ["kubelet.sock", "kubelet_internal_checkpoint"]) await rm(join(plugins, file), { force: true });
    removeEmpty(plugins, "/var/lib");
  }
  removeEmpty("/run/containerd/s", "/run");
}

/** Whether any kubelet still runs on the machine (then its fixed-path files are not ours to remove). */
async function runningKubelets(): Promise<boolean> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const comm = await readFile(`/proc/${entry}/comm`, "utf8").catch(() => "");
    if (comm.trim() === "kubelet" && alive(Number(entry))) return true;
  }
  return false;
}

export interface CleanupOptions {
  kubeProxy?: string;
  /**
   * Also what exists once per machine (pod cgroups and their processes, iptables chains,
   * the bridge, fixed paths): false while another cluster's real node runs, which owns them.
   */
  machineWide: boolean;
}

/** Everything the real node of `layout` made, gone. Safe to call when nothing is there. */
export async function cleanUpRealNode(layout: NodeLayout, options: CleanupOptions): Promise<void> {
  // The kubelet first, so that it does not restart the containers killed next.
  const kubelet = await runningDaemon(layout.dir, "kubelet");
  if (kubelet) await terminate([kubelet]);
  const bridge = await runningDaemon(layout.dir, BRIDGE_DAEMON);
  if (bridge) await terminate([bridge]);
  if (options.machineWide) await terminate(podProcesses(), 2_000);
  await terminate(processesUsing(layout.dir, NODE_PROGRAMS));
  if (existsSync(layout.dir)) await unmountAll(layout.dir);
  if (options.machineWide) {
    removePodCgroups();
    const { kubeProxy } = options;
    if (kubeProxy && existsSync(kubeProxy)) await run(kubeProxy, ["--cleanup"]).catch(() => undefined);
    await removeChains("iptables-save", "iptables-restore");
    await removeChains("ip6tables-save", "ip6tables-restore");
    await tearDownPodNetwork(layout);
    await removeFixedPathLeftovers(layout);
  }
  await rm(layout.dir, { recursive: true, force: true });
}
