import type * as k8s from "@kubernetes/client-node";
import { pino } from "pino";
import { A } from "../../../src/core/annotations.js";
import { NO_PROGRESS_DEADLINE, type MergePatch } from "../../../src/core/member-patches.js";
import type { MigrationFile } from "../../../src/core/migrations.js";
import { migrationJobName, StepFailure, type WindowState } from "../../../src/core/window.js";
import type { Group, JobState, WindowDeps } from "../../../src/controller/deps.js";
import { LostLeadership } from "../../../src/k8s/leader.js";
import { createMetrics } from "../../../src/metrics.js";

/**
 * A database group, its window record, its database and its Jobs, kept in memory, for
 * driving the window controller in unit tests. Pods follow replicas a little later (so
 * drain and readiness really wait), and every write is counted, so a test can tell
 * whether anything was written after leadership was lost.
 */
export const NAMESPACE = "shop";
export const GROUP = "shop-db";
const LAG_MS = 150;

interface StoredDeployment {
  object: k8s.V1Deployment;
  readyAt: number;
  podsGoneAt: number;
}

function merge(target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete target[key];
    else if (typeof value === "object" && !Array.isArray(value) && typeof target[key] === "object" && target[key] !== null) {
      merge(target[key] as Record<string, unknown>, value as Record<string, unknown>);
    } else target[key] = structuredClone(value);
  }
}

export interface WorldOptions {
  runner?: "sql" | "job";
  onFailure?: "hold" | "rollback";
  /** The version already applied; undefined for a first install. */
  applied?: string;
  members?: string[];
  /** A member's own target version, where it is not "2". */
  versions?: Record<string, string>;
  /** The Secret names a PgBouncer console. */
  pooler?: boolean;
  /** How long pods take to go after a scale to zero, and to be ready after a scale up. */
  lagMs?: number;
  /** The group's CronJobs: suspended by their user or not. */
  cronJobs?: Record<string, { suspend: boolean }>;
}

