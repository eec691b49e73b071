import { strict as assert } from "node:assert";
import { compareVersions } from "../../../src/core/version.js";
import { formatDuration, parseDuration } from "../../../src/core/duration.js";

describe("compareVersions", () => {
  const cases: Array<[string, string, number | undefined]> = [
    ["2", "10", -1],
    ["10", "2", 1],
    ["42", "42", 0],
    ["20240101", "20231231", 1],
    ["v1.2.0", "1.10.0", -1],
    ["1.2", "1.2.0", 0],
    ["1.0.0-rc.1", "1.0.0", -1],
    ["1.0.0-alpha", "1.0.0-alpha.1", -1],
    ["1.0.0-alpha.beta", "1.0.0-beta", -1],
    ["1.0.0-beta.11", "1.0.0-beta.2", 1],
    ["1.0.0+build.5", "1.0.0", 0],
    ["orders-2024-05", "orders-2024-06", undefined],
    ["5", "five", undefined],
  ];
  for (const [a, b, expected] of cases) {
    it(`${a} vs ${b} -> ${expected}`, () => assert.equal(compareVersions(a, b), expected));
  }
});

describe("parseDuration", () => {
  const cases: Array<[string, number | undefined]> = [
    ["15m", 900], ["1h30m", 5400], ["90s", 90], ["2h", 7200], ["1h0m5s", 3605],
    ["", undefined], ["15", undefined], ["m", undefined], ["1.5h", undefined], ["-5m", undefined], ["5m1h", undefined],
  ];
  for (const [text, expected] of cases) {
    it(`"${text}" -> ${expected}`, () => assert.equal(parseDuration(text), expected));
  }
  it("formats back", () => {
    assert.equal(formatDuration(5400), "1h30m");
    assert.equal(formatDuration(0), "0s");
    assert.equal(formatDuration(61), "1m1s");
  });
});
