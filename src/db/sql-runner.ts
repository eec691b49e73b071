import type pg from "pg";
import { lineAndColumn, pendingFiles, type AppliedFile, type MigrationFile } from "../core/migrations.js";
import { fileTransaction } from "../core/sql-statements.js";

/** A migration that did not apply, with where in which file, for the Event and the user. */
export class MigrationError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
    readonly column?: number,
    readonly sqlState?: string,
  ) {
    super(message);
    this.name = "MigrationError";
  }
}

const HISTORY = "schema_gate_history";
const VERSIONS = "schema_gate_versions";
/** One row: the database group (`namespace/name`) whose database this is. */
const OWNER = "schema_gate_owner";

/**
 * The SQL runner: applies a ConfigMap's `*.sql` files in name order, each in its own
 * transaction together with its history row, under a session advisory lock per group, so
 * a file is applied exactly once even with two runners and never half-applied.
 */
export class SqlRunner {
  /** The history tables, schema-qualified once found, so a file's `SET search_path` cannot move them. */
  private tables: { history: string; versions: string } | undefined;

  /**
   * `group` is the database group's `namespace/name`: it keys the advisory lock and claims
   * the database, so a second group pointed at the same database is refused (README,
   * "Guarantees and limits").
   */
  constructor(
    private readonly client: pg.Client,
    private readonly group: string,
  ) {}

  private async ensureTables(): Promise<{ history: string; versions: string }> {
    if (this.tables) return this.tables;
    // Every window but a database's first finds the tables there: one read finds them, and
    // one more the owner (the migration's own round trips are inside the downtime).
    let names = await this.qualifiedNames([HISTORY, VERSIONS, OWNER]);
    if (names.some((name) => name === undefined)) {
      await this.createTables();
      names = await this.qualifiedNames([HISTORY, VERSIONS, OWNER]);
    }
    // Created (or found) now: each name is there.
    const [history, versions, owner] = names as [string, string, string];
    await this.claim(owner);
    this.tables = { history, versions };
    return this.tables;
  }

  /** Each table's schema-qualified name as the session's search_path finds it, or undefined. */
  private async qualifiedNames(tables: string[]): Promise<Array<string | undefined>> {
    const { rows } = await this.client.query<{ name: string | null }>(
      `SELECT (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(t.name)) AS name
         FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i) ORDER BY t.i`,
      [tables],
    );
    return rows.map((r) => r.name ?? undefined);
  }

  private async createTables(): Promise<void> {
    // CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin; serialise it.
    await this.client.query(`
      BEGIN;
      SELECT pg_advisory_xact_lock(hashtext('schema-gate:tables'));
      CREATE TABLE IF NOT EXISTS ${HISTORY} (
        file text PRIMARY KEY, checksum text NOT NULL, version text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(), duration_ms integer NOT NULL);
      CREATE TABLE IF NOT EXISTS ${VERSIONS} (
        version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE IF NOT EXISTS ${OWNER} (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), owner text NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT now());
      COMMIT`);
  }

  /**
   * Makes this group the database's owner, or refuses when another group owns it: two
   * groups on one database would terminate each other's live sessions, and one's history
   * would pass for the other's.
   */
  private async claim(table: string): Promise<void> {
    const claimed = async () => (await this.client.query<{ owner: string; since: string; database: string }>(
      `SELECT owner, to_char(claimed_at, 'YYYY-MM-DD HH24:MI:SS TZ') AS since, current_database() AS database FROM ${table}`,
    )).rows[0];
    // Claimed already (every window after a database's first): no write.
    let row = await claimed();
    if (!row) {
      await this.client.query(`INSERT INTO ${table} (owner) VALUES ($1) ON CONFLICT DO NOTHING`, [this.group]);
      row = (await claimed())!;
    }
    if (row.owner === this.group) return;
    throw new MigrationError(
      `database "${row.database}" belongs to database group "${row.owner}" (since ${row.since}), not to "${this.group}": ` +
        `two groups on one database would terminate each other's sessions and mix their migration histories. ` +
        `Give every Deployment of this database the same schema-gate.dev/database in one namespace, or use a database per group; ` +
        `if group "${row.owner}" is gone for good, run DELETE FROM ${table}; in database "${row.database}"`,
    );
  }

