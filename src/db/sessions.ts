import type pg from "pg";
import { pollUntil } from "../util/wait.js";

export interface ClientSession {
  pid: number;
  user: string;
  applicationName: string;
  state: string;
  clientAddress: string;
}

/**
 * Terminates every other client session on the database so the migration gets exclusive
 * access, and waits until they are gone. A session the gate may not signal (it needs
 * superuser or the pg_signal_backend role) is an error naming it.
 */
export async function terminateOtherSessions(client: pg.Client, database: string): Promise<ClientSession[]> {
  const { rows } = await client.query<{
    pid: number; usename: string | null; application_name: string | null; state: string | null;
    client_addr: string | null; terminated: boolean;
  }>(
    `SELECT pid, usename, application_name, state, client_addr::text AS client_addr,
            pg_terminate_backend(pid) AS terminated
       FROM pg_stat_activity
      WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    [database],
  );
  const sessions = rows.map((r) => ({
    pid: r.pid,
    user: r.usename ?? "",
    applicationName: r.application_name ?? "",
    state: r.state ?? "",
    clientAddress: r.client_addr ?? "local",
  }));
  const refused = rows.filter((r) => !r.terminated);
  if (refused.length > 0) {
    const who = refused.map((r) => `pid ${r.pid} (user ${r.usename}, application "${r.application_name}")`).join(", ");
    throw new Error(
      `could not terminate ${who} on database ${database}: grant the gate's database user the pg_signal_backend role ` +
        `(GRANT pg_signal_backend TO <user>) or stop those clients`,
    );
  }
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
  return sessions;
}
