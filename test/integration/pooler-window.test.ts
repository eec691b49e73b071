import { strict as assert } from "node:assert";
import pg from "pg";
import { startPgbouncer, type PgbouncerServer } from "../../src/local/pgbouncer.js";
import { pollUntil } from "../../src/util/wait.js";
import { startGate, waitForWebhooks, type GateProcess } from "../support/gate.js";
import { onTeardown, testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { pollThroughPooler } from "../support/pooler-clients.js";
import { appSessions, eventsOf, GROUP, releaseShop, shopDatabase, shopReady, windowSettled } from "../support/shop.js";


const V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };
// The migration itself records who else is connected while it runs.
const V2 = {
  ...V1,
  "002-stock.sql": [
    "SELECT pg_sleep(1);",
    "CREATE TABLE seen_during_migration AS SELECT usename::text AS usename, application_name, state FROM pg_stat_activity",
    "  WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend';",
    "ALTER TABLE items ADD COLUMN stock int NOT NULL DEFAULT 0;",
  ].join("\n"),
};

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

describe("a window with the applications behind PgBouncer, the gate as its own process", function () {
  let env: TestEnv;
  let gate: GateProcess;
  const figures: string[] = [];

  before(async function () {
    this.timeout(10 * 60_000);
    env = await testEnv();
    gate = await startGate(env, ["--settle", "1", "--lease-duration", "3"]);
  });
  after(async () => {
    if (figures.length > 0) {
      console.log("      mode         window  PAUSE waited  sessions terminated (through the pooler)  poll errors  longest poll wait  app sessions in migration");
      for (const line of figures) console.log(`      ${line}`);
    }
    await gate?.stop();
  });

  for (const mode of ["session", "transaction"] as const) {
    it(`${mode} pooling: the window pauses the pooler, ends what still holds a server connection, migrates with no application session, and resumes it`, async function () {
      const pooler: PgbouncerServer = await startPgbouncer(env.postgres, { mode });
      onTeardown(() => pooler.stop());
      const ns = await testNamespace(`pooler-${mode}`);
      await waitForWebhooks(env, ns);
      const { url, target } = await shopDatabase(env, ns);
      await env.core.replaceNamespacedSecret({
        name: GROUP, namespace: ns,
        body: { metadata: { name: GROUP }, stringData: { url, "pgbouncer-admin-url": pooler.adminUrl } },
      });
      await releaseShop(env, ns, { schemaVersion: "1", sql: V1 });
      assert.equal((await windowSettled(env, ns, "1")).result, "Done");
      await shopReady(env, ns);

      // The services' sessions through the pooler (orders idle in a transaction that read items), and a client polling through it.
      const through = pooler.url(target.database);
      const sessions = await appSessions(through);
      const poll = pollThroughPooler(through, mode);
      try {
        const started = Date.now();
        await releaseShop(env, ns, { schemaVersion: "2", sql: V2 });
        const state = await windowSettled(env, ns, "2");
        assert.equal(state.result, "Done", JSON.stringify(state.failure));
        const windowMs = Date.now() - started;
        const polled = await poll.stop();

        const seen = await query<{ usename: string; application_name: string }>(url, "SELECT usename, application_name FROM seen_during_migration");
        assert.deepEqual(seen, [], "no other session on the database while the migration ran");
        // Events are written off the window's path: this window's last one may trail its record.
        const order = ["PoolerPaused", "SessionsTerminated", "Migrated", "PoolerResumed", "Restored", "WindowDone"];
        const reasons = await pollUntil(async () => {
          const seen = (await eventsOf(env, ns, "orders")).map((e) => e.reason ?? "");
          return seen.filter((r) => r === "WindowDone").length >= 2 ? seen : undefined;
        }, { timeoutMs: 10_000, what: "this window's WindowDone Event" });
        assert.deepEqual(reasons.filter((r) => order.includes(r)).slice(-order.length), order);
        const paused = await query<{ name: string; paused: number }>(pooler.adminUrl, "SHOW DATABASES");
        assert.deepEqual(paused.filter((d) => d.paused !== 0), [], "the pooler is resumed");
        assert.equal(state.poolerPaused, false);
        assert.deepEqual(polled.errors, [], "the polling client waited instead of failing");

        // The last PoolerPaused is this window's (the first install's window paused the pooler too).
        const pausedEvent = (await eventsOf(env, ns, "orders")).filter((e) => e.reason === "PoolerPaused").pop()!;
        figures.push([
          mode.padEnd(12), `${(windowMs / 1000).toFixed(1)} s`.padStart(6), (pausedEvent.message!.match(/(?:released in|after) ([\d.]+m?s)/)?.[1] ?? "?").padStart(13),
          String(state.sessions?.length ?? 0).padStart(41), String(polled.errors.length).padStart(12), `${polled.longestMs} ms`.padStart(18), String(seen.length).padStart(26),
        ].join(" "));
      } finally {
        await poll.stop();
        await Promise.all(sessions.map((c) => c.end().catch(() => undefined)));
      }
    });
  }
});
