import { strict as assert } from "node:assert";
import { accessSync, constants } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { ensureBinaries } from "../../src/local/binaries.js";
import { projectRoot } from "../../src/local/paths.js";
import { run } from "../../src/util/exec.js";
import { testEnv } from "../support/env.js";

const manifestTemplate = join(projectRoot, "plugins", "schema-gate.yaml");

describe("krew plugin (kubectl schema-gate)", function () {
  let binaries: Record<string, string>;

  before(async function () {
    this.timeout(60 * 60_000); // a first run on a machine builds the binaries (krew among them)
    binaries = (await ensureBinaries()) as unknown as Record<string, string>;
  });

  it("has a manifest of krew's shape: name, version of package.json, one platform with bin/kubectl-schema_gate", async function () {
    const manifest = YAML.parse(await readFile(manifestTemplate, "utf8"));
    const pkg = JSON.parse(await readFile(join(projectRoot, "package.json"), "utf8"));
    assert.equal(manifest.apiVersion, "krew.googlecontainertools.github.com/v1alpha2");
    assert.equal(manifest.kind, "Plugin");
    assert.equal(manifest.metadata.name, "schema-gate", "krew installs plugin schema-gate as kubectl-schema_gate");
    assert.equal(manifest.spec.version, `v${pkg.version}`);
    assert.ok(manifest.spec.shortDescription.length <= 50 && !manifest.spec.shortDescription.includes("\n"));
    assert.ok(manifest.spec.description.trim() && manifest.spec.caveats.includes("Node.js"));
    assert.equal(manifest.spec.platforms.length, 1);
    const [platform] = manifest.spec.platforms;
    assert.deepEqual(platform.selector, { matchExpressions: [{ key: "os", operator: "In", values: ["linux", "darwin"] }] });
    assert.equal(platform.uri, "@URI@");
    assert.equal(platform.sha256, "@SHA256@");
    assert.equal(platform.bin, "bin/kubectl-schema_gate");
    accessSync(join(projectRoot, platform.bin), constants.X_OK);
  });

  it("packs an archive that krew's validator accepts and krew installs, and `kubectl schema-gate` runs from it", async function () {
    this.timeout(5 * 60_000);
    const out = await mkdtemp(join(tmpdir(), "schema-gate-krew-"));
    // .invalid never resolves: nothing is downloaded, krew installs from --archive.
    const base = "https://releases.example.invalid/schema-gate/v0.1.0";
    await run("bash", [join(projectRoot, "tools", "krew-package.sh"), out, base]);
    const files = (await readdir(out)).sort();
    assert.deepEqual(files, ["kubectl-schema_gate-v0.1.0.tar.gz", "schema-gate.yaml"]);
    const manifestFile = join(out, "schema-gate.yaml");
    const filled = YAML.parse(await readFile(manifestFile, "utf8"));
    const [platform] = filled.spec.platforms;
    assert.equal(platform.uri, `${base}/kubectl-schema_gate-v0.1.0.tar.gz`);
    const { stdout: sum } = await run("sha256sum", [join(out, files[0]!)]);
    assert.equal(platform.sha256, sum.split(" ")[0]);

    const listing = (await run("tar", ["-tzf", join(out, files[0]!)])).stdout.split("\n");
    assert.ok(listing.includes("./bin/kubectl-schema_gate") && listing.includes("./dist/cli/main.js"));
    for (const dev of ["typescript", "mocha", "tsx"]) {
      assert.ok(!listing.some((f) => f.startsWith(`./node_modules/${dev}/`)), `no dev dependency ${dev} in the archive`);
    }
    assert.ok(!listing.some((f) => f.startsWith("./src/") || f.startsWith("./test/")));

    // The validator krew-index runs on submissions (structure, platforms, overlaps).
    const validated = await run(binaries["validate-krew-manifest"]!, ["-manifest", manifestFile, "-skip-install"]);
    assert.match(validated.stderr, /structural validation OK/, validated.stderr);
    assert.match(validated.stderr, /no overlapping spec\.platform\[\]\.selector/, validated.stderr);

    const krewRoot = await mkdtemp(join(tmpdir(), "schema-gate-krew-root-"));
    const krewEnv = { ...process.env, KREW_ROOT: krewRoot, KREW_NO_UPGRADE_CHECK: "1" };
    const installed = await run(binaries.krew!, ["install", `--manifest=${manifestFile}`, `--archive=${join(out, files[0]!)}`], {
      env: krewEnv,
      input: "",
    });
    assert.match(installed.stderr + installed.stdout, /Installed plugin: schema-gate/);

    // kubectl finds the plugin on PATH, as a user's shell would after `krew install`.
    const env = await testEnv();
    const pathEnv = { ...process.env, PATH: `${join(krewRoot, "bin")}:${process.env.PATH}`, KUBECONFIG: env.cluster.kubeconfig };
    const plugins = await run(binaries.kubectl!, ["plugin", "list", "--name-only"], { env: pathEnv }).catch((e) => e);
    assert.match(plugins.stdout, /kubectl-schema_gate/);
    const help = await run(binaries.kubectl!, ["schema-gate", "--help"], { env: pathEnv });
    assert.match(help.stdout, /^\s+status /m);
    const status = await run(binaries.kubectl!, ["schema-gate", "status", "-A", "-o", "json"], { env: pathEnv });
    assert.ok(Array.isArray(JSON.parse(status.stdout).groups), status.stdout);
    await Promise.all([out, krewRoot].map((dir) => rm(dir, { recursive: true, force: true })));
  });
});
