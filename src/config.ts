import { hostname } from "node:os";

/** Settings of `schema-gate serve`, read once from flags and the environment. */
export interface ServeConfig {
  host: string;
  port: number;
  tlsCertFile: string;
  tlsKeyFile: string;
  /** Kubeconfig file; empty for in-cluster config or the default loading rules. */
  kubeconfig?: string;
  /** Namespace the gate runs in (excluded from admission). */
  namespace: string;
  serviceAccount: string;
  excludedNamespaces: string[];
  /** `--namespaces`: where the gate's RBAC lets it act; unset, any namespace. */
  actsIn?: string[];
  logLevel: string;
  /** Seconds to wait after the first hold so every Deployment of one helm upgrade joins the window. */
  settleSeconds: number;
  /** The ValidatingWebhookConfiguration whose scale entry the gate keeps current. */
  webhookConfigName: string;
  /** Run the window controller (leader-elected); off leaves a webhook-only replica. */
  controller: boolean;
  /** Lease duration for leader election: how long a killed leader blocks its successor. */
  leaseDurationSeconds: number;
  /** This replica's name in the Lease (the pod name in a cluster). */
  identity: string;
  /**
   * The gate's own image, which the maintenance sidecar and backend run. Unset, the gate
   * reads it from its own Pod (`podName`); without either, neither is offered.
   */
  image?: string;
  podName?: string;
  /** Where the maintenance backend's pod may run: nodeSelector and tolerations of its pod spec. */
  backendPlacement: BackendPlacement;
  /**
   * How long Ingress controllers get to follow a switch: a window stops no pod until this
   * long after its Ingresses point at the page, and the page's pod serves this long after
   * it is asked to go.
   */
  ingressPropagationSeconds: number;
}

export interface BackendPlacement {
  nodeSelector?: Record<string, string>;
  tolerations?: Array<Record<string, unknown>>;
}

export interface ServeFlags {
  host?: string;
  port?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  kubeconfig?: string;
  namespace?: string;
  serviceAccount?: string;
  excludeNamespace?: string[];
  namespaces?: string;
  logLevel?: string;
  settle?: string;
  webhookConfig?: string;
  controller?: boolean;
  leaseDuration?: string;
  image?: string;
  backendPlacement?: string;
  ingressPropagation?: string;
}

