import { strict as assert } from "node:assert";
import { pino } from "pino";
import { electionTiming, type LeaseRecord } from "../../../src/core/lease.js";
import { LeaderElector, type LeaseApi } from "../../../src/k8s/leader.js";

/** One Lease in memory with resourceVersion checks, as the API server keeps it. */
class FakeLease {
  record: LeaseRecord | undefined;
  version = 0;
  /** While set, every call hangs (a partitioned apiserver). */
  hang = false;
  /**
   * While set, the next replace takes effect at once but its answer waits for the returned
   * release (a replica frozen, SIGSTOP, with the reply in its socket).
   */
  private holdNextReplace: ((release: () => void) => void) | undefined;

  holdReplaceAnswer(): Promise<() => void> {
    return new Promise((resolve) => (this.holdNextReplace = resolve));
  }

  api(): LeaseApi {
    const gate = <T>(work: () => T): Promise<T> => (this.hang ? new Promise<T>(() => undefined) : Promise.resolve().then(work));
    return {
      read: () => gate(() => (this.record ? { record: structuredClone(this.record), resourceVersion: String(this.version) } : undefined)),
      create: (record) => gate(() => {
        if (this.record) throw Object.assign(new Error("exists"), { code: 409 });
        this.record = structuredClone(record);
        this.version++;
      }),
      replace: (record, resourceVersion) => gate(() => {
        if (resourceVersion !== String(this.version)) throw Object.assign(new Error("conflict"), { code: 409 });
        this.record = structuredClone(record);
        this.version++;
      }).then(() => {
        const hold = this.holdNextReplace;
        this.holdNextReplace = undefined;
        return hold ? new Promise<void>((resolve) => hold(resolve)) : undefined;
      }),
    };
  }
}

/** A replica's clocks: its monotonic clock runs with the test's; its wall clock may be off. */
class Clock {
  constructor(private readonly world: { now: number }, private readonly offsetMs = 0) {}
  monotonic = () => this.world.now;
  wall = () => new Date(Date.parse("2026-01-01T00:00:00Z") + this.world.now + this.offsetMs);
}

const LEASE_S = 15;
const timing = electionTiming(LEASE_S);
const log = pino({ level: "silent" });

function replica(lease: FakeLease, world: { now: number }, identity: string, offsetMs = 0) {
  const elector = new LeaderElector(lease.api(), identity, LEASE_S, log, new Clock(world, offsetMs));
  const seen = { acquired: 0, lost: 0 };
  elector.onAcquired(() => seen.acquired++);
  elector.onLost(() => seen.lost++);
  return { elector, seen };
}

/** Every replica takes one round per retry period for `ms`. */
async function run(world: { now: number }, ms: number, ...electors: LeaderElector[]): Promise<void> {
  for (const end = world.now + ms; world.now < end; world.now += timing.retryMs) {
    for (const e of electors) await e.tick();
  }
}

