import { strict as assert } from "node:assert";
import { checksum } from "../../../src/core/migrations.js";
import { fileTransaction, splitStatements } from "../../../src/core/sql-statements.js";

const file = (sql: string) => ({ name: "002-x.sql", sql, checksum: checksum(sql) });

describe("SQL statements and transaction control in migration files", () => {
  const splits: Array<[string, string, string[]]> = [
    ["plain statements", "CREATE TABLE a(id int);\nINSERT INTO a VALUES (1);", ["CREATE", "INSERT"]],
    ["semicolons in strings, identifiers and comments", "SELECT 'a;b', \"c;d\" -- e;f\n; /* g; /* nested; */ h; */ SELECT 1;", ["SELECT", "SELECT"]],
    ["a dollar-quoted function body with BEGIN ... END inside", "CREATE FUNCTION f() RETURNS int AS $fn$ BEGIN RETURN 1; END; $fn$ LANGUAGE plpgsql;\nSELECT f();", ["CREATE", "SELECT"]],
    ["an SQL-standard BEGIN ATOMIC body with a CASE", "CREATE FUNCTION g(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; END;\nSELECT 2;", ["CREATE", "SELECT"]],
    ["E'' strings with backslash escapes", "SELECT E'it\\'s; fine';\nSELECT 3", ["SELECT", "SELECT"]],
    ["a trailing statement without semicolon and blank statements", ";;SELECT 1;  ;\nSELECT 2", ["SELECT", "SELECT"]],
  ];
  for (const [title, sql, keywords] of splits) {
    it(`splits ${title}`, () => assert.deepEqual(splitStatements(sql).map((s) => s.keyword), keywords));
  }

  it("runs a file without transaction statements as it is", () => {
    const sql = "ALTER TABLE items ADD COLUMN price int;";
    assert.deepEqual(fileTransaction(file(sql)), { kind: "plain", sql });
  });

  it("runs a psql-style file wrapped whole in BEGIN ... COMMIT with the two blanked, keeping every position", () => {
    const sql = "BEGIN;\nCREATE TABLE t2(id int);\nCOMMIT;\n";
    const result = fileTransaction(file(sql));
    assert.equal(result.kind, "plain");
    if (result.kind !== "plain") return;
    assert.equal(result.sql.length, sql.length);
    assert.equal(result.sql.indexOf("CREATE"), sql.indexOf("CREATE"));
    assert.deepEqual(splitStatements(result.sql).map((s) => s.keyword), ["CREATE"]);
    assert.equal(fileTransaction(file("START TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1; END;")).kind, "plain");
  });

  const refused: Array<[string, string, RegExp]> = [
    ["a COMMIT halfway (the reproduced case)", "BEGIN; CREATE TABLE t1(id int); COMMIT; SELECT 1/0;", /002-x\.sql:1:\d+: COMMIT controls the transaction/],
    ["a ROLLBACK", "CREATE TABLE t(id int);\nROLLBACK;", /002-x\.sql:2:1: ROLLBACK/],
    ["two transactions in one file", "BEGIN; SELECT 1; COMMIT;\nBEGIN; SELECT 2; COMMIT;", /COMMIT controls the transaction/],
    ["a savepoint", "SAVEPOINT a; SELECT 1;", /SAVEPOINT/],
    ["a bare COMMIT at the end", "CREATE TABLE t(id int); COMMIT;", /COMMIT/],
  ];
  for (const [title, sql, pattern] of refused) {
    it(`refuses ${title}, naming the file, the line and the fix`, () => {
      const result = fileTransaction(file(sql));
      assert.equal(result.kind, "refused");
      if (result.kind === "refused") {
        assert.match(result.problem, pattern);
        assert.match(result.problem, /Remove the transaction statements .* or split the file/);
      }
    });
  }
});
