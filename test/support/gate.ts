import type { ChildProcess } from "node:child_process";
import { gateGet, prepareLocalGate, registerWebhooks, spawnGate, unregisterWebhooks, type GateReplicaOptions, type LocalGateIdentity } from "../../src/local/gate.js";
import { pollUntil } from "../../src/util/wait.js";
import { waitForWebhooks as waitForGateWebhooks } from "../../src/local/webhook-probe.js";
import { onTeardown, type TestEnv } from "./env.js";

export { GATE_NAMESPACE, GATE_SA, GATE_USER } from "../../src/local/gate.js";
export type GateIdentity = LocalGateIdentity;

let identity: Promise<GateIdentity> | undefined;

/** The local gate's identity and webhook registration, once per test run (removed at teardown). */
export function gateIdentity(env: TestEnv): Promise<GateIdentity> {
  identity ??= (async () => {
    const id = await prepareLocalGate(env.cluster, env.kc);
    onTeardown(() => unregisterWebhooks(env.cluster));
    return id;
  })();
  return identity;
}

/** Points the webhooks at the local gate's port again, after a suite installed the gate in-cluster. */
export async function reregisterLocalWebhooks(env: TestEnv): Promise<void> {
  const id = await gateIdentity(env);
  await registerWebhooks(env.cluster, id.cert, id.port);
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

/**
 * Starts `schema-gate serve` as a separate process, as the gate's ServiceAccount, and waits
 * until ready. `replica` makes it a second replica (its own port, token, environment).
 */
export async function startGate(env: TestEnv, extraArgs: string[] = [], replica: GateReplicaOptions = {}): Promise<GateProcess> {
  const id = { ...(await gateIdentity(env)) };
  if (replica.port !== undefined) id.port = replica.port;
  const child = spawnGate(id, extraArgs, replica);
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

  const get = (path: string) => gateGet(id, path);

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
export function waitForWebhooks(env: TestEnv, namespace: string): Promise<void> {
  return waitForGateWebhooks(env.apps, namespace);
}
