import { strict as assert } from "node:assert";
import * as k8s from "@kubernetes/client-node";
import pg from "pg";
import { pollUntil } from "../../src/util/wait.js";
import { A } from "../../src/core/annotations.js";
import { NO_PROGRESS_DEADLINE } from "../../src/core/member-patches.js";
import { startGate, waitForWebhooks, type GateProcess } from "../support/gate.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import {
  appSessions,
  deploymentsOf,
  eventsOf,
  releaseShop,
  SHOP_SERVICES,
  shopDatabase,
  shopReady,
  windowEnded,
  windowEntersStep,
  windowRecord,
  windowSettled,
  columns,
  history,
  ledger,
} from "../support/shop.js";

/** Every version of the namespace's Deployments stored from now on, as a watch sees them. */
async function watchDeployments(env: TestEnv, namespace: string): Promise<{ versions: k8s.V1Deployment[]; stop(): void }> {
  const versions: k8s.V1Deployment[] = [];
  const list = await env.apps.listNamespacedDeployment({ namespace });
  const watch = await new k8s.Watch(env.kc).watch(`/apis/apps/v1/namespaces/${namespace}/deployments`,
    { resourceVersion: list.metadata?.resourceVersion }, (_type, object: k8s.V1Deployment) => void versions.push(object), () => undefined);
  return { versions, stop: () => watch.abort() };
}

const GATE_ARGS = ["--settle", "1", "--lease-duration", "3"];

const V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };
const V2 = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int NOT NULL DEFAULT 0;\nCREATE INDEX items_stock ON items (stock);" };

