import { percentDecoded } from "./percent.js";

/** How the gate reaches a group's database, read from the Secret a Deployment names. */
export interface DatabaseTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** libpq's `sslmode` (URL parameter, or key PGSSLMODE / sslmode). */
  ssl?: SslMode;
  /**
   * The CA the server's certificate must chain to: PEM from the Secret's key `sslrootcert`,
   * or a file in the gate's container (libpq's `sslrootcert` URL parameter, PGSSLROOTCERT).
   */
  rootCert?: { pem: string } | { file: string };
  /** The PgBouncer in front of the database, when the Secret names its admin console. */
  pooler?: PoolerTarget;
}

/** PgBouncer's admin consoles (one per pooler instance) and the pooler database the window pauses. */
export interface PoolerTarget {
  consoles: DatabaseTarget[];
  database: string;
}

export type SecretResult = { ok: true; target: DatabaseTarget } | { ok: false; problem: string };

/** Secret keys naming the pooler: its admin console URL(s), and its database entry when not the url's name. */
export const POOLER_ADMIN_KEY = "pgbouncer-admin-url";
export const POOLER_DATABASE_KEY = "pgbouncer-database";
/** The database name PgBouncer's admin console answers on. */
const CONSOLE_DATABASE = "pgbouncer";

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));

type Parsed = { ok: true; target: DatabaseTarget } | { ok: false; problem: string };

export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof SSL_MODES)[number];
const ROOT_CERT_KEY = "sslrootcert";

/**
 * sslmode and the root certificate, from the URL's parameters or the PG* keys, and the
 * Secret's own `sslrootcert` key (the CA's PEM itself: a Secret is where a CA travels in a
 * cluster). An unknown mode is refused rather than ignored.
 */
function readTls(name: string, mode: string | undefined, rootCertFile: string | undefined, get: (key: string) => string | undefined):
  { ok: true; tls: Pick<DatabaseTarget, "ssl" | "rootCert"> } | { ok: false; problem: string } {
  if (mode !== undefined && !(SSL_MODES as readonly string[]).includes(mode)) {
    return { ok: false, problem: `Secret ${name}: sslmode "${mode}" is not one of ${SSL_MODES.join(", ")}` };
  }
  const pem = get(ROOT_CERT_KEY);
  if (pem !== undefined && !pem.includes("-----BEGIN CERTIFICATE-----")) {
    return { ok: false, problem: `Secret ${name}: key "${ROOT_CERT_KEY}" must hold the CA certificate in PEM (-----BEGIN CERTIFICATE-----)` };
  }
  const rootCert = pem !== undefined ? { pem } : rootCertFile ? { file: rootCertFile } : undefined;
  return { ok: true, tls: { ...(mode ? { ssl: mode as SslMode } : {}), ...(rootCert ? { rootCert } : {}) } };
}

/** postgres://user:password@host:port/database[?sslmode=…], read from key `key` of Secret `name`. */
function parseUrl(name: string, key: string, url: string, example: string, get: (key: string) => string | undefined = () => undefined): Parsed {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, problem: `Secret ${name}: key "${key}" is not a URL; write ${example}` };
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    return { ok: false, problem: `Secret ${name}: key "${key}" must start with postgres:// or postgresql://` };
  }
  const [database, user, password] = [parsed.pathname.replace(/^\//, ""), parsed.username, parsed.password].map(percentDecoded);
  if (database === undefined || user === undefined || password === undefined) {
    return { ok: false, problem: `Secret ${name}: key "${key}" has invalid percent-encoding in its user, password or database; write a "%" as %25` };
  }
  if (!parsed.hostname || !database || !parsed.username) {
    return { ok: false, problem: `Secret ${name}: key "${key}" needs a user, a host and a database name (${example})` };
  }
  const tls = readTls(name, parsed.searchParams.get("sslmode") ?? undefined, parsed.searchParams.get("sslrootcert") ?? undefined, get);
  if (!tls.ok) return tls;
  return {
    ok: true,
    target: {
      host: parsed.hostname.replace(/^\[|\]$/g, ""),
      port: parsed.port ? Number(parsed.port) : 5432,
      user,
      password,
      database,
      ...tls.tls,
    },
  };
}

function readPgKeys(name: string, get: (key: string) => string | undefined): Parsed {
  const host = get("PGHOST");
  const user = get("PGUSER");
  const database = get("PGDATABASE");
  const missing = [["PGHOST", host], ["PGUSER", user], ["PGDATABASE", database]].filter(([, v]) => !v).map(([k]) => k);
  if (missing.length === 3) {
    return { ok: false, problem: `Secret ${name} has neither key "url" nor PGHOST/PGUSER/PGDATABASE; add one of the two forms` };
  }
  if (missing.length > 0) return { ok: false, problem: `Secret ${name} lacks ${missing.join(", ")}` };
  const portText = get("PGPORT") ?? "5432";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return { ok: false, problem: `Secret ${name}: PGPORT is not a port number` };
  }
  const tls = readTls(name, get("PGSSLMODE") ?? get("sslmode"), get("PGSSLROOTCERT"), get);
  if (!tls.ok) return tls;
  return { ok: true, target: { host: host!, port, user: user!, password: get("PGPASSWORD") ?? "", database: database!, ...tls.tls } };
}

