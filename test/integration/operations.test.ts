import { strict as assert } from "node:assert";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { ensureBinaries } from "../../src/local/binaries.js";
import { projectRoot } from "../../src/local/paths.js";
import { createMetrics } from "../../src/metrics.js";
import { run } from "../../src/util/exec.js";
import { pollUntil } from "../../src/util/wait.js";
import { apiErrorMessage, onTeardown, testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { startGate } from "../support/gate.js";

const rulesFile = join(projectRoot, "charts", "schema-gate", "files", "schema-gate.rules.yaml");
const rulesTests = join(projectRoot, "test", "prometheus", "schema-gate.rules.test.yaml");
const dashboardFile = join(projectRoot, "charts", "schema-gate", "dashboards", "schema-gate.json");

/** Labels Prometheus adds to every scraped series (the target's), beside the metric's own. */
const TARGET_LABELS = new Set(["job", "namespace", "instance", "pod", "service", "endpoint", "container"]);

/** Metrics the rules read from other exporters, with where they come from. */
const EXTERNAL: Record<string, string> = {
  apiserver_admission_webhook_rejection_count: "kube-apiserver",
  apiserver_admission_webhook_fail_open_count: "kube-apiserver",
  kube_deployment_annotations: "kube-state-metrics (--metric-annotations-allowlist=deployments=[schema-gate.dev/phase])",
};

interface Family {
  type: string;
  help: string;
  labels: string[];
}

interface Reference {
  name: string;
  matchers: Array<{ label: string; value: string }>;
}

/** Every series selector in a PromQL expression: metric name and its label matchers. */
function references(expr: string): Reference[] {
  const found: Reference[] = [];
  for (const m of expr.matchAll(/\b((?:schema_gate|apiserver|kube)_[a-z0-9_]+)\b(\{([^}]*)\})?/g)) {
    const matchers = [...(m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)].map((x) => ({
      label: x[1]!,
      value: x[3]!,
    }));
    found.push({ name: m[1]!, matchers });
  }
  return found;
}

/** Labels named in `by (...)` / `without (...)` clauses. */
const groupingLabels = (expr: string): string[] =>
  [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(",").map((s) => s.trim()).filter(Boolean));

/** The family a sample name belongs to on /metrics (histograms expose _bucket, _sum and _count). */
function familyOf(name: string, families: Map<string, Family>): { family: string; suffix: string } | undefined {
  if (families.has(name)) return { family: name, suffix: "" };
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m && families.get(m[1]!)?.type === "histogram") return { family: m[1]!, suffix: m[2]! };
  return undefined;
}

