/**
 * The parts of Kubernetes objects the decision core reads. Structural, so the core needs
 * no Kubernetes client; the adapters pass real API objects, which fit these shapes.
 */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  [key: string]: unknown;
}

export interface Container {
  name: string;
  image?: string;
  [key: string]: unknown;
}

export interface PodTemplate {
  metadata?: ObjectMeta;
  spec?: { containers?: Container[]; [key: string]: unknown };
}

export interface Deployment {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: { replicas?: number; template?: PodTemplate; [key: string]: unknown };
  status?: { [key: string]: unknown };
}

/** autoscaling/v1 Scale, what `kubectl scale` and the HPA send for deployments/scale. */
export interface Scale {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec?: { replicas?: number };
}

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

/** admission.k8s.io/v1 AdmissionRequest */
export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  resource: { group: string; version: string; resource: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation: "CREATE" | "UPDATE" | "DELETE" | "CONNECT";
  userInfo: { username?: string; uid?: string; groups?: string[] };
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
}

/**
 * The least a workload object has, for code that both the webhook (raw JSON) and the
 * controller (client objects) pass objects to.
 */
export interface Workload {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: { replicas?: number; template?: { spec?: { containers?: Array<{ name: string }> } } };
}

export function annotationsOf(object: { metadata?: { annotations?: Record<string, string> } } | undefined): Record<string, string> {
  return object?.metadata?.annotations ?? {};
}

export function containerNames(deployment: Workload | undefined): string[] {
  return (deployment?.spec?.template?.spec?.containers ?? []).map((c) => c.name);
}
