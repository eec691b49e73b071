import { strict as assert } from "node:assert";
import { maskCredentials } from "../../../src/core/mask.js";

describe("credentials masked wherever pod or database text reaches an object", () => {
  const cases: Array<[string, string, string]> = [
    ["a connection URL", "connecting to postgres://app:s3cr%21t@db:5432/shop failed", "connecting to postgres://app:***@db:5432/shop failed"],
    ["a URL with a scheme variant", "url=postgresql+psycopg://u:p@h/d", "url=postgresql+psycopg://u:***@h/d"],
    ["a password key", "password=hunter2 host=db", "password=*** host=db"],
    ["PGPASSWORD in an environment dump", "PGPASSWORD='abc def' psql", "PGPASSWORD=*** psql"],
    ["a JSON-ish password field", '{"password": "x1"}', '{"password": ***}'],
    ["text with nothing secret", "migration 002 failed at line 3", "migration 002 failed at line 3"],
    ["a URL without a password", "see http://example.org/docs", "see http://example.org/docs"],
  ];
  for (const [what, text, masked] of cases) it(`masks ${what}`, () => assert.equal(maskCredentials(text), masked));
});
