import { join } from "node:path";
import { nodeImage, type LocalImage } from "../../src/local/images.js";
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

let appImage: Promise<LocalImage> | undefined;

/** test/support/real-node-app as an image (the host's node, the app, `pg`), imported into the node once per run. */
export function testAppImage(node: RealNode): Promise<LocalImage> {
  appImage ??= (async () => {
    const image = await nodeImage({
      repository: "localhost/schema-gate-test-app",
      files: { [join(projectRoot, "test", "support", "real-node-app", "server.mjs")]: "server.mjs" },
      packages: ["pg"],
      args: ["/app/server.mjs"],
    });
    await node.importImage(image);
    return image;
  })();
  return appImage;
}

/** postgres:// URL of the test database as a pod on the real node reaches it (the bridge address). */
export function podDatabaseUrl(env: TestEnv, node: RealNode): string {
  const { user, password, port, database } = env.postgres;
  return `postgres://${user}:${password}@${node.hostAddress}:${port}/${database}`;
}
