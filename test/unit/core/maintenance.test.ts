import { strict as assert } from "node:assert";
import fastJsonPatch from "fast-json-patch";
import { mutate, validate, type AdmissionContext } from "../../../src/core/admission.js";
import { A } from "../../../src/core/annotations.js";
import type { Decision } from "../../../src/core/decision.js";
import {
  BACKEND_SERVICE,
  decideIngress,
  maintenanceSpec,
  matchRoute,
  ORIGINAL_SPEC,
  routesOf,
  type Ingress,
  type IngressSpec,
} from "../../../src/core/ingress-switch.js";
import {
  claimManualData,
  DEFAULT_MESSAGE,
  parseFlag,
  turnOffData,
  turnOnData,
  type Route,
} from "../../../src/core/maintenance-flag.js";
import type { AdmissionRequest, Container, Deployment } from "../../../src/core/objects.js";
import { SIDECAR_NAME, SIDECAR_PORT } from "../../../src/core/sidecar-injection.js";
import { admissionReview } from "../../support/fixtures.js";

const NOW = new Date("2026-11-24T10:00:00Z");

describe("maintenance flag", function () {
  it("reads an absent or empty ConfigMap as off with the defaults", function () {
    for (const data of [undefined, {}]) {
      const flag = parseFlag(data);
      assert.equal(flag.enabled, false);
      assert.equal(flag.message, DEFAULT_MESSAGE);
      assert.equal(flag.retryAfter, 30);
      assert.deepEqual(flag.problems, []);
    }
  });

  it("reads what people write, and explains what it cannot read", function () {
    const flag = parseFlag({ enabled: "True", message: " Back at 10:30 ", "retry-after": "120", "page.html": "<p>x</p>" });
    assert.equal(flag.enabled, true);
    assert.equal(flag.message, "Back at 10:30");
    assert.equal(flag.retryAfter, 120);
    assert.equal(flag.pageHtml, "<p>x</p>");
    const bad = parseFlag({ enabled: "yes please", "retry-after": "soon", progress: "{", routes: "[1]" });
    assert.equal(bad.enabled, false);
    assert.equal(bad.retryAfter, 30);
    assert.deepEqual(bad.routes, []);
    assert.equal(bad.progress, undefined);
    assert.equal(bad.problems.length, 4, bad.problems.join("\n"));
    assert.match(bad.problems[0]!, /enabled: "yes please" is not "true" or "false"/);
  });

  it("turns on for an owner, keeping a message the user wrote", function () {
    assert.deepEqual(turnOnData(parseFlag({}), "w-1", "window message", NOW), {
      enabled: "true", owner: "w-1", since: NOW.toISOString(), message: "window message",
    });
    assert.deepEqual(turnOnData(parseFlag({ message: "ours" }), "w-1", "window message", NOW), {
      enabled: "true", owner: "w-1", since: NOW.toISOString(),
    });
    assert.equal(turnOnData(parseFlag({ enabled: "true", owner: "manual" }), "w-1", undefined, NOW), undefined);
  });

  it("never turns off a flag someone else turned on", function () {
    const manual = parseFlag({ enabled: "true", owner: "manual", since: "t0" });
    assert.match(turnOffData(manual, "w-1").refused!, /turned on by manual at t0/);
    const byHandWithoutOwner = parseFlag({ enabled: "true" });
    assert.ok(turnOffData(byHandWithoutOwner, "w-1").refused);
    assert.deepEqual(turnOffData(parseFlag({ enabled: "true", owner: "w-1" }), "w-1").data, {
      enabled: "false", owner: null, since: null, progress: null,
    });
    assert.deepEqual(turnOffData(parseFlag({ enabled: "false" }), "w-1"), {});
  });

  it("records owner manual on a flag turned on by kubectl", function () {
    assert.deepEqual(claimManualData(parseFlag({ enabled: "true" }), NOW), { owner: "manual", since: NOW.toISOString() });
    assert.equal(claimManualData(parseFlag({ enabled: "true", owner: "w-1" }), NOW), undefined);
    assert.equal(claimManualData(parseFlag({ enabled: "false" }), NOW), undefined);
  });
});

function ingress(spec: IngressSpec, annotations: Record<string, string> = { [A.maintenance]: "true" }): Ingress {
  return { metadata: { name: "web", namespace: "shop", annotations }, spec };
}

