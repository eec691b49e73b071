import { strict as assert } from "node:assert";
import { A } from "../../../src/core/annotations.js";
import { StepFailure } from "../../../src/core/window.js";
import { STEP_BODIES } from "../../../src/controller/steps.js";
import { LostLeadership } from "../../../src/k8s/leader.js";
import { drive } from "./drive.js";
import { FakeWorld } from "./fake-world.js";

const reasons = (world: FakeWorld) => world.events.map((e) => e.reason);

describe("the window controller with a PgBouncer console in the Secret, driven with fakes", () => {
  it("pauses the pooler before terminating, keeps it paused through the SQL migration, and resumes it before restoring", async () => {
    const world = new FakeWorld({ applied: "1", pooler: true });
    assert.equal(await drive(world, world.deps()), "settled");
    assert.equal(world.record.state!.result, "Done");
    assert.deepEqual(world.pooler.duringMigration, [true]);
    assert.equal(world.pooler.paused, false);
    assert.equal(world.record.state!.poolerPaused, false);
    assert.deepEqual(reasons(world), ["WindowOpened", "Quiesced", "PoolerPaused", "SessionsTerminated", "Migrated", "PoolerResumed", "Restored", "WindowDone"]);
    const paused = world.saves.findIndex((s) => s.poolerPaused);
    assert.equal(world.saves[paused]!.step, "terminate", "the pause is recorded before it is made");
  });

  it("resumes the pooler before a migration Job starts (its tool may connect through the pooler)", async () => {
    const world = new FakeWorld({ applied: "1", pooler: true, runner: "job" });
    assert.equal(await drive(world, world.deps()), "settled");
    assert.equal(world.record.state!.result, "Done");
    assert.deepEqual(world.pooler.atJobStart, [false]);
    assert.ok(reasons(world).indexOf("PoolerResumed") < reasons(world).indexOf("Migrated"));
  });

  it("resumes the pooler when the migration fails and the group is held, and when the window is then aborted", async () => {
    const world = new FakeWorld({ applied: "1", pooler: true });
    const failing = { ...STEP_BODIES, migrate: async () => { throw new StepFailure("001-items.sql:1:1: syntax error"); } };
    assert.equal(await drive(world, world.deps(), failing), "settled");
    assert.ok(world.record.state!.failure);
    assert.equal(world.pooler.paused, false, "not left paused while the window waits for the user");
    world.annotate("billing", { [A.abort]: "true" });
    assert.equal(await drive(world, world.deps(), failing), "settled");
    assert.equal(world.record.state!.result, "Aborted");
    assert.equal(world.pooler.paused, false);
  });

  it("resumes the pooler when a window is aborted while it is paused", async () => {
    const world = new FakeWorld({ applied: "1", pooler: true });
    let passes = 0;
    const abortOnce = { ...STEP_BODIES, migrate: async () => {
      if (passes++ === 2) world.annotate("billing", { [A.abort]: "true" });
      return { kind: "wait" as const, ms: 1000 };
    } };
    assert.equal(await drive(world, world.deps(), abortOnce), "settled");
    assert.equal(world.record.state!.result, "Aborted");
    assert.equal(world.pooler.paused, false);
    assert.ok(reasons(world).includes("PoolerResumed"));
  });

  it("holds the window while the pooler cannot be resumed, warning once with the command to run, and goes on once it can", async () => {
    const world = new FakeWorld({ applied: "1", pooler: true });
    world.pooler.failingResumes = 3;
    let restoredWhilePaused = false;
    const watched = { ...STEP_BODIES, restore: async (context: Parameters<typeof STEP_BODIES.restore>[0]) => {
      restoredWhilePaused ||= world.pooler.paused;
      return STEP_BODIES.restore(context);
    } };
    assert.equal(await drive(world, world.deps(), watched), "settled");
    assert.equal(world.record.state!.result, "Done");
    assert.equal(restoredWhilePaused, false, "no member came back to a paused pooler");
    const warnings = world.events.filter((e) => e.reason === "PoolerNotResumed");
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.type, "Warning");
    assert.match(warnings[0]!.message, /could not resume PgBouncer database shop \(connect ECONNREFUSED pooler:6432\), so it may still be PAUSED: client queries wait in the pooler/);
    assert.match(warnings[0]!.message, /to resume by hand run: psql "postgres:\/\/admin@pooler:6432\/pgbouncer" -c "RESUME shop"/);
  });

  it("fails the window once, with nothing recorded paused, when the console refuses the gate's login", async () => {
    const world = new FakeWorld({ applied: "1", pooler: true });
    world.pooler.refusesLogin = true;
    assert.equal(await drive(world, world.deps()), "settled");
    assert.equal(world.record.state!.failure?.step, "terminate");
    assert.match(world.record.state!.failure!.message, /refused the console login/);
    assert.equal(world.record.state!.poolerPaused, undefined);
    assert.deepEqual(reasons(world).filter((r) => r.startsWith("Pooler")), [], "no pause, so nothing to resume or warn about");
  });

  it("resumes a pooler the gate paused just before it was killed", async () => {
    const world = new FakeWorld({ applied: "1", pooler: true });
    const killed = { ...STEP_BODIES, terminate: async (context: Parameters<typeof STEP_BODIES.terminate>[0]) => {
      const result = await STEP_BODIES.terminate(context);
      if (result.kind !== "done") return result;
      world.leading = false;
      throw new LostLeadership("killed");
    } };
    assert.equal(await drive(world, world.deps(), killed), "lost");
    assert.equal(world.pooler.paused, true);
    assert.equal(world.record.state!.poolerPaused, true);
    world.leading = true;
    assert.equal(await drive(world, world.deps()), "settled");
    assert.equal(world.record.state!.result, "Done");
    assert.equal(world.pooler.paused, false);
  });
});
