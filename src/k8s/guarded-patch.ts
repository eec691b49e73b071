import fastJsonPatch, { type Operation } from "fast-json-patch";

const { escapePathComponent } = fastJsonPatch;

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

/** A merge patch's object as it lands where nothing was: its nulls (deletions) have nothing to delete. */
function withoutNulls(value: Json): Json {
  return Object.fromEntries(Object.entries(value).flatMap(([key, v]) =>
    v === null || v === undefined ? [] : [[key, isObject(v) ? withoutNulls(v) : v]]));
}

/**
 * A JSON merge patch (RFC 7386) as JSON Patch operations (RFC 6902) on `original`: the same
 * result on that object. An object member is added or replaced (`add` does both), a null
 * removes what is there, an object merges into the object it meets and replaces anything else.
 */
export function mergeAsOperations(original: unknown, merge: Json, path = ""): Operation[] {
  // An undefined member is no member: a merge patch sent as JSON would not carry it either.
  return Object.entries(merge).filter(([, value]) => value !== undefined).flatMap(([key, value]): Operation[] => {
    const at = `${path}/${escapePathComponent(key)}`;
    const current = isObject(original) ? original[key] : undefined;
    if (value === null) return current === undefined ? [] : [{ op: "remove", path: at }];
    if (isObject(value) && isObject(current)) return mergeAsOperations(current, value, at);
    return [{ op: "add", path: at, value: isObject(value) ? withoutNulls(value) : value }];
  });
}

/**
 * `merge` as a JSON Patch that applies only to the object as it was read: the same uid (not
 * one deleted and made again under its name) and the same generation. A Deployment's
 * generation moves with every change to its spec or its annotations, and not with a write
 * of its status, which the controllers make all through a window: a guard on the
 * resourceVersion would fail on those too, and each such conflict cost a read of the group
 * and another round of writes inside the downtime. The apiserver refuses a failed test with
 * 422 (Invalid), as it refuses an invalid patch; see `testsStillHold` to tell them apart.
 * The operations follow `object`'s shape: a trimmed copy (an informer's) serves for patches
 * that merge only into what it keeps (annotations, replicas, paused), not for a template.
 */
export function guardedPatch(object: { metadata?: { uid?: string; generation?: number } }, merge: Json): Operation[] {
  const { uid, generation } = object.metadata ?? {};
  if (uid === undefined || generation === undefined) throw new Error("a guarded patch needs the uid and generation the object was read at");
  return [
    { op: "test", path: "/metadata/uid", value: uid },
    { op: "test", path: "/metadata/generation", value: generation },
    ...mergeAsOperations(object, merge),
  ];
}

/** Whether `current` is still the object a guarded patch was made for (else its 422 was the guard's). */
export function testsStillHold(read: { metadata?: { uid?: string; generation?: number } }, current: { metadata?: { uid?: string; generation?: number } }): boolean {
  return read.metadata?.uid === current.metadata?.uid && read.metadata?.generation === current.metadata?.generation;
}
