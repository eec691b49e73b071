import { maskCredentials } from "../core/mask.js";
import type { Settling } from "../core/window-policy.js";
import type { Step } from "../core/window.js";
import type { Group, StoredWindow, WindowDeps, WindowRecords } from "./deps.js";

/** What a pass asks for next, in the manner of controller-runtime's Result: nothing until an event, or another pass after N ms. */
export interface Result {
  requeueAfterMs?: number;
}
export const DONE: Result = {};
export const AGAIN: Result = { requeueAfterMs: 0 };
/** A step that failed for a passing reason (the database restarting, an API hiccup) runs again after this. */
export const RETRY_MS = 2000;

/** What one group's passes remember between them; lost on restart, which costs only a repeated log line or Event. */
export interface GroupMemory {
  /** When the set of held members last changed, for the settle delay. */
  settling?: Settling;
  /** The last warning reported, so a retry does not repeat an Event every pass. */
  reported?: string;
  /** The version the SQL runner last reported files pending for. */
  pendingSeen?: string;
  /** The step whose start was last announced (log line, maintenance page). */
  announced?: string;
  /** The step the open window is in, as of the last pass (pod events wake a group in drain). */
  step?: Step;
  /**
   * The record as this replica last read or wrote it, while it leads: a pass reads it from
   * here instead of the API. Only the leader writes it, and every write carries the
   * resourceVersion, so a stale copy cannot be written over a successor's: the write is
   * refused, this copy dropped and the record read again.
   */
  record?: StoredWindow;
}

/** The group's records as its passes use them: the last one read or written is kept in `memory`. */
export function rememberedRecords(records: WindowRecords, memory: GroupMemory): WindowRecords {
  return {
    async read(namespace, group) {
      if (memory.record) return memory.record;
      const stored = await records.read(namespace, group);
      memory.record = stored;
      return stored;
    },
    async save(namespace, state, version) {
      memory.record = undefined;
      const saved = await records.save(namespace, state, version);
      memory.record = { state, version: saved };
      return saved;
    },
  };
}

/** A warning logged and told on the members once per cause, however often the pass repeats. */
export async function warnOnce(deps: WindowDeps, group: Group, memory: GroupMemory, reason: string, message: string, targets = group.deployments): Promise<void> {
  const masked = maskCredentials(message);
  if (memory.reported === masked) return;
  memory.reported = masked;
  deps.log.warn({ namespace: group.namespace, group: group.name, reason }, masked);
  await deps.narrate(targets, "Warning", reason, masked);
}