describe("operations: dashboard and alerting rules", function () {
  let env: TestEnv;
  let promtool: string;
  let families: Map<string, Family>;
  let work: string;

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries (promtool among them)
    const binaries = (await ensureBinaries()) as unknown as Record<string, string>;
    assert.ok(binaries.promtool, "tools/binaries.sh provides promtool");
    promtool = binaries.promtool;
    env = await testEnv();
    work = await mkdtemp(join(tmpdir(), "schema-gate-ops-"));

    // What a running gate serves on /metrics (types from the exposition), with the label
    // names each metric is declared with in src/metrics.ts.
    const gate = await startGate(env, ["--no-controller"]);
    const exposition = (await gate.get("/metrics")).body;
    await gate.stop();
    const declared = createMetrics().registry;
    families = new Map();
    for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      const metric = declared.getSingleMetric(m[1]!) as unknown as { labelNames?: string[] } | undefined;
      const help = new RegExp(`^# HELP ${m[1]} (.*)$`, "m").exec(exposition)?.[1] ?? "";
      families.set(m[1]!, { type: m[2]!, help, labels: [...(metric?.labelNames ?? [])] });
    }
    assert.ok(families.has("schema_gate_windows_total"), exposition.slice(0, 2000));
  });

  it("promtool checks the rules and passes their unit tests", async function () {
    const check = await run(promtool, ["check", "rules", rulesFile]);
    assert.match(check.stdout, /SUCCESS: \d+ rules found/, check.stdout);
    const tested = await run(promtool, ["test", "rules", rulesTests]);
    assert.match(tested.stdout, /SUCCESS/, tested.stdout);
    assert.doesNotMatch(tested.stdout, /FAILED/, tested.stdout);
  });

  it("has an alert for a failed window, an overdue window, webhook errors, latency and unreachable webhooks", async function () {
    const rules = YAML.parse(await readFile(rulesFile, "utf8"));
    const alerts = rules.groups.flatMap((g: { rules: Array<{ alert: string }> }) => g.rules.map((r) => r.alert)).sort();
    assert.deepEqual(alerts, [
      "SchemaGateAdmissionErrors", "SchemaGateAdmissionSlow", "SchemaGateWebhookUnreachable",
      "SchemaGateWindowFailed", "SchemaGateWindowHeldFailed", "SchemaGateWindowOverdue",
    ]);
    const tests = await readFile(rulesTests, "utf8");
    for (const alert of alerts) assert.match(tests, new RegExp(`alertname: ${alert}\\n`), `${alert} has a unit test`);
  });

  it("reads only metrics the gate serves (with their labels), or the documented ones of other exporters", async function () {
    const rules = YAML.parse(await readFile(rulesFile, "utf8"));
    for (const group of rules.groups) {
      for (const rule of group.rules) {
        const refs = references(rule.expr);
        assert.ok(refs.length > 0, rule.alert);
        for (const ref of refs) {
          if (EXTERNAL[ref.name]) continue;
          const found = familyOf(ref.name, families);
          assert.ok(found, `${rule.alert}: ${ref.name} is not on the gate's /metrics`);
          const labels = new Set([...families.get(found.family)!.labels, ...TARGET_LABELS, ...(found.suffix === "bucket" ? ["le"] : [])]);
          for (const { label } of ref.matchers) assert.ok(labels.has(label), `${rule.alert}: ${ref.name} has no label ${label}`);
          for (const label of groupingLabels(rule.expr)) assert.ok(labels.has(label), `${rule.alert}: grouping by ${label}`);
          for (const { value } of ref.matchers.filter((x) => x.label === "result" && found.family === "schema_gate_windows_total")) {
            // The results the counter's help lists: (done, skipped, failed, rolled_back, aborted).
            const help = /\(([^)]*)\)/.exec(families.get(found.family)!.help)?.[1] ?? "";
            assert.ok(help.split(/,\s*/).includes(value), `${rule.alert}: result "${value}" is one of ${help}`);
          }
        }
      }
    }
  });

  it("names the apiserver's webhook metrics and labels as kube-apiserver exposes them", async function () {
    // Make the local apiserver fail to call one webhook (Fail) and fail open on another
    // (Ignore), then read its /metrics for the series the SchemaGateWebhookUnreachable alert selects.
    const ns = await testNamespace("ops");
    const name = `probe-${ns}`;
    const hook = (hookName: string, failurePolicy: string) => ({
      name: hookName,
      admissionReviewVersions: ["v1"],
      sideEffects: "None",
      failurePolicy,
      timeoutSeconds: 1,
      clientConfig: { url: "https://127.0.0.1:1/unreachable" },
      rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"], scope: "Namespaced" }],
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": ns } },
    });
    await env.admission.createValidatingWebhookConfiguration({
      body: { metadata: { name }, webhooks: [hook("fail.probe.schema-gate.dev", "Fail"), hook("open.probe.schema-gate.dev", "Ignore")] },
    });
    onTeardown(() => env.admission.deleteValidatingWebhookConfiguration({ name }));
    await pollUntil(
      async () => {
        try {
          await env.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { generateName: "probe-" } } });
          return undefined;
        } catch (error) {
          return /failed calling webhook "fail\.probe\.schema-gate\.dev"/.test(apiErrorMessage(error)) ? true : undefined;
        }
      },
      { timeoutMs: 30_000, intervalMs: 250, what: "the apiserver to call the probe webhooks" },
    );
    await env.admission.deleteValidatingWebhookConfiguration({ name });
    const metrics = await env.cluster.kubectl(["get", "--raw", "/metrics"]);
    const series = (metric: string, hookName: string) =>
      metrics.split("\n").filter((line) => line.startsWith(`${metric}{`) && line.includes(`name="${hookName}"`));
    const rejections = series("apiserver_admission_webhook_rejection_count", "fail.probe.schema-gate.dev");
    assert.ok(rejections.some((l) => l.includes('error_type="calling_webhook_error"')), rejections.join("\n") || "no rejection series");
    assert.ok(series("apiserver_admission_webhook_fail_open_count", "open.probe.schema-gate.dev").length > 0, "fail-open series");

    const rules = YAML.parse(await readFile(rulesFile, "utf8"));
    const unreachable = rules.groups.flatMap((g: { rules: Array<{ alert: string; expr: string }> }) => g.rules).find((r: { alert: string }) => r.alert === "SchemaGateWebhookUnreachable");
    for (const ref of references(unreachable.expr)) {
      for (const { label, value } of ref.matchers) {
        const line = series(ref.name, ref.name.endsWith("fail_open_count") ? "open.probe.schema-gate.dev" : "fail.probe.schema-gate.dev").find((l) => {
          const actual = new RegExp(`[{,]${label}="([^"]*)"`).exec(l)?.[1];
          return actual !== undefined && new RegExp(`^(?:${value.replace(/\\\\/g, "\\")})$`).test(actual);
        });
        assert.ok(line, `${ref.name}{${label}=~"${value}"} matches a series kube-apiserver exposes`);
      }
    }
  });

  it("has a dashboard whose panels query metrics the gate serves, correctly for their types", async function () {
    const dashboard = JSON.parse(await readFile(dashboardFile, "utf8"));
    assert.equal(dashboard.uid, "schema-gate");
    assert.ok(dashboard.templating.list.some((v: { type: string; query: string }) => v.type === "datasource" && v.query === "prometheus"));
    const panels = dashboard.panels.filter((p: { type: string }) => p.type !== "row");
    const used = new Set<string>();
    const exprs: string[] = [];
    for (const panel of panels) {
      assert.ok(panel.title && panel.description, `panel ${panel.id} has a title and a description`);
      assert.equal(panel.datasource.uid, "${datasource}", panel.title);
      assert.ok(panel.targets.length > 0, panel.title);
      for (const { expr } of panel.targets as Array<{ expr: string }>) {
        exprs.push(expr);
        const refs = references(expr);
        assert.ok(refs.length > 0, `${panel.title}: ${expr}`);
        for (const ref of refs) {
          const found = familyOf(ref.name, families);
          assert.ok(found, `${panel.title}: ${ref.name} is not on the gate's /metrics`);
          used.add(found.family);
          const family = families.get(found.family)!;
          const labels = new Set([...family.labels, ...TARGET_LABELS, ...(found.suffix === "bucket" ? ["le"] : [])]);
          for (const { label } of ref.matchers) assert.ok(labels.has(label), `${panel.title}: ${ref.name} has no label ${label}`);
          // Counters and histogram parts only make sense as rates or increases.
          assert.match(expr, new RegExp(`\\b(rate|increase)\\(${ref.name}\\b`), `${panel.title}: ${ref.name} inside rate() or increase()`);
          if (found.suffix === "bucket") {
            assert.match(expr, /histogram_quantile\(/, `${panel.title}: ${ref.name} inside histogram_quantile`);
          }
        }
        const grouping = groupingLabels(expr);
        const allowed = new Set([...refs.flatMap((r) => families.get(familyOf(r.name, families)!.family)!.labels), ...TARGET_LABELS, "le"]);
        for (const label of grouping) assert.ok(allowed.has(label), `${panel.title}: grouping by ${label}`);
        if (/histogram_quantile\(/.test(expr)) assert.ok(grouping.includes("le"), `${panel.title}: quantiles keep le`);
      }
    }
    assert.deepEqual([...used].sort(), [
      "schema_gate_admission_duration_seconds", "schema_gate_downtime_seconds", "schema_gate_migration_duration_seconds",
      "schema_gate_sessions_terminated_total", "schema_gate_windows_total",
    ], "downtime, windows by result, migration duration, sessions terminated and admission latency");

    // Every query parses as PromQL: as recording rules, with Grafana's variables filled in.
    const asRules = {
      groups: [{
        name: "dashboard",
        rules: exprs.map((expr, i) => ({
          record: `dashboard:query${i}`,
          expr: expr.replace(/\$__(rate_interval|range|interval)/g, "5m").replace(/\$job/g, ".+"),
        })),
      }],
    };
    const file = join(work, "dashboard-queries.rules.yaml");
    await writeFile(file, YAML.stringify(asRules));
    const check = await run(promtool, ["check", "rules", file]);
    assert.match(check.stdout, new RegExp(`SUCCESS: ${exprs.length} rules found`), check.stdout);
  });
});
