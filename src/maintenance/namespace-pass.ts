import * as k8s from "@kubernetes/client-node";
import {
  applyIngressChange,
  BACKEND_SERVICE,
  decideIngress,
  isSwitched,
  ORIGINAL_SPEC,
  routesOf,
  switchable,
  type IngressChange,
  type IngressSpec,
} from "../core/ingress-switch.js";
import { claimManualData, FLAG_NAME, FlagKey, parseFlag, type Flag, type Route } from "../core/maintenance-flag.js";
import { MERGE_PATCH } from "../k8s/constants.js";
import { apiStatus } from "../k8s/errors.js";
import type { EventRecorder } from "../k8s/events.js";
import type { WatchedCache } from "../k8s/informer.js";
import type { Logger } from "../logger.js";
import type { MaintenanceBackend } from "./backend.js";
import type { SidecarNudge } from "./sidecar-nudge.js";

export interface NamespacePassDeps {
  flags: WatchedCache<k8s.V1ConfigMap>;
  ingresses: WatchedCache<k8s.V1Ingress>;
  core: k8s.CoreV1Api;
  networking: k8s.NetworkingV1Api;
  backend: MaintenanceBackend;
  events: EventRecorder;
  /** Has the sidecars' pods re-read the flag at once (absent: they follow at the kubelet's next sync). */
  sidecars?: Pick<SidecarNudge, "nudge">;
  log: Logger;
}

export const relevantIngress = (i: k8s.V1Ingress) => switchable(i) || isSwitched(i);

/**
 * One pass over a namespace: the flag's manual owner recorded, the backend ready before
 * any Ingress points at it, each annotated Ingress switched or restored, the bypass routes
 * written, the backend removed after the last restore; meanwhile the sidecars' pods nudged
 * to re-read a flag that turned on or off. False asks for another pass soon.
 */
export async function reconcileNamespace(deps: NamespacePassDeps, namespace: string): Promise<boolean> {
  const configMap = deps.flags.get(FLAG_NAME, namespace);
  const flag = parseFlag(configMap?.data);
  const claim = claimManualData(flag, new Date());
  if (claim && configMap) {
    await deps.core.patchNamespacedConfigMap({ name: FLAG_NAME, namespace, body: { data: claim } }, MERGE_PATCH);
    deps.log.info({ namespace }, "maintenance turned on by hand; recorded owner manual");
    await deps.events(flagTarget(configMap), "Normal", "MaintenanceOn", `maintenance turned on in ${namespace} (owner manual)`);
  }

  // The sidecars serve the page themselves: they need not wait for the backend and the Ingresses.
  // Best effort, and handled at once (it runs while the Ingresses are seen to).
  const nudged = configMap
    ? deps.sidecars?.nudge(namespace, flag).catch((error: unknown) => deps.log.warn({ err: error, namespace }, "could not nudge the sidecars' pods"))
    : undefined;
  try {
    return await switchIngresses(deps, namespace, configMap, flag);
  } finally {
    await nudged;
  }
}

async function switchIngresses(deps: NamespacePassDeps, namespace: string, configMap: k8s.V1ConfigMap | undefined, flag: Flag): Promise<boolean> {
  const relevant = deps.ingresses.list(namespace).filter(relevantIngress);
  if (flag.enabled && relevant.some(switchable) && !(await deps.backend.ensure(namespace))) return false;

  let settled = true;
  const routes: Route[] = [];
  for (const ingress of relevant) {
    const change = decideIngress(ingress, flag.enabled);
    if (change && !(await writeIngress(deps, ingress, change))) settled = false;
    if (flag.enabled && switchable(ingress)) {
      const original = change?.originalSpec ?? ingress.metadata?.annotations?.[ORIGINAL_SPEC];
      if (original) routes.push(...(await routesFor(deps.core, namespace, JSON.parse(original) as IngressSpec)));
    }
  }

  if (flag.enabled && configMap) {
    const text = JSON.stringify(routes);
    if ((configMap.data?.[FlagKey.routes] ?? "[]") !== text) {
      await deps.core.patchNamespacedConfigMap({ name: FLAG_NAME, namespace, body: { data: { [FlagKey.routes]: text } } }, MERGE_PATCH);
    }
  }
  if (!flag.enabled && settled && !relevant.some(isSwitched)) await deps.backend.remove(namespace);
  return settled;
}

/**
 * Writes one Ingress's switch or restore; false when someone wrote it meanwhile (the next
 * pass sees theirs). The write is a replace, so it starts from the whole object read from
 * the API (the cache keeps neither managedFields nor kubectl's applied manifest, which a
 * replace built from it would drop), at the version the decision was made on.
 */
async function writeIngress(deps: NamespacePassDeps, cached: k8s.V1Ingress, change: IngressChange): Promise<boolean> {
  const { name, namespace } = cached.metadata as { name: string; namespace: string };
  try {
    const ingress = await deps.networking.readNamespacedIngress({ name, namespace });
    if (ingress.metadata?.resourceVersion !== cached.metadata?.resourceVersion) return false;
    await deps.networking.replaceNamespacedIngress({ name, namespace, body: applyIngressChange(ingress, change) });
  } catch (error) {
    if (apiStatus(error) === 409 || apiStatus(error) === 404) return false;
    throw error;
  }
  const restored = change.originalSpec === undefined;
  if (!restored && isSwitched(cached)) {
    deps.log.info({ namespace, ingress: name }, "ingress changed during maintenance; kept switched, new spec recorded");
    return true;
  }
  deps.log.info({ namespace, ingress: name, restored }, restored ? "ingress restored" : "ingress switched to maintenance");
  await deps.events(
    { kind: "Ingress", apiVersion: "networking.k8s.io/v1", name, namespace, uid: cached.metadata?.uid },
    "Normal",
    restored ? "IngressRestored" : "IngressSwitched",
    restored
      ? "maintenance is off: the Ingress's own spec is back"
      : `maintenance is on: every backend now points at Service ${BACKEND_SERVICE} (original spec kept in annotation ${ORIGINAL_SPEC})`,
  );
  return true;
}

/** Where each path of an Ingress's real spec leads, for the bypass token. */
async function routesFor(core: k8s.CoreV1Api, namespace: string, spec: IngressSpec): Promise<Route[]> {
  const named = new Map<string, number | undefined>();
  for (const rule of spec.rules ?? []) {
    for (const path of rule.http?.paths ?? []) {
      const service = path.backend.service;
      if (service?.port?.name && !named.has(`${service.name}/${service.port.name}`)) {
        const found = await core.readNamespacedService({ name: service.name, namespace }).catch(() => undefined);
        named.set(`${service.name}/${service.port.name}`, found?.spec?.ports?.find((p) => p.name === service.port!.name)?.port);
      }
    }
  }
  return routesOf(spec, (service, port) => {
    const number = port.number ?? named.get(`${service}/${port.name}`);
    return number === undefined ? undefined : `http://${service}.${namespace}.svc:${number}`;
  });
}

const flagTarget = (configMap: k8s.V1ConfigMap) => ({
  kind: "ConfigMap",
  apiVersion: "v1",
  name: FLAG_NAME,
  namespace: configMap.metadata!.namespace!,
  uid: configMap.metadata?.uid,
});
