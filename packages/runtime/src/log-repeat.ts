import { logRepeatIntervalMs, logRepeatKeysMax } from "./constants.ts";

/** What `RepeatLog.due` tells of a repeat to log. */
export interface RepeatDue {
  /** The condition's first line (not a reminder). */
  first: boolean;
  /** Repeats left out since the last line of this condition. */
  suppressed: number;
}

interface Tracked {
  loggedAtMs: number;
  suppressed: number;
}

/**
 * Keyed "log once per interval, count the rest" for conditions met again and again by
 * a periodic loop. The caller passes the time (a monotonic clock's ms), so tests drive
 * it without timers. A condition is logged when it begins (`due` answers first: true),
 * then at most once per `intervalMs` while it lasts (a reminder, with the count left
 * out), and `end` says whether it was on, so its end can be logged once too.
 */
export class RepeatLog {
  private readonly tracked = new Map<string, Tracked>();

  constructor(
    private readonly intervalMs: number = logRepeatIntervalMs,
    private readonly keysMax: number = logRepeatKeysMax,
  ) {
    if (!Number.isFinite(intervalMs) || intervalMs < 0) {
      throw new RangeError(`RepeatLog: intervalMs must be a finite number ≥ 0, got ${intervalMs}`);
    }
    if (!Number.isInteger(keysMax) || keysMax < 1) {
      throw new RangeError(`RepeatLog: keysMax must be an integer ≥ 1, got ${keysMax}`);
    }
  }

  /**
   * Condition `key` is met at `nowMs`. Returns what to say if a line is due (the first,
   * or a reminder an interval after the last line), undefined if this repeat is to be
   * left out (it is counted).
   */
  due(key: string, nowMs: number): RepeatDue | undefined {
    const known = this.tracked.get(key);
    if (known === undefined) {
      if (this.tracked.size >= this.keysMax) {
        const oldest = this.tracked.keys().next().value;
        if (oldest !== undefined) this.tracked.delete(oldest);
      }
      this.tracked.set(key, { loggedAtMs: nowMs, suppressed: 0 });
      return { first: true, suppressed: 0 };
    }
    if (nowMs - known.loggedAtMs < this.intervalMs) {
      known.suppressed++;
      return undefined;
    }
    const suppressed = known.suppressed;
    known.loggedAtMs = nowMs;
    known.suppressed = 0;
    return { first: false, suppressed };
  }

  /**
   * Condition `key` no longer holds. Returns the repeats left out since its last line if
   * it was on (log its end then), undefined if it was not.
   */
  end(key: string): { suppressed: number } | undefined {
    const known = this.tracked.get(key);
    if (known === undefined) return undefined;
    this.tracked.delete(key);
    return { suppressed: known.suppressed };
  }

  /** Whether condition `key` is on (met since its last `end`). */
  has(key: string): boolean {
    return this.tracked.has(key);
  }

  /** The keys of the conditions on now. */
  keys(): string[] {
    return [...this.tracked.keys()];
  }

  /** Forgets the conditions whose key `drop` answers true for, without a line. */
  forget(drop: (key: string) => boolean): void {
    for (const key of [...this.tracked.keys()]) if (drop(key)) this.tracked.delete(key);
  }

  get size(): number {
    return this.tracked.size;
  }
}