/**
 * The pooler's admin console(s), one URL per PgBouncer instance (separated by whitespace or
 * newlines), each on database `pgbouncer`; undefined when the Secret names none. The gate
 * must reach PostgreSQL itself: through a paused pooler its own queries would wait too.
 */
function readPooler(name: string, get: (key: string) => string | undefined, direct: DatabaseTarget): { ok: true; pooler?: PoolerTarget } | { ok: false; problem: string } {
  const text = get(POOLER_ADMIN_KEY);
  if (text === undefined || text === "") {
    if (get(POOLER_DATABASE_KEY)) return { ok: false, problem: `Secret ${name}: key "${POOLER_DATABASE_KEY}" needs key "${POOLER_ADMIN_KEY}" (the pooler's admin console) beside it` };
    return { ok: true };
  }
  const consoles: DatabaseTarget[] = [];
  for (const url of text.split(/\s+/)) {
    const parsed = parseUrl(name, POOLER_ADMIN_KEY, url, `postgres://user:password@pgbouncer:6432/${CONSOLE_DATABASE}`);
    if (!parsed.ok) return parsed;
    if (parsed.target.database !== CONSOLE_DATABASE) {
      return { ok: false, problem: `Secret ${name}: key "${POOLER_ADMIN_KEY}" must name PgBouncer's admin console, database "${CONSOLE_DATABASE}" (postgres://user:password@pgbouncer:6432/${CONSOLE_DATABASE})` };
    }
    if (parsed.target.host === direct.host && parsed.target.port === direct.port) {
      return {
        ok: false,
        problem: `Secret ${name}: the database URL points at the pooler (${direct.host}:${direct.port}, as "${POOLER_ADMIN_KEY}" does); ` +
          "with the pooler's console given, the gate must connect to PostgreSQL itself (a paused pooler would hold its queries too): point \"url\" (or PGHOST/PGPORT) at the PostgreSQL server",
      };
    }
    consoles.push(parsed.target);
  }
  return { ok: true, pooler: { consoles, database: get(POOLER_DATABASE_KEY) || direct.database } };
}

/**
 * Reads a Secret's `data` (base64, as the API returns it): key `url`
 * (postgres://user:password@host:port/database) or PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE,
 * and optionally the pooler in front of it (`pgbouncer-admin-url`, `pgbouncer-database`).
 * Problems name the Secret and the key, never a value (it may be a password).
 */
export function readDatabaseSecret(name: string, data: Record<string, string> | undefined): SecretResult {
  const get = (key: string) => decode(data?.[key])?.trim();
  const url = get("url");
  const direct = url !== undefined ? parseUrl(name, "url", url, "postgres://user:password@host:5432/database", get) : readPgKeys(name, get);
  if (!direct.ok) return direct;
  const pooler = readPooler(name, get, direct.target);
  if (!pooler.ok) return pooler;
  return { ok: true, target: { ...direct.target, ...(pooler.pooler ? { pooler: pooler.pooler } : {}) } };
}

/** What a person runs to resume the pooler by hand, for a message when the gate could not (no password in it). */
export const poolerResumeCommand = (pooler: PoolerTarget): string =>
  pooler.consoles.map((c) => `psql "postgres://${encodeURIComponent(c.user)}@${c.host}:${c.port}/pgbouncer" -c "RESUME ${pooler.database}"`).join("; ");
