import { stopTestEnv } from "./env.js";

// Root hooks: the shared cluster and database are started lazily by the first
// integration test that needs them and stopped once, after every test has run.
export async function mochaGlobalTeardown(): Promise<void> {
  await stopTestEnv();
}
