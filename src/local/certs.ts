import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../util/exec.js";
import { projectRoot } from "./paths.js";

export interface ServingCert {
  dir: string;
  cert: string;
  key: string;
  ca: string;
  /** base64 of the CA certificate, for a webhook's clientConfig.caBundle */
  caBundle: string;
}

/** A CA and a serving certificate for 127.0.0.1, made by certs/generate.sh. */
export function makeLoopbackCert(dir?: string): Promise<ServingCert> {
  return makeCert(["IP:127.0.0.1", "DNS:localhost"], dir);
}

/** A CA and a serving certificate for `sans` (e.g. DNS:app.ns.svc), made by certs/generate.sh. */
export async function makeCert(sans: string[], dir?: string): Promise<ServingCert> {
  const out = dir ?? (await mkdtemp(join(tmpdir(), "schema-gate-certs-")));
  await run("bash", [join(projectRoot, "certs", "generate.sh"), out, ...sans]);
  const read = (name: string) => readFile(join(out, name), "utf8");
  return {
    dir: out,
    cert: await read("tls.crt"),
    key: await read("tls.key"),
    ca: await read("ca.crt"),
    caBundle: (await read("ca-bundle.b64")).trim(),
  };
}
