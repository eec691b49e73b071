import { strict as assert } from "node:assert";
import { startIngressController, type IngressController } from "../../src/local/ingress-controller.js";
import type { RealNode } from "../../src/local/real-node.js";
import { createLogger } from "../../src/logger.js";
import { pollUntil, sleep } from "../../src/util/wait.js";
import { screenshot } from "../support/chromium.js";
import { waitForWebhooks, type GateProcess } from "../support/gate.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { answerKind as kind, gateForRealShop, get, pollEvery, realShopValues, runs, type Poll } from "../support/real-shop.js";
import { releaseShop, shopDatabase, shopReady, windowSettled } from "../support/shop.js";

const HOST = "shop.example";
const V1 = { "001-items.sql": "ALTER TABLE items ADD COLUMN price int NOT NULL DEFAULT 0;" };
// The migration takes a while, so that a browser started at the first page answer loads the page during the window.
const V2 = { ...V1, "002-stock.sql": "ALTER TABLE items ADD COLUMN stock int NOT NULL DEFAULT 0; SELECT pg_sleep(4);" };

describe("real ingress: the shop's Ingress served by HAProxy (the local Ingress controller), through a window", function () {
  let env: TestEnv;
  let node: RealNode;
  let gate: GateProcess;
  let controller: IngressController;
  let ns: string;
  const through = (path: string, host = HOST, timeoutMs = 2000) => get("127.0.0.1", controller.port, path, timeoutMs, { host, accept: "application/json" });
  const values = (image: string, version: string, sql: Record<string, string>) => ({
    ...realShopValues(node, image, version, sql),
    ingress: { enabled: true, className: "haproxy", host: HOST, ordersPath: "/api" },
  });
  let image: string;

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    env = await testEnv();
    ({ node, shopImage: image, gate } = await gateForRealShop(env));
    controller = await startIngressController({ kc: env.kc, dir: node.dir, log: createLogger({ level: "warn", name: "ingress" }) });
    ns = await testNamespace("real-ingress");
    await waitForWebhooks(env, ns);
    await shopDatabase(env, ns, node.hostAddress);
    await releaseShop(env, ns, values(image, "1", V1));
    const state = await windowSettled(env, ns, "1");
    assert.equal(state.result, "Done", JSON.stringify(state.failure));
    await shopReady(env, ns);
  });
  after(async () => {
    await controller?.stop();
    await gate?.stop();
  });

  it("routes the shop's Ingresses by host and path (Prefix on path elements, Exact), 404 for any other host, 503 for a Service without a ready endpoint", async function () {
    await controller.settled();
    await pollUntil(async () => ((await through("/").catch(() => undefined))?.body.version === "1" ? true : undefined),
      { timeoutMs: 20_000, what: `the catalog through HAProxy at ${controller.url}` });
    const served = async (path: string, host?: string) => {
      const a = await through(path, host);
      return `${a.status} ${typeof a.body === "object" ? a.body.service : a.body.trim()}`;
    };
    const table = {
      "/": await served("/"),
      "/api": await served("/api"),
      "/api/orders": await served("/api/orders"),
      "/apix": await served("/apix"),
      "/billing/hooks": await served("/billing/hooks"),
      "/billing/hooks/x": await served("/billing/hooks/x"),
      "other.example /": await served("/", "other.example"),
    };
    assert.deepEqual(table, {
      "/": "200 catalog",
      "/api": "404 orders",
      "/api/orders": "404 orders",
      "/apix": "404 catalog",
      "/billing/hooks": "404 billing",
      "/billing/hooks/x": "404 catalog",
      "other.example /": "404 no Ingress rule matches this host and path",
    });
    // A Service with no ready endpoint: HAProxy itself answers 503 (and it is not the page).
    await env.cluster.kubectl(["apply", "-n", ns, "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: [
      { apiVersion: "v1", kind: "Service", metadata: { name: "nobody" }, spec: { selector: { app: "nobody" }, ports: [{ port: 80 }] } },
      { apiVersion: "networking.k8s.io/v1", kind: "Ingress", metadata: { name: "nobody" }, spec: { ingressClassName: "haproxy", rules: [{
        host: "nobody.example", http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: "nobody", port: { number: 80 } } } }] } }] } },
    ] }));
    const empty = await pollUntil(async () => {
      const a = await through("/", "nobody.example");
      return a.status === 404 ? undefined : a;
    }, { timeoutMs: 10_000, what: "HAProxy to serve Ingress nobody" });
    assert.equal(empty.status, 503);
    assert.equal(kind(empty), "other HTTP 503");
    assert.match(String(empty.body), /503 Service Unavailable/);
    console.log(`      HAProxy at ${controller.url}, ${controller.reloads()} reloads so far (the first install's window switched the Ingress and back)`);
  });

  it("answers the app, then the maintenance page (503, Retry-After) during the window, then the new version: nothing else", async function () {
    this.timeout(240_000);
    const answers = new Map<string, number>();
    let firstPage: (() => void) | undefined;
    const pageSeen = new Promise<void>((resolve) => (firstPage = resolve));
    const poller = pollEvery(async () => {
      const outcome = await through("/", HOST, 1000).then(kind, (e: NodeJS.ErrnoException) => `other ${e.code ?? e.message}`);
      const status = outcome === "page" ? "503" : outcome.startsWith("app") ? "200" : outcome;
      answers.set(status, (answers.get(status) ?? 0) + 1);
      if (outcome === "page") firstPage?.();
      return outcome;
    });
    const reloadsBefore = controller.reloads();
    await releaseShop(env, ns, values(image, "2", V2));
    // The browser loads the page through HAProxy while the window runs (the migration sleeps 4 s).
    const shot = pageSeen.then(() => screenshot(`http://${HOST}:${controller.port}/`, "maintenance-page-ingress.png", { localHosts: [HOST] })
      .then((s) => ({ ...s, doneAt: Date.now() })));
    shot.catch(() => undefined);
    const state = await windowSettled(env, ns, "2", 120_000);
    assert.equal(state.result, "Done", JSON.stringify(state.failure));
    await shopReady(env, ns);
    await pollUntil(async () => ((await through("/").catch(() => undefined))?.body.version === "2" ? true : undefined),
      { timeoutMs: 20_000, what: "version 2 through HAProxy" });
    await sleep(1000); // the poller's own answers from version 2 too
    const polls: Poll[] = await poller.stop();
    const { path, text, doneAt } = await shot;

    console.log(`      through HAProxy every 100 ms: ${runs(polls)}`);
    console.log(`      by status: ${[...answers].map(([s, n]) => `${s} x${n}`).join(", ")}; by body: ` +
      ["app 1", "page", "app 2"].map((k) => `${k} x${polls.filter((p) => p.outcome === k).length}`).join(", ") +
      `, other x${polls.filter((p) => p.outcome.startsWith("other")).length}; HAProxy reloads during the window ${controller.reloads() - reloadsBefore}`);
    const pages = polls.filter((p) => p.outcome === "page").map((p) => p.at);
    console.log(`      screenshot through the Ingress: ${path}, written ${((doneAt - Math.min(...pages)) / 1000).toFixed(1)}s after the first page answer ` +
      `(page served for ${((Math.max(...pages) - Math.min(...pages)) / 1000).toFixed(1)}s)`);
    const order = runs(polls).split(", ").map((r) => r.replace(/ x\d+$/, ""));
    assert.deepEqual(order, ["app 1", "page", "app 2"], `through HAProxy: ${runs(polls)}`);
    assert.match(text, /Down for maintenance/i, `OCR read: ${text}`);
  });
});
