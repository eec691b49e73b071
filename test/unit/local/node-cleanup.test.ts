import { strict as assert } from "node:assert";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pidsUnder, walk } from "../../../src/local/node-cleanup.js";

// The cleanup walks the pod cgroups while the shims of the containers it stops remove theirs.
describe("real node cleanup: cgroups that vanish during the walk", function () {
  let root: string;

  beforeEach(function () {
    root = mkdtempSync(join(tmpdir(), "schema-gate-cgroups-"));
    for (const pod of ["pod-a", "pod-b", "pod-c"]) {
      mkdirSync(join(root, pod, "container"), { recursive: true });
      writeFileSync(join(root, pod, "cgroup.procs"), "");
      writeFileSync(join(root, pod, "container", "cgroup.procs"), `${pod === "pod-a" ? 11 : pod === "pod-b" ? 22 : 33}\n`);
    }
    writeFileSync(join(root, "cgroup.procs"), "");
  });

  afterEach(function () {
    rmSync(root, { recursive: true, force: true });
  });

  it("walks on past a directory removed after it was listed", function () {
    const visited: string[] = [];
    walk(root, (dir) => {
      // The first pod reached takes the others away, as a shim removing its cgroup would.
      if (visited.length === 0) {
        for (const pod of ["pod-a", "pod-b", "pod-c"]) if (!dir.includes(pod)) rmSync(join(root, pod), { recursive: true, force: true });
      }
      visited.push(dir);
    });
    assert.equal(visited.at(-1), root, "the root is visited last");
    assert.equal(visited.length, 3, `one pod's container and the pod, then the root: ${visited.join(", ")}`);
  });

  it("reads the pids of every cgroup still there", function () {
    assert.deepEqual(pidsUnder(root).sort((a, b) => a - b), [11, 22, 33]);
    rmSync(join(root, "pod-b"), { recursive: true, force: true });
    assert.deepEqual(pidsUnder(root).sort((a, b) => a - b), [11, 33]);
  });
});
