import { strict as assert } from "node:assert";
import { A } from "../../../src/core/annotations.js";
import {
  changedByWindow,
  desiredReplicas,
  markPatch,
  previousTemplate,
  quiescePatch,
  restorePatch,
  deadlineBackPatch,
  reholdPatch,
  rollbackPatch,
  NO_PROGRESS_DEADLINE,
  rolloutReady,
  type MergePatch,
} from "../../../src/core/member-patches.js";
import { checkWindowRequest, groupPhase, waitOutcome, WaitExit } from "../../../src/core/wait-outcome.js";
import {
  abortWindow,
  completeStep,
  finalResult,
  openWindow,
  reactToFailure,
  resumeStep,
  retryWindow,
  podsBlockingDrain,
  poolerStaysPaused,
  settle,
  windowSecret,
} from "../../../src/core/window-policy.js";
import { planWindow, type Step, type WindowState } from "../../../src/core/window.js";

const T0 = Date.parse("2026-01-01T00:00:00Z");

const annotationsOf = (patch: MergePatch | undefined) => (patch?.metadata as { annotations: Record<string, unknown> }).annotations;

function member(name: string, annotations: Record<string, string>, replicas = 0) {
  return {
    metadata: { name, namespace: "shop", uid: `uid-${name}`, annotations: { [A.database]: "shop-db", ...annotations } },
    spec: { replicas, template: { spec: { containers: [{ name: "app", image: `img/${name}:2` }] } } },
  };
}
const held = (name: string, extra: Record<string, string> = {}) =>
  member(name, { [A.schemaVersion]: "2", [A.databaseSecret]: "db", [A.migrationConfigMap]: "sql", [A.phase]: "Pending", [A.desiredReplicas]: "3", ...extra });

function state(overrides: Partial<WindowState> = {}): WindowState {
  return {
    id: "shop-db-1", group: "shop-db", version: "2", fromVersion: "1", owner: "billing",
    runner: { kind: "sql", configMap: "sql" }, onFailure: "hold", maintenance: true,
    startedAt: new Date(T0).toISOString(), deadline: new Date(T0 + 60_000).toISOString(),
    step: "quiesce", stepStartedAt: new Date(T0).toISOString(), attempt: 1, retryToken: "", timings: {}, ...overrides,
  };
}
const failure = (step: Step) => ({ step, message: "x", at: "" });

