import { strict as assert } from "node:assert";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import * as k8s from "@kubernetes/client-node";
import { eventRecorder } from "../../../src/k8s/events.js";
import { SharedConnections } from "../../../src/k8s/kubeconfig.js";
import { makeLoopbackCert, type ServingCert } from "../../../src/local/certs.js";
import { createLogger } from "../../../src/logger.js";

describe("eventRecorder: an Event is sent only while it is allowed, asked as it goes out", () => {
  let cert: ServingCert;
  let server: Server;
  let port = 0;
  let received: Array<{ method?: string; url?: string; body: { reason?: string; involvedObject?: { name?: string } } }> = [];
  let status = 201;

  before(async () => {
    cert = await makeLoopbackCert();
    server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
      let text = "";
      req.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
      req.on("end", () => {
        received.push({ method: req.method, url: req.url, body: JSON.parse(text || "{}") });
        res.statusCode = status;
        res.setHeader("content-type", "application/json");
        res.end(status < 300 ? text : JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code: status, message: "boom" }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  beforeEach(() => {
    received = [];
    status = 201;
  });
  after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));

  function recorder(allowed: () => boolean) {
    const kc = new SharedConnections();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: `https://127.0.0.1:${port}`, caData: Buffer.from(cert.ca).toString("base64"), skipTLSVerify: false }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const lines: string[] = [];
    const destination = new Writable({ write(chunk: Buffer, _encoding, done) { lines.push(chunk.toString("utf8")); done(); } });
    return { record: eventRecorder(kc as k8s.KubeConfig, "schema-gate", createLogger({ level: "debug", destination }), allowed), lines };
  }
  const target = { kind: "Deployment", apiVersion: "apps/v1", name: "orders", namespace: "shop", uid: "u-1" };

  it("creates the Event while allowed", async () => {
    const { record } = recorder(() => true);
    await record(target, "Normal", "Restored", "replicas restored");
    assert.equal(received.length, 1);
    assert.equal(received[0]!.method, "POST");
    assert.equal(received[0]!.url, "/api/v1/namespaces/shop/events");
    assert.equal(received[0]!.body.reason, "Restored");
    assert.equal(received[0]!.body.involvedObject?.name, "orders");
  });

  it("sends nothing when leadership is lost after the Event was asked for but before it went out (a replica frozen in between)", async () => {
    let leading = true;
    const { record, lines } = recorder(() => leading);
    const asked = record(target, "Normal", "Restored", "replicas restored");
    leading = false; // what a replica finds on waking: its renewals are past the renew deadline
    await asked;
    assert.deepEqual(received, []);
    assert.ok(lines.some((l) => l.includes("event dropped: this replica no longer leads")), lines.join(""));
  });

  it("logs a failed create and resolves: the window goes on", async () => {
    status = 500;
    const { record, lines } = recorder(() => true);
    await record(target, "Warning", "RolloutNotReady", "not ready");
    assert.equal(received.length, 1);
    assert.ok(lines.some((l) => l.includes("could not record event")), lines.join(""));
  });
});
