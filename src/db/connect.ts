import pg from "pg";
import type { DatabaseTarget } from "../core/database-secret.js";

export interface SessionOptions {
  applicationName?: string;
  /** Bounds how long a statement waits for a lock (e.g. behind a session that escaped termination). */
  lockTimeoutMs?: number;
  statementTimeoutMs?: number;
  connectTimeoutMs?: number;
}

function ssl(mode: string | undefined): pg.ClientConfig["ssl"] {
  if (mode === undefined || mode === "disable" || mode === "allow" || mode === "prefer") return undefined;
  // require: encrypted but unverified (libpq's meaning); verify-ca / verify-full: verified.
  return mode === "require" ? { rejectUnauthorized: false } : true;
}

/** Opens one session to the group's database, with the gate's timeouts set on it. */
export async function openSession(target: DatabaseTarget, options: SessionOptions = {}): Promise<pg.Client> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    ssl: ssl(target.ssl),
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