describe("window policy", () => {
  it("opens a window from the plan: owner, runner, deadline from the owner's timeout, the group's applied version", () => {
    const members = [held("billing", { [A.timeout]: "15m", [A.appliedVersion]: "1" }), held("orders")];
    const plan = planWindow(members);
    assert.equal(plan.kind, "open");
    if (plan.kind !== "open") return;
    const opened = openWindow(plan, members, T0, "beef");
    assert.equal(opened.id, `shop-db-${T0.toString(36)}-beef`);
    assert.deepEqual(
      { owner: opened.owner, step: opened.step, fromVersion: opened.fromVersion, deadline: opened.deadline, attempt: opened.attempt },
      { owner: "billing", step: "maintenance-on", fromVersion: "1", deadline: new Date(T0 + 15 * 60_000).toISOString(), attempt: 1 },
    );
    assert.equal(openWindow(plan, [held("billing")], T0, "beef").fromVersion, undefined, "a first install has no version to return to");
  });

  const resumes: Array<[Step, Step]> = [
    ["maintenance-on", "quiesce"], ["quiesce", "quiesce"], ["drain", "quiesce"], ["terminate", "quiesce"], ["migrate", "quiesce"],
    ["verify", "verify"], ["restore", "restore"], ["readiness", "readiness"], ["maintenance-off", "maintenance-off"],
  ];
  for (const [failed, from] of resumes) {
    it(`resumes a retry of a failure in ${failed} at ${from}`, () => {
      assert.equal(resumeStep(failure(failed)), from);
      const retried = retryWindow(state({ step: failed, failure: failure(failed) }), [held("billing", { [A.retry]: "a" })], T0 + 5);
      assert.deepEqual({ step: retried.step, attempt: retried.attempt, token: retried.retryToken, failure: retried.failure }, { step: from, attempt: 2, token: "a", failure: undefined });
    });
  }

  it("gives a retried window a fresh deadline from the owner's current timeout (a fix may take longer than the first one)", () => {
    const expired = state({ step: "migrate", failure: failure("migrate"), deadline: new Date(T0 + 20_000).toISOString() });
    const later = T0 + 3_600_000;
    const retried = retryWindow(expired, [held("billing", { [A.timeout]: "10m", [A.retry]: "b" })], later);
    assert.equal(retried.deadline, new Date(later + 10 * 60_000).toISOString());
    const fallback = retryWindow(expired, [held("orders")], later);
    assert.equal(fallback.deadline, new Date(later + 30 * 60_000).toISOString(), "owner gone: the default timeout");
  });

  const reactions: Array<[string, Partial<WindowState>, "rollback" | "hold"]> = [
    ["holds under on-failure: hold", { step: "migrate" }, "hold"],
    ["rolls back before the commit", { step: "migrate", onFailure: "rollback" }, "rollback"],
    ["holds after the commit even under rollback", { step: "restore", onFailure: "rollback" }, "hold"],
    ["holds a first install (nothing to return to)", { step: "drain", onFailure: "rollback", fromVersion: undefined }, "hold"],
  ];
  for (const [title, overrides, kind] of reactions) {
    it(`on a step failure ${title}`, () => {
      const reaction = reactToFailure(state(overrides), "boom", T0);
      assert.equal(reaction.kind, kind);
      if (kind === "hold") assert.deepEqual(reaction.state.failure, { step: overrides.step, message: "boom", at: new Date(T0).toISOString() });
      else assert.deepEqual([reaction.state.step, reaction.state.ending, reaction.state.rollbackReason], ["rollback", "rollback", "boom"]);
    });
  }

  it("aborts into the rollback step and ends Aborted", () => {
    const aborted = abortWindow(state({ step: "drain", failure: failure("drain") }), T0);
    assert.deepEqual([aborted.step, aborted.ending, aborted.failure], ["rollback", "abort", undefined]);
    assert.equal(finalResult(aborted), "Aborted");
    assert.equal(finalResult({}), "Done");
    assert.equal(finalResult({ ending: "rollback" }), "RolledBack");
  });

  const pauses: Array<[string, Partial<WindowState>, boolean]> = [
    ["drain", { step: "drain" }, false],
    ["terminate", { step: "terminate" }, true],
    ["a SQL migration", { step: "migrate" }, true],
    ["a Job's migration (its tool may connect through the pooler)", { step: "migrate", runner: { kind: "job", command: ["migrate"] } }, false],
    ["verify", { step: "verify" }, false],
    ["a failed migration, held", { step: "migrate", failure: failure("migrate") }, false],
    ["an abort in terminate", { step: "terminate", ending: "abort" }, false],
    ["the rollback", { step: "rollback", ending: "rollback" }, false],
  ];
  for (const [where, overrides, paused] of pauses) {
    it(`${paused ? "keeps the pooler paused" : "resumes the pooler"} in ${where}`, () => {
      assert.equal(poolerStaysPaused(state(overrides)), paused);
    });
  }

  const completions: Array<[Step, Partial<WindowState>, Step, string | undefined]> = [
    ["quiesce", {}, "drain", undefined],
    ["readiness", {}, "maintenance-off", undefined],
    ["maintenance-off", {}, "finished", "Done"],
    ["rollback", { ending: "rollback" }, "maintenance-off", undefined],
    ["maintenance-off", { ending: "abort" }, "finished", "Aborted"],
  ];
  for (const [step, overrides, next, result] of completions) {
    it(`completes ${step}${overrides.ending ? ` (${overrides.ending})` : ""}: next ${next}, timed from the step's start`, () => {
      const done = completeStep(state({ step, ...overrides }), { quiescedAt: "q" }, T0 + 250);
      assert.deepEqual([done.step, done.result, done.timings[step], done.quiescedAt, done.stepStartedAt], [next, result, 250, "q", new Date(T0 + 250).toISOString()]);
    });
  }

  it("settles: waits until the held set stayed the same for the settle delay, restarting when it changes", () => {
    const one = [held("billing")];
    const first = settle(undefined, one, T0, 1000);
    assert.equal(first.waitMs, 1000);
    assert.equal(settle(first.settling, one, T0 + 400, 1000).waitMs, 600);
    assert.equal(settle(first.settling, [...one, held("orders")], T0 + 400, 1000).waitMs, 1000, "a new member restarts the delay");
    assert.equal(settle(first.settling, one, T0 + 1000, 1000).waitMs, 0);
  });

  it("drains the members' pods and their CronJobs' runs, not pods that ended or the gate's own migration pods", () => {
    const pod = (name: string, labels: Record<string, string>, phase = "Running") => ({ metadata: { name, labels }, status: { phase } });
    const members = [{ spec: { selector: { matchLabels: { app: "orders" } } } }];
    const pods = [
      pod("orders-1", { app: "orders" }),
      pod("orders-2", { app: "orders" }, "Pending"),
      pod("orders-done", { app: "orders" }, "Succeeded"),
      pod("orders-crashed", { app: "orders" }, "Failed"),
      pod("migrate-1", { app: "orders", "schema-gate.dev/window": "migrate-shop-db-1" }),
      pod("report-1", { "job-name": "report-123" }),
      pod("other", { app: "billing" }),
    ];
    assert.deepEqual(podsBlockingDrain(pods, members, new Set(["report-123"])), ["orders-1", "orders-2", "report-1"]);
  });

  it("reaches the database through the owner's Secret, else any member's", () => {
    assert.equal(windowSecret([held("orders", { [A.databaseSecret]: "b" }), held("billing", { [A.databaseSecret]: "a" })], { owner: "billing" }), "a");
    assert.equal(windowSecret([member("orders", { [A.databaseSecret]: "b" })], { owner: "gone" }), "b");
    assert.equal(windowSecret([member("orders", {})], { owner: "gone" }), undefined);
  });
});

