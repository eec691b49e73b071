import { maskCredentials } from "../core/mask.js";
import type { Settling } from "../core/window-policy.js";
import type { Step, WindowState } from "../core/window.js";
import { LostLeadership } from "../k8s/leader.js";
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
   * refused, this copy dropped and the record read again. `version` is that of the last
   * write the API confirmed; `state` may be newer, with its write queued (`writing`).
   */
  record?: StoredWindow;
  /** The record's queued writes (see saveBehind), in order; never rejects. */
  writing?: Promise<void>;
  /** Why a queued write failed: the next save or barrier throws it, and the copy is read again. */
  writeFailure?: unknown;
}

/** The group's records as its passes use them: the copy last read or written is kept in `memory`. */
export interface RememberedRecords extends WindowRecords {
  /**
   * Keeps `state` as the record at once and writes it after the writes queued before it,
   * while the pass goes on: how each step's start is written (runStep). Every `save`
   * writes only after the queue, and so does every write through the fence outside the
   * steps that may run ahead of their record (RUNS_AHEAD_OF_RECORD).
   */
  saveBehind(namespace: string, state: WindowState): void;
  /** Keeps `state` as the record without writing it: the next write carries it (see endsAtOnce). */
  keep(namespace: string, state: WindowState): void;
  /** Waits for the queued writes; throws the failure of one (the copy is dropped, the next pass reads the API). */
  written(): Promise<void>;
}

export function rememberedRecords(records: WindowRecords, memory: GroupMemory, leading: () => boolean): RememberedRecords {
  /** Waits for the queued writes and takes the failure of one, if any: the copy is dropped with it. */
  const settled = async (): Promise<unknown> => {
    await memory.writing;
    const failure = memory.writeFailure;
    memory.writeFailure = undefined;
    if (failure !== undefined) memory.record = undefined;
    return failure;
  };
  /** Keeps `state` as the copy; false when the copy was dropped meanwhile (leadership changed hands): the next pass reads the API. */
  const kept = (namespace: string, state: WindowState): boolean => {
    if (memory.record?.version === undefined) {
      memory.writeFailure ??= new LostLeadership(`window record of ${namespace}/${state.group}: this replica's copy was dropped`);
      return false;
    }
    memory.record = { ...memory.record, state };
    return true;
  };
  const written = async () => {
    const failure = await settled();
    if (failure !== undefined) throw failure;
  };
  return {
    async read(namespace, group) {
      if (memory.record && memory.writeFailure === undefined) return memory.record;
      // No copy, or one whose write failed: what the API has is the truth, once this
      // replica's writes are done; a write refused because another replica wrote says so.
      const failure = await settled();
      if (failure instanceof LostLeadership) throw failure;
      const stored = await records.read(namespace, group);
      memory.record = stored;
      return stored;
    },
    async save(namespace, state, version) {
      await written();
      const base = memory.record ? memory.record.version : version;
      memory.record = undefined;
      const saved = await records.save(namespace, state, base);
      memory.record = { state, version: saved };
      return saved;
    },
    saveBehind(namespace, state) {
      if (!kept(namespace, state)) return;
      const write = async () => {
        // After a failure, or with the copy dropped, the chain of versions is broken: write nothing more.
        const base = memory.record?.version;
        if (memory.writeFailure !== undefined || base === undefined) return;
        try {
          if (!leading()) throw new LostLeadership("this replica no longer leads the window controller");
          const saved = await records.save(namespace, state, base);
          if (memory.record) memory.record = { ...memory.record, version: saved };
        } catch (error) {
          memory.writeFailure = error;
        }
      };
      memory.writing = (memory.writing ?? Promise.resolve()).then(write);
    },
    keep(namespace, state) {
      kept(namespace, state);
    },
    written,
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
