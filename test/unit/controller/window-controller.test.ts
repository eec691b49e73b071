import { strict as assert } from "node:assert";
import { A } from "../../../src/core/annotations.js";
import { STEPS, StepFailure, type Step } from "../../../src/core/window.js";
import { isBeforeCommit } from "../../../src/core/window.js";
import { resumeStep } from "../../../src/core/window-policy.js";
import { STEP_BODIES, type StepBody } from "../../../src/controller/steps.js";
import { NO_PROGRESS_DEADLINE, rolloutReady } from "../../../src/core/member-patches.js";
import { LostLeadership } from "../../../src/k8s/leader.js";
import { drive, type Steps } from "./drive.js";
import { reconcileGroup } from "../../../src/controller/reconcile.js";
import type { GroupMemory } from "../../../src/controller/pass.js";
import { FakeWorld, GROUP, NAMESPACE } from "./fake-world.js";

const MEMBERS = ["billing", "catalog", "orders"];
const ORDER = [...STEPS, "finished"];
/**
 * The steps the record is written at: verify, with nothing to do once the migration's
 * session read the ledger back, is written with the restore (endsAtOnce).
 */
const WRITTEN = ORDER.filter((step) => step !== "verify");
/** Where the record is when a gate dies in `step`: at migrate for verify, whose start is not written on its own. */
const recordedAt = (step: string) => (step === "verify" ? "migrate" : step);

function assertDone(world: FakeWorld): void {
  const state = world.record.state!;
  assert.equal(state.result, "Done", JSON.stringify(state.failure));
  for (const name of MEMBERS) {
    const d = world.deployment(name);
    assert.equal(d.spec?.replicas, 2, name);
    assert.equal(d.spec?.paused, false, `${name} unpaused: the new template rolls out`);
    assert.equal(d.metadata?.annotations?.[A.phase], "Done", name);
    assert.equal(d.metadata?.annotations?.[A.appliedVersion], "2", name);
    assert.equal(d.metadata?.annotations?.[A.desiredReplicas], undefined, name);
    assert.equal(d.spec?.progressDeadlineSeconds, 600, `${name}'s progress deadline given back`);
    assert.equal(d.metadata?.annotations?.[A.progressDeadline], undefined, name);
  }
  assert.deepEqual([...world.applied.values()], world.files.map(() => 1), "every SQL file applied exactly once");
  assert.equal(world.flag.on, false, "maintenance off at the end");
  assert.equal(world.events.filter((e) => e.reason === "WindowDone").length, 1);
}

/** The step body replaced for one step, the others real. */
const replacing = (step: Step, body: StepBody): Steps => ({ ...STEP_BODIES, [step]: body });