describe("member patches", () => {
  it("quiesces with the replica count recorded in the same patch, once", () => {
    assert.deepEqual(quiescePatch(member("a", { [A.phase]: "Done" }, 4), "m"), {
      metadata: { annotations: { [A.phase]: "Migrating", [A.message]: "m", [A.desiredReplicas]: "4" } },
      spec: { replicas: 0 },
    });
    assert.equal((quiescePatch(held("a"), "m")!.metadata as { annotations: Record<string, string> }).annotations[A.desiredReplicas], undefined, "a held member keeps its recorded count");
    assert.equal(quiescePatch(member("a", { [A.phase]: "Migrating" }, 0), "m"), undefined);
  });

  it("unpauses a member held for the window's version as it restores it, and only such a member", () => {
    const paused = { ...held("a"), spec: { replicas: 0, paused: true } };
    assert.deepEqual(restorePatch(paused, "2", "m")?.spec, { replicas: 3, paused: false });
    const userPaused = { ...member("q", { [A.phase]: "Migrating", [A.desiredReplicas]: "1" }), spec: { replicas: 0, paused: true } };
    assert.deepEqual(restorePatch(userPaused, "2", "m")?.spec, { replicas: 1 }, "a quiesce-only member paused by its owner stays paused");
  });

  it("gives a held member back the progress deadline its hold put aside, unless it has one again or it no longer fits", () => {
    const aside = (spec: Record<string, unknown>, recorded = "300") =>
      ({ ...held("a", { [A.progressDeadline]: recorded }), spec: { replicas: 0, paused: true, progressDeadlineSeconds: NO_PROGRESS_DEADLINE, ...spec } });
    const restored = restorePatch(aside({}), "2", "m")!;
    assert.deepEqual(restored.spec, { replicas: 3, paused: false, progressDeadlineSeconds: 300 }, "in the unpausing patch itself");
    assert.equal((restored.metadata as { annotations: Record<string, unknown> }).annotations[A.progressDeadline], null);
    assert.deepEqual(restorePatch(aside({ progressDeadlineSeconds: 120 }), "2", "m")!.spec, { replicas: 3, paused: false }, "a deadline applied during the hold stays");
    assert.deepEqual(restorePatch(aside({ minReadySeconds: 300 }), "2", "m")!.spec, { replicas: 3, paused: false }, "not one the apiserver would refuse");
    assert.deepEqual(restorePatch(aside({}, "soon"), "2", "m")!.spec, { replicas: 3, paused: false }, "not an unreadable record");
    const s = state({ step: "rollback", ending: "rollback" });
    const rolledBack = rollbackPatch(aside({}), s, { spec: { containers: [] } }, "rolled back")!;
    assert.equal((rolledBack.spec as Record<string, unknown>).progressDeadlineSeconds, 300);
    assert.equal((rolledBack.metadata as { annotations: Record<string, unknown> }).annotations[A.progressDeadline], null);
    const first = rollbackPatch(aside({}), s, undefined, "aborted")!;
    assert.deepEqual(first.spec, { paused: false, progressDeadlineSeconds: 300 }, "a first install left at zero gets it back too");
  });

  it("leaves the deadline aside in a window's restore, with the revision the new ReplicaSet gets, and gives it back once the rollouts are done", () => {
    const revision = "deployment.kubernetes.io/revision";
    const aside = (extra: Record<string, string> = {}, spec: Record<string, unknown> = {}) =>
      ({ ...held("a", { [A.progressDeadline]: "300", ...extra }), spec: { replicas: 0, paused: true, progressDeadlineSeconds: NO_PROGRESS_DEADLINE, ...spec } });
    const restored = restorePatch(aside({ [revision]: "4" }), "2", "m", { deadlineLater: true })!;
    assert.deepEqual(restored.spec, { replicas: 3, paused: false }, "no deadline in the unpausing patch");
    const annotations = (restored.metadata as { annotations: Record<string, unknown> }).annotations;
    assert.equal(annotations[revision], "5");
    assert.equal(A.progressDeadline in annotations, false, "the record stays");
    assert.equal(annotationsOf(restorePatch(aside(), "2", "m", { deadlineLater: true }))[revision], "1", "a first install's first ReplicaSet");
    assert.equal(revision in annotationsOf(restorePatch(aside({ [revision]: "x" }), "2", "m", { deadlineLater: true })), false, "not over an unreadable one");
    const userPaused = { ...member("q", { [A.phase]: "Migrating", [A.desiredReplicas]: "1", [revision]: "4" }), spec: { replicas: 0, paused: true } };
    assert.equal(revision in annotationsOf(restorePatch(userPaused, "2", "m", { deadlineLater: true })), false, "nothing rolls out for a member that stays paused");

    const done = (extra: Record<string, string>, spec: Record<string, unknown> = {}) =>
      ({ ...member("a", { [A.phase]: "Done", ...extra }), spec: { replicas: 3, progressDeadlineSeconds: NO_PROGRESS_DEADLINE, ...spec } });
    assert.deepEqual(deadlineBackPatch(done({ [A.progressDeadline]: "300" })),
      { metadata: { annotations: { [A.progressDeadline]: null } }, spec: { progressDeadlineSeconds: 300 } });
    assert.deepEqual(deadlineBackPatch(done({ [A.progressDeadline]: "300" }, { progressDeadlineSeconds: 120 })),
      { metadata: { annotations: { [A.progressDeadline]: null } } }, "one applied since stays; the record goes");
    assert.equal(deadlineBackPatch(done({})), undefined, "nothing recorded, nothing to give back");
    assert.equal(deadlineBackPatch(aside()), undefined, "a held member gets it back as it is unpaused");
  });

  it("restores held members only, to their recorded replicas", () => {
    assert.deepEqual(restorePatch(held("a"), "2", "m"), {
      metadata: { annotations: { [A.phase]: "Done", [A.appliedVersion]: "2", [A.message]: "m", [A.desiredReplicas]: null } },
      spec: { replicas: 3 },
    });
    assert.equal(restorePatch(member("a", { [A.phase]: "Done" }), "2", "m"), undefined);
    assert.equal(desiredReplicas(member("a", { [A.desiredReplicas]: "x" })), 1);
  });

  it("releases only members that want the window's version; one held at another version waits for its own window", () => {
    assert.equal(restorePatch(member("a", { [A.phase]: "Migrating" }), "2", "m")?.spec !== undefined, true, "a member with no version of its own is released");
    const other = restorePatch(held("c", { [A.schemaVersion]: "3", [A.phase]: "Migrating" }), "2", "m");
    assert.deepEqual(other, { metadata: { annotations: { [A.phase]: "Pending", [A.message]: "waiting for a window to schema version 3 (this window applied 2)" } } });
  });

  it("pauses again a held member someone unpaused, and marks only held members", () => {
    assert.deepEqual(reholdPatch({ ...held("a"), spec: { replicas: 2, paused: false } }), { spec: { paused: true } });
    assert.equal(reholdPatch({ ...held("a"), spec: { replicas: 2, paused: true } }), undefined);
    assert.equal(reholdPatch(member("a", { [A.phase]: "Done" }, 2)), undefined);
    assert.equal(markPatch(member("a", { [A.phase]: "Done" }), "Failed", "m"), undefined);
    assert.equal(markPatch(held("a", { [A.phase]: "Failed", [A.message]: "m" }), "Failed", "m"), undefined);
  });

  it("rolls a changed member back to its previous template and version, and leaves a first install at zero", () => {
    const s = state({ step: "rollback", ending: "rollback" });
    const d = held("a", { [A.appliedVersion]: "1" });
    assert.equal(changedByWindow(d, s), true);
    const patch = rollbackPatch(d, s, { spec: { containers: [] } }, "rolled back")!;
    assert.deepEqual((patch.spec as Record<string, unknown>), { replicas: 3, template: { spec: { containers: [] } } });
    assert.equal((patch.metadata as { annotations: Record<string, string> }).annotations[A.schemaVersion], "1");
    const first = rollbackPatch(held("a"), s, undefined, "aborted")!;
    assert.equal(first.spec, undefined);
    assert.equal((first.metadata as { annotations: Record<string, string> }).annotations[A.phase], "Aborted");
  });

  it("finds the previous revision's template, skipping ones equal to the current", () => {
    const d = { ...held("a"), metadata: { ...held("a").metadata, annotations: { ...held("a").metadata.annotations, "deployment.kubernetes.io/revision": "3" } } };
    const rs = (revision: string, image: string, owner = "uid-a") => ({
      metadata: { annotations: { "deployment.kubernetes.io/revision": revision }, ownerReferences: [{ uid: owner }] },
      spec: { template: { metadata: { labels: { "pod-template-hash": "h" } }, spec: { containers: [{ name: "app", image }] } } },
    });
    const found = previousTemplate(d, [rs("3", "img/a:2"), rs("2", "img/a:2"), rs("1", "img/a:1"), rs("2", "other", "uid-b")]);
    assert.deepEqual(found, { metadata: { labels: {} }, spec: { containers: [{ name: "app", image: "img/a:1" }] } });
    assert.equal(previousTemplate(d, [rs("3", "img/a:2")]), undefined);
    // Held paused, the new template never rolled out: the revision is still the old one's.
    const paused = { ...d, metadata: { ...d.metadata, annotations: { ...d.metadata.annotations, "deployment.kubernetes.io/revision": "1" } } };
    assert.deepEqual(previousTemplate(paused, [rs("1", "img/a:1")]), { metadata: { labels: {} }, spec: { containers: [{ name: "app", image: "img/a:1" }] } });
  });

  it("calls a rollout ready only when observed and every replica is updated and available", () => {
    const ready = { metadata: { generation: 2 }, spec: { replicas: 2 }, status: { observedGeneration: 2, updatedReplicas: 2, availableReplicas: 2, replicas: 2 } };
    assert.equal(rolloutReady(ready), true);
    assert.equal(rolloutReady({ ...ready, status: { ...ready.status, observedGeneration: 1 } }), false);
    assert.equal(rolloutReady({ ...ready, status: { ...ready.status, replicas: 3 } }), false, "old pods still terminating");
  });
});

