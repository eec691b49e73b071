import { strict as assert } from "node:assert";
import { readDatabaseSecret } from "../../../src/core/database-secret.js";
import { tlsOptions } from "../../../src/db/connect.js";
import { checksum, lineAndColumn, migrationFiles, pendingFiles } from "../../../src/core/migrations.js";

const b64 = (values: Record<string, string>) =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));

describe("readDatabaseSecret", () => {
  it("reads a url", () => {
    assert.deepEqual(readDatabaseSecret("db", b64({ url: "postgres://app:s%40cret@db.internal:6432/shop?sslmode=require" })), {
      ok: true,
      target: { host: "db.internal", port: 6432, user: "app", password: "s@cret", database: "shop", ssl: "require" },
    });
  });
  it("reads PG* keys with the default port", () => {
    assert.deepEqual(readDatabaseSecret("db", b64({ PGHOST: "db", PGUSER: "app", PGPASSWORD: "pw", PGDATABASE: "shop" })), {
      ok: true,
      target: { host: "db", port: 5432, user: "app", password: "pw", database: "shop" },
    });
  });
  it("reads the pooler's admin console, one URL per PgBouncer instance, pausing the url's database unless told another", () => {
    const console = (host: string) => ({ host, port: 6432, user: "admin", password: "pw", database: "pgbouncer" });
    assert.deepEqual(readDatabaseSecret("db", b64({ url: "postgres://app:pw@pg:5432/shop", "pgbouncer-admin-url": "postgres://admin:pw@pooler-0:6432/pgbouncer" })), {
      ok: true,
      target: { host: "pg", port: 5432, user: "app", password: "pw", database: "shop", pooler: { consoles: [console("pooler-0")], database: "shop" } },
    });
    const two = readDatabaseSecret("db", b64({
      PGHOST: "pg", PGUSER: "app", PGDATABASE: "shop",
      "pgbouncer-admin-url": "postgres://admin:pw@pooler-0:6432/pgbouncer\npostgres://admin:pw@pooler-1:6432/pgbouncer\n",
      "pgbouncer-database": "shop_pool",
    }));
    assert.ok(two.ok);
    assert.deepEqual(two.target.pooler, { consoles: [console("pooler-0"), console("pooler-1")], database: "shop_pool" });
  });
  const bad: Array<[string, Record<string, string> | undefined, RegExp]> = [
    ["an empty Secret", undefined, /Secret db has neither key "url" nor PGHOST\/PGUSER\/PGDATABASE/],
    ["a url that is not one", b64({ url: "db:5432" }), /key "url" must start with postgres:\/\//],
    ["a garbled url", b64({ url: "not a url" }), /key "url" is not a URL/],
    ["a url without database", b64({ url: "postgres://app:pw@db:5432/" }), /needs a user, a host and a database/],
    ["PG* keys missing some", b64({ PGHOST: "db" }), /Secret db lacks PGUSER, PGDATABASE/],
    ["a bad PGPORT", b64({ PGHOST: "db", PGUSER: "u", PGDATABASE: "d", PGPORT: "http" }), /PGPORT is not a port/],
    ["a console URL on a database other than pgbouncer", b64({ url: "postgres://app:pw@pg:5432/shop", "pgbouncer-admin-url": "postgres://admin:pw@pooler:6432/shop" }),
      /key "pgbouncer-admin-url" must name PgBouncer's admin console, database "pgbouncer"/],
    ["a console URL that is not one", b64({ url: "postgres://app:pw@pg:5432/shop", "pgbouncer-admin-url": "pooler:6432" }), /key "pgbouncer-admin-url" must start with postgres:\/\//],
    ["a url through the pooler whose console is given", b64({ url: "postgres://app:pw@pooler:6432/shop", "pgbouncer-admin-url": "postgres://admin:pw@pooler:6432/pgbouncer" }),
      /the database URL points at the pooler .* the gate must connect to PostgreSQL itself .* point "url" \(or PGHOST\/PGPORT\) at the PostgreSQL server/],
    ["a pooler database without its console", b64({ url: "postgres://app:pw@pg:5432/shop", "pgbouncer-database": "shop" }), /key "pgbouncer-database" needs key "pgbouncer-admin-url"/],
    ["a url whose password is not valid percent-encoding", b64({ url: "postgres://app:pw%zz@db:5432/shop" }), /key "url" has invalid percent-encoding in its user, password or database; write a "%" as %25/],
  ];
  for (const [what, data, expected] of bad) {
    it(`explains ${what} without echoing values`, () => {
      const result = readDatabaseSecret("db", data);
      assert.ok(!result.ok);
      assert.match(result.problem, expected);
      assert.doesNotMatch(result.problem, /pw|5432\/"/);
    });
  }
});

describe("the database Secret's TLS settings", () => {
  const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
  const target = (values: Record<string, string>) => {
    const result = readDatabaseSecret("db", b64(values));
    assert.ok(result.ok, result.ok ? "" : result.problem);
    return result.target;
  };

  it("takes sslrootcert as libpq does (a file, from the URL or PGSSLROOTCERT) or as PEM in the Secret's key", () => {
    assert.deepEqual(target({ url: "postgres://a:b@db:5432/shop?sslmode=verify-full&sslrootcert=/etc/ssl/db/ca.crt" }).rootCert, { file: "/etc/ssl/db/ca.crt" });
    assert.deepEqual(target({ PGHOST: "db", PGUSER: "a", PGDATABASE: "shop", PGSSLMODE: "verify-ca", PGSSLROOTCERT: "/ca.pem" }), {
      host: "db", port: 5432, user: "a", password: "", database: "shop", ssl: "verify-ca", rootCert: { file: "/ca.pem" },
    });
    assert.deepEqual(target({ url: "postgres://a:b@db:5432/shop?sslmode=verify-full", sslrootcert: CA }).rootCert, { pem: CA });
  });

  it("refuses an unknown sslmode and a sslrootcert key that holds no certificate, naming the fix", () => {
    const mode = readDatabaseSecret("db", b64({ url: "postgres://a:b@db/shop?sslmode=verify" }));
    assert.deepEqual(mode, { ok: false, problem: 'Secret db: sslmode "verify" is not one of disable, allow, prefer, require, verify-ca, verify-full' });
    const pem = readDatabaseSecret("db", b64({ url: "postgres://a:b@db/shop?sslmode=verify-full", sslrootcert: "/path/in/secret" }));
    assert.ok(!pem.ok && /key "sslrootcert" must hold the CA certificate in PEM/.test(pem.problem));
  });

  it("maps each sslmode to node-postgres's TLS options: verify-ca checks the chain only, require verifies once a CA is given", () => {
    assert.equal(tlsOptions({ ssl: "prefer" }), undefined);
    assert.deepEqual(tlsOptions({ ssl: "require" }), { rejectUnauthorized: false });
    const chainOnly = tlsOptions({ ssl: "verify-ca", rootCert: { pem: CA } }) as { ca: string; rejectUnauthorized: boolean; checkServerIdentity?: () => undefined };
    assert.equal(chainOnly.ca, CA);
    assert.equal(chainOnly.rejectUnauthorized, true);
    assert.equal(chainOnly.checkServerIdentity?.(), undefined);
    assert.equal(typeof (tlsOptions({ ssl: "require", rootCert: { pem: CA } }) as { checkServerIdentity?: unknown }).checkServerIdentity, "function");
    assert.deepEqual(tlsOptions({ ssl: "verify-full", rootCert: { pem: CA } }), { rejectUnauthorized: true, ca: CA });
    assert.deepEqual(tlsOptions({ ssl: "verify-full" }), { rejectUnauthorized: true }, "the system's CAs");
    assert.throws(() => tlsOptions({ ssl: "verify-full", rootCert: { file: "/nonexistent/ca.crt" } }),
      /sslrootcert \/nonexistent\/ca\.crt cannot be read in the gate's container \(ENOENT\).*key "sslrootcert"/);
  });
});

describe("migration files", () => {
  const data = { "010_b.sql": "B", "002_a.sql": "A", "README.md": "not sql", "100_c.sql": "C" };
  it("keeps *.sql keys in name order", () => {
    assert.deepEqual(migrationFiles(data).map((f) => f.name), ["002_a.sql", "010_b.sql", "100_c.sql"]);
  });
  it("lists only files not in the history", () => {
    const result = pendingFiles(migrationFiles(data), [{ name: "002_a.sql", checksum: checksum("A") }]);
    assert.ok(result.ok);
    assert.deepEqual(result.pending.map((f) => f.name), ["010_b.sql", "100_c.sql"]);
  });
  it("refuses a new file that sorts before an applied one (it would run out of order, as Flyway's outOfOrder refuses)", () => {
    const result = pendingFiles(migrationFiles(data), [{ name: "010_b.sql", checksum: checksum("B") }]);
    assert.ok(!result.ok);
    assert.match(result.problem, /^002_a\.sql is new but sorts before 010_b\.sql, which is applied already; rename it to sort after the applied files \(e\.g\. 011_\.\.\.\)$/);
  });
  it("refuses an applied file that was edited, naming it", () => {
    const result = pendingFiles(migrationFiles(data), [{ name: "010_b.sql", checksum: checksum("B original") }]);
    assert.ok(!result.ok);
    assert.match(result.problem, /^010_b\.sql was edited after it was applied .* put the change in a new file$/);
  });
  it("turns a PostgreSQL error position into line and column", () => {
    const sql = "CREATE TABLE a (id int);\nALTER TABLE a ADD COLUMN x nonsense;\n";
    assert.deepEqual(lineAndColumn(sql, sql.indexOf("nonsense") + 1), { line: 2, column: 28 });
    assert.deepEqual(lineAndColumn(sql, 1), { line: 1, column: 1 });
  });
});