export class FakeWorld {
  now = Date.parse("2026-01-01T00:00:00Z");
  leading = true;
  writes = 0;
  /** Writes and Events that reached the world while this replica did not lead. */
  writesWhileDeposed = 0;
  events: Array<{ reason: string; type: string; message: string }> = [];
  saves: WindowState[] = [];
  record: { state?: WindowState; version?: string } = {};
  /** file -> times it was applied */
  applied = new Map<string, number>();
  versions = new Set<string>();
  files: MigrationFile[] = [
    { name: "001-items.sql", sql: "ALTER TABLE items ADD COLUMN price int;", checksum: "a" },
    { name: "002-stock.sql", sql: "ALTER TABLE items ADD COLUMN stock int;", checksum: "b" },
  ];
  flag = { on: false, owner: "" };
  jobs = new Map<string, { polls: number; outcome: "complete" | "failed"; stopped?: boolean }>();
  /** How many looks a Job stays running for. */
  jobPolls = 2;
  annotated = false;
  /** The group's CronJobs as the API has them, and the step of each read of them from the API. */
  cronJobs = new Map<string, k8s.V1CronJob>();
  cronJobReads: Array<string | undefined> = [];
  /** Each read of the SQL files: the step the record is at and the window key it was asked with. */
  fileReads: Array<{ step?: string; window?: string }> = [];
  jobOutcome: "complete" | "failed" = "complete";
  progress: string[] = [];
  /** Called as each SQL file commits (e.g. to depose this replica meanwhile). */
  afterFile: ((file: string) => void) | undefined;
  /** The pooler: paused or not, what was seen paused, and how many RESUMEs still fail. */
  pooler = { paused: false, duringMigration: [] as boolean[], atJobStart: [] as boolean[], failingResumes: 0, refusesLogin: false };
  /** The step the record was at for every read of the group or its pods from the API (not the caches). */
  apiReads: Array<string | undefined> = [];
  /** How often the window stopped the members' pods itself. */
  podsStopped = 0;
  /** The resourceVersion of the last pod list scaleToZero read, and whether the pod cache has seen it (else it lags). */
  podListVersion = 0;
  podCacheSeesAll = true;
  /** The record's step each time a migration session started (before its fence). */
  applyStartedAt: Array<string | undefined> = [];
  /**
   * A read of the group from the API while the record says restore waits (at most a second)
   * until the restore's patches are in, to show whether the restore waited for it first.
   */
  restoreReadWaits = false;
  /** How many reads of the group from the API while the record says restore fail (as a LIST the apiserver refuses). */
  failingRestoreReads = 0;
  /** Set when such a read waited the whole second: the restore's patches came only after it. */
  restoreWaitedForRead = false;
  private restorePatched: () => void = () => undefined;
  private readonly restored = new Promise<void>((resolve) => (this.restorePatched = resolve));
  /** What the informer caches show, when a test makes them lag: else the world as it is. */
  frozenCache?: { group: Group; pods: string[] };
  /** The step a test says is running (see its wrapped step bodies), and for each write to the world but the record's: that step and the record's. */
  current: string | undefined;
  writeSteps: Array<{ step?: string; record?: string }> = [];
  /** How often a session of its own asked the ledger whether a version is recorded. */
  ledgerAsks = 0;
  /** Each session the quiesce or the drain opened ahead for the migration: its statement timeout, and how many pods were left then. */
  sessionsOpenedAhead: Array<{ statementTimeoutMs: number; podsLeft: number }> = [];
  /** The ledger does not show the version after the migration (a runner that recorded nothing). */
  loseLedgerVersion = false;
  /** How long each write of the record takes (0: done within the pass). */
  saveLagMs = 0;
  /** An error for the write of this state, to make it fail. */
  failSave: ((state: WindowState) => Error | undefined) | undefined;
  /** The step the stored record was at when the migration started and when each member patch was sent, by what it did. */
  recordStepAt = new Map<string, Array<string | undefined>>();
  private deployments = new Map<string, StoredDeployment>();
  private rv = 10;

  constructor(readonly options: WorldOptions = {}) {
    const members = options.members ?? ["billing", "catalog", "orders"];
    if (options.applied) {
      this.applied.set("001-items.sql", 1);
      this.versions.add(options.applied);
    }
    for (const name of members) this.addMember(name, options.versions?.[name] ?? "2", options.applied);
    for (const [name, { suspend }] of Object.entries(options.cronJobs ?? {})) {
      this.cronJobs.set(name, { metadata: { name, namespace: "shop", annotations: { [A.database]: GROUP } }, spec: { suspend, schedule: "* * * * *", jobTemplate: {} } });
    }
  }

  private noteRecordStep(what: string): void {
    this.recordStepAt.set(what, [...(this.recordStepAt.get(what) ?? []), this.record.state?.step]);
  }

  private write(what = "world"): void {
    if (what !== "record") this.writeSteps.push({ ...(this.current ? { step: this.current } : {}), record: this.record.state?.step });
    this.writes++;
    if (!this.leading) this.writesWhileDeposed++;
  }

