import type * as k8s from "@kubernetes/client-node";

// haproxy.cfg for the local Ingress controller (src/local/ingress-controller.ts): the
// Ingresses of its class as HAProxy rules, each backend Service's ready endpoints as
// servers. Pure: what the cluster holds in, the file's text out.

/** The IngressClass the local controller serves, and its controller name. */
export const INGRESS_CLASS = "haproxy";
export const INGRESS_CONTROLLER = "schema-gate.dev/local-haproxy";
const LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class";

export interface ClusterView {
  ingresses: readonly k8s.V1Ingress[];
  services: readonly k8s.V1Service[];
  endpointSlices: readonly k8s.V1EndpointSlice[];
}

export interface ConfigOptions {
  /** Where HAProxy listens for HTTP, e.g. 127.0.0.1:8080. */
  bind: string;
  /** The runtime API's socket (the master passes the listeners over it on a reload). */
  statsSocket: string;
}

/**
 * Whether the controller serves an Ingress: its class is ours (by `ingressClassName`, or
 * the older annotation). An Ingress without a class is left to others: this controller is
 * not the cluster's default.
 */
export function ours(ingress: k8s.V1Ingress): boolean {
  const name = ingress.spec?.ingressClassName ?? ingress.metadata?.annotations?.[LEGACY_CLASS_ANNOTATION];
  return name === INGRESS_CLASS;
}

interface Rule {
  host: string | undefined;
  path: string;
  pathType: "Exact" | "Prefix";
  backend: string;
}

interface Backend {
  name: string;
  servers: string[];
}

type IngressBackend = k8s.V1IngressBackend | undefined;

/** The ready addresses (ip:port) behind a Service port, as its EndpointSlices list them. */
function serverAddresses(view: ClusterView, namespace: string, backend: k8s.V1IngressServiceBackend): string[] {
  const service = view.services.find((s) => s.metadata?.namespace === namespace && s.metadata?.name === backend.name);
  const port = service?.spec?.ports?.find((p) =>
    backend.port?.name !== undefined ? p.name === backend.port.name : p.port === backend.port?.number);
  if (!port) return [];
  const addresses = new Set<string>();
  for (const slice of view.endpointSlices) {
    if (slice.metadata?.namespace !== namespace || slice.metadata?.labels?.["kubernetes.io/service-name"] !== backend.name) continue;
    if (slice.addressType !== "IPv4") continue;
    const number = slice.ports?.find((p) => (p.name ?? "") === (port.name ?? ""))?.port;
    if (number === undefined) continue;
    for (const endpoint of slice.endpoints) {
      // Ready unset counts as ready (the API's rule); terminating endpoints are not ready.
      if (endpoint.conditions?.ready === false) continue;
      for (const ip of endpoint.addresses) addresses.add(`${ip}:${number}`);
    }
  }
  return [...addresses].sort();
}

/** The backends and rules of every Ingress of ours, in HAProxy's terms. */
function collect(view: ClusterView): { backends: Map<string, Backend>; rules: Rule[]; defaultBackend?: string } {
  const backends = new Map<string, Backend>();
  const rules: Rule[] = [];
  let defaultBackend: string | undefined;
  const backendOf = (namespace: string, backend: IngressBackend): string | undefined => {
    const service = backend?.service;
    if (!service) return undefined;
    const name = `${namespace}_${service.name}_${service.port?.name ?? service.port?.number ?? ""}`.replace(/[^A-Za-z0-9_.-]/g, "-");
    if (!backends.has(name)) backends.set(name, { name, servers: serverAddresses(view, namespace, service) });
    return name;
  };
  const sorted = [...view.ingresses].filter(ours).sort((a, b) =>
    `${a.metadata?.namespace}/${a.metadata?.name}`.localeCompare(`${b.metadata?.namespace}/${b.metadata?.name}`));
  for (const ingress of sorted) {
    const namespace = ingress.metadata?.namespace ?? "default";
    // The first Ingress (by namespace and name) with a default backend provides it.
    defaultBackend ??= backendOf(namespace, ingress.spec?.defaultBackend);
    for (const rule of ingress.spec?.rules ?? []) {
      for (const path of rule.http?.paths ?? []) {
        const backend = backendOf(namespace, path.backend);
        // ImplementationSpecific is served as Prefix.
        const pathType = path.pathType === "Exact" ? "Exact" : "Prefix";
        if (backend) rules.push({ host: rule.host?.toLowerCase(), path: path.path ?? "/", pathType, backend });
      }
    }
  }
  return { backends, rules, ...(defaultBackend ? { defaultBackend } : {}) };
}

