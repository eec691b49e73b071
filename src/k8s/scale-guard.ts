import * as k8s from "@kubernetes/client-node";
import type { Deployment } from "../core/objects.js";
import { heldDeployments, SCALE_CONDITION, SCALE_WEBHOOK, scaleGuardExpression } from "../core/scale-guard.js";
import type { Logger } from "../logger.js";
import { apiStatus } from "./errors.js";
import type { WatchedCache } from "./informer.js";
import type { Leadership } from "./leader.js";

/**
 * Keeps the scale webhook's match condition listing the held Deployments, so that
 * `kubectl scale` and the HPA reach the gate for those and (while the list fits; see
 * scaleGuardExpression) for no others. Rewritten on every Deployment change and every few
 * seconds (a re-applied manifest resets it), by the leader only: a replica whose cache
 * lags would otherwise take held names off the list.
 */
export function startScaleGuard(
  kc: k8s.KubeConfig,
  deployments: WatchedCache<k8s.V1Deployment>,
  webhookConfigName: string,
  leadership: Pick<Leadership, "isLeader" | "onAcquired">,
  log: Logger,
): { stop(): void } {
  const api = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
  let running = false;
  let again = false;
  let missingLogged = false;
  // What the configuration was last seen to hold. Deployment events (every status update
  // in the cluster) only cost an API call when the held set changed; the timer re-reads
  // the configuration regardless, to repair a re-applied manifest.
  let inPlace: string | undefined;

  const sync = async (force: boolean): Promise<void> => {
    if (!leadership.isLeader()) return;
    if (running) {
      again = true;
      return;
    }
    const expression = scaleGuardExpression(heldDeployments(deployments.list() as readonly Deployment[]));
    if (!force && expression === inPlace) return;
    running = true;
    try {
      let config: k8s.V1ValidatingWebhookConfiguration;
      try {
        config = await api.readValidatingWebhookConfiguration({ name: webhookConfigName });
      } catch (error) {
        if (apiStatus(error) === 404) {
          if (!missingLogged) log.warn({ webhookConfigName }, "validating webhook configuration not found; scale guard idle");
          missingLogged = true;
          inPlace = expression; // nothing to update until the timer finds the configuration
          return;
        }
        throw error;
      }
      missingLogged = false;
      const w = config.webhooks?.findIndex((hook) => hook.name === SCALE_WEBHOOK) ?? -1;
      const c = w < 0 ? -1 : (config.webhooks![w]!.matchConditions?.findIndex((m) => m.name === SCALE_CONDITION) ?? -1);
      if (c < 0) return;
      const current = config.webhooks![w]!.matchConditions![c]!.expression;
      inPlace = current;
      if (current === expression) return;
      if (!leadership.isLeader()) return; // lost while reading: the new leader writes
      const path = `/webhooks/${w}/matchConditions/${c}/expression`;
      await api.patchValidatingWebhookConfiguration(
        { name: webhookConfigName, body: [{ op: "test", path, value: current }, { op: "replace", path, value: expression }] },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
      );
      inPlace = expression;
      log.info({ expression }, "scale guard updated");
    } catch (error) {
      log.warn({ err: error }, "scale guard update failed; retrying");
    } finally {
      running = false;
      if (again) {
        again = false;
        void sync(false);
      }
    }
  };

  for (const event of ["add", "update", "delete"] as const) deployments.on(event, () => void sync(false));
  leadership.onAcquired(() => void sync(true));
  const timer = setInterval(() => void sync(true), 5000);
  timer.unref();
  void sync(true);
  return { stop: () => clearInterval(timer) };
}
