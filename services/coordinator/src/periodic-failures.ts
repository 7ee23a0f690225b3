// What the log says of the leader's periodic work (coordinator.ts `every`) that fails.
// A task whose cause lasts (NATS away, a sled that answers nothing) fails every period,
// so its error is said when it begins, then once per logRepeatIntervalMs with the count
// left out (RepeatLog), and once when the task succeeds again.

import { type Logger, RepeatLog } from "@ballast/runtime";
import { now } from "./clock.ts";

export class PeriodicFailures {
  private readonly repeats: RepeatLog;

  constructor(
    private readonly logger: Pick<Logger, "info" | "error">,
    private readonly clock: () => number = now,
    logRepeatIntervalMs?: number,
  ) {
    this.repeats = new RepeatLog(logRepeatIntervalMs);
  }

  /** Task `key` (run every `intervalMs`) failed with `error`. */
  failed(key: string, intervalMs: number, error: unknown): void {
    const due = this.repeats.due(key, this.clock());
    if (due === undefined) return;
    this.logger.error(
      {
        task: key,
        intervalMs,
        error: String(error),
        ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
      },
      "periodic work failed",
    );
  }

  /** Task `key` ran through: its end is said once if it was failing. */
  succeeded(key: string, intervalMs: number): void {
    const ended = this.repeats.end(key);
    if (ended === undefined) return;
    this.logger.info(
      { task: key, intervalMs, repeatsSuppressed: ended.suppressed },
      "periodic work succeeds again",
    );
  }
}
