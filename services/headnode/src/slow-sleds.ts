// Which sleds a head node has lately seen slow: alive by their heartbeats (so every
// configure names them) but missing deadlines or answering data I/O in seconds, as a
// sled on a failing or throttled disk does. The sled client asks such a sled last,
// for reads, chunk writes and checkpoint blobs alike (`order`), so one slow sled does
// not hold each cold read, flush and checkpoint for its deadline while sound copies and
// healthy sleds wait unused. It is still asked when nothing else will do: slow is not
// dead, and a chunk needs two copies.
//
// A sled counts as slow for a hold after the last request that showed it (a missed
// deadline, or an answer slower than `sledSlowAnswerMs`); it is then tried in its place
// again, and is slow again at once if it still is. Trying it costs the request that
// finds it so (a flush waiting out the sled's deadline), so a sled found slow again
// within a hold of its last one ending is held twice as long, from `sledSlowHoldMs` up
// to `sledSlowHoldMsMax`: a sled that stays slow for an hour costs a head node about a
// dozen such requests, not one every half minute. A fast answer does not end a hold
// early: a slow sled asked last gets few requests, and those it gets may be the cheap
// ones its memory answers while its disk is still slow. Time is a monotonic clock's ms,
// passed in, so tests drive it.
//
// What it holds is told to operators (`holds`: the head node's node info, which
// `ballast status` shows): each slow sled, how long it has been slow, and how much of its
// hold is left. A sled held again soon after a hold (a doubled hold) has been slow since
// the first hold of that run: between the two it was only being tried again.

/**
 * A data I/O answer (a chunk or blob read or write) slower than this marks its sled
 * slow. Well above a healthy sled's answer on a loaded machine (tens of ms), well below
 * a client's request deadline (5 s), which a read stuck behind such a sled would miss.
 */
export const sledSlowAnswerMs = 2_000;

/**
 * How long a sled seen slow is asked last (from the last request that showed it), the
 * first time …
 */
export const sledSlowHoldMs = 30_000;
/** … and at most, doubled each time it is found slow again soon after a hold (above). */
export const sledSlowHoldMsMax = 5 * 60_000;

interface Hold {
  /** The time (clock ms) at which the sled stops counting as slow. */
  untilMs: number;
  /** The length of this hold: the next, if it is slow again within it of `untilMs`, doubles. */
  holdMs: number;
  /** When the first hold of this run began: a doubled hold keeps it (see the header). */
  sinceMs: number;
}

/** A slow sled's hold as operators see it, at the time asked (ms, rounded). */
export interface SlowSledHold {
  sled: string;
  /** How long it has been slow: since the first hold of this run of holds. */
  slowForMs: number;
  /** How much longer it is asked last, unless it is seen slow again meanwhile. */
  holdLeftMs: number;
  /** The length of its hold: `sledSlowHoldMs`, doubled while it stays slow. */
  holdMs: number;
}

export class SlowSleds {
  /** Sled → its hold; kept a hold's length past its end, to know a sled slow again. */
  private readonly holds = new Map<string, Hold>();

  constructor(
    private readonly holdMs: number = sledSlowHoldMs,
    private readonly holdMsMax: number = sledSlowHoldMsMax,
  ) {}

  /** Records that `sled` was seen slow at `nowMs`; true when it was not slow before. */
  mark(sled: string, nowMs: number): boolean {
    const known = this.holds.get(sled);
    if (known !== undefined && nowMs < known.untilMs) {
      known.untilMs = nowMs + known.holdMs;
      return false;
    }
    // Slow again within a hold's length of the last ending: hold it twice as long.
    const again = known !== undefined && nowMs < known.untilMs + known.holdMs;
    const holdMs = again ? Math.min(known.holdMs * 2, this.holdMsMax) : this.holdMs;
    const sinceMs = again ? known.sinceMs : nowMs;
    this.holds.set(sled, { untilMs: nowMs + holdMs, holdMs, sinceMs });
    return true;
  }

  /** Whether `sled` counts as slow at `nowMs` (a hold long over is forgotten here). */
  isSlow(sled: string, nowMs: number): boolean {
    const known = this.holds.get(sled);
    if (known === undefined) return false;
    if (nowMs < known.untilMs) return true;
    if (nowMs >= known.untilMs + known.holdMs) this.holds.delete(sled);
    return false;
  }

  /** The sleds slow at `nowMs`. */
  slow(nowMs: number): string[] {
    return [...this.holds.keys()].filter((sled) => this.isSlow(sled, nowMs));
  }

  /** The holds of the sleds slow at `nowMs`, in the order of `slow`. */
  holdsAt(nowMs: number): SlowSledHold[] {
    return this.slow(nowMs).map((sled) => {
      const hold = this.holds.get(sled)!;
      return {
        sled,
        slowForMs: Math.round(nowMs - hold.sinceMs),
        holdLeftMs: Math.round(hold.untilMs - nowMs),
        holdMs: Math.round(hold.holdMs),
      };
    });
  }

  /**
   * `sleds` with the slow ones moved to the end, each part in its order (a stable
   * partition: the spread of chunk writes and the batching of reads among the others
   * stay as they were). The same array when none is slow.
   */
  order(sleds: readonly string[], nowMs: number): readonly string[] {
    if (this.holds.size === 0) return sleds;
    const slow: string[] = [];
    const others: string[] = [];
    for (const sled of sleds) (this.isSlow(sled, nowMs) ? slow : others).push(sled);
    return slow.length === 0 ? sleds : [...others, ...slow];
  }
}
