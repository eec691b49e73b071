import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { PageServerConfig } from "../config.js";
import { matchRoute } from "../core/ingress-switch.js";
import type { Logger } from "../logger.js";
import { watchMountedFlag } from "./mounted-flag.js";
import { createMaintenanceServer } from "./server.js";

export interface RunningPageServer {
  port: number;
  stop(): Promise<void>;
}

/**
 * `schema-gate sidecar` (an upstream: proxy unless maintenance is on) and `schema-gate page`
 * (no upstream: the maintenance backend, always the page; the bypass token follows the
 * routes the gate recorded from the switched Ingresses).
 */
export async function startPageServer(config: PageServerConfig, log: Logger): Promise<RunningPageServer> {
  const flag = await watchMountedFlag(config.flagDir, config.bypassFile, log);
  const server: Server = createMaintenanceServer({
    flag: flag.current,
    bypassToken: flag.bypassToken,
    pageAlways: config.upstream === undefined,
    upstream: (request) => {
      if (config.upstream) return config.upstream;
      const route = matchRoute(flag.current().routes, request.headers.host ?? "", new URL(request.url ?? "/", "http://x").pathname);
      return route ? new URL(route.url) : undefined;
    },
    log,
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, upstream: config.upstream?.href, flagDir: config.flagDir }, config.upstream ? "sidecar serving" : "maintenance page serving");
  return {
    port,
    stop: async () => {
      flag.stop();
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
