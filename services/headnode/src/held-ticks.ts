// Lazy ticking of one replica core (issue 14: an idle cost flat in partitions). The head
// node's timer ticks every tickMs; most replicas are idle, and an idle core's tick
// changes nothing but its tick count. So the shell asks the core how many of the next
// ticks are quiet (Replica.quietTicks) and holds those back, handing them over with the
// next tick that may do something (`tick(skipped)`), or counting them without running
// any before the next input (`catchUp`). With the node's tick schedule
// (tick-schedule.ts) the shell does not even ask in between: `tick` says at which node
// tick the core must next be asked, and an input makes it due at the next one.
//
// Model: the core sees exactly what it would see if ticked at every node tick. The
// node tick number is the only clock: `counted` is the last node tick the core's count
// includes (run or skipped), so the ticks held are those after it up to now. Between
// two inputs nothing but ticks reaches the core, and quietTicks depends on the core's
// state and count alone, so its answer holds until the tick it names: asked once, it
// stands for every node tick until then. Every input to the core (a request, a message,
// an effect completion, a configure, the replicator's recordCopies and
// requestCheckpoint, a hold) goes through `input`, which first catches the
// count up to now, so that whatever the input stamps with the count is stamped as
// before; the shell then makes the replica due at the next node tick (the input may
// have made work). The differential test (test/held-ticks.test.ts) drives a core ticked
// every time and one driven through the schedule with the same inputs and compares
// everything they show.

import type { Replica } from "./replica/replica.ts";

/** What the shell gives a core through HeldTicks: ticks and the quiet query. */
type Ticked = Pick<Replica, "tick" | "quietTicks" | "skipQuietTicks">;

export class HeldTicks<Core extends Ticked = Replica> {
  /** The last node tick the core's count includes (ran or counted as skipped). */
  private counted: number;
  /** Ticks the core actually ran (held ones are handed over as a count). */
  ticksRun = 0;

  /** `now`: the node tick at which the core starts (it has seen none before). */
  constructor(
    private readonly core: Core,
    now = 0,
  ) {
    this.counted = now;
  }

  /** Ticks held back at node tick `now`: each was quiet when it was held. */
  pending(now: number): number {
    return now - this.counted;
  }

  /**
   * Node tick `now` has come for this core (it was due): runs its tick if the ticks held
   * up to now are not all quiet, handing the held ones over with it. Returns the node
   * tick at which the core must next be asked: the next one after a tick ran (the tick
   * may have made work), else the first tick that is not quiet (Infinity: none is until
   * an input). Returns whether a tick ran in `ran`.
   */
  tick(now: number): { ran: boolean; dueTick: number } {
    const held = now - this.counted;
    const quiet = this.core.quietTicks();
    if (held <= quiet) return { ran: false, dueTick: this.counted + quiet + 1 };
    this.counted = now;
    this.ticksRun++;
    this.core.tick(held - 1);
    return { ran: true, dueTick: now + 1 };
  }

  /**
   * Brings the core's count up to node tick `now` before an input: the held ticks are
   * counted without running (skipQuietTicks). Should one of them not be quiet (it
   * was due but not yet asked: an input arriving in the middle of a node tick's pass),
   * it runs in its place first, as it would have before the input. Returns whether a
   * tick ran (its effects are then waiting in the core).
   */
  catchUp(now: number): boolean {
    let ran = false;
    while (this.counted < now) {
      const held = now - this.counted;
      const quiet = this.core.quietTicks();
      if (held <= quiet) {
        this.core.skipQuietTicks(held);
        this.counted = now;
        break;
      }
      this.counted += quiet + 1;
      this.ticksRun++;
      this.core.tick(quiet);
      ran = true;
    }
    return ran;
  }

  /** An input to the core: the count caught up to `now` first (see catchUp). */
  input<T>(now: number, apply: (core: Core) => T): T {
    this.catchUp(now);
    return apply(this.core);
  }
}
