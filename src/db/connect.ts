import { readFileSync } from "node:fs";
import pg from "pg";
import type { DatabaseTarget } from "../core/database-secret.js";
import { StepFailure } from "../core/window.js";

export interface SessionOptions {
  applicationName?: string;
  /** Bounds how long a statement waits for a lock (e.g. behind a session that escaped termination). */
  lockTimeoutMs?: number;
  statementTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/**
 * node-postgres's TLS options for libpq's sslmode: disable/allow/prefer connect without
 * TLS (node-postgres cannot fall back), require encrypts without verifying unless a root
 * certificate is given (then it verifies the chain, as libpq does), verify-ca checks the
 * chain only, verify-full the chain and the host name. Without a root certificate the
 * system's CAs are used.
 */
export function tlsOptions(target: Pick<DatabaseTarget, "ssl" | "rootCert">): pg.ClientConfig["ssl"] {
  const mode = target.ssl;
  if (mode === undefined || mode === "disable" || mode === "allow" || mode === "prefer") return undefined;
  const ca = target.rootCert === undefined ? undefined : "pem" in target.rootCert ? target.rootCert.pem : readRootCert(target.rootCert.file);
  if (mode === "require" && ca === undefined) return { rejectUnauthorized: false };
  const chainOnly = mode === "require" || mode === "verify-ca";
  return { rejectUnauthorized: true, ...(ca !== undefined ? { ca } : {}), ...(chainOnly ? { checkServerIdentity: () => undefined } : {}) };
}

function readRootCert(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new StepFailure(
      `sslrootcert ${file} cannot be read in the gate's container (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): ` +
        `mount it there, or put the CA's PEM in the database Secret's key "sslrootcert" instead`,
    );
  }
}

/** Opens one session to the group's database, with the gate's timeouts set on it. */
export async function openSession(target: DatabaseTarget, options: SessionOptions = {}): Promise<pg.Client> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl: tlsOptions(target),
    application_name: options.applicationName ?? "schema-gate",
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    ...(options.lockTimeoutMs !== undefined ? { lock_timeout: options.lockTimeoutMs } : {}),
    ...(options.statementTimeoutMs !== undefined ? { statement_timeout: options.statementTimeoutMs } : {}),
  });
  // A dropped connection is reported through the pending query; without a listener the
  // 'error' event would crash the process.
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

/** Runs `use` on a fresh session and always closes it. */
export async function withSession<T>(target: DatabaseTarget, options: SessionOptions, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await openSession(target, options);
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
