// Which sleds a head node has lately seen slow: alive by their heartbeats (so every
// configure names them) but missing deadlines or answering data I/O in seconds, as a
// sled on a failing or throttled disk does. The sled client asks such a sled last,
// for reads, chunk writes and checkpoint blobs alike (`order`), so one slow sled does
// not hold each cold read, flush and checkpoint for its deadline while sound copies and
// healthy sleds wait unused. It is still asked when nothing else will do: slow is not
// dead, and a chunk needs two copies.
//
// A sled counts as slow for `sledSlowHoldMs` after the last request that showed it
// (a missed deadline, or an answer slower than `sledSlowAnswerMs`); it is then tried in
// its place again, and is slow again at once if it still is. A fast answer does not end
// it early: a slow sled asked last gets few requests, and those it gets may be the cheap
// ones its memory answers while its disk is still slow. Time is a monotonic clock's ms,
// passed in, so tests drive it.

/**
 * A data I/O answer (a chunk or blob read or write) slower than this marks its sled
 * slow. Well above a healthy sled's answer on a loaded machine (tens of ms), well below
 * a client's request deadline (5 s), which a read stuck behind such a sled would miss.
 */
export const sledSlowAnswerMs = 2_000;

/** How long a sled seen slow is asked last (from the last request that showed it). */
export const sledSlowHoldMs = 30_000;

export class SlowSleds {
  /** Sled → the time (clock ms) at which it stops counting as slow. */
  private readonly until = new Map<string, number>();

  constructor(private readonly holdMs: number = sledSlowHoldMs) {}

  /** Records that `sled` was seen slow at `nowMs`; true when it was not slow before. */
  mark(sled: string, nowMs: number): boolean {
    const wasSlow = this.isSlow(sled, nowMs);
    this.until.set(sled, nowMs + this.holdMs);
    return !wasSlow;
  }

  /** Whether `sled` counts as slow at `nowMs` (an expired mark is forgotten here). */
  isSlow(sled: string, nowMs: number): boolean {
    const until = this.until.get(sled);
    if (until === undefined) return false;
    if (nowMs < until) return true;
    this.until.delete(sled);
    return false;
  }

  /** The sleds slow at `nowMs` (and expired marks forgotten). */
  slow(nowMs: number): string[] {
    return [...this.until.keys()].filter((sled) => this.isSlow(sled, nowMs));
  }

  /**
   * `sleds` with the slow ones moved to the end, each part in its order (a stable
   * partition: the spread of chunk writes and the batching of reads among the others
   * stay as they were). The same array when none is slow.
   */
  order(sleds: readonly string[], nowMs: number): readonly string[] {
    if (this.until.size === 0) return sleds;
    const slow: string[] = [];
    const others: string[] = [];
    for (const sled of sleds) (this.isSlow(sled, nowMs) ? slow : others).push(sled);
    return slow.length === 0 ? sleds : [...others, ...slow];
  }
}
