import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../util/exec.js";
import { pollUntil, sleep } from "../util/wait.js";
import { stringify } from "yaml";
import { ensureBinaries, type Binaries } from "./binaries.js";
import { KUBERNETES_SERVICE_IP, nodeLayout, POD_GATEWAY, SERVICE_SUBNET } from "./node-layout.js";
import { ensurePodBridge } from "./pod-network.js";
import { GATE_USER } from "./gate.js";
import { cacheDir } from "./paths.js";
import { realNodeMissing } from "./node-prereqs.js";
import { keepLogs, realNodeUnavailable, startRealNode, stopRealNode, type RealNode } from "./real-node.js";

export interface Cluster {
  /** Path of a kubeconfig whose current context is this cluster. */
  kubeconfig: string;
  binaries: Binaries;
  /** True when this process created the cluster (and so should delete it). */
  created: boolean;
  /** "kwok" for the local cluster, "external" for one given by KUBECONFIG. */
  kind: "kwok" | "external";
  /** The real kubelet node beside the kwok nodes, when the local cluster has one. */
  realNode?: RealNode;
  /** Why there is no real node (what is missing and how to install it), when there is none. */
  realNodeProblem?: string;
  kubectl(args: string[], input?: string): Promise<string>;
  helm(args: string[]): Promise<string>;
  /** Deletes the cluster if this process created it. */
  release(): Promise<void>;
}

export const CLUSTER_NAME = process.env.SCHEMA_GATE_CLUSTER_NAME ?? "schema-gate";
const NODES = 2;
const kwokWorkdir = join(cacheDir, "kwok");
const kubeconfigPath = join(cacheDir, `kubeconfig-${CLUSTER_NAME}.yaml`);
const kwokctlConfigPath = join(cacheDir, `kwokctl-${CLUSTER_NAME}.yaml`);
const auditPolicyPath = join(cacheDir, `audit-policy-${CLUSTER_NAME}.yaml`);

/**
 * The apiserver's audit log records every write the gate's ServiceAccount makes (who,
 * with which token, when, with what answer) and nothing else: the failover tests read it
 * to show that a deposed replica wrote nothing after its successor acted.
 */
const AUDIT_POLICY = stringify({
  apiVersion: "audit.k8s.io/v1",
  kind: "Policy",
  omitStages: ["RequestReceived"],
  rules: [
    { level: "Metadata", users: [GATE_USER], verbs: ["create", "update", "patch", "delete", "deletecollection"] },
    { level: "None" },
  ],
});

const clusterDir = join(kwokWorkdir, "clusters", CLUSTER_NAME);
/** The local cluster's audit log (see AUDIT_POLICY). */
export const auditLogPath = join(clusterDir, "logs", "audit.log");

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
    realNodeProblem:
      kind === "external"
        ? "the cluster given by KUBECONFIG has no real node run by schema-gate; unset KUBECONFIG (or set SCHEMA_GATE_LOCAL_CLUSTER=1) to use the local cluster"
        : undefined,
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

/**
 * kwokctl's configuration for the cluster. With a real node the apiserver advertises the
 * host's address on the pod bridge (the `kubernetes` Service's endpoint, so pods reach it)
 * with a serving certificate valid for it, dials kubelets by InternalIP, and kwok fakes
 * only the nodes it made (annotated kwok.x-k8s.io/node=fake), not the real one.
 * Patches live in this file rather than in --extra-args: kwokctl v0.8.0 files repeated
 * --extra-args under the wrong component.
 */
function kwokctlConfig(realNode: boolean): string {
  const args = (pairs: Record<string, string>) => Object.entries(pairs).map(([key, value]) => ({ key, value }));
  return stringify({
    apiVersion: "config.kwok.x-k8s.io/v1alpha1",
    kind: "KwokctlConfiguration",
    options: {
      // Every component on loopback (kwokctl's default is 0.0.0.0, and etcd has no
      // authentication). The real node's pods reach the apiserver through a forwarder on
      // the bridge (see apiserver-bridge.ts).
      bindAddress: "127.0.0.1",
      // Pods dial the apiserver at the `kubernetes` Service's IP and verify it against the cluster CA.
      ...(realNode ? { kubeApiserverCertSANs: [POD_GATEWAY, KUBERNETES_SERVICE_IP] } : {}),
    },
    componentsPatches: [
      {
        name: "kube-apiserver",
        // On a machine with no default route the apiserver cannot pick an address by itself.
        extraArgs: args(realNode
          ? { "advertise-address": POD_GATEWAY, "kubelet-preferred-address-types": "InternalIP", "service-cluster-ip-range": SERVICE_SUBNET }
          : { "advertise-address": "127.0.0.1" }),
      },
      ...(realNode
        ? [{
          name: "kwok-controller",
          extraArgs: args({ "manage-all-nodes": "false", "manage-nodes-with-annotation-selector": "kwok.x-k8s.io/node=fake" }),
        }]
        : []),
    ],
  });
}

