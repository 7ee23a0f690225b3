// When a leader's periodic pass runs (the orphan sweep, the leftover sweep): only while
// this coordinator leads a ready tenure and is not listening again after a pause, one
// pass at a time, the first of a tenure as soon as it is ready (a leader that lasts less
// than an interval still does its part), then one every interval.

import { now } from "./clock.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { Tenure, Tenures } from "./tenure.ts";

export class PassSchedule {
  private running = false;
  private lastPass: { tenure: Tenure; atMs: number } | undefined;

  constructor(
    private readonly tenures: Pick<Tenures, "current">,
    private readonly heartbeats: Pick<Heartbeats, "listening">,
  ) {}

  /** Runs `pass` if one is due (see the header). Called often. */
  ifDue(intervalMs: number, pass: (tenure: Tenure) => Promise<void>): Promise<void> {
    const tenure = this.tenures.current();
    const last = this.lastPass;
    if (last !== undefined && last.tenure === tenure && now() - last.atMs < intervalMs) {
      return Promise.resolve();
    }
    return this.run(pass);
  }

  /** Runs `pass` now, if this coordinator leads a ready tenure and no pass is running. */
  async run(pass: (tenure: Tenure) => Promise<void>): Promise<void> {
    const tenure = this.tenures.current();
    if (tenure === undefined || !tenure.ready || this.running) return;
    if (this.heartbeats.listening(now())) return;
    this.lastPass = { tenure, atMs: now() };
    this.running = true;
    try {
      await pass(tenure);
    } finally {
      this.running = false;
    }
  }
}
