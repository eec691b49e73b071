import * as k8s from "@kubernetes/client-node";

/** Request options that send a patch as a JSON merge patch (RFC 7386). */
export const MERGE_PATCH = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
/** Request options that send a patch as a JSON Patch (RFC 6902). */
export const JSON_PATCH = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch);

/** The label on every object the gate makes, so it finds (and only removes) its own. */
export const MANAGED_BY = { "app.kubernetes.io/managed-by": "schema-gate" } as const;
export const isManaged = (object: { metadata?: { labels?: Record<string, string> } } | undefined) =>
  object?.metadata?.labels?.["app.kubernetes.io/managed-by"] === MANAGED_BY["app.kubernetes.io/managed-by"];

