import pg from "pg";
import type { PoolMode } from "../../src/local/pgbouncer.js";
import { sleep } from "../../src/util/wait.js";

/** What a client polling through the pooler saw: queries answered, errors, and its longest wait for an answer. */
export interface PollFigures {
  ok: number;
  errors: string[];
  longestMs: number;
}

/**
 * A client polling `SELECT count(*) FROM items` through the pooler every 20 ms, as an
 * application does in each mode: in transaction pooling a pool that stays connected, in
 * session pooling a connection per request (a client that stays connected in session
 * pooling keeps its server connection, which a PAUSE waits for).
 */
export function pollThroughPooler(url: string, mode: PoolMode): { figures: PollFigures; stop(): Promise<PollFigures> } {
  const figures: PollFigures = { ok: 0, errors: [], longestMs: 0 };
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on("error", () => undefined); // an idle client whose connection ended; the next query gets a new one
  const once = async () => {
    if (mode === "transaction") return pool.query("SELECT count(*) FROM items");
    const client = new pg.Client({ connectionString: url });
    client.on("error", () => undefined);
    await client.connect();
    try {
      return await client.query("SELECT count(*) FROM items");
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      try {
        await once();
        figures.ok++;
      } catch (error) {
        figures.errors.push((error as Error).message);
      }
      figures.longestMs = Math.max(figures.longestMs, Date.now() - started);
      await sleep(20);
    }
  })();
  return {
    figures,
    async stop() {
      running = false;
      await loop;
      await pool.end().catch(() => undefined);
      return figures;
    },
  };
}

/**
 * A client through the pooler in the middle of a transaction that read `items`, once this
 * resolves; `commitAfter(ms)` commits it that long after (and, in session pooling,
 * disconnects, as a request ends) and says whether it committed.
 */
export async function transactionInFlight(url: string): Promise<{ commitAfter(ms: number): Promise<string> }> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => undefined);
  await client.connect();
  await client.query("BEGIN");
  await client.query("SELECT count(*) FROM items");
  return {
    async commitAfter(ms) {
      try {
        await sleep(ms);
        await client.query("COMMIT");
        return "committed";
      } catch (error) {
        return `error: ${(error as Error).message}`;
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
}
