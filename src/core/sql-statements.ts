import type { MigrationFile } from "./migrations.js";
import { lineAndColumn } from "./migrations.js";

/** One top-level statement of a SQL file: where it is and its first word, upper-cased. */
export interface Statement {
  start: number;
  /** Index just past its terminating semicolon (or the end of the text). */
  end: number;
  keyword: string;
}

const WORD = /[A-Za-z_][A-Za-z0-9_$]*/y;
const DOLLAR_TAG = /\$([A-Za-z_][A-Za-z0-9_]*)?\$/y;
const isWordChar = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_$]/.test(c);

/** Index past a quoted run starting at `i` (the quote), with doubled quotes as escapes; backslashes too for E'...'. */
function skipQuoted(sql: string, i: number, quote: string, backslashes: boolean): number {
  for (let j = i + 1; j < sql.length; j++) {
    if (backslashes && sql[j] === "\\") j++;
    else if (sql[j] === quote) {
      if (sql[j + 1] === quote) j++;
      else return j + 1;
    }
  }
  return sql.length;
}

function skipBlockComment(sql: string, i: number): number {
  let depth = 0;
  for (let j = i; j < sql.length; j++) {
    if (sql[j] === "/" && sql[j + 1] === "*") (depth++, j++);
    else if (sql[j] === "*" && sql[j + 1] === "/") {
      j++;
      if (--depth === 0) return j + 1;
    }
  }
  return sql.length;
}

/**
 * Splits SQL into top-level statements the way PostgreSQL reads them: semicolons inside
 * comments (nested block comments too), strings, quoted identifiers, dollar-quoted bodies
 * and SQL-standard `BEGIN ATOMIC ... END` function bodies do not end a statement.
 */
export function splitStatements(sql: string): Statement[] {
  const statements: Statement[] = [];
  let start = 0;
  let keyword = "";
  let atomic = 0;
  let cases = 0;
  let previousWord = "";
  let i = 0;
  const finish = (end: number) => {
    if (keyword) statements.push({ start, end, keyword });
    start = end;
    keyword = "";
    previousWord = "";
  };
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === "-" && sql[i + 1] === "-") {
      const newline = sql.indexOf("\n", i);
      i = newline < 0 ? sql.length : newline + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      i = skipBlockComment(sql, i);
    } else if (c === "'") {
      const escaped = (sql[i - 1] === "E" || sql[i - 1] === "e") && !isWordChar(sql[i - 2]);
      i = skipQuoted(sql, i, "'", escaped);
    } else if (c === '"') {
      i = skipQuoted(sql, i, '"', false);
    } else if (c === "$" && !isWordChar(sql[i - 1]) && (DOLLAR_TAG.lastIndex = i, DOLLAR_TAG.test(sql))) {
      const tag = sql.slice(i, DOLLAR_TAG.lastIndex);
      const close = sql.indexOf(tag, DOLLAR_TAG.lastIndex);
      i = close < 0 ? sql.length : close + tag.length;
    } else if (/[A-Za-z_]/.test(c) && !isWordChar(sql[i - 1])) {
      WORD.lastIndex = i;
      WORD.test(sql);
      const word = sql.slice(i, WORD.lastIndex).toUpperCase();
      if (!keyword) keyword = word;
      if (word === "ATOMIC" && previousWord === "BEGIN") atomic++;
      else if (atomic > 0 && word === "CASE") cases++;
      else if (atomic > 0 && word === "END") {
        if (cases > 0) cases--;
        else atomic--;
      }
      previousWord = word;
      i = WORD.lastIndex;
    } else if (c === ";" && atomic === 0) {
      finish(i + 1);
      i++;
    } else {
      i++;
    }
  }
  finish(sql.length);
  return statements;
}

const OPENS = new Set(["BEGIN", "START"]);
const CLOSES = new Set(["COMMIT", "END"]);
const CONTROL = new Set([...OPENS, ...CLOSES, "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE"]);

export type FileTransaction = { kind: "plain"; sql: string } | { kind: "refused"; problem: string };

/**
 * How the gate can run a file in its own transaction, with its history row: as it is; a
 * psql-style file wrapped whole in `BEGIN; ... COMMIT;` with those two blanked out (so
 * error positions still point at the file's own lines); any other transaction control is
 * refused before anything runs, since a COMMIT halfway would leave part of the file applied
 * and unrecorded.
 */
export function fileTransaction(file: MigrationFile): FileTransaction {
  const statements = splitStatements(file.sql);
  const control = statements.filter((s) => CONTROL.has(s.keyword));
  if (control.length === 0) return { kind: "plain", sql: file.sql };
  const first = statements[0]!;
  const last = statements.at(-1)!;
  if (control.length === 2 && control[0] === first && control[1] === last && OPENS.has(first.keyword) && CLOSES.has(last.keyword) && statements.length > 2) {
    const blank = (text: string, s: Statement) => text.slice(0, s.start) + text.slice(s.start, s.end).replace(/[^\n]/g, " ") + text.slice(s.end);
    return { kind: "plain", sql: blank(blank(file.sql, last), first) };
  }
  const offending = control.find((s) => s !== first || !OPENS.has(s.keyword)) ?? control[0]!;
  const at = lineAndColumn(file.sql, offending.start + 1 + (file.sql.slice(offending.start).length - file.sql.slice(offending.start).trimStart().length));
  return {
    kind: "refused",
    problem:
      `${file.name}:${at.line}:${at.column}: ${offending.keyword} controls the transaction inside the file; the gate runs ` +
      `each file in one transaction with its history row, so a COMMIT or ROLLBACK halfway would leave it half-applied. ` +
      `Remove the transaction statements (a file wrapped whole in BEGIN; ... COMMIT; is fine), or split the file`,
  };
}
