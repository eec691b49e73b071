import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../logger.js";
import { apiStatus } from "./errors.js";

/** This replica does not (or no longer) lead: stop without writing; the leader carries on. */
export class LostLeadership extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LostLeadership";
  }
}

export interface Leadership {
  isLeader(): boolean;
  /** Resolves once this process leads (or the election stopped). */
  acquired(): Promise<void>;
  /** Gives the Lease up so another replica takes over at once. */
  stop(): Promise<void>;
}

export interface LeaseOptions {
  namespace: string;
  name: string;
  identity: string;
  durationSeconds: number;
  onLost: () => void;
}

/**
 * Leader election over a coordination.k8s.io Lease, client-go style: take the Lease when
 * it is free or expired, renew it every third of its duration, and step down on the first
 * renewal that fails (an update with a stale resourceVersion means someone else won).
 */
export function startLeaderElection(kc: k8s.KubeConfig, options: LeaseOptions, log: Logger): Leadership {
  const api = kc.makeApiClient(k8s.CoordinationV1Api);
  const { namespace, name, identity, durationSeconds } = options;
  let leader = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let resolveAcquired!: () => void;
  const acquiredPromise = new Promise<void>((resolve) => (resolveAcquired = resolve));

  const spec = (previous?: k8s.V1LeaseSpec): k8s.V1LeaseSpec => {
    const now = new k8s.V1MicroTime();
    const changing = previous?.holderIdentity !== identity;
    return {
      holderIdentity: identity,
      leaseDurationSeconds: durationSeconds,
      renewTime: now,
      acquireTime: changing ? now : (previous?.acquireTime ?? now),
      leaseTransitions: (previous?.leaseTransitions ?? 0) + (changing && previous?.holderIdentity ? 1 : 0),
    };
  };

  const tryOnce = async (): Promise<boolean> => {
    let lease: k8s.V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if (apiStatus(error) !== 404) throw error;
      await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: spec() } });
      return true;
    }
    const held = lease.spec?.holderIdentity;
    const renewed = lease.spec?.renewTime ? new Date(lease.spec.renewTime).getTime() : 0;
    const expired = Date.now() > renewed + (lease.spec?.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (held && held !== identity && !expired) return false;
    await api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: spec(lease.spec) } });
    return true;
  };

  const tick = async () => {
    if (stopped) return;
    try {
      const ok = await tryOnce();
      if (ok && !leader) {
        leader = true;
        log.info({ lease: `${namespace}/${name}`, identity }, "became leader");
        resolveAcquired();
      } else if (!ok && leader) {
        throw new Error("lease taken by another replica");
      }
    } catch (error) {
      if (leader) {
        leader = false;
        log.warn({ err: error, identity }, "lost leadership");
        options.onLost();
      } else if (apiStatus(error) !== 409) {
        log.warn({ err: error }, "leader election attempt failed");
      }
    }
    if (!stopped) timer = setTimeout(() => void tick(), (durationSeconds * 1000) / (leader ? 3 : 4));
  };
  void tick();

  return {
    isLeader: () => leader,
    acquired: () => acquiredPromise,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      resolveAcquired();
      if (!leader) return;
      leader = false;
      try {
        const lease = await api.readNamespacedLease({ name, namespace });
        if (lease.spec?.holderIdentity === identity) {
          await api.replaceNamespacedLease({
            name, namespace, body: { ...lease, spec: { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1 } },
          });
        }
      } catch (error) {
        log.warn({ err: error }, "could not release the lease");
      }
    },
  };
}
