import { strict as assert } from "node:assert";
import pg from "pg";
import { readDatabaseSecret, type DatabaseTarget } from "../../src/core/database-secret.js";
import { migrationFiles } from "../../src/core/migrations.js";
import { StepFailure } from "../../src/core/window.js";
import { windowSql } from "../../src/db/window-database.js";
import { startPgbouncer, type PgbouncerServer, type PoolMode } from "../../src/local/pgbouncer.js";
import { startPostgres, type PostgresServer } from "../../src/local/postgres.js";
import { pollUntil } from "../../src/util/wait.js";
import { pollThroughPooler, transactionInFlight } from "../support/pooler-clients.js";

const APP = { name: "shop_app", password: "app-secret" };
const b64 = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));

/**
 * The window's database part, as the controller runs it (terminate, migrate, resume), with
 * applications connected through a real PgBouncer in each pooling mode, with and without
 * the pooler's console in the Secret. The migration itself looks at who else is connected.
 */
const MIGRATION = migrationFiles({
  "001_price.sql": [
    "SELECT pg_sleep(1);",
    "CREATE TABLE seen_during_migration AS SELECT usename::text AS usename, state FROM pg_stat_activity",
    "  WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend';",
    "ALTER TABLE items ADD COLUMN price int;",
  ].join("\n"),
});

