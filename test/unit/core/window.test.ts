import { strict as assert } from "node:assert";
import { A } from "../../../src/core/annotations.js";
import { buildMigrationJob } from "../../../src/core/migration-job.js";
import type { Deployment } from "../../../src/core/objects.js";
import { matchesSelector } from "../../../src/core/selector.js";
import {
  decideWindow,
  migrationJobName,
  nextStep,
  parseWindowState,
  planWindow,
  STEPS,
  type Step,
  type WindowState,
} from "../../../src/core/window.js";

function member(name: string, annotations: Record<string, string>, containers = ["app"]): Deployment {
  return {
    metadata: { name, namespace: "shop", annotations: { [A.database]: "shop-db", ...annotations } },
    spec: { replicas: 0, template: { spec: { containers: containers.map((c) => ({ name: c, image: `img/${c}:2` })) } } },
  };
}

const heldWithRunner = (name: string, extra: Record<string, string> = {}) =>
  member(name, {
    [A.schemaVersion]: "2",
    [A.databaseSecret]: "db",
    [A.migrationConfigMap]: "sql",
    [A.phase]: "Pending",
    [A.desiredReplicas]: "2",
    ...extra,
  });

function state(overrides: Partial<WindowState> = {}): WindowState {
  return {
    id: "shop-db-1", group: "shop-db", version: "2", fromVersion: "1", owner: "billing",
    runner: { kind: "sql", configMap: "sql" }, onFailure: "hold", maintenance: true,
    startedAt: new Date(0).toISOString(), deadline: new Date(60_000).toISOString(),
    step: "quiesce", attempt: 1, retryToken: "", timings: {}, ...overrides,
  };
}

