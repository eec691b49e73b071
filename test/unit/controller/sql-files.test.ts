import { strict as assert } from "node:assert";
import { drive } from "./drive.js";
import { FakeWorld } from "./fake-world.js";

describe("the SQL runner's files and leadership", () => {
  it("a leader deposed while its SQL files run applies no further file (the one in flight commits)", async () => {
    const world = new FakeWorld();
    world.afterFile = (file) => {
      if (file === "001-items.sql") world.leading = false;
    };
    assert.equal(await drive(world, world.deps()), "lost");
    assert.deepEqual([...world.applied.keys()], ["001-items.sql"], "002-stock.sql is left to the successor");
    assert.equal(world.versions.has("2"), false, "the version is not recorded");
    assert.equal(world.record.state?.step, "migrate", "the successor resumes at migrate");

    world.afterFile = undefined;
    world.leading = true;
    assert.equal(await drive(world, world.deps()), "settled");
    assert.deepEqual(Object.fromEntries(world.applied), { "001-items.sql": 1, "002-stock.sql": 1 });
    assert.equal(world.record.state?.result, "Done");
  });
});
