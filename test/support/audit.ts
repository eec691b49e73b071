import { existsSync, readFileSync, statSync } from "node:fs";
import { auditLogPath } from "../../src/local/cluster.js";
import { GATE_USER } from "../../src/local/gate.js";
import type { TestEnv } from "./env.js";

/** One write of the gate's ServiceAccount, as the apiserver's audit log has it. */
export interface AuditedWrite {
  /** The token's id (`JTI=...`): which replica sent it. */
  credential: string;
  verb: string;
  /** e.g. `leases schema-gate/schema-gate-controller`, `deployments/scale ns/orders`. */
  what: string;
  code: number;
  /** When the apiserver received it (ms since the epoch, the apiserver's clock). */
  receivedMs: number;
}

interface AuditEvent {
  verb: string;
  stage: string;
  user?: { username?: string; extra?: Record<string, string[]> };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
}

/**
 * The local cluster's audit log (src/local/cluster.ts records the gate's writes), read from a
 * mark on: `mark()` before a run, `writesSince(mark)` after it.
 */
export class AuditLog {
  constructor(private readonly path: string) {}

  static of(env: TestEnv): AuditLog {
    if (env.cluster.kind !== "kwok") throw new Error("the audit log is the local kwok cluster's: unset KUBECONFIG (or set SCHEMA_GATE_LOCAL_CLUSTER=1)");
    if (!existsSync(auditLogPath)) throw new Error(`${auditLogPath} is missing: the cluster was made without its audit policy; delete it (npm run cluster:down)`);
    return new AuditLog(auditLogPath);
  }

  mark(): number {
    return statSync(this.path).size;
  }

  writesSince(mark: number): AuditedWrite[] {
    const text = readFileSync(this.path).subarray(mark).toString("utf8");
    const writes: AuditedWrite[] = [];
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const event = JSON.parse(line) as AuditEvent;
      if (event.stage !== "ResponseComplete" || event.user?.username !== GATE_USER) continue;
      const ref = event.objectRef ?? {};
      writes.push({
        credential: event.user.extra?.["authentication.kubernetes.io/credential-id"]?.[0] ?? "",
        verb: event.verb,
        what: `${ref.resource ?? ""}${ref.subresource ? `/${ref.subresource}` : ""} ${ref.namespace ?? ""}/${ref.name ?? ""}`,
        code: event.responseStatus?.code ?? 0,
        receivedMs: Date.parse(event.requestReceivedTimestamp),
      });
    }
    return writes;
  }
}

/**
 * The scale guard keeps the scale webhook's condition current on every replica, leader or
 * not (src/k8s/scale-guard.ts; a JSON patch with a `test` of the value it read): its writes
 * are no leader's act and are counted apart.
 */
export const isScaleGuardWrite = (w: AuditedWrite) => w.what.startsWith("validatingwebhookconfigurations ");
const isLeaseWrite = (w: AuditedWrite) => w.what.startsWith("leases ");

/**
 * A Lease write the apiserver refused for its stale resourceVersion: how a replica that read
 * the Lease before it was frozen finds out, on waking, that another holds it now.
 */
const isRefusedLeaseWrite = (w: AuditedWrite) => isLeaseWrite(w) && w.code === 409;

/**
 * Any other write the apiserver refused as stale: one the replica sent between its last
 * check of the Lease and being frozen, which went out when it woke. No client can make that
 * check and its request one act; the fence is the version the write was decided on, and it
 * held: the write changed nothing. The record carries its resourceVersion (409 when stale);
 * a member's patch tests the member's generation (422 when the successor changed it since).
 */
const isRefusedStaleWrite = (w: AuditedWrite) => !isLeaseWrite(w) && (w.code === 409 || (w.code === 422 && w.what.startsWith("deployments ")));

export interface Handover {
  /** When the successor took the Lease (its first write of it). */
  takenMs: number;
  /** The deposed replica's last write before that (scale guard aside). */
  deposedLastMs: number | undefined;
  /** Its writes from the successor's taking of the Lease on (scale guard and writes refused as stale aside): must be none. */
  late: AuditedWrite[];
  /** Its Lease writes refused (409) after that, for the record. */
  refusedLease: AuditedWrite[];
  /** Its other writes refused as stale (409, or 422 for a member's failed guard) after that, for the record. */
  refusedStale: AuditedWrite[];
  /** Its scale guard's writes after that, for the record. */
  lateScaleGuard: AuditedWrite[];
}

/** What the audit log says about a change of leader from `deposed` to `successor`. */
export function handover(writes: readonly AuditedWrite[], deposed: string, successor: string): Handover {
  const taken = writes.find((w) => w.credential === successor && isLeaseWrite(w) && w.code < 300);
  if (!taken) throw new Error(`the audit log has no Lease write by the successor (${successor}): ${writes.length} write(s) in all`);
  const byDeposed = writes.filter((w) => w.credential === deposed);
  const before = byDeposed.filter((w) => w.receivedMs < taken.receivedMs && !isScaleGuardWrite(w));
  const after = byDeposed.filter((w) => w.receivedMs >= taken.receivedMs);
  return {
    takenMs: taken.receivedMs,
    deposedLastMs: before.length ? Math.max(...before.map((w) => w.receivedMs)) : undefined,
    late: after.filter((w) => !isScaleGuardWrite(w) && !isRefusedLeaseWrite(w) && !isRefusedStaleWrite(w)),
    refusedLease: after.filter(isRefusedLeaseWrite),
    refusedStale: after.filter(isRefusedStaleWrite),
    lateScaleGuard: after.filter(isScaleGuardWrite),
  };
}