describe("what schema-gate wait and status say", () => {
  const open = state({ step: "migrate" });
  const cases: Array<[string, Record<string, string> | undefined, WindowState | undefined, number | "waiting"]> = [
    ["not opted in", undefined, undefined, WaitExit.NotOptedIn],
    ["failed", { [A.phase]: "Failed", [A.schemaVersion]: "2" }, { ...open, failure: failure("migrate") }, WaitExit.Failed],
    ["rolled back", { [A.phase]: "RolledBack", [A.schemaVersion]: "1", [A.appliedVersion]: "1" }, { ...open, result: "RolledBack" }, WaitExit.Undone],
    ["done once the window ended", { [A.phase]: "Done", [A.schemaVersion]: "2", [A.appliedVersion]: "2" }, { ...open, result: "Done" }, WaitExit.Done],
    ["waiting while the applying window still runs readiness", { [A.phase]: "Done", [A.schemaVersion]: "2", [A.appliedVersion]: "2" }, { ...open, step: "readiness" }, "waiting"],
    ["waiting while held", { [A.phase]: "Migrating", [A.schemaVersion]: "2" }, open, "waiting"],
  ];
  for (const [title, annotations, record, expected] of cases) {
    it(`wait: ${title}`, () => {
      const d = annotations ? member("orders", annotations) : { metadata: { name: "orders", namespace: "shop" } };
      const outcome = waitOutcome(d, record, T0 + 3000);
      if (expected === "waiting") assert.equal(outcome.kind, "waiting");
      else assert.deepEqual([outcome.kind, outcome.kind === "exit" ? outcome.code : undefined], ["exit", expected]);
    });
  }

  it("status: a group's phase from its record and members", () => {
    assert.equal(groupPhase(state(), []), "Running");
    assert.equal(groupPhase(state({ failure: failure("drain") }), []), "Failed");
    assert.equal(groupPhase(undefined, [held("a")]), "Pending");
    assert.equal(groupPhase(state({ result: "Done" }), []), "Done");
    assert.equal(groupPhase(undefined, []), "Idle");
  });

  it("retry and abort are refused with the reason when there is nothing to act on", () => {
    assert.match(checkWindowRequest(undefined, "g", "ns", "abort")!, /no open window to abort/);
    assert.match(checkWindowRequest(state(), "g", "ns", "retry")!, /has not failed/);
    assert.equal(checkWindowRequest(state({ failure: failure("migrate") }), "g", "ns", "retry"), undefined);
  });
});