const SPEC: IngressSpec = {
  ingressClassName: "nginx",
  tls: [{ hosts: ["shop.example"], secretName: "shop-tls" }],
  rules: [
    {
      host: "shop.example",
      http: {
        paths: [
          { path: "/", pathType: "Prefix", backend: { service: { name: "storefront", port: { number: 80 } } } },
          { path: "/api", pathType: "Prefix", backend: { service: { name: "orders", port: { name: "http" } } } },
        ],
      },
    },
  ],
};

/** What the cluster would hold after applying a decision. */
function applied(before: Ingress, change: ReturnType<typeof decideIngress>): Ingress {
  assert.ok(change);
  const annotations = { ...before.metadata!.annotations };
  if (change.originalSpec === undefined) delete annotations[ORIGINAL_SPEC];
  else annotations[ORIGINAL_SPEC] = change.originalSpec;
  return { metadata: { ...before.metadata, annotations }, spec: change.spec };
}

describe("ingress switch", function () {
  it("points every backend at the maintenance Service and keeps hosts, paths, TLS and class", function () {
    const switched = maintenanceSpec(SPEC);
    assert.equal(switched.ingressClassName, "nginx");
    assert.deepEqual(switched.tls, SPEC.tls);
    const paths = switched.rules![0]!.http!.paths;
    assert.deepEqual(paths.map((p) => p.path), ["/", "/api"]);
    for (const p of paths) assert.deepEqual(p.backend, { service: { name: BACKEND_SERVICE, port: { number: 80 } } });
    assert.deepEqual(maintenanceSpec({ tls: [] }).defaultBackend, { service: { name: BACKEND_SERVICE, port: { number: 80 } } });
  });

  it("switches, stays put, and restores the spec exactly", function () {
    const original = ingress(structuredClone(SPEC));
    const on = applied(original, decideIngress(original, true));
    assert.equal(on.metadata!.annotations![ORIGINAL_SPEC], JSON.stringify(SPEC));
    assert.equal(decideIngress(on, true), undefined, "a switched Ingress needs nothing more");
    const off = applied(on, decideIngress(on, false));
    assert.deepEqual(off, original);
    assert.equal(decideIngress(off, false), undefined);
  });

  it("leaves Ingresses without the annotation alone", function () {
    assert.equal(decideIngress(ingress(SPEC, {}), true), undefined);
    assert.equal(decideIngress(ingress(SPEC, { [A.maintenance]: "false" }), true), undefined);
  });

  it("takes in a helm upgrade made during maintenance and restores the new spec", function () {
    const on = applied(ingress(SPEC), decideIngress(ingress(SPEC), true));
    // helm's three-way merge writes the chart's whole new spec back, real backends included.
    const chart: IngressSpec = structuredClone(SPEC);
    chart.rules![0]!.http!.paths[1]!.path = "/api/v2";
    chart.rules![0]!.host = "shop2.example";
    const upgraded: Ingress = { metadata: on.metadata, spec: structuredClone(chart) };
    const again = applied(upgraded, decideIngress(upgraded, true));
    assert.deepEqual(JSON.parse(again.metadata!.annotations![ORIGINAL_SPEC]!), chart);
    assert.deepEqual(again.spec, maintenanceSpec(chart));
    const off = applied(again, decideIngress(again, false));
    assert.deepEqual(off.spec, chart);
  });

  it("takes in a hand edit of the switched spec (kubectl edit of one field)", function () {
    const on = applied(ingress(SPEC), decideIngress(ingress(SPEC), true));
    const edited = structuredClone(on);
    edited.spec!.ingressClassName = "traefik";
    const again = applied(edited, decideIngress(edited, true));
    const restored = applied(again, decideIngress(again, false));
    assert.deepEqual(restored.spec, { ...SPEC, ingressClassName: "traefik" });
  });

  it("restores a switched Ingress whose annotation was removed, and drops an unreadable mark", function () {
    const on = applied(ingress(SPEC), decideIngress(ingress(SPEC), true));
    const optedOut = structuredClone(on);
    delete optedOut.metadata!.annotations![A.maintenance];
    assert.deepEqual(applied(optedOut, decideIngress(optedOut, true)).spec, SPEC);
    const broken = structuredClone(on);
    broken.metadata!.annotations![ORIGINAL_SPEC] = "{not json";
    const fixed = decideIngress(broken, false)!;
    assert.equal(fixed.originalSpec, undefined);
  });

  it("lists the routes behind an Ingress and matches requests as the Ingress API does", function () {
    const routes = routesOf(SPEC, (service, port) => `http://${service}.shop.svc:${port.number ?? 8080}`);
    assert.deepEqual(routes, [
      { host: "shop.example", path: "/", pathType: "Prefix", url: "http://storefront.shop.svc:80" },
      { host: "shop.example", path: "/api", pathType: "Prefix", url: "http://orders.shop.svc:8080" },
    ]);
    const table: Route[] = [
      ...routes,
      { path: "/", pathType: "Prefix", url: "http://default" },
      { host: "*.shop.example", path: "/exact", pathType: "Exact", url: "http://wild" },
    ];
    const cases: Array<[string, string, string | undefined]> = [
      ["shop.example", "/api/orders", "http://orders.shop.svc:8080"],
      ["shop.example:443", "/apix", "http://storefront.shop.svc:80"],
      ["SHOP.example", "/", "http://storefront.shop.svc:80"],
      ["other.example", "/api", "http://default"],
      ["a.shop.example", "/exact", "http://wild"],
      ["a.b.shop.example", "/exact", "http://default"],
      ["a.shop.example", "/exact/more", "http://default"],
    ];
    for (const [host, path, url] of cases) assert.equal(matchRoute(table, host, path)?.url, url, `${host}${path}`);
    assert.equal(matchRoute(routes, "other.example", "/"), undefined);
  });
});

