import { strict as assert } from "node:assert";
import * as k8s from "@kubernetes/client-node";
import { Members, type MemberCaches } from "../../src/controller/members.js";
import { A } from "../../src/core/annotations.js";
import type { MergePatch } from "../../src/core/member-patches.js";
import { MERGE_PATCH } from "../../src/k8s/constants.js";
import { loadKubeConfig } from "../../src/k8s/kubeconfig.js";
import { pollUntil } from "../../src/util/wait.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { gateIdentity } from "../support/gate.js";

/** A Deployment made by a user, not yet opted in (the webhooks are not asked: no gate runs here). */
function deployment(name: string): k8s.V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image: "registry.example/app:1" }] } },
    },
  };
}

/** The window's writes need no cache: one that is asked anything fails the test. */
const noCaches = new Proxy({}, { get: () => assert.fail("the writes read no cache") }) as MemberCaches;

/** A patch that records the replicas it was decided on, as the quiesce records the count it stops. */
const recordReplicas = (seen: number[]) => (d: k8s.V1Deployment): MergePatch => {
  seen.push(d.spec!.replicas!);
  return { metadata: { annotations: { [A.desiredReplicas]: String(d.spec!.replicas) } }, spec: { replicas: 0 } };
};

/**
 * The guard on the window's writes to its members, against the real apiserver and
 * controller-manager: a write lands only on the member as it was read (its spec and
 * annotations), and the controllers' status writes in between do not count as a change.
 * The writes go as the gate's ServiceAccount, as the gate makes them; the webhooks do not
 * call the gate for its own requests, so no gate needs to run. Each test's Deployment is a
 * group of its own (named after it).
 */
describe("members: the window's guarded writes against the real apiserver", function () {
  let env: TestEnv;
  let ns: string;
  let asGate: k8s.AppsV1Api;
  let members: Members;

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    env = await testEnv();
    ns = await testNamespace("members");
    const gateKc = loadKubeConfig((await gateIdentity(env)).kubeconfig);
    asGate = gateKc.makeApiClient(k8s.AppsV1Api);
    members = new Members(gateKc, noCaches);
  });

  /** A member as the gate reads it in a window: opted in, and with the controller-manager's status written once. */
  async function created(name: string): Promise<k8s.V1Deployment> {
    await env.apps.createNamespacedDeployment({ namespace: ns, body: deployment(name) });
    await asGate.patchNamespacedDeployment({ name, namespace: ns, body: { metadata: { annotations: { [A.database]: name } } } }, MERGE_PATCH);
    return pollUntil(async () => {
      const d = await env.apps.readNamespacedDeployment({ name, namespace: ns });
      return (d.status?.observedGeneration ?? 0) >= d.metadata!.generation! ? d : undefined;
    }, { timeoutMs: 30_000, intervalMs: 50, what: `deployment ${name}'s first status` });
  }

  it("writes over a status update made after its read, without reading the group again", async function () {
    const read = await created("status-between");
    // What the Deployment controller does all through a window: a status write, a new resourceVersion.
    // A patch, not a replace over the read: the controller may write the status again in between,
    // and a replace would then be refused with a conflict before the guard is even asked.
    await env.apps.patchNamespacedDeploymentStatus({
      name: "status-between", namespace: ns,
      body: { status: { conditions: [...(read.status?.conditions ?? []), { type: "Probed", status: "True" }] } },
    }, MERGE_PATCH);
    const between = await env.apps.readNamespacedDeployment({ name: "status-between", namespace: ns });
    assert.notEqual(between.metadata?.resourceVersion, read.metadata?.resourceVersion, "the status write gave a new resourceVersion");
    const seen: number[] = [];
    const patched = await members.patchEach({ namespace: ns, name: read.metadata!.name!, deployments: [read] }, "record them", recordReplicas(seen));
    assert.deepEqual(patched, ["status-between"]);
    assert.deepEqual(seen, [1], "decided once, on the read it was given");
    const now = await env.apps.readNamespacedDeployment({ name: "status-between", namespace: ns });
    assert.equal(now.spec?.replicas, 0);
    assert.equal(now.metadata?.annotations?.[A.desiredReplicas], "1");
  });

  it("does not write over a change to the spec made after its read: it reads the member again and decides anew", async function () {
    const read = await created("scaled-between");
    await env.apps.patchNamespacedDeploymentScale({ name: "scaled-between", namespace: ns, body: [{ op: "replace", path: "/spec/replicas", value: 3 }] });
    const seen: number[] = [];
    await members.patchEach({ namespace: ns, name: read.metadata!.name!, deployments: [read] }, "record them", recordReplicas(seen));
    assert.deepEqual(seen, [1, 3], "the replica count a user set a moment before is the one recorded");
    const now = await env.apps.readNamespacedDeployment({ name: "scaled-between", namespace: ns });
    assert.equal(now.metadata?.annotations?.[A.desiredReplicas], "3");
    assert.equal(now.spec?.replicas, 0);
  });

  it("does not write over a change to the annotations made after its read", async function () {
    const read = await created("annotated-between");
    // Another writer's annotation (the gate's own identity here: an opted-in member's user writes go through its webhook).
    await asGate.patchNamespacedDeployment({ name: "annotated-between", namespace: ns, body: { metadata: { annotations: { "example.com/owner": "shop" } } } }, MERGE_PATCH);
    const owners: Array<string | undefined> = [];
    await members.patchEach({ namespace: ns, name: read.metadata!.name!, deployments: [read] }, "record them", (d) => {
      owners.push(d.metadata?.annotations?.["example.com/owner"]);
      return { metadata: { annotations: { [A.message]: `decided with owner ${d.metadata?.annotations?.["example.com/owner"]}` } } };
    });
    assert.deepEqual(owners, [undefined, "shop"]);
    const now = await env.apps.readNamespacedDeployment({ name: "annotated-between", namespace: ns });
    assert.equal(now.metadata?.annotations?.[A.message], "decided with owner shop");
  });

  it("does not write to a member deleted and made again under the same name", async function () {
    const read = await created("replaced-between");
    await env.apps.deleteNamespacedDeployment({ name: "replaced-between", namespace: ns });
    await pollUntil(async () => (await env.apps.listNamespacedDeployment({ namespace: ns })).items.every((d) => d.metadata?.name !== "replaced-between") || undefined,
      { timeoutMs: 30_000, intervalMs: 50, what: "the deployment to be gone" });
    const again = await created("replaced-between");
    const uids: string[] = [];
    await members.patchEach({ namespace: ns, name: read.metadata!.name!, deployments: [read] }, "record them", (d) => {
      uids.push(d.metadata!.uid!);
      return { metadata: { annotations: { [A.message]: d.metadata!.uid! } } };
    });
    assert.deepEqual(uids, [read.metadata!.uid, again.metadata!.uid]);
  });

  it("reports a write the apiserver refuses for what it says, not as a member that keeps changing", async function () {
    const read = await created("refused");
    await assert.rejects(
      members.patchEach({ namespace: ns, name: read.metadata!.name!, deployments: [read] }, "break them", () => ({ spec: { replicas: -1 } })),
      (error: Error) => !/keep changing/.test(error.message) && /replicas|greater than or equal to 0|Invalid/i.test(error.message),
    );
  });
});
