import { join } from "node:path";
import { gateImageOnNode, nodeAppImageOnNode } from "../../src/local/app-image.js";
import type { LocalImage } from "../../src/local/images.js";
import { projectRoot } from "../../src/local/paths.js";
import type { RealNode } from "../../src/local/real-node.js";
import type { TestEnv } from "./env.js";

/**
 * The cluster's real node. A suite that needs one fails (never skips) when there is none,
 * with the reason: what the machine lacks and how to install it.
 */
export function requireRealNode(env: TestEnv): RealNode {
  if (env.cluster.realNode) return env.cluster.realNode;
  throw new Error(`this suite needs the local cluster's real node, and there is none: ${env.cluster.realNodeProblem ?? "unknown reason"}`);
}

/** A Node.js app of test/support/<app>/server.mjs as an image, imported into the node once per run. */
export const nodeAppImage = (node: RealNode, app: string, repository: string): Promise<LocalImage> =>
  nodeAppImageOnNode(node, join(projectRoot, "test", "support", app, "server.mjs"), repository);

export { gateImageOnNode };

/** test/support/real-node-app as an image. */
export const testAppImage = (node: RealNode) => nodeAppImage(node, "real-node-app", "localhost/schema-gate-test-app");

/** postgres:// URL of the test database as a pod on the real node reaches it (the bridge address). */
export function podDatabaseUrl(env: TestEnv, node: RealNode): string {
  const { user, password, port, database } = env.postgres;
  return `postgres://${user}:${password}@${node.hostAddress}:${port}/${database}`;
}
