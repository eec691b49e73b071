import type { WindowDeps } from "../../../src/controller/deps.js";
import type { GroupMemory } from "../../../src/controller/pass.js";
import { reconcileGroup } from "../../../src/controller/reconcile.js";
import { STEP_BODIES, type StepBody } from "../../../src/controller/steps.js";
import type { Step } from "../../../src/core/window.js";
import { LostLeadership } from "../../../src/k8s/leader.js";
import { GROUP, NAMESPACE, type FakeWorld } from "./fake-world.js";

export type Steps = Record<Step, StepBody>;

/** Runs passes as the controller's loop would, the clock jumping to each requeue, until one asks for nothing more. */
export async function drive(world: FakeWorld, deps: WindowDeps, steps: Steps = STEP_BODIES, memory: GroupMemory = {}): Promise<"settled" | "lost"> {
  for (let pass = 0; pass < 500; pass++) {
    let requeue: number | undefined;
    try {
      ({ requeueAfterMs: requeue } = await reconcileGroup(deps, NAMESPACE, GROUP, memory, steps));
    } catch (error) {
      if (error instanceof LostLeadership) return "lost";
      throw error;
    }
    if (requeue === undefined) return "settled";
    world.now += requeue;
  }
  throw new Error(`the window did not settle; record at step ${world.record.state?.step}`);
}

