import { A, type Annotations } from "./annotations.js";
import { sidecarPort } from "./sidecar-injection.js";
import { parseDuration } from "./duration.js";

export type Runner =
  | { kind: "sql"; configMap: string }
  | { kind: "job"; command: string[]; container?: string };

/** What one opted-in Deployment asks of the gate, read from its annotations. */
export interface MemberSpec {
  database: string;
  version?: string;
  secret?: string;
  runner?: Runner;
  onFailure: "hold" | "rollback";
  timeoutSeconds: number;
  maintenance: boolean;
  sidecarPort?: number;
  allowDowngrade: boolean;
}

export const DEFAULT_TIMEOUT_SECONDS = 30 * 60;
const MAX_TIMEOUT_SECONDS = 24 * 3600;

// Group names end up in object names (Leases, Jobs), so they follow DNS-1123 label rules.
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$/;

export type SpecResult = { ok: true; spec: MemberSpec } | { ok: false; problems: string[] };

function bool(annotations: Annotations, name: string, fallback: boolean, problems: string[]): boolean {
  const value = annotations[name];
  if (value === undefined) return fallback;
  if (value === "true" || value === "false") return value === "true";
  problems.push(`${name}: "${value}" is not a boolean; use "true" or "false"`);
  return fallback;
}

function command(value: string, problems: string[]): string[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    problems.push(
      `${A.migrationCommand}: ${JSON.stringify(value)} is not JSON; give the command as a JSON array of strings, ` +
        `e.g. '["./manage", "migrate"]'`,
    );
    return undefined;
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((part) => typeof part === "string")) {
    problems.push(
      `${A.migrationCommand}: ${JSON.stringify(value)} must be a non-empty JSON array of strings, e.g. '["./manage", "migrate"]'`,
    );
    return undefined;
  }
  return parsed as string[];
}

function checkNames(annotations: Annotations, problems: string[]): void {
  const database = annotations[A.database] ?? "";
  if (!LABEL.test(database)) {
    problems.push(
      `${A.database}: "${database}" is not a valid database group name; use lowercase letters, digits and "-" ` +
        `(at most 63 characters), e.g. "orders-db"`,
    );
  }
  const version = annotations[A.schemaVersion];
  if (version !== undefined && !VERSION.test(version)) {
    problems.push(
      `${A.schemaVersion}: "${version}" is not a usable version; use 1-63 letters, digits, ".", "_", "+" or "-" ` +
        `starting with a letter or digit, e.g. "42" or "v1.4.0"`,
    );
  }
  const secret = annotations[A.databaseSecret];
  if (secret !== undefined && !SUBDOMAIN.test(secret)) {
    problems.push(`${A.databaseSecret}: "${secret}" is not a valid Secret name; name a Secret in this namespace`);
  }
}

/** The runner a member names: SQL files of a ConfigMap, or a command run as a Job in one of its containers. */
function readRunner(annotations: Annotations, containerNames: string[], problems: string[]): Runner | undefined {
  const configMap = annotations[A.migrationConfigMap];
  const commandText = annotations[A.migrationCommand];
  const container = annotations[A.migrationContainer];
  if (configMap !== undefined && commandText !== undefined) {
    problems.push(
      `${A.migrationConfigMap} and ${A.migrationCommand} are both set; keep exactly one: ` +
        `SQL files applied by the gate, or a command run as a Job`,
    );
    return undefined;
  }
  if (configMap !== undefined) {
    if (!SUBDOMAIN.test(configMap)) {
      problems.push(`${A.migrationConfigMap}: "${configMap}" is not a valid ConfigMap name; name a ConfigMap in this namespace`);
    }
    return { kind: "sql", configMap };
  }
  if (commandText === undefined) {
    if (container !== undefined) problems.push(`${A.migrationContainer} is set without ${A.migrationCommand}; add the command or remove it`);
    return undefined;
  }
  const parsed = command(commandText, problems);
  if (container !== undefined && !containerNames.includes(container)) {
    problems.push(
      `${A.migrationContainer}: "${container}" is not a container of this pod template; ` +
        `use one of: ${containerNames.join(", ") || "(none)"}`,
    );
  } else if (container === undefined && containerNames.length > 1) {
    problems.push(
      `${A.migrationCommand} needs ${A.migrationContainer} because the pod template has ${containerNames.length} ` +
        `containers; set it to one of: ${containerNames.join(", ")}`,
    );
  }
  return parsed ? { kind: "job", command: parsed, ...(container !== undefined ? { container } : {}) } : undefined;
}

