import * as k8s from "@kubernetes/client-node";
import { isSwitched, switchable } from "../core/ingress-switch.js";
import {
  FLAG_NAME,
  FlagKey,
  MANUAL_OWNER,
  parseFlag,
  turnOffData,
  turnOnData,
  type Progress,
} from "../core/maintenance-flag.js";
import { MANAGED_BY, MERGE_PATCH } from "../k8s/constants.js";
import { apiStatus } from "../k8s/errors.js";
import { LostLeadership } from "../k8s/leader.js";
import type { WatchedCache } from "../k8s/informer.js";
import { pollUntil, sleep } from "../util/wait.js";

/**
 * How a window turns a namespace's maintenance mode on and off. `turnOn` answers whether
 * this window now owns the flag (it does not when someone had already turned it on by
 * hand), and `turnOff` only ever clears a flag the given owner set.
 */
export interface MaintenanceSwitch {
  turnOn(namespace: string, owner: string): Promise<{ owned: boolean }>;
  turnOff(namespace: string, owner: string): Promise<void>;
  /** Shows a running window's progress on the maintenance page. */
  progress(namespace: string, progress: Progress): Promise<void>;
}

/** A switch that does nothing: for gates run without the maintenance feature. */
export const noMaintenance: MaintenanceSwitch = {
  turnOn: async () => ({ owned: false }),
  turnOff: async () => undefined,
  progress: async () => undefined,
};


export class FlagNotOwned extends Error {}

/**
 * The flag ConfigMap as a switch. Reads and writes go to the API (not a cache), and every
 * write carries the resourceVersion it read, so a person toggling the flag at the same
 * moment is never overwritten: the conflicting write is retried on what they wrote.
 */
export class FlagSwitch implements MaintenanceSwitch {
  private readonly core: k8s.CoreV1Api;

  constructor(
    kc: k8s.KubeConfig,
    /** Ingresses, to wait until the maintenance controller switched (or restored) them. */
    private readonly ingresses: WatchedCache<k8s.V1Ingress> | undefined,
    private readonly timing: { switchTimeoutMs?: number; propagationMs?: number } = {},
    /**
     * For the window controller: whether this replica still leads, asked between the read
     * and the write, so a replica frozen while its read was in flight writes nothing when
     * it resumes (a successor leads by then).
     */
    private readonly leading?: () => boolean,
  ) {
    this.core = kc.makeApiClient(k8s.CoreV1Api);
  }

  async turnOn(namespace: string, owner: string): Promise<{ owned: boolean }> {
    let turnedOn = false;
    const owned = await this.write(namespace, (current) => {
      const flag = parseFlag(current?.data);
      turnedOn = !flag.enabled;
      if (flag.enabled) return { result: flag.owner === owner };
      return { result: true, data: turnOnData(flag, owner, undefined, new Date()) };
    });
    await this.waitForIngresses(namespace, true);
    // The Ingress objects are switched; the controllers serving them follow a moment later
    // (a reload, a sync). Until they do, they still send requests to the application's
    // pods, which the next step stops.
    if (turnedOn && this.ingresses?.list(namespace).some(switchable)) await sleep(this.timing.propagationMs ?? 0);
    return { owned };
  }

  async turnOff(namespace: string, owner: string): Promise<void> {
    const off = await this.write(namespace, (current) => {
      const { data, refused } = turnOffData(parseFlag(current?.data), owner);
      return { result: refused === undefined, data };
    });
    if (off) await this.waitForIngresses(namespace, false);
  }

  async progress(namespace: string, progress: Progress): Promise<void> {
    await this.write(namespace, (current) =>
      parseFlag(current?.data).enabled ? { result: undefined, data: { [FlagKey.progress]: JSON.stringify(progress) } } : { result: undefined },
    );
  }

  /** Sets the flag for a person (`schema-gate maintenance on|off`). */
  async setManual(namespace: string, on: boolean, options: { message?: string; retryAfter?: number; force?: boolean }) {
    return this.write(namespace, (current) => {
      const flag = parseFlag(current?.data);
      const extra: Record<string, string> = {
        ...(options.message !== undefined ? { [FlagKey.message]: options.message } : {}),
        ...(options.retryAfter !== undefined ? { [FlagKey.retryAfter]: String(options.retryAfter) } : {}),
      };
      if (on) {
        const data = turnOnData(flag, MANUAL_OWNER, undefined, new Date());
        return { result: flag, data: data || Object.keys(extra).length ? { ...data, ...extra } : undefined };
      }
      // --force acts as whoever owns the flag (a window that is stuck, say).
      const off = turnOffData(flag, options.force ? (flag.owner ?? MANUAL_OWNER) : MANUAL_OWNER);
      if (off.refused) throw new FlagNotOwned(`${off.refused}; it ends with that window (or use --force)`);
      return { result: flag, data: off.data };
    });
  }

  private async read(namespace: string): Promise<k8s.V1ConfigMap | undefined> {
    return this.core.readNamespacedConfigMap({ name: FLAG_NAME, namespace }).catch((error: unknown) => {
      if (apiStatus(error) === 404) return undefined;
      throw error;
    });
  }

  /** Read, decide, write with the read resourceVersion; on a conflict, again. */
  private async write<T>(
    namespace: string,
    decide: (current: k8s.V1ConfigMap | undefined) => { result: T; data?: Record<string, string | null> | undefined },
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.read(namespace);
      const { result, data } = decide(current);
      if (!data) return result;
      if (this.leading && !this.leading()) throw new LostLeadership(`no longer leading: the maintenance flag of ${namespace} is left to the leader`);
      try {
        if (!current) {
          const values = Object.fromEntries(Object.entries(data).filter((e): e is [string, string] => e[1] !== null));
          await this.core.createNamespacedConfigMap({
            namespace,
            body: { metadata: { name: FLAG_NAME, labels: { ...MANAGED_BY } }, data: values },
          });
        } else {
          await this.core.patchNamespacedConfigMap(
            { name: FLAG_NAME, namespace, body: { metadata: { resourceVersion: current.metadata?.resourceVersion }, data } },
            MERGE_PATCH,
          );
        }
        return result;
      } catch (error) {
        if ((apiStatus(error) !== 409 && apiStatus(error) !== 404) || attempt >= 5) throw error;
      }
    }
  }

  /** Waits (bounded) until the namespace's annotated Ingresses are switched, or all restored. */
  private async waitForIngresses(namespace: string, on: boolean): Promise<void> {
    const cache = this.ingresses;
    if (!cache) return;
    const done = () =>
      on
        ? cache.list(namespace).filter(switchable).every(isSwitched)
        : !cache.list(namespace).some(isSwitched);
    await pollUntil(async () => (done() ? true : undefined), {
      timeoutMs: this.timing.switchTimeoutMs ?? 60_000,
      intervalMs: 100,
      what: on ? `the Ingresses of ${namespace} to switch to the maintenance backend` : `the Ingresses of ${namespace} to be restored`,
    });
  }
}
