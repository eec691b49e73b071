import * as k8s from "@kubernetes/client-node";
import { windowStatus, WINDOW_API, type Condition } from "../core/window-record.js";
import { parseWindowState, type WindowState } from "../core/window.js";
import { apiStatus } from "../k8s/errors.js";
import { LostLeadership } from "../k8s/leader.js";
import type { StoredWindow, WindowRecords } from "./deps.js";

interface MigrationWindow {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: { group?: string };
  status?: { window?: unknown; conditions?: Condition[] };
}

const api = { group: WINDOW_API.group, version: WINDOW_API.version, plural: WINDOW_API.plural };

/** A record the controller can use, or a clear error naming the object to fix. */
export function windowOf(object: MigrationWindow): WindowState | undefined {
  const parsed = parseWindowState(object.status?.window);
  if (!parsed.ok) throw new Error(`migrationwindow ${object.metadata?.namespace}/${object.metadata?.name}: ${parsed.problem}`);
  return parsed.state;
}

/**
 * The window record is the group's MigrationWindow, beside its Deployments: `kubectl get
 * migrationwindows` shows it, it goes with the namespace, and a restarted gate resumes
 * from it. Writes go to the status subresource with the resourceVersion they read, so a
 * gate that lost leadership cannot overwrite its successor's progress.
 */
export class WindowStore implements WindowRecords {
  private readonly api: k8s.CustomObjectsApi;
  /** Conditions as last read, per record, so a write keeps their transition times. */
  private readonly conditions = new Map<string, Condition[]>();

  constructor(kc: k8s.KubeConfig) {
    this.api = kc.makeApiClient(k8s.CustomObjectsApi);
  }

  async read(namespace: string, group: string): Promise<StoredWindow> {
    let object: MigrationWindow;
    try {
      object = (await this.api.getNamespacedCustomObject({ ...api, namespace, name: group })) as MigrationWindow;
    } catch (error) {
      if (apiStatus(error) === 404) return {};
      throw error;
    }
    this.conditions.set(`${namespace}/${group}`, object.status?.conditions ?? []);
    const state = windowOf(object);
    return { ...(state ? { state } : {}), version: object.metadata?.resourceVersion };
  }

  /** Writes the record; returns the new resourceVersion. A conflict means another replica leads now. */
  async save(namespace: string, state: WindowState, version: string | undefined): Promise<string> {
    const key = `${namespace}/${state.group}`;
    try {
      // The status subresource ignores a status sent on create: make the object, then write its status.
      const resourceVersion = version ?? (await this.create(namespace, state.group));
      const status = windowStatus(state, this.conditions.get(key), new Date());
      const body: MigrationWindow = {
        apiVersion: `${WINDOW_API.group}/${WINDOW_API.version}`,
        kind: WINDOW_API.kind,
        metadata: { name: state.group, namespace, resourceVersion },
        spec: { group: state.group },
        status,
      };
      const saved = (await this.api.replaceNamespacedCustomObjectStatus({ ...api, namespace, name: state.group, body })) as MigrationWindow;
      this.conditions.set(key, status.conditions);
      return saved.metadata!.resourceVersion!;
    } catch (error) {
      if (apiStatus(error) === 409) throw new LostLeadership(`window record of ${key} changed meanwhile: another replica leads`);
      throw error;
    }
  }

  private async create(namespace: string, group: string): Promise<string> {
    const body: MigrationWindow = {
      apiVersion: `${WINDOW_API.group}/${WINDOW_API.version}`,
      kind: WINDOW_API.kind,
      metadata: { name: group, namespace },
      spec: { group },
    };
    const created = (await this.api.createNamespacedCustomObject({ ...api, namespace, body })) as MigrationWindow;
    return created.metadata!.resourceVersion!;
  }

  /** Every window record, for resuming after a restart and for `schema-gate status`. */
  async list(namespace?: string): Promise<Array<{ namespace: string; group: string; state?: WindowState }>> {
    const list = (namespace
      ? await this.api.listNamespacedCustomObject({ ...api, namespace })
      : await this.api.listClusterCustomObject(api)) as { items: MigrationWindow[] };
    return list.items.map((object) => {
      const state = windowOf(object);
      return { namespace: object.metadata!.namespace!, group: object.spec?.group ?? object.metadata!.name!, ...(state ? { state } : {}) };
    });
  }
}
