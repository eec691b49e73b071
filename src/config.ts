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
  logLevel?: string;
  settle?: string;
  webhookConfig?: string;
  controller?: boolean;
  leaseDuration?: string;
}

function positiveNumber(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name}: "${text}" is not a non-negative number`);
  return value;
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
    logLevel: flags.logLevel ?? env.LOG_LEVEL ?? "info",
    settleSeconds: positiveNumber("settle", flags.settle ?? "3"),
    webhookConfigName: flags.webhookConfig ?? "schema-gate",
    controller: flags.controller ?? true,
    leaseDurationSeconds: Math.max(1, positiveNumber("lease-duration", flags.leaseDuration ?? "15")),
    identity: `${env.HOSTNAME ?? hostname()}_${process.pid}`,
  };
}
