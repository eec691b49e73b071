import type { Deployment } from "./objects.js";
import { isHeld } from "./phase.js";

export const SCALE_WEBHOOK = "scale.schema-gate.dev";
export const SCALE_CONDITION = "held";

/** `namespace/name` of every opted-in Deployment the gate currently holds, sorted. */
export function heldDeployments(deployments: readonly Deployment[]): string[] {
  return deployments
    .filter((d) => isHeld(d.metadata?.annotations ?? {}))
    .map((d) => `${d.metadata?.namespace}/${d.metadata?.name}`)
    .sort();
}

/** The CEL match condition that sends scale requests for exactly these Deployments to the gate. */
export function scaleGuardExpression(held: readonly string[]): string {
  return `request.namespace + '/' + request.name in [${held.map((key) => `'${key}'`).join(", ")}]`;
}
