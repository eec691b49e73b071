import type { Progress } from "../core/maintenance-flag.js";
import { stepNumber, STEPS, type WindowState } from "../core/window.js";
import { LostLeadership } from "../k8s/leader.js";
import type { Logger } from "../logger.js";
import type { MaintenanceSwitch } from "../maintenance/switch.js";
import { SerialWork } from "../util/serial-work.js";

/**
 * The maintenance page shows the step, written off the window's path: a step never waits
 * for it, and a failure to say so never stops the window. One write per namespace at a
 * time, the latest step winning; a flag turned off meanwhile refuses the late write
 * through its resourceVersion.
 */
export function progressWriter(maintenance: Pick<MaintenanceSwitch, "progress">, log: Logger, leading: () => boolean = () => true) {
  let stopped = false;
  const work = new SerialWork(() => !stopped);
  const latest = new Map<string, { window: string; progress: Progress }>();
  return {
    show(namespace: string, state: WindowState): void {
      const progress = { version: state.version, step: state.step, index: stepNumber(state.step), of: STEPS.length, startedAt: state.startedAt };
      latest.set(namespace, { window: state.id, progress });
      // A kick during a write runs the first kick's pass again: it reads the map, not its closure.
      work.kick(namespace, async () => {
        const next = latest.get(namespace);
        if (!next) return;
        latest.delete(namespace);
        // Written later than asked: only while this replica still leads (the switch asks again before its write).
        if (!leading()) return;
        await maintenance.progress(namespace, next.progress).catch((error: unknown) => {
          if (error instanceof LostLeadership) return;
          log.warn({ err: error, namespace, window: next.window }, "could not show progress on the maintenance page");
        });
      });
    },
    async stop(): Promise<void> {
      stopped = true;
      await work.settle(1000);
    },
  };
}
