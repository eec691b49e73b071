import { strict as assert } from "node:assert";
import fastJsonPatch from "fast-json-patch";
import { mutate, mutateIngress, validate, type AdmissionContext, type GroupState } from "../../../src/core/admission.js";
import { A } from "../../../src/core/annotations.js";
import type { Decision } from "../../../src/core/decision.js";
import { NO_PROGRESS_DEADLINE } from "../../../src/core/member-patches.js";
import type { AdmissionRequest, Deployment } from "../../../src/core/objects.js";
import { admissionReview } from "../../support/fixtures.js";

const GATE = "system:serviceaccount:schema-gate:schema-gate";

function context(overrides: { group?: GroupState; deployment?: Deployment } = {}): AdmissionContext {
  return {
    gateUsername: GATE,
    excludedNamespaces: new Set(["kube-system", "schema-gate"]),
    group: () => overrides.group ?? {},
    deployment: () => overrides.deployment,
  };
}

/** The captured CREATE of orders-api (version 7, 3 replicas, SQL runner). */
function create(): AdmissionRequest {
  return admissionReview("deployment-create").request;
}

/** The captured UPDATE of orders-api: version 7 -> 8, with old state overridable. */
function update(old: Record<string, string> = {}, oldReplicas = 3): AdmissionRequest {
  const request = admissionReview("deployment-update").request;
  Object.assign(request.oldObject.metadata.annotations, old);
  request.oldObject.spec.replicas = oldReplicas;
  return request;
}

const annotationsOf = (r: AdmissionRequest) => (r.object as Deployment).metadata!.annotations!;
const setReplicas = (r: AdmissionRequest, n: number) => ((r.object as Deployment).spec!.replicas = n);

/** The request's object with the decision's patch applied (a Deployment unless told). */
function apply<T = Deployment>(request: AdmissionRequest, decision: Decision): T {
  const object = structuredClone(request.object) as T;
  if (decision.kind !== "patch") return object;
  return fastJsonPatch.applyPatch(object, structuredClone(decision.patch), true, false).newDocument;
}

/** The mutation must be idempotent: asking again with its own result gives no patch. */
function assertStable(request: AdmissionRequest, decision: Decision, ctx: AdmissionContext): Deployment {
  const result = apply(request, decision);
  const again = mutate({ ...request, object: result }, ctx);
  assert.equal(again.kind, "allow", `re-invocation produced ${JSON.stringify(again)}`);
  return result;
}