describe("window core", () => {
  it("orders the steps as the README does and ends after maintenance-off", () => {
    const seen: Step[] = [];
    for (let step: Step = STEPS[0]; step !== "finished"; step = nextStep(step)) seen.push(step);
    assert.deepEqual(seen, ["maintenance-on", "quiesce", "drain", "terminate", "migrate", "verify", "restore", "readiness", "maintenance-off"]);
  });

  describe("decideWindow", () => {
    const cases: Array<[string, Partial<WindowState>, Record<string, string>, number, string]> = [
      ["runs the recorded step", { step: "drain" }, {}, 1000, "run"],
      ["is idle once the window has a result", { result: "Done", step: "finished" }, {}, 1000, "idle"],
      ["aborts before the commit", { step: "migrate" }, { [A.abort]: "true" }, 1000, "abort"],
      ["ignores abort once the migration committed", { step: "restore" }, { [A.abort]: "true" }, 1000, "run"],
      ["expires past the deadline before the commit", { step: "drain" }, {}, 120_000, "expire"],
      ["finishes past the deadline after the commit", { step: "readiness" }, {}, 120_000, "run"],
      ["waits for the user while failed", { failure: { step: "migrate", message: "x", at: "" } }, {}, 1000, "wait-for-user"],
      ["retries when a retry annotation changed", { failure: { step: "migrate", message: "x", at: "" } }, { [A.retry]: "2" }, 1000, "retry"],
      ["does not expire a failed window", { failure: { step: "migrate", message: "x", at: "" } }, {}, 120_000, "wait-for-user"],
      ["keeps rolling back after the deadline", { step: "rollback", ending: "rollback" }, {}, 120_000, "run"],
    ];
    for (const [title, overrides, annotations, now, expected] of cases) {
      it(title, () => {
        const action = decideWindow(state(overrides), [heldWithRunner("billing", annotations)], now);
        assert.equal(action.kind, expected);
      });
    }
  });

  describe("planWindow", () => {
    it("picks the first held member by name that names a runner as the owner", () => {
      const plan = planWindow([
        heldWithRunner("orders"),
        member("catalog", { [A.phase]: "Done" }),
        heldWithRunner("billing", { [A.onFailure]: "rollback" }),
      ]);
      assert.equal(plan.kind, "open");
      if (plan.kind !== "open") return;
      assert.equal(plan.owner, "billing");
      assert.equal(plan.version, "2");
      assert.equal(plan.spec.onFailure, "rollback");
    });

    it("opens nothing without a held member", () => {
      assert.equal(planWindow([member("orders", { [A.phase]: "Done", [A.schemaVersion]: "2" })]).kind, "none");
    });

    it("reports a held member with bad annotations instead of guessing", () => {
      const plan = planWindow([heldWithRunner("orders", { [A.timeout]: "soon" })]);
      assert.equal(plan.kind, "invalid");
      assert.match(plan.kind === "invalid" ? plan.problem : "", /timeout: "soon"/);
    });
  });

  it("parses a window record and explains a broken one", () => {
    const good = parseWindowState(structuredClone(state()));
    assert.ok(good.ok && good.state?.id === "shop-db-1");
    assert.deepEqual(parseWindowState(undefined), { ok: true });
    const bad = parseWindowState({ id: 3 });
    assert.ok(!bad.ok);
    assert.match(bad.ok ? "" : bad.problem, /delete the MigrationWindow to start over/);
  });

  it("names migration Jobs deterministically, per attempt, within 63 characters", () => {
    const a = migrationJobName({ group: "shop-db", id: "w1", attempt: 1 });
    assert.equal(a, migrationJobName({ group: "shop-db", id: "w1", attempt: 1 }));
    assert.notEqual(a, migrationJobName({ group: "shop-db", id: "w1", attempt: 2 }));
    const long = migrationJobName({ group: "a".repeat(63), id: "w1", attempt: 1 });
    assert.ok(long.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(long), long);
  });

  it("builds the migration Job from the new template: chosen container, command, no probes, no sidecars", () => {
    const deployment = member("ledger", {}, ["app", "proxy"]);
    const spec = deployment.spec!.template!.spec!;
    spec.containers![0]!.args = ["serve"];
    spec.containers![0]!.readinessProbe = { httpGet: { port: 8080 } };
    spec.initContainers = [{ name: "sidecar", restartPolicy: "Always" }, { name: "wait-db" }];
    spec.serviceAccountName = "ledger";
    const job = buildMigrationJob(deployment, { group: "shop-db", id: "w1", attempt: 1, version: "2" },
      { command: ["./migrate"], container: "app" }, 600) as any;
    const pod = job.spec.template.spec;
    assert.equal(job.spec.backoffLimit, 0);
    assert.equal(job.spec.activeDeadlineSeconds, 600);
    assert.deepEqual(pod.containers, [{ name: "app", image: "img/app:2", command: ["./migrate"] }]);
    assert.deepEqual(pod.initContainers, [{ name: "wait-db" }]);
    assert.equal(pod.restartPolicy, "Never");
    assert.equal(pod.serviceAccountName, "ledger");
  });

  it("labels the migration Job validly for any group name, and keeps the pod template's labels and annotations", () => {
    const deployment = member("ledger", {});
    deployment.spec!.template!.metadata = {
      labels: { app: "ledger", "pod-template-hash": "abc", "sidecar.istio.io/inject": "false" },
      annotations: { "vault.hashicorp.com/agent-inject": "true" },
    };
    const group = "g".repeat(63);
    const id = `${group}-mx4f9rvm-d0e6`;
    const job = buildMigrationJob(deployment, { group, id, attempt: 1, version: "2" }, { command: ["./migrate"] }, 600) as any;
    const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
    for (const labels of [job.metadata.labels, job.spec.template.metadata.labels]) {
      for (const [key, value] of Object.entries(labels as Record<string, string>)) {
        assert.ok(value.length <= 63 && LABEL_VALUE.test(value), `${key}=${value}`);
      }
    }
    assert.equal(job.metadata.annotations["schema-gate.dev/window-id"], id, "the whole id is kept where no length limit applies");
    const pod = job.spec.template.metadata;
    assert.equal(pod.labels.app, "ledger", "NetworkPolicies that select the app's pods apply to its migration too");
    assert.equal(pod.labels["sidecar.istio.io/inject"], "false");
    assert.equal(pod.labels["pod-template-hash"], undefined);
    assert.equal(pod.annotations["vault.hashicorp.com/agent-inject"], "true");
  });

  describe("matchesSelector", () => {
    const cases: Array<[Record<string, string>, Parameters<typeof matchesSelector>[1], boolean]> = [
      [{ app: "a" }, { matchLabels: { app: "a" } }, true],
      [{ app: "b" }, { matchLabels: { app: "a" } }, false],
      [{ app: "a", tier: "web" }, { matchExpressions: [{ key: "tier", operator: "In", values: ["web", "api"] }] }, true],
      [{ app: "a" }, { matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] }, true],
      [{ app: "a" }, { matchExpressions: [{ key: "tier", operator: "Exists" }] }, false],
      [{ app: "a" }, { matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] }, true],
      [{ app: "a" }, {}, false],
    ];
    cases.forEach(([labels, selector, expected], i) => it(`case ${i + 1}: ${JSON.stringify(selector)}`, () => {
      assert.equal(matchesSelector(labels, selector), expected);
    }));
  });
});
