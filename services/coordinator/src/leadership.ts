// Which coordinator leads: the KV key `leader`, {coordinator, term}, written only by
// compare-and-set on its revision. No wall clock is compared across coordinators:
//
// - The leader renews the key every leaderRenewMs and leads until leaseMs − marginMs
//   after the *start* of its last successful renewal, by its own monotonic clock (and
//   its own wall clock: see below). The start precedes the write, so the leader stops
//   no later than leaseMs − marginMs after the write.
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
// - A leader that stops gracefully gives the key up: it stops leading, waits for the
//   leader work it had in flight (coordinator.ts), then marks the key `released` by
//   compare-and-set on the revision it renewed. Its holder will never act again, so
//   another coordinator takes it over at once (still by naming that revision, still
//   with term + 1) instead of waiting out a lease. A leader that dies, or whose work
//   does not finish in time, releases nothing, and the lease runs out as before.
//
// - A record that does not parse as one (damaged, or written by something else: a reply
//   a client once had a coordinator publish onto the key) is held by no coordinator. It
//   is waited out like any other holder's (a leader that was renewing it stops when its
//   lease runs out) and then taken over by compare-and-set, with a term above its
//   revision: a term is at most the revision its record was written at (terms grow by
//   one a write, revisions by at least one), so no term a leader ever held reaches it. Without this a
//   damaged key was read as an error on every renewal, and no coordinator led again.
//
// - The leader leads only while its wall clock agrees too: at each renewal's start it
//   reads both clocks, and it leads while each says less than leaseMs − marginMs has
//   passed since (and the wall clock is not behind that reading). A machine frozen as a
//   whole may hold both clocks (a KVM guest: QEMU holds kvmclock while the VM is
//   stopped, architecture.md "Leases"): on waking, the monotonic clock says almost no
//   time passed, while a successor has waited the lease out and leads, granting read
//   leases on the assumption that this one stopped first (leases.ts). Catalogue writes
//   are fenced by term, but lease grants are not, so a leader that believed it still
//   led could grant a primary a lease its successor does not count. A wall clock set
//   right on resume (the guest agent, chrony's makestep, a bare-metal resume) ends
//   such a leadership at once. A wall clock step either way can only end leadership
//   early, never lengthen it: the monotonic bound always applies. A leader whose wall
//   clock stepped back loses the lead until its next renewal, which starts a new tenure.
//   Clocks of two coordinators are still never compared.
//
// LeaderElection is the pure core (time as an argument); Leadership carries out its
// writes on the KV store. A coordinator frozen (SIGSTOP) past its lease stops leading the
// moment it wakes (its monotonic clock ran on; a frozen VM's wall clock, once set right,
// says the same), and leads again only through a renewal that starts a new tenure, on
// which the shell drops every piece of lease bookkeeping.

import { decodeControlRecord, isUnreadableRecord } from "@ballast/protocol";
import type { Logger } from "@ballast/runtime";
import type { ControlStore, StoredEntry, Versioned } from "./catalogue.ts";

export const leaderKey = "leader";

export interface LeaderRecord {
  coordinator: string;
  /** Grows by one on every takeover; absent in records written before terms (read as 0). */
  term?: number;
  /**
   * Set by the holder on a graceful stop, after it stopped leading: the next takeover
   * need not wait out the lease. Coordinators that predate it wait as for any record.
   */
  released?: true;
}

/** A record as this coordinator writes it: always with its term. */
export type WrittenRecord = { coordinator: string; term: number; released?: true };

export type LeaderWrite =
  | { kind: "none" }
  | { kind: "create"; record: WrittenRecord }
  | {
      kind: "update";
      record: WrittenRecord;
      revision: number;
      /** A takeover of a key its holder released (no lease waited out). */
      afterRelease?: true;
    };

/** One reading of a coordinator's two clocks, in ms. */
export interface ClockReading {
  /** The monotonic clock: never steps, but stands still while a VM is frozen with it. */
  monoMs: number;
  /** The wall clock: steps either way (NTP, an operator, a guest agent after a freeze). */
  wallMs: number;
}

export interface LeaderElectionOptions {
  nodeId: string;
  leaseMs: number;
  /** Allowance for the clock rates of two coordinators to differ over one lease. */
  marginMs: number;
}

