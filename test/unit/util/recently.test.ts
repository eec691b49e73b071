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

  it("keeps no failed read: the next call reads again (a Secret fixed meanwhile is seen)", async () => {
    let fail = true;
    let reads = 0;
    const read = recently(async () => {
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
