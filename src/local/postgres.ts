import { existsSync, readdirSync } from "node:fs";
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { run } from "../util/exec.js";
import { freePort } from "../util/net.js";

export interface PostgresServer {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** postgres://user:password@host:port/database */
  url: string;
  dataDir: string;
  stop(): Promise<void>;
  /** Stops the server at once (as a crash would), then starts it again on the same port. */
  restart(mode?: "fast" | "immediate"): Promise<void>;
  /**
   * Also listens on `address` (e.g. the real node's bridge, 10.88.0.1) and accepts password
   * logins from `network` (e.g. its pod subnet); restarts the server, so call it before use.
   */
  listenAlso(address: string, network: string): Promise<void>;
}

export interface PostgresOptions {
  /** Keep the cluster here (reused when it exists); default: a new temporary directory. */
  dataDir?: string;
  port?: number;
  /** Serve TLS too (`ssl = on`) with this certificate and key (PEM). */
  tls?: { cert: string; key: string };
}

/** Debian installs server binaries outside PATH, one directory per major version. */
function serverBinDir(): string {
  if (process.env.SCHEMA_GATE_PG_BIN) return process.env.SCHEMA_GATE_PG_BIN;
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, "bin", "initdb")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(root, versions[0], "bin");
  }
  throw new Error(
    "PostgreSQL server binaries not found: install Debian's `postgresql` package " +
      "(apt-get install postgresql) or set SCHEMA_GATE_PG_BIN to the directory holding initdb and pg_ctl",
  );
}

// PostgreSQL (and PgBouncer) refuse to run as root, so as root we run their programs as `nobody`.
const asRoot = userInfo().uid === 0;
const SERVICE_USER = "nobody";

/** The command line that runs `file` as an unprivileged user when we are root. */
export function asServiceUser(file: string, args: string[]): [string, string[]] {
  return asRoot ? ["runuser", ["-u", SERVICE_USER, "--", file, ...args]] : [file, args];
}

const pgCommand = (binDir: string, program: string, args: string[]) => asServiceUser(join(binDir, program), args);

/** Gives `path` to the user the servers run as (when we are root), so they may write there. */
export async function handOver(path: string): Promise<void> {
  if (!asRoot) return;
  const { stdout } = await run("id", ["-u", SERVICE_USER]);
  const { stdout: gid } = await run("id", ["-g", SERVICE_USER]);
  await chown(path, Number(stdout.trim()), Number(gid.trim()));
}

/** Writes the server's certificate and key where PostgreSQL accepts them (its user's, key 0600); returns the settings. */
async function serverTls(dataDir: string, tls: { cert: string; key: string }): Promise<string> {
  const cert = join(dataDir, "server.crt");
  const key = join(dataDir, "server.key");
  await writeFile(cert, tls.cert, { mode: 0o644 });
  await writeFile(key, tls.key, { mode: 0o600 });
  await handOver(cert);
  await handOver(key);
  return ` -c ssl=on -c ssl_cert_file=${cert} -c ssl_key_file=${key}`;
}

/**
 * Starts a throwaway PostgreSQL server on 127.0.0.1 with a password-protected superuser
 * `postgres` and a database `app`. Reuses the cluster in `dataDir` when one is there.
 */
export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const binDir = serverBinDir();
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "schema-gate-pg-")));
  const ephemeral = options.dataDir === undefined;
  await mkdir(dataDir, { recursive: true });
  await handOver(dataDir);
  const pgdata = join(dataDir, "data");
  const passwordFile = join(dataDir, "password");

  let password: string;
  if (!existsSync(join(pgdata, "PG_VERSION"))) {
    password = randomBytes(12).toString("hex");
    await writeFile(passwordFile, password, { mode: 0o644 });
    await handOver(passwordFile);
    const [file, args] = pgCommand(binDir, "initdb", [
      "-D", pgdata, "-U", "postgres", "-E", "UTF8", "--no-sync",
      "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${passwordFile}`,
    ]);
    await run(file, args);
  } else {
    password = (await readFile(passwordFile, "utf8")).trim();
  }

  const tlsSettings = options.tls ? await serverTls(dataDir, options.tls) : "";
  const port = options.port ?? (await freePort());
  const host = "127.0.0.1";
  const listen = [host];
  const start = async (): Promise<void> => {
    const [file, args] = pgCommand(binDir, "pg_ctl", [
      "-D", pgdata, "-l", join(dataDir, "server.log"), "-w", "-t", "60",
      "-o", `-p ${port} -k ${dataDir} -c listen_addresses=${listen.join(",")} -c fsync=off -c max_connections=200${tlsSettings}`,
      "start",
    ]);
    await run(file, args);
  };
  const stopServer = async (mode: "fast" | "immediate"): Promise<void> => {
    const [file, args] = pgCommand(binDir, "pg_ctl", ["-D", pgdata, "-m", mode, "-w", "stop"]);
    await run(file, args);
  };
  await start();
  await run(...pgCommand(binDir, "psql", [
    "-h", dataDir, "-p", String(port), "-U", "postgres", "-d", "postgres", "-tAc",
    "SELECT 1 FROM pg_database WHERE datname = 'app'",
  ])).then(async ({ stdout }) => {
    if (stdout.trim() !== "1") {
      await run(...pgCommand(binDir, "createdb", ["-h", dataDir, "-p", String(port), "-U", "postgres", "app"]));
    }
  });

  const database = "app";
  return {
    host,
    port,
    user: "postgres",
    password,
    database,
    url: `postgres://postgres:${password}@${host}:${port}/${database}`,
    dataDir,
    async stop() {
      await stopServer("fast").catch(() => undefined);
      if (ephemeral) await rm(dataDir, { recursive: true, force: true });
    },
    async restart(mode = "immediate") {
      await stopServer(mode);
      await start();
    },
    async listenAlso(address, network) {
      if (listen.includes(address)) return;
      listen.push(address);
      const hba = join(pgdata, "pg_hba.conf");
      await writeFile(hba, `${await readFile(hba, "utf8")}host all all ${network} scram-sha-256\n`);
      await stopServer("fast");
      await start();
    },
  };
}