describe("leader election", () => {
  it("keeps renew deadline < lease duration, in client-go's proportions", () => {
    assert.deepEqual(electionTiming(15), { leaseMs: 15_000, renewDeadlineMs: 10_000, retryMs: 2000 });
  });

  it("takes a free Lease, renews it, and a second replica stays a follower", async () => {
    const lease = new FakeLease();
    const world = { now: 0 };
    const a = replica(lease, world, "a");
    const b = replica(lease, world, "b");
    await run(world, 60_000, a.elector, b.elector);
    assert.equal(a.elector.isLeader(), true);
    assert.equal(b.elector.isLeader(), false);
    assert.equal(lease.record?.holderIdentity, "a");
    assert.deepEqual([a.seen, b.seen], [{ acquired: 1, lost: 0 }, { acquired: 0, lost: 0 }]);
  });

  for (const offset of [30_000, -30_000]) {
    it(`never takes over a renewed Lease from a follower whose clock is ${offset > 0 ? "ahead" : "behind"} by 30 s`, async () => {
      const lease = new FakeLease();
      const world = { now: 0 };
      const a = replica(lease, world, "a");
      await a.elector.tick();
      const b = replica(lease, world, "b", offset);
      await run(world, 120_000, a.elector, b.elector);
      assert.equal(b.seen.acquired, 0);
      assert.equal(lease.record?.holderIdentity, "a");
      assert.equal(lease.record?.leaseTransitions, 0);
    });
  }

  it("takes over once the holder has stopped renewing for a lease duration, judged on the follower's own clock", async () => {
    const lease = new FakeLease();
    const world = { now: 0 };
    const a = replica(lease, world, "a");
    await a.elector.tick();
    // The holder's renewTime reads as long ago to b (b's wall clock is far ahead): b still waits a full lease.
    const b = replica(lease, world, "b", 3_600_000);
    await b.elector.tick();
    const stoppedAt = world.now;
    await run(world, timing.leaseMs - timing.retryMs, b.elector);
    assert.equal(b.elector.isLeader(), false, "not before a lease duration of no change");
    await run(world, 2 * timing.retryMs, b.elector);
    assert.equal(b.elector.isLeader(), true);
    assert.ok(world.now - stoppedAt >= timing.leaseMs);
    assert.equal(lease.record?.leaseTransitions, 1);
  });

  it("stops leading within the renew deadline when renewing hangs, and tells its listeners", async () => {
    const lease = new FakeLease();
    const world = { now: 0 };
    const a = replica(lease, world, "a");
    await a.elector.tick();
    lease.hang = true;
    for (world.now += timing.retryMs; world.now < timing.renewDeadlineMs; world.now += timing.retryMs) {
      void a.elector.tick();
      await Promise.resolve();
      assert.equal(a.elector.isLeader(), true, `still within the renew deadline at ${world.now} ms`);
    }
    world.now = timing.renewDeadlineMs;
    assert.equal(a.elector.isLeader(), false, "no longer a leader at the renew deadline, though the call still hangs");
    void a.elector.tick();
    assert.equal(a.seen.lost, 1);
    assert.ok(timing.renewDeadlineMs < timing.leaseMs, "so it stops before anyone else may take over");
  });

  it("does not lead again on a renewal answered after the renew deadline (a replica frozen past its lease, then resumed)", async () => {
    const lease = new FakeLease();
    const world = { now: 0 };
    const a = replica(lease, world, "a");
    const b = replica(lease, world, "b");
    await a.elector.tick();
    await b.elector.tick();
    // a renews; the apiserver takes it, and a is frozen before it reads the answer.
    world.now += timing.retryMs;
    const held = lease.holdReplaceAnswer();
    const renewing = a.elector.tick();
    const release = await held;
    await run(world, timing.leaseMs + 2 * timing.retryMs, b.elector);
    assert.equal(b.elector.isLeader(), true, "b took over");
    // a wakes: its timer fires first (it notices the overdue renew), then the old answer arrives.
    await a.elector.tick();
    release();
    await renewing;
    assert.equal(a.elector.isLeader(), false, "a renewal sent a lease duration ago does not make a leader");
    assert.deepEqual(a.seen, { acquired: 1, lost: 1 });
  });

  it("resumes on every acquisition: a replica that loses the Lease and wins it back is told again", async () => {
    const lease = new FakeLease();
    const world = { now: 0 };
    const a = replica(lease, world, "a");
    const b = replica(lease, world, "b");
    await a.elector.tick();
    await run(world, timing.leaseMs * 2, b.elector); // a is frozen; b takes over
    assert.equal(b.elector.isLeader(), true);
    await a.elector.tick(); // a wakes: sees b's Lease, steps down
    assert.deepEqual(a.seen, { acquired: 1, lost: 1 });
    await b.elector.stop(); // b hands the Lease over
    await run(world, 2 * timing.retryMs, a.elector);
    assert.deepEqual(a.seen, { acquired: 2, lost: 1 });
  });

  it("hands the Lease over on stop", async () => {
    const lease = new FakeLease();
    const world = { now: 0 };
    const a = replica(lease, world, "a");
    await a.elector.tick();
    await a.elector.stop();
    assert.equal(lease.record?.holderIdentity, undefined);
    assert.equal(a.elector.isLeader(), false);
  });
});
