import type * as k8s from "@kubernetes/client-node";
import type { AdmissionContext } from "../core/admission.js";
import { groupState } from "../core/group.js";
import type { Deployment } from "../core/objects.js";
import type { WatchedCache } from "./informer.js";

/**
 * Answers the webhook's questions about groups from the Deployment informer's cache:
 * no API call on the admission path.
 */
export function cachedAdmissionContext(
  deployments: WatchedCache<k8s.V1Deployment>,
  settings: Pick<AdmissionContext, "gateUsername" | "excludedNamespaces" | "sidecarImage" | "maintenanceOn" | "actsIn">,
): AdmissionContext {
  return {
    ...settings,
    deployment: (namespace, name) => deployments.get(name, namespace) as Deployment | undefined,
    group: (namespace, database, except) => groupState(deployments.list(namespace) as readonly Deployment[], database, except),
  };
}
