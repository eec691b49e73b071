import { strict as assert } from "node:assert";
import { A } from "../../../src/core/annotations.js";
import { previousTemplate } from "../../../src/core/member-patches.js";
import {
  currentReplicaSet,
  maxSurge,
  neverRan,
  replicaSetAhead,
  sameTemplate,
  scaleUpAhead,
  templateHash,
  TEMPLATE_HASH_LABEL,
  type AheadMember,
  type AheadReplicaSet,
} from "../../../src/core/replica-set-ahead.js";
import { Phase } from "../../../src/core/phase.js";

const template = (version: string) => ({
  metadata: { labels: { app: "orders", version } },
  spec: { containers: [{ name: "app", image: `registry.example/orders:${version}`, resources: {} }], restartPolicy: "Always" },
});

const held = (overrides: Partial<AheadMember["spec"]> = {}, phase: string = Phase.Migrating): AheadMember => ({
  metadata: { name: "orders", namespace: "shop", uid: "uid-orders", annotations: { [A.phase]: phase, "deployment.kubernetes.io/revision": "2" } },
  spec: { replicas: 0, paused: true, minReadySeconds: 3, selector: { matchLabels: { app: "orders" } }, template: template("2"), ...overrides },
});

const replicaSet = (name: string, version: string, replicas: number, created: string, owner = "uid-orders", annotations: Record<string, string> = {}): AheadReplicaSet => {
  const t = template(version);
  return {
    metadata: { name, resourceVersion: "7", creationTimestamp: created, annotations: { "deployment.kubernetes.io/revision": "2", ...annotations }, ownerReferences: [{ uid: owner, controller: true }] },
    spec: { replicas, template: { ...t, metadata: { labels: { ...t.metadata.labels, [TEMPLATE_HASH_LABEL]: name.split("-")[1]! } } } },
  };
};