function positiveNumber(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name}: "${text}" is not a non-negative number`);
  return value;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** `--namespaces a,b`: a comma-separated list of namespace names ("" is none). */
function namespaceList(text: string): string[] {
  const names = text.split(",").map((n) => n.trim()).filter(Boolean);
  const bad = names.filter((n) => !DNS_LABEL.test(n));
  if (bad.length) throw new Error(`--namespaces: ${bad.map((n) => `"${n}"`).join(", ")} is not a namespace name (lower-case letters, digits and "-")`);
  return [...new Set(names)];
}

export function readServeConfig(flags: ServeFlags, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const namespace = flags.namespace ?? env.POD_NAMESPACE ?? "schema-gate";
  const port = positiveNumber("port", flags.port ?? env.SCHEMA_GATE_PORT ?? "8443");
  return {
    host: flags.host ?? "0.0.0.0",
    port,
    tlsCertFile: flags.tlsCertFile ?? "/etc/schema-gate/tls/tls.crt",
    tlsKeyFile: flags.tlsKeyFile ?? "/etc/schema-gate/tls/tls.key",
    ...(flags.kubeconfig ?? env.KUBECONFIG ? { kubeconfig: flags.kubeconfig ?? env.KUBECONFIG } : {}),
    namespace,
    serviceAccount: flags.serviceAccount ?? env.SCHEMA_GATE_SERVICE_ACCOUNT ?? "schema-gate",
    excludedNamespaces: [...new Set(["kube-system", namespace, ...(flags.excludeNamespace ?? [])])],
    ...(flags.namespaces !== undefined ? { actsIn: namespaceList(flags.namespaces) } : {}),
    logLevel: flags.logLevel ?? env.LOG_LEVEL ?? "info",
    settleSeconds: positiveNumber("settle", flags.settle ?? "3"),
    webhookConfigName: flags.webhookConfig ?? "schema-gate",
    controller: flags.controller ?? true,
    leaseDurationSeconds: Math.max(1, positiveNumber("lease-duration", flags.leaseDuration ?? "15")),
    identity: `${env.HOSTNAME ?? hostname()}_${process.pid}`,
    ...(flags.image ?? env.SCHEMA_GATE_IMAGE ? { image: flags.image ?? env.SCHEMA_GATE_IMAGE } : {}),
    ...(env.POD_NAME ? { podName: env.POD_NAME } : {}),
    backendPlacement: readBackendPlacement(flags.backendPlacement ?? env.SCHEMA_GATE_BACKEND_PLACEMENT),
    ingressPropagationSeconds: positiveNumber("ingress-propagation", flags.ingressPropagation ?? "2"),
  };
}

const PLACEMENT_EXAMPLE = `e.g. '{"nodeSelector":{"pool":"web"},"tolerations":[{"key":"pool","operator":"Equal","value":"web","effect":"NoSchedule"}]}'`;

/** `--backend-placement`: JSON with nodeSelector (string values) and tolerations (objects), nothing else. */
export function readBackendPlacement(text: string | undefined): BackendPlacement {
  if (text === undefined || text.trim() === "") return {};
  const problem = (what: string) => new Error(`--backend-placement: ${what}; give JSON with nodeSelector and/or tolerations, ${PLACEMENT_EXAMPLE}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw problem(`"${text}" is not JSON`);
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObject(value)) throw problem("not a JSON object");
  const unknown = Object.keys(value).filter((k) => k !== "nodeSelector" && k !== "tolerations");
  if (unknown.length > 0) throw problem(`unknown key ${unknown.map((k) => `"${k}"`).join(", ")}`);
  const { nodeSelector, tolerations } = value;
  if (nodeSelector !== undefined && !(isObject(nodeSelector) && Object.values(nodeSelector).every((v) => typeof v === "string"))) {
    throw problem("nodeSelector must map label keys to string values");
  }
  if (tolerations !== undefined && !(Array.isArray(tolerations) && tolerations.every(isObject))) {
    throw problem("tolerations must be a list of tolerations (objects)");
  }
  return {
    ...(nodeSelector ? { nodeSelector: nodeSelector as Record<string, string> } : {}),
    ...(tolerations ? { tolerations: tolerations as Array<Record<string, unknown>> } : {}),
  };
}

/** Settings of `schema-gate sidecar` and `schema-gate page`. */
export interface PageServerConfig {
  host: string;
  port: number;
  /** The app behind the sidecar; unset for the maintenance backend. */
  upstream?: URL;
  flagDir: string;
  bypassFile?: string;
  logLevel: string;
}

export interface PageServerFlags {
  listen?: string;
  upstream?: string;
  flagDir?: string;
  bypassFile?: string;
  logLevel?: string;
}

export function readPageServerConfig(flags: PageServerFlags, env: NodeJS.ProcessEnv = process.env): PageServerConfig {
  const listen = flags.listen ?? "0.0.0.0:8480";
  const match = /^(.*):(\d{1,5})$/.exec(listen);
  if (!match) throw new Error(`--listen: "${listen}" is not host:port, e.g. 0.0.0.0:8480`);
  let upstream: URL | undefined;
  if (flags.upstream !== undefined) {
    try {
      upstream = new URL(flags.upstream);
    } catch {
      throw new Error(`--upstream: "${flags.upstream}" is not a URL, e.g. http://127.0.0.1:8080`);
    }
    if (upstream.protocol !== "http:") throw new Error(`--upstream: only http:// is supported (the app is on the pod's loopback)`);
  }
  return {
    host: match[1] || "0.0.0.0",
    port: Number(match[2]),
    ...(upstream ? { upstream } : {}),
    flagDir: flags.flagDir ?? "/etc/schema-gate/maintenance",
    ...(flags.bypassFile ? { bypassFile: flags.bypassFile } : {}),
    logLevel: flags.logLevel ?? env.LOG_LEVEL ?? "info",
  };
}
