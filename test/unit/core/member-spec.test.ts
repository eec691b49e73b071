import { strict as assert } from "node:assert";
import { A } from "../../../src/core/annotations.js";
import { readMemberSpec } from "../../../src/core/member-spec.js";

const base = {
  [A.database]: "orders-db",
  [A.schemaVersion]: "7",
  [A.databaseSecret]: "orders-db",
  [A.migrationConfigMap]: "orders-migrations",
};

describe("readMemberSpec", () => {
  it("reads a complete SQL-runner opt-in with defaults", () => {
    const result = readMemberSpec(base, ["app"]);
    assert.deepEqual(result, {
      ok: true,
      spec: {
        database: "orders-db", version: "7", secret: "orders-db",
        runner: { kind: "sql", configMap: "orders-migrations" },
        onFailure: "hold", timeoutSeconds: 1800, maintenance: true, allowDowngrade: false,
      },
    });
  });

  it("reads a Job runner, its container, policy, timeout, maintenance and sidecar", () => {
    const { [A.migrationConfigMap]: _, ...rest } = base;
    const result = readMemberSpec({
      ...rest,
      [A.migrationCommand]: '["./manage", "migrate", "--noinput"]',
      [A.migrationContainer]: "web",
      [A.onFailure]: "rollback",
      [A.timeout]: "15m",
      [A.maintenance]: "false",
      [A.sidecar]: "8080",
    }, ["web", "metrics"]);
    assert.ok(result.ok);
    assert.deepEqual(result.spec.runner, { kind: "job", command: ["./manage", "migrate", "--noinput"], container: "web" });
    assert.equal(result.spec.onFailure, "rollback");
    assert.equal(result.spec.timeoutSeconds, 900);
    assert.equal(result.spec.maintenance, false);
    assert.equal(result.spec.sidecarPort, 8080);
  });

  it("accepts a member that is only quiesced (no version, no runner)", () => {
    const result = readMemberSpec({ [A.database]: "orders-db" }, ["app"]);
    assert.ok(result.ok);
    assert.equal(result.spec.version, undefined);
    assert.equal(result.spec.runner, undefined);
  });

  // Each bad input: the problem must name the annotation, quote the value and say what to write.
  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ["an invalid group name", { ...base, [A.database]: "Orders_DB" }, /schema-gate\.dev\/database: "Orders_DB" is not a valid .*e\.g\. "orders-db"/],
    ["an empty group name", { ...base, [A.database]: "" }, /schema-gate\.dev\/database: "" is not a valid/],
    ["a version with spaces", { ...base, [A.schemaVersion]: "v 2" }, /schema-version: "v 2" is not a usable version/],
    ["both runners", { ...base, [A.migrationCommand]: '["x"]' }, /migration-configmap and schema-gate\.dev\/migration-command are both set; keep exactly one/],
    ["a version with no runner", { [A.database]: "db", [A.schemaVersion]: "2", [A.databaseSecret]: "s" }, /schema-version is set but no migration is given; add schema-gate\.dev\/migration-configmap/],
    ["a runner with no version", { [A.database]: "db", [A.migrationConfigMap]: "m" }, /a migration is given but schema-gate\.dev\/schema-version is not set/],
    ["a version with no secret", { ...base, [A.databaseSecret]: undefined as unknown as string }, /database-secret is not; name the Secret/],
    ["a command that is not JSON", { ...base, [A.migrationConfigMap]: undefined as unknown as string, [A.migrationCommand]: "./migrate up" }, /migration-command: "\.\/migrate up" is not JSON; give the command as a JSON array/],
    ["a command that is a string", { ...base, [A.migrationConfigMap]: undefined as unknown as string, [A.migrationCommand]: '"migrate"' }, /must be a non-empty JSON array of strings/],
    ["an empty command", { ...base, [A.migrationConfigMap]: undefined as unknown as string, [A.migrationCommand]: "[]" }, /must be a non-empty JSON array/],
    ["an unknown container", { ...base, [A.migrationConfigMap]: undefined as unknown as string, [A.migrationCommand]: '["m"]', [A.migrationContainer]: "db" }, /migration-container: "db" is not a container of this pod template; use one of: app/],
    ["an unknown failure policy", { ...base, [A.onFailure]: "retry" }, /on-failure: "retry" is not a failure policy; use "hold" or "rollback"/],
    ["a timeout without unit", { ...base, [A.timeout]: "15" }, /timeout: "15" is not a duration between 1s and 24h; write e\.g\. "15m"/],
    ["a zero timeout", { ...base, [A.timeout]: "0s" }, /timeout: "0s" is not a duration/],
    ["a non-boolean maintenance", { ...base, [A.maintenance]: "off" }, /maintenance: "off" is not a boolean; use "true" or "false"/],
    ["a bad sidecar port", { ...base, [A.sidecar]: "http" }, /sidecar: "http" is not the app.s container port/],
    ["an out-of-range sidecar port", { ...base, [A.sidecar]: "70000" }, /sidecar: "70000" is not the app.s container port/],
    ["an abort that is not true", { ...base, [A.abort]: "yes" }, /abort: "yes" must be "true"/],
  ];
  for (const [what, annotations, expected] of bad) {
    it(`rejects ${what}`, () => {
      const clean = Object.fromEntries(Object.entries(annotations).filter(([, v]) => v !== undefined));
      const result = readMemberSpec(clean, ["app"]);
      assert.equal(result.ok, false);
      assert.ok(!result.ok && result.problems.some((p) => expected.test(p)), `got: ${!result.ok && result.problems.join(" | ")}`);
    });
  }

  it("requires a container choice for a Job runner when the template has several", () => {
    const { [A.migrationConfigMap]: _, ...rest } = base;
    const result = readMemberSpec({ ...rest, [A.migrationCommand]: '["m"]' }, ["web", "proxy"]);
    assert.ok(!result.ok && /needs schema-gate\.dev\/migration-container .* one of: web, proxy/.test(result.problems.join()));
  });

  it("reports every problem at once", () => {
    const result = readMemberSpec({ ...base, [A.onFailure]: "x", [A.timeout]: "y" }, ["app"]);
    assert.ok(!result.ok);
    assert.equal(result.problems.length, 2);
  });
});
