import { A } from "./annotations.js";
import type { GroupState } from "./admission.js";
import type { Deployment } from "./objects.js";
import { isHolding } from "./phase.js";
import { compareVersions } from "./version.js";

/**
 * The group's applied version and open window, read off its members' annotations.
 * `except` leaves one Deployment out, so a request can re-target its own hold.
 */
export function groupState(members: readonly Deployment[], database: string, except?: string): GroupState {
  let applied: string | undefined;
  let window: GroupState["window"];
  for (const member of members) {
    const annotations = member.metadata?.annotations ?? {};
    if (annotations[A.database] !== database) continue;
    const version = annotations[A.appliedVersion];
    if (version !== undefined && (applied === undefined || (compareVersions(version, applied) ?? 0) > 0)) {
      applied = version;
    }
    const target = annotations[A.schemaVersion];
    if (member.metadata?.name !== except && isHolding(annotations[A.phase]) && target !== undefined) {
      window ??= { version: target };
    }
  }
  if (window && window.version === applied) window = undefined;
  return { ...(applied !== undefined ? { appliedVersion: applied } : {}), ...(window ? { window } : {}) };
}
