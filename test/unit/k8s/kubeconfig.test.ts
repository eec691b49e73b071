import { strict as assert } from "node:assert";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import * as k8s from "@kubernetes/client-node";
import { SharedConnections } from "../../../src/k8s/kubeconfig.js";
import { makeLoopbackCert, type ServingCert } from "../../../src/local/certs.js";

describe("SharedConnections: API calls over kept connections", () => {
  let cert: ServingCert;
  let server: Server;
  let connections = 0;
  let port = 0;

  before(async () => {
    cert = await makeLoopbackCert();
    server = createServer({ cert: cert.cert, key: cert.key }, (_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ apiVersion: "v1", kind: "NamespaceList", metadata: {}, items: [] }));
    });
    server.on("secureConnection", () => connections++);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));

  function load(kc: k8s.KubeConfig): k8s.CoreV1Api {
    kc.loadFromOptions({
      clusters: [{ name: "c", server: `https://127.0.0.1:${port}`, caData: Buffer.from(cert.ca).toString("base64"), skipTLSVerify: false }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    return kc.makeApiClient(k8s.CoreV1Api);
  }

  it("makes one TLS connection for calls one after another, where client-node alone makes one per call", async () => {
    for (const [kc, expected] of [[new k8s.KubeConfig(), 5], [new SharedConnections(), 1]] as const) {
      const api = load(kc);
      connections = 0;
      for (let i = 0; i < 5; i++) await api.listNamespace();
      assert.equal(connections, expected, kc.constructor.name);
    }
  });
});
