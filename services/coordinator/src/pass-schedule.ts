// When a leader's periodic pass runs (the orphan sweep, the leftover sweep): only while
// this coordinator leads a ready tenure and is not listening again after a pause, one
// pass at a time, the first of a tenure as soon as it is ready (a leader that lasts less
// than an interval still does its part), then one every interval. Once the tenure of the
// last pass is over, `tenureOver` says so once, and the sweep drops what it kept of that
// tenure then, rather than when this coordinator next leads (on a standby, maybe never).

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

  /**
   * True, once, when the tenure of the last pass is no longer the current one (none is,
   * or another) and no pass is running: the last pass is forgotten with it.
   */
  tenureOver(): boolean {
    if (this.lastPass === undefined || this.running) return false;
    if (this.lastPass.tenure === this.tenures.current()) return false;
    this.lastPass = undefined;
    return true;
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
