import * as k8s from "@kubernetes/client-node";
import { readDatabaseSecret, type DatabaseTarget } from "../core/database-secret.js";
import { migrationFiles, type MigrationFile } from "../core/migrations.js";
import { StepFailure } from "../core/window.js";
import { apiStatus } from "./errors.js";

/** The database a group's Secret points at. A missing or malformed Secret is the user's to fix. */
export async function databaseTarget(core: k8s.CoreV1Api, namespace: string, name: string): Promise<DatabaseTarget> {
  let secret: k8s.V1Secret;
  try {
    secret = await core.readNamespacedSecret({ name, namespace });
  } catch (error) {
    if (apiStatus(error) === 404) {
      throw new StepFailure(`Secret ${namespace}/${name} (named by schema-gate.dev/database-secret) does not exist; create it with key "url" or PGHOST/PGUSER/PGPASSWORD/PGDATABASE`);
    }
    if (apiStatus(error) === 403) {
      throw new StepFailure(`the gate may not read Secret ${namespace}/${name}; check the schema-gate ClusterRole grants secrets "get"`);
    }
    throw error;
  }
  const parsed = readDatabaseSecret(`${namespace}/${name}`, secret.data);
  if (!parsed.ok) throw new StepFailure(parsed.problem);
  return parsed.target;
}

/** The SQL runner's files: the `*.sql` keys of the group's ConfigMap, in name order. */
export async function sqlFiles(core: k8s.CoreV1Api, namespace: string, name: string): Promise<MigrationFile[]> {
  let map: k8s.V1ConfigMap;
  try {
    map = await core.readNamespacedConfigMap({ name, namespace });
  } catch (error) {
    if (apiStatus(error) === 404) {
      throw new StepFailure(`ConfigMap ${namespace}/${name} (named by schema-gate.dev/migration-configmap) does not exist; create it with the *.sql files`);
    }
    throw error;
  }
  const files = migrationFiles(map.data);
  if (files.length === 0) {
    throw new StepFailure(`ConfigMap ${namespace}/${name} has no *.sql keys; add the migration files (e.g. 001-create.sql)`);
  }
  return files;
}
