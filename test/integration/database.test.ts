import { strict as assert } from "node:assert";
import pg from "pg";
import type { DatabaseTarget } from "../../src/core/database-secret.js";
import { migrationFiles } from "../../src/core/migrations.js";
import { openSession, withSession } from "../../src/db/connect.js";
import { StepFailure } from "../../src/core/window.js";
import { isConnectionError } from "../../src/db/errors.js";
import { SESSION_AHEAD_MS, SessionsAhead } from "../../src/db/sessions-ahead.js";
import { terminateOtherSessions } from "../../src/db/sessions.js";
import { windowSql } from "../../src/db/window-database.js";
import { MigrationError, SqlRunner } from "../../src/db/sql-runner.js";
import { makeCert, makeLoopbackCert } from "../../src/local/certs.js";
import { startPostgres, type PostgresServer } from "../../src/local/postgres.js";
import { appSessions } from "../support/shop.js";
import { pollUntil } from "../../src/util/wait.js";

// Its own server: these tests restart PostgreSQL and create databases.
describe("PostgreSQL: exclusive access and the SQL runner", function () {
  let server: PostgresServer;
  let n = 0;
  let target: DatabaseTarget;
  let url: string;

  before(async function () {
    this.timeout(120_000);
    server = await startPostgres();
  });
  after(async () => server?.stop());

  beforeEach(async () => {
    // A fresh database per test, with the application's table in it.
    const database = `shop_${++n}`;
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    await admin.end();
    target = { host: server.host, port: server.port, user: server.user, password: server.password, database };
    url = `postgres://${server.user}:${server.password}@${server.host}:${server.port}/${database}`;
    const setup = await openSession(target);
    await setup.query("CREATE TABLE items (id int PRIMARY KEY, name text)");
    await setup.end();
  });

  it("terminates the sessions that would block ALTER TABLE, then migrates at once", async function () {
    const apps = await appSessions(url);
    const blocked = await openSession(target, { lockTimeoutMs: 300 });
    await assert.rejects(blocked.query("ALTER TABLE items ADD COLUMN price int"), /lock timeout/);
    await blocked.end();

    const gate = await openSession(target, { applicationName: "schema-gate", lockTimeoutMs: 2000 });
    const terminated = await terminateOtherSessions(gate, target.database);
    assert.deepEqual(terminated.map((s) => s.applicationName).sort(), ["billing", "catalog", "orders"]);
    assert.ok(terminated.find((s) => s.applicationName === "orders")?.state.startsWith("idle in transaction"));
    await assert.rejects(apps[0]!.query("SELECT 1"), "a terminated session cannot be used");

    const files = migrationFiles({ "001_price.sql": "ALTER TABLE items ADD COLUMN price int;" });
    const started = Date.now();
    assert.deepEqual(await new SqlRunner(gate, "shop-db").apply(files, "2"), ["001_price.sql"]);
    assert.ok(Date.now() - started < 2000, "the ALTER did not wait for a lock");
    await gate.end();
    await Promise.all(apps.map((c) => c.end().catch(() => undefined)));
  });

  it("terminates what it may and names a superuser's session it may not, once, with what to do; another database's sessions are left alone", async function () {
    const admin = await openSession(target);
    const role = `gate_${n}`;
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD 'gate' IN ROLE pg_signal_backend`);
    await admin.query(`CREATE ROLE app_${n} LOGIN PASSWORD 'app'`);
    const as = (user: string, password: string, database = target.database) =>
      openSession({ ...target, user, password, database }, { applicationName: user });
    const app = await as(`app_${n}`, "app");
    const dba = await openSession(target, { applicationName: "psql" }); // the superuser, e.g. a DBA's psql
    const elsewhere = await openSession({ ...target, database: "postgres" }, { applicationName: "other-db" });
    const gate = await as(role, "gate");
    try {
      await assert.rejects(terminateOtherSessions(gate, target.database), (error: Error) => {
        assert.match(error.message, /pid \d+ \(superuser postgres, application "psql"/);
        assert.match(error.message, /a non-superuser cannot end a superuser's session: stop that client, or let the gate connect as a superuser/);
        return true;
      });
      await assert.rejects(app.query("SELECT 1"), "the application's session was ended");
      assert.deepEqual((await dba.query("SELECT 1 AS one")).rows, [{ one: 1 }], "the superuser's session was left");
      assert.deepEqual((await elsewhere.query("SELECT 1 AS one")).rows, [{ one: 1 }], "another database's session was left");
      // The window's terminate step gets a failure for the user (held once, for retry or abort), not a retry loop.
      await assert.rejects(windowSql.terminateOthers({ ...target, user: role, password: "gate" }), (error: Error) => {
        assert.ok(error instanceof StepFailure, `a StepFailure, not ${error.name}`);
        assert.equal(isConnectionError(error), false);
        assert.match(error.message, /superuser postgres, application "psql"/);
        assert.doesNotMatch(error.message, /other-db/, "another database's session is not named");
        return true;
      });
    } finally {
      await Promise.all([app, dba, elsewhere, gate, admin].map((c) => c.end().catch(() => undefined)));
    }
  });

  it("applies files in name order once, and records the version", async function () {
    const client = await openSession(target);
    const runner = new SqlRunner(client, "shop-db");
    const files = migrationFiles({
      "002_index.sql": "CREATE INDEX items_name ON items (name);",
      "001_column.sql": "ALTER TABLE items ADD COLUMN sku text;",
    });
    assert.deepEqual((await runner.pending(files)).map((f) => f.name), ["001_column.sql", "002_index.sql"]);
    assert.deepEqual(await runner.apply(files, "2"), ["001_column.sql", "002_index.sql"]);
    assert.deepEqual(await runner.pending(files), []);
    assert.deepEqual(await runner.apply(files, "2"), [], "nothing runs twice");
    assert.equal(await runner.versionRecorded("2"), true);
    const { rows } = await client.query("SELECT file, version FROM schema_gate_history ORDER BY file");
    assert.deepEqual(rows, [{ file: "001_column.sql", version: "2" }, { file: "002_index.sql", version: "2" }]);
    await client.end();
  });

  it("holds its lock and knows what is pending before beforeWrites returns, and writes nothing until then", async function () {
    const client = await openSession(target);
    const files = migrationFiles({ "001_price.sql": "ALTER TABLE items ADD COLUMN price int;" });
    const seen: Array<{ locks: number; history: number; price: number }> = [];
    const look = await openSession(target);
    await new SqlRunner(client, "shop-db").apply(files, "2", undefined, async () => {
      const locks = await look.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted");
      const rows = await look.query("SELECT count(*)::int AS n FROM schema_gate_history");
      const price = await look.query("SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'price'");
      seen.push({ locks: locks.rows[0].n, history: rows.rows[0].n, price: price.rows[0].n });
    });
    assert.deepEqual(seen, [{ locks: 1, history: 0, price: 0 }], "called once, under the lock, before the file and its history row");
    assert.deepEqual((await look.query("SELECT file FROM schema_gate_history")).rows, [{ file: "001_price.sql" }]);
    await Promise.all([client.end(), look.end()]);
  });

  it("stops after the committed file when onFile throws (a replica deposed meanwhile), and releases its lock", async function () {
    const client = await openSession(target);
    const files = migrationFiles({ "001_a.sql": "ALTER TABLE items ADD COLUMN a int;", "002_b.sql": "ALTER TABLE items ADD COLUMN b int;" });
    const deposed = new Error("lost the Lease");
    await assert.rejects(new SqlRunner(client, "shop-db").apply(files, "2", () => { throw deposed; }), (error) => error === deposed);
    const { rows } = await client.query("SELECT file FROM schema_gate_history ORDER BY file");
    assert.deepEqual(rows, [{ file: "001_a.sql" }]);
    // The successor, on another session, is not kept waiting by the advisory lock.
    const successor = await openSession(target);
    assert.deepEqual(await new SqlRunner(successor, "shop-db").apply(files, "2"), ["002_b.sql"]);
    await Promise.all([client.end(), successor.end()]);
  });

  it("refuses an applied file that was edited", async function () {
    const client = await openSession(target);
    const runner = new SqlRunner(client, "shop-db");
    await runner.apply(migrationFiles({ "001.sql": "ALTER TABLE items ADD COLUMN a int;" }), "2");
    await assert.rejects(
      runner.apply(migrationFiles({ "001.sql": "ALTER TABLE items ADD COLUMN b int;" }), "3"),
      (error: MigrationError) => /^001\.sql was edited after it was applied/.test(error.message),
    );
    await client.end();
  });

  it("reports a failing file with its line and column and leaves its changes out", async function () {
    const client = await openSession(target);
    const runner = new SqlRunner(client, "shop-db");
    const files = migrationFiles({
      "001_ok.sql": "ALTER TABLE items ADD COLUMN ok int;",
      "002_bad.sql": "CREATE TABLE half (id int);\nALTER TABLE items ADD COLUMN broken nosuchtype;\n",
    });
    await assert.rejects(runner.apply(files, "2"), (error: MigrationError) => {
      assert.equal(error.file, "002_bad.sql");
      assert.equal(error.line, 2);
      assert.equal(error.column, 37);
      assert.match(error.message, /^002_bad\.sql:2:37: type "nosuchtype" does not exist$/);
      return true;
    });
    const half = await client.query("SELECT to_regclass('half') AS t");
    assert.equal(half.rows[0].t, null, "the failing file's transaction was rolled back");
    assert.deepEqual((await runner.applied()).map((a) => a.name), ["001_ok.sql"]);
    assert.equal(await runner.versionRecorded("2"), false);
    await client.end();
  });

  it("refuses a file that commits halfway before running anything, and applies a file wrapped whole in BEGIN ... COMMIT once", async function () {
    const client = await openSession(target);
    const runner = new SqlRunner(client, "shop-db");
    const halfway = migrationFiles({
      "001_ok.sql": "ALTER TABLE items ADD COLUMN ok int;",
      "002_psql.sql": "BEGIN; CREATE TABLE t1(id int); COMMIT; SELECT 1/0;",
    });
    await assert.rejects(runner.apply(halfway, "2"), (error: MigrationError) => {
      assert.match(error.message, /^002_psql\.sql:1:\d+: COMMIT controls the transaction/);
      return true;
    });
    assert.equal((await client.query("SELECT to_regclass('t1') AS t")).rows[0].t, null, "nothing of the file ran");
    assert.deepEqual(await runner.applied(), [], "and nothing before it either: the refusal comes first");

    const wrapped = migrationFiles({
      "001_ok.sql": "ALTER TABLE items ADD COLUMN ok int;",
      "002_psql.sql": "BEGIN;\nCREATE TABLE t2(id int);\nCOMMIT;\n",
    });
    assert.deepEqual(await runner.apply(wrapped, "2"), ["001_ok.sql", "002_psql.sql"]);
    assert.deepEqual(await runner.apply(wrapped, "2"), [], "exactly once");
    assert.equal((await client.query("SELECT to_regclass('t2') AS t")).rows[0].t, "t2");
    assert.deepEqual((await runner.applied()).map((a) => a.name), ["001_ok.sql", "002_psql.sql"]);
    await client.end();
  });

  it("keeps its history where it is when a file moves search_path, and each file starts from the session's own settings", async function () {
    const client = await openSession(target, { lockTimeoutMs: 1234 });
    const runner = new SqlRunner(client, "shop-db");
    const files = migrationFiles({
      "001_schema.sql": "CREATE SCHEMA app;\nSET search_path TO app;\nCREATE TABLE accounts (id int);",
      "002_more.sql": "CREATE TABLE ledger (id int);",
    });
    assert.deepEqual(await runner.apply(files, "2"), ["001_schema.sql", "002_more.sql"]);
    const where = await client.query(
      "SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ('accounts', 'ledger', 'schema_gate_history') ORDER BY c.relname");
    assert.deepEqual(where.rows, [
      { relname: "accounts", nspname: "app" },
      { relname: "ledger", nspname: "public" },
      { relname: "schema_gate_history", nspname: "public" },
    ]);
    assert.deepEqual((await runner.applied()).map((a) => a.name), ["001_schema.sql", "002_more.sql"]);
    assert.equal((await client.query("SHOW lock_timeout")).rows[0].lock_timeout, "1234ms", "the timeouts given at connect survive");
    await client.end();
  });

  it("applies each file once when two runners race (advisory lock)", async function () {
    const [a, b] = await Promise.all([openSession(target), openSession(target)]);
    const files = migrationFiles({
      "001_slow.sql": "SELECT pg_sleep(0.5); ALTER TABLE items ADD COLUMN once int;",
      "002.sql": "ALTER TABLE items ADD COLUMN twice int;",
    });
    const [ranA, ranB] = await Promise.all([new SqlRunner(a, "shop-db").apply(files, "2"), new SqlRunner(b, "shop-db").apply(files, "2")]);
    assert.deepEqual([...ranA, ...ranB].sort(), ["001_slow.sql", "002.sql"]);
    await Promise.all([a.end(), b.end()]);
  });

  it("leaves no partial schema when PostgreSQL restarts mid-migration, and completes on retry", async function () {
    this.timeout(60_000);
    const client = await openSession(target);
    const files = migrationFiles({ "001_long.sql": "CREATE TABLE audit (id int);\nSELECT pg_sleep(30);\nALTER TABLE items ADD COLUMN audited bool;" });
    const attempt = new SqlRunner(client, "shop-db").apply(files, "2");
    attempt.catch(() => undefined); // asserted below, after the restart
    await new Promise((resolve) => setTimeout(resolve, 700));
    await server.restart("immediate");
    await assert.rejects(attempt, MigrationError);

    const retry = await openSession(target);
    const check = await retry.query("SELECT to_regclass('audit') AS t");
    assert.equal(check.rows[0].t, null, "nothing of the interrupted file survived");
    const quick = migrationFiles({ "001_long.sql": files[0]!.sql.replace("SELECT pg_sleep(30);", "SELECT pg_sleep(0);") });
    // A new content would be a new file in practice; here the retry runs the same name because it never applied.
    assert.deepEqual(await new SqlRunner(retry, "shop-db").apply(quick, "2"), ["001_long.sql"]);
    await retry.end();
  });

  describe("the migration's session, opened ahead of terminate and migrate", () => {
    const backend = async (applicationName: string) => {
      const admin = await openSession(target);
      try {
        const { rows } = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2", [target.database, applicationName]);
        return rows.map((r) => r.pid);
      } finally {
        await admin.end();
      }
    };

    it("is the one terminate and migrate use: terminate leaves it, migrate closes it", async function () {
      await windowSql.openAhead(target, { statementTimeoutMs: 60_000 });
      const [ahead] = await backend("schema-gate-migration");
      assert.ok(ahead, "a session was opened ahead");
      const [app] = await appSessions(url, ["orders"]);
      const { sessions } = await windowSql.terminateOthers(target);
      assert.deepEqual(sessions.map((s) => s.applicationName), ["orders"], "the application's session was terminated, the one opened ahead was not");
      assert.deepEqual(await backend("schema-gate-migration"), [ahead], "it stays open for the migration");
      const files = migrationFiles({ "001_who.sql": "CREATE TABLE migrated_by AS SELECT pg_backend_pid() AS pid;" });
      await windowSql.applySql(target, "shop-db", files, "2", { statementTimeoutMs: 60_000 });
      const check = await openSession(target);
      assert.deepEqual((await check.query("SELECT pid FROM migrated_by")).rows, [{ pid: ahead }], "the migration ran on the session opened ahead");
      await check.end();
      await pollUntil(async () => (await backend("schema-gate-migration")).length === 0 || undefined,
        { timeoutMs: 2000, intervalMs: 20, what: "the migration's session to close after the migration" });
      await app!.end().catch(() => undefined);
    });

    it("is not used once its backend ended or it waited too long; the step opens its own", async function () {
      let now = 0;
      const sessions = new SessionsAhead(() => now);
      const pidOf = async (client: pg.Client) => (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
      const fresh = () => openSession(target, { applicationName: "fresh" });

      await sessions.open(target, { applicationName: "ahead" });
      const [ended] = await backend("ahead");
      const admin = await openSession(target);
      await admin.query("SELECT pg_terminate_backend($1)", [ended]);
      await admin.end();
      await new Promise((resolve) => setTimeout(resolve, 200)); // the client hears its socket close
      const afterEnd = await sessions.use(target, fresh, pidOf);
      assert.notEqual(afterEnd, ended, "a session whose backend ended is not handed out");

      await sessions.open(target, { applicationName: "ahead" });
      const [stale] = await backend("ahead");
      now += SESSION_AHEAD_MS;
      const afterWait = await sessions.use(target, fresh, pidOf);
      assert.notEqual(afterWait, stale, "a session that waited too long is not handed out");
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(await backend("ahead"), [], "and it is closed");

      await sessions.open(target, { applicationName: "ahead" });
      const [busy] = await backend("ahead");
      await sessions.use(target, fresh, async () => {
        await sessions.open(target, { applicationName: "ahead" });
        assert.deepEqual(await backend("ahead"), [busy], "no second one opens while a step uses it (its terminate would end it)");
      });

      await sessions.open(target, { applicationName: "ahead" });
      const [kept] = await backend("ahead");
      assert.equal(await sessions.use(target, fresh, pidOf, true), kept, "a young live one is used");
      assert.equal(await sessions.use(target, fresh, pidOf), kept, "and kept for the next step when asked");
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(await backend("ahead"), [], "the last step closes it");
    });
  });
});

describe("PostgreSQL over TLS: sslmode and sslrootcert", function () {
  let server: PostgresServer;
  let ca: string;
  let otherCa: string;

  before(async function () {
    this.timeout(120_000);
    // The server's certificate names localhost only: reached as 127.0.0.1 its name does not match.
    const cert = await makeCert(["DNS:localhost"]);
    ca = cert.ca;
    otherCa = (await makeLoopbackCert()).ca;
    server = await startPostgres({ tls: { cert: cert.cert, key: cert.key } });
  });

  after(async function () {
    await server?.stop();
  });

  const target = (host: string, ssl: DatabaseTarget["ssl"], rootCert?: DatabaseTarget["rootCert"]): DatabaseTarget => ({
    host, port: server.port, user: server.user, password: server.password, database: server.database, ssl, ...(rootCert ? { rootCert } : {}),
  });
  const encrypted = (t: DatabaseTarget) =>
    withSession(t, {}, async (client) => (await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).rows[0].ssl as boolean);

  it("verifies the server against the Secret's CA: verify-full by name, verify-ca by chain only", async function () {
    assert.equal(await encrypted(target("localhost", "verify-full", { pem: ca })), true);
    assert.equal(await encrypted(target("127.0.0.1", "verify-ca", { pem: ca })), true, "verify-ca does not check the host name");
    await assert.rejects(encrypted(target("127.0.0.1", "verify-full", { pem: ca })), /IP: 127\.0\.0\.1 is not in the cert's list|does not match/);
  });

  it("refuses a server whose certificate another CA signed, also for require once a CA is given (as libpq)", async function () {
    await assert.rejects(encrypted(target("localhost", "verify-full", { pem: otherCa })), /self[- ]signed|unable to verify|unable to get/i);
    await assert.rejects(encrypted(target("localhost", "require", { pem: otherCa })), /self[- ]signed|unable to verify|unable to get/i);
    assert.equal(await encrypted(target("localhost", "require")), true, "require without a CA encrypts without verifying");
    assert.equal(await encrypted(target("localhost", "disable")), false);
  });
});
