import { strict as assert } from "node:assert";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../../src/local/paths.js";
import { run } from "../../src/util/exec.js";

// Headless Chromium (Debian's package) for the tests that look at the maintenance page in
// a real browser, and tesseract to read its screenshot back.

export const ARTIFACTS = join(projectRoot, ".artifacts");
const BROWSER = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

export interface BrowserOptions {
  /** Host names Chromium resolves to 127.0.0.1 (every other name fails to resolve: nothing leaves the machine). */
  localHosts?: string[];
}

async function browser(options: BrowserOptions): Promise<{ file: string; flags: string[] }> {
  if (!BROWSER) throw new Error("Chromium is not installed (apt-get install chromium); .ci/run installs it");
  const profile = await mkdtemp(join(tmpdir(), "schema-gate-chromium-"));
  const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", `--user-data-dir=${profile}`];
  if (options.localHosts?.length) {
    flags.push(`--host-resolver-rules=${options.localHosts.map((h) => `MAP ${h} 127.0.0.1`).join(", ")}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`);
  }
  return { file: BROWSER, flags };
}

/** The DOM Chromium built from `url`. */
export async function dumpDom(url: string, options: BrowserOptions = {}): Promise<string> {
  const { file, flags } = await browser(options);
  return (await run(file, [...flags, "--dump-dom", url], { timeoutMs: 60_000 })).stdout;
}

/** A 1024x640 screenshot of `url` saved as .artifacts/<name>; returns its path and the text tesseract reads in it. */
export async function screenshot(url: string, name: string, options: BrowserOptions = {}): Promise<{ path: string; text: string }> {
  const { file, flags } = await browser(options);
  await mkdir(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await run(file, [...flags, "--window-size=1024,640", `--screenshot=${path}`, url], { timeoutMs: 60_000 });
  assert.ok((await stat(path)).size > 5_000, "a real screenshot was written");
  const ocr = await run("tesseract", [path, "-"], { timeoutMs: 60_000 });
  return { path, text: ocr.stdout.replace(/\s+/g, " ") };
}
