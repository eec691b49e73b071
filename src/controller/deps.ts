import type * as k8s from "@kubernetes/client-node";
import type { DatabaseTarget } from "../core/database-secret.js";
import type { MergePatch, ReplicaSetLike } from "../core/member-patches.js";
import type { MigrationFile } from "../core/migrations.js";
import type { SqlOptions } from "../db/window-database.js";
import type { Runner } from "../core/member-spec.js";
import type { PodLike } from "../core/window-policy.js";
import type { Terminated, WindowState } from "../core/window.js";
import { LostLeadership } from "../k8s/leader.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";

/**
 * What the window controller needs from the world, as interfaces: the adapters in this
 * folder implement them against the API server and PostgreSQL, unit tests with fakes.
 */

/** One database group as read once at the start of a pass. */
export interface Group {
  namespace: string;
  name: string;
  /** Its Deployments, by name. */
  deployments: k8s.V1Deployment[];
}

export interface StoredWindow {
  state?: WindowState;
  /** resourceVersion of the record, for an optimistic update; undefined when it does not exist. */
  version?: string;
}

export interface WindowRecords {
  read(namespace: string, group: string): Promise<StoredWindow>;
  /** Writes the record guarded by `version`; returns the new one, or throws LostLeadership on conflict. */
  save(namespace: string, state: WindowState, version: string | undefined): Promise<string>;
}

export interface GroupMembers {
  /** The group as the API has it, whole objects: what every pass that decides or writes reads. */
  read(namespace: string, group: string): Promise<Group>;
  /**
   * The group from the informer cache, for the passes that only wait (drain, a Job,
   * readiness): no LIST every poll. Its Deployments are trimmed (no pod template beyond
   * container names) and may lag the API; a wait ends only once the API confirms it.
   */
  cached(namespace: string, group: string): Group;
  /**
   * Writes `patchFor`'s patch to every member it gives one for, each only over the member
   * as it was read (its uid and generation: spec and annotations, not status); members
   * changed meanwhile are read again and reconsidered. Returns the names patched.
   */
  patchEach(group: Group, what: string, patchFor: (d: k8s.V1Deployment) => MergePatch | undefined): Promise<string[]>;
  cronJobs(group: Group): Promise<k8s.V1CronJob[]>;
  patchCronJob(namespace: string, name: string, patch: MergePatch): Promise<void>;
  /**
   * Pods of the group's Deployments and of its CronJobs' Jobs that still exist (terminating
   * ones count), from the caches or the API; `cronJobs: false` (a group without any) reads no CronJob.
   */
  podsLeft(group: Group, from: "cache" | "api", options?: { cronJobs?: boolean }): Promise<string[]>;
  /** The namespace's pods, from the cache (trimmed) or the API. */
  pods(namespace: string, from: "cache" | "api"): Promise<readonly PodLike[]>;
  replicaSets(namespace: string): Promise<ReplicaSetLike[]>;
  /**
   * Scales the members to zero and stops each one's pods once its patch is in (its ReplicaSets
   * to zero, its pods deleted); returns the members patched and the resourceVersion of the pod list it read.
   */
  scaleToZero(group: Group, patchFor: (d: k8s.V1Deployment) => MergePatch | undefined): Promise<{ scaled: string[]; podsListedAt?: string }>;
  /** Whether the pod cache shows the pods as they were at `resourceVersion` or later. */
  podsCacheReflects(resourceVersion: string): boolean;
}

export interface WindowDatabase {
  /** The database a Secret points at; a missing or malformed Secret is a StepFailure. */
  target(namespace: string, secret: string): Promise<DatabaseTarget>;
  /**
   * The ConfigMap's SQL files. With `window` (the window's id and attempt), a read made for
   * the same window moments before is used: the drain reads them ahead for migrate. Without
   * it (the opening), always read afresh: a new version's files must be seen.
   */
  sqlFiles(namespace: string, configMap: string, window?: string): Promise<MigrationFile[]>;
  /** Records `version` and returns true when every file is applied already. */
  recordIfNothingPending(target: DatabaseTarget, group: string, files: MigrationFile[], version: string): Promise<boolean>;
  /** Opens the migration's session ahead, for terminate and migrate to use (never fails: they open their own without it). */
  openAhead(target: DatabaseTarget, options: { statementTimeoutMs: number }): Promise<void>;
  /** Terminates the database's other sessions; with the pooler's console, PAUSEs the pooler first. */
  terminateOthers(target: DatabaseTarget): Promise<Terminated>;
  /** Checks that the pooler's consoles accept the gate's login; a refusal is a StepFailure. */
  checkPooler(target: DatabaseTarget): Promise<void>;
  /** RESUMEs the pooler the Secret names (nothing without one); a pooler not paused counts as resumed. */
  resumePooler(target: DatabaseTarget): Promise<void>;
  /** Applies the pending files under the migration session's timeouts; returns the names applied and whether the ledger then records `version`. */
  applySql(target: DatabaseTarget, group: string, files: MigrationFile[], version: string, options: SqlOptions): Promise<{ ran: string[]; recorded: boolean }>;
  versionRecorded(target: DatabaseTarget, group: string, version: string): Promise<boolean>;
  /** Claims the database for the group; refuses (MigrationError) when another group owns it. */
  claim(target: DatabaseTarget, group: string): Promise<void>;
}

