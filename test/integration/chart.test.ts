import { strict as assert } from "node:assert";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { ensureBinaries } from "../../src/local/binaries.js";
import { projectRoot } from "../../src/local/paths.js";
import { CommandError, run, type RunResult } from "../../src/util/exec.js";
import { onTeardown, testEnv, testNamespace, type TestEnv } from "../support/env.js";

type Obj = any; // rendered Kubernetes objects

const chart = join(projectRoot, "charts", "schema-gate");
const HOOKS = ["hold.schema-gate.dev", "ingress.schema-gate.dev", "validate.schema-gate.dev", "scale.schema-gate.dev"];

/**
 * The matchConditions each webhook must carry, for a gate whose ServiceAccount is `user`:
 * they keep every Deployment that is not opted in (and the gate's own requests) away from
 * a webhook whose failurePolicy is Fail.
 */
function expectedMatchConditions(user: string): Record<string, Array<{ name: string; expression: string }>> {
  const notTheGate = { name: "not-the-gate", expression: `request.userInfo.username != '${user}'` };
  const optedIn =
    "has(object.metadata.annotations) && " +
    "('schema-gate.dev/database' in object.metadata.annotations || 'schema-gate.dev/sidecar' in object.metadata.annotations)";
  return {
    "hold.schema-gate.dev": [notTheGate, { name: "opted-in", expression: optedIn }],
    "ingress.schema-gate.dev": [
      notTheGate,
      { name: "switched", expression: "has(object.metadata.annotations) && 'schema-gate.dev/original-spec' in object.metadata.annotations" },
    ],
    "validate.schema-gate.dev": [
      notTheGate,
      {
        name: "opted-in",
        expression:
          "(has(object.metadata.annotations) &&\n" +
          " ('schema-gate.dev/database' in object.metadata.annotations || 'schema-gate.dev/sidecar' in object.metadata.annotations)) ||\n" +
          "(oldObject != null && has(oldObject.metadata.annotations) && 'schema-gate.dev/database' in oldObject.metadata.annotations)",
      },
    ],
    "scale.schema-gate.dev": [notTheGate, { name: "held", expression: "request.namespace + '/' + request.name in []" }],
  };
}

const hooksOf = (objects: Obj[]): Obj[] => objects.filter((o) => o.kind?.endsWith("WebhookConfiguration")).flatMap((o) => o.webhooks);
const one = (objects: Obj[], kind: string): Obj => {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `one ${kind} in ${objects.map((o) => o.kind).join(", ")}`);
  return found[0];
};

