import { strict as assert } from "node:assert";
import { cp, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { projectRoot } from "../../src/local/paths.js";
import { run } from "../../src/util/exec.js";
import { testEnv, testNamespace, type TestEnv } from "../support/env.js";
import { gateIdentity } from "../support/gate.js";

describe("install manifests (kustomize)", function () {
  let env: TestEnv;
  let dir: string;

  before(async function () {
    this.timeout(60 * 60_000);
    env = await testEnv();
    await gateIdentity(env); // the schema-gate namespace, so a server-side dry run can place objects in it
    dir = await mkdtemp(join(tmpdir(), "schema-gate-manifests-"));
    await cp(join(projectRoot, "manifests"), join(dir, "manifests"), { recursive: true });
    await run("bash", [join(projectRoot, "certs", "generate.sh"), join(dir, "manifests", "tls")]);
  });

  it("renders the plain-certificates install with the CA in every webhook's caBundle", async function () {
    const rendered = YAML.parseAllDocuments(await env.cluster.kubectl(["kustomize", join(dir, "manifests")])).map((d) => d.toJSON());
    const kinds = rendered.map((o) => o.kind).sort();
    assert.deepEqual(kinds, [
      "ClusterRole", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "MutatingWebhookConfiguration", "Namespace",
      "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount", "ValidatingWebhookConfiguration",
    ]);
    const secret = rendered.find((o) => o.kind === "Secret");
    const ca = Buffer.from(secret.data["ca.crt"], "base64").toString();
    assert.match(ca, /BEGIN CERTIFICATE/);
    const hooks = rendered.filter((o) => o.kind.endsWith("WebhookConfiguration")).flatMap((o) => o.webhooks);
    assert.deepEqual(hooks.map((h) => h.name).sort(), ["hold.schema-gate.dev", "ingress.schema-gate.dev", "scale.schema-gate.dev", "validate.schema-gate.dev"]);
    for (const hook of hooks) {
      assert.equal(Buffer.from(hook.clientConfig.caBundle.replace(/\s/g, ""), "base64").toString(), ca);
      // Deployments fail closed; the Ingress hook only refines what the controller also does.
      assert.equal(hook.failurePolicy, hook.name === "ingress.schema-gate.dev" ? "Ignore" : "Fail", hook.name);
      assert.equal(hook.sideEffects, "None");
      assert.ok(hook.matchConditions.length >= 2, `${hook.name} filters with matchConditions`);
    }
    const deployment = rendered.find((o) => o.kind === "Deployment");
    assert.ok(deployment.spec.replicas >= 2);
  });

  it("applies to the cluster (server-side dry run)", async function () {
    const out = await env.cluster.kubectl(["apply", "--dry-run=server", "-k", join(dir, "manifests")]);
    assert.match(out, /mutatingwebhookconfiguration\.admissionregistration\.k8s\.io\/schema-gate (created|configured|unchanged) \(server dry run\)/);
    assert.match(out, /deployment\.apps\/schema-gate (created|configured|unchanged) \(server dry run\)/);
  });

  it("renders the cert-manager variant with CA injection instead of a Secret", async function () {
    const rendered = YAML.parseAllDocuments(await env.cluster.kubectl(["kustomize", join(dir, "manifests", "cert-manager")])).map((d) => d.toJSON());
    assert.ok(rendered.some((o) => o.kind === "Certificate" && o.spec.secretName === "schema-gate-tls"));
    assert.ok(!rendered.some((o) => o.kind === "Secret"));
    for (const config of rendered.filter((o) => o.kind.endsWith("WebhookConfiguration"))) {
      assert.equal(config.metadata.annotations["cert-manager.io/inject-ca-from"], "schema-gate/schema-gate");
    }
  });

  it("renders and applies the kind script's install overlay (its image) and chart values", async function () {
    const prepared = await mkdtemp(join(tmpdir(), "schema-gate-kind-"));
    await run("bash", [join(projectRoot, "tools", "e2e-kind.sh"), "--prepare", prepared]);
    const overlay = join(prepared, "overlay");
    const rendered = YAML.parseAllDocuments(await env.cluster.kubectl(["kustomize", overlay])).map((d) => d.toJSON());
    const gate = rendered.find((o) => o.kind === "Deployment");
    assert.deepEqual(gate.spec.template.spec.containers.map((c: { image: string }) => c.image), ["schema-gate:e2e"]);
    const out = await env.cluster.kubectl(["apply", "--dry-run=server", "-k", overlay]);
    assert.match(out, /deployment\.apps\/schema-gate (created|configured|unchanged) \(server dry run\)/);

    const chart = join(projectRoot, "examples", "shop-chart");
    for (const [version, files] of [["1", ["001-items.sql"]], ["2", ["001-items.sql", "002-price.sql"]]] as const) {
      const manifest = await env.cluster.helm(["template", "shop", chart, "-f", join(prepared, `values-${version}.yaml`)]);
      const objects = YAML.parseAllDocuments(manifest).map((d) => d.toJSON()).filter(Boolean);
      const migrations = objects.find((o) => o.kind === "ConfigMap");
      assert.deepEqual(Object.keys(migrations.data).sort(), [...files]);
      const services = objects.filter((o) => o.kind === "Deployment");
      assert.equal(services.length, 3);
      for (const d of services) {
        assert.equal(d.metadata.annotations["schema-gate.dev/schema-version"], version);
        assert.equal(d.spec.template.spec.containers[0].image, "registry.k8s.io/pause:3.10");
      }
    }
  });

  it("grants the gate least privilege: reads cluster-wide, writes and Secrets only in namespaces granted to it, no wildcards", async function () {
    const user = "system:serviceaccount:schema-gate:schema-gate";
    const granted = await testNamespace("rbac"); // a RoleBinding from manifests/namespace-access.yaml
    const table = await env.cluster.kubectl(["auth", "can-i", "--list", `--as=${user}`, "-n", granted]);
    // Columns: Resources, Non-Resource URLs, Resource Names, Verbs ("[get list]").
    const rows = table.split("\n").slice(1).filter(Boolean).map((line) => {
      const verbs = /\[([^\]]*)\]\s*$/.exec(line)?.[1]?.split(/\s+/).filter(Boolean) ?? [];
      return { resource: line.trim().split(/\s+/)[0]!, verbs };
    });
    const resources = rows.filter((r) => !r.resource.startsWith("[")); // non-resource URLs (discovery) aside
    assert.ok(resources.length > 5, table);
    for (const { resource, verbs } of resources) {
      assert.ok(!verbs.includes("*") && resource !== "*.*", `wildcard: ${resource} ${verbs}`);
      for (const verb of ["escalate", "bind", "impersonate"]) assert.ok(!verbs.includes(verb), `${verb} on ${resource}`);
    }
    assert.deepEqual(resources.filter((r) => r.resource === "secrets").flatMap((r) => r.verbs), ["get"], table);

    const can = (verb: string, resource: string, namespace: string) =>
      env.cluster.kubectl(["auth", "can-i", verb, resource, `--as=${user}`, "-n", namespace]).then(() => true, () => false);
    const writes = [
      ["get", "secrets"], ["create", "jobs.batch"], ["create", "deployments.apps"], ["patch", "deployments.apps"],
      ["create", "configmaps"], ["create", "services"], ["update", "ingresses.networking.k8s.io"], ["patch", "cronjobs.batch"],
      ["create", "migrationwindows.schema-gate.dev"], ["delete", "pods"], ["patch", "pods"], ["patch", "replicasets.apps"],
    ];
    for (const [verb, resource] of writes) {
      assert.equal(await can(verb!, resource!, granted), true, `${verb} ${resource} in a granted namespace`);
      for (const other of ["kube-system", "default"]) {
        assert.equal(await can(verb!, resource!, other), false, `${verb} ${resource} in ${other}, which was not granted`);
      }
    }
    // The caches watch cluster-wide; reading a Secret never is.
    for (const resource of ["deployments.apps", "pods", "ingresses.networking.k8s.io", "migrationwindows.schema-gate.dev"]) {
      assert.equal(await can("watch", resource, "kube-system"), true, `watch ${resource}`);
    }
    assert.equal(await can("list", "secrets", granted), false, "cannot list Secrets");
    assert.equal(await can("delete", "configmaps", granted), false);
  });
});
