import { existsSync, readFileSync } from "node:fs";
import { createServer, connect, type Socket } from "node:net";
import { dirname } from "node:path";
import * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { gateKubeconfig, GATE_IMAGE_ENV } from "../../src/local/gate.js";
import { freePort } from "../../src/util/net.js";
import { pollUntil } from "../../src/util/wait.js";
import { onTeardown, type TestEnv } from "./env.js";
import { gateIdentity, GATE_NAMESPACE, startGate, type GateProcess } from "./gate.js";

/** The Lease the gate's replicas elect their leader with (src/serve.ts). */
export const LEASE = "schema-gate-controller";
const FAKETIME_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/** One `schema-gate serve` of several, with a name, a token and (maybe) a clock of its own. */
export interface Replica {
  /** Its HOSTNAME: the Lease names it `<name>_<pid>`. */
  name: string;
  /** The id of its token, as the audit log shows it (`JTI=...`). */
  credential: string;
  clockOffsetSeconds: number;
  process: GateProcess;
  frozen: boolean;
  /** Its identity in the Lease while it runs. */
  identity(): string;
}

export interface ReplicaOptions {
  /** Offsets its wall clock (libfaketime); its monotonic clock stays true, as NTP leaves it. */
  clockOffsetSeconds?: number;
}

function faketimeEnv(offsetSeconds: number): Record<string, string> {
  if (offsetSeconds === 0) return {};
  if (!existsSync(FAKETIME_LIBRARY)) throw new Error(`${FAKETIME_LIBRARY} is missing: install the faketime package (tools/system-packages.sh)`);
  const offset = `${offsetSeconds > 0 ? "+" : ""}${offsetSeconds}s`;
  return { LD_PRELOAD: FAKETIME_LIBRARY, FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: "1" };
}

/** The `jti` claim of the bearer token in a kubeconfig file. */
function tokenId(kubeconfig: string): string {
  const config = YAML.parse(readFileSync(kubeconfig, "utf8")) as { users: Array<{ user: { token: string } }> };
  const payload = config.users[0]!.user.token.split(".")[1]!;
  return `JTI=${(JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { jti: string }).jti}`;
}

/**
 * Starts a replica beside any others: its own port and token, HOSTNAME `name`. The webhooks
 * reach it through the front (see webhookFront).
 */
export async function startReplica(env: TestEnv, name: string, args: string[], options: ReplicaOptions = {}): Promise<Replica> {
  // Signals go to its pid, and the Lease names it by that pid.
  if (process.env[GATE_IMAGE_ENV]) throw new Error(`replicas run as local processes (they are signalled by pid); unset ${GATE_IMAGE_ENV}`);
  const id = await gateIdentity(env);
  const kubeconfig = await gateKubeconfig(env.kc, dirname(id.kubeconfig), `kubeconfig-${name}.yaml`);
  const clockOffsetSeconds = options.clockOffsetSeconds ?? 0;
  const port = await freePort();
  const gate = await startGate(env, args, { kubeconfig, port, env: { HOSTNAME: name, ...faketimeEnv(clockOffsetSeconds) } });
  return {
    name,
    credential: tokenId(kubeconfig),
    clockOffsetSeconds,
    process: gate,
    frozen: false,
    identity: () => `${name}_${gate.child.pid}`,
  };
}

/**
 * What a Service is to the gate's pods: the webhooks' address (the identity's port), passed
 * on to a replica that runs and is not frozen, so an admission does not depend on which one
 * was killed.
 */
export async function webhookFront(env: TestEnv, replicas: () => readonly Replica[]): Promise<{ close(): Promise<void> }> {
  const { port } = await gateIdentity(env);
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    const target = replicas().find((r) => !r.frozen && r.process.child.exitCode === null && r.process.child.signalCode === null);
    if (!target) return socket.destroy();
    const upstream = connect(target.process.port, "127.0.0.1");
    socket.on("error", () => upstream.destroy());
    upstream.on("error", () => socket.destroy());
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(new Error(`the webhook front could not listen on 127.0.0.1:${port} (is another gate serving there?): ${error.message}`)));
    server.listen(port, "127.0.0.1", () => resolve());
  });
  // The apiserver keeps its connections open: end them, or close() waits for them.
  const close = () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    for (const socket of open) socket.destroy();
  });
  onTeardown(close);
  return { close };
}

export interface LeaseView {
  holder?: string;
  transitions: number;
}

export async function readLease(env: TestEnv): Promise<LeaseView> {
  const lease = await env.kc.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ name: LEASE, namespace: GATE_NAMESPACE });
  return { ...(lease.spec?.holderIdentity ? { holder: lease.spec.holderIdentity } : {}), transitions: lease.spec?.leaseTransitions ?? 0 };
}

/** The replica the Lease names, once one of `replicas` holds it. */
export function leaderOf(env: TestEnv, replicas: readonly Replica[], timeoutMs = 30_000): Promise<Replica> {
  return pollUntil(async () => {
    const { holder } = await readLease(env);
    return replicas.find((r) => r.identity() === holder);
  }, { timeoutMs, intervalMs: 50, what: `one of ${replicas.map((r) => r.name).join(", ")} to hold the Lease` });
}
