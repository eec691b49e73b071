import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "../util/net.js";
import { pollUntil } from "../util/wait.js";
import { asServiceUser, handOver, type PostgresServer } from "./postgres.js";

export type PoolMode = "session" | "transaction";

export interface PgbouncerServer {
  host: string;
  port: number;
  mode: PoolMode;
  /** The admin console's user (in `admin_users`) and its URL: postgres://…@host:port/pgbouncer */
  adminUser: string;
  adminUrl: string;
  /** A URL through the pooler to `database` as `user` (default: the server's superuser). */
  url(database: string, user?: { name: string; password: string }): string;
  /** The last lines of its log, for a failing test's message. */
  logTail(lines?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface PgbouncerOptions {
  mode: PoolMode;
  /** Login roles besides the server's superuser that clients use through the pooler. */
  users?: Array<{ name: string; password: string }>;
  /** Server connections per user and database (`default_pool_size`). */
  poolSize?: number;
}

function pgbouncerBinary(): string {
  for (const file of ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]) if (existsSync(file)) return file;
  throw new Error("pgbouncer not found: install Debian's `pgbouncer` package (apt-get install pgbouncer; tools/system-packages.sh does)");
}

const quoted = (text: string) => `"${text.replace(/"/g, '""')}"`;

/**
 * Starts a throwaway PgBouncer on 127.0.0.1 in front of `server`, in `mode`, with its own
 * ini and userlist in a temporary directory: every database name goes to the same name on
 * the server, clients and the pooler log in with scram-sha-256 as the server's users, and
 * the admin console (database `pgbouncer`) takes a user of its own. As root it runs as the
 * user PostgreSQL runs as (PgBouncer refuses root).
 */
export async function startPgbouncer(server: PostgresServer, options: PgbouncerOptions): Promise<PgbouncerServer> {
  const binary = pgbouncerBinary();
  const dir = await mkdtemp(join(tmpdir(), "schema-gate-pgbouncer-"));
  await handOver(dir);
  const port = await freePort();
  const host = "127.0.0.1";
  const admin = { name: "pgbouncer_admin", password: randomBytes(12).toString("hex") };
  const users = [{ name: server.user, password: server.password }, admin, ...(options.users ?? [])];
  await writeFile(join(dir, "userlist.txt"), users.map((u) => `${quoted(u.name)} ${quoted(u.password)}\n`).join(""));
  await writeFile(join(dir, "pgbouncer.ini"), [
    "[databases]",
    `* = host=${server.host} port=${server.port}`,
    "[pgbouncer]",
    `listen_addr = ${host}`,
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = scram-sha-256",
    `auth_file = ${join(dir, "userlist.txt")}`,
    `admin_users = ${admin.name}`,
    `pool_mode = ${options.mode}`,
    `default_pool_size = ${options.poolSize ?? 5}`,
    "max_client_conn = 200",
    // JDBC and psql send it at startup; PgBouncer refuses unknown startup parameters.
    "ignore_startup_parameters = extra_float_digits",
    `logfile = ${join(dir, "pgbouncer.log")}`,
    "",
  ].join("\n"));
  const child: ChildProcess = spawn(...asServiceUser(binary, [join(dir, "pgbouncer.ini")]), { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const adminUrl = `postgres://${admin.name}:${admin.password}@${host}:${port}/pgbouncer`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) child.kill("SIGTERM");
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await pollUntil(async () => {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}: ${stderr.trim()}`);
      const console = new pg.Client({ connectionString: adminUrl });
      console.on("error", () => undefined);
      await console.connect();
      await console.end();
      return true;
    }, { timeoutMs: 10_000, intervalMs: 50, what: `pgbouncer on ${host}:${port} to accept connections` });
  } catch (error) {
    const log = await readFile(join(dir, "pgbouncer.log"), "utf8").catch(() => "");
    await stop();
    throw new Error(`${(error as Error).message}\n${log.split("\n").slice(-15).join("\n")}`);
  }
  return {
    host,
    port,
    mode: options.mode,
    adminUser: admin.name,
    adminUrl,
    url: (database, user = { name: server.user, password: server.password }) =>
      `postgres://${encodeURIComponent(user.name)}:${encodeURIComponent(user.password)}@${host}:${port}/${database}`,
    logTail: async (lines = 40) => (await readFile(join(dir, "pgbouncer.log"), "utf8").catch(() => "")).split("\n").slice(-lines).join("\n"),
    stop,
  };
}