describe("the migration window against the real apiserver and PostgreSQL", function () {
  let env: TestEnv;
  let gate: GateProcess;

  before(async function () {
    this.timeout(10 * 60_000);
    env = await testEnv();
    gate = await startGate(env, GATE_ARGS);
  });
  after(async () => gate?.stop());

  describe("a helm upgrade of three services sharing one database", function () {
    let ns: string;
    let url: string;

    before(async function () {
      ns = await testNamespace("window");
      await waitForWebhooks(env, ns);
      ({ url } = await shopDatabase(env, ns));
    });

    it("runs the first install's migration in a window and starts every service at its replicas", async function () {
      await releaseShop(env, ns, { schemaVersion: "1", sql: V1 });
      const state = await windowSettled(env, ns, "1");
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      await shopReady(env, ns);
      assert.deepEqual(await columns(url), ["id", "name", "price"]);
      for (const [name, d] of await deploymentsOf(env, ns)) {
        assert.equal(d.metadata?.annotations?.[A.appliedVersion], "1", name);
        assert.equal(d.metadata?.annotations?.[A.phase], "Done", name);
      }
      // The record is a MigrationWindow that kubectl shows and waits on.
      const table = await env.cluster.kubectl(["get", "migrationwindows", "-A"]);
      assert.match(table, /^NAMESPACE\s+NAME\s+GROUP\s+PHASE\s+STEP\s+FROM\s+TO\s+AGE/);
      assert.match(table, new RegExp(`${ns}\\s+shop-db\\s+shop-db\\s+Done\\s+finished\\s+1\\s`));
      await env.cluster.kubectl(["wait", "-n", ns, "--for=condition=Ready", "migrationwindow/shop-db", "--timeout=10s"]);
      await env.cluster.kubectl(["wait", "-n", ns, "--for=condition=Failed=false", "mw/shop-db", "--timeout=10s"]);
    });

    it("terminates the sessions that would block ALTER TABLE, migrates once, and starts no new pod before the commit", async function () {
      const sessions = await appSessions(url);
      const stored = await watchDeployments(env, ns);
      try {
        await releaseShop(env, ns, { schemaVersion: "2", sql: V2 });
        const state = await windowSettled(env, ns, "2");
        assert.equal(state.result, "Done", JSON.stringify(state.failure));
        await shopReady(env, ns);

        // Held, each service had no progress deadline (its own recorded), so the controller
        // marked neither the pause nor the resume with a condition; restored, it has its own.
        stored.stop();
        for (const name of Object.keys(SHOP_SERVICES)) {
          const versions = stored.versions.filter((d) => d.metadata?.name === name);
          const paused = versions.filter((d) => d.spec?.paused === true);
          assert.ok(paused.length > 0, `${name}: a held version was seen`);
          for (const d of paused) {
            assert.equal(d.spec?.progressDeadlineSeconds, NO_PROGRESS_DEADLINE, `${name} held with a deadline`);
            assert.equal(d.metadata?.annotations?.[A.progressDeadline], "600", `${name}: its own deadline recorded`);
          }
          const reasons = versions.flatMap((d) => d.status?.conditions ?? []).filter((c) => c.type === "Progressing").map((c) => c.reason);
          assert.deepEqual(reasons.filter((r) => r === "DeploymentPaused" || r === "DeploymentResumed"), [], `${name}: ${reasons.join(", ")}`);
          const after = (await deploymentsOf(env, ns)).get(name)!;
          assert.equal(after.spec?.progressDeadlineSeconds, 600, `${name}: its deadline back`);
          assert.equal(after.metadata?.annotations?.[A.progressDeadline], undefined);
          // Restored, it rolled out with the deadline still aside, and with the revision the
          // controller then gave its new ReplicaSet already written: it wrote no other.
          const revision = (o: { metadata?: k8s.V1ObjectMeta }) => o.metadata?.annotations?.["deployment.kubernetes.io/revision"];
          const rolling = versions.filter((d) => d.spec?.paused !== true && d.metadata?.annotations?.[A.appliedVersion] === "2");
          assert.ok(rolling.some((d) => d.spec?.progressDeadlineSeconds === NO_PROGRESS_DEADLINE), `${name} rolled out with no deadline`);
          const next = String(Number(revision(paused.at(-1)!)) + 1);
          assert.deepEqual([...new Set(rolling.map(revision))], [next], `${name}: the revisions seen once unpaused`);
          const sets = (await env.apps.listNamespacedReplicaSet({ namespace: ns })).items
            .filter((rs) => rs.metadata?.ownerReferences?.some((o) => o.uid === after.metadata?.uid) && rs.spec?.template?.spec?.containers[0]?.image?.endsWith(":2"));
          assert.deepEqual(sets.map(revision), [next], `${name}'s new ReplicaSet`);
        }

        // The sessions were reported and are gone.
        const apps = (state.sessions ?? []).map((s) => s.applicationName).sort();
        assert.deepEqual(apps, ["billing", "catalog", "orders"]);
        await assert.rejects(sessions[0]!.query("SELECT 1"));

        assert.deepEqual(await columns(url), ["id", "name", "price", "stock"]);
        assert.deepEqual(await history(url), [
          { file: "001-items.sql", version: "1" },
          { file: "002-stock.sql", version: "2" },
        ]);

        // No pod of the new version existed before the migration committed.
        const committed = Date.parse(state.committedAt!);
        const pods = await env.core.listNamespacedPod({ namespace: ns });
        const fresh = pods.items.filter((p) => p.spec?.containers[0]?.image?.endsWith(":2"));
        assert.equal(fresh.length, 5);
        for (const pod of fresh) {
          // creationTimestamp has second precision: compare at that resolution.
          assert.ok(Date.parse(String(pod.metadata!.creationTimestamp)) >= Math.floor(committed / 1000) * 1000, `${pod.metadata!.name} created before the commit`);
        }

        for (const [name, replicas] of Object.entries(SHOP_SERVICES)) {
          const d = (await deploymentsOf(env, ns)).get(name)!;
          assert.equal(d.spec?.replicas, replicas, name);
          assert.equal(d.metadata?.annotations?.[A.desiredReplicas], undefined);
          assert.equal(d.metadata?.annotations?.[A.appliedVersion], "2");
        }

        // The Events tell the story on each member, in order.
        const story = ["WindowOpened", "SessionsTerminated", "Migrated", "Restored", "WindowDone"];
        const reasons = await pollUntil(async () => {
          const seen = (await eventsOf(env, ns, "orders")).map((e) => e.reason);
          return story.every((r) => seen.includes(r)) ? seen : undefined;
        }, { timeoutMs: 10_000, what: "the window's Events" });
        const positions = story.map((r) => reasons.lastIndexOf(r));
        assert.ok(positions.every((p, i) => i === 0 || p > positions[i - 1]!), `events: ${reasons.join(", ")}`);
      } finally {
        stored.stop();
        await Promise.all(sessions.map((c) => c.end().catch(() => undefined)));
      }
    });

    it("releases a version bump whose SQL files are all applied without opening a window", async function () {
      const before = await windowRecord(env, ns);
      await releaseShop(env, ns, { schemaVersion: "3", sql: V2 });
      // Held paused, the old pods stay ready: wait for the release itself.
      await pollUntil(async () => [...(await deploymentsOf(env, ns)).values()].every((d) => d.metadata?.annotations?.[A.appliedVersion] === "3") || undefined,
        { timeoutMs: 30_000, what: "every service released at version 3" });
      await shopReady(env, ns);
      const after = await deploymentsOf(env, ns);
      for (const [name, d] of after) assert.equal(d.metadata?.annotations?.[A.appliedVersion], "3", name);
      assert.equal((await windowRecord(env, ns))?.id, before?.id, "no new window record");
      await pollUntil(async () => (await eventsOf(env, ns, "billing")).find((e) => e.reason === "NoMigrationPending"),
        { timeoutMs: 10_000, what: "the NoMigrationPending Event" });
      assert.equal((await history(url)).length, 2);
    });

    it("keeps the database password out of the gate's logs", function () {
      const password = env.postgres.password;
      assert.ok(password.length >= 8);
      const leaked = gate.logs.filter((line) => line.includes(password));
      assert.deepEqual(leaked, []);
      assert.ok(gate.logs.some((line) => line.includes('"window opened"')));
    });
  });

  describe("a CronJob of the database group", function () {
    it("is suspended for the migration and resumed after it; one its user suspended stays suspended", async function () {
      const ns = await testNamespace("cronjob");
      await waitForWebhooks(env, ns);
      await shopDatabase(env, ns);
      await releaseShop(env, ns, { schemaVersion: "1", sql: V1 });
      assert.equal((await windowSettled(env, ns, "1")).result, "Done");
      const cronJob = (name: string, suspend: boolean) => JSON.stringify({
        apiVersion: "batch/v1", kind: "CronJob",
        metadata: { name, annotations: { [A.database]: "shop-db" } },
        spec: { schedule: "0 0 1 1 *", suspend, jobTemplate: { spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "report", image: "registry.example/report:1" }] } } } } },
      });
      await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], cronJob("report", false));
      await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], cronJob("archive", true));
      const suspended = async () => Object.fromEntries((await env.batch.listNamespacedCronJob({ namespace: ns })).items
        .map((c) => [c.metadata!.name!, { suspend: c.spec?.suspend, phase: c.metadata?.annotations?.[A.phase] }]));

      // A file that takes long enough to look at the CronJobs while it runs.
      const migrating = windowEntersStep(env, ns, "2", "migrate");
      await releaseShop(env, ns, { schemaVersion: "2", sql: { ...V1, "002-slow.sql": "SELECT pg_sleep(2);" } });
      await migrating.entered;
      assert.deepEqual(await suspended(), {
        report: { suspend: true, phase: "Migrating" },
        archive: { suspend: true, phase: undefined },
      }, "no CronJob of the group starts a Job during the migration");
      const state = await windowSettled(env, ns, "2");
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      assert.deepEqual(state.cronJobs?.sort(), ["archive", "report"], "the record names the CronJobs the quiesce found");
      assert.deepEqual(await suspended(), {
        report: { suspend: false, phase: undefined },
        archive: { suspend: true, phase: undefined },
      }, "resumed after the window; its user's suspension is kept");
    });
  });

  describe("a migration that fails", function () {
    const BROKEN = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int;\nUPDATE items SET stock = nope;" };
    const FIXED = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int;\nALTER TABLE items ADD COLUMN x int;" };

    async function installedShop(prefix: string, onFailure: string): Promise<{ ns: string; url: string }> {
      const ns = await testNamespace(prefix);
      await waitForWebhooks(env, ns);
      const { url } = await shopDatabase(env, ns);
      await releaseShop(env, ns, { schemaVersion: "1", sql: V1, onFailure });
      assert.equal((await windowSettled(env, ns, "1")).result, "Done");
      await shopReady(env, ns);
      return { ns, url };
    }

    it("hold: stays at zero with phase Failed and an Event naming the file and error; a fix and retry complete it", async function () {
      const { ns, url } = await installedShop("fail-hold", "hold");
      await releaseShop(env, ns, { schemaVersion: "2", sql: BROKEN, onFailure: "hold" });
      const failed = await windowSettled(env, ns, "2");
      assert.equal(failed.result, undefined);
      assert.match(failed.failure!.message, /002-stock\.sql:2:26: column "nope" does not exist/);
      await env.cluster.kubectl(["wait", "-n", ns, "--for=condition=Failed", "migrationwindow/shop-db", "--timeout=10s"]);
      const row = await env.cluster.kubectl(["get", "-n", ns, "migrationwindow/shop-db", "--no-headers"]);
      assert.match(row, /^shop-db\s+shop-db\s+Failed\s+migrate\s+1\s+2\s/);
      const reason = await env.cluster.kubectl(["get", "-n", ns, "mw/shop-db", "-o", "jsonpath={.status.conditions[?(@.type==\"Failed\")].message}"]);
      assert.match(reason, /step migrate: 002-stock\.sql:2:26/);
      for (const [name, d] of await deploymentsOf(env, ns)) {
        assert.equal(d.spec?.replicas, 0, name);
        assert.equal(d.metadata?.annotations?.[A.phase], "Failed", name);
        assert.equal(d.metadata?.annotations?.[A.desiredReplicas], String(SHOP_SERVICES[name as keyof typeof SHOP_SERVICES]));
      }
      // The Event follows the record by a moment.
      const warning = await pollUntil(async () => (await eventsOf(env, ns, "orders")).find((e) => e.reason === "WindowFailed"),
        { timeoutMs: 10_000, what: "the WindowFailed Event" });
      assert.match(warning.message ?? "", /002-stock\.sql:2:26/);
      // Each file is its own transaction: the failed one left nothing behind.
      assert.deepEqual(await columns(url), ["id", "name", "price"]);

      await releaseShop(env, ns, { schemaVersion: "2", sql: FIXED, onFailure: "hold" });
      await env.cluster.kubectl(["-n", ns, "annotate", "deployment/billing", "--overwrite", `${A.retry}=1`]);
      const done = await windowEnded(env, ns, "the retried window to finish");
      assert.equal(done.result, "Done");
      assert.equal(done.attempt, 2);
      await shopReady(env, ns);
      assert.deepEqual(await columns(url), ["id", "name", "price", "stock", "x"]);
    });

    it("refuses a psql-style file that commits halfway before a window opens: an Event names the file and the fix", async function () {
      const { ns, url } = await installedShop("fail-txn", "hold");
      const HALFWAY = { ...V1, "002-stock.sql": "BEGIN; CREATE TABLE t1(id int); COMMIT; SELECT 1/0;" };
      await releaseShop(env, ns, { schemaVersion: "2", sql: HALFWAY, onFailure: "hold" });
      // On the members held when the check ran: billing, the owner, first of all.
      const warning = await pollUntil(async () => (await eventsOf(env, ns, "billing")).find((e) => e.reason === "MigrationCheckFailed"),
        { timeoutMs: 20_000, what: "the MigrationCheckFailed Event" });
      assert.match(warning.message ?? "", /002-stock\.sql:1:\d+: COMMIT controls the transaction .* split the file/);
      assert.equal((await windowRecord(env, ns))?.version, "1", "no window opened for version 2");
      assert.deepEqual((await history(url)).map((h) => h.file), ["001-items.sql"]);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        assert.equal((await client.query("SELECT to_regclass('t1') AS t")).rows[0].t, null);
      } finally {
        await client.end();
      }
    });

    it("refuses a second database group on a database another group owns, naming both, before anything stops", async function () {
      const { ns: first, url } = await installedShop("owner-a", "hold");
      const second = await testNamespace("owner-b");
      await waitForWebhooks(env, second);
      await env.core.createNamespacedSecret({ namespace: second, body: { metadata: { name: "shop-db" }, stringData: { url } } });
      // The same file names as the first group's applied ones: without the claim they would pass for applied.
      await releaseShop(env, second, { schemaVersion: "1", sql: V1, onFailure: "hold" });
      const warning = await pollUntil(async () => (await eventsOf(env, second, "billing")).find((e) => e.reason === "MigrationCheckFailed"),
        { timeoutMs: 60_000, what: "the MigrationCheckFailed Event in the second namespace" });
      assert.match(warning.message ?? "", new RegExp(`belongs to database group "${first}/shop-db" .*not to "${second}/shop-db"`));
      assert.match(warning.message ?? "", /DELETE FROM .*schema_gate_owner/);
      assert.equal(await windowRecord(env, second), undefined, "no window opened for the second group");
      for (const [name, d] of await deploymentsOf(env, second)) {
        assert.equal(d.metadata?.annotations?.[A.phase], "Pending", `${name} stays held, not released as if migrated`);
        assert.equal(d.metadata?.annotations?.[A.appliedVersion], undefined, name);
      }
      // The owner goes on as before.
      await releaseShop(env, first, { schemaVersion: "2", sql: V2, onFailure: "hold" });
      assert.equal((await windowSettled(env, first, "2")).result, "Done");
    });

    it("rollback: returns the previous template at its replicas and records nothing", async function () {
      const { ns, url } = await installedShop("fail-rollback", "rollback");
      await releaseShop(env, ns, { schemaVersion: "2", sql: BROKEN, onFailure: "rollback" });
      const state = await windowSettled(env, ns, "2");
      assert.equal(state.result, "RolledBack");
      assert.match(state.rollbackReason ?? "", /002-stock\.sql/);
      await shopReady(env, ns);
      for (const [name, d] of await deploymentsOf(env, ns)) {
        assert.equal(d.spec?.template?.spec?.containers[0]?.image, `registry.example/shop-${name}:1`, name);
        assert.equal(d.metadata?.annotations?.[A.phase], "RolledBack");
        assert.equal(d.metadata?.annotations?.[A.schemaVersion], "1");
        assert.equal(d.metadata?.annotations?.[A.appliedVersion], "1");
      }
      assert.deepEqual(await columns(url), ["id", "name", "price"]);
      assert.deepEqual((await history(url)).map((h) => h.file), ["001-items.sql"]);
      const reasons = await pollUntil(async () => {
        const seen = (await eventsOf(env, ns, "catalog")).map((e) => e.reason);
        return seen.includes("WindowFailed") && seen.includes("WindowRolledBack") ? seen : undefined;
      }, { timeoutMs: 10_000, what: "the WindowFailed and WindowRolledBack Events" });
      assert.ok(reasons.indexOf("WindowFailed") < reasons.lastIndexOf("WindowRolledBack"));
    });
  });

  describe("the Job runner", function () {
    let ns: string;

    before(async function () {
      ns = await testNamespace("jobs");
      await waitForWebhooks(env, ns);
      await shopDatabase(env, ns);
    });

    it("runs the command once in a Job made from the new pod template, then restores the group", async function () {
      await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], ledger("1"));
      const state = await windowSettled(env, ns, "1");
      assert.equal(state.result, "Done", JSON.stringify(state.failure));
      const jobs = await env.batch.listNamespacedJob({ namespace: ns });
      assert.equal(jobs.items.length, 1);
      const pod = jobs.items[0]!.spec!.template.spec!;
      assert.deepEqual(pod.containers[0]!.command, ["./ledger", "migrate", "--to", "1"]);
      assert.equal(pod.containers[0]!.image, "registry.example/ledger:1");
      assert.deepEqual(JSON.parse(JSON.stringify(pod.containers[0]!.env)), [{ name: "MODE", value: "web" }]);
      assert.equal(pod.restartPolicy, "Never");
      await shopReady(env, ns, { "ledger-1": 2 });
    });

    it("shows a failed Job like a failed SQL file: phase Failed and an Event with the Job and its exit code", async function () {
      // No node matches, so kwok leaves the pod alone and the test plays the kubelet that saw it fail.
      await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], ledger("2", { "schema-gate.test/node": "none" }));
      const pod = await pollUntil(async () => {
        const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: "schema-gate.dev/database=shop-db" });
        return pods.items.find((p) => p.spec?.containers[0]?.image === "registry.example/ledger:2");
      }, { timeoutMs: 60_000, what: "the migration Job's pod" });
      await env.core.patchNamespacedPodStatus(
        {
          name: pod.metadata!.name!,
          namespace: ns,
          body: {
            status: {
              phase: "Failed",
              containerStatuses: [{
                name: "ledger", image: "registry.example/ledger:2", imageID: "", ready: false, restartCount: 0,
                state: { terminated: { exitCode: 3, reason: "Error", message: "relation ledger_entries already exists" } },
              }],
            },
          },
        },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
      const state = await windowSettled(env, ns, "2");
      assert.equal(state.result, undefined);
      assert.match(state.failure!.message, /migration Job .* failed .*exited with code 3: relation ledger_entries already exists/s);
      for (const name of ["ledger-1", "ledger-2"]) {
        const d = await env.apps.readNamespacedDeployment({ name, namespace: ns });
        assert.equal(d.spec?.replicas, 0, name);
        assert.equal(d.metadata?.annotations?.[A.phase], "Failed", name);
      }
      const warning = await pollUntil(async () => (await eventsOf(env, ns, "ledger-2")).find((e) => e.reason === "WindowFailed"),
        { timeoutMs: 10_000, what: "the WindowFailed Event" });
      assert.match(warning.message ?? "", /exited with code 3/);
      // Ending it by hand: abort returns ledger-1 to its replicas.
      await env.cluster.kubectl(["-n", ns, "annotate", "deployment/ledger-2", `${A.abort}=true`]);
      const ended = await windowEnded(env, ns, "the aborted window to end");
      assert.equal(ended.result, "Aborted");
      await shopReady(env, ns, { "ledger-1": 2 });
    });

    it("stops a migration Job that is still running before an abort rolls the group back (it cannot commit afterwards)", async function () {
      // The Job's pod stays Pending (no node matches): a migration that is still running.
      await env.cluster.kubectl(["-n", ns, "apply", "-f", "-"], ledger("3", { "schema-gate.test/node": "none" }));
      const job = await pollUntil(async () => {
        const jobs = await env.batch.listNamespacedJob({ namespace: ns });
        return jobs.items.find((j) => j.spec?.template.spec?.containers[0]?.image === "registry.example/ledger:3");
      }, { timeoutMs: 60_000, what: "the migration Job of version 3" });
      await env.cluster.kubectl(["-n", ns, "annotate", "deployment/ledger-3", `${A.abort}=true`]);
      const ended = await windowEnded(env, ns, "the aborted window to end");
      assert.equal(ended.result, "Aborted");
      const left = await env.batch.listNamespacedJob({ namespace: ns });
      assert.ok(!left.items.some((j) => j.metadata?.name === job.metadata?.name), "the running Job was deleted");
      const pods = await env.core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${job.metadata!.name}` });
      assert.equal(pods.items.length, 0, "with its pods");
    });
  });
});
