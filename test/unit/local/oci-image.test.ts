import { strict as assert } from "node:assert";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildImageTar, ociArch } from "../../../src/local/oci-image.js";
import { run } from "../../../src/util/exec.js";

describe("OCI image layout tar (images for the real node without a registry)", function () {
  let dir: string;
  let layout: string;

  before(async function () {
    dir = await mkdtemp(join(tmpdir(), "schema-gate-oci-test-"));
    const rootfs = join(dir, "rootfs");
    await mkdir(join(rootfs, "bin"), { recursive: true });
    await writeFile(join(rootfs, "bin", "hello"), "#!/bin/sh\necho hello\n", { mode: 0o755 });
    await buildImageTar({ name: "localhost/test:1", rootfs, entrypoint: ["/bin/hello"], user: "1000:1000" }, join(dir, "image.tar"));
    layout = join(dir, "layout");
    await mkdir(layout);
    await run("tar", ["-xf", join(dir, "image.tar"), "-C", layout]);
  });

  after(async function () {
    await rm(dir, { recursive: true, force: true });
  });

  const blob = (digest: string) => readFile(join(layout, "blobs", "sha256", digest.replace("sha256:", "")));
  const json = async (digest: string) => JSON.parse((await blob(digest)).toString("utf8"));
  const sha = (data: Buffer) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

  it("names the image in the index with the annotation containerd imports it by", async function () {
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
    assert.equal(JSON.parse(await readFile(join(layout, "oci-layout"), "utf8")).imageLayoutVersion, "1.0.0");
    assert.equal(index.manifests.length, 1);
    assert.equal(index.manifests[0].annotations["io.containerd.image.name"], "localhost/test:1");
    assert.deepEqual(index.manifests[0].platform, { architecture: ociArch(), os: "linux" });
  });

  it("addresses every blob by its digest and size, the layer's diff id being its digest", async function () {
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
    const ref = index.manifests[0];
    const manifestBytes = await blob(ref.digest);
    assert.equal(sha(manifestBytes), ref.digest);
    assert.equal(manifestBytes.length, ref.size);
    const manifest = JSON.parse(manifestBytes.toString("utf8"));
    const layer = manifest.layers[0];
    const layerBytes = await blob(layer.digest);
    assert.equal(sha(layerBytes), layer.digest);
    assert.equal(layerBytes.length, layer.size);
    const config = await json(manifest.config.digest);
    assert.deepEqual(config.rootfs.diff_ids, [layer.digest]);
    assert.deepEqual(config.config.Entrypoint, ["/bin/hello"]);
    assert.equal(config.config.User, "1000:1000");
  });

  it("holds the root filesystem in its layer, owned by root, reproducibly", async function () {
    const manifest = await json(JSON.parse(await readFile(join(layout, "index.json"), "utf8")).manifests[0].digest);
    const layerPath = join(layout, "blobs", "sha256", manifest.layers[0].digest.replace("sha256:", ""));
    const { stdout } = await run("tar", ["-tvf", layerPath, "--numeric-owner"]);
    assert.match(stdout, /-rwxr-xr-x 0\/0 .* \.\/bin\/hello/);
    const again = join(dir, "again.tar");
    await buildImageTar({ name: "localhost/test:1", rootfs: join(dir, "rootfs"), entrypoint: ["/bin/hello"], user: "1000:1000" }, again);
    const first = await run("tar", ["-xOf", join(dir, "image.tar"), "index.json"]);
    const second = await run("tar", ["-xOf", again, "index.json"]);
    assert.equal(second.stdout, first.stdout, "the same rootfs gives the same image digest");
  });
});
