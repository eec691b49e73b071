import { randomBytes } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { A } from "../core/annotations.js";
import { annotationsOf } from "../core/objects.js";
import { isHeld, Phase } from "../core/phase.js";
import {
  decideWindow,
  formatMs,
  groupMembers,
  heldMembers,
  isBeforeCommit,
  nextStep,
  planWindow,
  retryToken,
  StepFailure,
  stepNumber,
  STEPS,
  type Step,
  type WindowResult,
  type WindowState,
} from "../core/window.js";
import { terminateOtherSessions } from "../db/sessions.js";
import { SqlRunner } from "../db/sql-runner.js";
import type { EventRecorder } from "../k8s/events.js";
import type { WatchedCache } from "../k8s/informer.js";
import type { Leadership } from "../k8s/leader.js";
import type { Logger } from "../logger.js";
import type { Progress } from "../core/maintenance-flag.js";
import type { MaintenanceSwitch } from "../maintenance/switch.js";
import type { Metrics } from "../metrics.js";
import { SerialWork } from "../util/serial-work.js";
import { sleep } from "../util/wait.js";
import { desiredReplicas, Members, rolloutReady } from "./members.js";
import { databaseTarget, isConnectionError, migrationFailure, runMigrationJob, sqlFiles, withSession } from "./runners.js";
import { StaleWindow, WindowStore } from "./window-store.js";

export interface ControllerOptions {
  kc: k8s.KubeConfig;
  deployments: WatchedCache<k8s.V1Deployment>;
  leadership: Leadership;
  events: EventRecorder;
  maintenance: MaintenanceSwitch;
  metrics: Metrics;
  log: Logger;
  settleMs: number;
  /** Bound on waiting for restored Deployments to become ready once the migration is in. */
  readinessTimeoutMs?: number;
}

const POLL_MS = 100;
const RETRY_CONNECTION_MS = 2000;
/** The migration session waits at most this long for a lock (a session that escaped termination). */
const LOCK_TIMEOUT_MS = 10_000;

/** A step's effect on the window record, merged in before the step is marked complete. */
type StepOutcome = Partial<WindowState> | void;

/**
 * The window controller: one worker per database group, driven by Deployment events and a
 * resync timer, active only while this replica leads. Each pass re-reads the group from the
 * API and the window record, takes the next step and records it, so a gate killed at any
 * moment resumes where the record says and every step is safe to run twice.
 */
