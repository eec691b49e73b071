import { strict as assert } from "node:assert";
import { STEPS } from "../../src/core/window.js";
import { pollUntil, sleep } from "../../src/util/wait.js";
import { A } from "../../src/core/annotations.js";
import { startGate, waitForWebhooks, type GateProcess } from "../support/gate.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { columns, deploymentsOf, eventsOf, history, releaseShop, SHOP_SERVICES, shopDatabase, shopReady, windowSettled } from "../support/shop.js";

const GATE_ARGS = ["--settle", "1", "--lease-duration", "3"];
const V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };

/**
 * One gate SIGKILLed at the start of each step and started again, and PostgreSQL
 * restarted inside a migration: the window resumes from its record and converges, every
 * file applied once. With the two-replica runs in failover.test.ts this is
 * `npm run test:failover` (CI runs it after `npm test`).
 */
describe("a gate killed or a database restarted mid-window, against the real apiserver and PostgreSQL", function () {
  let env: TestEnv;
  let gate: GateProcess;

  before(async function () {
    this.timeout(10 * 60_000);
    env = await testEnv();
    gate = await startGate(env, GATE_ARGS);
  });
  after(async () => gate?.stop());

  describe("a gate killed or a database restarted mid-window", function () {
    let ns: string;
    let url: string;
    let sql: Record<string, string> = { ...V1 };
    let version = 1;

    before(async function () {
      ns = await testNamespace("resume");
      await waitForWebhooks(env, ns);
      ({ url } = await shopDatabase(env, ns));
      await releaseShop(env, ns, { schemaVersion: "1", sql });
      assert.equal((await windowSettled(env, ns, "1")).result, "Done");
      await shopReady(env, ns);
    });

    /** Starts the next upgrade and resolves when the gate logs the start of `step`. */
    async function upgradeUntil(step: string, file: string): Promise<string> {
      version++;
      sql = { ...sql, [`${String(version).padStart(3, "0")}-c${version}.sql`]: file };
      const seen = gate.logs.length;
      await releaseShop(env, ns, { schemaVersion: String(version), sql });
      await pollUntil(
        async () => gate.logs.slice(seen).some((line) => line.includes('"step started"') && line.includes(`"step":"${step}"`)) || undefined,
        { timeoutMs: 60_000, intervalMs: 20, what: `the gate to start step ${step}` },
      );
      return String(version);
    }

    async function assertConverged(target: string): Promise<void> {
      const state = await windowSettled(env, ns, target);
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      await shopReady(env, ns);
      for (const [name, d] of await deploymentsOf(env, ns)) {
        assert.equal(d.spec?.replicas, SHOP_SERVICES[name as keyof typeof SHOP_SERVICES], name);
        assert.equal(d.metadata?.annotations?.[A.appliedVersion], target, name);
      }
      // Every file applied exactly once, each by the version that brought it.
      const rows = await history(url);
      assert.equal(rows.length, Object.keys(sql).length);
      assert.equal(new Set(rows.map((r) => r.file)).size, rows.length);
    }

    for (const step of STEPS) {
      it(`converges after a SIGKILL at the start of step ${step}`, async function () {
        const target = await upgradeUntil(step, `ALTER TABLE items ADD COLUMN c${version + 1} int;`);
        await gate.stop("SIGKILL");
        gate = await startGate(env, GATE_ARGS);
        await assertConverged(target);
        assert.ok((await columns(url)).includes(`c${target}`));
      });
    }

    it("keeps no partial schema when PostgreSQL restarts during the migration, and completes on its own", async function () {
      const target = await upgradeUntil("migrate", `ALTER TABLE items ADD COLUMN c${version + 1} int;\nSELECT pg_sleep(2);`);
      await sleep(500);
      await env.postgres.restart("fast");
      await assertConverged(target);
      assert.ok((await columns(url)).includes(`c${target}`));
      await pollUntil(async () => (await eventsOf(env, ns, "orders")).find((e) => e.reason === "DatabaseUnavailable"),
        { timeoutMs: 10_000, what: "the DatabaseUnavailable Event" });
    });
  });

});
