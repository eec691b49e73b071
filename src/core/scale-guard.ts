import type { Deployment } from "./objects.js";
import { isHeld } from "./phase.js";

export const SCALE_WEBHOOK = "scale.schema-gate.dev";
export const SCALE_CONDITION = "held";

/**
 * The apiserver refuses a match condition longer than 100,000 code points ("expression
 * code point size exceeds limit"): a list of `namespace/name` strings reaches it at about
 * 2,900 held Deployments. The guard keeps well below it.
 */
export const CEL_EXPRESSION_LIMIT = 100_000;
export const SCALE_GUARD_BUDGET = 60_000;

/** `namespace/name` of every opted-in Deployment the gate currently holds, sorted. */
export function heldDeployments(deployments: readonly Deployment[]): string[] {
  return deployments
    .filter((d) => isHeld(d.metadata?.annotations ?? {}))
    .map((d) => `${d.metadata?.namespace}/${d.metadata?.name}`)
    .sort();
}

const list = (items: readonly string[]) => `[${items.map((item) => `'${item}'`).join(", ")}]`;

/**
 * The CEL match condition that sends scale requests for held Deployments to the gate.
 * Exact (the held names) while that fits the budget; past it, every Deployment of a
 * namespace that holds one (the gate allows the others, from its cache); past that too,
 * every scale request. Its size is bounded whatever the number of held Deployments.
 */
export function scaleGuardExpression(held: readonly string[], budget = SCALE_GUARD_BUDGET): string {
  const exact = `request.namespace + '/' + request.name in ${list(held)}`;
  if (exact.length <= budget) return exact;
  const namespaces = [...new Set(held.map((key) => key.slice(0, key.indexOf("/"))))].sort();
  const byNamespace = `request.namespace in ${list(namespaces)}`;
  return byNamespace.length <= budget ? byNamespace : "true";
}
