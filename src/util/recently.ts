/** How long a read stays good for the calls after it. */
export const READ_REUSE_MS = 3000;

/**
 * A read (the database Secret) as the window's steps use it: once for the steps that follow
 * each other within the downtime (each read is a round trip there); the drain reads it
 * ahead while it waits for the pods. Only a successful read is kept, and only briefly: a
 * fixed or rotated Secret is seen by the next retry. Not for what must be read afresh for
 * each window, such as its SQL files.
 */
export function recently<T>(
  read: (namespace: string, name: string) => Promise<T>,
  now: () => number = Date.now,
): (namespace: string, name: string) => Promise<T> {
  const recent = new Map<string, { at: number; value: Promise<T> }>();
  return (namespace, name) => {
    const key = `${namespace}/${name}`;
    const at = now();
    const kept = recent.get(key);
    if (kept && at - kept.at < READ_REUSE_MS) return kept.value;
    for (const [k, v] of recent) if (at - v.at >= READ_REUSE_MS) recent.delete(k);
    const value = read(namespace, name);
    recent.set(key, { at, value });
    value.catch(() => recent.get(key)?.value === value && recent.delete(key));
    return value;
  };
}
