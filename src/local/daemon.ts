import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sleep } from "../util/wait.js";

// Background processes of the real node (containerd, kubelet, kube-proxy). They outlive
// the process that starts them (`npm run cluster:up` returns while they keep running), so
// each is recorded by a pid file in the node's directory and logs to a file beside it.

export interface DaemonSpec {
  /** Short name: the pid file is `<name>.pid`, the log `<name>.log` in `dir`. */
  name: string;
  dir: string;
  file: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export function logPath(dir: string, name: string): string {
  return join(dir, `${name}.log`);
}

/** Starts `spec.file` detached from us, stdout and stderr appended to its log. */
export async function startDaemon(spec: DaemonSpec): Promise<number> {
  const log = openSync(logPath(spec.dir, spec.name), "a");
  try {
    const child = spawn(spec.file, spec.args, {
      detached: true,
      stdio: ["ignore", log, log],
      env: spec.env ?? process.env,
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("spawn", () => resolve(child.pid ?? 0));
    });
    child.unref();
    await writeFile(join(spec.dir, `${spec.name}.pid`), `${pid}\n`);
    return pid;
  } finally {
    closeSync(log);
  }
}

/** Whether `pid` runs (a zombie, exited but not yet reaped, does not count). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers signal 0; its state letter in /proc tells.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** The pid of a daemon started from `dir` that is still running, else undefined. */
export async function runningDaemon(dir: string, name: string): Promise<number | undefined> {
  const file = join(dir, `${name}.pid`);
  if (!existsSync(file)) return undefined;
  const pid = Number((await readFile(file, "utf8")).trim());
  return pid > 0 && alive(pid) ? pid : undefined;
}

/** The last lines of a daemon's log, for an error message. */
export async function logTail(dir: string, name: string, lines = 25): Promise<string> {
  const text = await readFile(logPath(dir, name), "utf8").catch(() => "");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once every pid is gone. */
export async function terminate(pids: number[], graceMs = 10_000): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  pids.forEach((pid) => signal(pid, "SIGTERM"));
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await sleep(50);
  pids.filter(alive).forEach((pid) => signal(pid, "SIGKILL"));
  while (pids.some(alive)) await sleep(20);
}

/**
 * Pids of the node's programs (`programs`, by executable name) whose command line names
 * `dir`: the daemons started from it and the containerd shims of its containerd (their
 * `-address` is a socket in it). A shell or `tail -f` of a log in `dir` is not one of them.
 */
export function processesUsing(dir: string, programs: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      const program = (cmdline[0] ?? "").split("/").pop() ?? "";
      if (programs.includes(program) && cmdline.some((arg) => arg === dir || arg.includes(`${dir}/`))) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

/**
 * Calls `probe` until it returns true; fails at once, with the daemon's log tail, if the
 * daemon exits meanwhile, and after `timeoutMs` with the last probe error and the log tail.
 */
export async function waitForDaemon(
  dir: string, name: string, probe: () => Promise<boolean>, options: { timeoutMs: number; what: string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let last = "";
  for (;;) {
    if (!(await runningDaemon(dir, name))) {
      throw new Error(`${name} exited before ${options.what}; last lines of ${logPath(dir, name)}:\n${await logTail(dir, name)}`);
    }
    try {
      if (await probe()) return;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what} (${last}); last lines of ${logPath(dir, name)}:\n${await logTail(dir, name)}`);
    }
    await sleep(100);
  }
}
