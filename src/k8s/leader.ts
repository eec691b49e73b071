import * as k8s from "@kubernetes/client-node";
import { electionTiming, heldByOther, leaseFor, observe, type ElectionTiming, type LeaseRecord, type Observation } from "../core/lease.js";
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
  /** True while this replica holds the Lease and renewed it within the renew deadline. */
  isLeader(): boolean;
  /** Called on every acquisition (a replica that loses and regains the Lease resumes its work). */
  onAcquired(listener: () => void): void;
  /** Called when leadership is lost (a failed or overdue renew, or another holder). */
  onLost(listener: () => void): void;
  /** Gives the Lease up so another replica takes over at once. */
  stop(): Promise<void>;
}

/** The Lease, read and written with resourceVersion; `replace` throws on a conflict. */
export interface LeaseApi {
  read(): Promise<{ record: LeaseRecord; resourceVersion: string } | undefined>;
  create(record: LeaseRecord): Promise<void>;
  replace(record: LeaseRecord, resourceVersion: string): Promise<void>;
}

export interface ElectionClock {
  /** Milliseconds that only move forward (performance.now), for every duration. */
  monotonic(): number;
  /** The wall clock, only for the times written into the Lease for people to read. */
  wall(): Date;
}

const systemClock: ElectionClock = { monotonic: () => performance.now(), wall: () => new Date() };

/**
 * Leader election over a coordination.k8s.io Lease. Every retry period it tries to take
 * or renew the Lease; a leader whose renewals have not succeeded within the renew deadline
 * (a hung call included) stops being one, tells its listeners, and becomes a candidate
 * again.
 */
export class LeaderElector implements Leadership {
  private leader = false;
  private lastRenew = 0;
  private observation: Observation | undefined;
  private attempting = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly acquiredListeners: Array<() => void> = [];
  private readonly lostListeners: Array<() => void> = [];

  constructor(
    private readonly api: LeaseApi,
    private readonly identity: string,
    private readonly leaseSeconds: number,
    private readonly log: Logger,
    private readonly clock: ElectionClock = systemClock,
    private readonly timing: ElectionTiming = electionTiming(leaseSeconds),
  ) {}

  isLeader(): boolean {
    return this.leader && this.clock.monotonic() - this.lastRenew < this.timing.renewDeadlineMs;
  }

  onAcquired(listener: () => void): void {
    this.acquiredListeners.push(listener);
    if (this.isLeader()) listener();
  }

  onLost(listener: () => void): void {
    this.lostListeners.push(listener);
  }

  start(): this {
    const loop = () => {
      if (this.stopped) return;
      void this.tick();
      this.timer = setTimeout(loop, this.timing.retryMs);
      this.timer.unref?.();
    };
    loop();
    return this;
  }

  /** One round: notice an overdue renew, then (unless an attempt still hangs) try to take or renew the Lease. */
  async tick(): Promise<void> {
    if (this.leader && !this.isLeader()) this.lose(new Error(`no renewal succeeded within ${this.timing.renewDeadlineMs} ms`));
    if (this.attempting || this.stopped) return;
    this.attempting = true;
    const sentAt = this.clock.monotonic();
    try {
      const ok = await this.tryAcquireOrRenew(sentAt);
      if (this.stopped) return;
      if (ok) this.renewed(sentAt);
      else if (this.leader) this.lose(new Error("the Lease is held by another replica"));
    } catch (error) {
      if (this.leader && !this.isLeader()) this.lose(error);
      else if (!this.leader && apiStatus(error) !== 409) this.log.warn({ err: error }, "leader election attempt failed");
    } finally {
      this.attempting = false;
    }
  }

  private async tryAcquireOrRenew(now: number): Promise<boolean> {
    const current = await this.api.read();
    if (!current) {
      await this.api.create(leaseFor(undefined, this.identity, this.leaseSeconds, this.clock.wall()));
      return true;
    }
    this.observation = observe(this.observation, current.record, current.resourceVersion, now);
    if (heldByOther(this.observation, this.identity, now, this.timing.leaseMs)) return false;
    await this.api.replace(leaseFor(current.record, this.identity, this.leaseSeconds, this.clock.wall()), current.resourceVersion);
    return true;
  }

  /**
   * A renewal counts from when it was sent, not answered: the Lease changed at some moment
   * after `sentAt`, and the others wait a lease duration from when they saw it. An answer
   * that comes a renew deadline late (a replica frozen or starved meanwhile, the reply
   * waiting in its socket) renews nothing: the others may lead by now.
   */
  private renewed(sentAt: number): void {
    const late = this.clock.monotonic() - sentAt;
    if (late >= this.timing.renewDeadlineMs) {
      this.lose(new Error(`the Lease write was answered ${Math.round(late)} ms after it was sent, past the renew deadline`));
      return;
    }
    this.lastRenew = sentAt;
    if (this.leader) return;
    this.leader = true;
    this.log.info({ identity: this.identity }, "became leader");
    for (const listener of this.acquiredListeners) listener();
  }

  private lose(cause: unknown): void {
    if (!this.leader) return;
    this.leader = false;
    this.log.warn({ err: cause, identity: this.identity }, "lost leadership");
    for (const listener of this.lostListeners) listener();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leader) return;
    this.leader = false;
    try {
      const current = await this.api.read();
      if (current?.record.holderIdentity === this.identity) {
        await this.api.replace({ ...current.record, holderIdentity: undefined, leaseDurationSeconds: 1 }, current.resourceVersion);
      }
    } catch (error) {
      this.log.warn({ err: error }, "could not release the lease");
    }
  }
}

export interface LeaseOptions {
  namespace: string;
  name: string;
  identity: string;
  durationSeconds: number;
}

/** The Lease through the API server. */
export function leaseApi(kc: k8s.KubeConfig, namespace: string, name: string): LeaseApi {
  const api = kc.makeApiClient(k8s.CoordinationV1Api);
  const spec = (record: LeaseRecord): k8s.V1LeaseSpec => ({
    ...record,
    ...(record.renewTime ? { renewTime: new k8s.V1MicroTime(record.renewTime) } : {}),
    ...(record.acquireTime ? { acquireTime: new k8s.V1MicroTime(record.acquireTime) } : {}),
  } as k8s.V1LeaseSpec);
  const iso = (time: Date | string | undefined) => (time === undefined ? undefined : new Date(time).toISOString());
  return {
    async read() {
      try {
        const lease = await api.readNamespacedLease({ name, namespace });
        const s = lease.spec ?? {};
        const record: LeaseRecord = {
          ...(s.holderIdentity ? { holderIdentity: s.holderIdentity } : {}),
          ...(s.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: s.leaseDurationSeconds } : {}),
          ...(s.renewTime ? { renewTime: iso(s.renewTime)! } : {}),
          ...(s.acquireTime ? { acquireTime: iso(s.acquireTime)! } : {}),
          ...(s.leaseTransitions !== undefined ? { leaseTransitions: s.leaseTransitions } : {}),
        };
        return { record, resourceVersion: lease.metadata!.resourceVersion! };
      } catch (error) {
        if (apiStatus(error) === 404) return undefined;
        throw error;
      }
    },
    async create(record) {
      await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: spec(record) } });
    },
    async replace(record, resourceVersion) {
      await api.replaceNamespacedLease({ name, namespace, body: { metadata: { name, namespace, resourceVersion }, spec: spec(record) } });
    },
  };
}

export function startLeaderElection(kc: k8s.KubeConfig, options: LeaseOptions, log: Logger): Leadership {
  return new LeaderElector(leaseApi(kc, options.namespace, options.name), options.identity, options.durationSeconds, log).start();
}