describe("PgBouncer between the applications and PostgreSQL: terminate, migrate, resume", function () {
  let server: PostgresServer;
  const poolers = new Map<PoolMode, PgbouncerServer>();
  let n = 0;
  const figures: string[] = [];

  before(async function () {
    this.timeout(120_000);
    server = await startPostgres();
    await withAdmin(server.url, (c) => c.query(`CREATE ROLE ${APP.name} LOGIN PASSWORD '${APP.password}'`));
    for (const mode of ["session", "transaction"] as const) poolers.set(mode, await startPgbouncer(server, { mode, users: [APP] }));
  });
  after(async () => {
    if (figures.length > 0) {
      console.log("      mode         console  client errors  polls ok  longest poll wait  1 s transaction in flight  app sessions in migration  PAUSE waited");
      for (const line of figures) console.log(`      ${line}`);
    }
    await Promise.all([...poolers.values()].map((p) => p.stop()));
    await server?.stop();
  });

  /** A fresh database with the application's table, readable by the application's role. */
  async function database(): Promise<string> {
    const name = `pooled_${++n}`;
    await withAdmin(server.url, (c) => c.query(`CREATE DATABASE ${name}`));
    await withAdmin(`${server.url.replace(/\/app$/, "")}/${name}`, async (c) => {
      await c.query("CREATE TABLE items (id int PRIMARY KEY, name text)");
      await c.query(`GRANT SELECT ON items TO ${APP.name}`);
    });
    return name;
  }

  /** The gate's target as the Secret gives it: PostgreSQL directly, and the pooler's console when asked. */
  function secretTarget(name: string, pooler: PgbouncerServer | undefined): DatabaseTarget {
    const parsed = readDatabaseSecret("shop-db", b64({
      url: `postgres://${server.user}:${server.password}@${server.host}:${server.port}/${name}`,
      ...(pooler ? { "pgbouncer-admin-url": pooler.adminUrl } : {}),
    }));
    assert.ok(parsed.ok);
    return parsed.target;
  }

  async function windowThroughPooler(mode: PoolMode, withConsole: boolean) {
    const pooler = poolers.get(mode)!;
    const name = await database();
    const target = secretTarget(name, withConsole ? pooler : undefined);
    const url = pooler.url(name, APP);
    // The transaction first: the poller's server connection is then made before the PAUSE (one
    // made as the PAUSE begins makes PgBouncer 1.18 wait server_login_retry, see the README).
    const inFlight = await transactionInFlight(url);
    const poll = pollThroughPooler(url, mode);
    await pollUntil(async () => (poll.figures.ok >= 5 ? true : undefined), { timeoutMs: 10_000, intervalMs: 20, what: "the client to poll through the pooler" });
    const committing = inFlight.commitAfter(1000);
    const terminated = await windowSql.terminateOthers(target);
    await windowSql.applySql(target, "shop-db", MIGRATION, "2", { statementTimeoutMs: 30_000 });
    await windowSql.resumePooler(target);
    const transaction = await committing;
    const resumedAt = poll.figures.ok;
    await pollUntil(async () => (poll.figures.ok >= resumedAt + 5 ? true : undefined), { timeoutMs: 20_000, intervalMs: 20, what: `the client to poll again after the window; pooler log:\n${await pooler.logTail()}` });
    const polled = await poll.stop();
    const seen = await withAdmin(`${server.url.replace(/\/app$/, "")}/${name}`, (c) =>
      c.query<{ n: number }>("SELECT count(*)::int AS n FROM seen_during_migration WHERE usename = $1", [APP.name]));
    const result = { polled, transaction, seenDuringMigration: seen.rows[0]!.n, terminated };
    const clientErrors = polled.errors.length + (transaction === "committed" ? 0 : 1);
    figures.push([
      mode.padEnd(12), (withConsole ? "yes" : "no").padEnd(8), String(clientErrors).padStart(13), String(polled.ok).padStart(9),
      `${polled.longestMs} ms`.padStart(18), (transaction === "committed" ? "committed" : "terminated").padStart(26),
      String(result.seenDuringMigration).padStart(26), (terminated.paused ? `${terminated.paused.waitedMs} ms` : "-").padStart(13),
    ].join(" "));
    return result;
  }

  for (const mode of ["session", "transaction"] as const) {
    it(`${mode} pooling, with the pooler's console: the in-flight transaction commits, client queries wait instead of failing, no application session reaches the migration, and the pooler is resumed`, async function () {
      const { polled, transaction, seenDuringMigration, terminated } = await windowThroughPooler(mode, true);
      assert.equal(transaction, "committed", "the PAUSE let the transaction finish");
      assert.deepEqual(polled.errors, [], "the polling client saw no error");
      assert.equal(seenDuringMigration, 0, "no session of the application during the migration");
      assert.equal(terminated.paused?.drained, true);
      const pooler = poolers.get(mode)!;
      const databases = await withAdmin(pooler.adminUrl, (c) => c.query<{ name: string; paused: number }>("SHOW DATABASES"));
      assert.deepEqual(databases.rows.filter((d) => d.paused !== 0).map((d) => d.name), [], "no database of the pooler left paused");
    });

    it(`${mode} pooling, without the pooler's console: the in-flight transaction is terminated (the figures compare the client's errors)`, async function () {
      const { transaction, terminated } = await windowThroughPooler(mode, false);
      assert.match(transaction, /^error: /, "the transaction's server session was terminated");
      assert.ok(terminated.sessions.some((s) => s.user === APP.name), "the pooler's server sessions were terminated");
      assert.equal(terminated.paused, undefined);
    });
  }

  it("tells a console login the pooler refuses (a user not in admin_users) as the user's to fix, not a network failure", async function () {
    const pooler = poolers.get("session")!;
    const name = await database();
    const target = secretTarget(name, pooler);
    const notAdmin = { ...target, pooler: { ...target.pooler!, consoles: target.pooler!.consoles.map((c) => ({ ...c, user: server.user, password: server.password })) } };
    await assert.rejects(windowSql.checkPooler(notAdmin), (error: Error) => {
      assert.ok(error instanceof StepFailure, `a StepFailure, not ${error.name}`);
      assert.match(error.message, /refused the console login as postgres: not allowed; the Secret's pgbouncer-admin-url must name a user in the pooler's admin_users/);
      return true;
    });
    await windowSql.checkPooler(target);
  });

  it("refuses to run the migration session itself through a transaction pooler: PgBouncer rejects its startup timeouts", async function () {
    const pooler = poolers.get("transaction")!;
    const name = await database();
    const through: DatabaseTarget = { host: pooler.host, port: pooler.port, user: server.user, password: server.password, database: name };
    await assert.rejects(windowSql.applySql(through, "shop-db", MIGRATION, "2", { statementTimeoutMs: 30_000 }), /unsupported startup parameter: (statement|lock)_timeout/);
  });
});

async function withAdmin<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}
