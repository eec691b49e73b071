import { A } from "./annotations.js";
import { FLAG_NAME } from "./maintenance-flag.js";
import type { Container, Deployment } from "./objects.js";

export const SIDECAR_NAME = "schema-gate-sidecar";
/** The port the sidecar listens on; point the Service's targetPort at it (or at its name). */
export const SIDECAR_PORT = 8480;
export const SIDECAR_PORT_NAME = "sg-http";
/** Requests under this path are the sidecar's own (health); everything else is the app's. */
export const SIDECAR_PATH_PREFIX = "/.schema-gate/";
export const BYPASS_SECRET = "schema-gate-maintenance-bypass";
export const BYPASS_KEY = "token";
export const FLAG_MOUNT = "/etc/schema-gate/maintenance";
export const BYPASS_MOUNT = "/etc/schema-gate/bypass";
const FLAG_VOLUME = "schema-gate-maintenance";
const BYPASS_VOLUME = "schema-gate-bypass";

/** Reads `schema-gate.dev/sidecar`: the app's port, or a problem to report. */
export function sidecarPort(annotations: Record<string, string>): { port?: number; problem?: string } {
  const value = annotations[A.sidecar];
  if (value === undefined) return {};
  const port = /^\d{1,5}$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!(port >= 1 && port <= 65535) || port === SIDECAR_PORT) {
    return {
      problem:
        `${A.sidecar}: "${value}" is not the app's container port; give the port the app listens on, e.g. "8080"` +
        (port === SIDECAR_PORT ? ` (${SIDECAR_PORT} is the sidecar's own)` : ""),
    };
  }
  return { port };
}

/**
 * What the sidecar and the maintenance backend's container share: small, unprivileged,
 * read-only, with the flag ConfigMap and the bypass Secret mounted.
 */
export const PAGE_CONTAINER_BASICS = {
  resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "128Mi" } },
  securityContext: {
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  },
  volumeMounts: [
    { name: FLAG_VOLUME, mountPath: FLAG_MOUNT, readOnly: true },
    { name: BYPASS_VOLUME, mountPath: BYPASS_MOUNT, readOnly: true },
  ],
};

/** The pod volumes behind PAGE_CONTAINER_BASICS' mounts; optional, so pods start without them. */
export const PAGE_VOLUMES = [
  { name: FLAG_VOLUME, configMap: { name: FLAG_NAME, optional: true } },
  { name: BYPASS_VOLUME, secret: { secretName: BYPASS_SECRET, optional: true } },
];

/** The native sidecar (an init container that keeps running) the webhook adds. */
export function sidecarContainer(image: string, appPort: number): Container {
  const health = { httpGet: { path: `${SIDECAR_PATH_PREFIX}healthz`, port: SIDECAR_PORT_NAME } };
  return {
    name: SIDECAR_NAME,
    image,
    restartPolicy: "Always",
    args: [
      "sidecar",
      `--listen=0.0.0.0:${SIDECAR_PORT}`,
      `--upstream=http://127.0.0.1:${appPort}`,
      `--flag-dir=${FLAG_MOUNT}`,
      `--bypass-file=${BYPASS_MOUNT}/${BYPASS_KEY}`,
    ],
    ports: [{ name: SIDECAR_PORT_NAME, containerPort: SIDECAR_PORT, protocol: "TCP" }],
    readinessProbe: { ...health, periodSeconds: 5 },
    startupProbe: { ...health, periodSeconds: 1, failureThreshold: 30 },
    ...structuredClone(PAGE_CONTAINER_BASICS),
  };
}

/**
 * The pod template with the sidecar and its volumes in place. Whatever the template had
 * under the sidecar's names is replaced, so injecting twice gives the same template.
 * Both volumes are optional: a namespace with no flag yet starts its pods normally.
 */
export function injectSidecar(template: NonNullable<Deployment["spec"]>["template"], image: string, appPort: number) {
  const result = structuredClone(template ?? {});
  const spec = (result.spec ??= {}) as Record<string, unknown>;
  const init = ((spec.initContainers as Container[] | undefined) ?? []).filter((c) => c.name !== SIDECAR_NAME);
  // First, so the proxy is up before any other init container or the app starts.
  spec.initContainers = [sidecarContainer(image, appPort), ...init];
  const volumes = ((spec.volumes as Array<{ name: string }> | undefined) ?? []).filter(
    (v) => v.name !== FLAG_VOLUME && v.name !== BYPASS_VOLUME,
  );
  spec.volumes = [...volumes, ...structuredClone(PAGE_VOLUMES)];
  return result;
}
