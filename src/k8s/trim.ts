import type * as k8s from "@kubernetes/client-node";

/**
 * What the informers keep of each object: the fields the gate reads from its caches and
 * nothing else. An apiserver object carries `managedFields` and, after `kubectl apply`,
 * the whole previous manifest again in an annotation; a Deployment's pod template is most
 * of the rest. None of that is read from a cache: what needs a whole object (a rollback's
 * previous template, a migration Job's template, an Ingress being rewritten) reads it from
 * the API at that step. Each function returns a new plain object.
 */

const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";

/** The metadata the caches keep: identity, version, labels and annotations (without the applied manifest). */
function trimMeta(meta: k8s.V1ObjectMeta | undefined, keep: { labels?: boolean; annotations?: boolean } = {}): k8s.V1ObjectMeta {
  const out: k8s.V1ObjectMeta = {};
  if (meta?.name !== undefined) out.name = meta.name;
  if (meta?.namespace !== undefined) out.namespace = meta.namespace;
  if (meta?.uid !== undefined) out.uid = meta.uid;
  if (meta?.resourceVersion !== undefined) out.resourceVersion = meta.resourceVersion;
  if (meta?.generation !== undefined) out.generation = meta.generation;
  if (keep.labels !== false && meta?.labels) out.labels = { ...meta.labels };
  if (keep.annotations !== false && meta?.annotations) {
    const { [LAST_APPLIED]: _applied, ...annotations } = meta.annotations;
    out.annotations = annotations;
  }
  return out;
}

/** The fields of `from` named in `keys` that are set (an absent one stays absent, as the API sends it). */
function defined<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Pick<T, K> {
  return Object.fromEntries(keys.filter((key) => from[key] !== undefined).map((key) => [key, from[key]])) as Pick<T, K>;
}

/**
 * A Deployment as admission, the scale guard and the window read it: annotations, the
 * replica count, paused, the progress deadline (which a hold puts aside), the selector, the
 * container names (which the annotations are checked against) and the rollout status.
 */
export function trimDeployment(d: k8s.V1Deployment): k8s.V1Deployment {
  const spec = d.spec;
  const status = d.status;
  return {
    metadata: trimMeta(d.metadata),
    ...(spec
      ? {
          spec: {
            ...defined(spec, ["replicas", "paused", "progressDeadlineSeconds", "minReadySeconds"]),
            selector: structuredClone(spec.selector),
            template: { spec: { containers: (spec.template?.spec?.containers ?? []).map((c) => ({ name: c.name })) } },
          },
        }
      : {}),
    ...(status
      ? {
          status: defined(status, ["observedGeneration", "replicas", "updatedReplicas", "availableReplicas", "readyReplicas"]),
        }
      : {}),
  };
}

/** A Pod as the drain and readiness steps read it: name, labels, terminating or not, phase and Ready. */
export function trimPod(pod: k8s.V1Pod): k8s.V1Pod {
  const ready = pod.status?.conditions?.find((c) => c.type === "Ready");
  const status: k8s.V1PodStatus = {
    ...(pod.status?.phase !== undefined ? { phase: pod.status.phase } : {}),
    ...(ready ? { conditions: [{ type: "Ready", status: ready.status }] } : {}),
  };
  return {
    metadata: { ...trimMeta(pod.metadata, { annotations: false }), ...(pod.metadata?.deletionTimestamp ? { deletionTimestamp: pod.metadata.deletionTimestamp } : {}) },
    ...(Object.keys(status).length > 0 ? { status } : {}),
  };
}

/** A CronJob as the drain step reads it: annotations, suspended, and the names of its running Jobs. */
export function trimCronJob(cronJob: k8s.V1CronJob): k8s.V1CronJob {
  const active = cronJob.status?.active?.map((ref) => ({ name: ref.name }));
  return {
    metadata: trimMeta(cronJob.metadata),
    ...(cronJob.spec?.suspend !== undefined ? { spec: { suspend: cronJob.spec.suspend } } : {}),
    ...(active ? { status: { active } } : {}),
  } as k8s.V1CronJob;
}

/** An Ingress without managedFields and the applied manifest; its spec is what the switch decides on. */
export function trimIngress(ingress: k8s.V1Ingress): k8s.V1Ingress {
  return { metadata: trimMeta(ingress.metadata), ...(ingress.spec ? { spec: structuredClone(ingress.spec) } : {}) };
}

/** A maintenance flag ConfigMap: its data is the flag. */
export function trimConfigMap(map: k8s.V1ConfigMap): k8s.V1ConfigMap {
  return { metadata: trimMeta(map.metadata), ...(map.data ? { data: { ...map.data } } : {}) };
}
