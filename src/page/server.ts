import { createHmac, timingSafeEqual } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Flag } from "../core/maintenance-flag.js";
import { percentDecoded } from "../core/percent.js";
import { SIDECAR_PATH_PREFIX } from "../core/sidecar-injection.js";
import type { Logger } from "../logger.js";
import { pageHtml, pageJson, wantsJson } from "./page.js";

export const BYPASS_COOKIE = "schema-gate-bypass";
export const BYPASS_HEADER = "x-schema-gate-bypass";
export const BYPASS_QUERY = "schema-gate-bypass";

export interface MaintenanceServerOptions {
  flag: () => Flag;
  bypassToken: () => string | undefined;
  /** Where a request goes when it is not answered with the page; undefined: nowhere. */
  upstream: (request: IncomingMessage) => URL | undefined;
  /** The maintenance backend shows the page whatever the flag says; the sidecar only while it is on. */
  pageAlways: boolean;
  log: Logger;
}

// Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are not forwarded.
const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
  "transfer-encoding", "upgrade",
]);

/** The request's cookies less the gate's own, so the bypass never reaches the app (or its logs). */
function appCookies(header: string): string | undefined {
  const kept = header.split(";").map((c) => c.trim()).filter((c) => c && !c.startsWith(`${BYPASS_COOKIE}=`));
  return kept.length > 0 ? kept.join("; ") : undefined;
}

function forwardHeaders(headers: http.IncomingHttpHeaders, keepUpgrade: boolean): http.OutgoingHttpHeaders {
  const named = new Set(String(headers.connection ?? "").toLowerCase().split(",").map((h) => h.trim()));
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name === BYPASS_HEADER) continue;
    if (!keepUpgrade && (HOP_BY_HOP.has(name) || named.has(name))) continue;
    if (name === "cookie") {
      const cookies = appCookies(String(value));
      if (cookies !== undefined) out[name] = cookies;
      continue;
    }
    out[name] = value;
  }
  return out;
}

/**
 * What the bypass cookie holds: derived from the token, so a cookie that leaks (a shared
 * browser, a log line) gives the token itself away to no one.
 */
export function bypassCookieValue(token: string): string {
  return createHmac("sha256", token).update("schema-gate bypass cookie v1").digest("base64url");
}

/** Whether the client reached us over HTTPS (here, or at the Ingress controller in front). */
function overHttps(request: IncomingMessage): boolean {
  const proto = String(request.headers["x-forwarded-proto"] ?? "").split(",")[0]?.trim().toLowerCase();
  return (request.socket as { encrypted?: boolean }).encrypted === true || proto === "https";
}

/** A same-site path for a redirect: one leading slash, so `//host` or `/\\host` never leaves the site. */
const sameSiteLocation = (url: URL) => `/${url.pathname.replace(/^[/\\]+/, "")}${url.search}`;

/** A request's cookie; one that is not valid percent-encoding is taken as it is (and so matches no token). */
function cookie(request: IncomingMessage, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return percentDecoded(value.join("=")) ?? value.join("=");
  }
  return undefined;
}

/** The request's path and query, or undefined for a target `new URL` cannot read (e.g. `http://[`). */
function requestUrl(request: IncomingMessage): URL | undefined {
  try {
    return new URL(request.url ?? "/", "http://placeholder");
  } catch {
    return undefined;
  }
}

/** Where a request goes; a route the gate cannot turn into a URL counts as none. */
function upstreamOf({ options }: Context, request: IncomingMessage): URL | undefined {
  try {
    return options.upstream(request);
  } catch (error) {
    options.log.warn({ err: error, url: request.url }, "no usable upstream for a request");
    return undefined;
  }
}

function plain(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
  response.end(`${text}\n`);
}

function sameToken(given: string | undefined, token: string | undefined): boolean {
  if (!given || !token) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

interface Context {
  options: MaintenanceServerOptions;
  agent: http.Agent;
}

function bypassed({ options }: Context, request: IncomingMessage): boolean {
  const token = options.bypassToken();
  if (!token) return false;
  return sameToken(String(request.headers[BYPASS_HEADER] ?? ""), token) || sameToken(cookie(request, BYPASS_COOKIE), bypassCookieValue(token));
}

const showPage = (context: Context, request: IncomingMessage) =>
  (context.options.pageAlways || context.options.flag().enabled) && !bypassed(context, request);

function sendPage({ options }: Context, request: IncomingMessage, response: ServerResponse): void {
  const flag = options.flag();
  request.resume();
  const json = wantsJson(request.headers.accept);
  const body = json ? JSON.stringify(pageJson(flag)) : pageHtml(flag);
  response.writeHead(503, {
    "content-type": json ? "application/json" : "text/html; charset=utf-8",
    "retry-after": String(flag.retryAfter),
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(body),
  });
  response.end(body);
}

function proxy(context: Context, request: IncomingMessage, response: ServerResponse): void {
  const { options, agent } = context;
  const target = upstreamOf(context, request);
  if (!target) {
    request.resume();
    response.writeHead(502, { "content-type": "text/plain; charset=utf-8" });
    response.end(`schema-gate: no backend for ${request.headers.host ?? ""}${request.url ?? ""}\n`);
    return;
  }
  const headers = forwardHeaders(request.headers, false);
  headers["x-forwarded-for"] = [request.headers["x-forwarded-for"], request.socket.remoteAddress].filter(Boolean).join(", ");
  headers["x-forwarded-host"] ??= request.headers.host;
  headers["x-forwarded-proto"] ??= "http";
  const upstream = http.request(
    { agent, hostname: target.hostname, port: target.port, method: request.method, path: request.url, headers },
    (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.statusMessage, forwardHeaders(answer.headers, false));
      answer.pipe(response);
      answer.on("error", () => response.destroy());
    },
  );
  upstream.on("error", (error) => {
    options.log.debug({ err: error, url: request.url }, "upstream request failed");
    if (response.headersSent) {
      response.destroy();
    } else {
      response.writeHead(502, { "content-type": "text/plain; charset=utf-8" });
      response.end(`schema-gate: the app did not answer (${error.message})\n`);
    }
  });
  // A client that goes away mid-stream takes the upstream request with it.
  response.on("close", () => {
    if (!response.writableFinished) upstream.destroy();
  });
  request.pipe(upstream);
}