export function startWindowController(options: ControllerOptions): { stop(): Promise<void> } {
  const { kc, deployments, leadership, log, metrics } = options;
  const store = new WindowStore(kc);
  const members = new Members(kc);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const timers = new Map<string, NodeJS.Timeout>();
  /** When the set of held members of a group last changed, for the settle delay. */
  const settling = new Map<string, { held: string; since: number }>();
  /** Warnings already reported per group, so a resync does not repeat an Event every second. */
  const reported = new Map<string, string>();
  /** The version a group's SQL runner last reported files pending for. */
  const pendingSeen = new Map<string, string>();
  let stopped = false;
  const work = new SerialWork(() => !stopped && leadership.isLeader());

  const key = (namespace: string, group: string) => `${namespace}/${group}`;

  const kick = (namespace: string, group: string) =>
    work.kick(key(namespace, group), () =>
      reconcile(namespace, group).then(
        () => false,
        (error: unknown) => {
          if (error instanceof StaleWindow) return true;
          log.error({ err: error, namespace, group }, "window reconcile failed; retrying");
          later(namespace, group, 1000);
          return false;
        },
      ),
    );

  const later = (namespace: string, group: string, ms: number) => {
    const k = key(namespace, group);
    clearTimeout(timers.get(k));
    timers.set(k, setTimeout(() => kick(namespace, group), ms).unref());
  };

  const onDeployment = (d: k8s.V1Deployment) => {
    const group = annotationsOf(d)[A.database];
    if (group && d.metadata?.namespace) kick(d.metadata.namespace, group);
  };
  deployments.on("add", onDeployment);
  deployments.on("update", onDeployment);
  deployments.on("delete", onDeployment);

  const resync = setInterval(() => {
    if (!leadership.isLeader()) return;
    for (const d of deployments.list()) if (isHeld(annotationsOf(d))) onDeployment(d);
  }, 2000);
  resync.unref();

  void leadership.acquired().then(async () => {
    if (stopped) return;
    // Resume windows whose members may all look released (between restore and maintenance off).
    for (const { namespace, group } of await store.list().catch(() => [])) if (group) kick(namespace, group);
    for (const d of deployments.list()) onDeployment(d);
  });

  const warnOnce = async (namespace: string, group: string, targets: k8s.V1Deployment[], reason: string, message: string) => {
    const k = key(namespace, group);
    if (reported.get(k) === message) return;
    reported.set(k, message);
    log.warn({ namespace, group, reason }, message);
    await narrate(targets, "Warning", reason, message);
  };

  async function reconcile(namespace: string, group: string): Promise<void> {
    for (;;) {
      if (stopped || !leadership.isLeader()) return;
      const group$ = await members.deployments(namespace, group);
      const stored = await store.read(namespace, group);
      const state = stored.state;

      if (!state || state.result) {
        const opened = await considerOpening(namespace, group, group$, stored.version, state);
        if (!opened) return;
        continue;
      }

      const action = decideWindow(state, group$, Date.now());
      switch (action.kind) {
        case "idle":
        case "wait-for-user":
          return;
        case "abort":
          await save(namespace, { ...state, step: "rollback", ending: "abort", failure: undefined }, stored.version);
          await narrate(group$, "Normal", "WindowAborting", `window ${state.id}: abort requested; returning every member to its previous state without migrating`);
          continue;
        case "expire":
          await fail(namespace, state, stored.version, group$, `the window deadline (${state.deadline}) passed during step ${state.step}`);
          continue;
        case "retry": {
          const from: Step = state.failure && !isBeforeCommit(state.failure.step) ? state.failure.step : "quiesce";
          const retried = { ...state, failure: undefined, attempt: state.attempt + 1, retryToken: retryToken(group$), step: from };
          await save(namespace, retried, stored.version);
          await members.mark(namespace, group, Phase.Migrating, `retrying the window to schema version ${state.version} from step ${from}`);
          await narrate(group$, "Normal", "WindowRetry", `window ${state.id}: retry requested; resuming at step ${from} (attempt ${retried.attempt})`);
          continue;
        }
        case "run":
          await runStep(namespace, state, stored.version!, group$);
          continue;
      }
    }
  }

  /** With no open window: release holds that need no migration, or open one after the settle delay. */
  async function considerOpening(
    namespace: string,
    group: string,
    group$: k8s.V1Deployment[],
    recordVersion: string | undefined,
    previous: WindowState | undefined,
  ): Promise<boolean> {
    const k = key(namespace, group);
    const plan = planWindow(group$);
    if (plan.kind === "none") {
      settling.delete(k);
      return false;
    }
    const held = heldMembers(group$);
    if (plan.kind === "invalid") {
      await warnOnce(namespace, group, held, "InvalidAnnotations", `deployment ${namespace}/${plan.member}: ${plan.problem}`);
      return false;
    }
    // A hold somebody bypassed: the held Deployments stay at zero until their window.
    for (const d of held) {
      if ((d.spec?.replicas ?? 0) > 0) await members.patchDeployment(d, { spec: { replicas: 0 } });
    }

    const { spec, version, owner } = plan;
    if (previous?.version === version && previous.result === "Done") {
      // Joined just after its window restored the group: the version is in, release it.
      await members.restore(namespace, group, version, `schema version ${version} applied by window ${previous.id}`);
      return false;
    }
    if (spec.runner.kind === "sql" && pendingSeen.get(k) !== version) {
      // The SQL runner knows what is pending: with nothing to apply there is no window.
      try {
        const target = await databaseTarget(core, namespace, spec.secret);
        const files = await sqlFiles(core, namespace, spec.runner.configMap);
        const nothingPending = await withSession(target, { applicationName: "schema-gate" }, async (client) => {
          const runner = new SqlRunner(client, group);
          if ((await runner.pending(files)).length > 0) return false;
          await runner.apply([], version);
          return true;
        });
        if (nothingPending) {
          const released = await members.restore(namespace, group, version, `schema version ${version}: nothing to migrate; released without a window`);
          metrics.windows.inc({ result: "skipped" });
          await narrate(group$.filter((d) => released.includes(d.metadata!.name!)), "Normal", "NoMigrationPending",
            `schema version ${version}: every SQL file of ${spec.runner.configMap} is applied already; hold released without a window`);
          log.info({ namespace, group, version, released }, "nothing pending; hold released");
          settling.delete(k);
          return false;
        }
        // Pending files stay pending until a window applies them: no need to ask again while settling.
        pendingSeen.set(k, version);
      } catch (error) {
        const message = error instanceof StepFailure || isConnectionError(error)
          ? (error as Error).message
          : `could not check pending migrations: ${(error as Error).message}`;
        await warnOnce(namespace, group, held, "MigrationCheckFailed", `database group ${group}: ${message}; the gate retries every few seconds`);
        later(namespace, group, 5000);
        return false;
      }
    }

    const heldKey = held.map((d) => `${d.metadata?.name}@${annotationsOf(d)[A.schemaVersion]}`).join(",");
    const seen = settling.get(k);
    if (!seen || seen.held !== heldKey) settling.set(k, { held: heldKey, since: Date.now() });
    const waited = Date.now() - settling.get(k)!.since;
    if (waited < options.settleMs) {
      later(namespace, group, options.settleMs - waited);
      return false;
    }
    settling.delete(k);
    pendingSeen.delete(k);
    reported.delete(k);

    const now = Date.now();
    const applied = group$.map((d) => annotationsOf(d)[A.appliedVersion]).find((v) => v !== undefined);
    const state: WindowState = {
      id: `${group}-${now.toString(36)}-${randomBytes(2).toString("hex")}`,
      group,
      version,
      ...(applied !== undefined ? { fromVersion: applied } : {}),
      owner,
      runner: spec.runner,
      onFailure: spec.onFailure,
      maintenance: spec.maintenance,
      startedAt: new Date(now).toISOString(),
      deadline: new Date(now + spec.timeoutSeconds * 1000).toISOString(),
      step: "maintenance-on",
      attempt: 1,
      retryToken: retryToken(group$),
      timings: {},
    };
    await save(namespace, state, recordVersion);
    log.info({ namespace, group, window: state.id, version, owner, runner: spec.runner.kind }, "window opened");
    await narrate(group$, "Normal", "WindowOpened",
      `window ${state.id}: migrating database group ${group} to schema version ${version} (${spec.runner.kind === "sql" ? `SQL files of ${spec.runner.configMap}` : "a Job"}; ${held.length} held, ${group$.length} member(s))`);
    return true;
  }

  async function save(namespace: string, state: WindowState, version: string | undefined): Promise<string> {
    if (!leadership.isLeader()) throw new StaleWindow("not the leader any more");
    return store.save(namespace, state, version);
  }

  async function narrate(targets: k8s.V1Deployment[], type: "Normal" | "Warning", reason: string, message: string) {
    await Promise.all(targets.map((d) => options.events(target(d), type, reason, message)));
  }

  async function fail(namespace: string, state: WindowState, version: string | undefined, group$: k8s.V1Deployment[], message: string) {
    const failed: WindowState = { ...state, failure: { step: state.step, message, at: new Date().toISOString() } };
    // A first install has no earlier revision to return to: it can only be held.
    const canRollBack = state.onFailure === "rollback" && isBeforeCommit(state.step) && state.fromVersion !== undefined;
    log.error({ namespace, group: state.group, window: state.id, step: state.step }, `window failed: ${message}`);
    metrics.windows.inc({ result: "failed" });
    if (canRollBack) {
      await save(namespace, { ...state, step: "rollback", ending: "rollback", failure: undefined, rollbackReason: message }, version);
      await narrate(group$, "Warning", "WindowFailed", `window ${state.id} failed in step ${state.step}: ${message}. Rolling back (on-failure: rollback)`);
      return;
    }
    // Members first: once the record says failed, a reader of it finds them marked too.
    await members.mark(namespace, state.group, Phase.Failed, `window failed in step ${state.step}: ${message}`.slice(0, 4000));
    await save(namespace, failed, version);
    await narrate(group$, "Warning", "WindowFailed",
      `window ${state.id} failed in step ${state.step}: ${message}. The group stays quiesced; fix the cause and run ` +
      `\`schema-gate retry ${state.group} -n ${namespace}\` (or annotate ${A.retry}), or \`schema-gate abort ${state.group} -n ${namespace}\``);
  }

  async function runStep(namespace: string, state: WindowState, version: string, group$: k8s.V1Deployment[]): Promise<void> {
    const step = state.step;
    const started = Date.now();
    log.info({ namespace, group: state.group, window: state.id, step }, "step started");
    if (state.maintenance && step !== "maintenance-on" && step !== "finished") showProgress(namespace, state);
    let outcome: StepOutcome;
    try {
      outcome = await STEP_ACTIONS[step](namespace, state, group$);
    } catch (error) {
      if (error instanceof StepFailure) {
        await fail(namespace, state, version, group$, error.message);
        return;
      }
      if (error instanceof StaleWindow) throw error;
      const message = `step ${step}: ${(error as Error).message}; retrying in ${RETRY_CONNECTION_MS / 1000}s`;
      await warnOnce(namespace, state.group, group$, isConnectionError(error) ? "DatabaseUnavailable" : "StepRetrying", message);
      await sleep(RETRY_CONNECTION_MS);
      return;
    }
    reported.delete(key(namespace, state.group));
    const ms = Date.now() - started;
    const after = nextStep(step === "rollback" ? "readiness" : step);
    const next: WindowState = { ...state, ...(outcome ?? {}), step: after, timings: { ...state.timings, [step]: ms } };
    if (after === "finished") next.result = finalResult(state);
    log.info({ namespace, group: state.group, window: state.id, step, ms }, "step finished");
    await save(namespace, next, version);
    if (next.result) await finish(namespace, next, group$);
  }

  /**
   * The maintenance page shows the step, written off the window's path: a step never waits
   * for it, and a failure to say so never stops the window. One write per namespace at a
   * time, the latest step winning; a flag turned off meanwhile refuses the late write
   * through its resourceVersion.
   */
  const progressWork = new SerialWork(() => !stopped);
  const latestProgress = new Map<string, { window: string; progress: Progress }>();
  function showProgress(namespace: string, state: WindowState) {
    const progress = { version: state.version, step: state.step, index: stepNumber(state.step), of: STEPS.length, startedAt: state.startedAt };
    latestProgress.set(namespace, { window: state.id, progress });
    // A kick during a write runs the first kick's pass again: it reads the map, not its closure.
    progressWork.kick(namespace, async () => {
      const latest = latestProgress.get(namespace);
      if (!latest) return;
      latestProgress.delete(namespace);
      await options.maintenance.progress(namespace, latest.progress).catch((error: unknown) => {
        log.warn({ err: error, namespace, window: latest.window }, "could not show progress on the maintenance page");
      });
    });
  }

  async function finish(namespace: string, state: WindowState, group$: k8s.V1Deployment[]) {
    const result = state.result!;
    const total = Date.now() - Date.parse(state.startedAt);
    metrics.windows.inc({ result: ENDINGS[result].metric });
    if (result === "Aborted") await members.clearAbort(namespace, state.group);
    const parts = Object.entries(state.timings).map(([s, ms]) => `${s} ${formatMs(ms)}`).join(", ");
    const message = result === "Done"
      ? `window ${state.id}: schema version ${state.version} applied; group restored in ${formatMs(total)} (${parts})`
      : `window ${state.id}: ${ENDINGS[result].verb}; members returned to their previous state in ${formatMs(total)}`;
    log.info({ namespace, group: state.group, window: state.id, result, ms: total, timings: state.timings }, "window finished");
    await narrate(group$, "Normal", ENDINGS[result].reason, message);
  }

  const finalResult = (state: WindowState): WindowResult =>
    state.ending === "abort" ? "Aborted" : state.ending === "rollback" ? "RolledBack" : "Done";

  /** The database the group's Secret points at (the owner's, or any member's naming one). */
  const groupDatabase = (namespace: string, state: WindowState, group$: k8s.V1Deployment[]) =>
    databaseTarget(core, namespace, ownerSecret(group$, state));

  /** Waits for a condition, polling, while this replica still leads and the deadline holds. */
  async function waitFor(deadline: number, check: () => Promise<boolean>, onTimeout: () => StepOutcome | never) {
    for (;;) {
      if (!leadership.isLeader() || stopped) throw new StaleWindow("leadership lost");
      if (await check()) return undefined;
      if (Date.now() > deadline) return onTimeout();
      await sleep(POLL_MS);
    }
  }

  const STEP_ACTIONS: Record<Step, (namespace: string, state: WindowState, group$: k8s.V1Deployment[]) => Promise<StepOutcome>> = {
    "maintenance-on": async (namespace, state) => {
      if (!state.maintenance) return;
      const { owned } = await options.maintenance.turnOn(namespace, state.id);
      return { maintenanceOwned: owned || state.maintenanceOwned === true };
    },

    quiesce: async (namespace, state, group$) => {
      const changed = await members.quiesce(namespace, state.group, `window ${state.id}: quiesced for the migration to schema version ${state.version}`);
      if (changed.length > 0) {
        await narrate(group$, "Normal", "Quiesced", `window ${state.id}: scaled to zero for the migration: ${changed.join(", ")}`);
      }
      return { quiescedAt: state.quiescedAt ?? new Date().toISOString() };
    },

    drain: async (namespace, state) => {
      let left: string[] = [];
      await waitFor(Date.parse(state.deadline), async () => {
        left = await members.podsLeft(namespace, state.group);
        return left.length === 0;
      }, () => {
        throw new StepFailure(`pods still running at the window deadline: ${left.join(", ")}`);
      });
    },

    terminate: async (namespace, state, group$) => {
      const target = await groupDatabase(namespace, state, group$);
      const sessions = await withSession(target, { applicationName: "schema-gate" }, (client) => terminateOtherSessions(client, target.database));
      metrics.sessionsTerminated.inc(sessions.length);
      const list = sessions.map((s) => `pid ${s.pid} (user ${s.user}, application "${s.applicationName}", ${s.state})`).join(", ");
      await narrate(group$, "Normal", "SessionsTerminated",
        sessions.length === 0
          ? `window ${state.id}: no other session on database ${target.database}`
          : `window ${state.id}: terminated ${sessions.length} session(s) on database ${target.database}: ${list}`);
      return { sessions: sessions.map(({ pid, user, applicationName, state: s }) => ({ pid, user, applicationName, state: s })) };
    },

    migrate: async (namespace, state, group$) => {
      const started = Date.now();
      const deadline = Date.parse(state.deadline);
      const runner = state.runner;
      try {
        if (runner.kind === "sql") {
          const target = await groupDatabase(namespace, state, group$);
          const files = await sqlFiles(core, namespace, runner.configMap);
          const ran = await withSession(
            target,
            { applicationName: "schema-gate-migration", lockTimeoutMs: LOCK_TIMEOUT_MS, statementTimeoutMs: Math.max(1000, deadline - Date.now()) },
            async (client) => {
              // A client that connected since the terminate step would block the DDL.
              await terminateOtherSessions(client, target.database);
              return new SqlRunner(client, state.group).apply(files, state.version, (file, ms) =>
                log.info({ namespace, group: state.group, window: state.id, file, ms }, "migration file applied"));
            },
          );
          await narrate(group$, "Normal", "Migrated",
            `window ${state.id}: applied ${ran.length} SQL file(s) in ${formatMs(Date.now() - started)}${ran.length ? `: ${ran.join(", ")}` : ""}`);
        } else {
          const owner = group$.find((d) => d.metadata?.name === state.owner);
          if (!owner) throw new StepFailure(`deployment ${namespace}/${state.owner}, whose template the migration Job uses, no longer exists`);
          const job = await runMigrationJob(kc, owner, state, runner, { deadline, stillLeading: () => leadership.isLeader() && !stopped });
          await narrate(group$, "Normal", "Migrated", `window ${state.id}: migration Job ${job.name} completed in ${formatMs(Date.now() - started)}`);
        }
        metrics.migrationDuration.observe({ runner: runner.kind, result: "success" }, (Date.now() - started) / 1000);
      } catch (error) {
        const failure = migrationFailure(error);
        if (failure instanceof StepFailure) {
          metrics.migrationDuration.observe({ runner: runner.kind, result: "failure" }, (Date.now() - started) / 1000);
        }
        throw failure;
      }
      return { committedAt: new Date().toISOString() };
    },

    verify: async (namespace, state, group$) => {
      if (state.runner.kind === "job") return; // the Job's success is the runner's own record
      const target = await groupDatabase(namespace, state, group$);
      const recorded = await withSession(target, { applicationName: "schema-gate" }, (client) => new SqlRunner(client, state.group).versionRecorded(state.version));
      if (!recorded) throw new StepFailure(`schema version ${state.version} is not recorded as applied after the migration`);
    },

    restore: async (namespace, state, group$) => {
      const restored = await members.restore(namespace, state.group, state.version, `schema version ${state.version} applied by window ${state.id}`);
      if (restored.length > 0) {
        await narrate(group$, "Normal", "Restored", `window ${state.id}: replicas restored: ${restored.join(", ")}`);
      }
    },

    readiness: async (namespace, state, group$) => {
      const bound = Date.now() + (options.readinessTimeoutMs ?? 5 * 60_000);
      let waiting: string[] = [];
      await waitFor(bound, async () => {
        waiting = (await members.deployments(namespace, state.group)).filter((d) => !rolloutReady(d)).map((d) => d.metadata!.name!);
        return waiting.length === 0;
      }, () => undefined);
      if (waiting.length > 0) {
        await narrate(group$, "Warning", "RolloutNotReady",
          `window ${state.id}: the migration is applied but ${waiting.join(", ")} did not become ready in time; check their pods`);
      } else if (state.quiescedAt) {
        metrics.downtime.observe((Date.now() - Date.parse(state.quiescedAt)) / 1000);
      }
    },

    "maintenance-off": async (namespace, state) => {
      if (state.maintenanceOwned) await options.maintenance.turnOff(namespace, state.id);
    },

    rollback: async (namespace, state, group$) => {
      const reason = ENDINGS[finalResult(state)].verb;
      for (const d of group$) {
        const annotations = annotationsOf(d);
        if (!isHeld(annotations)) continue;
        const changed = annotations[A.schemaVersion] === state.version && annotations[A.appliedVersion] !== state.version;
        const template = changed ? await members.previousTemplate(d) : undefined;
        if (changed && !template) {
          // A first install has no earlier revision: it stays at zero, released to its owner.
          await members.patchDeployment(d, { metadata: { annotations: {
            [A.phase]: Phase.Aborted, [A.desiredReplicas]: null,
            [A.message]: `window ${state.id} ${reason}; no earlier revision to return to, so it stays at zero: scale it up or re-apply once the migration is fixed`,
          } } });
          continue;
        }
        const patch: Record<string, unknown> = {
          metadata: {
            annotations: {
              [A.phase]: state.ending === "abort" ? Phase.Aborted : Phase.RolledBack,
              [A.desiredReplicas]: null,
              [A.message]: `window ${state.id} ${reason}; back on the previous revision at schema version ${state.fromVersion ?? "(none)"}`,
              ...(changed && state.fromVersion !== undefined ? { [A.schemaVersion]: state.fromVersion } : {}),
            },
          },
          spec: { replicas: desiredReplicas(d), ...(template ? { template } : {}) },
        };
        if (!(await members.patchDeployment(d, patch))) throw new Error(`deployment ${namespace}/${d.metadata?.name} changed during rollback`);
      }
      await members.resumeCronJobs(namespace, state.group);
      await narrate(group$, "Normal", state.ending === "abort" ? "Aborted" : "RolledBack",
        `window ${state.id}: ${reason}; members returned to their previous templates and replicas`);
    },

    finished: async () => undefined,
  };

  return {
    async stop() {
      stopped = true;
      clearInterval(resync);
      for (const timer of timers.values()) clearTimeout(timer);
      // Let running steps notice and return.
      await work.settle(2500);
      await progressWork.settle(1000);
    },
  };
}

/** How each end of a window shows in metrics, Events and messages. */
const ENDINGS: Record<WindowResult, { metric: string; reason: string; verb: string }> = {
  Done: { metric: "done", reason: "WindowDone", verb: "done" },
  Aborted: { metric: "aborted", reason: "WindowAborted", verb: "aborted" },
  RolledBack: { metric: "rolled_back", reason: "WindowRolledBack", verb: "rolled back" },
};

function target(d: k8s.V1Deployment) {
  return { kind: "Deployment", apiVersion: "apps/v1", name: d.metadata!.name!, namespace: d.metadata!.namespace!, uid: d.metadata!.uid };
}

function ownerSecret(group$: k8s.V1Deployment[], state: WindowState): string {
  const owner = group$.find((d) => d.metadata?.name === state.owner) ?? group$.find((d) => annotationsOf(d)[A.databaseSecret]);
  const secret = owner ? annotationsOf(owner)[A.databaseSecret] : undefined;
  if (!secret) throw new StepFailure(`no member of database group ${state.group} names a ${A.databaseSecret} any more`);
  return secret;
}
