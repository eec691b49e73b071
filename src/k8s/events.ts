import { randomBytes } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../logger.js";
import { LostLeadership } from "./leader.js";

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
 * Request options that ask `allowed` as the request goes out: after its credentials are
 * applied (an await of their own, a token file or an exec plugin), in the last step before
 * the request is handed to a connection. An Event carries no resourceVersion, so no
 * apiserver refuses a stale one: a replica frozen between deciding to narrate and sending
 * (a pause, a long GC, SIGSTOP) would otherwise send it once it wakes, after another
 * replica took the Lease. What is left is a freeze while a new connection's handshake runs.
 */
export function sentOnlyWhile(allowed: () => boolean): k8s.ConfigurationOptions {
  return {
    middleware: [{
      // The object API chains its middleware as client-node's Observables (a promise inside).
      pre: (context) => new k8s.Observable(allowed()
        ? Promise.resolve(context)
        : Promise.reject(new LostLeadership("no longer leading: the Event is not sent"))),
      post: (response) => new k8s.Observable(Promise.resolve(response)),
    }],
    middlewareMergeStrategy: "append",
  };
}

/**
 * Records core/v1 Events on an object, so `kubectl describe` and `kubectl events`
 * narrate the window. A failed Event is logged, never fatal: the window goes on. `allowed`
 * (the controllers': still leading) is asked as each Event goes out (sentOnlyWhile).
 */
export function eventRecorder(kc: k8s.KubeConfig, component: string, log: Logger, allowed: () => boolean = () => true): EventRecorder {
  const api = kc.makeApiClient(k8s.CoreV1Api);
  const host = process.env.HOSTNAME ?? "";
  const options = sentOnlyWhile(allowed);
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
      await api.createNamespacedEvent({ namespace: target.namespace, body }, options);
    } catch (error) {
      if (error instanceof LostLeadership) {
        log.debug({ reason, object: `${target.namespace}/${target.name}` }, "event dropped: this replica no longer leads");
        return;
      }
      log.warn({ err: error, reason, object: `${target.namespace}/${target.name}` }, "could not record event");
    }
  };
}
