import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { request } from "node:https";
import { chownSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { makeLoopbackCert, type ServingCert } from "./certs.js";
import type { Cluster } from "./cluster.js";
import { projectRoot } from "./paths.js";
import { freePort } from "../util/net.js";

export const GATE_NAMESPACE = "schema-gate";
export const GATE_SA = "schema-gate";
export const GATE_USER = `system:serviceaccount:${GATE_NAMESPACE}:${GATE_SA}`;

export interface LocalGateIdentity {
  /** A kubeconfig that authenticates as the gate's ServiceAccount (TokenRequest token). */
  kubeconfig: string;
  cert: ServingCert;
  port: number;
}

/**
 * Prepares a gate that runs as a local process against a cluster (tests and the demo):
 * installs the window CRD, the ServiceAccount and RBAC from manifests/, issues it a token, and registers
 * the webhook configurations from manifests/ with `url` + `caBundle` pointing at
 * 127.0.0.1 (instead of the in-cluster Service).
 */
export async function prepareLocalGate(cluster: Cluster, kc: k8s.KubeConfig): Promise<LocalGateIdentity> {
  await cluster.kubectl(["apply", "-f", join(projectRoot, "manifests", "base", "namespace.yaml")]);
  await cluster.kubectl(["apply", "-f", join(projectRoot, "manifests", "base", "crds.yaml")]);
  await cluster.kubectl(["wait", "--for=condition=Established", "crd/migrationwindows.schema-gate.dev", "--timeout=60s"]);
  await cluster.kubectl(["apply", "-f", join(projectRoot, "manifests", "base", "rbac.yaml")]);
  const dir = await mkdtemp(join(tmpdir(), "schema-gate-gate-"));
  const kubeconfigPath = await gateKubeconfig(kc, dir, "kubeconfig.yaml");
  const cert = await makeLoopbackCert(join(dir, "tls"));
  const port = await freePort();
  await registerWebhooks(cluster, cert, port);
  return { kubeconfig: kubeconfigPath, cert, port };
}

/**
 * Writes a kubeconfig with a fresh token of the gate's ServiceAccount into `dir`. Each
 * token has its own id, which the apiserver's audit log shows with every request
 * (`user.extra["authentication.kubernetes.io/credential-id"]`): replicas with tokens
 * of their own are told apart there, as pods with their own projected tokens are.
 */
export async function gateKubeconfig(kc: k8s.KubeConfig, dir: string, file: string): Promise<string> {
  const token = await kc.makeApiClient(k8s.CoreV1Api).createNamespacedServiceAccountToken({
    name: GATE_SA,
    namespace: GATE_NAMESPACE,
    body: { spec: { expirationSeconds: 24 * 3600, audiences: [] } },
  });
  const server = kc.getCurrentCluster()!;
  const kubeconfig = new k8s.KubeConfig();
  kubeconfig.loadFromOptions({
    clusters: [server],
    users: [{ name: GATE_SA, token: token.status!.token }],
    contexts: [{ name: "gate", cluster: server.name, user: GATE_SA }],
    currentContext: "gate",
  });
  const path = join(dir, file);
  await writeFile(path, kubeconfig.exportConfig(), { mode: 0o600 });
  return path;
}

/**
 * Lets the gate act in `namespace` (manifests/namespace-access.yaml: a RoleBinding of its
 * workloads ClusterRole), as a user does for each application namespace.
 */
export async function grantNamespace(cluster: Cluster, namespace: string): Promise<void> {
  await cluster.kubectl(["apply", "-n", namespace, "-f", join(projectRoot, "manifests", "namespace-access.yaml")]);
}

/** Points the webhook configurations from manifests/ at a local gate on 127.0.0.1:`port`. */
export async function registerWebhooks(cluster: Cluster, cert: ServingCert, port: number): Promise<void> {
  const text = await readFile(join(projectRoot, "manifests", "base", "webhooks.yaml"), "utf8");
  const documents = YAML.parseAllDocuments(text).map((d) => d.toJSON());
  for (const config of documents) {
    for (const hook of config.webhooks) {
      const path = hook.clientConfig.service.path;
      hook.clientConfig = { url: `https://127.0.0.1:${port}${path}`, caBundle: cert.caBundle };
    }
  }
  await cluster.kubectl(["apply", "-f", "-"], documents.map((d) => YAML.stringify(d)).join("---\n"));
}

/** Removes the webhook configurations, so a cluster without the gate running admits freely. */
export async function unregisterWebhooks(cluster: Cluster): Promise<void> {
  await cluster.kubectl([
    "delete", "mutatingwebhookconfiguration/schema-gate", "validatingwebhookconfiguration/schema-gate", "--ignore-not-found",
  ]);
}

/**
 * When set, local gates run from this container image instead of the checkout
 * (`tools/image-check.sh` runs the integration suites this way).
 */
export const GATE_IMAGE_ENV = "SCHEMA_GATE_GATE_IMAGE";

/** Marks gate containers, so that a run cut short can find and remove what it left. */
export const LOCAL_GATE_LABEL = "schema-gate.dev/local-gate=true";

/** How one replica differs from the prepared identity (a second replica beside the first). */
export interface GateReplicaOptions {
  /** Its own kubeconfig (see gateKubeconfig), in the identity's directory. */
  kubeconfig?: string;
  /** Its own port; the webhooks are registered at the identity's. */
  port?: number;
  /** Added to its environment (e.g. HOSTNAME, which names it in the Lease). */
  env?: Record<string, string>;
}

/** Starts `schema-gate serve` as its own process with the prepared identity. */
export function spawnGate(id: LocalGateIdentity, extraArgs: string[], replica: GateReplicaOptions = {}): ChildProcess {
  const args = [
    "serve",
    "--kubeconfig", replica.kubeconfig ?? id.kubeconfig, "--host", "127.0.0.1", "--port", String(replica.port ?? id.port),
    "--tls-cert-file", join(id.cert.dir, "tls.crt"), "--tls-key-file", join(id.cert.dir, "tls.key"),
    "--namespace", GATE_NAMESPACE, "--service-account", GATE_SA, ...extraArgs,
  ];
  const image = process.env[GATE_IMAGE_ENV];
  if (image) return spawnGateContainer(image, id, args, replica.env ?? {});
  return spawn(process.execPath, [join(projectRoot, "bin", "schema-gate.js"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, KUBECONFIG: "", ...replica.env },
  });
}

/**
 * Runs the gate from its image with the restrictions manifests/base/deployment.yaml gives
 * the pod (its user, read-only root, no capabilities), on the host network so that it
 * reaches the local apiserver and PostgreSQL on loopback as the local process would.
 * The identity's files are mounted read-only at the same paths and owned by that user.
 * kill() stops the container, not only the `docker run` client.
 */
function spawnGateContainer(image: string, id: LocalGateIdentity, args: string[], env: Record<string, string>): ChildProcess {
  const { uid, gid } = deploymentUser();
  const dir = dirname(id.kubeconfig);
  chownTree(dir, uid, gid);
  const name = `schema-gate-local-${id.port}-${process.pid}-${Date.now()}`;
  const child = spawn(
    "docker",
    [
      "run", "--rm", "--name", name, "--label", LOCAL_GATE_LABEL, "--network", "host", "--user", `${uid}:${gid}`,
      "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
      "--volume", `${dir}:${dir}:ro`, ...Object.entries(env).flatMap(([k, v]) => ["--env", `${k}=${v}`]), image, ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  child.kill = (signal: NodeJS.Signals | number = "SIGTERM") => {
    const result = spawnSync("docker", ["kill", "--signal", String(signal), name], { stdio: "ignore" });
    return result.status === 0;
  };
  return child;
}

/** The runAsUser/runAsGroup of the gate's pod in manifests/base/deployment.yaml. */
function deploymentUser(): { uid: number; gid: number } {
  const text = readFileSync(join(projectRoot, "manifests", "base", "deployment.yaml"), "utf8");
  const deployment = YAML.parseAllDocuments(text).map((d) => d.toJSON()).find((d) => d?.kind === "Deployment");
  const context = deployment?.spec?.template?.spec?.securityContext ?? {};
  const uid = Number(context.runAsUser);
  const gid = Number(context.runAsGroup ?? context.runAsUser);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new Error("manifests/base/deployment.yaml: the pod securityContext needs numeric runAsUser/runAsGroup");
  }
  return { uid, gid };
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (!statSync(path).isDirectory()) return;
  for (const entry of readdirSync(path)) chownTree(join(path, entry), uid, gid);
}

/** A GET to a local gate over HTTPS, trusting its own CA (readiness, metrics). */
export function gateGet(id: LocalGateIdentity, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: id.port, path, ca: id.cert.ca, method: "GET" }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}
