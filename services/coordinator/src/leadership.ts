// Which coordinator leads: the KV key `leader`, {coordinator, term}, written only by
// compare-and-set on its revision. No wall clock is compared across coordinators:
//
// - The leader renews the key every leaderRenewMs and leads until leaseMs − marginMs
//   after the *start* of its last successful renewal, by its own monotonic clock. The
//   start precedes the write, so the leader stops no later than leaseMs − marginMs
//   after the write.
// - Another coordinator takes over only once the key's revision has not changed for
//   leaseMs + marginMs by its own monotonic clock, counted from when it first read that
//   revision (after the write), and only by naming that revision, so two takeovers
//   cannot both succeed and a renewal that lands first defeats the takeover. Between
//   the old leader stopping and the new one starting lie 2 × marginMs, which absorbs
//   the difference in clock rates over a lease.
// - Every takeover writes `term` = the previous term + 1, so a term names one tenure of
//   one coordinator. The leader stamps its term on every partition record it writes and
//   rewrites every record with it when it takes over (catalogue.ts `fence`): a write an
//   ex-leader prepared before it was paused names a revision that no longer exists.
//
// LeaderElection is the pure core (time as an argument); Leadership carries out its
// writes on the KV store. A coordinator frozen (SIGSTOP) past its lease stops leading the
// moment it wakes (its monotonic clock ran on), and leads again only through a renewal
// that starts a new tenure, on which the shell drops every piece of lease bookkeeping.

import type { ControlStore, Versioned } from "./catalogue.ts";

export const leaderKey = "leader";

export interface LeaderRecord {
  coordinator: string;
  /** Grows by one on every takeover; absent in records written before terms (read as 0). */
  term?: number;
}

export type LeaderWrite =
  | { kind: "none" }
  | { kind: "create"; record: Required<LeaderRecord> }
  | { kind: "update"; record: Required<LeaderRecord>; revision: number };

export interface LeaderElectionOptions {
  nodeId: string;
  leaseMs: number;
  /** Allowance for the clock rates of two coordinators to differ over one lease. */
  marginMs: number;
}

/** The pure core of leadership: what to write, and whether this coordinator leads. */
export class LeaderElection {
  /** The term this coordinator holds and when its last successful renewal began. */
  private held: { term: number; renewedFromMs: number } | undefined;
  /** The other holder's revision this coordinator is waiting out, and since when. */
  private observed: { revision: number; sinceMs: number } | undefined;
  private termSeenMax = 0;
  private tenureCount = 0;

  constructor(private readonly options: LeaderElectionOptions) {
    if (!(options.marginMs >= 0 && options.leaseMs > 2 * options.marginMs)) {
      throw new Error(
        `the leader lease (${options.leaseMs} ms) must exceed twice its margin (${options.marginMs} ms)`,
      );
    }
  }

  isLeader(nowMs: number): boolean {
    const { leaseMs, marginMs } = this.options;
    return this.held !== undefined && nowMs < this.held.renewedFromMs + leaseMs - marginMs;
  }

  /** The term held, while leading. */
  termAt(nowMs: number): number | undefined {
    return this.isLeader(nowMs) ? this.held?.term : undefined;
  }

  /**
   * Grows each time this coordinator starts to lead afresh (a takeover, or a renewal
   * after its lease had lapsed): the shell resets its leader state on a new tenure.
   */
  get tenure(): number {
    return this.tenureCount;
  }

  /** What to write, given the key as read at `nowMs` (after the read completed). */
  next(current: Versioned<LeaderRecord> | undefined, nowMs: number): LeaderWrite {
    const { nodeId, leaseMs, marginMs } = this.options;
    if (current === undefined) {
      return { kind: "create", record: { coordinator: nodeId, term: this.termSeenMax + 1 } };
    }
    const term = current.value.term ?? 0;
    this.termSeenMax = Math.max(this.termSeenMax, term);
    if (
      this.held !== undefined &&
      current.value.coordinator === nodeId &&
      term === this.held.term
    ) {
      return { kind: "update", record: { coordinator: nodeId, term }, revision: current.revision };
    }
    // Another coordinator's key (or a term of this node id it does not hold: a previous
    // process of the same id) — whatever this coordinator held, it holds no more.
    this.held = undefined;
    if (this.observed?.revision !== current.revision) {
      this.observed = { revision: current.revision, sinceMs: nowMs };
      return { kind: "none" };
    }
    if (nowMs - this.observed.sinceMs < leaseMs + marginMs) return { kind: "none" };
    return {
      kind: "update",
      record: { coordinator: nodeId, term: term + 1 },
      revision: current.revision,
    };
  }

  /** A write planned by `next` in a renewal that began at `startedAtMs` succeeded. */
  onWritten(record: Required<LeaderRecord>, startedAtMs: number): void {
    const continuing = this.held?.term === record.term && this.isLeader(startedAtMs);
    if (!continuing) this.tenureCount++;
    this.held = { term: record.term, renewedFromMs: startedAtMs };
    this.observed = undefined;
    this.termSeenMax = Math.max(this.termSeenMax, record.term);
  }
}

export interface LeadershipOptions extends LeaderElectionOptions {
  kv: ControlStore;
  /** The monotonic clock (performance.now in production). */
  clock: () => number;
}

export interface Leading {
  term: number;
  tenure: number;
}

/** Leadership's shell: reads the key, writes what LeaderElection decides. */
export class Leadership {
  readonly election: LeaderElection;
  private readonly encoder = new TextEncoder();

  constructor(private readonly options: LeadershipOptions) {
    this.election = new LeaderElection(options);
  }

  isLeader(): boolean {
    return this.election.isLeader(this.options.clock());
  }

  /** The term and tenure this coordinator leads in now, if it leads. */
  leading(): Leading | undefined {
    const term = this.election.termAt(this.options.clock());
    return term === undefined ? undefined : { term, tenure: this.election.tenure };
  }

  /** Takes or renews the lease; returns the tenure this coordinator leads in, if any. */
  async renew(): Promise<Leading | undefined> {
    const { kv, clock } = this.options;
    const startedAtMs = clock();
    try {
      const entry = await kv.get(leaderKey);
      const current =
        entry === null || entry.operation !== "PUT"
          ? undefined
          : { value: entry.json<LeaderRecord>(), revision: entry.revision };
      const write = this.election.next(current, clock());
      if (write.kind !== "none") {
        const payload = this.encoder.encode(JSON.stringify(write.record));
        if (write.kind === "create") await kv.create(leaderKey, payload);
        else await kv.update(leaderKey, payload, write.revision);
        this.election.onWritten(write.record, startedAtMs);
      }
    } catch {
      // A lost race or an unreachable store: the lease runs out on its own.
    }
    return this.leading();
  }

  /** Who holds the key now, for status. */
  async holder(): Promise<string | undefined> {
    const entry = await this.options.kv.get(leaderKey);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return entry.json<LeaderRecord>().coordinator;
  }
}
