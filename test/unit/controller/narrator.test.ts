import { strict as assert } from "node:assert";
import type * as k8s from "@kubernetes/client-node";
import { narrator } from "../../../src/controller/narrator.js";
import type { EventRecorder } from "../../../src/k8s/events.js";

const member = (name: string, namespace = "shop"): k8s.V1Deployment => ({ metadata: { name, namespace, uid: `uid-${name}` } });
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe("the window's Events, off the window's path", () => {
  it("returns before the Events are written, and writes them in the order told", async () => {
    const written: string[] = [];
    const pending: Array<() => void> = [];
    const record: EventRecorder = (target, _type, reason) => new Promise((resolve) => pending.push(() => (written.push(`${reason}/${target.name}`), resolve())));
    const { narrate, flush } = narrator(record, () => true);
    await narrate([member("orders"), member("billing")], "Normal", "Quiesced", "m");
    await narrate([member("orders")], "Normal", "Migrated", "m");
    assert.deepEqual(written, [], "the step did not wait");
    await tick();
    assert.equal(pending.length, 2, "one batch in flight, its members in parallel");
    pending.splice(0).forEach((write) => write());
    await tick();
    assert.equal(pending.length, 1, "the next batch only after the first");
    pending.splice(0).forEach((write) => write());
    await flush(1000);
    assert.deepEqual(written, ["Quiesced/orders", "Quiesced/billing", "Migrated/orders"]);
  });

  it("drops what is queued once this replica no longer leads", async () => {
    const written: string[] = [];
    let leading = true;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const record: EventRecorder = async (_target, _type, reason) => {
      if (reason === "First") await gate;
      written.push(reason);
    };
    const { narrate, flush } = narrator(record, () => leading);
    await narrate([member("orders")], "Normal", "First", "m");
    await narrate([member("orders")], "Normal", "Second", "m");
    leading = false;
    release();
    await flush(1000);
    assert.deepEqual(written, ["First"]);
  });

  it("keeps going after a write fails, and flush is bounded", async () => {
    const written: string[] = [];
    const record: EventRecorder = async (_target, _type, reason) => {
      if (reason === "Broken") throw new Error("apiserver away");
      if (reason === "Stuck") await new Promise(() => undefined);
      written.push(reason);
    };
    const { narrate, flush } = narrator(record, () => true);
    await narrate([member("orders")], "Normal", "Broken", "m");
    await narrate([member("orders")], "Normal", "After", "m");
    await flush(1000);
    assert.deepEqual(written, ["After"]);
    await narrate([member("orders")], "Normal", "Stuck", "m");
    const started = Date.now();
    await flush(50);
    assert.ok(Date.now() - started < 1000, "flush gave up after its bound");
  });
});
