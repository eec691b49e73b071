import { join } from "node:path";
import { gateImage } from "../../src/local/gate-image.js";
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

const appImages = new Map<string, Promise<LocalImage>>();

/**
 * A Node.js app of test/support/<app>/server.mjs as an image (the host's node, the app,
 * `pg`), imported into the node once per run.
 */
export function nodeAppImage(node: RealNode, app: string, repository: string): Promise<LocalImage> {
  let image = appImages.get(app);
  if (!image) {
    image = (async () => {
      const built = await nodeImage({
        repository,
        files: { [join(projectRoot, "test", "support", app, "server.mjs")]: "server.mjs" },
        packages: ["pg"],
        args: ["/app/server.mjs"],
      });
      await node.importImage(built);
      return built;
    })();
    appImages.set(app, image);
  }
  return image;
}

let gate: Promise<LocalImage> | undefined;

/** The gate's own image, built when src/ changed and imported into the node once per run. */
export function gateImageOnNode(node: RealNode): Promise<LocalImage> {
  gate ??= (async () => {
    const image = await gateImage();
    await node.importImage(image);
    return image;
  })();
  return gate;
}

/** test/support/real-node-app as an image. */
export const testAppImage = (node: RealNode) => nodeAppImage(node, "real-node-app", "localhost/schema-gate-test-app");

/** postgres:// URL of the test database as a pod on the real node reaches it (the bridge address). */
export function podDatabaseUrl(env: TestEnv, node: RealNode): string {
  const { user, password, port, database } = env.postgres;
  return `postgres://${user}:${password}@${node.hostAddress}:${port}/${database}`;
}
