import { strict as assert } from "node:assert";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import WebSocket, { WebSocketServer } from "ws";
import { projectRoot } from "../../src/local/paths.js";
import { freePort } from "../../src/util/net.js";
import { pollUntil, sleep } from "../../src/util/wait.js";
import { MountedConfigMap } from "../../src/local/mounted-configmap.js";
import { dumpDom, screenshot } from "../support/chromium.js";

const MESSAGE = "Back at 10:30 after a database upgrade";
const PROGRESS = JSON.stringify({ version: "8", step: "migrate", index: 5, of: 9, startedAt: "2026-11-24T10:00:00Z" });
const TOKEN = "bypass-token-for-the-test-0123456789";

/** The app behind the sidecar: hello, a slow streamed answer, an echo of any body, a websocket echo. */
async function startApp(): Promise<{ port: number; firstByteAt: () => number | undefined; close(): Promise<void> }> {
  let firstByte: number | undefined;
  const server = http.createServer((req, res) => {
    if (req.url === "/hello") {
      res.end(`hello from the app (cookie: ${req.headers.cookie ? "yes" : "no"}) [${req.headers.cookie ?? ""}]`);
    } else if (req.url === "/slow") {
      res.writeHead(200, { "content-type": "text/plain" });
      let n = 0;
      const timer = setInterval(() => {
        res.write(`chunk ${n}\n`);
        if (++n === 15) {
          clearInterval(timer);
          res.end();
        }
      }, 100);
    } else if (req.url === "/echo") {
      req.once("data", () => (firstByte ??= Date.now()));
      res.writeHead(200, { "content-type": "application/octet-stream" });
      req.pipe(res);
    } else {
      res.writeHead(404).end();
    }
  });
  const sockets = new WebSocketServer({ server, path: "/ws" });
  sockets.on("connection", (socket) => socket.on("message", (data, binary) => socket.send(data, { binary })));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    firstByteAt: () => firstByte,
    close: async () => {
      sockets.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

interface PageProcess {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Runs `schema-gate sidecar` or `schema-gate page` as its own process, like the container does. */
async function startPageProcess(command: "sidecar" | "page", flagDir: string, bypassFile: string, upstream?: string): Promise<PageProcess> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      join(projectRoot, "bin", "schema-gate.js"), command, `--listen=127.0.0.1:${port}`, `--flag-dir=${flagDir}`,
      `--bypass-file=${bypassFile}`, ...(upstream ? [`--upstream=${upstream}`] : []),
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  await pollUntil(async () => ((await fetch(`${url}/.schema-gate/healthz`).catch(() => undefined))?.ok ? true : undefined), {
    timeoutMs: 15_000,
    intervalMs: 100,
    what: `schema-gate ${command} to listen`,
  });
  return {
    url,
    child,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** A GET with any headers (fetch will not send a Host of our choosing). */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

/** Flips the mounted flag and waits until the server answers accordingly; returns how long that took. */
async function flip(mount: MountedConfigMap, url: string, enabled: boolean): Promise<number> {
  const started = Date.now();
  await mount.write({ enabled: String(enabled), message: MESSAGE, "retry-after": "45", progress: PROGRESS });
  await pollUntil(async () => ((await fetch(`${url}/hello`)).status === (enabled ? 503 : 200) ? true : undefined), {
    timeoutMs: 10_000,
    intervalMs: 20,
    what: `the page to turn ${enabled ? "on" : "off"}`,
  });
  return Date.now() - started;
}

describe("the maintenance page and sidecar over real HTTP", function () {
  let app: Awaited<ReturnType<typeof startApp>>;
  let mount: MountedConfigMap;
  let sidecar: PageProcess;
  let bypassFile: string;

  before(async function () {
    app = await startApp();
    mount = await MountedConfigMap.create({ enabled: "false", message: MESSAGE, "retry-after": "45", progress: PROGRESS });
    const secretDir = await mkdtemp(join(tmpdir(), "schema-gate-bypass-"));
    bypassFile = join(secretDir, "token");
    await writeFile(bypassFile, `${TOKEN}\n`);
    sidecar = await startPageProcess("sidecar", mount.dir, bypassFile, `http://127.0.0.1:${app.port}`);
  });
  after(async () => {
    await sidecar?.stop();
    await app?.close();
  });

  it("proxies to the app while maintenance is off, and switches both ways with the mounted file", async function () {
    const off = await fetch(`${sidecar.url}/hello`);
    assert.equal(off.status, 200);
    assert.match(await off.text(), /hello from the app/);
    const onMs = await flip(mount, sidecar.url, true);
    const offMs = await flip(mount, sidecar.url, false);
    console.log(`      mounted flag flipped -> sidecar answers accordingly: on ${onMs} ms, off ${offMs} ms`);
  });

  it("lets a request in flight finish when the flag turns on, and answers the next one with the page", async function () {
    const slow = fetch(`${sidecar.url}/slow`).then(async (r) => ({ status: r.status, body: await r.text() }));
    await sleep(300);
    await flip(mount, sidecar.url, true);
    const done = await slow;
    assert.equal(done.status, 200);
    assert.equal(done.body.split("\n").filter(Boolean).length, 15, "every chunk of the in-flight answer arrived");
    const next = await fetch(`${sidecar.url}/slow`);
    assert.equal(next.status, 503);
    await next.text();
    await flip(mount, sidecar.url, false);
  });

  it("answers 503 with Retry-After: HTML for browsers, JSON for API clients", async function () {
    await flip(mount, sidecar.url, true);
    const page = await fetch(`${sidecar.url}/orders/42`, { headers: { accept: "text/html" } });
    assert.equal(page.status, 503);
    assert.equal(page.headers.get("retry-after"), "45");
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    assert.match(await page.text(), new RegExp(MESSAGE));
    const json = await fetch(`${sidecar.url}/orders/42`, { headers: { accept: "application/json" } });
    assert.equal(json.status, 503);
    assert.equal(json.headers.get("retry-after"), "45");
    const body = (await json.json()) as { status: string; message: string; progress: { step: string } };
    assert.equal(body.status, "maintenance");
    assert.equal(body.message, MESSAGE);
    assert.equal(body.progress.step, "migrate");
    await flip(mount, sidecar.url, false);
  });

  it("shows the page in headless Chromium; the screenshot is saved and reads back with the message", async function () {
    this.timeout(120_000);
    await flip(mount, sidecar.url, true);
    const dom = await dumpDom(`${sidecar.url}/`);
    assert.match(dom, /<h1>Down for maintenance<\/h1>/);
    assert.match(dom, new RegExp(MESSAGE));
    assert.match(dom, /Upgrading the database \(step 5 of 9\)/);
    const { path, text } = await screenshot(`${sidecar.url}/`, "maintenance-page.png");
    console.log(`      screenshot: ${path}`);
    assert.match(text, /Down for maintenance/i, `OCR read: ${text}`);
    assert.match(text, /after a database upgrade/i, `OCR read: ${text}`);
    await flip(mount, sidecar.url, false);
  });

  it("lets the bypass token (header, or a link that sets a cookie) reach the app", async function () {
    await flip(mount, sidecar.url, true);
    assert.equal((await fetch(`${sidecar.url}/hello`, { headers: { "x-schema-gate-bypass": "wrong" } })).status, 503);
    const header = await fetch(`${sidecar.url}/hello`, { headers: { "x-schema-gate-bypass": TOKEN } });
    assert.equal(header.status, 200);
    assert.match(await header.text(), /hello from the app/);
    const link = await fetch(`${sidecar.url}/hello?schema-gate-bypass=${TOKEN}`, { redirect: "manual" });
    assert.equal(link.status, 302);
    assert.equal(link.headers.get("location"), "/hello");
    const cookie = link.headers.get("set-cookie")!.split(";")[0]!;
    const withCookie = await fetch(`${sidecar.url}/hello`, { headers: { cookie } });
    assert.equal(withCookie.status, 200);
    await flip(mount, sidecar.url, false);
  });

  it("keeps the bypass token to itself: the cookie holds no token, is Secure behind HTTPS, never reaches the app, and the link never redirects off-site", async function () {
    await flip(mount, sidecar.url, true);
    const link = await fetch(`${sidecar.url}/hello?schema-gate-bypass=${TOKEN}`, { redirect: "manual", headers: { "x-forwarded-proto": "https" } });
    const setCookie = link.headers.get("set-cookie")!;
    const cookie = setCookie.split(";")[0]!;
    assert.ok(!setCookie.includes(TOKEN), `the cookie carries the token: ${setCookie}`);
    assert.match(setCookie, /;\s*Secure/i);
    const plainLink = await fetch(`${sidecar.url}/hello?schema-gate-bypass=${TOKEN}`, { redirect: "manual" });
    assert.doesNotMatch(plainLink.headers.get("set-cookie")!, /Secure/i, "plain HTTP: a Secure cookie would not come back");

    const seen = await (await fetch(`${sidecar.url}/hello`, { headers: { cookie: `${cookie}; theme=dark` } })).text();
    assert.match(seen, /hello from the app/);
    assert.match(seen, /\[theme=dark\]/, `the app sees its own cookies and not the gate's: ${seen}`);

    for (const path of ["/.//evil.example/x", "//evil.example/x", "/\\evil.example/x"]) {
      const off = await fetch(`${sidecar.url}${path}?schema-gate-bypass=${TOKEN}`, { redirect: "manual" });
      assert.equal(off.status, 302, path);
      assert.match(off.headers.get("location")!, /^\/(?![/\\])/, `${path} redirected to ${off.headers.get("location")}`);
    }
    await flip(mount, sidecar.url, false);
  });

  it("streams a large body both ways without holding it", async function () {
    const size = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    let sentAll = 0;
    const source = Readable.from(
      (async function* () {
        for (let sent = 0; sent < size; sent += chunk.length) {
          yield chunk;
          await sleep(5);
        }
        sentAll = Date.now();
      })(),
    );
    const sent = createHash("sha256");
    for (let i = 0; i < size / chunk.length; i++) sent.update(chunk);
    const received = createHash("sha256");
    let length = 0;
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${sidecar.url}/echo`, { method: "POST", headers: { "content-type": "application/octet-stream" } }, (res) => {
        assert.equal(res.statusCode, 200);
        res.on("data", (c: Buffer) => {
          length += c.length;
          received.update(c);
        });
        res.on("end", resolve);
        res.on("error", reject);
      });
      req.on("error", reject);
      void pipeline(source, req).catch(reject);
    });
    assert.equal(length, size);
    assert.equal(received.digest("hex"), sent.digest("hex"));
    assert.ok(app.firstByteAt()! < sentAll, "the app got the first bytes before the client had sent the last");
  });

  it("carries a websocket echo, and refuses the upgrade while maintenance is on", async function () {
    const ws = new WebSocket(`${sidecar.url.replace("http", "ws")}/ws`);
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const echoed = await new Promise<string>((resolve) => {
      ws.once("message", (data) => resolve(String(data)));
      ws.send("ping through the sidecar");
    });
    assert.equal(echoed, "ping through the sidecar");
    ws.close();

    await flip(mount, sidecar.url, true);
    const refused = new WebSocket(`${sidecar.url.replace("http", "ws")}/ws`);
    const status = await new Promise<number | undefined>((resolve) => {
      refused.once("unexpected-response", (_req, res) => resolve(res.statusCode));
      refused.once("open", () => resolve(101));
      refused.once("error", () => resolve(undefined));
    });
    assert.equal(status, 503);
    await flip(mount, sidecar.url, false);
  });

  it("runs as the maintenance backend: always the page, and the bypass follows the recorded routes", async function () {
    const routes = JSON.stringify([{ host: "shop.example", path: "/", pathType: "Prefix", url: `http://127.0.0.1:${app.port}` }]);
    const backendMount = await MountedConfigMap.create({ enabled: "true", message: MESSAGE, routes });
    const page = await startPageProcess("page", backendMount.dir, bypassFile);
    try {
      const shown = await get(`${page.url}/hello`, { host: "shop.example" });
      assert.equal(shown.status, 503);
      assert.match(shown.body, new RegExp(MESSAGE));
      const bypassed = await get(`${page.url}/hello`, { host: "shop.example", "x-schema-gate-bypass": TOKEN });
      assert.equal(bypassed.status, 200);
      assert.match(bypassed.body, /hello from the app/);
      const unrouted = await get(`${page.url}/hello`, { host: "other.example", "x-schema-gate-bypass": TOKEN });
      assert.equal(unrouted.status, 502);
    } finally {
      await page.stop();
    }
  });

  describe("hostile requests (each once, then the process must still serve)", function () {
    /** Sends raw bytes and returns the status line the server answered with ("" if it closed without one). */
    function raw(url: string, text: string): Promise<string> {
      const { port } = new URL(url);
      return new Promise((resolve, reject) => {
        // Written without half-closing: the server closes after its answer (Connection: close).
        const socket = net.connect(Number(port), "127.0.0.1", () => socket.write(text));
        socket.setTimeout(10_000, () => socket.destroy());
        let answer = "";
        socket.on("data", (chunk) => (answer += chunk.toString("latin1")));
        socket.on("close", () => resolve(answer.split("\r\n")[0] ?? ""));
        socket.on("error", reject);
      });
    }

    const HOSTILE: Array<[string, string]> = [
      ["a bypass cookie that is not valid percent-encoding", "GET /hello HTTP/1.1\r\nHost: x\r\nCookie: schema-gate-bypass=%\r\nConnection: close\r\n\r\n"],
      ["an absolute request target with a broken host", "GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
      ["a bypass query that is not valid percent-encoding", "GET /?schema-gate-bypass=%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
      ["a bypassed request whose recorded route is not a URL", `GET /hello HTTP/1.1\r\nHost: x\r\nx-schema-gate-bypass: ${TOKEN}\r\nConnection: close\r\n\r\n`],
      ["an upgrade with a broken target", "GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"],
    ];

    for (const command of ["sidecar", "page"] as const) {
      for (const [what, text] of HOSTILE) {
        it(`${command}: answers ${what} with an HTTP status and keeps serving`, async function () {
          const routes = JSON.stringify([{ host: "x", path: "/", pathType: "Prefix", url: "http://[" }]);
          const flags = await MountedConfigMap.create({ enabled: "true", message: MESSAGE, routes });
          const server = await startPageProcess(command, flags.dir, bypassFile, command === "sidecar" ? `http://127.0.0.1:${app.port}` : undefined);
          try {
            const status = await raw(server.url, text);
            assert.match(status, /^HTTP\/1\.1 [1-5][0-9][0-9] /, `answer: ${JSON.stringify(status)}`);
            await sleep(100);
            assert.equal(server.child.exitCode, null, "the process is still running");
            assert.equal((await fetch(`${server.url}/.schema-gate/healthz`)).status, 200);
          } finally {
            await server.stop();
          }
        });
      }
    }
  });
});
