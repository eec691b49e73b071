import { readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../src/local/paths.js";

/**
 * A real AdmissionReview captured from kube-apiserver v1.36 (test/fixtures/admission),
 * parsed afresh on every call so a test can change it freely.
 */
export function admissionReview(name: "deployment-create" | "deployment-update" | "deployment-scale"): any {
  return JSON.parse(readFileSync(join(projectRoot, "test", "fixtures", "admission", `${name}.json`), "utf8"));
}
