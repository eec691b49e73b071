import { join } from "node:path";
import { run, runInherited } from "../util/exec.js";
import { projectRoot } from "./paths.js";

export interface Binaries {
  etcd: string;
  "kube-apiserver": string;
  "kube-controller-manager": string;
  "kube-scheduler": string;
  kubectl: string;
  /** The real node's agents (src/local/real-node.ts). */
  kubelet: string;
  "kube-proxy": string;
  coredns: string;
  kwok: string;
  kwokctl: string;
  helm: string;
}

const script = join(projectRoot, "tools", "binaries.sh");
let resolved: Promise<Binaries> | undefined;

/**
 * Paths of the pinned control-plane binaries, building them into the per-version cache
 * the first time on a machine (tools/binaries.sh owns the versions and the lookup order).
 */
export function ensureBinaries(): Promise<Binaries> {
  resolved ??= (async () => {
    // The build can take many minutes: let its progress reach the terminal, then read the paths.
    await runInherited("bash", [script, "--build"]);
    const { stdout } = await run("bash", [script]);
    const entries = stdout
      .trim()
      .split("\n")
      .map((line) => line.split("=", 2) as [string, string]);
    return Object.fromEntries(entries) as unknown as Binaries;
  })();
  return resolved;
}

export async function pinnedVersions(): Promise<Record<string, string>> {
  const { stdout } = await run("bash", [script, "--versions"]);
  return Object.fromEntries(stdout.trim().split(/\s+/).map((kv) => kv.split("=", 2) as [string, string]));
}
