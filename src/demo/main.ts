import { rm } from "node:fs/promises";
import { join } from "node:path";
import { deleteLocalCluster, startLocalCluster } from "../local/cluster.js";
import { unregisterWebhooks } from "../local/gate.js";
import { cacheDir } from "../local/paths.js";
import { startPostgres } from "../local/postgres.js";
import { DEMO_NAMESPACE, nextUpgradeArgs, runDemo } from "./demo.js";

/**
 * `npm run demo -- --keep`: the gate, the page and PostgreSQL keep running after the window
 * until Ctrl-C, with what to try meanwhile.
 */
async function keepRunning(kubeconfig: string, helm: string, pageUrl: string): Promise<void> {
  const k = `kubectl --kubeconfig ${kubeconfig} -n ${DEMO_NAMESPACE}`;
  console.log(`
the gate keeps running (Ctrl-C stops it, the Ingress controller if it runs and the demo's PostgreSQL; the cluster stays until \`npm run demo -- --down\`). Try:
  ${helm} ${nextUpgradeArgs(kubeconfig).map((a) => (/[ ;\\]/.test(a) ? `'${a}'` : a)).join(" ")}
  ${k} get migrationwindows -w     # the window moves through its steps
  npx schema-gate status -n ${DEMO_NAMESPACE} --kubeconfig ${kubeconfig}
  npx schema-gate wait orders -n ${DEMO_NAMESPACE} --kubeconfig ${kubeconfig}
  the maintenance page while a window runs: ${pageUrl}`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}

const keep = process.argv.includes("--keep") ? keepRunning : undefined;

// `npm run demo`: the whole story on the local cluster; `npm run demo -- --down` cleans up.
if (process.argv.includes("--down")) {
  await deleteLocalCluster();
  await rm(join(cacheDir, "demo"), { recursive: true, force: true });
  console.log("local cluster deleted; nothing of the demo is left");
} else {
  const started = Date.now();
  console.log("• starting the local Kubernetes control plane (kwok, with a real node when the machine can run one) and PostgreSQL (a first run builds the binaries)");
  const [cluster, postgres] = await Promise.all([startLocalCluster(), startPostgres()]);
  console.log(`  ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  try {
    const result = await runDemo(cluster, postgres, (line) => console.log(line), undefined, keep ? (running) => keep(cluster.kubeconfig, cluster.binaries.helm, running.pageUrl) : undefined);
    if (result.window.result !== "Done") process.exitCode = 1;
  } finally {
    // Without the gate running, its webhooks would refuse changes to opted-in Deployments.
    await unregisterWebhooks(cluster);
    await postgres.stop();
  }
  const k = `kubectl --kubeconfig ${cluster.kubeconfig} -n ${DEMO_NAMESPACE}`;
  console.log(`
next steps (the cluster keeps running; the gate, the Ingress controller if it ran and the demo's PostgreSQL have stopped):
  ${k} get deployments,ingress,configmaps
  ${k} events                      # WindowOpened, Quiesced, SessionsTerminated, Migrated, ...
  ${k} get migrationwindows        # group, phase, step, from -> to version (kubectl wait --for=condition=Ready works too)
  npx schema-gate status -n ${DEMO_NAMESPACE} --kubeconfig ${cluster.kubeconfig}
  npm run demo -- --down           # delete the local cluster`);
}
