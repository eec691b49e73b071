import * as k8s from "@kubernetes/client-node";
import { Command } from "commander";
import { A } from "../core/annotations.js";
import { annotationsOf } from "../core/objects.js";
import { isHolding } from "../core/phase.js";
import { describeStep, type Step, type WindowState } from "../core/window.js";
import { WindowStore } from "../controller/window-store.js";
import { MERGE_PATCH } from "../k8s/constants.js";
import { checkWindowRequest, groupPhase, waitOutcome, WaitExit } from "../core/wait-outcome.js";
import { loadKubeConfig } from "../k8s/kubeconfig.js";
import { sleep } from "../util/wait.js";
import { currentNamespace } from "./maintenance.js";


interface CommonFlags {
  namespace?: string;
  kubeconfig?: string;
  output?: string;
}

function common(command: Command): Command {
  return command
    .option("-n, --namespace <ns>", "namespace (default: the current context's)")
    .option("--kubeconfig <file>", "kubeconfig (default: KUBECONFIG / ~/.kube/config)")
    .option("-o, --output <format>", "text or json", "text");
}

function output(flags: CommonFlags): "text" | "json" {
  if (flags.output !== "text" && flags.output !== "json") throw new Error(`--output: "${flags.output}" is not text or json`);
  return flags.output;
}

export interface GroupStatus {
  namespace: string;
  group: string;
  /** Done, Failed, RolledBack, Aborted, Running (a window in progress), Pending (held, no window yet), Idle. */
  phase: string;
  appliedVersion?: string;
  targetVersion?: string;
  step?: string;
  failure?: string;
  window?: { id: string; startedAt: string; deadline: string; timings: Record<string, number> };
  members: Array<{ name: string; phase?: string; replicas: number; ready: number; desiredReplicas?: number; version?: string }>;
  events: Array<{ at: string; object: string; type: string; reason: string; message: string }>;
}

/** Every database group of a namespace (or all namespaces): what `schema-gate status` prints. */
export async function readStatus(kc: k8s.KubeConfig, namespace: string | undefined): Promise<GroupStatus[]> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const [deployments, records, events] = await Promise.all([
    namespace ? apps.listNamespacedDeployment({ namespace }) : apps.listDeploymentForAllNamespaces(),
    new WindowStore(kc).list(namespace),
    namespace ? core.listNamespacedEvent({ namespace }) : core.listEventForAllNamespaces(),
  ]);
  const groups = new Map<string, GroupStatus & { state?: WindowState; deployments: k8s.V1Deployment[] }>();
  const entry = (ns: string, group: string) => {
    const key = `${ns}/${group}`;
    if (!groups.has(key)) groups.set(key, { namespace: ns, group, phase: "Idle", members: [], events: [], deployments: [] });
    return groups.get(key)!;
  };
  for (const d of deployments.items) {
    const group = annotationsOf(d)[A.database];
    if (group) entry(d.metadata!.namespace!, group).deployments.push(d);
  }
  for (const record of records) {
    if (record.state) entry(record.namespace, record.group).state = record.state;
  }
  const result: GroupStatus[] = [];
  for (const g of [...groups.values()].sort((a, b) => `${a.namespace}/${a.group}`.localeCompare(`${b.namespace}/${b.group}`))) {
    const names = new Set(g.deployments.map((d) => d.metadata!.name!));
    const state = g.state;
    const applied = g.deployments.map((d) => annotationsOf(d)[A.appliedVersion]).find(Boolean);
    result.push({
      namespace: g.namespace,
      group: g.group,
      phase: groupPhase(state, g.deployments),
      ...(applied ? { appliedVersion: applied } : {}),
      ...(state && !state.result ? { targetVersion: state.version, step: state.step } : {}),
      ...(state?.failure && !state.result ? { failure: state.failure.message } : {}),
      ...(state ? { window: { id: state.id, startedAt: state.startedAt, deadline: state.deadline, timings: state.timings } } : {}),
      members: g.deployments
        .map((d) => {
          const a = annotationsOf(d);
          return {
            name: d.metadata!.name!,
            ...(a[A.phase] ? { phase: a[A.phase] } : {}),
            replicas: d.spec?.replicas ?? 0,
            ready: d.status?.readyReplicas ?? 0,
            ...(a[A.desiredReplicas] ? { desiredReplicas: Number(a[A.desiredReplicas]) } : {}),
            ...(a[A.schemaVersion] ? { version: a[A.schemaVersion] } : {}),
          };
        })
        .sort((a, b) => a.name.localeCompare(b.name)),
      events: events.items
        .filter((e) => e.metadata?.namespace === g.namespace && names.has(e.involvedObject.name ?? "") && e.source?.component === "schema-gate")
        .sort((a, b) => Number(a.metadata?.resourceVersion) - Number(b.metadata?.resourceVersion))
        .slice(-5)
        .map((e) => ({
          at: new Date(e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp ?? 0).toISOString(),
          object: `deployment/${e.involvedObject.name}`,
          type: e.type ?? "",
          reason: e.reason ?? "",
          message: e.message ?? "",
        })),
    });
  }
  return result;
}

