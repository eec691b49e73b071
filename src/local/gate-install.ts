import { cp, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import YAML from "yaml";
import { run } from "../util/exec.js";
import type { Cluster } from "./cluster.js";
import { GATE_NAMESPACE } from "./gate.js";
import { projectRoot } from "./paths.js";
import type { RealNode } from "./real-node.js";
import { waitForWebhooks } from "./webhook-probe.js";

// The gate installed in-cluster on the real node, the way a user installs it
// (`kubectl apply -k manifests/`), with the locally built image.

/**
 * manifests/ with certificates for the Service (certs/generate.sh), the local image, the
 * real node's placement and `args` appended to the gate's (the last of a repeated flag counts).
 */
export async function gateOverlay(node: RealNode, image: string, args: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "schema-gate-in-cluster-"));
  await cp(join(projectRoot, "manifests"), join(dir, "manifests"), { recursive: true });
  await run("bash", [join(projectRoot, "certs", "generate.sh"), join(dir, "manifests", "tls")]);
  const [name, tag] = [image.slice(0, image.lastIndexOf(":")), image.slice(image.lastIndexOf(":") + 1)];
  await writeFile(join(dir, "kustomization.yaml"), YAML.stringify({
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    resources: ["manifests"],
    images: [{ name: "schema-gate", newName: name, newTag: tag }],
    patches: [
      {
        target: { kind: "Deployment", name: "schema-gate" },
        patch: YAML.stringify([
          ...args.map((value) => ({ op: "add", path: "/spec/template/spec/containers/0/args/-", value })),
          { op: "replace", path: "/spec/template/spec/containers/0/imagePullPolicy", value: "Never" },
          { op: "add", path: "/spec/template/spec/nodeSelector", value: node.placement.nodeSelector },
          { op: "add", path: "/spec/template/spec/tolerations", value: node.placement.tolerations },
        ]),
      },
    ],
  }));
  return dir;
}

/**
 * `kubectl apply -k` of gateOverlay(), then waits for the rollout and for the webhooks to
 * answer through the Service for `admitted.namespace` (see waitForWebhooks): what the
 * caller does next, a release there, goes through them.
 */
export async function installGate(cluster: Cluster, node: RealNode, image: string, args: string[], admitted: { apps: k8s.AppsV1Api; namespace: string }): Promise<void> {
  await cluster.kubectl(["apply", "-k", await gateOverlay(node, image, args)]);
  await cluster.kubectl(["-n", GATE_NAMESPACE, "rollout", "status", "deployment/schema-gate", "--timeout=120s"]);
  await waitForWebhooks(admitted.apps, admitted.namespace);
}

/** Removes the in-cluster gate's pods, Service and budget (its RBAC and webhook configurations stay). */
export async function uninstallGate(cluster: Cluster): Promise<void> {
  await cluster.kubectl(["-n", GATE_NAMESPACE, "delete", "deployment/schema-gate", "service/schema-gate", "pdb/schema-gate", "--ignore-not-found", "--wait"]);
}