describe("Helm chart (charts/schema-gate)", function () {
  let helmBin: string;
  let work: string;

  const helm = (args: string[], env?: NodeJS.ProcessEnv): Promise<RunResult> =>
    run(helmBin, args, { env: { ...process.env, ...env } });

  /** `helm template` with these values, as parsed objects. */
  async function template(values: Obj = {}, release = "schema-gate", namespace = "schema-gate"): Promise<Obj[]> {
    const file = join(work, `values-${Date.now()}-${Math.random()}.yaml`);
    await writeFile(file, YAML.stringify(values));
    const { stdout } = await helm(["template", release, chart, "--namespace", namespace, "-f", file]);
    return YAML.parseAllDocuments(stdout).map((d) => d.toJSON()).filter(Boolean);
  }

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries
    helmBin = (await ensureBinaries()).helm;
    work = await mkdtemp(join(tmpdir(), "schema-gate-chart-"));
  });

  it("lints clean, also with --strict and with every optional part on", async function () {
    const everything = join(work, "everything.yaml");
    await writeFile(
      everything,
      YAML.stringify({
        networkPolicy: { enabled: true, apiServer: { cidrs: ["10.0.0.10/32"] } },
        metrics: { serviceMonitor: { enabled: true }, podMonitor: { enabled: true }, prometheusRule: { enabled: true } },
        grafanaDashboard: { enabled: true },
      }),
    );
    for (const args of [[], ["--strict"], ["--strict", "-f", everything], ["--strict", "--set", "certificates.mode=certManager"]]) {
      const { stdout } = await helm(["lint", chart, ...args]);
      assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/, stdout);
      assert.doesNotMatch(stdout, /\[(WARNING|ERROR)\]/, stdout);
    }
  });

  it("renders two replicas with a PodDisruptionBudget and restricted pods by default", async function () {
    const objects = await template();
    const deployment = one(objects, "Deployment");
    assert.equal(deployment.spec.replicas, 2);
    const pdb = one(objects, "PodDisruptionBudget");
    assert.equal(pdb.spec.minAvailable, 1);
    assert.deepEqual(pdb.spec.selector, deployment.spec.selector);
    assert.deepEqual(one(objects, "Service").spec.selector, deployment.spec.selector.matchLabels);

    const pod = deployment.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.ok(Number.isInteger(pod.securityContext.runAsUser) && pod.securityContext.runAsUser > 0);
    assert.deepEqual(pod.securityContext.seccompProfile, { type: "RuntimeDefault" });
    const [container] = pod.containers;
    assert.equal(pod.containers.length, 1);
    assert.equal(container.name, "schema-gate", "the gate finds its own image by this container name");
    assert.equal(container.image, "schema-gate:0.1.0");
    assert.deepEqual(container.securityContext, {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    assert.deepEqual(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector, deployment.spec.selector);

    const single = await template({ replicas: 1 });
    assert.equal(single.filter((o) => o.kind === "PodDisruptionBudget").length, 0, "no PDB over a single pod");
  });

  it("keeps the webhooks' matchConditions, failure policies and the gate's identity, for any release name", async function () {
    for (const [release, namespace] of [["schema-gate", "schema-gate"], ["gate", "platform"]] as const) {
      const objects = await template({ excludeNamespaces: ["tenant-admin"] }, release, namespace);
      const fullname = release === "schema-gate" ? "schema-gate" : "gate-schema-gate";
      const sa = one(objects, "ServiceAccount");
      assert.equal(sa.metadata.name, fullname);
      const user = `system:serviceaccount:${namespace}:${fullname}`;
      const expected = expectedMatchConditions(user);
      const hooks = hooksOf(objects);
      assert.deepEqual(hooks.map((h) => h.name).sort(), [...HOOKS].sort());
      for (const hook of hooks) {
        assert.deepEqual(hook.matchConditions, expected[hook.name], hook.name);
        assert.equal(hook.failurePolicy, hook.name === "ingress.schema-gate.dev" ? "Ignore" : "Fail", hook.name);
        assert.equal(hook.sideEffects, "None");
        assert.deepEqual(hook.clientConfig.service.name, fullname);
        assert.deepEqual(hook.clientConfig.service.namespace, namespace);
        assert.deepEqual(hook.namespaceSelector.matchExpressions, [
          { key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["kube-system", namespace, "tenant-admin"] },
        ]);
      }
      const args: string[] = one(objects, "Deployment").spec.template.spec.containers[0].args;
      assert.ok(args.includes(`--service-account=${fullname}`), args.join(" "));
      assert.ok(args.includes(`--webhook-config=${fullname}`), args.join(" "));
      assert.ok(args.includes("--exclude-namespace=tenant-admin"), args.join(" "));
      assert.equal(one(objects, "ValidatingWebhookConfiguration").metadata.name, fullname);
      const role = objects.find((o) => o.kind === "ClusterRole" && o.metadata.name === fullname);
      const webhookRule = role.rules.find((r: Obj) => r.resources.includes("validatingwebhookconfigurations"));
      assert.deepEqual(webhookRule.resourceNames, [fullname], "the gate may patch its own scale webhook and no other");
    }
  });

  it("binds the workloads role only in rbac.namespaces and passes them as --namespaces; clusterWide binds it everywhere", async function () {
    const bindings = (objects: Obj[]) =>
      objects.filter((o) => o.kind.endsWith("Binding") && o.roleRef.name === "schema-gate-workloads")
        .map((o) => `${o.kind} ${o.metadata.namespace ?? "(cluster)"}`);
    const argsOf = (objects: Obj[]): string[] =>
      one(objects, "Deployment").spec.template.spec.containers[0].args.filter((a: string) => a.startsWith("--namespaces"));

    const listed = await template({ rbac: { namespaces: ["shop", "billing"] } });
    assert.deepEqual(bindings(listed), ["RoleBinding shop", "RoleBinding billing"]);
    assert.deepEqual(argsOf(listed), ["--namespaces=shop,billing"]);
    const none = await template({});
    assert.deepEqual(bindings(none), []);
    assert.deepEqual(argsOf(none), ["--namespaces="], "with no namespace listed the gate acts nowhere");
    const everywhere = await template({ rbac: { clusterWide: true, namespaces: ["shop"] } });
    assert.deepEqual(bindings(everywhere), ["ClusterRoleBinding (cluster)"]);
    assert.deepEqual(argsOf(everywhere), []);
    const reads = listed.find((o) => o.kind === "ClusterRole" && o.metadata.name === "schema-gate");
    const verbs = new Set(reads.rules.filter((r: Obj) => !r.resources.includes("events") && !r.resourceNames).flatMap((r: Obj) => r.verbs));
    assert.deepEqual([...verbs].sort(), ["get", "list", "watch"], "the cluster-wide role only reads");
    assert.ok(!reads.rules.some((r: Obj) => r.resources.includes("secrets")), "no Secret cluster-wide");
  });

  it("generates a CA and serving certificate for the Service, with the CA in every caBundle", async function () {
    const objects = await template({}, "gate", "platform");
    const secret = one(objects, "Secret");
    assert.equal(secret.metadata.name, "gate-schema-gate-tls");
    assert.equal(secret.type, "kubernetes.io/tls");
    const pem = (key: string) => Buffer.from(secret.data[key], "base64").toString();
    const ca = new X509Certificate(pem("ca.crt"));
    const cert = new X509Certificate(pem("tls.crt"));
    assert.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), "serving certificate signed by the CA");
    assert.ok(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(pem("tls.key"))));
    for (const name of ["gate-schema-gate.platform.svc", "gate-schema-gate.platform.svc.cluster.local"]) {
      assert.ok(cert.checkHost(name), `certificate valid for ${name}: ${cert.subjectAltName}`);
    }
    for (const hook of hooksOf(objects)) assert.equal(hook.clientConfig.caBundle, secret.data["ca.crt"], hook.name);
    const volume = one(objects, "Deployment").spec.template.spec.volumes.find((v: Obj) => v.name === "tls");
    assert.equal(volume.secret.secretName, secret.metadata.name);

    // Without a cluster to look the Secret up in, every rendering makes new ones: keeping
    // them across upgrades is lookup's work (shown against the cluster below).
    const again = one(await template({}, "gate", "platform"), "Secret");
    assert.notEqual(again.data["ca.crt"], secret.data["ca.crt"]);
  });

  it("renders the cert-manager variant: Issuer, Certificate and the CA injection annotation, no Secret, no caBundle", async function () {
    const objects = await template({ certificates: { mode: "certManager" } });
    assert.equal(objects.filter((o) => o.kind === "Secret").length, 0);
    const issuer = one(objects, "Issuer");
    assert.deepEqual(issuer.spec, { selfSigned: {} });
    const certificate = one(objects, "Certificate");
    assert.equal(certificate.spec.secretName, "schema-gate-tls");
    assert.deepEqual(certificate.spec.issuerRef, { kind: "Issuer", name: issuer.metadata.name });
    assert.ok(certificate.spec.dnsNames.includes("schema-gate.schema-gate.svc"));
    for (const config of objects.filter((o) => o.kind.endsWith("WebhookConfiguration"))) {
      assert.equal(config.metadata.annotations["cert-manager.io/inject-ca-from"], "schema-gate/schema-gate");
    }
    for (const hook of hooksOf(objects)) assert.equal(hook.clientConfig.caBundle, undefined, hook.name);

    const withIssuer = await template({ certificates: { mode: "certManager", certManager: { issuerRef: { kind: "ClusterIssuer", name: "corp-ca" } } } });
    assert.equal(withIssuer.filter((o) => o.kind === "Issuer").length, 0);
    assert.deepEqual(one(withIssuer, "Certificate").spec.issuerRef, { kind: "ClusterIssuer", name: "corp-ca" });
  });

  it("uses a Secret you provide with certificates.mode=secret (caBundle from the value, or left to kustomize)", async function () {
    const bundle = Buffer.from("-----BEGIN CERTIFICATE-----\n...\n").toString("base64");
    const given = await template({ certificates: { mode: "secret", secretName: "my-tls", secret: { caBundle: bundle } } });
    assert.equal(given.filter((o) => o.kind === "Secret").length, 0);
    for (const hook of hooksOf(given)) assert.equal(hook.clientConfig.caBundle, bundle);
    assert.equal(one(given, "Deployment").spec.template.spec.volumes[0].secret.secretName, "my-tls");
    const open = await template({ certificates: { mode: "secret" } });
    for (const hook of hooksOf(open)) assert.equal(hook.clientConfig.caBundle, undefined);
    await assert.rejects(template({ certificates: { mode: "vault" } }), /at '\/certificates\/mode': value must be one of 'generate', 'certManager', 'secret'/);
  });

  it("renders a NetworkPolicy only when asked, and only with the apiserver's addresses", async function () {
    assert.equal((await template()).filter((o) => o.kind === "NetworkPolicy").length, 0);
    await assert.rejects(template({ networkPolicy: { enabled: true } }), /networkPolicy\.apiServer\.cidrs is required.*cluster-specific/s);

    const prometheus = { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } };
    const database = { ipBlock: { cidr: "10.20.0.0/16" } };
    const objects = await template({
      networkPolicy: { enabled: true, ingressFrom: [prometheus], apiServer: { cidrs: ["172.18.0.2/32"] }, databases: { to: [database] } },
    });
    const policy = one(objects, "NetworkPolicy");
    assert.deepEqual(policy.spec.podSelector, one(objects, "Deployment").spec.selector);
    assert.deepEqual(policy.spec.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(policy.spec.ingress, [{ ports: [{ protocol: "TCP", port: 8443 }], from: [prometheus] }]);
    const [apiServer, databases, dns, ...rest] = policy.spec.egress;
    assert.deepEqual(apiServer, {
      to: [{ ipBlock: { cidr: "172.18.0.2/32" } }],
      ports: [{ protocol: "TCP", port: 443 }, { protocol: "TCP", port: 6443 }],
    });
    assert.deepEqual(databases, { ports: [{ protocol: "TCP", port: 5432 }], to: [database] });
    assert.deepEqual(dns.ports, [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }]);
    assert.deepEqual(rest, []);
  });

  it("renders a ServiceMonitor, a PodMonitor, the PrometheusRule and the dashboard only when asked", async function () {
    const plain = await template();
    for (const kind of ["ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"]) {
      assert.equal(plain.filter((o) => o.kind === kind).length, 0, kind);
    }
    const objects = await template({
      metrics: {
        serviceMonitor: { enabled: true, interval: "30s", labels: { release: "prometheus" } },
        podMonitor: { enabled: true },
        prometheusRule: { enabled: true, labels: { release: "prometheus" } },
      },
      grafanaDashboard: { enabled: true },
    });
    const tls = { ca: { secret: { name: "schema-gate-tls", key: "ca.crt" } }, serverName: "schema-gate.schema-gate.svc" };
    const monitor = one(objects, "ServiceMonitor");
    assert.equal(monitor.metadata.labels.release, "prometheus");
    assert.deepEqual(monitor.spec.selector.matchLabels, one(objects, "Service").spec.selector);
    assert.deepEqual(monitor.spec.endpoints, [{ port: "https", scheme: "https", path: "/metrics", interval: "30s", tlsConfig: tls }]);
    const podMonitor = one(objects, "PodMonitor");
    assert.deepEqual(podMonitor.spec.podMetricsEndpoints, [{ port: "https", scheme: "https", path: "/metrics", tlsConfig: tls }]);

    const rules = YAML.parse(await readFile(join(chart, "files", "schema-gate.rules.yaml"), "utf8"));
    assert.deepEqual(one(objects, "PrometheusRule").spec, rules);
    const withoutKsm = await template({ metrics: { prometheusRule: { enabled: true, kubeStateMetrics: false } } });
    assert.deepEqual(
      one(withoutKsm, "PrometheusRule").spec.groups.map((g: Obj) => g.name),
      rules.groups.map((g: Obj) => g.name).filter((n: string) => !n.endsWith("-kube-state-metrics")),
    );

    const dashboard = one(objects, "ConfigMap");
    assert.equal(dashboard.metadata.labels.grafana_dashboard, "1");
    assert.deepEqual(JSON.parse(dashboard.data["schema-gate.json"]), JSON.parse(await readFile(join(chart, "dashboards", "schema-gate.json"), "utf8")));
  });

  it("refuses values that values.schema.json does not allow: wrong types, misspelt keys", async function () {
    await assert.rejects(template({ replicas: "two" }), /at '\/replicas': got string, want integer/);
    await assert.rejects(template({ replica: 3 }), /additional properties 'replica' not allowed/);
    await assert.rejects(template({ networkPolicy: { enabled: true, apiserver: { cidrs: ["10.0.0.1/32"] } } }), /additional properties 'apiserver' not allowed/);
  });

  it("documents every value in its README and comments every value in values.yaml", async function () {
    const text = await readFile(join(chart, "values.yaml"), "utf8");
    const readme = await readFile(join(chart, "README.md"), "utf8");
    // README rows: | `path` | `default as JSON` | description |
    const documented = new Map(
      [...readme.matchAll(/^\| `([^`]+)` \| `(.*?)` \| .+ \|$/gm)].map((m) => [m[1]!, JSON.parse(m[2]!.replace(/\\\|/g, "|"))]),
    );
    const values = new Map<string, unknown>();
    const walk = (node: YAML.YAMLMap, prefix: string) => {
      node.items.forEach((pair, i) => {
        const key = `${prefix}${String((pair.key as YAML.Scalar).value)}`;
        // The comment of a map's first key is kept on the map.
        const comment = (pair.key as YAML.Scalar).commentBefore ?? (i === 0 ? node.commentBefore : undefined);
        // A map without a comment of its own groups values (image.*); with one, it is a value (resources).
        if (YAML.isMap(pair.value) && pair.value.items.length > 0 && !comment) return walk(pair.value, `${key}.`);
        assert.ok(comment?.trim(), `values.yaml: ${key} has a comment`);
        values.set(key, (pair.value as YAML.Node).toJSON());
      });
    };
    walk(YAML.parseDocument(text).contents as YAML.YAMLMap, "");
    assert.ok(values.size > 40, [...values.keys()].join(" "));
    for (const [path, value] of values) {
      assert.ok(documented.has(path), `charts/schema-gate/README.md documents ${path}`);
      assert.deepEqual(documented.get(path), value, `README's default of ${path}`);
    }
    for (const path of documented.keys()) assert.ok(values.has(path), `README documents ${path}, which values.yaml does not have`);
    const { stdout } = await helm(["show", "values", chart]);
    assert.equal(stdout.trimEnd(), text.trimEnd(), "helm show values prints values.yaml with its comments");
  });

  it("is what manifests/ holds: the kustomize install is rendered from the chart (npm run manifests)", async function () {
    const out = await mkdtemp(join(tmpdir(), "schema-gate-render-"));
    await run("bash", [join(projectRoot, "tools", "render-manifests.sh"), out], { env: { ...process.env, HELM: helmBin } });
    for (const file of ["base/crds.yaml", "base/rbac.yaml", "base/deployment.yaml", "base/webhooks.yaml", "cert-manager/certificate.yaml", "namespace-access.yaml"]) {
      const committed = await readFile(join(projectRoot, "manifests", file), "utf8");
      assert.equal(committed, await readFile(join(out, file), "utf8"), `manifests/${file} differs from the chart's rendering: run npm run manifests`);
    }
  });

  describe("in the local cluster", function () {
    let env: TestEnv;
    let kubeEnv: NodeJS.ProcessEnv;

    before(async function () {
      this.timeout(60 * 60_000);
      env = await testEnv();
      kubeEnv = { KUBECONFIG: env.cluster.kubeconfig };
    });

    it("installs with a server-side dry run; its pods meet the restricted Pod Security Standard", async function () {
      const ns = await testNamespace("chart-dry");
      await env.cluster.kubectl(["label", "namespace", ns, "pod-security.kubernetes.io/warn=restricted"]);
      const { stdout } = await helm(["install", "dry", chart, "--namespace", ns, "--dry-run=server"], kubeEnv);
      assert.match(stdout, /STATUS: pending-install/);
      for (const kind of ["Deployment", "PodDisruptionBudget", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Secret"]) {
        assert.match(stdout, new RegExp(`^kind: ${kind}$`, "m"), kind);
      }
      const policy = await helm(
        ["install", "dry", chart, "--namespace", ns, "--dry-run=server", "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.apiServer.cidrs={127.0.0.1/32}"],
        kubeEnv,
      );
      assert.match(policy.stdout, /^kind: NetworkPolicy$/m);

      // helm prints no apiserver warnings on a dry run; kubectl does. PodSecurity admission
      // warns about a Deployment whose pods the namespace's level would refuse.
      const podSecurityWarnings = async (...set: string[]) => {
        const rendered = await helm(["template", "dry", chart, "--namespace", ns, "--show-only", "templates/deployment.yaml", ...set]);
        const applied = await run(env.cluster.binaries.kubectl, ["apply", "--dry-run=server", "-n", ns, "-f", "-"], {
          env: { ...process.env, ...kubeEnv },
          input: rendered.stdout,
        });
        assert.match(applied.stdout, /deployment\.apps\/dry-schema-gate created \(server dry run\)/);
        return applied.stderr;
      };
      assert.doesNotMatch(await podSecurityWarnings(), /PodSecurity/);
      // The same check sees a pod that is not restricted, so its silence above means something.
      assert.match(await podSecurityWarnings("--set", "securityContext=null", "--set", "podSecurityContext=null"), /would violate PodSecurity "restricted/);
    });

    it("keeps the generated certificates across helm upgrade (lookup of the Secret), and the caBundle with them", async function () {
      const ns = await testNamespace("chart");
      const release = "gate";
      const fullname = "gate-schema-gate";
      const uninstall = () => helm(["uninstall", release, "--namespace", ns, "--wait"], kubeEnv).catch((e: CommandError) => e);
      onTeardown(uninstall); // the webhook configurations are cluster-wide

      const observe = async () => {
        const secret = JSON.parse(await env.cluster.kubectl(["get", "secret", `${fullname}-tls`, "-n", ns, "-o", "json"]));
        const bundles: string[] = [];
        for (const kind of ["mutatingwebhookconfiguration", "validatingwebhookconfiguration"]) {
          const config = JSON.parse(await env.cluster.kubectl(["get", kind, fullname, "-o", "json"]));
          bundles.push(...config.webhooks.map((h: Obj) => h.clientConfig.caBundle));
        }
        const deployment = JSON.parse(await env.cluster.kubectl(["get", "deployment", fullname, "-n", ns, "-o", "json"]));
        return { data: secret.data, bundles, args: deployment.spec.template.spec.containers[0].args as string[] };
      };
      // The ReplicaSet controller's pods are admitted only if they meet the restricted level.
      await env.cluster.kubectl(["label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted"]);
      try {
        await helm(["install", release, chart, "--namespace", ns], kubeEnv);
        // kwok's nodes run no containers: "Running" here shows the pods were admitted and scheduled.
        await env.cluster.kubectl(["rollout", "status", `deployment/${fullname}`, "-n", ns, "--timeout=60s"]);
        const installed = await observe();
        assert.equal(installed.bundles.length, 4);
        for (const bundle of installed.bundles) assert.equal(bundle, installed.data["ca.crt"]);

        await helm(["upgrade", release, chart, "--namespace", ns, "--set", "logLevel=debug"], kubeEnv);
        const upgraded = await observe();
        assert.ok(upgraded.args.includes("--log-level=debug"), "the upgrade was applied");
        assert.deepEqual(upgraded.data, installed.data, "the Secret is unchanged");
        assert.deepEqual(upgraded.bundles, installed.bundles, "every caBundle is unchanged");

        // A server-side dry run of the next upgrade sees the same certificates too.
        const { stdout } = await helm(["upgrade", release, chart, "--namespace", ns, "--dry-run=server"], kubeEnv);
        const manifest = stdout.slice(stdout.indexOf("---"), stdout.lastIndexOf("\nNOTES:"));
        const secret = YAML.parseAllDocuments(manifest).map((d) => d.toJSON()).find((o) => o?.kind === "Secret");
        assert.deepEqual(secret.data, installed.data);
      } finally {
        const result = await uninstall();
        if (result instanceof CommandError) throw result;
      }
    });
  });
});