describe("mutate (hold)", () => {
  it("holds a new opted-in Deployment whose version was never applied", () => {
    const request = create();
    const decision = mutate(request, context());
    assert.equal(decision.kind, "patch");
    const held = assertStable(request, decision, context());
    assert.equal(held.spec!.replicas, 0);
    assert.equal(held.metadata!.annotations![A.desiredReplicas], "3");
    assert.equal(held.metadata!.annotations![A.phase], "Pending");
    assert.match(held.metadata!.annotations![A.message]!, /database group "orders-db" to schema version "7"/);
  });

  it("patches only what changed, as sorted JSON Patch operations", () => {
    const decision = mutate(create(), context());
    assert.ok(decision.kind === "patch");
    assert.deepEqual(
      decision.patch.map((op) => `${op.op} ${op.path}`).sort(),
      [
        "add /metadata/annotations/schema-gate.dev~1desired-replicas",
        "add /metadata/annotations/schema-gate.dev~1message",
        "add /metadata/annotations/schema-gate.dev~1phase",
        "add /metadata/annotations/schema-gate.dev~1progress-deadline-seconds",
        "add /spec/paused",
        "replace /spec/progressDeadlineSeconds",
        "replace /spec/replicas",
      ],
    );
  });

  it("does not hold a new member whose version the group already applied, and records it", () => {
    const request = create();
    const ctx = context({ group: { appliedVersion: "7" } });
    const decision = mutate(request, ctx);
    const result = assertStable(request, decision, ctx);
    assert.equal(result.spec!.replicas, 3);
    assert.equal(result.metadata!.annotations![A.appliedVersion], "7");
    assert.equal(result.metadata!.annotations![A.phase], undefined);
  });

  it("holds an update to a new version without stopping the old pods: paused at the running count, the asked-for count recorded", () => {
    const request = update({ [A.appliedVersion]: "7" });
    setReplicas(request, 4);
    const decision = mutate(request, context());
    const held = assertStable(request, decision, context());
    assert.equal(held.spec!.paused, true, "the new template does not roll out");
    assert.equal(held.spec!.replicas, 3, "the old pods keep serving at the count they run at");
    assert.equal(held.metadata!.annotations![A.desiredReplicas], "4");
    assert.equal(held.metadata!.annotations![A.appliedVersion], "7");
    assert.match(held.metadata!.annotations![A.message]!, /running pods keep serving until the window stops them/);
  });

  it("starts nothing for a first install: paused at zero", () => {
    const held = apply(create(), mutate(create(), context()));
    assert.deepEqual([held.spec!.paused, held.spec!.replicas], [true, 0]);
  });

  it("keeps a held Deployment paused at its running count when helm upgrade is run again (the chart's count, no paused field)", () => {
    const held = { [A.appliedVersion]: "7", [A.phase]: "Pending", [A.desiredReplicas]: "4" };
    const request = update(held, 3);
    (request.oldObject as Deployment).spec!.paused = true;
    Object.assign(annotationsOf(request), held);
    setReplicas(request, 4);
    const result = assertStable(request, mutate(request, context()), context());
    assert.deepEqual([result.spec!.paused, result.spec!.replicas], [true, 3]);
  });

  describe("the progress deadline of a paused hold", () => {
    const deadline = (d: Deployment) => (d.spec as { progressDeadlineSeconds?: number }).progressDeadlineSeconds;
    const setDeadline = (d: unknown, seconds: number | undefined) => ((d as Deployment).spec!.progressDeadlineSeconds = seconds);
    /** A manifest applied again to a Deployment held with 600 put aside, its own annotations as `annotations`. */
    const heldAgain = (incomingDeadline: number, annotations: Record<string, string> = {}) => {
      const held = { [A.appliedVersion]: "7", [A.phase]: "Pending", [A.desiredReplicas]: "4", [A.progressDeadline]: "600" };
      const request = update(held, 3);
      (request.oldObject as Deployment).spec!.paused = true;
      setDeadline(request.oldObject, NO_PROGRESS_DEADLINE);
      Object.assign(annotationsOf(request), held, annotations);
      setDeadline(request.object, incomingDeadline);
      return request;
    };

    it("puts the Deployment's own deadline aside while paused, recorded for the restore", () => {
      for (const request of [create(), update({ [A.appliedVersion]: "7" })]) {
        setDeadline(request.object, 300);
        const held = assertStable(request, mutate(request, context()), context());
        assert.equal(deadline(held), NO_PROGRESS_DEADLINE, `${request.operation}: none while held`);
        assert.equal(held.metadata!.annotations![A.progressDeadline], "300", `${request.operation}: its own recorded`);
      }
    });

    it("records nothing for a Deployment that has no deadline of its own", () => {
      const request = create();
      setDeadline(request.object, NO_PROGRESS_DEADLINE);
      const held = assertStable(request, mutate(request, context()), context());
      assert.equal(deadline(held), NO_PROGRESS_DEADLINE);
      assert.equal(held.metadata!.annotations![A.progressDeadline], undefined);
    });

    it("drops a record a user puts on a new Deployment and keeps the hold's on a re-applied manifest", () => {
      const fresh = create();
      annotationsOf(fresh)[A.progressDeadline] = "5";
      setDeadline(fresh.object, 600);
      assert.equal(apply(fresh, mutate(fresh, context())).metadata!.annotations![A.progressDeadline], "600");

      const again = heldAgain(NO_PROGRESS_DEADLINE, { [A.progressDeadline]: "5" });
      const result = assertStable(again, mutate(again, context()), context());
      assert.equal(result.metadata!.annotations![A.progressDeadline], "600", "the gate's record, not the user's");
      assert.equal(deadline(result), NO_PROGRESS_DEADLINE);
    });

    it("leaves a deadline a manifest names during the hold as it is (the restore keeps it)", () => {
      const request = heldAgain(120);
      const result = assertStable(request, mutate(request, context()), context());
      assert.equal(deadline(result), 120);
    });

    it("does not touch the deadline of an update that needs no hold", () => {
      const request = update({ [A.appliedVersion]: "8" });
      annotationsOf(request)[A.appliedVersion] = "8";
      setDeadline(request.object, 300);
      assert.deepEqual(mutate(request, context()), { kind: "allow" });
    });
  });

  it("leaves an update that keeps the applied version untouched", () => {
    const request = update({ [A.appliedVersion]: "8" });
    annotationsOf(request)[A.appliedVersion] = "8";
    assert.deepEqual(mutate(request, context()), { kind: "allow" });
  });

  it("restores gate-owned annotations a user's update dropped (kubectl replace)", () => {
    const request = update({ [A.appliedVersion]: "8" });
    const result = apply(request, mutate(request, context()));
    assert.equal(result.metadata!.annotations![A.appliedVersion], "8");
    assert.equal(result.spec!.replicas, 3);
  });

  it("never sees past the opt-in: an unannotated Deployment gets no patch", () => {
    const request = create();
    delete annotationsOf(request)[A.database];
    assert.deepEqual(mutate(request, context()), { kind: "allow" });
  });

  it("lets the gate's own ServiceAccount through untouched", () => {
    const request = create();
    request.userInfo.username = GATE;
    assert.deepEqual(mutate(request, context()), { kind: "allow" });
  });

  it("leaves excluded namespaces alone", () => {
    const request = create();
    request.namespace = "kube-system";
    assert.deepEqual(mutate(request, context()), { kind: "allow" });
  });

  it("keeps a held Deployment at zero when a manifest re-asserts the recorded count", () => {
    const request = update({ [A.appliedVersion]: "7", [A.phase]: "Pending", [A.desiredReplicas]: "3" }, 0);
    Object.assign(annotationsOf(request), { [A.appliedVersion]: "7", [A.phase]: "Pending", [A.desiredReplicas]: "3" });
    setReplicas(request, 3); // what helm's three-way merge sends when the chart says 3 and the cluster has 0
    const decision = mutate(request, context());
    const result = assertStable(request, decision, context());
    assert.equal(result.spec!.replicas, 0);
  });

  it("does not rewrite another count on a held Deployment (validation denies it)", () => {
    const request = update({ [A.phase]: "Pending", [A.desiredReplicas]: "3" }, 0);
    Object.assign(annotationsOf(request), { [A.phase]: "Pending", [A.desiredReplicas]: "3" });
    setReplicas(request, 7);
    const result = apply(request, mutate(request, context()));
    assert.equal(result.spec!.replicas, 7);
  });

  it("keeps gate-owned annotations as stored when a user changes or drops them", () => {
    const request = update({ [A.appliedVersion]: "7" });
    annotationsOf(request)[A.appliedVersion] = "8"; // a user trying to skip the migration
    const result = apply(request, mutate(request, context()));
    assert.equal(result.metadata!.annotations![A.appliedVersion], "7");
    assert.equal(result.spec!.paused, true, "still held: version 8 was never applied");
  });

  it("drops gate-owned annotations a user puts on a new Deployment", () => {
    const request = create();
    Object.assign(annotationsOf(request), { [A.appliedVersion]: "7", [A.phase]: "Done" });
    const result = apply(request, mutate(request, context()));
    assert.equal(result.metadata!.annotations![A.phase], "Pending");
    assert.equal(result.metadata!.annotations![A.appliedVersion], undefined);
  });

  it("holds nothing when the annotations are malformed (validation reports them)", () => {
    const request = create();
    annotationsOf(request)[A.timeout] = "soon";
    assert.deepEqual(mutate(request, context()), { kind: "allow" });
  });

  it("decides the same for a server-side dry run", () => {
    const request = create();
    request.dryRun = true;
    assert.deepEqual(mutate(request, context()), mutate(create(), context()));
  });

  it("does not touch the scale subresource", () => {
    assert.deepEqual(mutate(admissionReview("deployment-scale").request, context()), { kind: "allow" });
  });
});