function handleRequest(context: Context, request: IncomingMessage, response: ServerResponse): void {
  const url = requestUrl(request);
  if (!url) {
    request.resume();
    plain(response, 400, "schema-gate: the request target is not a valid URL");
    return;
  }
  if (url.pathname.startsWith(SIDECAR_PATH_PREFIX)) {
    request.resume();
    const healthy = url.pathname === `${SIDECAR_PATH_PREFIX}healthz`;
    response.writeHead(healthy ? 200 : 404, { "content-type": "text/plain" });
    response.end(healthy ? "ok\n" : "not found\n");
    return;
  }
  const given = url.searchParams.get(BYPASS_QUERY);
  if (given !== null && sameToken(given, context.options.bypassToken())) {
    // A link with the token sets the cookie once, then the address bar is clean again.
    url.searchParams.delete(BYPASS_QUERY);
    request.resume();
    response.writeHead(302, {
      location: sameSiteLocation(url),
      "set-cookie": `${BYPASS_COOKIE}=${bypassCookieValue(given)}; Path=/; HttpOnly; SameSite=Lax${overHttps(request) ? "; Secure" : ""}`,
      "cache-control": "no-store",
    });
    response.end();
    return;
  }
  if (showPage(context, request)) sendPage(context, request, response);
  else proxy(context, request, response);
}

function handleUpgrade(context: Context, request: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on("error", () => socket.destroy());
  const target = showPage(context, request) || !requestUrl(request) ? undefined : upstreamOf(context, request);
  if (!target) {
    const retry = context.options.flag().retryAfter;
    socket.end(`HTTP/1.1 503 Service Unavailable\r\nRetry-After: ${retry}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    return;
  }
  const upstream = http.request({
    hostname: target.hostname,
    port: target.port,
    method: request.method,
    path: request.url,
    headers: forwardHeaders(request.headers, true),
  });
  upstream.on("upgrade", (answer, upstreamSocket, upstreamHead) => {
    upstreamSocket.on("error", () => socket.destroy());
    socket.on("close", () => upstreamSocket.destroy());
    upstreamSocket.on("close", () => socket.destroy());
    socket.write(statusBlock(answer));
    if (upstreamHead.length) socket.write(upstreamHead);
    if (head.length) upstreamSocket.write(head);
    upstreamSocket.pipe(socket);
    socket.pipe(upstreamSocket);
  });
  // The app declined the upgrade: relay its ordinary answer.
  upstream.on("response", (answer) => {
    socket.write(statusBlock(answer, true));
    answer.pipe(socket);
  });
  upstream.on("error", () => socket.destroy());
  upstream.end();
}

/**
 * The HTTP server behind both the maintenance backend (`schema-gate page`) and the sidecar
 * (`schema-gate sidecar`): while maintenance is on it answers 503 with the page, except to
 * holders of the bypass token; otherwise it proxies to the upstream, streaming bodies both
 * ways and passing websocket (and other) upgrades through.
 */
export function createMaintenanceServer(options: MaintenanceServerOptions): http.Server {
  const context: Context = { options, agent: new http.Agent({ keepAlive: true }) };
  // This server faces the internet during maintenance: no request may take it down.
  const server = http.createServer((request, response) => {
    try {
      handleRequest(context, request, response);
    } catch (error) {
      options.log.error({ err: error, url: request.url }, "request failed");
      if (!response.headersSent) plain(response, 500, "schema-gate: internal error");
      else response.destroy();
    }
  });
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      handleUpgrade(context, request, socket, head);
    } catch (error) {
      options.log.error({ err: error, url: request.url }, "upgrade failed");
      socket.destroy();
    }
  });
  // Node answers nothing to CONNECT without a listener; a proxy's method has no place here.
  server.on("connect", (_request: IncomingMessage, socket: Duplex) => {
    socket.on("error", () => socket.destroy());
    socket.end("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  });
  server.on("close", () => context.agent.destroy());
  return server;
}

/**
 * The status line and headers of an upstream answer, to write on a raw socket. An ordinary
 * (declined) answer is sent decoded and ends with the connection, so its framing goes.
 */
function statusBlock(answer: IncomingMessage, closeDelimited = false): string {
  const lines = [`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage ?? ""}`];
  for (let i = 0; i < answer.rawHeaders.length; i += 2) {
    const name = answer.rawHeaders[i]!;
    if (closeDelimited && /^(transfer-encoding|connection|keep-alive)$/i.test(name)) continue;
    lines.push(`${name}: ${answer.rawHeaders[i + 1]}`);
  }
  if (closeDelimited) lines.push("Connection: close");
  return `${lines.join("\r\n")}\r\n\r\n`;
}
