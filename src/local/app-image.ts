import { join } from "node:path";
import { gateImage } from "./gate-image.js";
import { nodeImage, type LocalImage } from "./images.js";
import { projectRoot } from "./paths.js";
import type { RealNode } from "./real-node.js";

// Images built here and imported into the real node's containerd, once per process.

const imported = new Map<string, Promise<LocalImage>>();

function once(key: string, make: () => Promise<LocalImage>): Promise<LocalImage> {
  let image = imported.get(key);
  if (!image) {
    image = make();
    imported.set(key, image);
    image.catch(() => imported.delete(key));
  }
  return image;
}

/** A Node.js app (one file, `server`) as an image: the host's node, the app, `pg`; imported into the node. */
export function nodeAppImageOnNode(node: RealNode, server: string, repository: string): Promise<LocalImage> {
  return once(repository, async () => {
    const built = await nodeImage({ repository, files: { [server]: "server.mjs" }, packages: ["pg"], args: ["/app/server.mjs"] });
    await node.importImage(built);
    return built;
  });
}

/** The gate's own image, built when src/ changed and imported into the node. */
export function gateImageOnNode(node: RealNode): Promise<LocalImage> {
  return once("schema-gate", async () => {
    const image = await gateImage();
    await node.importImage(image);
    return image;
  });
}

/** examples/shop-app (the shop's sample application, one image for every service) as an image. */
export const shopAppImage = (node: RealNode) =>
  nodeAppImageOnNode(node, join(projectRoot, "examples", "shop-app", "server.mjs"), "localhost/schema-gate-shop-app");

/** The shop chart's values that run its services as real pods on the real node. */
export function realShopValues(node: RealNode, appImage: string, version: string, sql: Record<string, string>): Record<string, unknown> {
  return {
    schemaVersion: version,
    sql,
    appImage,
    expose: true,
    pod: { ...node.placement, imagePullPolicy: "Never", versionEnv: true, httpPort: 8080, readinessPath: "/healthz" },
  };
}
