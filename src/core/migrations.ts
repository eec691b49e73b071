import { createHash } from "node:crypto";

/** One SQL file of a migration ConfigMap. */
export interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export interface AppliedFile {
  name: string;
  checksum: string;
}

export const checksum = (sql: string) => createHash("sha256").update(sql, "utf8").digest("hex");

/** The `*.sql` keys of a ConfigMap in name order (byte order, so 010 sorts after 009). */
export function migrationFiles(data: Record<string, string> | undefined): MigrationFile[] {
  return Object.entries(data ?? {})
    .filter(([name]) => name.endsWith(".sql"))
    .sort(([a], [b]) => byName(a, b))
    .map(([name, sql]) => ({ name, sql, checksum: checksum(sql) }));
}

export type PendingResult = { ok: true; pending: MigrationFile[] } | { ok: false; problem: string };

/**
 * The files not yet in the history. An applied file whose content changed is an error:
 * the database no longer matches what the ConfigMap says it ran.
 */
export function pendingFiles(files: MigrationFile[], applied: AppliedFile[]): PendingResult {
  const history = new Map(applied.map((a) => [a.name, a.checksum]));
  for (const file of files) {
    const recorded = history.get(file.name);
    if (recorded !== undefined && recorded !== file.checksum) {
      return {
        ok: false,
        problem:
          `${file.name} was edited after it was applied (checksum ${recorded.slice(0, 12)} in the history, ` +
          `${file.checksum.slice(0, 12)} now); restore its applied content and put the change in a new file`,
      };
    }
  }
  const pending = files.filter((file) => !history.has(file.name));
  // A new file that sorts before an applied one would run after it although written to run
  // before: refuse, as Flyway does unless outOfOrder is set.
  const last = [...history.keys()].sort(byName).at(-1);
  const early = last === undefined ? undefined : pending.find((file) => byName(file.name, last) < 0);
  if (early && last) {
    const digits = /^(\d+)/.exec(last)?.[1];
    const next = digits ? `${String(Number(digits) + 1).padStart(digits.length, "0")}_...` : `a name after ${last}`;
    return {
      ok: false,
      problem: `${early.name} is new but sorts before ${last}, which is applied already; rename it to sort after the applied files (e.g. ${next})`,
    };
  }
  return { ok: true, pending };
}

/** Byte order of names, the order files are applied in. */
const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Line and column (1-based) of a character position PostgreSQL reports in an error. */
export function lineAndColumn(sql: string, position: number): { line: number; column: number } {
  const before = sql.slice(0, Math.max(0, position - 1));
  const lines = before.split("\n");
  return { line: lines.length, column: (lines.at(-1)?.length ?? 0) + 1 };
}