/** The pure core of leadership: what to write, and whether this coordinator leads. */
export class LeaderElection {
  /** The term this coordinator holds and its clocks when its last successful renewal began. */
  private held: { term: number; renewedFrom: ClockReading } | undefined;
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

  isLeader(now: ClockReading): boolean {
    return this.leadEnded(now) === undefined;
  }

  /**
   * Why this coordinator does not lead at `now` (undefined while it does): it holds no
   * term, or one of its clocks says leaseMs − marginMs has passed since its last
   * renewal began, or the wall clock is behind that renewal's reading of it.
   */
  leadEnded(now: ClockReading): string | undefined {
    if (this.held === undefined) return "it holds no term (the key is another's, or it gave it up)";
    const { leaseMs, marginMs } = this.options;
    const { monoMs, wallMs } = this.held.renewedFrom;
    const leadMs = leaseMs - marginMs;
    if (now.monoMs >= monoMs + leadMs) {
      return `its lease ran out ${Math.ceil(now.monoMs - monoMs - leadMs)} ms ago`;
    }
    if (now.wallMs >= wallMs + leadMs) {
      return `its lease ran out by the wall clock ${Math.ceil(now.wallMs - wallMs - leadMs)} ms ago, though not by the monotonic one (this machine was frozen, or its wall clock stepped forward)`;
    }
    if (now.wallMs < wallMs) {
      return `its lease is void: the wall clock stepped back ${Math.ceil(wallMs - now.wallMs)} ms behind its last renewal`;
    }
    return undefined;
  }

  /** The term held, while leading. */
  termAt(now: ClockReading): number | undefined {
    return this.isLeader(now) ? this.held?.term : undefined;
  }

  /**
   * Grows each time this coordinator starts to lead afresh (a takeover, or a renewal
   * after its lease had lapsed): the shell resets its leader state on a new tenure.
   */
  get tenure(): number {
    return this.tenureCount;
  }

  /**
   * What to write, given the key as read at `nowMs` on the monotonic clock (after the
   * read completed). The wait before a takeover needs no wall clock: a successor frozen
   * through it only waits longer.
   */
  next(current: Versioned<LeaderRecord> | undefined, nowMs: number): LeaderWrite {
    const { nodeId, leaseMs, marginMs } = this.options;
    if (current === undefined) {
      return { kind: "create", record: { coordinator: nodeId, term: this.termSeenMax + 1 } };
    }
    const term = current.value.term ?? 0;
    this.termSeenMax = Math.max(this.termSeenMax, term);
    if (current.value.released === true) {
      // Its holder stopped leading before it wrote this, and will not act again: nothing
      // to wait out. The revision still decides between two takeovers.
      this.held = undefined;
      this.observed = undefined;
      return {
        kind: "update",
        record: { coordinator: nodeId, term: term + 1 },
        revision: current.revision,
        afterRelease: true,
      };
    }
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

  /**
   * A graceful stop: stops leading at once (whatever the write's fate), and returns the
   * write that marks the key released, if the key as read is still this coordinator's
   * term. The caller must have no leader work left in flight, and must not call
   * `onWritten` for it.
   */
  release(current: Versioned<LeaderRecord> | undefined): LeaderWrite {
    const held = this.held;
    this.held = undefined;
    this.observed = undefined;
    if (held === undefined || current === undefined) return { kind: "none" };
    const { coordinator, term, released } = current.value;
    if (coordinator !== this.options.nodeId || (term ?? 0) !== held.term || released === true) {
      return { kind: "none" };
    }
    return {
      kind: "update",
      record: { coordinator, term: held.term, released: true },
      revision: current.revision,
    };
  }

  /** A write planned by `next` in a renewal that began at `startedAt` succeeded. */
  onWritten(record: WrittenRecord, startedAt: ClockReading): void {
    const continuing = this.held?.term === record.term && this.isLeader(startedAt);
    if (!continuing) this.tenureCount++;
    this.held = { term: record.term, renewedFrom: startedAt };
    this.observed = undefined;
    this.termSeenMax = Math.max(this.termSeenMax, record.term);
  }
}

export interface LeadershipOptions extends LeaderElectionOptions {
  kv: ControlStore;
  /** Where an unreadable leader record is reported; unreported without one (unit tests). */
  logger?: Logger;
  /** The monotonic clock (performance.now in production). */
  clock: () => number;
  /** The wall clock (Date.now in production): leadership holds only while it agrees. */
  wallClock: () => number;
}

export interface Leading {
  term: number;
  tenure: number;
  /** Set when this tenure began by taking over a key its holder released. */
  afterRelease?: true;
}

/** Leadership's shell: reads the key, writes what LeaderElection decides. */
export class Leadership {
  readonly election: LeaderElection;
  private readonly encoder = new TextEncoder();
  /** The tenure that began by taking over a released key, if any. */
  private releasedTenure: number | undefined;