describe("the new ReplicaSet made ahead by the gate (replica-set-ahead)", function () {
  it("compares templates with the hash label, key order and empty fields aside (the revision check guards what this cannot tell)", function () {
    const a = template("2");
    const b = { spec: { restartPolicy: "Always", containers: [{ image: "registry.example/orders:2", name: "app" }] }, metadata: { labels: { version: "2", app: "orders", [TEMPLATE_HASH_LABEL]: "x" } } };
    assert.ok(sameTemplate(a, b));
    assert.ok(!sameTemplate(a, template("3")));
    assert.equal(templateHash(a), templateHash(b));
    assert.notEqual(templateHash(a), templateHash(template("3")));
    assert.match(templateHash(a), /^[bcdfghjklmnpqrstvwxz2456789]{10}$/);
  });

  it("finds the member's ReplicaSet for its template as the Deployment controller does: its own, the oldest match", function () {
    const sets = [
      replicaSet("orders-new", "2", 0, "2026-12-07T10:00:05Z"),
      replicaSet("orders-old", "1", 1, "2026-12-07T10:00:00Z"),
      replicaSet("orders-first", "2", 0, "2026-12-07T09:00:00Z"),
      replicaSet("orders-other", "2", 0, "2026-12-07T08:00:00Z", "uid-someone-else"),
    ];
    assert.equal(currentReplicaSet(held(), sets)?.metadata?.name, "orders-first");
    assert.equal(currentReplicaSet(held({ template: template("9") }), sets), undefined);
  });

  it("makes one at zero for a paused held member whose template has none, owned by it, with the hash in name, labels and selector", function () {
    const rs = replicaSetAhead(held(), [replicaSet("orders-old", "1", 1, "2026-12-07T10:00:00Z")], "shop-db-7") as {
      metadata: { name: string; labels: Record<string, string>; annotations: Record<string, string>; ownerReferences: Array<Record<string, unknown>> };
      spec: { replicas: number; minReadySeconds: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> } } };
    };
    const hash = templateHash(template("2"));
    assert.equal(rs.metadata.name, `orders-${hash}`);
    assert.deepEqual(rs.spec.selector.matchLabels, { app: "orders", [TEMPLATE_HASH_LABEL]: hash });
    assert.deepEqual(rs.spec.template.metadata.labels, { app: "orders", version: "2", [TEMPLATE_HASH_LABEL]: hash });
    assert.deepEqual(rs.metadata.labels, rs.spec.template.metadata.labels);
    assert.equal(rs.spec.replicas, 0);
    assert.equal(rs.spec.minReadySeconds, 3);
    assert.equal(rs.metadata.annotations[A.madeAheadFor], "shop-db-7");
    assert.deepEqual(rs.metadata.ownerReferences, [{ apiVersion: "apps/v1", kind: "Deployment", name: "orders", uid: "uid-orders", controller: true, blockOwnerDeletion: true }]);
    assert.ok(sameTemplate(rs.spec.template, held().spec!.template), "the controller takes it for the member's new ReplicaSet");
  });

  it("makes none when one matches, when the member is not paused by a hold, or without its template", function () {
    const matching = [replicaSet("orders-new", "2", 0, "2026-12-07T10:00:00Z")];
    assert.equal(replicaSetAhead(held(), matching, "w"), undefined);
    assert.equal(replicaSetAhead(held({ paused: false }), [], "w"), undefined);
    assert.equal(replicaSetAhead(held({}, Phase.Done), [], "w"), undefined);
    assert.equal(replicaSetAhead(held({ template: undefined }), [], "w"), undefined);
    assert.ok(replicaSetAhead(held({}, Phase.Pending), [], "w"));
  });

  it("makes none for a paused member with replicas and no ReplicaSet running them (the controller would scale the new one up), nor for a name too long", function () {
    assert.equal(replicaSetAhead(held({ replicas: 2 }), [replicaSet("orders-old", "1", 0, "2026-12-07T10:00:00Z")], "w"), undefined);
    assert.ok(replicaSetAhead(held({ replicas: 2 }), [replicaSet("orders-old", "1", 2, "2026-12-07T10:00:00Z")], "w"));
    const long = held();
    long.metadata!.name = "x".repeat(243);
    assert.equal(replicaSetAhead(long, [], "w"), undefined);
  });

  it("scales the current ReplicaSet of an unpaused member up to its replicas when the controller adopted it and every other one is at zero", function () {
    const sets = [replicaSet("orders-old", "1", 0, "2026-12-07T09:00:00Z"), replicaSet("orders-new", "2", 0, "2026-12-07T10:00:00Z")];
    assert.deepEqual(scaleUpAhead(held({ paused: false, replicas: 3 }), sets), {
      name: "orders-new",
      patch: {
        metadata: { resourceVersion: "7", annotations: { "deployment.kubernetes.io/desired-replicas": "3", "deployment.kubernetes.io/max-replicas": "4" } },
        spec: { replicas: 3 },
      },
    });
  });

  it("leaves the rest to the Deployment controller: still paused, at zero, scaled already, old pods left, not adopted yet, no match", function () {
    const sets = [replicaSet("orders-old", "1", 0, "2026-12-07T09:00:00Z"), replicaSet("orders-new", "2", 0, "2026-12-07T10:00:00Z")];
    assert.equal(scaleUpAhead(held({ paused: true, replicas: 3 }), sets), undefined);
    assert.equal(scaleUpAhead(held({ paused: false, replicas: 0 }), sets), undefined);
    assert.equal(scaleUpAhead(held({ paused: false, replicas: 3 }), [sets[0]!, replicaSet("orders-new", "2", 3, "2026-12-07T10:00:00Z")]), undefined);
    assert.equal(scaleUpAhead(held({ paused: false, replicas: 3 }), [replicaSet("orders-old", "1", 1, "2026-12-07T09:00:00Z"), sets[1]!]), undefined);
    const stopping = { ...sets[0]!, status: { replicas: 1 } };
    assert.equal(scaleUpAhead(held({ paused: false, replicas: 3 }), [stopping, sets[1]!]), undefined, "an old pod still there (Recreate waits for it)");
    const notAdopted = replicaSet("orders-new", "2", 0, "2026-12-07T10:00:00Z", "uid-orders", { "deployment.kubernetes.io/revision": "1" });
    assert.equal(scaleUpAhead(held({ paused: false, replicas: 3 }), [sets[0]!, notAdopted]), undefined, "its revision is not the member's");
    assert.equal(scaleUpAhead(held({ paused: false, replicas: 3, template: template("9") }), sets), undefined);
  });

  it("reads the surge as the Deployment controller does", function () {
    assert.equal(maxSurge(held(), 3), 1);
    assert.equal(maxSurge(held(), 8), 2);
    assert.equal(maxSurge(held({ strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 2 } } }), 3), 2);
    assert.equal(maxSurge(held({ strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: "50%" } } }), 3), 2);
    assert.equal(maxSurge(held({ strategy: { type: "Recreate" } }), 3), 0);
  });

  it("never returns a rollback to a template made ahead that never ran (its migration never committed)", function () {
    const madeAhead = { [A.madeAheadFor]: "shop-db-1", "deployment.kubernetes.io/revision": "3" };
    const old = replicaSet("orders-old", "1", 0, "2026-12-07T09:00:00Z", "uid-orders", { "deployment.kubernetes.io/revision": "1" });
    // Adopted while paused (revision 3), then the member was re-applied with another template of the same version.
    const unused = replicaSet("orders-ahead", "2", 0, "2026-12-07T10:00:00Z", "uid-orders", madeAhead);
    const member = { ...held({ template: template("2b") }), metadata: { uid: "uid-orders", annotations: { "deployment.kubernetes.io/revision": "3" } } };
    assert.ok(neverRan(unused));
    const previous = previousTemplate(member, [old, unused]) as { metadata: { labels: Record<string, string> } };
    assert.equal(previous.metadata.labels.version, "1");
    const ran = replicaSet("orders-ahead", "2", 0, "2026-12-07T10:00:00Z", "uid-orders", { ...madeAhead, "deployment.kubernetes.io/desired-replicas": "2" });
    assert.ok(!neverRan(ran), "scaled once (desired-replicas written): a revision like any other");
    assert.equal((previousTemplate(member, [old, ran]) as { metadata: { labels: Record<string, string> } }).metadata.labels.version, "2");
  });
});
