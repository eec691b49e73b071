import { readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { run } from "../util/exec.js";
import { addNodeRuntime, addPackages, cached, hashOf, packageClosure, type LocalImage } from "./images.js";
import { projectRoot } from "./paths.js";

// The gate's own image without Docker, for the real node: the same contents the Dockerfile
// produces (compiled src/ in /app/dist, bin/schema-gate.js, the production dependencies,
// NODE_ENV=production, user 1000:1000, entrypoint `node /app/bin/schema-gate.js`, command
// `serve`), on the host's node binary instead of the node:20 base image.

export const GATE_REPOSITORY = "localhost/schema-gate";

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

/** What the image is made of, so that a change to any of it makes a new image. */
function inputs(): string[] {
  const files = [
    ...filesUnder(join(projectRoot, "src")),
    ...["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", join("bin", "schema-gate.js")].map((f) => join(projectRoot, f)),
  ];
  return [process.execPath, process.version, ...files.map((f) => `${relative(projectRoot, f)}\n${readFileSync(f, "utf8")}`)];
}

/** The gate image, built (tsc, about 20 s) when its inputs changed, else from the cache. */
export function gateImage(): Promise<LocalImage> {
  const key = hashOf(inputs());
  return cached("schema-gate", key, `${GATE_REPOSITORY}:${key}`, async (rootfs) => {
    const app = join(rootfs, "app");
    await addNodeRuntime(rootfs);
    const tsc = join(projectRoot, "node_modules", "typescript", "bin", "tsc");
    await run(process.execPath, [tsc, "-p", join(projectRoot, "tsconfig.build.json"), "--outDir", join(app, "dist")]);
    await mkdir(join(app, "bin"), { recursive: true });
    await copyFile(join(projectRoot, "bin", "schema-gate.js"), join(app, "bin", "schema-gate.js"));
    for (const file of ["package.json", "package-lock.json"]) await copyFile(join(projectRoot, file), join(app, file));
    const pkg = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
    await addPackages(rootfs, packageClosure(Object.keys(pkg.dependencies ?? {})));
    return {
      entrypoint: [process.execPath, "/app/bin/schema-gate.js"],
      cmd: ["serve"],
      env: ["PATH=/usr/local/bin:/usr/bin:/bin", "NODE_ENV=production"],
      workingDir: "/app",
      user: "1000:1000",
    };
  });
}
