import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { AdmissionContext } from "../core/admission.js";
import type { Decision } from "../core/decision.js";
import type { AdmissionRequest } from "../core/objects.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { errored, parseReview, respond, sniffUid, type AdmissionReviewResponse } from "./review.js";
import type { CertificateSource } from "./tls.js";

export type Decide = (request: AdmissionRequest, context: AdmissionContext) => Decision;

export interface WebhookOptions {
  context: AdmissionContext;
  mutate: Decide;
  validate: Decide;
  /** Keeps switched Ingresses switched while maintenance is on (served at /mutate-ingress). */
  mutateIngress?: Decide;
  metrics: Metrics;
  log: Logger;
  /** True once the caches the decisions read from have synced. */
  cachesReady: () => boolean;
  tlsReady: () => boolean;
  /** Bodies above this are answered with a denial instead of being read (default 6 MiB). */
  bodyLimitBytes?: number;
}

// An AdmissionReview holds the object and the old object; etcd caps one object at ~1.5 MiB.
const DEFAULT_BODY_LIMIT = 6 * 1024 * 1024;

type Body = { text: string } | { tooLarge: true; head: string };

function readBody(req: IncomingMessage, limit: number): Promise<Body> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (over) return; // keep draining so the connection stays usable
      if (size > limit) {
        over = true;
        const head = Buffer.concat(chunks).toString("utf8", 0, Math.min(4096, size));
        chunks.length = 0;
        resolve({ tooLarge: true, head });
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!over) resolve({ text: Buffer.concat(chunks).toString("utf8") });
    });
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * The webhook server's request handler: /mutate, /validate, /mutate-ingress (POST),
 * /healthz, /readyz, /metrics (GET). Plain node:http rather than a framework: five fixed
 * routes on the admission path, where every microsecond is the apiserver's latency.
 */
export function createWebhookApp(options: WebhookOptions): RequestListener {
  const limit = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT;

  const handle = (webhook: "mutate" | "validate" | "mutate-ingress", decide: Decide) => async (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    let answer: AdmissionReviewResponse;
    let outcome: string;
    const body = await readBody(req, limit).catch(() => ({ text: "" }) as Body);
    if ("tooLarge" in body) {
      answer = errored(sniffUid(body.head), 413, `AdmissionReview body exceeds the webhook's limit of ${limit} bytes`);
      outcome = "bad_request";
    } else {
      const parsed = parseReview(body.text);
      if (!parsed.ok) {
        answer = errored(parsed.uid, 400, `schema-gate could not read the AdmissionReview: ${parsed.message}`);
        outcome = "bad_request";
        options.log.warn({ webhook, uid: parsed.uid, problem: parsed.message }, "unreadable AdmissionReview");
      } else {
        const { request } = parsed;
        try {
          const decision = decide(request, options.context);
          answer = respond(request.uid, decision);
          outcome = decision.kind === "deny" ? "denied" : decision.kind === "patch" ? "patched" : "allowed";
          if (decision.kind !== "allow") {
            options.log.info(
              {
                webhook, uid: request.uid, namespace: request.namespace, name: request.name,
                operation: request.operation, user: request.userInfo.username, outcome,
                ...(decision.kind === "deny" ? { reason: decision.message } : { patch: decision.patch }),
              },
              `admission ${outcome}`,
            );
          }
        } catch (error) {
          answer = errored(request.uid, 500, `schema-gate failed to decide: ${(error as Error).message}`);
          outcome = "error";
          options.log.error({ webhook, uid: request.uid, err: error }, "admission decision failed");
        }
      }
    }
    send(res, 200, "application/json", JSON.stringify(answer));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    options.metrics.admissionDuration.observe({ webhook, outcome }, seconds);
  };

  const get = new Map(Object.entries({
    "/healthz": (_req: IncomingMessage, res: ServerResponse) => send(res, 200, "text/plain; charset=utf-8", "ok"),
    "/readyz": (_req: IncomingMessage, res: ServerResponse) => {
      const tls = options.tlsReady();
      const caches = options.cachesReady();
      send(res, tls && caches ? 200 : 503, "text/plain; charset=utf-8", `tls: ${tls ? "ok" : "waiting"}\ncaches: ${caches ? "ok" : "waiting"}\n`);
    },
    "/metrics": async (_req: IncomingMessage, res: ServerResponse) => {
      send(res, 200, options.metrics.registry.contentType, await options.metrics.registry.metrics());
    },
  } as Record<string, (req: IncomingMessage, res: ServerResponse) => void | Promise<void>>));
  const post = new Map(Object.entries({
    "/mutate": handle("mutate", options.mutate),
    "/validate": handle("validate", options.validate),
    ...(options.mutateIngress ? { "/mutate-ingress": handle("mutate-ingress", options.mutateIngress) } : {}),
  } as Record<string, (req: IncomingMessage, res: ServerResponse) => Promise<void>>));

  return (req, res) => {
    const url = req.url ?? "";
    const query = url.indexOf("?");
    const path = query < 0 ? url : url.slice(0, query);
    const route = req.method === "POST" ? post.get(path) : req.method === "GET" || req.method === "HEAD" ? get.get(path) : undefined;
    if (!route) {
      req.resume();
      const known = post.has(path) || get.has(path);
      send(res, known ? 405 : 404, "text/plain; charset=utf-8", known ? `${req.method} is not allowed on ${path}\n` : "not found\n");
      return;
    }
    Promise.resolve(route(req, res)).catch((error: unknown) => {
      options.log.error({ err: error, path }, "request failed");
      if (!res.headersSent) send(res, 500, "text/plain; charset=utf-8", "internal error\n");
      else res.destroy();
    });
  };
}

export interface RunningServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/**
 * Serves the app over HTTPS with certificates from `certs`; a renewed certificate is
 * used for new connections at once, open connections carry on.
 */
export async function serveHttps(
  app: RequestListener,
  certs: CertificateSource,
  listen: { host: string; port: number },
): Promise<RunningServer> {
  const pair = certs.pair ?? (await certs.reload());
  if (!pair) throw new Error("no usable serving certificate; check --tls-cert-file and --tls-key-file");
  const server = createServer({ cert: pair.cert, key: pair.key }, app);
  // The apiserver reuses connections; keep them longer than its idle timeout (90s).
  server.keepAliveTimeout = 120_000;
  certs.watch((next) => server.setSecureContext({ cert: next.cert, key: next.key }));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, resolve);
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        certs.stop();
        server.close(() => resolve());
        server.closeIdleConnections();
        // The apiserver keeps connections open between reviews; an answer takes
        // milliseconds, so after a short grace nothing is lost by cutting them.
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      }),
  };
}