  constructor(private readonly options: LeadershipOptions) {
    this.election = new LeaderElection(options);
  }

  isLeader(): boolean {
    return this.election.isLeader(this.now());
  }

  /** Why this coordinator does not lead now (undefined while it does), for the log. */
  leadEnded(): string | undefined {
    return this.election.leadEnded(this.now());
  }

  /** The term and tenure this coordinator leads in now, if it leads. */
  leading(): Leading | undefined {
    const term = this.election.termAt(this.now());
    if (term === undefined) return undefined;
    const tenure = this.election.tenure;
    return this.releasedTenure === tenure ? { term, tenure, afterRelease: true } : { term, tenure };
  }

  /** Takes or renews the lease; returns the tenure this coordinator leads in, if any. */
  async renew(): Promise<Leading | undefined> {
    const startedAt = this.now();
    try {
      const write = this.election.next(await this.read(), this.options.clock());
      if (write.kind !== "none") {
        await this.write(write);
        this.election.onWritten(write.record, startedAt);
        if (write.kind === "update" && write.afterRelease === true) {
          this.releasedTenure = this.election.tenure;
        }
      }
    } catch {
      // A lost race or an unreachable store: the lease runs out on its own.
    }
    return this.leading();
  }

  /**
   * Gives the key up on a graceful stop (see the module header): this coordinator leads
   * no more from the call on. Resolves whether the key was marked released; on any
   * failure the lease simply runs out.
   */
  async release(): Promise<boolean> {
    try {
      const write = this.election.release(await this.read());
      if (write.kind !== "update") return false;
      await this.write(write);
      return true;
    } catch {
      return false;
    }
  }

  /** Both clocks, read together. */
  private now(): ClockReading {
    return { monoMs: this.options.clock(), wallMs: this.options.wallClock() };
  }

  /** The revision of the unreadable record last reported, so that it is reported once. */
  private unreadableReported: number | undefined;

  private async read(): Promise<Versioned<LeaderRecord> | undefined> {
    const entry = await this.options.kv.get(leaderKey);
    if (entry === null || entry.operation !== "PUT") return undefined;
    const record = leaderRecordOf(entry);
    if (record !== undefined) return { value: record, revision: entry.revision };
    if (this.unreadableReported !== entry.revision) {
      this.unreadableReported = entry.revision;
      this.options.logger?.warn(
        { key: leaderKey, revision: entry.revision },
        "the leader record does not parse: read as held by no coordinator, to be taken over once its lease would have run out",
      );
    }
    // No coordinator has the empty id; the revision bounds every term ever written.
    return { value: { coordinator: "", term: entry.revision }, revision: entry.revision };
  }

  private async write(write: Exclude<LeaderWrite, { kind: "none" }>): Promise<void> {
    const payload = this.encoder.encode(JSON.stringify(write.record));
    if (write.kind === "create") await this.options.kv.create(leaderKey, payload);
    else await this.options.kv.update(leaderKey, payload, write.revision);
  }

  /** Who holds the key now, for status; undefined for an unreadable record too. */
  async holder(): Promise<string | undefined> {
    const entry = await this.options.kv.get(leaderKey);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return leaderRecordOf(entry)?.coordinator;
  }
}

/**
 * The stored record, if it is one (@ballast/protocol records.ts decides: a coordinator
 * id, and a term if any); undefined for one that does not decode.
 */
export function leaderRecordOf(entry: StoredEntry): LeaderRecord | undefined {
  try {
    const { coordinator, term, released } = decodeControlRecord("leader", leaderKey, entry.value);
    return {
      coordinator,
      ...(term === undefined ? {} : { term }),
      ...(released === true ? { released: true } : {}),
    };
  } catch (error) {
    if (isUnreadableRecord(error)) return undefined;
    throw error;
  }
}
