import type { DatabaseTarget } from "../core/database-secret.js";
import type { MigrationFile } from "../core/migrations.js";
import type { SessionRecord } from "../core/window.js";
import { withSession } from "./connect.js";
import { migrationFailure } from "./errors.js";
import { terminateOtherSessions } from "./sessions.js";
import { runnableFiles, SqlRunner } from "./sql-runner.js";

/** The migration session waits at most this long for a lock (a session that escaped termination). */
const LOCK_TIMEOUT_MS = 10_000;

/** What a window does in PostgreSQL, one short session per call. */
export const windowSql = {
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

  async terminateOthers(target: DatabaseTarget): Promise<SessionRecord[]> {
    try {
      const sessions = await withSession(target, { applicationName: "schema-gate" }, (client) => terminateOtherSessions(client, target.database));
      return sessions.map(({ pid, user, applicationName, state }) => ({ pid, user, applicationName, state }));
    } catch (error) {
      throw migrationFailure(error);
    }
  },

  async applySql(
    target: DatabaseTarget,
    group: string,
    files: MigrationFile[],
    version: string,
    options: { statementTimeoutMs: number; onFile?: (file: string, ms: number) => void },
  ): Promise<string[]> {
    try {
      return await withSession(
        target,
        { applicationName: "schema-gate-migration", lockTimeoutMs: LOCK_TIMEOUT_MS, statementTimeoutMs: options.statementTimeoutMs },
        async (client) => {
          // A client that connected since the terminate step would block the DDL.
          await terminateOtherSessions(client, target.database);
          return new SqlRunner(client, group).apply(files, version, options.onFile);
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
