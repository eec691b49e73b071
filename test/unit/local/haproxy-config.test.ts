import { strict as assert } from "node:assert";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import { renderHaproxyConfig, type ClusterView } from "../../../src/local/haproxy-config.js";
import { run } from "../../../src/util/exec.js";

const ns = "shop";
const service = (name: string, ports: k8s.V1ServicePort[]): k8s.V1Service => ({ metadata: { name, namespace: ns }, spec: { ports } });
const slice = (name: string, port: { name?: string; port: number }, endpoints: Array<[string, boolean | undefined]>): k8s.V1EndpointSlice => ({
  metadata: { name: `${name}-x`, namespace: ns, labels: { "kubernetes.io/service-name": name } },
  addressType: "IPv4",
  ports: [port],
  endpoints: endpoints.map(([ip, ready]) => ({ addresses: [ip], conditions: ready === undefined ? {} : { ready } })),
});
const backend = (name: string, port: k8s.V1ServiceBackendPort) => ({ service: { name, port } });

const VIEW: ClusterView = {
  ingresses: [
    {
      metadata: { name: "shop", namespace: ns },
      spec: {
        ingressClassName: "haproxy",
        rules: [{
          host: "Shop.example",
          http: { paths: [
            { path: "/", pathType: "Prefix", backend: backend("catalog", { name: "http" }) },
            { path: "/api/", pathType: "Prefix", backend: backend("orders", { number: 80 }) },
          ] },
        }],
      },
    },
    {
      metadata: { name: "hooks", namespace: ns, annotations: { "kubernetes.io/ingress.class": "haproxy" } },
      spec: { rules: [{ host: "*.example", http: { paths: [{ path: "/billing/hooks", pathType: "Exact", backend: backend("billing", { number: 80 }) }] } }] },
    },
    { metadata: { name: "other", namespace: ns }, spec: { ingressClassName: "nginx", defaultBackend: backend("catalog", { name: "http" }) } },
    { metadata: { name: "unclassed", namespace: ns }, spec: { defaultBackend: backend("catalog", { name: "http" }) } },
  ],
  services: [
    service("catalog", [{ name: "http", port: 80 }]),
    service("orders", [{ name: "web", port: 80 }]),
    service("billing", [{ port: 80 }]),
  ],
  endpointSlices: [
    slice("catalog", { name: "http", port: 8080 }, [["10.88.0.5", true], ["10.88.0.6", false]]),
    slice("orders", { name: "web", port: 8080 }, [["10.88.0.7", undefined], ["10.88.0.8", true]]),
    // billing: no endpoint ready.
    slice("billing", { port: 8080 }, [["10.88.0.9", false]]),
  ],
};

describe("haproxy.cfg of the local Ingress controller", function () {
  const text = renderHaproxyConfig(VIEW, { bind: "127.0.0.1:18080", statsSocket: "/run/test.sock" });
  const uses = text.split("\n").filter((l) => l.trim().startsWith("use_backend") || l.trim().startsWith("default_backend")).map((l) => l.trim());

  it("orders the rules as the Ingress API matches: exact host, wildcard; longest path first; Prefix on path elements", function () {
    assert.deepEqual(uses, [
      "use_backend shop_orders_80 if { var(txn.host) -m str 'shop.example' } { path -m str '/api' } || { var(txn.host) -m str 'shop.example' } { path -m beg '/api/' }",
      "use_backend shop_catalog_http if { var(txn.host) -m str 'shop.example' }",
      "use_backend shop_billing_80 if { var(txn.host) -m reg '^[^.]+\\.example$' } { path -m str '/billing/hooks' }",
      // Neither the nginx class's nor the class-less Ingress's default backend: only ours are served.
      "default_backend no-route",
    ]);
  });

  it("lists each Service port's ready endpoints as servers, none for a Service without one", function () {
    const backendBlock = (name: string) => text.split("\n\n").map((b) => b.split("\n").filter(Boolean)).find((b) => b[0] === `backend ${name}`)?.slice(1);
    assert.deepEqual(backendBlock("shop_catalog_http"), ["    server s0 10.88.0.5:8080"]);
    assert.deepEqual(backendBlock("shop_orders_80"), ["    server s0 10.88.0.7:8080", "    server s1 10.88.0.8:8080"]);
    assert.deepEqual(backendBlock("shop_billing_80"), [], "billing: a backend without servers (HAProxy answers 503)");
  });

  it("retries a refused or dropped connection on another server", function () {
    assert.match(text, /retry-on conn-failure empty-response/);
    assert.match(text, /option redispatch 1/);
  });

  it("is a config HAProxy accepts (haproxy -c)", async function () {
    const dir = await mkdtemp(join(tmpdir(), "schema-gate-haproxy-"));
    const file = join(dir, "haproxy.cfg");
    await writeFile(file, renderHaproxyConfig(VIEW, { bind: "127.0.0.1:18080", statsSocket: join(dir, "s.sock") }));
    const check = await run("/usr/sbin/haproxy", ["-c", "-f", file]);
    assert.match(check.stdout + check.stderr, /Configuration file is valid/);
  });
});
