import { strict as assert } from "node:assert";
import * as k8s from "@kubernetes/client-node";
import { pino } from "pino";
import { startInformer } from "../../../src/k8s/informer.js";
import { sleep } from "../../../src/util/wait.js";

/** The client's informer as far as startInformer uses it: start may fail, errors are emitted. */
class FakeInformer {
  starts = 0;
  failNextStarts = 0;
  private readonly handlers = new Map<string, Array<(arg: unknown) => void>>();
  on(event: string, handler: (arg: unknown) => void) {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), handler]);
  }
  emit(event: string, arg: unknown) {
    for (const handler of this.handlers.get(event) ?? []) handler(arg);
  }
  async start() {
    this.starts++;
    if (this.failNextStarts > 0) {
      this.failNextStarts--;
      throw new Error("connection refused");
    }
  }
  async stop() {}
  list() {
    return [];
  }
  get() {
    return undefined;
  }
}

describe("the self-restarting informer", () => {
  const kc = new k8s.KubeConfig();
  const log = pino({ level: "silent" });

  async function started(clock: { now: number }) {
    const fake = new FakeInformer();
    const cache = await startInformer(kc, "/apis/apps/v1/deployments", async () => ({ items: [] }) as never, log, undefined, {
      restartDelayMs: 5, staleAfterMs: 1000, now: () => clock.now, make: (() => fake) as never,
    });
    return { fake, cache };
  }

  it("knows how far it has seen: the newest resourceVersion it handled, forgotten while it fails", async () => {
    const clock = { now: 0 };
    const { fake, cache } = await started(clock);
    const at = (resourceVersion: string) => ({ metadata: { name: "orders", resourceVersion } });
    assert.equal(cache.reflects("5"), false, "nothing handled yet");
    fake.emit(k8s.ADD, at("7"));
    fake.emit(k8s.UPDATE, at("12"));
    assert.deepEqual(["11", "12", "13"].map((v) => cache.reflects(v)), [true, true, false]);
    fake.emit(k8s.DELETE, at("100"));
    assert.equal(cache.reflects("99"), true, "versions compare as integers, not as text");
    assert.equal(cache.reflects("abc"), false, "a version that is no integer is never reflected");
    assert.equal(cache.reflects("0099"), false, "nor one with a leading zero");
    fake.emit(k8s.ERROR, new Error("watch closed"));
    assert.equal(cache.reflects("1"), false, "a failed watch forgets: its restart re-lists");
    await cache.stop();
  });

  it("restarts a watch that ended, trying again with back-off until a restart succeeds", async () => {
    const clock = { now: 0 };
    const { fake, cache } = await started(clock);
    fake.failNextStarts = 3;
    fake.emit(k8s.ERROR, new Error("watch closed"));
    await sleep(600);
    assert.equal(fake.starts, 5, "the first start, three failed restarts, one that worked");
    clock.now = 5000;
    assert.equal(cache.synced(), true, "healthy again");
    await cache.stop();
  });

  it("reports not synced once it has been failing longer than the grace, and synced again after a restart", async () => {
    const clock = { now: 0 };
    const { fake, cache } = await started(clock);
    fake.failNextStarts = 1000;
    fake.emit(k8s.ERROR, new Error("watch closed"));
    clock.now = 500;
    assert.equal(cache.synced(), true, "a short failure does not flap readiness");
    clock.now = 1500;
    assert.equal(cache.synced(), false, "a dead informer turns readiness false");
    fake.failNextStarts = 0;
    await sleep(1500);
    assert.equal(cache.synced(), true);
    await cache.stop();
  });
});
