// Lazy ticking of one replica core (issue 14: an idle cost flat in partitions). The head
// node's timer ticks every replica every tickMs; most replicas are idle, and an idle
// core's tick changes nothing but its tick count. So the shell asks the core how many of
// the next ticks are quiet (Replica.quietTicks) and holds those back, handing them over
// with the next tick that may do something (`tick(skipped)`), or counts them without
// running any before the next input (`skipQuietTicks`).
//
// Model: the core sees exactly what it would see if ticked every time. A held tick was
// quiet when held (the query is asked afresh for each one, so an input that made work
// since counts at once); each input finds the count caught up (`catchUp`), so whatever
// it stamps with the tick count is stamped as before. Inputs that reach the core
// directly (the replicator's recordCopies and requestCheckpoint) stamp no tick count,
// and the next timer tick asks afresh. The differential test
// (test/held-ticks.test.ts) drives a core ticked every time and one ticked lazily with
// the same inputs and compares everything they show.

import type { Replica } from "./replica/replica.ts";

export class HeldTicks {
  /** Timer ticks not yet given to the core: each was quiet when it was held. */
  private held = 0;
  /** Ticks the core actually ran (held ones are handed over as a count). */
  ticksRun = 0;

  constructor(private readonly core: Pick<Replica, "tick" | "quietTicks" | "skipQuietTicks">) {}

  /** Ticks held back now. */
  get pending(): number {
    return this.held;
  }

  /** One timer tick: held back if quiet, else run after the held ones. True if it ran. */
  tick(): boolean {
    this.held++;
    if (this.held <= this.core.quietTicks()) return false;
    const skipped = this.held - 1;
    this.held = 0;
    this.ticksRun++;
    this.core.tick(skipped);
    return true;
  }

  /**
   * Counts the held ticks in the core without running any; call before any input to
   * the core. None may run now: an input that reached the core directly since (the
   * replicator's requestCheckpoint) could make one of them act, out of its place.
   */
  catchUp(): void {
    if (this.held === 0) return;
    this.core.skipQuietTicks(this.held);
    this.held = 0;
  }
}
