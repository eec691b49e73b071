import type pg from "pg";
import { pollUntil } from "../util/wait.js";

export interface ClientSession {
  pid: number;
  user: string;
  applicationName: string;
  state: string;
  clientAddress: string;
  superuser?: boolean;
}

/** Sessions the gate may not end, for a message that says who they are and what to do. */
export class SessionsNotTerminated extends Error {
  constructor(readonly sessions: ClientSession[], database: string) {
    const who = sessions.map((s) => `pid ${s.pid} (${s.superuser ? "superuser " : "user "}${s.user}, application "${s.applicationName}", from ${s.clientAddress})`).join(", ");
    const superuser = sessions.some((s) => s.superuser);
    super(
      `could not end ${who} on database ${database}: ` +
        (superuser
          ? "a non-superuser cannot end a superuser's session: stop that client, or let the gate connect as a superuser"
          : "grant the gate's database user the pg_signal_backend role (GRANT pg_signal_backend TO <user>), or stop those clients"),
    );
    this.name = "SessionsNotTerminated";
  }
}

/**
 * Terminates every other client session on the database the gate is connected to
 * (current_database(): behind a pooler or an alias the Secret's name may be another),
 * and waits until they are gone. Sessions it may not signal (a superuser's, when the gate
 * is not one; any other role's without pg_signal_backend) are not tried, which PostgreSQL
 * answers with an error, but named in a SessionsNotTerminated error once the rest are gone.
 * Sessions of other databases are left alone.
 */
export async function terminateOtherSessions(client: pg.Client, database: string): Promise<ClientSession[]> {
  // Without pg_read_all_stats, another role's row shows backend_type NULL: a session with a
  // user is a client backend (background workers have none).
  const { rows } = await client.query<{
    pid: number; usename: string | null; application_name: string | null; state: string | null;
    client_addr: string | null; superuser: boolean; terminated: boolean | null;
  }>(
    `WITH me AS (
       SELECT rolsuper, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS may_signal
         FROM pg_roles WHERE rolname = current_user)
     SELECT a.pid, a.usename, a.application_name, a.state, a.client_addr::text AS client_addr,
            coalesce(r.rolsuper, false) AS superuser,
            CASE WHEN me.rolsuper
                   OR (NOT coalesce(r.rolsuper, false) AND (me.may_signal OR pg_has_role(current_user, a.usesysid, 'MEMBER')))
                 THEN pg_terminate_backend(a.pid) END AS terminated
       FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid, me
      WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.usesysid IS NOT NULL
        AND (a.backend_type = 'client backend' OR a.backend_type IS NULL)`,
  );
  const all = rows.map((r) => ({
    pid: r.pid,
    user: r.usename ?? "",
    applicationName: r.application_name ?? "",
    state: r.state ?? "",
    clientAddress: r.client_addr ?? "local",
    superuser: r.superuser,
    terminated: r.terminated === true,
  }));
  const sessions = all.filter((s) => s.terminated);
  const pids = sessions.map((s) => s.pid);
  if (pids.length > 0) {
    await pollUntil(
      async () => {
        const left = await client.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)", [pids]);
        return left.rows[0].n === 0 ? true : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50, what: `terminated sessions ${pids.join(", ")} to exit` },
    );
  }
  const refused = all.filter((s) => !s.terminated);
  if (refused.length > 0) throw new SessionsNotTerminated(refused, database);
  return sessions;
}
