import * as k8s from "@kubernetes/client-node";
import { Command } from "commander";
import { randomBytes } from "node:crypto";
import { isSwitched, switchable } from "../core/ingress-switch.js";
import { BYPASS_KEY, BYPASS_SECRET } from "../core/sidecar-injection.js";
import { MANAGED_BY } from "../k8s/constants.js";
import { apiStatus } from "../k8s/errors.js";
import { BYPASS_HEADER, BYPASS_QUERY } from "../page/server.js";
import { loadKubeConfig } from "../k8s/kubeconfig.js";
import { FlagSwitch } from "../maintenance/switch.js";
import { pollUntil } from "../util/wait.js";

interface MaintenanceFlags {
  namespace?: string;
  kubeconfig?: string;
  message?: string;
  retryAfter?: string;
  force?: boolean;
  wait?: boolean;
}

/** The namespace a command acts in: -n, else the current kubeconfig context's, else default. */
export function currentNamespace(kc: k8s.KubeConfig, flag: string | undefined): string {
  return flag ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
}

/** `schema-gate maintenance on|off`: the flag ConfigMap, as a person sets it. */
export function maintenanceCommand(): Command {
  return new Command("maintenance")
    .description("turn a namespace's maintenance page on or off by hand (the schema-gate-maintenance ConfigMap)")
    .argument("<state>", "on or off")
    .option("-n, --namespace <ns>", "namespace (default: the current context's)")
    .option("--kubeconfig <file>", "kubeconfig (default: KUBECONFIG / ~/.kube/config)")
    .option("--message <text>", "what the page says")
    .option("--retry-after <seconds>", "Retry-After the page sends")
    .option("--force", "turn off a flag a migration window turned on")
    .option("--no-wait", "return once the flag is written, without waiting for the Ingresses")
    .action(async (state: string, flags: MaintenanceFlags) => {
      if (state !== "on" && state !== "off") throw new Error(`maintenance: "${state}" is not on or off`);
      if (flags.retryAfter !== undefined && !/^\d+$/.test(flags.retryAfter)) {
        throw new Error(`--retry-after: "${flags.retryAfter}" is not a number of seconds`);
      }
      const kc = loadKubeConfig(flags.kubeconfig);
      const namespace = currentNamespace(kc, flags.namespace);
      const on = state === "on";
      const before = await new FlagSwitch(kc, undefined).setManual(namespace, on, {
        ...(flags.message !== undefined ? { message: flags.message } : {}),
        ...(flags.retryAfter !== undefined ? { retryAfter: Number(flags.retryAfter) } : {}),
        force: flags.force === true,
      });
      const unchanged = before.enabled === on;
      console.log(`maintenance ${state} in namespace ${namespace}${unchanged ? ` (it already was${before.owner ? `, owner ${before.owner}` : ""})` : ""}`);
      if (on) {
        const created = await ensureBypassToken(kc, namespace);
        console.log(
          `bypass: open any page once with ?${BYPASS_QUERY}=<token> (or send header ${BYPASS_HEADER}); the token is in ` +
            `Secret ${BYPASS_SECRET}${created ? " (just created)" : ""}: kubectl get secret ${BYPASS_SECRET} -n ${namespace} ` +
            `-o jsonpath='{.data.${BYPASS_KEY}}' | base64 -d`,
        );
      }
      if (flags.wait !== false) await waitForIngresses(kc, namespace, on);
    });
}

async function waitForIngresses(kc: k8s.KubeConfig, namespace: string, on: boolean): Promise<void> {
  const api = kc.makeApiClient(k8s.NetworkingV1Api);
  let said = "";
  await pollUntil(
    async () => {
      const list = (await api.listNamespacedIngress({ namespace })).items.filter((i) => switchable(i) || isSwitched(i));
      const waiting = list.filter((i) => (on ? !isSwitched(i) : isSwitched(i))).map((i) => i.metadata!.name!);
      const line = waiting.length ? `waiting for the gate to ${on ? "switch" : "restore"} Ingress ${waiting.join(", ")}` : "";
      if (line && line !== said) console.log(line);
      said = line;
      if (waiting.length === 0 && list.length > 0) console.log(`${list.length} Ingress${list.length > 1 ? "es" : ""} ${on ? "switched to the maintenance page" : "restored"}`);
      return waiting.length === 0 ? true : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 500, what: `the Ingresses of ${namespace} (is schema-gate running?)` },
  );
}

/**
 * The bypass token Secret, made with the operator's rights (the gate itself reads no Secret
 * but its database's). The page and sidecar pods mount it; true when it was just created.
 */
async function ensureBypassToken(kc: k8s.KubeConfig, namespace: string): Promise<boolean> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  try {
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: BYPASS_SECRET, labels: { ...MANAGED_BY } },
        type: "Opaque",
        stringData: { [BYPASS_KEY]: randomBytes(24).toString("base64url") },
      },
    });
    return true;
  } catch (error) {
    if (apiStatus(error) === 409) return false;
    throw error;
  }
}