  /** Claims the database for this group (see claim), for a runner that uses no history table. */
  async ensureOwner(): Promise<void> {
    await this.ensureTables();
  }

  async applied(): Promise<AppliedFile[]> {
    const { history } = await this.ensureTables();
    const { rows } = await this.client.query<AppliedFile>(`SELECT file AS name, checksum FROM ${history} ORDER BY file`);
    return rows;
  }

  /** The files still to apply; throws MigrationError when an applied file was edited. */
  async pending(files: MigrationFile[]): Promise<MigrationFile[]> {
    const result = pendingFiles(files, await this.applied());
    if (!result.ok) throw new MigrationError(result.problem);
    return result.pending;
  }

  async versionRecorded(version: string): Promise<boolean> {
    const { versions } = await this.ensureTables();
    const { rowCount } = await this.client.query(`SELECT 1 FROM ${versions} WHERE version = $1`, [version]);
    return (rowCount ?? 0) > 0;
  }

  /**
   * Applies what is pending and records `version`; returns the names of the files it ran.
   * `beforeWrites` is awaited once the lock is held and the pending files are known, before
   * the first write to the database (the window's fence: its record says migrate first).
   */
  async apply(files: MigrationFile[], version: string, onFile?: (name: string, ms: number) => void, beforeWrites?: () => Promise<void>): Promise<string[]> {
    const tables = await this.ensureTables();
    await this.client.query("SELECT pg_advisory_lock(hashtext($1))", [`schema-gate:${this.group}`]);
    try {
      // Read under the lock: another runner may have applied some files meanwhile.
      const pending = await this.pending(files);
      await beforeWrites?.();
      const ran: string[] = [];
      for (const { file, sql } of runnableFiles(pending)) {
        const started = Date.now();
        await this.client.query("BEGIN");
        try {
          await this.client.query(sql);
          await this.client.query(
            `INSERT INTO ${tables.history} (file, checksum, version, duration_ms) VALUES ($1, $2, $3, $4)`,
            [file.name, file.checksum, version, Date.now() - started],
          );
          await this.client.query("COMMIT");
          // A file's session-level SET (search_path, timeouts) ends with it: the next file starts
          // from the session's own settings (those given at connect are its defaults).
          await this.client.query("RESET ALL");
        } catch (error) {
          await this.client.query("ROLLBACK").catch(() => undefined);
          throw describe(error, file);
        }
        ran.push(file.name);
        onFile?.(file.name, Date.now() - started);
      }
      await this.client.query(`INSERT INTO ${tables.versions} (version) VALUES ($1) ON CONFLICT DO NOTHING`, [version]);
      return ran;
    } finally {
      await this.client.query("SELECT pg_advisory_unlock(hashtext($1))", [`schema-gate:${this.group}`]).catch(() => undefined);
    }
  }
}

/**
 * What each pending file runs as, checked for all of them before the first one runs, so a
 * refused file (transaction control inside it) leaves nothing half-done.
 */
export function runnableFiles(pending: MigrationFile[]): Array<{ file: MigrationFile; sql: string }> {
  return pending.map((file) => {
    const transaction = fileTransaction(file);
    if (transaction.kind === "refused") throw new MigrationError(transaction.problem, file.name);
    return { file, sql: transaction.sql };
  });
}

function describe(error: unknown, file: MigrationFile): MigrationError {
  const pgError = error as { message?: string; position?: string; code?: string };
  const message = pgError.message ?? String(error);
  if (pgError.position) {
    const { line, column } = lineAndColumn(file.sql, Number(pgError.position));
    return new MigrationError(`${file.name}:${line}:${column}: ${message}`, file.name, line, column, pgError.code);
  }
  return new MigrationError(`${file.name}: ${message}`, file.name, undefined, undefined, pgError.code);
}
