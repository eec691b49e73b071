import { strict as assert } from "node:assert";
import fastJsonPatch from "fast-json-patch";
import { guardedPatch, mergeAsOperations, testsStillHold } from "../../../src/k8s/guarded-patch.js";

const { applyPatch, deepClone } = fastJsonPatch;

const member = () => ({
  metadata: { name: "api", uid: "u-1", generation: 4, annotations: { "schema-gate.dev/phase": "Held", "schema-gate.dev/desired-replicas": "3", "a/b~c": "x" } },
  spec: { replicas: 0, paused: true, template: { spec: { containers: [{ name: "app", image: "app:2" }] } } },
  status: { replicas: 3 },
});

/** What the operations make of the object, applied as the apiserver applies them. */
const applied = (object: object, operations: ReturnType<typeof mergeAsOperations>) => applyPatch(deepClone(object), operations, true).newDocument;

describe("guarded patches: a merge patch as JSON Patch operations on the object it was decided on", function () {
  it("sets, replaces and removes annotations, escaping the keys", function () {
    const result = applied(member(), mergeAsOperations(member(), {
      metadata: { annotations: { "schema-gate.dev/phase": "Done", "schema-gate.dev/desired-replicas": null, "a/b~c": "y", "schema-gate.dev/applied-version": "2" } },
    }));
    assert.deepEqual(result.metadata.annotations, { "schema-gate.dev/phase": "Done", "a/b~c": "y", "schema-gate.dev/applied-version": "2" });
    assert.deepEqual(result.spec, member().spec, "what the patch does not name is left alone");
  });

  it("makes a missing object whole, without the nulls that had nothing to delete", function () {
    const bare = { metadata: { name: "api", uid: "u-1", generation: 1 }, spec: { replicas: 2 } };
    const result = applied(bare, mergeAsOperations(bare, { metadata: { annotations: { "schema-gate.dev/phase": "Migrating", "schema-gate.dev/message": null } } }));
    assert.deepEqual(result.metadata.annotations, { "schema-gate.dev/phase": "Migrating" });
  });

  it("skips removing what is not there, and replaces arrays and values whole, as a merge patch does", function () {
    const operations = mergeAsOperations(member(), {
      metadata: { annotations: { "not-there": null } },
      spec: { replicas: 3, paused: false, template: { spec: { containers: [{ name: "app", image: "app:1" }] } } },
    });
    assert.equal(operations.some((o) => o.op === "remove"), false);
    const result = applied(member(), operations);
    assert.deepEqual(result.spec, { replicas: 3, paused: false, template: { spec: { containers: [{ name: "app", image: "app:1" }] } } });
  });

  it("leaves out an undefined member, as a merge patch sent as JSON does", function () {
    const operations = mergeAsOperations(member(), { spec: { replicas: undefined, paused: false }, metadata: { labels: { a: undefined } } });
    assert.deepEqual(operations, [{ op: "add", path: "/spec/paused", value: false }, { op: "add", path: "/metadata/labels", value: {} }]);
  });

  it("tests the uid and generation first, and applies nowhere else", function () {
    const operations = guardedPatch(member(), { spec: { replicas: 3 } });
    assert.deepEqual(operations.slice(0, 2), [
      { op: "test", path: "/metadata/uid", value: "u-1" },
      { op: "test", path: "/metadata/generation", value: 4 },
    ]);
    assert.equal(applied(member(), operations).spec.replicas, 3);
    const statusWritten = { ...member(), metadata: { ...member().metadata, resourceVersion: "99" }, status: { replicas: 0 } };
    assert.equal(applied(statusWritten, operations).spec.replicas, 3, "a status write in between changes neither");
    const scaled = { ...member(), metadata: { ...member().metadata, generation: 5 } };
    assert.throws(() => applied(scaled, operations), /Test operation failed/);
    const madeAgain = { ...member(), metadata: { ...member().metadata, uid: "u-2" } };
    assert.throws(() => applied(madeAgain, operations), /Test operation failed/);
  });

  it("refuses an object read without its uid or generation (a guard on nothing)", function () {
    assert.throws(() => guardedPatch({ metadata: { uid: "u-1" } }, { spec: {} }), /uid and generation/);
  });

  it("tells a failed guard from a refused patch by the object as it is now", function () {
    assert.equal(testsStillHold(member(), member()), true);
    assert.equal(testsStillHold(member(), { metadata: { uid: "u-1", generation: 5 } }), false);
    assert.equal(testsStillHold(member(), { metadata: { uid: "u-2", generation: 4 } }), false);
  });
});
