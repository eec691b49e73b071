import type { Container, PodTemplate } from "./objects.js";
import { migrationJobName, type WindowState } from "./window.js";

export const WINDOW_LABEL = "schema-gate.dev/window";
export const GROUP_LABEL = "schema-gate.dev/database";
export const WINDOW_ID_ANNOTATION = "schema-gate.dev/window-id";

/** Keys a Job's pod template may not carry over from a Deployment's. */
const DROPPED_CONTAINER_KEYS = ["livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "ports"] as const;

/**
 * The Job runner's Job: the Deployment's *new* pod template (image, env, envFrom,
 * volumes, serviceAccount) running only the migration command. backoffLimit 0: a
 * migration that fails is not re-run blindly; the user fixes it and sets `retry`.
 */
export function buildMigrationJob(
  deployment: { metadata?: { name?: string; namespace?: string }; spec?: { template?: object } },
  state: Pick<WindowState, "group" | "id" | "attempt" | "version">,
  runner: { command: string[]; container?: string },
  activeDeadlineSeconds: number,
): Record<string, unknown> {
  const template = structuredClone(deployment.spec?.template ?? {}) as PodTemplate;
  const containers = template.spec?.containers ?? [];
  const chosen = runner.container ? containers.find((c) => c.name === runner.container) : containers[0];
  if (!chosen) throw new Error(`deployment ${deployment.metadata?.name} has no container to run the migration in`);
  const container: Container = { ...chosen, command: runner.command };
  delete container.args;
  for (const key of DROPPED_CONTAINER_KEYS) delete container[key];
  const spec = { ...(template.spec ?? {}) } as Record<string, unknown>;
  // Native sidecars (the maintenance sidecar among them) would keep the Job's pod alive.
  const initContainers = (spec.initContainers as Array<{ restartPolicy?: string }> | undefined)?.filter(
    (c) => c.restartPolicy !== "Always",
  );
  const name = migrationJobName(state);
  // A window id grows with the group name past a label value's 63 characters; the Job's
  // own name (bounded, unique per window and attempt) labels it, the id goes in an annotation.
  const labels = { [GROUP_LABEL]: state.group, [WINDOW_LABEL]: name };
  // The pod keeps the template's labels and annotations: NetworkPolicies that let the app
  // reach its database, Vault or CSI injection and mesh settings apply to its migration too.
  const podLabels = { ...(template.metadata?.labels ?? {}) };
  delete podLabels["pod-template-hash"];
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: deployment.metadata?.namespace,
      labels,
      annotations: { "schema-gate.dev/schema-version": state.version, [WINDOW_ID_ANNOTATION]: state.id },
    },
    spec: {
      backoffLimit: 0,
      activeDeadlineSeconds: Math.max(1, Math.floor(activeDeadlineSeconds)),
      ttlSecondsAfterFinished: 7 * 24 * 3600,
      template: {
        metadata: {
          labels: { ...podLabels, ...labels },
          ...(template.metadata?.annotations ? { annotations: { ...template.metadata.annotations } } : {}),
        },
        spec: {
          ...spec,
          ...(initContainers && initContainers.length > 0 ? { initContainers } : { initContainers: undefined }),
          containers: [container],
          restartPolicy: "Never",
        },
      },
    },
  };
}
