import * as k8s from "@kubernetes/client-node";

/** Request options that send a patch as a JSON merge patch (RFC 7386). */
export const MERGE_PATCH = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);

/** The label on every object the gate makes, so it finds (and only removes) its own. */
export const MANAGED_BY = { "app.kubernetes.io/managed-by": "schema-gate" } as const;
export const isManaged = (object: { metadata?: { labels?: Record<string, string> } } | undefined) =>
  object?.metadata?.labels?.["app.kubernetes.io/managed-by"] === MANAGED_BY["app.kubernetes.io/managed-by"];

/** The labels of a window record ConfigMap, and the selector that lists them. */
export const WINDOW_RECORD_LABELS = { ...MANAGED_BY, "schema-gate.dev/record": "window" } as const;
export const WINDOW_SELECTOR = Object.entries(WINDOW_RECORD_LABELS).map(([k, v]) => `${k}=${v}`).join(",");
