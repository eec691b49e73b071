// A small application the real-node suite runs as a real pod (image: the host's node
// binary plus this file and the `pg` package, see src/local/images.ts). It keeps a
// PostgreSQL pool open, serves HTTP, can call the apiserver through the `kubernetes`
// Service with its ServiceAccount, and on SIGTERM stops accepting, closes the pool and exits.
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer, request } from "node:https";
import { hostname } from "node:os";
import pg from "pg";

const log = (message) => console.log(`${new Date().toISOString()} ${message}`);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });

async function database() {
  const { rows } = await pool.query("SELECT current_database() AS db, inet_server_addr()::text AS server, pg_backend_pid() AS pid");
  return rows[0];
}

/** GET /version from the apiserver at KUBERNETES_SERVICE_HOST, verified against the cluster CA. */
function kubernetesVersion() {
  const account = "/var/run/secrets/kubernetes.io/serviceaccount";
  const options = {
    host: process.env.KUBERNETES_SERVICE_HOST,
    port: process.env.KUBERNETES_SERVICE_PORT,
    path: "/version",
    ca: readFileSync(`${account}/ca.crt`),
    headers: { authorization: `Bearer ${readFileSync(`${account}/token`, "utf8").trim()}` },
    timeout: 5000,
  };
  return new Promise((resolve, reject) => {
    const req = request(options, (res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** GET PEER_URL (e.g. this app's own Service): a pod reaching a Service through kube-proxy. */
async function peer() {
  const response = await fetch(process.env.PEER_URL, { signal: AbortSignal.timeout(5000) });
  return { status: response.status, body: await response.json() };
}

/** Resolves ?name= with the pod's resolver (its resolv.conf: cluster DNS, search path). */
async function resolve(url) {
  const name = new URL(url, "http://x").searchParams.get("name") ?? "";
  try {
    return { name, addresses: (await lookup(name, { all: true, family: 4 })).map((a) => a.address) };
  } catch (error) {
    return { name, error: error.code ?? String(error) };
  }
}

const routes = {
  "/": async () => ({ pod: hostname(), database: await database() }),
  "/peer": peer,
  "/kubernetes": kubernetesVersion,
  "/healthz": async () => ({ ok: true }),
};

const server = createServer(async (req, res) => {
  const path = (req.url ?? "").split("?")[0];
  const route = path === "/dns" ? resolve : routes[path];
  try {
    const body = route ? await route(req.url) : { error: "not found" };
    res.writeHead(route ? 200 : 404, { "content-type": "application/json" }).end(JSON.stringify(body));
  } catch (error) {
    res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: String(error) }));
  }
});

/**
 * A validating admission webhook on HTTPS (when TLS_DIR holds tls.crt and tls.key): it
 * denies objects named denied-*, naming the pod that answered, and allows the rest.
 */
function webhookServer(dir) {
  const tls = { cert: readFileSync(`${dir}/tls.crt`), key: readFileSync(`${dir}/tls.key`) };
  return createTlsServer(tls, (req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const review = JSON.parse(body);
      const name = review.request?.object?.metadata?.name ?? "";
      const allowed = !name.startsWith("denied-");
      log(`admission review for ${name}: ${allowed ? "allowed" : "denied"}`);
      const response = { uid: review.request?.uid, allowed, status: allowed ? undefined : { message: `denied by pod ${hostname()}` } };
      res.writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response }));
    });
  });
}

const webhook = process.env.TLS_DIR ? webhookServer(process.env.TLS_DIR) : undefined;
webhook?.listen(8443, () => log("webhook listening on 8443"));

const first = await database();
log(`connected to PostgreSQL ${first.server} database ${first.db} (backend pid ${first.pid})`);
server.listen(Number(process.env.PORT ?? 8080), () => log(`listening on ${process.env.PORT ?? 8080}`));

process.on("SIGTERM", () => {
  log("SIGTERM received: closing");
  webhook?.close();
  webhook?.closeAllConnections();
  server.close(async () => {
    await pool.end();
    log("pool closed, exiting");
    process.exit(0);
  });
  server.closeAllConnections();
});
