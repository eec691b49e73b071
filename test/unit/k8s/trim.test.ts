import { strict as assert } from "node:assert";
import type * as k8s from "@kubernetes/client-node";
import { pino } from "pino";
import { mutate, validate } from "../../../src/core/admission.js";
import { A } from "../../../src/core/annotations.js";
import { decideIngress, isSwitched, ORIGINAL_SPEC, switchable } from "../../../src/core/ingress-switch.js";
import { parseFlag } from "../../../src/core/maintenance-flag.js";
import { markPatch, quiescePatch, reholdPatch, restorePatch, rolloutReady } from "../../../src/core/member-patches.js";
import type { Deployment } from "../../../src/core/objects.js";
import { Phase } from "../../../src/core/phase.js";
import { heldDeployments } from "../../../src/core/scale-guard.js";
import { podsBlockingDrain, podsServing } from "../../../src/core/window-policy.js";
import { decideWindow, planWindow, type WindowState } from "../../../src/core/window.js";
import { cachedAdmissionContext } from "../../../src/k8s/group-view.js";
import { guardedPatch } from "../../../src/k8s/guarded-patch.js";
import { startInformer } from "../../../src/k8s/informer.js";
import { fixedCache } from "../../support/fixed-cache.js";
import { trimConfigMap, trimCronJob, trimDeployment, trimIngress, trimPod } from "../../../src/k8s/trim.js";
import { admissionReview } from "../../support/fixtures.js";

const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";


/** The captured orders-api Deployment (managedFields, kubectl's applied manifest, a full pod template) in a few states. */
function members(): k8s.V1Deployment[] {
  const base = (): k8s.V1Deployment => admissionReview("deployment-update").request.oldObject;
  const variant = (name: string, annotations: Record<string, string>, change: (d: k8s.V1Deployment) => void = () => undefined) => {
    const d = base();
    d.metadata!.name = name;
    Object.assign(d.metadata!.annotations!, annotations);
    change(d);
    return d;
  };
  return [
    variant("orders-api", {}),
    variant("billing", { [A.phase]: Phase.Pending, [A.desiredReplicas]: "3", [A.schemaVersion]: "8" }, (d) => (d.spec!.paused = true)),
    variant("catalog", { [A.phase]: Phase.Migrating, [A.desiredReplicas]: "2", [A.appliedVersion]: "7" }, (d) => (d.spec!.replicas = 0)),
    variant("unpaused", { [A.phase]: Phase.Pending, [A.schemaVersion]: "9", [A.appliedVersion]: "7" }),
    variant("rolling", { [A.appliedVersion]: "7" }, (d) => (d.status = { observedGeneration: 1, replicas: 4, updatedReplicas: 2, availableReplicas: 3 })),
    variant("retried", { [A.retry]: "again", [A.abort]: "true" }),
  ];
}

