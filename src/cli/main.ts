import { Command } from "commander";
import { readPageServerConfig, readServeConfig, type PageServerFlags, type ServeFlags } from "../config.js";
import { createLogger, type Logger } from "../logger.js";
import { startPageServer } from "../page/page-server.js";
import { serve } from "../serve.js";
import { maintenanceCommand } from "./maintenance.js";
import { operatorCommands } from "./operator.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function buildProgram(): Command {
  const program = new Command("schema-gate")
    .description("Holds opted-in Deployment rollouts and runs exclusive PostgreSQL migrations safely")
    .showHelpAfterError();

  program
    .command("serve")
    .description("run the admission webhook and the window controller (what the in-cluster Deployment runs)")
    .option("--host <address>", "address to listen on", "0.0.0.0")
    .option("--port <port>", "HTTPS port (env SCHEMA_GATE_PORT)", undefined)
    .option("--tls-cert-file <file>", "serving certificate, re-read when it changes")
    .option("--tls-key-file <file>", "serving key, re-read when it changes")
    .option("--kubeconfig <file>", "kubeconfig (default: in-cluster, then KUBECONFIG / ~/.kube/config)")
    .option("--namespace <ns>", "namespace the gate runs in (env POD_NAMESPACE)")
    .option("--service-account <name>", "the gate's ServiceAccount; its requests pass the webhook untouched")
    .option("--exclude-namespace <ns>", "another namespace the webhook leaves alone (repeatable)", collect)
    .option("--namespaces <list>", "the application namespaces the gate's RBAC covers, comma-separated (the chart's rbac.namespaces); opting in elsewhere is refused. Unset: any namespace")
    .option("--webhook-config <name>", "ValidatingWebhookConfiguration whose scale entry the gate maintains", "schema-gate")
    .option("--settle <seconds>", "wait after the first hold so one helm upgrade forms one window")
    .option("--no-controller", "serve the webhooks only; another replica runs the windows")
    .option("--lease-duration <seconds>", "leader election lease; a killed leader is replaced after this long", "15")
    .option("--image <image>", "the gate's image, for the maintenance sidecar and backend (env SCHEMA_GATE_IMAGE; default: read from the gate's Pod)")
    .option("--backend-placement <json>", "nodeSelector and tolerations for the maintenance backend's pod (env SCHEMA_GATE_BACKEND_PLACEMENT)")
    .option("--ingress-propagation <seconds>", "how long Ingress controllers get to follow a switch before pods stop, and the page's pod serves after it is removed", "2")
    .option("--log-level <level>", "pino level (env LOG_LEVEL)")
    .action(async (flags: ServeFlags) => {
      const config = readServeConfig(flags);
      const log = createLogger({ level: config.logLevel });
      stopOnSignal(await serve(config, log), log);
    });

  const pageServer = (name: string, description: string, upstream: boolean) => {
    const command = program
      .command(name)
      .description(description)
      .option("--listen <host:port>", "address to listen on", upstream ? "0.0.0.0:8480" : "0.0.0.0:8080");
    if (upstream) command.requiredOption("--upstream <url>", "the app, e.g. http://127.0.0.1:8080");
    command
      .option("--flag-dir <dir>", "the mounted schema-gate-maintenance ConfigMap", "/etc/schema-gate/maintenance")
      .option("--bypass-file <file>", "the mounted bypass token")
      .option("--log-level <level>", "pino level (env LOG_LEVEL)")
      .action(async (flags: PageServerFlags) => {
        const config = readPageServerConfig(flags);
        const log = createLogger({ level: config.logLevel });
        stopOnSignal(await startPageServer(config, log), log);
      });
  };
  pageServer(
    "sidecar",
    "reverse proxy in front of the app: the maintenance page while the flag is on, the app otherwise (injected by the webhook)",
    true,
  );
  pageServer("page", "the maintenance backend annotated Ingresses are switched to (run by the gate in each namespace)", false);
  for (const command of operatorCommands()) program.addCommand(command);
  program.addCommand(maintenanceCommand());

  return program;
}

function stopOnSignal(running: { stop(): Promise<void> }, log: Logger): void {
  const shutdown = (signal: string) => {
    log.info({ signal }, "shutting down");
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}

await buildProgram().parseAsync(process.argv).catch((error: unknown) => {
  console.error(`schema-gate: ${(error as Error).message}`);
  process.exit(1);
});