function denial(decision: Decision): { code: number; message: string } {
  assert.equal(decision.kind, "deny", `expected a denial, got ${JSON.stringify(decision)}`);
  return decision as { code: number; message: string };
}

describe("validate", () => {
  it("denies malformed annotations with every problem, naming annotation, value and fix", () => {
    const request = create();
    Object.assign(annotationsOf(request), { [A.onFailure]: "explode", [A.timeout]: "15" });
    const { code, message } = denial(validate(request, context()));
    assert.equal(code, 422);
    assert.match(message, /deployment default\/orders-api has invalid schema-gate annotations/);
    assert.match(message, /on-failure: "explode" is not a failure policy; use "hold" or "rollback"/);
    assert.match(message, /timeout: "15" is not a duration .* write e\.g\. "15m"/);
  });

  it("allows a well-formed opt-in", () => {
    assert.deepEqual(validate(create(), context()), { kind: "allow" });
  });

  it("refuses an opt-in in a namespace the gate's RBAC does not cover (--namespaces), naming the fix", () => {
    const limited = { ...context(), actsIn: new Set(["shop", "billing"]) };
    const { code, message } = denial(validate(create(), limited));
    assert.equal(code, 403);
    assert.match(message, /deployment default\/orders-api opts in .* may not act in namespace "default" \(its RBAC covers: billing, shop\)/);
    assert.match(message, /Add "default" to the chart's rbac\.namespaces/);
    assert.deepEqual(validate(create(), { ...context(), actsIn: new Set(["default"]) }), { kind: "allow" });
    const plain = create();
    delete annotationsOf(plain)[A.database];
    assert.deepEqual(validate(plain, limited), { kind: "allow" }, "a Deployment that does not opt in is none of its business");
  });

  it("denies a replica change on a held Deployment, saying how to wait or abort", () => {
    const request = update({ [A.phase]: "Migrating", [A.desiredReplicas]: "3" }, 0);
    Object.assign(annotationsOf(request), { [A.phase]: "Migrating", [A.desiredReplicas]: "3" });
    setReplicas(request, 5);
    const { code, message } = denial(validate(request, context()));
    assert.equal(code, 403);
    assert.match(message, /held by schema-gate .* "orders-db" \(phase Migrating\); its replicas are set back to 3/);
    assert.match(message, /schema-gate wait orders-api -n default/);
    assert.match(message, /schema-gate abort orders-db -n default/);
  });

  it("denies unpausing a held Deployment (it would roll out the new version before its migration)", () => {
    const request = update({ [A.phase]: "Pending", [A.desiredReplicas]: "3" }, 3);
    (request.oldObject as Deployment).spec!.paused = true;
    Object.assign(annotationsOf(request), { [A.phase]: "Pending", [A.desiredReplicas]: "3" });
    setReplicas(request, 3);
    (request.object as Deployment).spec!.paused = false;
    assert.equal(denial(validate(request, context())).code, 403);
  });

  it("lets the gate scale a held Deployment", () => {
    const request = update({ [A.phase]: "Restoring", [A.desiredReplicas]: "3" }, 0);
    setReplicas(request, 3);
    request.userInfo.username = GATE;
    assert.deepEqual(validate(request, context()), { kind: "allow" });
  });

  describe("deployments/scale", () => {
    const held: Deployment = {
      metadata: { name: "orders-api", namespace: "default", annotations: { [A.database]: "orders-db", [A.phase]: "Pending", [A.desiredReplicas]: "3" } },
      spec: { replicas: 0 },
    };
    it("denies kubectl scale / HPA on a held Deployment", () => {
      const { code, message } = denial(validate(admissionReview("deployment-scale").request, context({ deployment: held })));
      assert.equal(code, 403);
      assert.match(message, /held by schema-gate/);
    });
    it("allows it for the gate", () => {
      const request = admissionReview("deployment-scale").request;
      request.userInfo.username = GATE;
      assert.deepEqual(validate(request, context({ deployment: held })), { kind: "allow" });
    });
    it("allows it when the Deployment is not held", () => {
      const done = structuredClone(held);
      done.metadata!.annotations![A.phase] = "Done";
      assert.deepEqual(validate(admissionReview("deployment-scale").request, context({ deployment: done })), { kind: "allow" });
    });
    it("fails closed for a Deployment on the held list that its cache does not know yet", () => {
      const answer = denial(validate(admissionReview("deployment-scale").request, context()));
      assert.equal(answer.code, 409);
      assert.match(answer.message, /not yet in schema-gate.s cache, and scaling is guarded here .*; try again in a few seconds/);
    });
  });

  it("denies a different target version while the group's window is open", () => {
    const request = update({ [A.appliedVersion]: "7" });
    const { code, message } = denial(validate(request, context({ group: { appliedVersion: "7", window: { version: "9" } } })));
    assert.equal(code, 409);
    assert.match(message, /window to schema version "9" open; deployment default\/orders-api asks for "8"/);
  });

  it("allows joining the open window with its own version", () => {
    const request = update({ [A.appliedVersion]: "7" });
    assert.deepEqual(validate(request, context({ group: { appliedVersion: "7", window: { version: "8" } } })), { kind: "allow" });
  });

  it("denies a downgrade unless allowed", () => {
    const request = update({ [A.appliedVersion]: "9" });
    const { message } = denial(validate(request, context()));
    assert.match(message, /"8" is older than the applied schema version "9" .*allow-downgrade: "true"/);
    annotationsOf(request)[A.allowDowngrade] = "true";
    assert.deepEqual(validate(request, context()), { kind: "allow" });
  });

  it("cannot order opaque versions, so does not call them downgrades", () => {
    const request = update({ [A.appliedVersion]: "zebra" });
    annotationsOf(request)[A.schemaVersion] = "aardvark";
    assert.deepEqual(validate(request, context()), { kind: "allow" });
  });

  it("denies removing the opt-in from a held Deployment", () => {
    const request = update({ [A.phase]: "Pending" });
    delete annotationsOf(request)[A.database];
    const { message } = denial(validate(request, context()));
    assert.match(message, /schema-gate\.dev\/database cannot be removed .* while it is held/);
  });

  it("allows removing the opt-in when not held", () => {
    const request = update({ [A.phase]: "Done" });
    delete annotationsOf(request)[A.database];
    assert.deepEqual(validate(request, context()), { kind: "allow" });
  });
});

describe("mutateIngress (switched Ingresses during maintenance)", () => {
  const SPEC = {
    ingressClassName: "nginx",
    rules: [{ host: "shop.example", http: { paths: [{ path: "/api", pathType: "Prefix", backend: { service: { name: "orders", port: { number: 80 } } } }] } }],
  };
  const backends = (spec: typeof SPEC) => spec.rules.flatMap((r) => r.http.paths.map((p) => p.backend.service.name));
  const withPath = (path: string) => {
    const spec = structuredClone(SPEC);
    spec.rules[0]!.http.paths[0]!.path = path;
    return spec;
  };
  const switchedSpec = () => {
    const spec = structuredClone(SPEC);
    spec.rules[0]!.http.paths[0]!.backend = { service: { name: "schema-gate-maintenance", port: { number: 80 } } };
    return spec;
  };
  /** An UPDATE of Ingress shop whose new object has `spec` and the gate's annotations. */
  function request(spec: unknown, annotations: Record<string, string> = { [A.maintenance]: "true", "schema-gate.dev/original-spec": JSON.stringify(SPEC) }, username = "helm"): AdmissionRequest {
    const object = { apiVersion: "networking.k8s.io/v1", kind: "Ingress", metadata: { name: "shop", namespace: "shop", annotations }, spec };
    return {
      uid: "u1",
      kind: { group: "networking.k8s.io", version: "v1", kind: "Ingress" },
      resource: { group: "networking.k8s.io", version: "v1", resource: "ingresses" },
      name: "shop",
      namespace: "shop",
      operation: "UPDATE",
      userInfo: { username },
      object,
      oldObject: { ...object, spec: switchedSpec() },
    };
  }
  const on = { ...context(), maintenanceOn: (ns: string) => ns === "shop" };
  type Stored = { spec: typeof SPEC; metadata: { annotations: Record<string, string> } };

  it("keeps a helm upgrade's new spec on the maintenance backend and records it for the restore", () => {
    const r = request(withPath("/api/v2")); // helm wrote the chart's whole spec, real backends included
    const decision = mutateIngress(r, on);
    assert.equal(decision.kind, "patch");
    const result = apply<Stored>(r, decision);
    assert.deepEqual(backends(result.spec), ["schema-gate-maintenance"]);
    assert.equal(result.spec.rules[0]!.http.paths[0]!.path, "/api/v2");
    assert.deepEqual(JSON.parse(result.metadata.annotations["schema-gate.dev/original-spec"]!), withPath("/api/v2"));
    assert.match((decision as { warnings?: string[] }).warnings?.[0] ?? "", /maintenance is on in namespace shop/);
    // Idempotent: the stored result asks for nothing more (and the controller finds nothing to do).
    assert.deepEqual(mutateIngress({ ...r, object: result }, on), { kind: "allow" });
  });

  it("leaves alone what it should not touch", () => {
    const changed = request(withPath("/api/v2"));
    assert.deepEqual(mutateIngress(changed, context()), { kind: "allow" }, "no flag cache");
    assert.deepEqual(mutateIngress(changed, { ...on, maintenanceOn: () => false }), { kind: "allow" }, "maintenance off: the controller restores");
    assert.deepEqual(mutateIngress(request(withPath("/x"), { [A.maintenance]: "true" }), on), { kind: "allow" }, "not switched yet: the first switch waits for the backend");
    assert.deepEqual(mutateIngress(request(withPath("/x"), undefined, GATE), on), { kind: "allow" }, "the gate's own write");
    assert.deepEqual(mutateIngress(request(switchedSpec()), on), { kind: "allow" }, "an unchanged switched spec");
  });

  it("restores an Ingress whose maintenance annotation was removed during maintenance", () => {
    const r = request(switchedSpec(), { "schema-gate.dev/original-spec": JSON.stringify(SPEC) });
    const decision = mutateIngress(r, on);
    const result = apply<Stored>(r, decision);
    assert.deepEqual(result.spec, SPEC);
    assert.equal(result.metadata.annotations["schema-gate.dev/original-spec"], undefined);
  });
});