describe("the informers' trimmed objects", () => {
  it("drop managedFields, kubectl's applied manifest and the pod template beyond container names", () => {
    const full = members()[0]!;
    assert.ok(full.metadata?.managedFields?.length, "the fixture carries managedFields");
    assert.ok(full.metadata?.annotations?.[LAST_APPLIED], "and the applied manifest");
    const trimmed = trimDeployment(full);
    assert.equal(trimmed.metadata?.managedFields, undefined);
    assert.equal(trimmed.metadata?.annotations?.[LAST_APPLIED], undefined);
    assert.deepEqual(trimmed.spec?.template, { spec: { containers: full.spec!.template.spec!.containers.map((c) => ({ name: c.name })) } });
    const { [LAST_APPLIED]: _dropped, ...rest } = full.metadata!.annotations!;
    assert.deepEqual(trimmed.metadata?.annotations, rest, "every other annotation is kept");
    assert.ok(JSON.stringify(trimmed).length < JSON.stringify(full).length / 3, `${JSON.stringify(trimmed).length} of ${JSON.stringify(full).length} bytes`);
  });

  it("give admission the same answers as the whole objects", () => {
    const full = members();
    const settings = { gateUsername: "system:serviceaccount:schema-gate:schema-gate", excludedNamespaces: new Set<string>() };
    const whole = cachedAdmissionContext(fixedCache(() => full), settings);
    const trimmed = cachedAdmissionContext(fixedCache(() => full.map(trimDeployment)), settings);
    const requests = [admissionReview("deployment-create").request, admissionReview("deployment-update").request];
    for (const name of full.map((d) => d.metadata!.name!)) {
      const scale = admissionReview("deployment-scale").request;
      scale.name = name;
      requests.push(scale);
      const update = admissionReview("deployment-update").request;
      update.name = update.object.metadata.name = update.oldObject.metadata.name = name;
      requests.push(update);
    }
    for (const request of requests) {
      assert.deepEqual(validate(request, trimmed), validate(request, whole), `validate ${request.name}`);
      assert.deepEqual(mutate(request, trimmed), mutate(request, whole), `mutate ${request.name}`);
    }
    assert.deepEqual(trimmed.group("default", "orders-db"), whole.group("default", "orders-db"));
  });

  it("give the scale guard and the window the same decisions", () => {
    const full = members();
    const trimmed = full.map(trimDeployment);
    assert.deepEqual(heldDeployments(trimmed as Deployment[]), heldDeployments(full as Deployment[]));
    assert.deepEqual(planWindow(trimmed), planWindow(full));
    const state = { id: "w", group: "orders-db", version: "8", step: "drain", attempt: 1, retryToken: "before" } as unknown as WindowState;
    assert.deepEqual(decideWindow(state, trimmed, 0), decideWindow(state, full, 0));
    trimmed.forEach((t, i) => {
      const d = full[i]!;
      const name = d.metadata!.name;
      assert.deepEqual(quiescePatch(t, "m"), quiescePatch(d, "m"), `quiesce ${name}`);
      assert.deepEqual(restorePatch(t, "8", "m"), restorePatch(d, "8", "m"), `restore ${name}`);
      // The restore writes from the cache (startsFromCache): the same operations and guards as from the whole object.
      const restore = restorePatch(d, "8", "m");
      if (restore) assert.deepEqual(guardedPatch(t, restore), guardedPatch(d, restore), `guarded restore ${name}`);
      const quiesce = quiescePatch(d, "m");
      if (quiesce) assert.deepEqual(guardedPatch(t, quiesce), guardedPatch(d, quiesce), `guarded quiesce ${name}`);
      assert.deepEqual(reholdPatch(t), reholdPatch(d), `rehold ${name}`);
      assert.deepEqual(markPatch(t, Phase.Failed, "m"), markPatch(d, Phase.Failed, "m"), `mark ${name}`);
      assert.equal(rolloutReady(t), rolloutReady(d), `ready ${name}`);
    });
  });

  it("give the drain the same pods to wait for, and readiness the same pods serving", () => {
    const pod = (name: string, labels: Record<string, string>, phase: string): k8s.V1Pod => ({
      metadata: {
        name, namespace: "default", labels, resourceVersion: "5", managedFields: [{ manager: "kubelet" }],
        annotations: { note: "x" }, ownerReferences: [{ apiVersion: "apps/v1", kind: "ReplicaSet", name: "rs", uid: "u" }],
      },
      spec: { containers: [{ name: "app", image: "app:1", env: [{ name: "A", value: "b".repeat(500) }] }] },
      status: { phase, conditions: [{ type: "Ready", status: "True" }], podIP: "10.0.0.1" },
    });
    const pods = [
      pod("api-1", { app: "orders-api" }, "Running"),
      pod("api-done", { app: "orders-api" }, "Succeeded"),
      pod("other", { app: "other" }, "Running"),
      pod("cron-run", { "job-name": "report-123" }, "Pending"),
      pod("migration", { app: "orders-api", "schema-gate.dev/window": "w" }, "Running"),
    ];
    const deployments = members().slice(0, 1);
    const runs = new Set(["report-123"]);
    const trimmed = pods.map(trimPod);
    assert.deepEqual(podsBlockingDrain(trimmed, deployments.map(trimDeployment), runs), podsBlockingDrain(pods, deployments, runs));
    assert.deepEqual(trimmed[0], {
      metadata: { name: "api-1", namespace: "default", resourceVersion: "5", labels: { app: "orders-api" } },
      status: { phase: "Running", conditions: [{ type: "Ready", status: "True" }] },
    });
    const leaving = { ...pod("api-2", { app: "orders-api" }, "Running"), metadata: { ...pod("api-2", { app: "orders-api" }, "Running").metadata, deletionTimestamp: new Date() } };
    for (const replicas of [1, 2]) {
      const wants = { ...deployments[0]!, spec: { ...deployments[0]!.spec!, replicas } };
      const all = [...pods, leaving];
      assert.equal(podsServing(trimDeployment(wants), all.map(trimPod)), podsServing(wants, all), `serving at ${replicas}`);
    }
    assert.equal(podsServing({ ...deployments[0]!, spec: { ...deployments[0]!.spec!, replicas: 1 } }, pods), true, "api-1 serves; the job's and the migration pod do not count");
    assert.equal(podsServing({ ...deployments[0]!, spec: { ...deployments[0]!.spec!, replicas: 2 } }, [...pods, leaving]), false, "a terminating pod does not serve");
  });

  it("keep what the drain and the switch read of CronJobs, Ingresses and flags", () => {
    const cronJob = trimCronJob({
      metadata: { name: "report", namespace: "default", annotations: { [A.database]: "orders-db", [LAST_APPLIED]: "{}" }, managedFields: [{}] },
      spec: { schedule: "* * * * *", suspend: true, jobTemplate: { spec: { template: { spec: { containers: [{ name: "r", image: "r" }] } } } } },
      status: { active: [{ name: "report-123", namespace: "default", uid: "u", kind: "Job" }] },
    });
    assert.deepEqual(cronJob, {
      metadata: { name: "report", namespace: "default", annotations: { [A.database]: "orders-db" } },
      spec: { suspend: true }, status: { active: [{ name: "report-123" }] },
    });

    const spec = { rules: [{ host: "shop", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "web", port: { number: 80 } } } }] } }] };
    const ingresses: k8s.V1Ingress[] = [
      { metadata: { name: "a", namespace: "n", annotations: { [A.maintenance]: "true", [LAST_APPLIED]: "{}" }, managedFields: [{}] }, spec },
      { metadata: { name: "b", namespace: "n", annotations: { [A.maintenance]: "true", [ORIGINAL_SPEC]: JSON.stringify(spec) } }, spec },
    ];
    for (const ingress of ingresses) {
      const trimmed = trimIngress(ingress);
      assert.equal(trimmed.metadata?.managedFields, undefined);
      assert.equal(trimmed.metadata?.annotations?.[LAST_APPLIED], undefined);
      assert.equal(switchable(trimmed), switchable(ingress));
      assert.equal(isSwitched(trimmed), isSwitched(ingress));
      for (const on of [true, false]) assert.deepEqual(decideIngress(trimmed, on), decideIngress(ingress, on));
    }
    const flag: k8s.V1ConfigMap = { metadata: { name: "schema-gate-maintenance", namespace: "n", managedFields: [{}] }, data: { enabled: "true", owner: "manual" } };
    assert.deepEqual(parseFlag(trimConfigMap(flag).data), parseFlag(flag.data));
  });

  it("are what the informer stores: the initial list is read in pages and each item trimmed", async () => {
    const pages: Array<{ limit: number; _continue?: string }> = [];
    const all = members();
    let listed: k8s.KubernetesListObject<k8s.V1Deployment> | undefined;
    const fake = {
      async start() {
        listed = await listAll();
      },
      on: () => undefined, stop: async () => undefined, list: () => [], get: () => undefined,
    };
    let listAll: () => Promise<k8s.KubernetesListObject<k8s.V1Deployment>> = async () => ({ items: [] });
    const cache = await startInformer<k8s.V1Deployment>(
      {} as k8s.KubeConfig, "/apis/apps/v1/deployments",
      async (page) => {
        pages.push(page);
        const from = page._continue ? Number(page._continue) : 0;
        const to = from + 4;
        return { items: all.slice(from, to), metadata: { resourceVersion: "9", ...(to < all.length ? { _continue: String(to) } : {}) } };
      },
      pino({ level: "silent" }), undefined,
      { transform: trimDeployment, make: ((_kc: unknown, _path: string, list: typeof listAll) => ((listAll = list), fake)) as never },
    );
    assert.deepEqual(pages.map((p) => p._continue), [undefined, "4"]);
    assert.deepEqual(listed?.items, all.map(trimDeployment));
    assert.equal(listed?.metadata?.resourceVersion, "9");
    await cache.stop();
  });
});
