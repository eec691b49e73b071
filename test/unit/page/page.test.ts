import { strict as assert } from "node:assert";
import { parseFlag } from "../../../src/core/maintenance-flag.js";
import { escapeHtml, pageHtml, pageJson, wantsJson } from "../../../src/page/page.js";

describe("maintenance page", function () {
  it("escapes the message", function () {
    const html = pageHtml(parseFlag({ enabled: "true", message: `<script>alert("x")</script> & 'co'` }));
    assert.ok(!html.includes("<script>alert"), "the message's markup is not live");
    assert.ok(html.includes("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;"));
    assert.equal(escapeHtml("a<b"), "a&lt;b");
  });

  it("shows the window's progress when one is running", function () {
    const progress = { version: "8", step: "migrate", index: 5, of: 9, startedAt: "2026-11-24T10:00:00Z" };
    const flag = parseFlag({ enabled: "true", progress: JSON.stringify(progress) });
    assert.match(pageHtml(flag), /Upgrading the database \(step 5 of 9\)/);
    assert.deepEqual(pageJson(flag).progress, progress);
    assert.doesNotMatch(pageHtml(parseFlag({ enabled: "true" })), /progressbar/);
  });

  it("honours a custom page.html, filling in the escaped message", function () {
    const flag = parseFlag({ enabled: "true", message: "<b>soon</b>", "page.html": "<h1>Ours</h1><p>{{message}}</p><i>{{retryAfter}}</i>" });
    assert.equal(pageHtml(flag), "<h1>Ours</h1><p>&lt;b&gt;soon&lt;/b&gt;</p><i>30</i>");
  });

  it("answers JSON to clients that prefer it", function () {
    const cases: Array<[string | undefined, boolean]> = [
      [undefined, false],
      ["*/*", false],
      ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false],
      ["application/json", true],
      ["application/problem+json", true],
      ["text/html;q=0.5, application/json", true],
      ["application/json;q=0.2, text/html", false],
    ];
    for (const [accept, json] of cases) assert.equal(wantsJson(accept), json, String(accept));
  });
});
