import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository (or installed package) root, found from this file's location. */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Where built binaries and the local cluster's state live; one per machine. */
export const cacheDir =
  process.env.SCHEMA_GATE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "schema-gate");
