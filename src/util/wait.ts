/** `unref`: the wait does not keep the process alive (a bound on shutdown work, say). */
export const sleep = (ms: number, { unref = false } = {}): Promise<void> => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  if (unref) timer.unref();
});

export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** Said in the error when the deadline passes, e.g. "pods of web to become Ready". */
  what: string;
}

/**
 * Calls `probe` until it returns a value other than undefined, or throws once the
 * deadline passes with the last error the probe raised.
 */
export async function pollUntil<T>(probe: () => Promise<T | undefined>, options: PollOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : "";
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${cause}`);
    }
    await sleep(options.intervalMs ?? 200);
  }
}
