// The gate as one file (dist/cli/main.js): every dependency bundled, whitespace and
// comments dropped. @kubernetes/client-node alone is 21 MB of generated JavaScript, most
// of it doc comments; Node keeps the source of every loaded module in memory, so loading
// it unbundled costs the gate about 70 MB of RSS before it does anything. Names are kept,
// so stack traces stay readable (and dist/cli/main.js.map maps them to src/).
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

/** The settings, shared with bench/footprint.bench.ts (its baseline bundles the same libraries the same way). */
export const bundleOptions = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  minifyWhitespace: true,
  minifySyntax: true,
  keepNames: true,
  sourcemap: true,
  legalComments: "external",
  // pg loads its optional native binding only when asked to (the gate never does).
  external: ["pg-native"],
  // The CommonJS dependencies inside an ES module bundle still call require().
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
  logLevel: "warning",
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await build({ ...bundleOptions, entryPoints: ["src/cli/main.ts"], outfile: "dist/cli/main.js" });
}
