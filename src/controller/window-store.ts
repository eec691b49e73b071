import * as k8s from "@kubernetes/client-node";
import { parseWindowState, windowConfigMapName, type WindowState } from "../core/window.js";
import { WINDOW_RECORD_LABELS, WINDOW_SELECTOR } from "../k8s/constants.js";
import { apiStatus } from "../k8s/errors.js";
import { LostLeadership } from "../k8s/leader.js";
import type { StoredWindow, WindowRecords } from "./deps.js";

export const WINDOW_KEY = "window.json";

/**
 * The window record lives in a ConfigMap beside the group's Deployments, so `kubectl get
 * configmap schema-gate-window-<group> -o yaml` shows it, it goes with the namespace, and a
 * restarted gate resumes from it. Updates carry the resourceVersion they read: a gate
 * that lost leadership cannot overwrite its successor's progress.
 */
export class WindowStore implements WindowRecords {
  private readonly api: k8s.CoreV1Api;

  constructor(kc: k8s.KubeConfig) {
    this.api = kc.makeApiClient(k8s.CoreV1Api);
  }

  async read(namespace: string, group: string): Promise<StoredWindow> {
    let map: k8s.V1ConfigMap;
    try {
      map = await this.api.readNamespacedConfigMap({ name: windowConfigMapName(group), namespace });
    } catch (error) {
      if (apiStatus(error) === 404) return {};
      throw error;
    }
    const parsed = parseWindowState(map.data?.[WINDOW_KEY]);
    if (!parsed.ok) throw new Error(`configmap ${namespace}/${windowConfigMapName(group)}: ${parsed.problem}`);
    return { ...(parsed.state ? { state: parsed.state } : {}), version: map.metadata?.resourceVersion };
  }

  /** Writes the record; returns the new resourceVersion. A conflict means another replica leads now. */
  async save(namespace: string, state: WindowState, version: string | undefined): Promise<string> {
    const body: k8s.V1ConfigMap = {
      metadata: {
        name: windowConfigMapName(state.group),
        namespace,
        labels: { ...WINDOW_RECORD_LABELS, "schema-gate.dev/database": state.group },
        ...(version ? { resourceVersion: version } : {}),
      },
      data: { [WINDOW_KEY]: `${JSON.stringify(state, null, 2)}\n` },
    };
    try {
      const saved = version
        ? await this.api.replaceNamespacedConfigMap({ name: body.metadata!.name!, namespace, body })
        : await this.api.createNamespacedConfigMap({ namespace, body });
      return saved.metadata!.resourceVersion!;
    } catch (error) {
      if (apiStatus(error) === 409) throw new LostLeadership(`window record of ${namespace}/${state.group} changed meanwhile: another replica leads`);
      throw error;
    }
  }

  /** Namespace and group of every window record, for resuming after a restart. */
  async list(): Promise<Array<{ namespace: string; group: string }>> {
    const maps = await this.api.listConfigMapForAllNamespaces({ labelSelector: WINDOW_SELECTOR });
    return maps.items.map((m) => ({
      namespace: m.metadata!.namespace!,
      group: m.metadata!.labels?.["schema-gate.dev/database"] ?? "",
    }));
  }
}
