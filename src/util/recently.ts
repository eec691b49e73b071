/** How long a read stays good for the calls after it. */
export const READ_REUSE_MS = 3000;

/**
 * A read (the database Secret, a window's SQL files) as the window's steps use it: once for
 * the steps that follow each other within the downtime (each read is a round trip there);
 * the drain reads ahead while it waits for the pods. Calls with the same arguments share a
 * read. Only a successful read is kept, and only briefly: a fixed or rotated Secret is seen
 * by the next retry. What must be read afresh for each window (its SQL files) carries the
 * window among its arguments.
 */
export function recently<A extends string[], T>(
  read: (...args: A) => Promise<T>,
  now: () => number = Date.now,
): (...args: A) => Promise<T> {
  const recent = new Map<string, { at: number; value: Promise<T> }>();
  return (...args) => {
    const key = args.join("\u0000");
    const at = now();
    const kept = recent.get(key);
    if (kept && at - kept.at < READ_REUSE_MS) return kept.value;
    for (const [k, v] of recent) if (at - v.at >= READ_REUSE_MS) recent.delete(k);
    const value = read(...args);
    recent.set(key, { at, value });
    value.catch(() => recent.get(key)?.value === value && recent.delete(key));
    return value;
  };
}
