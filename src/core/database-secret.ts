import { percentDecoded } from "./percent.js";

/** How the gate reaches a group's database, read from the Secret a Deployment names. */
export interface DatabaseTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Extra `sslmode` etc. from a URL, kept as given. */
  ssl?: string;
}

export type SecretResult = { ok: true; target: DatabaseTarget } | { ok: false; problem: string };

const decode = (value: string | undefined) => (value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8"));

/**
 * Reads a Secret's `data` (base64, as the API returns it): key `url`
 * (postgres://user:password@host:port/database) or PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE.
 * Problems name the Secret and the key, never a value (it may be a password).
 */
export function readDatabaseSecret(name: string, data: Record<string, string> | undefined): SecretResult {
  const get = (key: string) => decode(data?.[key])?.trim();
  const url = get("url");
  if (url !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return { ok: false, problem: `Secret ${name}: key "url" is not a URL; write postgres://user:password@host:5432/database` };
    }
    if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
      return { ok: false, problem: `Secret ${name}: key "url" must start with postgres:// or postgresql://` };
    }
    const [database, user, password] = [parsed.pathname.replace(/^\//, ""), parsed.username, parsed.password].map(percentDecoded);
    if (database === undefined || user === undefined || password === undefined) {
      return { ok: false, problem: `Secret ${name}: key "url" has invalid percent-encoding in its user, password or database; write a "%" as %25` };
    }
    if (!parsed.hostname || !database || !parsed.username) {
      return { ok: false, problem: `Secret ${name}: key "url" needs a user, a host and a database name (postgres://user:password@host:5432/database)` };
    }
    const sslmode = parsed.searchParams.get("sslmode");
    return {
      ok: true,
      target: {
        host: parsed.hostname.replace(/^\[|\]$/g, ""),
        port: parsed.port ? Number(parsed.port) : 5432,
        user,
        password,
        database,
        ...(sslmode ? { ssl: sslmode } : {}),
      },
    };
  }
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
  return { ok: true, target: { host: host!, port, user: user!, password: get("PGPASSWORD") ?? "", database: database! } };
}
