// The chaos run's randomness: a seeded PRNG (mulberry32), so that one seed fixes the
// workload's choices and the fault schedule. Each client and the nemesis draw from their
// own stream, derived from the seed and a name, so that one stream's draws do not shift
// another's. Wall-clock timing still varies between runs of the same seed (which
// operation a fault lands on, how long a restart takes), so a seed replays the plan, not
// the exact interleaving.

export interface Random {
  /** A uniform draw from [0, 1). */
  next(): number;
  /** A uniform integer in [0, n). */
  int(n: number): number;
  /** A uniform integer in [low, high]. */
  between(low: number, high: number): number;
  pick<T>(items: readonly T[]): T;
}

export function seededRandom(seed: number, stream: string): Random {
  let state = seed >>> 0;
  for (const char of stream) state = Math.imul(state ^ char.charCodeAt(0), 0x9e3779b1) >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    between: (low, high) => low + int(high - low + 1),
    pick: (items) => {
      if (items.length === 0) throw new Error("pick from nothing");
      return items[int(items.length)]!;
    },
  };
}