export type JobState = { kind: "missing" } | { kind: "running" } | { kind: "stopping" } | { kind: "complete" } | { kind: "failed"; message: string };

export interface MigrationJobs {
  /** Creates the window's Job (its name is deterministic: a second create finds the first); returns the name. */
  ensure(owner: k8s.V1Deployment, state: WindowState, runner: Extract<Runner, { kind: "job" }>, deadline: number): Promise<string>;
  state(namespace: string, name: string): Promise<JobState>;
  /** Deletes a running Job with its pods (foreground), so it cannot commit after the window gave up on it. */
  stop(namespace: string, name: string): Promise<void>;
}

export interface WindowMaintenance {
  turnOn(namespace: string, owner: string): Promise<{ owned: boolean }>;
  turnOff(namespace: string, owner: string): Promise<void>;
}

export type Narrate = (targets: readonly k8s.V1Deployment[], type: "Normal" | "Warning", reason: string, message: string) => Promise<void>;

export interface WindowDeps {
  records: WindowRecords;
  members: GroupMembers;
  database: WindowDatabase;
  jobs: MigrationJobs;
  maintenance: WindowMaintenance;
  /** Kubernetes Events on each target Deployment, queued: a step does not wait for them. */
  narrate: Narrate;
  /** Shows the step on the maintenance page, off the window's path (never waited for). */
  showProgress(namespace: string, state: WindowState): void;
  metrics: Pick<Metrics, "windows" | "migrationDuration" | "downtime" | "sessionsTerminated">;
  log: Logger;
  now(): number;
  leading(): boolean;
  /** A few random characters that make a window id unique. */
  newSuffix(): string;
  settleMs: number;
  readinessTimeoutMs: number;
}

/**
 * The deps as a step sees them: every call that writes (the record, members, Events, the
 * flag, the database, Jobs) first checks that this replica still leads, so a deposed
 * replica stops at its next write instead of undoing its successor's work. Every write
 * but an Event also waits for `recorded` (the window record's queued writes): a step's
 * reads go on while its record is written, its first change to the world waits for it (the
 * migration's, inside its session: connected, locked and knowing what is pending).
 */
export function fence(deps: WindowDeps, recorded: () => Promise<void> = async () => undefined): WindowDeps {
  const check = () => {
    if (!deps.leading()) throw new LostLeadership("this replica no longer leads the window controller");
  };
  const told = <A extends unknown[], R>(write: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    check();
    return write(...args);
  };
  const guard = <A extends unknown[], R>(write: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    check();
    await recorded();
    check();
    return write(...args);
  };
  const { records, members, database, jobs, maintenance } = deps;
  return {
    ...deps,
    records: { read: records.read.bind(records), save: guard(records.save.bind(records)) },
    members: {
      read: members.read.bind(members),
      cached: members.cached.bind(members),
      cronJobs: members.cronJobs.bind(members),
      podsLeft: members.podsLeft.bind(members),
      podsCacheReflects: members.podsCacheReflects.bind(members),
      pods: members.pods.bind(members),
      replicaSets: members.replicaSets.bind(members),
      patchEach: guard(members.patchEach.bind(members)),
      patchCronJob: guard(members.patchCronJob.bind(members)),
      scaleToZero: guard(members.scaleToZero.bind(members)),
    },
    database: {
      target: database.target.bind(database),
      sqlFiles: database.sqlFiles.bind(database),
      versionRecorded: database.versionRecorded.bind(database),
      checkPooler: database.checkPooler.bind(database),
      openAhead: database.openAhead.bind(database),
      recordIfNothingPending: guard(database.recordIfNothingPending.bind(database)),
      terminateOthers: guard(database.terminateOthers.bind(database)),
      resumePooler: guard(database.resumePooler.bind(database)),
      // The session, its lock and the pending files are ready while the record is written; the first write waits for it.
      applySql: told((target, group, files, version, options) =>
        database.applySql(target, group, files, version, { ...options, beforeWrites: async () => { await recorded(); check(); await options.beforeWrites?.(); } })),
      claim: guard(database.claim.bind(database)),
    },
    jobs: { state: jobs.state.bind(jobs), ensure: guard(jobs.ensure.bind(jobs)), stop: guard(jobs.stop.bind(jobs)) },
    maintenance: { turnOn: guard(maintenance.turnOn.bind(maintenance)), turnOff: guard(maintenance.turnOff.bind(maintenance)) },
    narrate: told(deps.narrate),
    showProgress: (namespace, state) => {
      if (deps.leading()) deps.showProgress(namespace, state);
    },
  };
}
