import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { run } from "../util/exec.js";

// Container images without a registry or a container engine: an OCI image layout (one
// layer, a config, a manifest, an index naming the image) written as a tar, which
// `ctr images import` takes. See https://github.com/opencontainers/image-spec/blob/main/image-layout.md

export interface ImageSpec {
  /** Full reference, e.g. localhost/schema-gate-pause:1 (a pull of localhost/... could only reach loopback). */
  name: string;
  /** Directory whose contents become the image's root filesystem. */
  rootfs: string;
  entrypoint: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  /** uid:gid the container runs as (default root). */
  user?: string;
}

const OCI = "application/vnd.oci.image";

export function ociArch(arch = process.arch): string {
  return arch === "x64" ? "amd64" : arch;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

interface Blob {
  digest: string;
  size: number;
}

async function writeBlob(layout: string, content: string): Promise<Blob> {
  const hex = createHash("sha256").update(content).digest("hex");
  await writeFile(join(layout, "blobs", "sha256", hex), content);
  return { digest: `sha256:${hex}`, size: Buffer.byteLength(content) };
}

/** A reproducible tar of `rootfs` (sorted, owner root, mtime 0), stored as a blob. */
async function writeLayer(layout: string, rootfs: string): Promise<Blob> {
  const tmp = join(layout, "layer.tar");
  await run("tar", [
    "--create", "--file", tmp, "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
    "--numeric-owner", "--directory", rootfs, ".",
  ]);
  const hex = await sha256File(tmp);
  const { size } = await stat(tmp);
  await rename(tmp, join(layout, "blobs", "sha256", hex));
  return { digest: `sha256:${hex}`, size };
}

function imageConfig(spec: ImageSpec, layer: Blob): string {
  return JSON.stringify({
    architecture: ociArch(),
    os: "linux",
    config: {
      Entrypoint: spec.entrypoint,
      Cmd: spec.cmd ?? [],
      Env: spec.env ?? ["PATH=/usr/local/bin:/usr/bin:/bin"],
      WorkingDir: spec.workingDir ?? "/",
      ...(spec.user ? { User: spec.user } : {}),
    },
    // The layer is not compressed, so its diff id is its digest.
    rootfs: { type: "layers", diff_ids: [layer.digest] },
  });
}

/** Writes the image as an OCI layout tar at `out` (replacing it atomically). */
export async function buildImageTar(spec: ImageSpec, out: string): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const layout = await mkdtemp(join(dirname(out), ".layout-"));
  try {
    await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
    const layer = await writeLayer(layout, spec.rootfs);
    const config = await writeBlob(layout, imageConfig(spec, layer));
    const manifest = await writeBlob(layout, JSON.stringify({
      schemaVersion: 2,
      mediaType: `${OCI}.manifest.v1+json`,
      config: { mediaType: `${OCI}.config.v1+json`, ...config },
      layers: [{ mediaType: `${OCI}.layer.v1.tar`, ...layer }],
    }));
    const tag = spec.name.slice(spec.name.lastIndexOf(":") + 1);
    await writeFile(join(layout, "index.json"), JSON.stringify({
      schemaVersion: 2,
      mediaType: `${OCI}.index.v1+json`,
      manifests: [{
        mediaType: `${OCI}.manifest.v1+json`,
        ...manifest,
        platform: { architecture: ociArch(), os: "linux" },
        annotations: { "io.containerd.image.name": spec.name, "org.opencontainers.image.ref.name": tag },
      }],
    }));
    await writeFile(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    const partial = `${out}.partial`;
    await run("tar", ["--create", "--file", partial, "--directory", layout, "oci-layout", "index.json", "blobs"]);
    await rename(partial, out);
  } finally {
    await rm(layout, { recursive: true, force: true });
  }
}