  private addMember(name: string, version: string, applied: string | undefined): void {
    const runner: Record<string, string> = this.options.runner === "job"
      ? { [A.migrationCommand]: '["./migrate"]' }
      : { [A.migrationConfigMap]: "shop-migrations" };
    const object: k8s.V1Deployment = {
      metadata: {
        name, namespace: NAMESPACE, uid: `uid-${name}`, generation: 2, resourceVersion: String(this.rv++),
        annotations: {
          "deployment.kubernetes.io/revision": "2",
          [A.database]: GROUP, [A.schemaVersion]: version, [A.databaseSecret]: "shop-db",
          ...runner, [A.onFailure]: this.options.onFailure ?? "hold",
          [A.phase]: "Pending", [A.desiredReplicas]: "2", [A.progressDeadline]: "600",
          ...(applied ? { [A.appliedVersion]: applied } : {}),
        },
      },
      // As the hold leaves it: paused with no progress deadline, the old pods still serving (none for a first install).
      spec: {
        replicas: applied ? 2 : 0,
        paused: true,
        progressDeadlineSeconds: NO_PROGRESS_DEADLINE,
        selector: { matchLabels: { app: name } },
        template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: "app", image: `shop/${name}:${version}` }] } },
      },
    };
    this.deployments.set(name, { object, readyAt: this.now, podsGoneAt: this.now });
  }

  deployment(name: string): k8s.V1Deployment {
    return this.view(this.deployments.get(name)!);
  }

  private view(stored: StoredDeployment): k8s.V1Deployment {
    const object = structuredClone(stored.object);
    const replicas = object.spec?.replicas ?? 0;
    const ready = this.now >= stored.readyAt;
    object.status = {
      observedGeneration: object.metadata!.generation,
      replicas: ready ? replicas : 0,
      updatedReplicas: ready ? replicas : 0,
      availableReplicas: ready ? replicas : 0,
      readyReplicas: ready ? replicas : 0,
    };
    return object;
  }

  /** A user's annotation change (retry, abort), as kubectl annotate would make it. */
  annotate(name: string, annotations: Record<string, string>): void {
    const stored = this.deployments.get(name)!;
    Object.assign(stored.object.metadata!.annotations!, annotations);
    stored.object.metadata!.resourceVersion = String(this.rv++);
  }

  private patch(d: k8s.V1Deployment, patch: MergePatch): boolean {
    const stored = this.deployments.get(d.metadata!.name!)!;
    if (stored.object.metadata!.resourceVersion !== d.metadata!.resourceVersion) return false;
    const before = JSON.stringify(stored.object.spec);
    merge(stored.object as unknown as Record<string, unknown>, patch);
    stored.object.metadata!.resourceVersion = String(this.rv++);
    if (JSON.stringify(stored.object.spec) !== before) {
      stored.object.metadata!.generation = (stored.object.metadata!.generation ?? 0) + 1;
      const replicas = stored.object.spec?.replicas ?? 0;
      const lag = this.options.lagMs ?? LAG_MS;
      if (replicas === 0) stored.podsGoneAt = this.now + lag;
      else stored.readyAt = this.now + lag;
    }
    return true;
  }

  /** The group as the API would list it now. */
  group(): Group {
    return {
      namespace: NAMESPACE, name: GROUP,
      deployments: [...this.deployments.values()].map((s) => this.view(s)).sort((a, b) => a.metadata!.name!.localeCompare(b.metadata!.name!)),
    };
  }

  /** The pods still there, as the API would list them now. */
  podsLeft(): string[] {
    return [...this.deployments.values()]
      .filter((s) => (s.object.spec?.replicas ?? 0) > 0 || this.now < s.podsGoneAt)
      .map((s) => `${s.object.metadata!.name}-pod`);
  }

  deps(): WindowDeps {
    const world = this;
    const group = () => world.group();
    const target = {
      host: "db", port: 5432, user: "gate", password: "x", database: "shop",
      ...(this.options.pooler ? { pooler: { consoles: [{ host: "pooler", port: 6432, user: "admin", password: "x", database: "pgbouncer" }], database: "shop" } } : {}),
    };
    // As the API: one round of patches, then the conflicted members read again.
    const patchEach = async (g: Group, what: string, patchFor: (d: k8s.V1Deployment) => MergePatch | undefined): Promise<string[]> => {
      world.noteRecordStep(what);
      const patched: string[] = [];
      let members = g.deployments;
      for (let round = 0; round < 5; round++) {
        let conflicts = 0;
        for (const d of members) {
          const patch = patchFor(d);
          if (!patch) continue;
          world.write();
          if (world.patch(d, patch)) patched.push(d.metadata!.name!);
          else conflicts++;
        }
        if (conflicts === 0) {
          if (what === "restore them" && patched.length > 0) world.restorePatched();
          return patched;
        }
        world.apiReads.push(world.record.state?.step);
        members = group().deployments;
      }
      throw new Error("members keep changing");
    };
    return {
      records: {
        read: async () => structuredClone(world.record),
        save: async (_namespace, state, version) => {
          if (world.saveLagMs > 0) await new Promise((resolve) => setTimeout(resolve, world.saveLagMs));
          const failure = world.failSave?.(state);
          if (failure) throw failure;
          if (version !== world.record.version) throw new LostLeadership("record changed meanwhile");
          world.write("record");
          world.record = { state: structuredClone(state), version: String(world.rv++) };
          world.saves.push(structuredClone(state));
          return world.record.version!;
        },
      },
      members: {
        read: async () => {
          world.apiReads.push(world.record.state?.step);
          if (world.record.state?.step === "restore" && world.failingRestoreReads > 0) {
            world.failingRestoreReads--;
            throw new Error("the server is currently unable to handle the request");
          }
          if (world.restoreReadWaits && world.record.state?.step === "restore") {
            let timer: NodeJS.Timeout | undefined;
            const waited = await Promise.race([
              world.restored.then(() => false),
              new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), 1000))),
            ]);
            clearTimeout(timer);
            world.restoreWaitedForRead ||= waited;
          }
          return group();
        },
        cached: () => world.frozenCache?.group ?? group(),
        patchEach,
        // The real one stops each member's pods once that member's patch to zero is in: a member must be at zero first.
        scaleToZero: async (g, patchFor) => {
          const scaled = await patchEach(g, "scale them to zero", patchFor);
          world.write();
          const running = g.deployments.map((d) => world.deployment(d.metadata!.name!)).filter((d) => d.spec?.replicas !== 0);
          if (running.length > 0) throw new Error(`pods stopped while ${running.map((d) => d.metadata!.name).join(", ")} still wants replicas`);
          world.podsStopped++;
          return { scaled, podsListedAt: String(++world.podListVersion) };
        },
        cronJobs: async () => {
          world.cronJobReads.push(world.record.state?.step);
          return [...world.cronJobs.values()].map((c) => structuredClone(c));
        },
        patchCronJob: async (_ns, name, patch) => {
          world.write();
          merge(world.cronJobs.get(name) as unknown as Record<string, unknown>, patch as Record<string, unknown>);
        },
        podsLeft: async (_group, from, options) => {
          if (from === "cache" && world.frozenCache) return world.frozenCache.pods;
          if (from === "api") world.apiReads.push(world.record.state?.step);
          if (from === "api" && options?.cronJobs !== false) world.cronJobReads.push(world.record.state?.step);
          return world.podsLeft();
        },
        // Pods are names here: readiness goes by the members' rollout status.
        pods: async () => [],
        podsCacheReflects: (version) => !world.frozenCache && world.podCacheSeesAll && Number(version) <= world.podListVersion,
        // A first install has no earlier ReplicaSet to return to.
        replicaSets: async () => world.options.applied === undefined ? [] : [...world.deployments.values()].map((s) => ({
          metadata: { annotations: { "deployment.kubernetes.io/revision": "1" }, ownerReferences: [{ uid: s.object.metadata!.uid! }] },
          spec: { template: { metadata: { labels: { app: s.object.metadata!.name!, "pod-template-hash": "abc" } }, spec: { containers: [{ name: "app", image: `shop/${s.object.metadata!.name}:1` }] } } },
        })),
      },
      database: {
        target: async () => target,
        sqlFiles: async (_namespace, _name, window) => {
          world.fileReads.push({ step: world.record.state?.step, window });
          return world.files;
        },
        openAhead: async (_t, options) => {
          world.sessionsOpenedAhead.push({ statementTimeoutMs: options.statementTimeoutMs, podsLeft: world.podsLeft().length });
        },
        recordIfNothingPending: async (_t, _g, files, version) => {
          world.write();
          if (files.some((f) => !world.applied.has(f.name))) return false;
          world.versions.add(version);
          return true;
        },
        terminateOthers: async () => {
          world.write();
          if (world.options.pooler) world.pooler.paused = true;
          return {
            sessions: [{ pid: 42, user: "app", applicationName: "orders", state: "idle in transaction" }],
            ...(world.options.pooler ? { paused: { database: "shop", waitedMs: 12, drained: true } } : {}),
          };
        },
        checkPooler: async () => {
          if (world.pooler.refusesLogin) throw new StepFailure("PgBouncer at pooler:6432 refused the console login as admin: not allowed");
        },
        resumePooler: async () => {
          world.write();
          if (world.pooler.failingResumes > 0 && world.pooler.failingResumes--) throw new Error("connect ECONNREFUSED pooler:6432");
          world.pooler.paused = false;
        },
        // As the SQL runner: file by file, each committed before onFile hears of it.
        applySql: async (_t, _g, files, version, options) => {
          world.applyStartedAt.push(world.record.state?.step);
          await options.beforeWrites?.();
          world.noteRecordStep("migration");
          world.pooler.duringMigration.push(world.pooler.paused);
          const ran: string[] = [];
          for (const { name } of files.filter((f) => !world.applied.has(f.name))) {
            world.write();
            world.applied.set(name, (world.applied.get(name) ?? 0) + 1);
            ran.push(name);
            world.afterFile?.(name);
            options.onFile?.(name, 1);
          }
          world.versions.add(version);
          return { ran, recorded: !world.loseLedgerVersion && world.versions.has(version) };
        },
        versionRecorded: async (_t, _g, version) => {
          world.ledgerAsks++;
          return !world.loseLedgerVersion && world.versions.has(version);
        },
        claim: async () => {
          world.write();
        },
      },
      jobs: {
        ensure: async (_owner, state) => {
          world.noteRecordStep("migration");
          world.write();
          world.pooler.atJobStart.push(world.pooler.paused);
          const name = migrationJobName(state);
          if (!world.jobs.has(name)) world.jobs.set(name, { polls: 0, outcome: world.jobOutcome });
          return name;
        },
        stop: async (_namespace, name) => {
          world.write();
          const job = world.jobs.get(name);
          if (job) job.stopped = true;
        },
        state: async (_namespace, name): Promise<JobState> => {
          const job = world.jobs.get(name);
          if (!job) return { kind: "missing" };
          if (job.stopped) return { kind: "failed", message: `migration Job ${name} was stopped` };
          if (job.polls++ < world.jobPolls) return { kind: "running" };
          if (job.outcome === "failed") return { kind: "failed", message: `migration Job ${name} failed (BackoffLimitExceeded); pod exited with code 1` };
          world.versions.add(world.record.state?.version ?? "");
          return { kind: "complete" };
        },
      },
      maintenance: {
        turnOn: async (_namespace, owner) => {
          world.write();
          const owned = !world.flag.on || world.flag.owner === owner;
          if (!world.flag.on) world.flag = { on: true, owner };
          return { owned };
        },
        turnOff: async (_namespace, owner) => {
          world.write();
          if (world.flag.owner === owner) world.flag = { on: false, owner: "" };
        },
      },
      narrate: async (targets, type, reason, message) => {
        world.write();
        if (targets.length > 0) world.events.push({ type, reason, message });
      },
      showProgress: (_namespace, state) => world.progress.push(state.step),
      metrics: createMetrics(),
      log: pino({ level: "silent" }),
      now: () => world.now,
      leading: () => world.leading,
      newSuffix: () => "beef",
      settleMs: 500,
      readinessTimeoutMs: 60_000,
    };
  }
}
