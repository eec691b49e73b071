import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { chmod, copyFile, cp, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { run } from "../util/exec.js";
import { buildImageTar, type ImageSpec } from "./oci-image.js";
import { cacheDir, projectRoot } from "./paths.js";

// The images the real node runs, built on this machine from what is already here (the Go
// toolchain, the host's `node`) and cached as OCI layout tars under the cache directory.

export interface LocalImage {
  /** The reference pods use, with imagePullPolicy Never. */
  name: string;
  /** The OCI layout tar to import into the node's containerd. */
  tar: string;
}

const imagesDir = join(cacheDir, "images");

export function hashOf(parts: string[]): string {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part).update("\0");
  return hash.digest("hex").slice(0, 12);
}

export type Contents = Omit<ImageSpec, "rootfs" | "name">;

/** Builds image `name` into `<images>/<base>-<key>.tar` unless that tar is already there. */
export async function cached(base: string, key: string, name: string, make: (rootfs: string) => Promise<Contents>): Promise<LocalImage> {
  const tar = join(imagesDir, `${base}-${key}.tar`);
  if (existsSync(tar)) return { name, tar };
  await mkdir(imagesDir, { recursive: true });
  const rootfs = await mkdtemp(join(imagesDir, `.rootfs-${base}-`));
  try {
    await buildImageTar({ ...(await make(rootfs)), name, rootfs }, tar);
    await pruneOld(base, tar);
    return { name, tar };
  } finally {
    await rm(rootfs, { recursive: true, force: true });
  }
}

/** Deletes earlier builds of the same image unused for a day (a run elsewhere may still import a recent one). */
async function pruneOld(base: string, keep: string): Promise<void> {
  // Bases are plain names (pause, schema-gate, schema-gate-test-app).
  const pattern = new RegExp(`^${base}-[0-9a-f]{12}\\.tar$`);
  for (const entry of await readdir(imagesDir)) {
    const file = join(imagesDir, entry);
    if (file === keep || !pattern.test(entry)) continue;
    const { atimeMs, mtimeMs } = await stat(file);
    if (Date.now() - Math.max(atimeMs, mtimeMs) > 24 * 3600_000) await rm(file, { force: true });
  }
}

const pauseSource = join(projectRoot, "tools", "pause");

/** The pod sandbox image: tools/pause (a static Go program that sleeps, reaps children, exits on SIGTERM). */
export function pauseImage(): Promise<LocalImage> {
  const key = hashOf([readFileSync(join(pauseSource, "main.go"), "utf8"), readFileSync(join(pauseSource, "go.mod"), "utf8")]);
  return cached("pause", key, `localhost/schema-gate-pause:${key}`, async (rootfs) => {
    const env = { ...process.env, GOTOOLCHAIN: "local", CGO_ENABLED: "0", GOPROXY: "off", GOFLAGS: "-mod=mod" };
    await run("go", ["build", "-C", pauseSource, "-trimpath", "-ldflags", "-s -w", "-o", join(rootfs, "pause"), "."], { env });
    return { entrypoint: ["/pause"] };
  });
}

/** The shared libraries a dynamically linked program loads, as `ldd` lists them. */
async function sharedLibraries(program: string): Promise<string[]> {
  const { stdout } = await run("ldd", [program]);
  return stdout
    .split("\n")
    .map((line) => /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line)?.[1])
    .filter((path): path is string => Boolean(path));
}

/** A package and everything it depends on, from the project's node_modules. */
export function packageClosure(names: string[]): string[] {
  const seen = new Set<string>();
  const visit = (name: string) => {
    const manifest = join(projectRoot, "node_modules", name, "package.json");
    if (seen.has(name) || !existsSync(manifest)) return;
    seen.add(name);
    const pkg = JSON.parse(readFileSync(manifest, "utf8")) as { dependencies?: Record<string, string> };
    Object.keys(pkg.dependencies ?? {}).forEach(visit);
  };
  names.forEach(visit);
  return [...seen].sort();
}

export interface NodeImageSpec {
  /** Image name without tag, e.g. localhost/schema-gate-test-app; the tag is a content hash. */
  repository: string;
  /** Files of the application: absolute source path -> path under /app. */
  files: Record<string, string>;
  /** npm packages (with their dependencies) copied from the project's node_modules into /app/node_modules. */
  packages?: string[];
  /** Arguments to node, e.g. ["/app/server.mjs"]. */
  args: string[];
}

/**
 * An image whose root filesystem is the host's `node` binary, the libraries `ldd` lists
 * for it, and the application's files: no base image, no registry (about 100 MB).
 */
export async function nodeImage(spec: NodeImageSpec): Promise<LocalImage> {
  const node = process.execPath;
  const packages = packageClosure(spec.packages ?? []);
  const versions = packages.map((p) => readFileSync(join(projectRoot, "node_modules", p, "package.json"), "utf8"));
  const sources = Object.entries(spec.files).map(([src, dest]) => `${dest}\n${readFileSync(src, "utf8")}`);
  const key = hashOf([node, String(statSync(node).size), process.version, ...spec.args, ...sources, ...versions]);
  const base = spec.repository.slice(spec.repository.lastIndexOf("/") + 1);
  return cached(base, key, `${spec.repository}:${key}`, async (rootfs) => {
    await addNodeRuntime(rootfs);
    for (const [src, dest] of Object.entries(spec.files)) {
      await mkdir(dirname(join(rootfs, "app", dest)), { recursive: true });
      await copyFile(src, join(rootfs, "app", dest));
    }
    await addPackages(rootfs, packages);
    return { entrypoint: [node, ...spec.args], workingDir: "/app" };
  });
}

/** The host's `node` at its own path, the libraries it loads, and a /tmp. */
export async function addNodeRuntime(rootfs: string): Promise<void> {
  const node = process.execPath;
  for (const file of [node, ...(await sharedLibraries(node))]) {
    await mkdir(join(rootfs, dirname(file)), { recursive: true });
    await copyFile(file, join(rootfs, file));
  }
  await mkdir(join(rootfs, "tmp"), { recursive: true });
  await chmod(join(rootfs, "tmp"), 0o1777);
}

/** Copies npm packages from the project's node_modules into /app/node_modules. */
export async function addPackages(rootfs: string, packages: string[]): Promise<void> {
  for (const pkg of packages) {
    await cp(join(projectRoot, "node_modules", pkg), join(rootfs, "app", "node_modules", pkg), { recursive: true, dereference: true });
  }
}