/** A version, a migration and a Secret come together: each without the others is a mistake. */
function checkTogether(annotations: Annotations, problems: string[]): void {
  const version = annotations[A.schemaVersion];
  const migration = annotations[A.migrationConfigMap] !== undefined || annotations[A.migrationCommand] !== undefined;
  if (version !== undefined && !migration) {
    problems.push(
      `${A.schemaVersion} is set but no migration is given; add ${A.migrationConfigMap} (SQL files applied by the gate) ` +
        `or ${A.migrationCommand} (a Job from this Deployment's image)`,
    );
  }
  if (version === undefined && migration) {
    problems.push(`a migration is given but ${A.schemaVersion} is not set; add the schema version this release needs`);
  }
  if (version !== undefined && annotations[A.databaseSecret] === undefined) {
    problems.push(
      `${A.schemaVersion} is set but ${A.databaseSecret} is not; name the Secret (key "url" or PGHOST/PGUSER/...) ` +
        `the gate uses to reach the database`,
    );
  }
}

function readTimeout(annotations: Annotations, problems: string[]): number {
  const text = annotations[A.timeout];
  if (text === undefined) return DEFAULT_TIMEOUT_SECONDS;
  const parsed = parseDuration(text);
  if (parsed === undefined || parsed <= 0 || parsed > MAX_TIMEOUT_SECONDS) {
    problems.push(`${A.timeout}: "${text}" is not a duration between 1s and 24h; write e.g. "15m" or "1h30m"`);
    return DEFAULT_TIMEOUT_SECONDS;
  }
  return parsed;
}

/**
 * Reads and checks a Deployment's schema-gate annotations. Every problem names the
 * annotation, the value found and what to write instead, all of them at once.
 */
export function readMemberSpec(annotations: Annotations, containerNames: string[]): SpecResult {
  const problems: string[] = [];
  checkNames(annotations, problems);
  const runner = readRunner(annotations, containerNames, problems);
  checkTogether(annotations, problems);

  const onFailure = annotations[A.onFailure] ?? "hold";
  if (onFailure !== "hold" && onFailure !== "rollback") {
    problems.push(`${A.onFailure}: "${onFailure}" is not a failure policy; use "hold" or "rollback"`);
  }
  const timeoutSeconds = readTimeout(annotations, problems);
  const maintenance = bool(annotations, A.maintenance, true, problems);
  const allowDowngrade = bool(annotations, A.allowDowngrade, false, problems);
  const sidecar = sidecarPort(annotations);
  if (sidecar.problem) problems.push(sidecar.problem);
  const abort = annotations[A.abort];
  if (abort !== undefined && abort !== "true" && abort !== "false") {
    problems.push(`${A.abort}: "${abort}" must be "true" to end the window, or be removed`);
  }

  if (problems.length > 0) return { ok: false, problems };
  const version = annotations[A.schemaVersion];
  const secret = annotations[A.databaseSecret];
  return {
    ok: true,
    spec: {
      database: annotations[A.database] ?? "",
      onFailure: onFailure as MemberSpec["onFailure"],
      timeoutSeconds,
      maintenance,
      allowDowngrade,
      ...(version !== undefined ? { version } : {}),
      ...(secret !== undefined ? { secret } : {}),
      ...(runner ? { runner } : {}),
      ...(sidecar.port !== undefined ? { sidecarPort: sidecar.port } : {}),
    },
  };
}
