import { strict as assert } from "node:assert";
import { READ_REUSE_MS, recently } from "../../../src/util/recently.js";

describe("recently: a read reused by the steps right after it", () => {
  it("reads once for calls within the reuse time, per name, and again after it", async () => {
    let clock = 0;
    const reads: string[] = [];
    const read = recently(async (namespace, name) => (reads.push(`${namespace}/${name}`), `${name}@${clock}`), () => clock);
    assert.equal(await read("shop", "shop-db"), "shop-db@0");
    clock = READ_REUSE_MS - 1;
    assert.equal(await read("shop", "shop-db"), "shop-db@0");
    assert.equal(await read("shop", "other-db"), `other-db@${READ_REUSE_MS - 1}`);
    clock = READ_REUSE_MS;
    assert.equal(await read("shop", "shop-db"), `shop-db@${READ_REUSE_MS}`);
    assert.deepEqual(reads, ["shop/shop-db", "shop/other-db", "shop/shop-db"]);
  });

  it("shares a read only between calls with every argument the same (a window's SQL files carry the window)", async () => {
    const reads: string[] = [];
    const read = recently(async (namespace: string, name: string, window: string) => (reads.push(`${namespace}/${name}@${window}`), reads.length), () => 0);
    assert.equal(await read("shop", "shop-sql", "w1/1"), 1);
    assert.equal(await read("shop", "shop-sql", "w1/1"), 1, "the drain's read, reused by migrate");
    assert.equal(await read("shop", "shop-sql", "w1/2"), 2, "a retried attempt reads afresh");
    assert.equal(await read("shop", "shop-sql", "w2/1"), 3, "so does the next window");
  });

  it("keeps no failed read: the next call reads again (a Secret fixed meanwhile is seen)", async () => {
    let fail = true;
    let reads = 0;
    const read = recently(async (_namespace: string, _name: string) => {
      reads++;
      if (fail) throw new Error('secret "shop-db" not found');
      return "ok";
    }, () => 0);
    await assert.rejects(read("shop", "shop-db"), /not found/);
    fail = false;
    assert.equal(await read("shop", "shop-db"), "ok");
    assert.equal(reads, 2);
  });
});