describe("the window controller, driven with fakes", () => {
  it("runs a full window: the steps in order, the story told, the migration once, the group restored", async () => {
    const world = new FakeWorld({ applied: "1" });
    const serving: number[] = [];
    const rollingOut: string[] = [];
    const watched: Steps = {
      ...replacing("maintenance-on", async (context) => {
        serving.push(...MEMBERS.map((name) => world.deployment(name).spec?.replicas ?? 0));
        return STEP_BODIES["maintenance-on"](context);
      }),
      readiness: async (context) => {
        for (const name of MEMBERS) {
          const d = world.deployment(name);
          rollingOut.push(`${d.spec?.paused} ${d.spec?.progressDeadlineSeconds} ${d.metadata?.annotations?.["deployment.kubernetes.io/revision"]}`);
        }
        return STEP_BODIES.readiness(context);
      },
    };
    assert.equal(await drive(world, world.deps(), watched), "settled");
    assert.ok(rollingOut.length > 0);
    assert.deepEqual([...new Set(rollingOut)], [`false ${NO_PROGRESS_DEADLINE} 3`],
      "unpaused with the progress deadline still aside and the revision its new ReplicaSet gets, until the rollouts are done");
    assertDone(world);
    assert.deepEqual(serving, [2, 2, 2], "the old pods served until quiesce (the hold paused, it did not stop them)");
    assert.ok((world.record.state!.timings.drain ?? 0) > 0, "drain waited for the old pods to go");
    assert.deepEqual(world.saves.map((s) => s.step), WRITTEN);
    assert.deepEqual(world.events.map((e) => e.reason), ["WindowOpened", "Quiesced", "SessionsTerminated", "Migrated", "Restored", "WindowDone"]);
    assert.deepEqual(world.record.state!.sessions?.map((s) => s.pid), [42]);
    assert.ok(Date.parse(world.record.state!.committedAt!) >= Date.parse(world.record.state!.quiescedAt!));
    // readiness waited (the fake's pods lag their replicas) without sleeping on the worker.
    assert.ok((world.record.state!.timings.readiness ?? 0) > 0);
    assert.deepEqual(world.progress, STEPS.slice(1));
    assert.equal(world.podsStopped, 1, "the quiesce stopped the pods itself, once every member was at zero");
  });

  it("runs a Job-runner window, looking at the Job until it completes", async () => {
    const world = new FakeWorld({ applied: "1", runner: "job" });
    assert.equal(await drive(world, world.deps()), "settled");
    assert.equal(world.record.state!.result, "Done");
    assert.equal(world.jobs.size, 1);
    assert.ok(world.events.some((e) => e.reason === "Migrated" && /migration Job migrate-shop-db-/.test(e.message)));
  });

  it("releases a hold with no window when the SQL runner has nothing pending", async () => {
    const world = new FakeWorld({ applied: "1" });
    world.applied.set("002-stock.sql", 1);
    assert.equal(await drive(world, world.deps()), "settled");
    assert.equal(world.record.state, undefined, "no window record");
    assert.deepEqual(world.events.map((e) => e.reason), ["NoMigrationPending"]);
    for (const name of MEMBERS) assert.equal(world.deployment(name).metadata?.annotations?.[A.phase], "Done");
  });

  for (const step of STEPS) {
    for (const when of ["before", "after"] as const) {
      it(`resumes after the gate was killed ${when} doing step ${step}`, async () => {
        const world = new FakeWorld({ applied: "1" });
        const deps = world.deps();
        const killed = replacing(step, async (context) => {
          if (when === "after") await STEP_BODIES[step](context);
          world.leading = false; // the process is gone: nothing it does from here counts
          throw new LostLeadership("killed");
        });
        assert.equal(await drive(world, deps, killed), "lost");
        assert.equal(world.record.state!.step, recordedAt(step));
        world.leading = true; // a new process, with nothing remembered
        assert.equal(await drive(world, world.deps()), "settled");
        assertDone(world);
        assert.equal(world.events.filter((e) => e.reason === "WindowOpened").length, 1);
      });
    }
  }

  for (const step of STEPS) {
    it(`holds the group when step ${step} fails (on-failure: hold), and a retry finishes it from ${resumeStep({ step, message: "", at: "" })}`, async () => {
      const world = new FakeWorld({ applied: "1" });
      let failures = 0;
      const failing = replacing(step, async (context) => {
        if (failures++ === 0) throw new StepFailure(`${step} broke`);
        return STEP_BODIES[step](context);
      });
      assert.equal(await drive(world, world.deps(), failing), "settled");
      const failed = world.record.state!;
      assert.equal(failed.failure?.step, step);
      assert.equal(failed.result, undefined);
      assert.ok(world.events.some((e) => e.type === "Warning" && e.reason === "WindowFailed" && e.message.includes(`${step} broke`)));
      // Members still held (up to restore) are marked Failed; after restore they are released.
      const marked = STEPS.indexOf(step) <= STEPS.indexOf("restore");
      for (const name of MEMBERS) assert.equal(world.deployment(name).metadata?.annotations?.[A.phase] === "Failed", marked, name);

      world.annotate("billing", { [A.retry]: "1" });
      assert.equal(await drive(world, world.deps(), failing), "settled");
      assertDone(world);
      assert.equal(world.saves.find((s) => s.attempt === 2)?.step, resumeStep(failed.failure));
    });

    it(`${isBeforeCommit(step) ? "rolls back" : "holds (the migration is in)"} when step ${step} fails under on-failure: rollback`, async () => {
      const world = new FakeWorld({ applied: "1", onFailure: "rollback" });
      const failing = replacing(step, async () => {
        throw new StepFailure(`${step} broke`);
      });
      assert.equal(await drive(world, world.deps(), failing), "settled");
      const state = world.record.state!;
      if (!isBeforeCommit(step)) {
        assert.equal(state.failure?.step, step);
        return;
      }
      assert.equal(state.result, "RolledBack");
      assert.equal(world.flag.on, false);
      for (const name of MEMBERS) {
        const d = world.deployment(name);
        assert.equal(d.metadata?.annotations?.[A.phase], "RolledBack", name);
        assert.equal(d.metadata?.annotations?.[A.schemaVersion], "1", name);
        assert.equal(d.spec?.replicas, 2, name);
        assert.equal((d.spec?.template?.spec?.containers ?? [])[0]?.image, `shop/${name}:1`, name);
        assert.equal(d.spec?.template?.metadata?.labels?.["pod-template-hash"], undefined);
      }
      if (step !== "migrate") assert.equal(world.applied.get("002-stock.sql"), undefined, "nothing migrated");
    });

    it(`writes nothing and tells nothing once leadership is lost in step ${step}`, async () => {
      const world = new FakeWorld({ applied: "1" });
      const deposed = replacing(step, async (context) => {
        world.leading = false;
        return STEP_BODIES[step](context);
      });
      // Deposed, a pass stops at its first write (lost) or, for a step that only reads, at the next pass (settled).
      assert.ok(["lost", "settled"].includes(await drive(world, world.deps(), deposed)));
      assert.equal(world.writesWhileDeposed, 0);
      assert.equal(world.record.state!.step, recordedAt(step), "the record stays where the new leader resumes");
    });
  }

  it("holds instead of rolling back when a redone migrate fails after the migration is in (on-failure: rollback)", async () => {
    const world = new FakeWorld({ applied: "1", onFailure: "rollback" });
    // As a successor's redo of migrate can fail on its way (a session it may not end, say) with the files all in.
    const failsAfterCommit = replacing("migrate", async (context) => {
      await STEP_BODIES.migrate(context);
      throw new StepFailure("SessionsNotTerminated: pid 7 (user postgres) may not be ended by the gate");
    });
    assert.equal(await drive(world, world.deps(), failsAfterCommit), "settled");
    const state = world.record.state!;
    assert.equal(state.failure?.step, "migrate");
    assert.equal(state.result, undefined, "not RolledBack: the schema is migrated");
    for (const name of MEMBERS) {
      assert.equal(world.deployment(name).metadata?.annotations?.[A.phase], "Failed", name);
      assert.equal((world.deployment(name).spec?.template?.spec?.containers ?? [])[0]?.image, `shop/${name}:2`, `${name} keeps the new template`);
    }
  });

  it("aborts before the commit: every member back, nothing migrated, abort cleared", async () => {
    const world = new FakeWorld({ applied: "1" });
    const abortAtDrain = replacing("drain", async () => {
      world.annotate("orders", { [A.abort]: "true" });
      return { kind: "wait", ms: 100 };
    });
    assert.equal(await drive(world, world.deps(), abortAtDrain), "settled");
    assert.equal(world.record.state!.result, "Aborted");
    assert.equal(world.applied.get("002-stock.sql"), undefined);
    assert.equal(world.deployment("orders").metadata?.annotations?.[A.abort], undefined);
    assert.equal(world.deployment("orders").metadata?.annotations?.[A.phase], "Aborted");
    assert.equal(world.flag.on, false);
  });

  it("expires a window whose deadline passed before the commit, and holds it", async () => {
    const world = new FakeWorld({ applied: "1" });
    const stuck = replacing("drain", async () => ({ kind: "wait", ms: 60_000 }));
    assert.equal(await drive(world, world.deps(), stuck), "settled");
    assert.match(world.record.state!.failure!.message, /deadline .* passed during step drain/);
  });

  it("completes a retry made long after the first deadline passed (the retry gets a fresh deadline)", async () => {
    const world = new FakeWorld({ applied: "1" });
    let failures = 0;
    const failing = replacing("migrate", async (context) => {
      if (failures++ === 0) throw new StepFailure("syntax error at 002-stock.sql:1:5");
      return STEP_BODIES.migrate(context);
    });
    assert.equal(await drive(world, world.deps(), failing), "settled");
    world.now += 2 * 3_600_000; // the fix took two hours; the window's timeout is 30 min
    world.annotate("billing", { [A.retry]: "1" });
    assert.equal(await drive(world, world.deps(), failing), "settled");
    assertDone(world);
  });

  it("does not release a member held for another version: two racing upgrades get one window each", async () => {
    const world = new FakeWorld({ applied: "1", versions: { orders: "3" } });
    const restored: string[][] = [];
    const watching = replacing("restore", async (context) => {
      const result = await STEP_BODIES.restore(context);
      restored.push(MEMBERS.map((name) => `${name}@${world.deployment(name).metadata?.annotations?.[A.appliedVersion]}`));
      return result;
    });
    assert.equal(await drive(world, world.deps(), watching), "settled");
    assert.deepEqual(restored[0], ["billing@2", "catalog@2", "orders@1"], "the v2 window leaves orders (v3) held");
    const orders = world.deployment("orders");
    assert.equal(orders.metadata?.annotations?.[A.appliedVersion], "3", "then orders gets its own version, never v2");
    assert.equal(orders.spec?.replicas, 2);
  });

  it("masks credentials in a failure before it reaches the record, the members' message and the Events", async () => {
    const world = new FakeWorld({ applied: "1" });
    const leaky = replacing("migrate", async () => {
      throw new StepFailure("migration Job failed; last log lines:\nconnecting to postgres://app:hunter2@db/shop: refused");
    });
    assert.equal(await drive(world, world.deps(), leaky), "settled");
    const texts = [
      world.record.state!.failure!.message,
      world.deployment("orders").metadata?.annotations?.[A.message] ?? "",
      ...world.events.map((e) => e.message),
    ];
    assert.ok(texts.some((t) => t.includes("postgres://app:***@db/shop")));
    for (const text of texts) assert.ok(!text.includes("hunter2"), text);
  });

  it("never rolls back a migration that committed: a gate killed after the commit, restarted past the deadline, finishes the window", async () => {
    const world = new FakeWorld({ applied: "1", onFailure: "rollback" });
    const killedAfterCommit = replacing("migrate", async (context) => {
      await STEP_BODIES.migrate(context);
      world.leading = false;
      throw new LostLeadership("killed just after the commit");
    });
    assert.equal(await drive(world, world.deps(), killedAfterCommit), "lost");
    world.now += 2 * 3_600_000; // the new leader comes long after the deadline
    world.leading = true;
    assert.equal(await drive(world, world.deps()), "settled");
    assertDone(world);
  });

  it("never rolls back under an abort while the migration Job may still commit: the Job is stopped first", async () => {
    const world = new FakeWorld({ applied: "1", runner: "job", onFailure: "rollback" });
    world.jobPolls = 1000; // the Job runs until stopped
    const abortWhileMigrating = replacing("migrate", async (context) => {
      const result = await STEP_BODIES.migrate(context);
      if (world.jobs.size > 0 && !world.annotated) {
        world.annotated = true;
        world.annotate("orders", { [A.abort]: "true" });
      }
      return result;
    });
    assert.equal(await drive(world, world.deps(), abortWhileMigrating), "settled");
    assert.equal(world.record.state!.result, "Aborted");
    assert.deepEqual([...world.jobs.values()].map((j) => j.stopped), [true], "the running Job was stopped before the rollback");
  });

  it("an abort that comes when the migration Job has already completed finishes the window instead", async () => {
    const world = new FakeWorld({ applied: "1", runner: "job", onFailure: "rollback" });
    const abortAfterJobCompleted = replacing("migrate", async (context) => {
      const job = [...world.jobs.values()][0];
      if (job && job.polls >= 2 && !world.annotated) {
        world.annotated = true;
        job.polls = 99; // it completes on the next look
        world.annotate("orders", { [A.abort]: "true" });
        return { kind: "wait", ms: 100 };
      }
      return STEP_BODIES.migrate(context);
    });
    assert.equal(await drive(world, world.deps(), abortAfterJobCompleted), "settled");
    assert.equal(world.record.state!.result, "Done", "the schema is migrated: no rollback onto it");
  });

  it("releases a first install's members at zero when its window is rolled back (no earlier revision)", async () => {
    const world = new FakeWorld({ onFailure: "rollback" });
    const failing = replacing("migrate", async () => {
      throw new StepFailure("bad SQL");
    });
    assert.equal(await drive(world, world.deps(), failing), "settled");
    // No applied version: nothing to roll back to, so the window holds for the user.
    assert.equal(world.record.state!.failure?.step, "migrate");
    world.annotate("billing", { [A.abort]: "true" });
    assert.equal(await drive(world, world.deps(), failing), "settled");
    assert.equal(world.record.state!.result, "Aborted");
    for (const name of MEMBERS) {
      const d = world.deployment(name);
      assert.equal(d.spec?.replicas, 0, name);
      assert.equal(d.metadata?.annotations?.[A.phase], "Aborted", name);
    }
  });

  it("waits from the caches: drain and readiness poll them, and read the API only to confirm", async () => {
    for (const podCacheSeesAll of [true, false]) {
      const world = new FakeWorld({ applied: "1", lagMs: 3000 });
      world.podCacheSeesAll = podCacheSeesAll;
      assert.equal(await drive(world, world.deps()), "settled");
      assertDone(world);
      const during = (step: string) => world.apiReads.filter((s) => s === step).length;
      assert.ok((world.record.state!.timings.drain ?? 0) >= 3000, "drain waited about 30 polls");
      assert.equal(world.record.state!.podsListedAt, "1", "the quiesce recorded the version of the pods it read");
      // A pod cache that has seen past that version confirms the drain by itself; one that has not, the API does.
      assert.equal(during("drain"), podCacheSeesAll ? 0 : 1, podCacheSeesAll ? "no API read ended the drain" : "one API read confirmed the drain");
      assert.equal(during("readiness"), 1, "one API read confirmed the rollouts");
    }
  });

  it("restores the members the API shows, not the cache: one the cache does not show yet is not left at zero", async () => {
    const world = new FakeWorld({ applied: "1" });
    // From the commit on, the Deployment cache shows none of the group (a watch restarting, say).
    const blindAfterVerify = replacing("verify", async (context) => {
      const result = await STEP_BODIES.verify(context);
      world.frozenCache = { group: { ...world.group(), deployments: [] }, pods: [] };
      return result;
    });
    assert.equal(await drive(world, world.deps(), blindAfterVerify), "settled");
    world.frozenCache = undefined;
    assertDone(world);
  });

  it("restores from a cache that shows every member quiesced: the members' patches do not wait for a LIST", async () => {
    const world = new FakeWorld({ applied: "1" });
    world.restoreReadWaits = true;
    assert.equal(await drive(world, world.deps()), "settled");
    assertDone(world);
    assert.equal(world.restoreWaitedForRead, false, "the restore's patches were sent while the LIST that confirms them was out");
    assert.equal(world.apiReads.filter((s) => s === "restore").length, 1, "one LIST beside the patches");
  });

  it("restores a member the cache does not show yet, found by the LIST beside the restore's patches", async () => {
    const world = new FakeWorld({ applied: "1" });
    world.restoreReadWaits = true;
    // From the commit on, the Deployment cache lacks orders (added to the group late, a watch behind): the rest show the quiesce.
    const behindAfterVerify = replacing("verify", async (context) => {
      const result = await STEP_BODIES.verify(context);
      const group = world.group();
      world.frozenCache = { group: { ...group, deployments: group.deployments.filter((d) => d.metadata!.name !== "orders") }, pods: [] };
      return result;
    });
    assert.equal(await drive(world, world.deps(), behindAfterVerify), "settled");
    world.frozenCache = undefined;
    assertDone(world);
    const restored = world.events.filter((e) => e.reason === "Restored").map((e) => e.message);
    assert.ok(restored.length > 0 && restored.every((m) => m.endsWith("replicas restored: billing, catalog, orders")), `the window's restore brought orders back: ${restored.join("; ")}`);
    assert.equal(world.restoreWaitedForRead, false, "the cached members' patches went before the LIST that found orders");
  });

  it("restores from the cache even when the LIST beside it fails: the step looks again, and the story says who came back", async () => {
    const world = new FakeWorld({ applied: "1" });
    world.failingRestoreReads = 1;
    assert.equal(await drive(world, world.deps()), "settled");
    assertDone(world);
    assert.equal(world.failingRestoreReads, 0, "the LIST beside the restore failed once");
    assert.equal(world.events.filter((e) => e.reason === "StepRetrying").length, 0, "no retry warning for a read looked at again");
    const restored = world.events.filter((e) => e.reason === "Restored").map((e) => e.message);
    assert.deepEqual(restored.map((m) => m.split(": ").pop()), ["billing, catalog, orders"], "the cached round's restore is told once");
  });

  it("opens the migration's session from the quiesce, and asks again once the pods are gone, with the window's time left; not for a Job", async () => {
    const world = new FakeWorld({ applied: "1", lagMs: 3000 });
    assert.equal(await drive(world, world.deps()), "settled");
    assertDone(world);
    const window = world.record.state!;
    const started = (step: "quiesce" | "terminate") => Date.parse(window.startedAt) + (window.timings["maintenance-on"] ?? 0) +
      (step === "terminate" ? (window.timings.quiesce ?? 0) + (window.timings.drain ?? 0) : 0);
    const deadline = Date.parse(window.deadline);
    // SessionsAhead keeps the first while it is young and alive: the second call opens one only if it is not.
    assert.deepEqual(world.sessionsOpenedAhead, [
      { statementTimeoutMs: deadline - started("quiesce"), podsLeft: 3 },
      { statementTimeoutMs: deadline - started("terminate"), podsLeft: 0 },
    ], "its statements may run until the window's deadline");

    const job = new FakeWorld({ applied: "1", runner: "job" });
    assert.equal(await drive(job, job.deps()), "settled");
    assert.deepEqual(job.sessionsOpenedAhead, [], "a Job runs the migration on its own connection");
  });

  it("suspends the group's CronJobs for the window and resumes them; one its user suspended stays suspended", async () => {
    const world = new FakeWorld({ applied: "1", cronJobs: { report: { suspend: false }, archive: { suspend: true } } });
    const during: Record<string, boolean | undefined> = {};
    const watched = replacing("migrate", async (context) => {
      for (const [name, c] of world.cronJobs) during[name] = c.spec?.suspend;
      return STEP_BODIES.migrate(context);
    });
    assert.equal(await drive(world, world.deps(), watched), "settled");
    assertDone(world);
    assert.deepEqual(during, { report: true, archive: true }, "no CronJob starts a Job during the migration");
    assert.equal(world.cronJobs.get("report")!.spec!.suspend, false, "resumed after the window");
    assert.equal(world.cronJobs.get("archive")!.spec!.suspend, true, "its user's suspension is kept");
    assert.deepEqual(world.record.state!.cronJobs!.sort(), ["archive", "report"]);
    assert.ok(world.cronJobReads.includes("drain") && world.cronJobReads.includes("restore"), "the drain and the restore read them from the API");
  });

  it("reads the SQL files for migrate ahead, in the drain, as one read of the window's attempt; the opening reads its own", async () => {
    const world = new FakeWorld({ applied: "1" });
    assert.equal(await drive(world, world.deps()), "settled");
    assertDone(world);
    const key = `${world.record.state!.id}/${world.record.state!.attempt}`;
    assert.deepEqual(world.fileReads.filter((r) => r.window === undefined).map((r) => r.step), [undefined], "the opening: afresh, before any window");
    const ahead = world.fileReads.filter((r) => r.window !== undefined);
    assert.equal(ahead[0]!.step, "drain", "first asked for while the pods stop");
    assert.ok(ahead.some((r) => r.step === "migrate"), "migrate asks with the same key, so the adapter hands it the drain's read");
    assert.ok(ahead.every((r) => r.window === key), JSON.stringify(ahead));
  });

  it("reads CronJobs from the API only at quiesce for a group that has none (the read is slow inside the downtime)", async () => {
    const world = new FakeWorld({ applied: "1" });
    assert.equal(await drive(world, world.deps()), "settled");
    assertDone(world);
    assert.deepEqual(world.record.state!.cronJobs, []);
    assert.deepEqual(world.cronJobReads, ["quiesce"]);
  });

  it("ends neither the drain nor readiness on a cache that lags the API", async () => {
    const world = new FakeWorld({ applied: "1" });
    const confirmed: Record<string, boolean> = {};
    const checked = (step: "drain" | "readiness", isDone: () => boolean): StepBody => async (context) => {
      // Caches that still show the group as it was when the window quiesced it: no pods, every member "ready" at zero.
      world.frozenCache ??= { group: world.group(), pods: [] };
      const result = await STEP_BODIES[step](context);
      if (result.kind === "done") confirmed[step] = isDone();
      return result;
    };
    const steps = {
      ...STEP_BODIES,
      drain: checked("drain", () => world.podsLeft().length === 0),
      readiness: checked("readiness", () => MEMBERS.every((name) => rolloutReady(world.deployment(name)))),
    };
    assert.equal(await drive(world, world.deps(), steps), "settled");
    assertDone(world);
    assert.deepEqual(confirmed, { drain: true, readiness: true }, "each ended only once the API showed it");
  });

  it("reads no member from the API for a group the cache shows with nothing held", async () => {
    const world = new FakeWorld({ applied: "1" });
    assert.equal(await drive(world, world.deps()), "settled");
    world.apiReads = [];
    assert.deepEqual(await reconcileGroup(world.deps(), NAMESPACE, GROUP, {}), {});
    assert.deepEqual(world.apiReads, []);
  });

  it("reads the window record from the API once per leadership: later passes use the copy they wrote", async () => {
    const world = new FakeWorld({ applied: "1", lagMs: 3000 });
    const deps = world.deps();
    let reads = 0;
    const read = deps.records.read;
    deps.records.read = (...args) => (reads++, read(...args));
    const memory: GroupMemory = {};
    assert.equal(await drive(world, deps, STEP_BODIES, memory), "settled");
    assertDone(world);
    assert.equal(reads, 1, `one read for a whole window of ${world.saves.length} writes and some 60 passes`);
  });

  it("starts drain, terminate, verify and readiness while their record is written; every other step changes nothing before its record is in", async () => {
    for (const runner of ["sql", "job"] as const) {
      const world = new FakeWorld({ applied: "1", runner, lagMs: 300 });
      world.saveLagMs = 2;
      const ahead = new Set<string>();
      const watched = Object.fromEntries(Object.entries(STEP_BODIES).map(([step, body]) => [step, (context: Parameters<StepBody>[0]) => {
        world.current = step;
        if (world.record.state?.step !== step) ahead.add(step);
        return body(context).finally(() => (world.current = undefined));
      }])) as Steps;
      assert.equal(await drive(world, world.deps(), watched), "settled");
      if (runner === "sql") assertDone(world);
      else assert.equal(world.record.state!.result, "Done");
      const aheadSteps = ["drain", "terminate", "verify", "readiness"];
      for (const step of aheadSteps) assert.ok(ahead.has(step), `${runner}: ${step} started before its record was in`);
      const early = world.writeSteps.filter(({ step, record }) => step !== undefined && !aheadSteps.includes(step) && record !== step);
      assert.deepEqual(early, [], `${runner}: writes made before the record said their step`);
      assert.deepEqual(world.recordStepAt.get("migration"), ["migrate"], `${runner}: the record says migrate before the migration starts`);
      if (runner === "sql") assert.ok(world.applyStartedAt.some((step) => step !== "migrate"), "its session gets ready while the record is written");
      assert.ok(world.recordStepAt.get("restore them")!.every((step) => step === "restore"), `${runner}: and restore before a member comes back`);
    }
  });

  it("verifies by the migration session's own read of the ledger, and asks the ledger again only for a record without it", async () => {
    const world = new FakeWorld({ applied: "1" });
    assert.equal(await drive(world, world.deps()), "settled");
    assertDone(world);
    assert.equal(world.ledgerAsks, 0, "no session of its own for verify");
    assert.ok(!world.saves.some((s) => s.step === "verify"), "nor a write of the record: the restore's carries its start");

    const resumed = new FakeWorld({ applied: "1" });
    const olderRecord = replacing("migrate", async (context) => {
      const result = await STEP_BODIES.migrate(context);
      return result.kind === "done" ? { kind: "done", outcome: { ...result.outcome, verified: undefined } } : result;
    });
    assert.equal(await drive(resumed, resumed.deps(), olderRecord), "settled");
    assertDone(resumed);
    assert.equal(resumed.ledgerAsks, 1);
    assert.ok(resumed.saves.some((s) => s.step === "verify"), "a verify that asks the ledger is written as it starts");

    const unrecorded = new FakeWorld({ applied: "1" });
    unrecorded.loseLedgerVersion = true;
    assert.equal(await drive(unrecorded, unrecorded.deps()), "settled");
    assert.equal(unrecorded.record.state!.failure?.step, "verify");
    assert.match(unrecorded.record.state!.failure!.message, /schema version 2 is not recorded as applied after the migration/);
  });

  it("redoes from the API's record when a write behind a step fails: a lost write repeats a step, never skips one", async () => {
    const world = new FakeWorld({ applied: "1" });
    world.saveLagMs = 2;
    let failures = 0;
    // The write after the migration's (it carries verify's start with the restore's).
    world.failSave = (state) => (state.step === "restore" && failures++ === 0 ? new Error("connect ECONNRESET 10.96.0.1:443") : undefined);
    const deps = world.deps();
    let reads = 0;
    const read = deps.records.read;
    deps.records.read = (...args) => (reads++, read(...args));
    const memory: GroupMemory = {};
    const errors: string[] = [];
    for (let pass = 0; pass < 500; pass++) {
      let requeue: number | undefined;
      try {
        ({ requeueAfterMs: requeue } = await reconcileGroup(deps, NAMESPACE, GROUP, memory));
      } catch (error) {
        errors.push((error as Error).message); // the controller logs it and passes again after a second
        requeue = 1000;
      }
      if (requeue === undefined) break;
      world.now += requeue;
    }
    assertDone(world);
    // The failed write is noticed by the next pass (read again from the API: the record at
    // migrate) or by the restore's first write, which waits for it and fails the pass.
    assert.ok(errors.every((message) => message === "connect ECONNRESET 10.96.0.1:443"), errors.join("; "));
    assert.equal(reads, 2);
    assert.deepEqual(world.recordStepAt.get("migration"), ["migrate", "migrate"], "migrate ran again, with nothing left to apply");
    assert.equal(world.applied.get("002-stock.sql"), 1);
    assert.ok(world.recordStepAt.get("restore them")!.every((step) => step === "restore"));
  });

  it("drops its copy of the record when a write is refused (another replica wrote it), and reads it again", async () => {
    const world = new FakeWorld({ applied: "1" });
    const deps = world.deps();
    let reads = 0;
    const read = deps.records.read;
    deps.records.read = (...args) => (reads++, read(...args));
    const memory: GroupMemory = {};
    while (!world.record.state) world.now += (await reconcileGroup(deps, NAMESPACE, GROUP, memory)).requeueAfterMs ?? 0;
    world.record = { ...world.record, version: "written-by-another-replica" };
    assert.equal(await drive(world, deps, STEP_BODIES, memory), "lost");
    assert.equal(memory.record, undefined);
    assert.equal(await drive(world, deps, STEP_BODIES, memory), "settled");
    assertDone(world);
    assert.equal(reads, 2, "read again after the refused write");
  });
});
