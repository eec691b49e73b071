import { sleep } from "./wait.js";

/**
 * One pass at a time per key (a database group, a namespace), with every kick that comes
 * during a pass folded into a single pass after it: controllers stay level-based without
 * two passes over the same thing racing each other.
 */
export class SerialWork {
  private readonly workers = new Map<string, { running: boolean; again: boolean }>();

  /** `active`: whether passes may run at all (not stopped, still leading). */
  constructor(private readonly active: () => boolean) {}

  /** Runs `pass` for `key` now, or once more after the pass in progress. `pass` returns true to go again at once. */
  kick(key: string, pass: () => Promise<boolean | void>): void {
    if (!this.active()) return;
    const worker = this.workers.get(key) ?? { running: false, again: false };
    this.workers.set(key, worker);
    if (worker.running) {
      worker.again = true;
      return;
    }
    worker.running = true;
    void (async () => {
      try {
        do {
          worker.again = false;
          if ((await pass()) === true) worker.again = true;
        } while (worker.again && this.active());
      } finally {
        worker.running = false;
      }
    })();
  }

  /** Waits (at most `maxMs`) for the passes in progress to return, e.g. at shutdown. */
  async settle(maxMs: number): Promise<void> {
    const deadline = Date.now() + maxMs;
    while ([...this.workers.values()].some((w) => w.running) && Date.now() < deadline) await sleep(20);
  }
}
