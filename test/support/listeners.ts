import { readFileSync } from "node:fs";
import { run } from "../../src/util/exec.js";

export interface Listener {
  program: string;
  pid: number;
  /** The local address as `ss` prints it, e.g. 127.0.0.1, 10.88.0.1, 0.0.0.0, [::] or *. */
  address: string;
  port: number;
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/**
 * Every listening TCP socket on the machine whose process passes `owns` (given its pid and
 * command line), read from `ss -ltnpH` (iproute2).
 */
export async function listeners(owns: (pid: number, args: string[]) => boolean): Promise<Listener[]> {
  const { stdout } = await run("ss", ["-ltnpH"]);
  const found: Listener[] = [];
  for (const line of stdout.split("\n")) {
    const columns = line.trim().split(/\s+/);
    const local = columns[3];
    if (!local) continue;
    const split = local.lastIndexOf(":");
    const address = local.slice(0, split).replace(/%\S+$/, "");
    const port = Number(local.slice(split + 1));
    for (const m of line.matchAll(/\("([^"]+)",pid=(\d+),fd=\d+\)/g)) {
      const pid = Number(m[2]);
      if (owns(pid, cmdline(pid))) found.push({ program: m[1] as string, pid, address, port });
    }
  }
  return found;
}

/** Whether a process's command line names a path under `dir`. */
export function namesDir(args: string[], dir: string): boolean {
  return args.some((arg) => arg === dir || arg.includes(`${dir}/`));
}
