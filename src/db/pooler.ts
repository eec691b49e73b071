import type pg from "pg";
import type { DatabaseTarget, PoolerTarget } from "../core/database-secret.js";
import { StepFailure } from "../core/window.js";
import { openSession } from "./connect.js";
import { isConnectionError } from "./errors.js";

/** A PAUSE under way on every console of a pooler. */
export interface PoolerPause {
  /** True once every console answered the PAUSE (no server connection left) within `ms`, false if not yet. */
  drained(ms: number): Promise<boolean>;
  /** Waits at most `ms` more for every PAUSE to complete; throws if one did not. */
  done(ms: number): Promise<void>;
  close(): Promise<void>;
}

const address = (c: DatabaseTarget) => `${c.host}:${c.port}`;

/** A console's refusal (unknown database, not an admin user) is the user's to fix; a lost connection is retried. */
function consoleError(console: DatabaseTarget, command: string, error: unknown): unknown {
  if (isConnectionError(error)) return error;
  return new StepFailure(`PgBouncer at ${address(console)} refused \`${command}\`: ${(error as Error).message}; check the Secret's pgbouncer-admin-url (a user in the pooler's admin_users) and pgbouncer-database`);
}

/**
 * A session on a console. PgBouncer answers a refused login (a user not in admin_users or
 * stats_users, a wrong password) with SQLSTATE 08P01, which would otherwise read as the
 * network failing and be retried until the deadline.
 */
async function openConsole(console: DatabaseTarget): Promise<pg.Client> {
  try {
    return await openSession(console, { applicationName: "schema-gate", connectTimeoutMs: 5000 });
  } catch (error) {
    if (!/not allowed|authentication failed|no such user/i.test((error as Error).message)) throw error;
    throw new StepFailure(`PgBouncer at ${address(console)} refused the console login as ${console.user}: ${(error as Error).message}; ` +
      "the Secret's pgbouncer-admin-url must name a user in the pooler's admin_users, with its password in the pooler's auth_file");
  }
}

/** Checks that every console accepts the gate's login, before the window records a pause it could not make. */
export async function checkPooler(pooler: PoolerTarget): Promise<void> {
  for (const console of pooler.consoles) await (await openConsole(console)).end().catch(() => undefined);
}

const within = <T>(promise: Promise<T>, ms: number): Promise<T | "late"> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve("late"), ms);
    promise.then((value) => { clearTimeout(timer); resolve(value); }, (error) => { clearTimeout(timer); reject(error); });
  });

/**
 * Sends `PAUSE <database>` to every console. PgBouncer at once makes new client queries of
 * that database wait, then closes each server connection as it is released: at the end of
 * its transaction (transaction pooling) or when its client disconnects (session pooling),
 * and only then answers. A PAUSE of a database already paused is answered the same way.
 */
export async function pausePooler(pooler: PoolerTarget): Promise<PoolerPause> {
  const command = `PAUSE ${quoteName(pooler.database)}`;
  const sessions: pg.Client[] = [];
  const closeAll = () => Promise.all(sessions.map((s) => s.end().catch(() => undefined))).then(() => undefined);
  try {
    for (const console of pooler.consoles) sessions.push(await openConsole(console));
  } catch (error) {
    await closeAll();
    throw error;
  }
  const answered = Promise.all(sessions.map((s, i) => s.query(command).catch((error) => Promise.reject(consoleError(pooler.consoles[i]!, command, error)))));
  answered.catch(() => undefined); // awaited through drained/done
  return {
    drained: async (ms) => (await within(answered, ms)) !== "late",
    done: async (ms) => {
      if ((await within(answered, ms)) === "late") {
        throw new Error(`PgBouncer did not complete \`${command}\` within ${ms} ms after the database's other sessions were terminated`);
      }
    },
    close: closeAll,
  };
}

/** `RESUME <database>` on every console; a console where it is not paused (resumed by hand, restarted) counts as resumed. */
export async function resumePooler(pooler: PoolerTarget): Promise<void> {
  const command = `RESUME ${quoteName(pooler.database)}`;
  const failures: string[] = [];
  for (const console of pooler.consoles) {
    try {
      const session = await openConsole(console);
      try {
        await session.query(command);
      } finally {
        await session.end().catch(() => undefined);
      }
    } catch (error) {
      if (/is not paused/.test((error as Error).message)) continue;
      failures.push(`${address(console)}: ${(error as Error).message}`);
    }
  }
  if (failures.length > 0) throw new Error(`could not \`${command}\` on ${failures.join("; ")}`);
}

/** The admin console takes a database name as a bare word; a name it cannot take that way is refused up front. */
function quoteName(name: string): string {
  if (!/^\w+$/.test(name)) throw new StepFailure(`pgbouncer-database "${name}" cannot be sent to PgBouncer's console; use the pooler's name for the database (letters, digits and _)`);
  return name;
}
