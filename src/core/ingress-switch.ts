import fastJsonPatch from "fast-json-patch";
import { A } from "./annotations.js";
import type { Route } from "./maintenance-flag.js";

const { applyPatch, compare } = fastJsonPatch;

/** Where a switched Ingress keeps the spec it had, as the exact JSON it was read as. */
export const ORIGINAL_SPEC = "schema-gate.dev/original-spec";

/** The Service every backend of a switched Ingress points at, in the Ingress's namespace. */
export const BACKEND_SERVICE = "schema-gate-maintenance";
export const BACKEND_PORT = 80;

interface Backend {
  service?: { name: string; port?: { number?: number; name?: string } };
  resource?: unknown;
}
interface Path {
  path?: string;
  pathType: string;
  backend: Backend;
}
export interface IngressSpec {
  defaultBackend?: Backend;
  rules?: Array<{ host?: string; http?: { paths: Path[] } }>;
  ingressClassName?: string;
  tls?: unknown[];
}
export interface Ingress {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string>; resourceVersion?: string };
  spec?: IngressSpec;
}

/** Whether the user asked for this Ingress to be switched during maintenance. */
export const switchable = (ingress: Ingress): boolean => ingress.metadata?.annotations?.[A.maintenance] === "true";

export const isSwitched = (ingress: Ingress): boolean => ingress.metadata?.annotations?.[ORIGINAL_SPEC] !== undefined;

const maintenanceBackend = (): Backend => ({ service: { name: BACKEND_SERVICE, port: { number: BACKEND_PORT } } });

/**
 * The spec a switched Ingress has: the same hosts, paths, TLS and class (so the same
 * controller keeps serving the same addresses), every backend the maintenance Service.
 */
export function maintenanceSpec(spec: IngressSpec): IngressSpec {
  const result = structuredClone(spec);
  if (result.defaultBackend) result.defaultBackend = maintenanceBackend();
  for (const rule of result.rules ?? []) {
    for (const path of rule.http?.paths ?? []) path.backend = maintenanceBackend();
  }
  // An Ingress with only TLS or only hosts still needs somewhere to send traffic.
  if (!result.defaultBackend && !(result.rules ?? []).some((r) => r.http?.paths.length)) {
    result.defaultBackend = maintenanceBackend();
  }
  return result;
}

/** What an Ingress should look like: its spec and the two annotations the switch owns. */
export interface IngressChange {
  spec: IngressSpec;
  /** Undefined removes the annotation. */
  originalSpec: string | undefined;
}

/**
 * The Ingress with a change made: its spec and the kept-spec annotation, everything else
 * (resourceVersion included) as it was. The controller writes this; the webhook answers
 * with the difference to it.
 */
export function applyIngressChange<T extends Ingress>(ingress: T, change: IngressChange): T {
  const annotations = { ...(ingress.metadata?.annotations ?? {}) };
  if (change.originalSpec === undefined) delete annotations[ORIGINAL_SPEC];
  else annotations[ORIGINAL_SPEC] = change.originalSpec;
  return { ...ingress, metadata: { ...ingress.metadata, annotations }, spec: change.spec } as T;
}

/**
 * Decides one Ingress for a namespace whose maintenance is `on`: switch it, keep it
 * switched (taking in any change made meanwhile, e.g. by `helm upgrade`), restore it, or
 * nothing (undefined).
 */
export function decideIngress(ingress: Ingress, on: boolean): IngressChange | undefined {
  const spec = ingress.spec ?? {};
  const stored = ingress.metadata?.annotations?.[ORIGINAL_SPEC];
  if (stored === undefined) {
    if (!on || !switchable(ingress)) return undefined;
    return { spec: maintenanceSpec(spec), originalSpec: JSON.stringify(spec) };
  }
  const original = parseStored(stored);
  if (!on || !switchable(ingress)) {
    // Unreadable (edited by hand): the live spec is the best there is; just drop the mark.
    return { spec: original ?? spec, originalSpec: undefined };
  }
  if (!original) return { spec: maintenanceSpec(spec), originalSpec: JSON.stringify(spec) };
  const expected = maintenanceSpec(original);
  if (compare(expected, spec).length === 0) return undefined;
  const updated = takeInChanges(original, expected, spec);
  return { spec: maintenanceSpec(updated), originalSpec: JSON.stringify(updated) };
}

function parseStored(text: string): IngressSpec | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as IngressSpec) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Someone changed a switched Ingress. What they changed is the difference between the
 * maintenance spec we wrote and what is there now; applied to the original, it gives the
 * spec they meant. A `helm upgrade` (three-way merge) writes the chart's whole spec back,
 * backends included, so then the result is simply the chart's new spec.
 */
function takeInChanges(original: IngressSpec, written: IngressSpec, live: IngressSpec): IngressSpec {
  const operations = compare(written, live);
  try {
    return applyPatch(structuredClone(original), operations, false, false).newDocument;
  } catch {
    return live;
  }
}

/**
 * The routes behind a switched Ingress, for the bypass token: which URL a request for a
 * host and path would have reached. `url` names a backend Service's address.
 */
export function routesOf(spec: IngressSpec, url: (service: string, port: { number?: number; name?: string }) => string | undefined): Route[] {
  const routes: Route[] = [];
  const add = (backend: Backend | undefined, route: Omit<Route, "url">) => {
    const service = backend?.service;
    const target = service ? url(service.name, service.port ?? {}) : undefined;
    if (target) routes.push({ ...route, url: target });
  };
  for (const rule of spec.rules ?? []) {
    for (const path of rule.http?.paths ?? []) {
      add(path.backend, {
        ...(rule.host ? { host: rule.host } : {}),
        path: path.path ?? "/",
        pathType: (path.pathType as Route["pathType"]) ?? "Prefix",
      });
    }
  }
  add(spec.defaultBackend, { path: "/", pathType: "Prefix" });
  return routes;
}

/**
 * The route a request takes: host must match (a `*.` wildcard covers one label), then the
 * longest matching path, Exact before Prefix, as the Ingress API defines matching.
 */
export function matchRoute(routes: readonly Route[], host: string, path: string): Route | undefined {
  const hostname = host.replace(/:\d+$/, "").toLowerCase();
  const hostMatches = (pattern: string | undefined) => {
    if (!pattern) return true;
    const p = pattern.toLowerCase();
    if (p.startsWith("*.")) {
      const label = hostname.slice(0, -p.length + 1);
      return hostname.endsWith(p.slice(1)) && label !== "" && !label.includes(".");
    }
    return p === hostname;
  };
  const pathMatches = (route: Route) => {
    if (route.pathType === "Exact") return path === route.path;
    const prefix = route.path.replace(/\/+$/, "");
    return prefix === "" || path === prefix || path.startsWith(`${prefix}/`);
  };
  const candidates = routes.filter((r) => hostMatches(r.host) && pathMatches(r));
  // Rules naming a host win over the default backend; then longer and exact paths.
  candidates.sort(
    (a, b) =>
      Number(Boolean(b.host)) - Number(Boolean(a.host)) ||
      b.path.length - a.path.length ||
      Number(b.pathType === "Exact") - Number(a.pathType === "Exact"),
  );
  return candidates[0];
}
