import type { DatabaseTarget } from "../core/database-secret.js";
import type { MigrationFile } from "../core/migrations.js";
import type { Terminated } from "../core/window.js";
import { openSession, withSession, type SessionOptions } from "./connect.js";
import { migrationFailure } from "./errors.js";
import { checkPooler, pausePooler, resumePooler } from "./pooler.js";
import { SessionsAhead } from "./sessions-ahead.js";
import { terminateOtherSessions } from "./sessions.js";
import { runnableFiles, SqlRunner } from "./sql-runner.js";

/** The migration session waits at most this long for a lock (a session that escaped termination). */
const LOCK_TIMEOUT_MS = 10_000;

/**
 * How long a PAUSE may wait for the pooler's server connections to be released (transactions
 * to end; in session pooling, clients to leave) before the gate terminates what holds them.
 */
export const POOLER_DRAIN_MS = 5000;
/** Once those sessions are terminated, the PAUSE completes as soon as PgBouncer sees them closed. */
const POOLER_CLOSE_MS = 10_000;

const migrationSession = (statementTimeoutMs: number): SessionOptions =>
  ({ applicationName: "schema-gate-migration", lockTimeoutMs: LOCK_TIMEOUT_MS, statementTimeoutMs });

/** The migration's session, opened from the quiesce and used by terminate, then migrate. */
const ahead = new SessionsAhead();

export interface SqlOptions {
  statementTimeoutMs: number;
  /** Hears of each file once it committed; what it throws stops the runner after that file. */
  onFile?: (file: string, ms: number) => void;
  /** Awaited before the migration's first write, once its session holds the lock and knows what is pending. */
  beforeWrites?: () => Promise<void>;
}

/** What a window does in PostgreSQL, one short session per call (terminate and migrate share one opened ahead). */
export const windowSql = {
  /**
   * Opens the migration's session before it is needed (see SessionsAhead). Its statement
   * timeout is the window's time left when it opens, at most SESSION_AHEAD_MS before the
   * migration starts. Never fails: a step that finds no session opens its own.
   */
  openAhead(target: DatabaseTarget, options: { statementTimeoutMs: number }): Promise<void> {
    return ahead.open(target, migrationSession(options.statementTimeoutMs));
  },

  async recordIfNothingPending(target: DatabaseTarget, group: string, files: MigrationFile[], version: string): Promise<boolean> {
    try {
      return await withSession(target, { applicationName: "schema-gate" }, async (client) => {
        const runner = new SqlRunner(client, group);
        const pending = await runner.pending(files);
        if (pending.length === 0) {
          await runner.apply([], version);
          return true;
        }
        // A file the runner would refuse is reported now, before a window stops anything.
        runnableFiles(pending);
        return false;
      });
    } catch (error) {
      throw migrationFailure(error);
    }
  },

  /**
   * Terminates every other session on the database. With the pooler's console, PAUSEs it
   * first: in-flight transactions finish and new client queries wait in the pooler instead
   * of reaching the database (or failing); whatever still holds a server connection after
   * POOLER_DRAIN_MS is terminated with the rest, which lets the PAUSE complete.
   */
  async terminateOthers(target: DatabaseTarget): Promise<Terminated> {
    try {
      const started = Date.now();
      const pause = target.pooler ? await pausePooler(target.pooler) : undefined;
      try {
        const drained = pause ? await pause.drained(POOLER_DRAIN_MS) : true;
        const waitedMs = Date.now() - started;
        const sessions = await ahead.use(target, () => openSession(target, { applicationName: "schema-gate" }),
          (client) => terminateOtherSessions(client, target.database), true);
        await pause?.done(POOLER_CLOSE_MS);
        return {
          sessions: sessions.map(({ pid, user, applicationName, state }) => ({ pid, user, applicationName, state })),
          ...(target.pooler ? { paused: { database: target.pooler.database, waitedMs, drained } } : {}),
        };
      } finally {
        await pause?.close();
      }
    } catch (error) {
      throw migrationFailure(error);
    }
  },

  /** Checks that the pooler's consoles accept the gate's login (nothing without a pooler). */
  async checkPooler(target: DatabaseTarget): Promise<void> {
    if (target.pooler) await checkPooler(target.pooler);
  },

  /** RESUMEs the pooler's database on every console (resumed already counts as done). */
  async resumePooler(target: DatabaseTarget): Promise<void> {
    if (target.pooler) await resumePooler(target.pooler);
  },

  async applySql(
    target: DatabaseTarget,
    group: string,
    files: MigrationFile[],
    version: string,
    options: SqlOptions,
  ): Promise<{ ran: string[]; recorded: boolean }> {
    try {
      return await ahead.use(
        target,
        () => openSession(target, migrationSession(options.statementTimeoutMs)),
        async (client) => {
          // A client that connected since the terminate step would block the DDL.
          await terminateOtherSessions(client, target.database);
          const runner = new SqlRunner(client, group);
          const ran = await runner.apply(files, version, options.onFile, options.beforeWrites);
          // Read back once committed, in the same session: the verify step has nothing left to ask.
          return { ran, recorded: await runner.versionRecorded(version) };
        },
      );
    } catch (error) {
      throw migrationFailure(error);
    }
  },

  async claim(target: DatabaseTarget, group: string): Promise<void> {
    try {
      await withSession(target, { applicationName: "schema-gate" }, (client) => new SqlRunner(client, group).ensureOwner());
    } catch (error) {
      throw migrationFailure(error);
    }
  },

  versionRecorded(target: DatabaseTarget, group: string, version: string): Promise<boolean> {
    return withSession(target, { applicationName: "schema-gate" }, (client) => new SqlRunner(client, group).versionRecorded(version));
  },
};
