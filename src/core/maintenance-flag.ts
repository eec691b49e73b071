/**
 * The maintenance flag: the ConfigMap `schema-gate-maintenance` in an application's
 * namespace (README "Maintenance"). People write `enabled`, `message`, `retry-after` and
 * `page.html`; the gate writes `owner`, `since` and, while a window runs, `progress`.
 */
export const FLAG_NAME = "schema-gate-maintenance";

export const FlagKey = {
  enabled: "enabled",
  message: "message",
  retryAfter: "retry-after",
  pageHtml: "page.html",
  owner: "owner",
  since: "since",
  progress: "progress",
  routes: "routes",
} as const;

/** `owner` of a flag turned on by a person (kubectl, `schema-gate maintenance on`). */
export const MANUAL_OWNER = "manual";

export const DEFAULT_MESSAGE = "We are upgrading this service. It will be back in a few minutes.";
export const DEFAULT_RETRY_AFTER = 30;

/** How far a running window has come, as the page shows it. */
export interface Progress {
  version: string;
  step: string;
  /** 1-based position of `step` among `of` steps. */
  index: number;
  of: number;
  startedAt: string;
}

/** Where a request would have gone without maintenance: what the bypass token reaches. */
export interface Route {
  host?: string;
  path: string;
  pathType: "Exact" | "Prefix" | "ImplementationSpecific";
  /** e.g. `http://web.shop.svc:80`. */
  url: string;
}

export interface Flag {
  enabled: boolean;
  message: string;
  /** Whether `message` is the user's own (otherwise the default). */
  messageSet: boolean;
  retryAfter: number;
  pageHtml?: string;
  owner?: string;
  since?: string;
  progress?: Progress;
  routes: Route[];
  /** What in the ConfigMap could not be read, and what was used instead. */
  problems: string[];
}

const TRUE = new Set(["true", "on", "yes", "1"]);
const FALSE = new Set(["false", "off", "no", "0", ""]);

/** Reads a flag ConfigMap's data; nothing there (or no ConfigMap) means maintenance is off. */
export function parseFlag(data: Readonly<Record<string, string>> | undefined): Flag {
  const d = data ?? {};
  const problems: string[] = [];
  const rawEnabled = (d[FlagKey.enabled] ?? "").trim().toLowerCase();
  let enabled = TRUE.has(rawEnabled);
  if (!enabled && !FALSE.has(rawEnabled)) {
    problems.push(`${FlagKey.enabled}: "${d[FlagKey.enabled]}" is not "true" or "false"; maintenance stays off`);
    enabled = false;
  }
  let retryAfter = DEFAULT_RETRY_AFTER;
  const rawRetry = d[FlagKey.retryAfter]?.trim();
  if (rawRetry !== undefined && rawRetry !== "") {
    if (/^\d{1,6}$/.test(rawRetry)) retryAfter = Number(rawRetry);
    else problems.push(`${FlagKey.retryAfter}: "${rawRetry}" is not a number of seconds; using ${DEFAULT_RETRY_AFTER}`);
  }
  const message = d[FlagKey.message]?.trim() || DEFAULT_MESSAGE;
  const pageHtml = d[FlagKey.pageHtml]?.trim() ? d[FlagKey.pageHtml] : undefined;
  return {
    enabled,
    message,
    messageSet: Boolean(d[FlagKey.message]?.trim()),
    retryAfter,
    ...(pageHtml !== undefined ? { pageHtml } : {}),
    ...(d[FlagKey.owner] ? { owner: d[FlagKey.owner] } : {}),
    ...(d[FlagKey.since] ? { since: d[FlagKey.since] } : {}),
    ...optionalJson(d[FlagKey.progress], "progress", isProgress, problems),
    routes: optionalJson(d[FlagKey.routes], "routes", isRoutes, problems).routes ?? [],
    problems,
  };
}

function optionalJson<K extends string, T>(
  text: string | undefined,
  key: K,
  valid: (value: unknown) => value is T,
  problems: string[],
): { [P in K]?: T } {
  if (!text) return {};
  try {
    const value: unknown = JSON.parse(text);
    if (valid(value)) return { [key]: value } as { [P in K]?: T };
  } catch {
    // reported below
  }
  problems.push(`${key}: not the JSON the gate writes; ignored`);
  return {};
}

function isProgress(value: unknown): value is Progress {
  const p = value as Progress;
  return typeof p === "object" && p !== null && typeof p.step === "string" && typeof p.index === "number" &&
    typeof p.of === "number" && typeof p.version === "string";
}

function isRoutes(value: unknown): value is Route[] {
  return Array.isArray(value) && value.every((r: Route) => typeof r?.path === "string" && typeof r?.url === "string");
}

/**
 * The data to merge into the flag to turn it on for `owner`; undefined when it is on already.
 * A message the user wrote is kept: theirs is the one their visitors should read.
 */
export function turnOnData(current: Flag, owner: string, message: string | undefined, now: Date): Record<string, string> | undefined {
  if (current.enabled) return undefined;
  return {
    [FlagKey.enabled]: "true",
    [FlagKey.owner]: owner,
    [FlagKey.since]: now.toISOString(),
    ...(message && !current.messageSet ? { [FlagKey.message]: message } : {}),
  };
}

/**
 * The data to merge into the flag to turn it off on behalf of `owner`, or why not: the gate
 * never turns off a flag someone else turned on.
 */
export function turnOffData(current: Flag, owner: string): { data?: Record<string, string | null>; refused?: string } {
  if (!current.enabled) return {};
  if ((current.owner ?? MANUAL_OWNER) !== owner) {
    return { refused: `maintenance was turned on by ${current.owner ?? MANUAL_OWNER}${current.since ? ` at ${current.since}` : ""}` };
  }
  return { data: { [FlagKey.enabled]: "false", [FlagKey.owner]: null, [FlagKey.since]: null, [FlagKey.progress]: null } };
}

/** Writes `owner: manual` and `since` on a flag someone turned on by hand without them. */
export function claimManualData(current: Flag, now: Date): Record<string, string> | undefined {
  if (!current.enabled || current.owner) return undefined;
  return { [FlagKey.owner]: MANUAL_OWNER, [FlagKey.since]: now.toISOString() };
}
