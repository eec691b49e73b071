// The shop's sample application as the real-shop suite runs it on the real node (one image
// for orders, billing and catalog: SERVICE_NAME and SCHEMA_VERSION come from the chart).
// It keeps a PostgreSQL pool open and serves HTTP with its version and the schema it sees.
// Like a real app now and then, it holds a transaction open that read `items` (a report
// cursor, a leaked client): its AccessShareLock blocks any ALTER TABLE items while it runs.
// On SIGTERM it stops accepting, lets in-flight requests finish, ends that transaction,
// closes its pool and exits. `server.mjs migrate` is its migration command instead (below).
import { createServer } from "node:http";
import { hostname } from "node:os";
import pg from "pg";

const service = process.env.SERVICE_NAME ?? "app";
const version = process.env.SCHEMA_VERSION ?? "";
const log = (message) => console.log(`${new Date().toISOString()} ${service} ${message}`);

// The app's migration command, as the gate's Job runner runs it: MIGRATION_SQL (the change
// this version brings) in one transaction, recorded in shop_migrations. Like many tools it
// first prints where it connects, password and all; it exits 1 on an error.
if (process.argv[2] === "migrate") {
  log(`migrate: connecting to ${process.env.DATABASE_URL}`);
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: "migrate" });
  try {
    await client.connect();
    await client.query("BEGIN");
    await client.query("CREATE TABLE IF NOT EXISTS shop_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    await client.query(process.env.MIGRATION_SQL ?? "");
    await client.query("INSERT INTO shop_migrations (version) VALUES ($1)", [version]);
    await client.query("COMMIT");
    log(`migrate: schema version ${version} applied`);
    process.exit(0);
  } catch (error) {
    log(`migrate: schema version ${version} failed: ${error.message}`);
    process.exit(1);
  }
}
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3, application_name: service });
let terminating = false;
let inFlight = 0;

async function schema() {
  const { rows } = await pool.query(
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'items' ORDER BY ordinal_position");
  return rows.map((r) => r.column_name);
}

const routes = {
  "/": async () => ({ service, version, pod: hostname(), columns: await schema() }),
  "/healthz": async () => ({ ok: true }),
  // Answers after ?ms=, saying whether SIGTERM arrived meanwhile (an in-flight request at shutdown).
  "/slow": async (url) => {
    const ms = Number(new URL(url, "http://x").searchParams.get("ms") ?? 1000);
    await new Promise((resolve) => setTimeout(resolve, ms));
    return { service, version, pod: hostname(), terminatedMeanwhile: terminating };
  },
};

const server = createServer(async (req, res) => {
  inFlight++;
  const route = routes[(req.url ?? "").split("?")[0]];
  // Once terminating, no connection is kept alive: server.close() waits for none of them.
  const send = (status, body) => res.writeHead(status, { "content-type": "application/json", ...(terminating ? { connection: "close" } : {}) })
    .end(JSON.stringify(body));
  try {
    // Any other path: 404 naming the service, so a router's choice of backend shows.
    const body = route ? await route(req.url) : { error: "not found", service };
    send(route ? 200 : 404, body);
  } catch (error) {
    send(500, { error: String(error) });
  } finally {
    inFlight--;
  }
});

// The transaction the app holds: it read items and never ends until shutdown.
const holder = await pool.connect();
await holder.query("BEGIN");
const { rows } = await holder.query("SELECT count(*)::int AS n, pg_backend_pid() AS pid FROM items");
log(`connected to PostgreSQL, version ${version}, holding a transaction that read items (${rows[0].n} rows, backend pid ${rows[0].pid})`);
server.listen(Number(process.env.PORT ?? 8080), () => log(`listening on ${process.env.PORT ?? 8080}`));

process.on("SIGTERM", () => {
  terminating = true;
  log(`SIGTERM received: no new connections, ${inFlight} request(s) in flight`);
  server.close(async () => {
    log("in-flight requests finished");
    await holder.query("ROLLBACK").catch((error) => log(`rollback: ${error.message}`));
    holder.release();
    await pool.end();
    log("pool closed, exiting");
    process.exit(0);
  });
  server.closeIdleConnections();
});
