/**
 * Leader election decisions, in the manner client-go's leaderelection is known for: a
 * follower never compares the holder's `renewTime` with its own wall clock (clocks
 * differ); it notes when it last *saw the Lease change*, on its own monotonic clock, and
 * takes over only once the Lease has stayed unchanged for a whole lease duration.
 */
export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  renewTime?: string;
  acquireTime?: string;
  leaseTransitions?: number;
}

export interface Observation {
  /** What identifies this version of the Lease: a renew changes it. */
  key: string;
  /** Monotonic milliseconds when this version was first seen. */
  seenAt: number;
  record: LeaseRecord;
}

export interface ElectionTiming {
  leaseMs: number;
  /** A leader that has not renewed for this long stops acting as one; shorter than the lease. */
  renewDeadlineMs: number;
  retryMs: number;
}

/** client-go's defaults (15 s, 10 s, 2 s) in proportion to the lease duration. */
export function electionTiming(leaseDurationSeconds: number): ElectionTiming {
  const leaseMs = leaseDurationSeconds * 1000;
  return { leaseMs, renewDeadlineMs: (leaseMs * 2) / 3, retryMs: leaseMs / 7.5 };
}

export function observe(previous: Observation | undefined, record: LeaseRecord, resourceVersion: string, now: number): Observation {
  const key = `${resourceVersion}/${record.holderIdentity ?? ""}/${record.renewTime ?? ""}`;
  return previous?.key === key ? previous : { key, seenAt: now, record };
}

/** Whether another replica holds the Lease: it names someone else, who changed it within one lease duration. */
export function heldByOther(observation: Observation, identity: string, now: number, fallbackLeaseMs: number): boolean {
  const holder = observation.record.holderIdentity;
  if (!holder || holder === identity) return false;
  const leaseMs = (observation.record.leaseDurationSeconds ?? fallbackLeaseMs / 1000) * 1000;
  return now < observation.seenAt + leaseMs;
}

/** The Lease as this replica writes it to take or renew it. */
export function leaseFor(previous: LeaseRecord | undefined, identity: string, leaseDurationSeconds: number, wallNow: Date): LeaseRecord {
  const now = wallNow.toISOString();
  const changing = previous?.holderIdentity !== identity;
  return {
    holderIdentity: identity,
    leaseDurationSeconds,
    renewTime: now,
    acquireTime: changing ? now : (previous?.acquireTime ?? now),
    leaseTransitions: (previous?.leaseTransitions ?? 0) + (changing && previous?.holderIdentity ? 1 : 0),
  };
}
