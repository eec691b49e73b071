import { watch, type FSWatcher } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseFlag, type Flag } from "../core/maintenance-flag.js";
import type { Logger } from "../logger.js";

export interface MountedFlag {
  current(): Flag;
  bypassToken(): string | undefined;
  /** Reads the files again now (the watcher and the timer call it too). */
  reload(): Promise<void>;
  stop(): void;
}

/**
 * The flag as a pod sees it: a ConfigMap mounted as a directory (one file per key) and the
 * bypass token as a file from a Secret. The kubelet swaps a mount's `..data` symlink
 * atomically, which a directory watch sees; a poll every `pollMs` covers file systems and
 * swaps the watch misses. No directory (the ConfigMap does not exist yet) means off.
 */
export async function watchMountedFlag(
  dir: string,
  bypassFile: string | undefined,
  log: Logger,
  pollMs = 1000,
): Promise<MountedFlag> {
  let flag = parseFlag(undefined);
  let token: string | undefined;
  let reported = "";

  const readOnce = async () => {
    const data: Record<string, string> = {};
    try {
      for (const entry of await readdir(dir)) {
        if (entry.startsWith("..")) continue;
        data[entry] = await readFile(join(dir, entry), "utf8").catch(() => "");
      }
    } catch {
      // No mount yet: maintenance off.
    }
    const next = parseFlag(data);
    if (next.enabled !== flag.enabled) log.info({ enabled: next.enabled, owner: next.owner }, "maintenance flag changed");
    const problems = next.problems.join("; ");
    if (problems && problems !== reported) log.warn({ problems: next.problems }, "maintenance flag has problems");
    reported = problems;
    flag = next;
    token = bypassFile ? (await readFile(bypassFile, "utf8").catch(() => "")).trim() || undefined : undefined;
  };

  // One read at a time, so that a slow read begun before a swap cannot finish after a later
  // one and put the old flag back. A request while a read is queued joins that read; the
  // promise resolves after a read that began after the request.
  let tail: Promise<void> = Promise.resolve();
  let queued: Promise<void> | undefined;
  const reload = (): Promise<void> => {
    if (queued) return queued;
    const next = tail.then(() => {
      queued = undefined;
      return readOnce();
    });
    queued = next;
    tail = next.catch(() => undefined);
    return next;
  };

  await reload();
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, () => void reload());
  } catch {
    // The directory may appear later; the poll picks it up.
  }
  const timer = setInterval(() => void reload(), pollMs);
  timer.unref();
  return {
    current: () => flag,
    bypassToken: () => token,
    reload,
    stop: () => {
      clearInterval(timer);
      watcher?.close();
    },
  };
}