describe("sidecar injection", function () {
  const IMAGE = "registry.example/schema-gate:1.0";
  const ctx = (sidecarImage?: string): AdmissionContext => ({
    gateUsername: "system:serviceaccount:schema-gate:schema-gate",
    excludedNamespaces: new Set(["kube-system"]),
    group: () => ({}),
    deployment: () => undefined,
    ...(sidecarImage ? { sidecarImage } : {}),
  });
  function request(annotations: Record<string, string>): AdmissionRequest {
    const review = admissionReview("deployment-create").request;
    review.object.metadata.annotations = annotations;
    return review;
  }
  const apply = (r: AdmissionRequest, d: Decision): Deployment =>
    d.kind === "patch" ? fastJsonPatch.applyPatch(structuredClone(r.object), structuredClone(d.patch), true, false).newDocument as Deployment : (r.object as Deployment);

  it("adds a native sidecar and its optional volumes to a Deployment that asks, once", function () {
    const r = request({ [A.sidecar]: "8080" });
    const once = apply(r, mutate(r, ctx(IMAGE)));
    const spec = once.spec!.template!.spec as { initContainers: Container[]; volumes: Array<Record<string, unknown>> };
    const sidecar = spec.initContainers[0]!;
    assert.equal(sidecar.name, SIDECAR_NAME);
    assert.equal(sidecar.image, IMAGE);
    assert.equal(sidecar.restartPolicy, "Always");
    assert.ok((sidecar.args as string[]).includes("--upstream=http://127.0.0.1:8080"));
    assert.deepEqual((sidecar.ports as Array<{ containerPort: number }>)[0]!.containerPort, SIDECAR_PORT);
    assert.deepEqual(spec.volumes.map((v) => Object.keys(v).sort()), [["configMap", "name"], ["name", "secret"]]);
    assert.equal((spec.volumes[0]!.configMap as { optional: boolean }).optional, true);
    const again = { ...r, object: once, operation: "UPDATE" as const, oldObject: once };
    assert.deepEqual(mutate(again, ctx(IMAGE)), { kind: "allow" }, "injecting twice changes nothing");
  });

  it("injects nothing without the annotation or without a known image", function () {
    assert.deepEqual(mutate(request({}), ctx(IMAGE)), { kind: "allow" });
    assert.deepEqual(mutate(request({ [A.sidecar]: "8080" }), ctx()), { kind: "allow" });
  });

  it("refuses a sidecar annotation that is not a port, on its own or beside a database", function () {
    const cases: Array<Record<string, string>> = [
      { [A.sidecar]: "http" },
      { [A.sidecar]: String(SIDECAR_PORT) },
      { [A.sidecar]: "70000", [A.database]: "shop" },
    ];
    for (const annotations of cases) {
      const decision = validate(request(annotations), ctx(IMAGE));
      assert.equal(decision.kind, "deny", JSON.stringify(annotations));
      assert.match((decision as { message: string }).message, /schema-gate\.dev\/sidecar: ".*" is not the app's container port/);
    }
    assert.equal(validate(request({ [A.sidecar]: "8080" }), ctx(IMAGE)).kind, "allow");
  });
});