/**
 * The order the Ingress API's matching asks for, as HAProxy takes the first `use_backend`
 * that matches: exact hosts, then wildcards, then rules without a host; within them the
 * longest path first, Exact before Prefix at the same length.
 */
function precedence(a: Rule, b: Rule): number {
  const rank = (r: Rule) => (r.host === undefined ? 2 : r.host.startsWith("*.") ? 1 : 0);
  return rank(a) - rank(b) || b.path.length - a.path.length || Number(b.pathType === "Exact") - Number(a.pathType === "Exact");
}

const quote = (text: string) => `'${text.replace(/'/g, "")}'`;

function hostCondition(host: string | undefined): string {
  if (host === undefined) return "";
  // A wildcard covers exactly one label.
  if (host.startsWith("*.")) return `{ var(txn.host) -m reg ${quote(`^[^.]+${host.slice(1).replace(/\./g, "\\.")}$`)} } `;
  return `{ var(txn.host) -m str ${quote(host)} } `;
}

/** `use_backend` for one rule: Prefix matches whole path elements (/api matches /api and /api/x, not /apix). */
function useBackend(rule: Rule): string {
  const host = hostCondition(rule.host);
  if (rule.pathType === "Exact") return `    use_backend ${rule.backend} if ${host}{ path -m str ${quote(rule.path)} }`;
  const prefix = rule.path.replace(/\/+$/, "");
  if (prefix === "") return host ? `    use_backend ${rule.backend} if ${host.trimEnd()}` : `    use_backend ${rule.backend}`;
  return `    use_backend ${rule.backend} if ${host}{ path -m str ${quote(prefix)} } || ${host}{ path -m beg ${quote(`${prefix}/`)} }`;
}

/** The whole haproxy.cfg. */
export function renderHaproxyConfig(view: ClusterView, options: ConfigOptions): string {
  const { backends, rules, defaultBackend } = collect(view);
  const lines = [
    "global",
    `    stats socket ${options.statsSocket} mode 600 level admin expose-fd listeners`,
    "    nbthread 1",
    // Each request's line goes to HAProxy's stdout, that is haproxy.log in the node's directory.
    "    log stdout format raw local0",
    "",
    "defaults",
    "    mode http",
    "    log global",
    "    option httplog",
    "    timeout connect 1s",
    "    timeout client 30s",
    "    timeout server 30s",
    "    timeout queue 5s",
    // A pod that went away (refused, reset, closed without an answer) gets the request
    // again on another server, never the client a 502.
    "    retries 3",
    "    option redispatch 1",
    "    retry-on conn-failure empty-response",
    "    default-server inter 1s fall 1 rise 1 check",
    "",
    "frontend http",
    `    bind ${options.bind}`,
    "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
    ...[...rules].sort(precedence).map(useBackend),
    `    default_backend ${defaultBackend ?? "no-route"}`,
    "",
    "backend no-route",
    "    http-request return status 404 content-type text/plain string \"no Ingress rule matches this host and path\\n\"",
  ];
  for (const backend of backends.values()) {
    // No ready endpoint: HAProxy itself answers 503.
    lines.push("", `backend ${backend.name}`, ...backend.servers.map((address, i) => `    server s${i} ${address}`));
  }
  return `${lines.join("\n")}\n`;
}
