import { randomBytes } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { A } from "../core/annotations.js";
import type { Step } from "../core/window.js";
import { annotationsOf } from "../core/objects.js";
import { isHeld } from "../core/phase.js";
import { windowSql } from "../db/window-database.js";
import type { EventRecorder } from "../k8s/events.js";
import { LostLeadership, type Leadership } from "../k8s/leader.js";
import { databaseTarget, sqlFiles } from "../k8s/reads.js";
import type { Logger } from "../logger.js";
import type { MaintenanceSwitch } from "../maintenance/switch.js";
import type { Metrics } from "../metrics.js";
import { SerialWork } from "../util/serial-work.js";
import { sleep } from "../util/wait.js";
import { recently } from "../util/recently.js";
import type { Narrate, WindowDeps } from "./deps.js";
import { JobRunner } from "./job-runner.js";
import { narrator } from "./narrator.js";
import { Members, type MemberCaches } from "./members.js";
import { DONE, type GroupMemory, type Result } from "./pass.js";
import { progressWriter } from "./progress.js";
import { reconcileGroup } from "./reconcile.js";
import { WindowStore } from "./window-store.js";

export interface ControllerOptions {
  kc: k8s.KubeConfig;
  caches: MemberCaches;
  leadership: Leadership;
  events: EventRecorder;
  maintenance: MaintenanceSwitch;
  metrics: Metrics;
  log: Logger;
  settleMs: number;
  /** Bound on waiting for restored Deployments to become ready once the migration is in. */
  readinessTimeoutMs?: number;
}

/** How soon a pass that failed unexpectedly (the API unreachable) runs again. */
const ERROR_RETRY_MS = 1000;
const RESYNC_MS = 2000;

/**
 * The window controller's loop: one serial worker per database group, kicked by
 * Deployment events, a resync and its own requeues, active only while this replica leads.
 * Every pass is reconcileGroup; what a window does is decided there and in core.
 */
export function startWindowController(options: ControllerOptions): { stop(): Promise<void> } {
  const { leadership, log } = options;
  const { deployments } = options.caches;
  const progress = progressWriter(options.maintenance, log, () => leadership.isLeader());
  const store = new WindowStore(options.kc);
  const events = narrator(options.events, () => leadership.isLeader());
  const deps = windowDeps(options, store, progress.show, events.narrate);
  const memories = new Map<string, GroupMemory>();
  const timers = new Map<string, NodeJS.Timeout>();
  let stopped = false;
  const work = new SerialWork(() => !stopped && leadership.isLeader());

  const pass = async (namespace: string, group: string, memory: GroupMemory): Promise<Result> => {
    try {
      return await reconcileGroup(deps, namespace, group, memory);
    } catch (error) {
      if (error instanceof LostLeadership) return DONE; // the next leader resumes from the record
      log.error({ err: error, namespace, group }, "window reconcile failed; retrying");
      return { requeueAfterMs: ERROR_RETRY_MS };
    }
  };

  const kick = (namespace: string, group: string) => {
    const key = `${namespace}/${group}`;
    const memory = memories.get(key) ?? {};
    memories.set(key, memory);
    work.kick(key, async () => {
      const { requeueAfterMs } = await pass(namespace, group, memory);
      if (requeueAfterMs === 0) return true;
      if (requeueAfterMs !== undefined && !stopped) {
        clearTimeout(timers.get(key));
        timers.set(key, setTimeout(() => kick(namespace, group), requeueAfterMs).unref());
      }
      return false;
    });
  };

  const onDeployment = (d: k8s.V1Deployment) => {
    const group = annotationsOf(d)[A.database];
    if (group && d.metadata?.namespace) kick(d.metadata.namespace, group);
  };
  deployments.on("add", onDeployment);
  deployments.on("update", onDeployment);
  deployments.on("delete", onDeployment);

  // A drain ends when the last pod is gone, readiness when the last one is Ready: pod events
  // wake the groups of the namespace waiting for them, sooner than their next poll.
  const wake = (step: Step) => (pod: k8s.V1Pod) => {
    const namespace = pod.metadata?.namespace;
    if (!namespace) return;
    for (const [key, memory] of memories) {
      if (memory.step === step && key.startsWith(`${namespace}/`)) kick(namespace, key.slice(namespace.length + 1));
    }
  };
  options.caches.pods.on("delete", wake("drain"));
  options.caches.pods.on("update", wake("readiness"));

  const resync = setInterval(() => {
    if (!leadership.isLeader()) return;
    for (const d of deployments.list()) if (isHeld(annotationsOf(d))) onDeployment(d);
  }, RESYNC_MS);
  resync.unref();

  // On every acquisition, not only the first: a replica that lost the Lease and won it back
  // resumes windows whose members may all look released (between restore and maintenance off).
  leadership.onAcquired(() => {
    if (stopped) return;
    // Another replica may have written every record since: read them afresh.
    for (const memory of memories.values()) memory.record = undefined;
    void store.list().then(
      (records) => records.forEach(({ namespace, group }) => group && kick(namespace, group)),
      (error: unknown) => log.warn({ err: error }, "could not list window records to resume"),
    );
    for (const d of deployments.list()) onDeployment(d);
  });

  return {
    async stop() {
      stopped = true;
      clearInterval(resync);
      for (const timer of timers.values()) clearTimeout(timer);
      // Let running steps notice and return.
      await work.settle(2500);
      // Records written behind their steps land before the process goes (bounded, like the Events).
      const writes = Promise.all([...memories.values()].map((memory) => memory.writing));
      await Promise.all([progress.stop(), events.flush(2000), Promise.race([writes, sleep(2000, { unref: true })])]);
    },
  };
}

/** The window's dependencies against the API server and PostgreSQL. */
function windowDeps(options: ControllerOptions, records: WindowStore, showProgress: WindowDeps["showProgress"], narrate: Narrate): WindowDeps {
  const { kc, leadership } = options;
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const windowFiles = recently((namespace: string, name: string, _window: string) => sqlFiles(core, namespace, name));
  return {
    records,
    members: new Members(kc, options.caches),
    database: {
      ...windowSql,
      target: recently((namespace, secret) => databaseTarget(core, namespace, secret)),
      // Reused only within one window's attempt: the next window's opening must see the ConfigMap's new files.
      sqlFiles: (namespace, name, window) => (window === undefined ? sqlFiles(core, namespace, name) : windowFiles(namespace, name, window)),
    },
    jobs: new JobRunner(kc),
    maintenance: options.maintenance,
    narrate,
    showProgress,
    metrics: options.metrics,
    log: options.log,
    now: () => Date.now(),
    leading: () => leadership.isLeader(),
    newSuffix: () => randomBytes(2).toString("hex"),
    settleMs: options.settleMs,
    readinessTimeoutMs: options.readinessTimeoutMs ?? 5 * 60_000,
  };
}
