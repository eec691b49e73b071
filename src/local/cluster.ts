import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../util/exec.js";
import { pollUntil } from "../util/wait.js";
import { ensureBinaries, type Binaries } from "./binaries.js";
import { cacheDir } from "./paths.js";

export interface Cluster {
  /** Path of a kubeconfig whose current context is this cluster. */
  kubeconfig: string;
  binaries: Binaries;
  /** True when this process created the cluster (and so should delete it). */
  created: boolean;
  /** "kwok" for the local cluster, "external" for one given by KUBECONFIG. */
  kind: "kwok" | "external";
  kubectl(args: string[], input?: string): Promise<string>;
  helm(args: string[]): Promise<string>;
  /** Deletes the cluster if this process created it. */
  release(): Promise<void>;
}

export const CLUSTER_NAME = process.env.SCHEMA_GATE_CLUSTER_NAME ?? "schema-gate";
const NODES = 2;
const kwokWorkdir = join(cacheDir, "kwok");
const kubeconfigPath = join(cacheDir, `kubeconfig-${CLUSTER_NAME}.yaml`);

function kwokEnv(binaries: Binaries): NodeJS.ProcessEnv {
  // kwokctl would otherwise download kubectl for some subcommands; nothing may be downloaded here.
  return { ...process.env, KWOK_WORKDIR: kwokWorkdir, KWOK_KUBECTL_BINARY: binaries.kubectl };
}

function kwokctl(binaries: Binaries, args: string[]): Promise<string> {
  return run(binaries.kwokctl, ["--name", CLUSTER_NAME, ...args], { env: kwokEnv(binaries) }).then((r) => r.stdout);
}

function handle(binaries: Binaries, kubeconfig: string, created: boolean, kind: Cluster["kind"]): Cluster {
  const env = { ...process.env, KUBECONFIG: kubeconfig };
  return {
    kubeconfig,
    binaries,
    created,
    kind,
    kubectl: (args, input) => run(binaries.kubectl, args, { env, input }).then((r) => r.stdout),
    helm: (args) => run(binaries.helm, args, { env }).then((r) => r.stdout),
    async release() {
      if (created && kind === "kwok") await deleteLocalCluster();
    },
  };
}

async function reachable(binaries: Binaries, kubeconfig: string): Promise<boolean> {
  try {
    await run(binaries.kubectl, ["--kubeconfig", kubeconfig, "get", "--raw", "/readyz"], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

async function localClusterExists(binaries: Binaries): Promise<boolean> {
  const out = await run(binaries.kwokctl, ["get", "clusters"], { env: kwokEnv(binaries) });
  return out.stdout.split(/\s+/).includes(CLUSTER_NAME);
}

/** Waits until the cluster can run workloads: nodes Ready and the default ServiceAccount made. */
async function waitUsable(cluster: Cluster): Promise<void> {
  await pollUntil(
    async () => {
      const out = await cluster.kubectl(["get", "serviceaccount", "default", "-n", "default", "-o", "name"]);
      return out.trim() ? true : undefined;
    },
    { timeoutMs: 120_000, what: "the default ServiceAccount (kube-controller-manager running)" },
  );
  await cluster.kubectl(["wait", "--for=condition=Ready", "node", "--all", "--timeout=120s"]);
}

/**
 * Starts (or reuses) the local kwok cluster on loopback. The binaries come from
 * tools/binaries.sh: an explicit directory, the per-version cache, or a one-time build.
 */
export async function startLocalCluster(): Promise<Cluster> {
  const binaries = await ensureBinaries();
  await mkdir(cacheDir, { recursive: true });
  let created = false;
  if (await localClusterExists(binaries)) {
    if (!existsSync(kubeconfigPath) || !(await reachable(binaries, kubeconfigPath))) {
      // A cluster left by an earlier boot or run: restarting it is slower than making a new
      // one, because a restarted kwok waits for its old node leases (200 s) to expire before
      // it runs any pod. Its state is of no use to anyone, so replace it.
      process.stderr.write(`[cluster] replacing the stopped local cluster "${CLUSTER_NAME}"\n`);
      await kwokctl(binaries, ["delete", "cluster"]);
    }
  }
  if (!(await localClusterExists(binaries))) {
    process.stderr.write(`[cluster] creating local cluster "${CLUSTER_NAME}" (kwokctl --runtime binary)\n`);
    await run(binaries.kwokctl, [
      "--name", CLUSTER_NAME, "create", "cluster",
      "--runtime", "binary",
      "--etcd-binary", binaries.etcd,
      "--kube-apiserver-binary", binaries["kube-apiserver"],
      "--kube-controller-manager-binary", binaries["kube-controller-manager"],
      "--kube-scheduler-binary", binaries["kube-scheduler"],
      "--kwok-controller-binary", binaries.kwok,
      // Leave the user's ~/.kube/config alone; callers get our own kubeconfig file.
      "--kubeconfig", "",
      // On a machine with no default route the apiserver cannot pick an address by itself.
      "--extra-args", "kube-apiserver=advertise-address=127.0.0.1",
      "--wait", "2m",
    ], { env: kwokEnv(binaries) });
    created = true;
  }
  await writeFile(kubeconfigPath, await kwokctl(binaries, ["get", "kubeconfig"]), { mode: 0o600 });
  await kwokctl(binaries, ["scale", "node", "--replicas", String(NODES)]);
  const cluster = handle(binaries, kubeconfigPath, created, "kwok");
  await waitUsable(cluster);
  return cluster;
}

export async function deleteLocalCluster(): Promise<void> {
  const binaries = await ensureBinaries();
  if (await localClusterExists(binaries)) await kwokctl(binaries, ["delete", "cluster"]);
}

/**
 * The cluster tests, benchmarks and the demo use: the one an explicitly set KUBECONFIG
 * points at (e.g. kind), else the local kwok cluster.
 */
export async function acquireCluster(): Promise<Cluster> {
  const external = process.env.KUBECONFIG;
  if (external && !process.env.SCHEMA_GATE_LOCAL_CLUSTER) {
    const binaries = await ensureBinaries();
    if (!(await reachable(binaries, external))) {
      throw new Error(
        `KUBECONFIG is set to ${external} but its cluster does not answer /readyz. ` +
          "Start that cluster, or unset KUBECONFIG (or set SCHEMA_GATE_LOCAL_CLUSTER=1) to use the local kwok cluster.",
      );
    }
    return handle(binaries, external, false, "external");
  }
  return startLocalCluster();
}
