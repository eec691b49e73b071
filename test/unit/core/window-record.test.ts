import { strict as assert } from "node:assert";
import { windowStatus } from "../../../src/core/window-record.js";
import type { WindowState } from "../../../src/core/window.js";

const T0 = new Date("2026-01-01T00:00:00Z");
const T1 = new Date("2026-01-01T00:05:00Z");

function state(overrides: Partial<WindowState> = {}): WindowState {
  return {
    id: "shop-db-1", group: "shop-db", version: "2", fromVersion: "1", owner: "billing",
    runner: { kind: "sql", configMap: "sql" }, onFailure: "hold", maintenance: true,
    startedAt: T0.toISOString(), deadline: T1.toISOString(), step: "migrate", attempt: 1, retryToken: "", timings: {}, ...overrides,
  };
}

const summary = (s: ReturnType<typeof windowStatus>) => Object.fromEntries(s.conditions.map((c) => [c.type, `${c.status}/${c.reason}`]));

describe("the MigrationWindow status", () => {
  const cases: Array<[string, Partial<WindowState>, string, Record<string, string>]> = [
    ["running", {}, "Running", { Ready: "False/WindowOpen", Progressing: "True/Step", Failed: "False/Running" }],
    ["failed and held", { failure: { step: "migrate", message: "002.sql:1:5: boom", at: "" } }, "Failed", { Ready: "False/WindowFailed", Progressing: "False/WaitingForUser", Failed: "True/StepFailed" }],
    ["done", { result: "Done", step: "finished" }, "Done", { Ready: "True/Migrated", Progressing: "False/Done", Failed: "False/Done" }],
    ["rolled back", { result: "RolledBack", ending: "rollback", rollbackReason: "boom", step: "finished" }, "RolledBack", { Ready: "False/RolledBack", Progressing: "False/RolledBack", Failed: "True/RolledBack" }],
    ["aborted", { result: "Aborted", ending: "abort", step: "finished" }, "Aborted", { Ready: "False/Aborted", Progressing: "False/Aborted", Failed: "False/Aborted" }],
  ];
  for (const [title, overrides, phase, conditions] of cases) {
    it(`says ${phase} with the conditions of a window ${title}`, () => {
      const status = windowStatus(state(overrides), undefined, T0);
      assert.equal(status.phase, phase);
      assert.deepEqual(summary(status), conditions);
      assert.equal(status.window.id, "shop-db-1");
      assert.deepEqual([status.version, status.fromVersion, status.step], ["2", "1", overrides.step ?? "migrate"]);
    });
  }

  it("names the failure in the message and the Failed condition", () => {
    const status = windowStatus(state({ failure: { step: "migrate", message: "002.sql:1:5: boom", at: "" } }), undefined, T0);
    assert.equal(status.message, "step migrate: 002.sql:1:5: boom");
  });

  it("keeps a condition's lastTransitionTime while its status stays, and moves it when it changes", () => {
    const first = windowStatus(state({ step: "quiesce" }), undefined, T0);
    const later = windowStatus(state({ step: "restore" }), first.conditions, T1);
    assert.ok(later.conditions.every((c) => c.lastTransitionTime === T0.toISOString()), "same statuses: same times");
    const done = windowStatus(state({ result: "Done", step: "finished" }), later.conditions, T1);
    const times = Object.fromEntries(done.conditions.map((c) => [c.type, c.lastTransitionTime]));
    assert.deepEqual(times, { Ready: T1.toISOString(), Progressing: T1.toISOString(), Failed: T0.toISOString() });
  });
});
