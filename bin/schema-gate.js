#!/usr/bin/env node
// Runs the compiled CLI when it is built (npm run build, the container image), else the
// TypeScript sources through tsx, so `npx schema-gate` works straight from a checkout.
import { existsSync } from "node:fs";

const compiled = new URL("../dist/cli/main.js", import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