/** The address the apiserver advertises (the `kubernetes` Service's endpoint). */
async function advertisedAddress(binaries: Binaries, kubeconfig: string): Promise<string> {
  const { stdout } = await run(binaries.kubectl, [
    "--kubeconfig", kubeconfig, "get", "endpointslices", "-n", "default",
    "-l", "kubernetes.io/service-name=kubernetes", "-o", "jsonpath={.items[0].endpoints[0].addresses[0]}",
  ], { timeoutMs: 10_000 });
  return stdout.trim();
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

/** Whether an existing local cluster can be kept: it answers and was made for the same real-node choice. */
async function reusable(binaries: Binaries, withRealNode: boolean): Promise<boolean> {
  if (!existsSync(kubeconfigPath) || !(await reachable(binaries, kubeconfigPath))) {
    // A cluster left by an earlier boot or run: restarting it is slower than making a new
    // one, because a restarted kwok waits for its old node leases (200 s) to expire before
    // it runs any pod. Its state is of no use to anyone, so replace it.
    process.stderr.write(`[cluster] replacing the stopped local cluster "${CLUSTER_NAME}"\n`);
    return false;
  }
  const written = existsSync(kwokctlConfigPath) ? readFileSync(kwokctlConfigPath, "utf8") : "";
  if (written !== kwokctlConfig(withRealNode)) {
    process.stderr.write(`[cluster] replacing the local cluster "${CLUSTER_NAME}": it was made with another configuration (an older schema-gate)\n`);
    return false;
  }
  const advertised = await advertisedAddress(binaries, kubeconfigPath).catch(() => "");
  if ((advertised === POD_GATEWAY) !== withRealNode) {
    process.stderr.write(`[cluster] replacing the local cluster "${CLUSTER_NAME}": it was made ${withRealNode ? "without" : "with"} a real node\n`);
    return false;
  }
  // kwokctl keeps its copy of the audit policy here; a cluster made before there was one has none.
  if (!existsSync(join(clusterDir, "audit.yaml"))) {
    process.stderr.write(`[cluster] replacing the local cluster "${CLUSTER_NAME}": it was made without the audit log\n`);
    return false;
  }
  return true;
}

async function createLocalCluster(binaries: Binaries, withRealNode: boolean): Promise<void> {
  process.stderr.write(`[cluster] creating local cluster "${CLUSTER_NAME}" (kwokctl --runtime binary${withRealNode ? ", with a real node" : ""})\n`);
  // The apiserver advertises the bridge's address: have it before the apiserver starts.
  if (withRealNode) await ensurePodBridge();
  await writeFile(kwokctlConfigPath, kwokctlConfig(withRealNode));
  await writeFile(auditPolicyPath, AUDIT_POLICY);
  await run(binaries.kwokctl, [
    "--config", kwokctlConfigPath,
    "--name", CLUSTER_NAME, "create", "cluster",
    "--runtime", "binary",
    "--etcd-binary", binaries.etcd,
    "--kube-apiserver-binary", binaries["kube-apiserver"],
    "--kube-controller-manager-binary", binaries["kube-controller-manager"],
    "--kube-scheduler-binary", binaries["kube-scheduler"],
    "--kwok-controller-binary", binaries.kwok,
    "--kube-audit-policy", auditPolicyPath,
    // Leave the user's ~/.kube/config alone; callers get our own kubeconfig file.
    "--kubeconfig", "",
    "--wait", "2m",
  ], { env: kwokEnv(binaries) });
}

/**
 * The real node is additive: when it fails to start, the kwok cluster still serves every
 * other suite, and the real-node suites fail with this explanation.
 */
async function startRealNodeOrExplain(binaries: Binaries): Promise<{ node?: RealNode; problem?: string }> {
  try {
    return { node: await startRealNode({ clusterName: CLUSTER_NAME, binaries, kubeconfig: kubeconfigPath, clientCA: clusterCA() }) };
  } catch (error) {
    const logs = await keepLogs(CLUSTER_NAME).catch(() => undefined);
    const kept = logs ? ` (its logs are kept in ${logs})` : "";
    const problem = `the real node did not start${kept}: ${error instanceof Error ? error.message : String(error)}`;
    process.stderr.write(`[cluster] ${problem}\n`);
    await stopRealNode(CLUSTER_NAME, binaries).catch(() => undefined);
    const node = nodeLayout(CLUSTER_NAME).nodeName;
    await run(binaries.kubectl, ["--kubeconfig", kubeconfigPath, "delete", "node", node, "--ignore-not-found"]).catch(() => undefined);
    return { problem };
  }
}

/**
 * The kwok nodes. Their addresses are on loopback: kwokctl's default, 192.0.2.1, .2, ...
 * (TEST-NET-1), can be a real network, and the apiserver dials nodes by address. A scale
 * right after the cluster came up once failed; it is tried again before giving up.
 */
async function scaleKwokNodes(binaries: Binaries, count = NODES): Promise<void> {
  const args = ["scale", "node", "--replicas", String(count), "--param", '.nodeIPs=["127.0.0.1"]'];
  for (let attempt = 1; ; attempt++) {
    try {
      await kwokctl(binaries, args);
      return;
    } catch (error) {
      if (attempt === 3) throw error;
      process.stderr.write(`[cluster] kwokctl scale failed, trying again: ${error instanceof Error ? error.message.slice(-400) : String(error)}\n`);
      await sleep(1000);
    }
  }
}

/**
 * At least `count` kwok nodes (each takes 110 pods, as a kubelet does by default), for a
 * benchmark that runs more pods than the two the cluster starts with can hold.
 */
export async function ensureKwokNodes(count: number): Promise<void> {
  const binaries = await ensureBinaries();
  if (count > NODES) await scaleKwokNodes(binaries, count);
}

/** The local cluster's directory: kwokctl's files for it, which its processes name on their command lines. */
export function localClusterDir(): string {
  return clusterDir;
}

/** The cluster's CA certificate, as kwokctl wrote it. */
function clusterCA(): string {
  return join(clusterDir, "pki", "ca.crt");
}

/**
 * Starts (or reuses) the local kwok cluster on loopback, with a real kubelet node beside
 * the kwok nodes when the machine can run one (root and the Debian packages; see
 * README, "The real node"). The binaries come from tools/binaries.sh: an explicit
 * directory, the per-version cache, or a one-time build.
 */
export async function startLocalCluster(): Promise<Cluster> {
  const binaries = await ensureBinaries();
  await mkdir(cacheDir, { recursive: true });
  const realNodeProblem = realNodeUnavailable(CLUSTER_NAME);
  const withRealNode = realNodeProblem === undefined;
  let created = false;
  if ((await localClusterExists(binaries)) && !(await reusable(binaries, withRealNode))) {
    await deleteLocalCluster();
  }
  if (!(await localClusterExists(binaries))) {
    // A real node left by an earlier run talks to a cluster that is gone: remove it first.
    if (withRealNode) await stopRealNode(CLUSTER_NAME, binaries);
    await createLocalCluster(binaries, withRealNode);
    created = true;
  }
  await writeFile(kubeconfigPath, await kwokctl(binaries, ["get", "kubeconfig"]), { mode: 0o600 });
  const [realNode] = await Promise.all([
    withRealNode ? startRealNodeOrExplain(binaries) : { node: undefined, problem: realNodeProblem },
    scaleKwokNodes(binaries),
  ]);
  const cluster = { ...handle(binaries, kubeconfigPath, created, "kwok"), realNode: realNode.node, realNodeProblem: realNode.problem };
  await waitUsable(cluster);
  return cluster;
}

/** Deletes the local cluster and everything its real node made. */
export async function deleteLocalCluster(): Promise<void> {
  const binaries = await ensureBinaries();
  if (realNodeMissing() === undefined) {
    await stopRealNode(CLUSTER_NAME, binaries);
  }
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
