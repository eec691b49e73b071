import * as k8s from "@kubernetes/client-node";
import { apiErrorMessage } from "../k8s/errors.js";
import { pollUntil } from "../util/wait.js";

/**
 * Waits until the apiserver calls schema-gate's webhooks for `namespace` and gets their
 * answer: a server-side dry run of a Deployment with an invalid database annotation, which
 * only the gate's validation denies. Ready gate pods are not yet enough when the webhooks
 * call a Service: until kube-proxy's next sync the ClusterIP refuses connections.
 */
export async function waitForWebhooks(apps: k8s.AppsV1Api, namespace: string): Promise<void> {
  await pollUntil(
    async () => {
      try {
        await apps.createNamespacedDeployment({
          namespace,
          dryRun: "All",
          body: {
            metadata: { name: "webhook-probe", annotations: { "schema-gate.dev/database": "Not_Valid" } },
            spec: {
              selector: { matchLabels: { app: "probe" } },
              template: { metadata: { labels: { app: "probe" } }, spec: { containers: [{ name: "a", image: "probe" }] } },
            },
          },
        });
        return undefined;
      } catch (error) {
        const message = apiErrorMessage(error);
        if (/schema-gate\.dev\/database: "Not_Valid"/.test(message)) return true;
        throw new Error(message);
      }
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "the apiserver to call schema-gate's webhooks" },
  );
}