function printStatus(groups: GroupStatus[]): void {
  if (groups.length === 0) {
    console.log("no database groups: no Deployment carries schema-gate.dev/database here");
    return;
  }
  for (const g of groups) {
    const versions = g.targetVersion ? `${g.appliedVersion ?? "none"} -> ${g.targetVersion}` : (g.appliedVersion ?? "none");
    const step = g.step ? `  step ${describeStep(g.step as Step)}` : "";
    console.log(`${g.namespace}/${g.group}  ${g.phase}  schema ${versions}${step}`);
    if (g.failure) console.log(`  failure: ${g.failure}`);
    for (const m of g.members) {
      const held = m.desiredReplicas !== undefined && m.phase && isHolding(m.phase) ? ` (held; ${m.desiredReplicas} when released)` : "";
      console.log(`  ${m.name.padEnd(24)} ${String(m.phase ?? "-").padEnd(10)} ${m.ready}/${m.replicas} ready${held}`);
    }
    for (const e of g.events) console.log(`  ${e.at}  ${e.type.padEnd(7)} ${e.reason}: ${e.message}`);
  }
}

interface WaitFlags extends CommonFlags {
  timeout?: string;
}

/** `schema-gate wait`: blocks until the Deployment's window ends; the exit code says how (decided by waitOutcome). */
async function waitForWindow(kc: k8s.KubeConfig, namespace: string, name: string, timeoutMs: number, json: boolean): Promise<number> {
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const store = new WindowStore(kc);
  const deadline = Date.now() + timeoutMs;
  let said = "";
  for (;;) {
    const d = await apps.readNamespacedDeployment({ name, namespace });
    const a = annotationsOf(d);
    const group = a[A.database];
    const { state } = group ? await store.read(namespace, group) : { state: undefined };
    const outcome = waitOutcome(d, state, Date.now());
    const timedOut = outcome.kind === "waiting" && Date.now() > deadline;
    if (outcome.kind === "exit" || timedOut) {
      const { code, phase, message } = outcome.kind === "exit"
        ? outcome
        : { code: WaitExit.Timeout, phase: a[A.phase] ?? "", message: `timed out waiting for the window of ${namespace}/${name}` };
      if (json) console.log(JSON.stringify({ deployment: `${namespace}/${name}`, group, phase, version: a[A.schemaVersion], message }));
      else console.log(message);
      return code;
    }
    if (outcome.line !== said && !json) console.error(outcome.line);
    said = outcome.line;
    await sleep(500);
  }
}

/** Asks the group's window for a retry or an abort, through the annotation on its owner. */
async function requestRetryOrAbort(kc: k8s.KubeConfig, namespace: string, group: string, what: "retry" | "abort"): Promise<string> {
  const { state } = await new WindowStore(kc).read(namespace, group);
  const refusal = checkWindowRequest(state, group, namespace, what);
  if (refusal || !state) throw new Error(refusal);
  const annotation = what === "retry" ? { [A.retry]: new Date().toISOString() } : { [A.abort]: "true" };
  await kc.makeApiClient(k8s.AppsV1Api).patchNamespacedDeployment(
    { name: state.owner, namespace, body: { metadata: { annotations: annotation } } },
    MERGE_PATCH,
  );
  return what === "retry"
    ? `retry requested on deployment ${namespace}/${state.owner}; follow it with: schema-gate wait ${state.owner} -n ${namespace}`
    : `abort requested on deployment ${namespace}/${state.owner}; the window returns the group to schema version ${state.fromVersion ?? "(none)"} unless its migration already committed`;
}

export function operatorCommands(): Command[] {
  const status = common(new Command("status"))
    .description("every database group: phase, versions, members with replicas, current step, last Events")
    .option("-A, --all-namespaces", "every namespace")
    .action(async (flags: CommonFlags & { allNamespaces?: boolean }) => {
      const format = output(flags);
      const kc = loadKubeConfig(flags.kubeconfig);
      const groups = await readStatus(kc, flags.allNamespaces ? undefined : currentNamespace(kc, flags.namespace));
      if (format === "json") console.log(JSON.stringify({ groups }, null, 2));
      else printStatus(groups);
    });

  const wait = common(new Command("wait"))
    .description("block until the window of a Deployment ends; exit 0 Done, 1 Failed, 3 rolled back/aborted, 4 timeout")
    .argument("<deployment>", "an opted-in Deployment")
    .option("--timeout <seconds>", "give up after this long", "1800")
    .action(async (name: string, flags: WaitFlags) => {
      const format = output(flags);
      const kc = loadKubeConfig(flags.kubeconfig);
      const seconds = Number(flags.timeout);
      if (!(seconds > 0)) throw new Error(`--timeout: "${flags.timeout}" is not a number of seconds`);
      process.exitCode = await waitForWindow(kc, currentNamespace(kc, flags.namespace), name, seconds * 1000, format === "json");
    });

  const action = (what: "retry" | "abort", description: string) =>
    common(new Command(what))
      .description(description)
      .argument("<group>", "the database group (schema-gate.dev/database)")
      .action(async (group: string, flags: CommonFlags) => {
        const format = output(flags);
        const kc = loadKubeConfig(flags.kubeconfig);
        const namespace = currentNamespace(kc, flags.namespace);
        const message = await requestRetryOrAbort(kc, namespace, group, what);
        console.log(format === "json" ? JSON.stringify({ namespace, group, requested: what, message }) : message);
      });

  return [
    status,
    wait,
    action("retry", "run a failed (held) window again from the step that failed"),
    action("abort", "end a window without migrating: members return to their previous template and replicas"),
  ];
}
