import { Command } from "commander";
import { readServeConfig, type ServeFlags } from "../config.js";
import { createLogger } from "../logger.js";
import { serve } from "../serve.js";

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
    .option("--webhook-config <name>", "ValidatingWebhookConfiguration whose scale entry the gate maintains", "schema-gate")
    .option("--settle <seconds>", "wait after the first hold so one helm upgrade forms one window")
    .option("--no-controller", "serve the webhooks only; another replica runs the windows")
    .option("--lease-duration <seconds>", "leader election lease; a killed leader is replaced after this long", "15")
    .option("--log-level <level>", "pino level (env LOG_LEVEL)")
    .action(async (flags: ServeFlags) => {
      const config = readServeConfig(flags);
      const log = createLogger({ level: config.logLevel });
      const gate = await serve(config, log);
      const shutdown = (signal: string) => {
        log.info({ signal }, "shutting down");
        gate.stop().then(
          () => process.exit(0),
          (error: unknown) => {
            log.error({ err: error }, "shutdown failed");
            process.exit(1);
          },
        );
      };
      process.once("SIGTERM", () => shutdown("SIGTERM"));
      process.once("SIGINT", () => shutdown("SIGINT"));
    });

  return program;
}

await buildProgram().parseAsync(process.argv).catch((error: unknown) => {
  console.error(`schema-gate: ${(error as Error).message}`);
  process.exit(1);
});
