import { randomBytes } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../logger.js";

export interface EventTarget {
  kind: string;
  apiVersion: string;
  name: string;
  namespace: string;
  uid?: string;
}

export type EventRecorder = (target: EventTarget, type: "Normal" | "Warning", reason: string, message: string) => Promise<void>;

// The apiserver rejects an Event message over 1 KiB in some versions; keep the start.
const MAX_MESSAGE = 1024;

/**
 * Records core/v1 Events on an object, so `kubectl describe` and `kubectl events`
 * narrate the window. A failed Event is logged, never fatal: the window goes on.
 */
export function eventRecorder(kc: k8s.KubeConfig, component: string, log: Logger): EventRecorder {
  const api = kc.makeApiClient(k8s.CoreV1Api);
  const host = process.env.HOSTNAME ?? "";
  return async (target, type, reason, message) => {
    const now = new Date();
    const body: k8s.CoreV1Event = {
      metadata: { name: `${target.name}.${randomBytes(8).toString("hex")}`, namespace: target.namespace },
      involvedObject: { kind: target.kind, apiVersion: target.apiVersion, name: target.name, namespace: target.namespace, uid: target.uid },
      type,
      reason,
      message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message,
      source: { component, host },
      reportingComponent: component,
      reportingInstance: host || component,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await api.createNamespacedEvent({ namespace: target.namespace, body });
    } catch (error) {
      log.warn({ err: error, reason, object: `${target.namespace}/${target.name}` }, "could not record event");
    }
  };
}
