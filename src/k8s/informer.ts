import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../logger.js";

export interface WatchedCache<T extends k8s.KubernetesObject> {
  list(namespace?: string): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  /** Synced, and not failing for longer than the grace: what readiness reports. */
  synced(): boolean;
  /**
   * Whether the cache is known to show the state at `resourceVersion` or later: it has
   * handled an object of that version or a newer one since it last failed. Resource
   * versions of one resource compare as integers (Kubernetes 1.35, KEP-5504); one that
   * does not parse as one compares as not reflected.
   */
  reflects(resourceVersion: string): boolean;
  on(event: "add" | "update" | "delete", handler: (object: T) => void): void;
  stop(): Promise<void>;
}

/** One page of the initial list (the apiserver's `limit` and `continue`). */
export interface ListPage {
  limit: number;
  _continue?: string;
}

export interface InformerOptions<T extends k8s.KubernetesObject = k8s.KubernetesObject> {
  /** What the cache keeps of each object (see trim.ts); the whole object when unset. */
  transform?: (object: T) => T;
  /** A field selector for the list and the watch (objects leaving it arrive as deletions). */
  fieldSelector?: string;
  /** First pause before restarting a failed watch; it doubles up to 30 s. */
  restartDelayMs?: number;
  /** How long a cache may be failing before it counts as not synced (readiness turns false). */
  staleAfterMs?: number;
  now?: () => number;
  /** The client's informer (a fake in unit tests). */
  make?: typeof k8s.makeInformer;
}

/** Objects per page of the initial list, as client-go's reflector pages it: the whole list is never in memory at once. */
const PAGE_SIZE = 500;

/** The client's watch, with each object transformed before the cache stores it. */
function transformingWatch<T extends k8s.KubernetesObject>(kc: k8s.KubeConfig, transform: (object: T) => T): k8s.Watch {
  const watch = new k8s.Watch(kc);
  const original = watch.watch.bind(watch);
  watch.watch = (path, query, callback, done) =>
    original(path, query, (phase, object, raw) => {
      // ERROR carries a Status and BOOKMARK only a resourceVersion: both pass as they are.
      const objectEvent = phase === "ADDED" || phase === "MODIFIED" || phase === "DELETED";
      callback(phase, objectEvent ? transform(object as T) : object, raw);
    }, done);
  return watch;
}

/** The initial list, page by page, each page transformed before the next is read. */
function pagedList<T extends k8s.KubernetesObject>(
  list: (page: ListPage) => Promise<k8s.KubernetesListObject<T>>,
  transform: (object: T) => T,
): () => Promise<k8s.KubernetesListObject<T>> {
  return async () => {
    const items: T[] = [];
    let page: k8s.KubernetesListObject<T>;
    let next: string | undefined;
    do {
      page = await list({ limit: PAGE_SIZE, ...(next ? { _continue: next } : {}) });
      for (const item of page.items) items.push(transform(item));
      next = page.metadata?._continue;
    } while (next);
    return { ...page, items };
  };
}

/**
 * An informer that keeps itself running. The client's informer stops on most watch
 * errors (an expired resourceVersion, a dropped connection); this restarts it with a
 * growing back-off until a restart succeeds, and a cache that has been failing for
 * longer than the grace reports itself not synced, so `/readyz` says so instead of
 * serving from a cache that silently went stale.
 */
export async function startInformer<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  list: (page: ListPage) => Promise<k8s.KubernetesListObject<T>>,
  log: Logger,
  labelSelector?: string,
  options: InformerOptions<T> = {},
): Promise<WatchedCache<T>> {
  const now = options.now ?? (() => performance.now());
  const firstDelay = options.restartDelayMs ?? 1000;
  const transform = options.transform ?? ((object: T) => object);
  const listAll = pagedList(list, transform);
  const informer = options.make
    ? options.make<T>(kc, path, listAll, labelSelector)
    : new k8s.ListWatch<T>(path, transformingWatch(kc, transform), listAll, false, labelSelector, options.fieldSelector);
  let stopped = false;
  let failingSince: number | undefined;
  let restarting = false;

  const restart = (delay: number) => {
    if (stopped) return;
    restarting = true;
    setTimeout(() => {
      if (stopped) return;
      informer.start().then(
        () => {
          restarting = false;
          failingSince = undefined;
          log.info({ path }, "informer restarted");
        },
        (error: unknown) => {
          log.warn({ path, err: error }, "informer restart failed; trying again");
          restart(Math.min(delay * 2, 30_000));
        },
      );
    }, delay).unref?.();
  };

  // The newest resourceVersion handled: events come in the order of their versions.
  let newest: bigint | undefined;
  const note = (object: T) => {
    const version = comparableVersion(object.metadata?.resourceVersion);
    if (version !== undefined && (newest === undefined || version > newest)) newest = version;
  };
  informer.on(k8s.ADD, note);
  informer.on(k8s.UPDATE, note);
  informer.on(k8s.DELETE, note);

  informer.on(k8s.ERROR, (error) => {
    if (stopped) return;
    newest = undefined; // until the restarted watch delivers again
    failingSince ??= now();
    log.warn({ path, err: error }, "watch ended; restarting informer");
    if (!restarting) restart(firstDelay);
  });
  await informer.start();
  const staleAfter = options.staleAfterMs ?? 30_000;
  return {
    list: (namespace) => informer.list(namespace),
    get: (name, namespace) => informer.get(name, namespace),
    synced: () => failingSince === undefined || now() - failingSince < staleAfter,
    reflects: (resourceVersion) => {
      const wanted = comparableVersion(resourceVersion);
      return wanted !== undefined && newest !== undefined && newest >= wanted;
    },
    on: (event, handler) => informer.on(event, handler),
    stop: async () => {
      stopped = true;
      await informer.stop();
    },
  };
}

/** A resourceVersion as the integer it is (KEP-5504: digits, no leading zero); undefined for anything else. */
function comparableVersion(resourceVersion: string | undefined): bigint | undefined {
  return resourceVersion !== undefined && /^[1-9][0-9]*$/.test(resourceVersion) ? BigInt(resourceVersion) : undefined;
}
