import { A } from "./annotations.js";

/**
 * The `schema-gate.dev/phase` of a member Deployment. While a phase is "holding", the
 * gate owns the Deployment's replica count and others may not change it.
 */
export const Phase = {
  Pending: "Pending",
  Migrating: "Migrating",
  Restoring: "Restoring",
  Failed: "Failed",
  Done: "Done",
  RolledBack: "RolledBack",
  Aborted: "Aborted",
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

const HOLDING: ReadonlySet<string> = new Set([Phase.Pending, Phase.Migrating, Phase.Restoring, Phase.Failed]);

export function isHolding(phase: string | undefined): boolean {
  return phase !== undefined && HOLDING.has(phase);
}

/** An opted-in Deployment (by its annotations) that the gate currently holds. */
export function isHeld(annotations: Record<string, string>): boolean {
  return Boolean(annotations[A.database]) && isHolding(annotations[A.phase]);
}
