import type pg from "pg";
import type { DatabaseTarget } from "../core/database-secret.js";
import { openSession, type SessionOptions } from "./connect.js";

/** How long a session opened ahead waits to be used before it is closed. */
export const SESSION_AHEAD_MS = 5000;

interface Parked {
  client: Promise<pg.Client>;
  openedAt: number;
  alive: boolean;
  /** A step is using it: no other is opened meanwhile (the step's terminate would end it). */
  inUse: boolean;
  expiry?: NodeJS.Timeout;
}

const keyOf = (t: DatabaseTarget) => `${t.user}@${t.host}:${t.port}/${t.database}`;

/**
 * Sessions opened before the step that needs them: the quiesce opens the migration's session
 * while the pods stop, so that terminate and migrate connect to PostgreSQL outside the
 * downtime (a connection and its authentication each). One per
 * database; one a step does not take within SESSION_AHEAD_MS is closed, and one whose
 * backend ended meanwhile is never handed out.
 */
export class SessionsAhead {
  private readonly parked = new Map<string, Parked>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Opens a session for `target` unless one is open or opening already; resolves once it is (never rejects). */
  open(target: DatabaseTarget, options: SessionOptions): Promise<void> {
    const key = keyOf(target);
    const kept = this.parked.get(key);
    if (kept && (kept.inUse || this.usable(kept))) return kept.client.then(() => undefined, () => undefined);
    if (kept) this.drop(key, kept);
    const entry: Parked = { client: openSession(target, options), openedAt: this.now(), alive: true, inUse: false };
    this.parked.set(key, entry);
    this.expire(key, entry);
    return entry.client.then(
      (client) => {
        client.once("end", () => (entry.alive = false));
        client.once("error", () => (entry.alive = false));
      },
      () => {
        entry.alive = false;
        if (this.parked.get(key) === entry) this.parked.delete(key);
      },
    );
  }

  /**
   * Runs `use` on the session opened ahead for `target`, or on one `open` makes when there is
   * none (or it failed, ended, or waited too long). With `keep`, a session opened ahead goes
   * back for the next step once `use` succeeded; every other session is closed, in the
   * background: nothing the step returns waits for the goodbye (a round trip and the
   * socket's close, inside the downtime after the migration).
   */
  async use<T>(target: DatabaseTarget, open: () => Promise<pg.Client>, use: (client: pg.Client) => Promise<T>, keep = false): Promise<T> {
    const key = keyOf(target);
    const entry = this.take(key);
    const ahead = entry ? await entry.client.catch(() => undefined) : undefined;
    const fromAhead = ahead !== undefined && entry!.alive;
    if (entry && !fromAhead) this.drop(key, entry);
    const client = fromAhead ? ahead : await open();
    let succeeded = false;
    try {
      const result = await use(client);
      succeeded = true;
      return result;
    } finally {
      if (entry && keep && succeeded && fromAhead && this.usable(entry)) {
        entry.inUse = false;
        this.expire(key, entry);
      } else {
        if (entry && this.parked.get(key) === entry) this.parked.delete(key);
        client.end().catch(() => undefined);
      }
    }
  }

  /** The session parked for `key`, now in use; undefined (and closed) when it may not be used. */
  private take(key: string): Parked | undefined {
    const entry = this.parked.get(key);
    if (!entry || entry.inUse) return undefined;
    clearTimeout(entry.expiry);
    if (!this.usable(entry)) {
      this.drop(key, entry);
      return undefined;
    }
    entry.inUse = true;
    return entry;
  }

  private usable(entry: Parked): boolean {
    return entry.alive && this.now() - entry.openedAt < SESSION_AHEAD_MS;
  }

  private expire(key: string, entry: Parked): void {
    clearTimeout(entry.expiry);
    const left = Math.max(0, entry.openedAt + SESSION_AHEAD_MS - this.now());
    entry.expiry = setTimeout(() => this.parked.get(key) === entry && !entry.inUse && this.drop(key, entry), left);
    entry.expiry.unref();
  }

  private drop(key: string, entry: Parked): void {
    clearTimeout(entry.expiry);
    if (this.parked.get(key) === entry) this.parked.delete(key);
    entry.alive = false;
    entry.client.then((c) => c.end(), () => undefined).catch(() => undefined);
  }
}
