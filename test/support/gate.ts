import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { projectRoot } from "../../src/local/paths.js";
import { freePort } from "../../src/util/net.js";
import { pollUntil } from "../../src/util/wait.js";
import { makeLoopbackCert, type ServingCert } from "./certs.js";
import { apiErrorMessage, onTeardown, type TestEnv } from "./env.js";

export const GATE_NAMESPACE = "schema-gate";
export const GATE_SA = "schema-gate";
export const GATE_USER = `system:serviceaccount:${GATE_NAMESPACE}:${GATE_SA}`;

export interface GateIdentity {
  /** A kubeconfig that authenticates as the gate's ServiceAccount (TokenRequest token). */
  kubeconfig: string;
  cert: ServingCert;
  port: number;
}

let identity: Promise<GateIdentity> | undefined;

/**
 * Installs the gate's ServiceAccount and RBAC from manifests/, issues it a token, and
 * registers the webhook configurations from manifests/ with `url` + `caBundle` pointing at
 * a gate process on 127.0.0.1 (instead of the in-cluster Service). Once per test run.
 */
export function gateIdentity(env: TestEnv): Promise<GateIdentity> {
  identity ??= (async () => {
    await env.cluster.kubectl(["apply", "-f", join(projectRoot, "manifests", "base", "namespace.yaml")]);
    await env.cluster.kubectl(["apply", "-f", join(projectRoot, "manifests", "base", "rbac.yaml")]);
    const token = await env.core.createNamespacedServiceAccountToken({
      name: GATE_SA,
      namespace: GATE_NAMESPACE,
      body: { spec: { expirationSeconds: 24 * 3600, audiences: [] } },
    });
    const cluster = env.kc.getCurrentCluster()!;
    const kubeconfig = new k8s.KubeConfig();
    kubeconfig.loadFromOptions({
      clusters: [cluster],
      users: [{ name: GATE_SA, token: token.status!.token }],
      contexts: [{ name: "gate", cluster: cluster.name, user: GATE_SA }],
      currentContext: "gate",
    });
    const dir = await mkdtemp(join(tmpdir(), "schema-gate-gate-"));
    const kubeconfigPath = join(dir, "kubeconfig.yaml");
    await writeFile(kubeconfigPath, kubeconfig.exportConfig(), { mode: 0o600 });
    const cert = await makeLoopbackCert(join(dir, "tls"));
    const port = await freePort();
    await registerWebhooks(env, cert, port);
    return { kubeconfig: kubeconfigPath, cert, port };
  })();
  return identity;
}

async function registerWebhooks(env: TestEnv, cert: ServingCert, port: number): Promise<void> {
  const text = await readFile(join(projectRoot, "manifests", "base", "webhooks.yaml"), "utf8");
  const documents = YAML.parseAllDocuments(text).map((d) => d.toJSON());
  for (const config of documents) {
    for (const hook of config.webhooks) {
      const path = hook.clientConfig.service.path;
      hook.clientConfig = { url: `https://127.0.0.1:${port}${path}`, caBundle: cert.caBundle };
    }
  }
  await env.cluster.kubectl(["apply", "-f", "-"], documents.map((d) => YAML.stringify(d)).join("---\n"));
  onTeardown(() =>
    env.cluster.kubectl([
      "delete", "mutatingwebhookconfiguration/schema-gate", "validatingwebhookconfiguration/schema-gate", "--ignore-not-found",
    ]),
  );
}

export interface GateProcess {
  child: ChildProcess;
  port: number;
  /** Every JSON log line the gate printed so far. */
  logs: string[];
  get(path: string): Promise<{ status: number; body: string }>;
  /** Stops the process (SIGTERM by default) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `schema-gate serve` as a separate process, as the gate's ServiceAccount, and waits until ready. */
export async function startGate(env: TestEnv, extraArgs: string[] = []): Promise<GateProcess> {
  const id = await gateIdentity(env);
  const child = spawn(
    process.execPath,
    [
      join(projectRoot, "bin", "schema-gate.js"), "serve",
      "--kubeconfig", id.kubeconfig, "--host", "127.0.0.1", "--port", String(id.port),
      "--tls-cert-file", join(id.cert.dir, "tls.crt"), "--tls-key-file", join(id.cert.dir, "tls.key"),
      "--namespace", GATE_NAMESPACE, "--service-account", GATE_SA, ...extraArgs,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, KUBECONFIG: "" } },
  );
  const logs: string[] = [];
  let pending = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    pending += chunk.toString("utf8");
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    logs.push(...lines.filter(Boolean));
  });
  child.stderr!.on("data", (chunk: Buffer) => logs.push(chunk.toString("utf8")));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const get = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: id.port, path, ca: id.cert.ca, method: "GET" }, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });

  const gate: GateProcess = {
    child,
    port: id.port,
    logs,
    get,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  onTeardown(() => gate.stop("SIGKILL"));
  await pollUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`gate exited with ${child.exitCode}: ${logs.join("\n")}`);
      return (await get("/readyz")).status === 200 ? true : undefined;
    },
    { timeoutMs: 30_000, what: "the gate's /readyz" },
  );
  return gate;
}

/** Waits until the apiserver actually calls the webhooks (it loads configurations asynchronously). */
export async function waitForWebhooks(env: TestEnv, namespace: string): Promise<void> {
  await pollUntil(
    async () => {
      try {
        await env.apps.createNamespacedDeployment({
          namespace,
          dryRun: "All",
          body: {
            metadata: { name: "webhook-probe", annotations: { "schema-gate.dev/database": "Not_Valid" } },
            spec: {
              selector: { matchLabels: { app: "probe" } },
              template: { metadata: { labels: { app: "probe" } }, spec: { containers: [{ name: "a", image: "probe" }] } },
            },
          },
        });
        return undefined;
      } catch (error) {
        const message = apiErrorMessage(error);
        if (/schema-gate\.dev\/database: "Not_Valid"/.test(message)) return true;
        throw new Error(message);
      }
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "the apiserver to call schema-gate's webhooks" },
  );
}
