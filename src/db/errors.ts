import { StepFailure } from "../core/window.js";
import { SessionsNotTerminated } from "./sessions.js";
import { MigrationError } from "./sql-runner.js";

/**
 * Errors that say the database (or the network to it) went away rather than that the
 * migration is wrong: the window retries these until its deadline.
 * 08xxx connection exceptions; 57P01-57P03 shutdown and startup; 53300 too many connections.
 */
export function isConnectionError(error: unknown): boolean {
  if (error instanceof StepFailure) return false;
  const e = error as { code?: string; sqlState?: string; message?: string };
  const state = e.sqlState ?? (typeof e.code === "string" ? e.code : "");
  if (/^08/.test(state) || ["57P01", "57P02", "57P03", "53300"].includes(state)) return true;
  if (["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EPIPE"].includes(state)) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(e.message ?? "");
}

/**
 * A SQL runner error (its message already names file, line and column) or sessions the
 * gate may not end, as a window failure for the user to fix: retrying would not help.
 */
export function migrationFailure(error: unknown): unknown {
  if (error instanceof MigrationError && !isConnectionError(error)) return new StepFailure(error.message);
  if (error instanceof SessionsNotTerminated) return new StepFailure(error.message);
  return error;
}
