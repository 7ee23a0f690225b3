// Read leases of primaries, on the leader's side: a pure book of reports and grants,
// time as an argument (the shell passes its monotonic clock).
//
// Pull model: every head node sends `headnode.report.v1` every headnodeReportIntervalMs
// listing the partitions it serves as primary. The leader keeps the newest report of
// each partition from the record's primary (the decisions' `view.report`), and grants a
// lease to each listed primary iff `mayGrantLease` — the record's primary, at the
// record's epoch, alive, and not being replaced. A grant is counted before the answer is
// sent, from the moment it is decided, plus primaryLeaseMs and a drift margin; the
// primary counts the same lease from when it *sent* its report, which is earlier, so its
// lease always runs out first, whatever the two clocks read.
//
// A primary is never replaced before `leaseUntilMs`: the furthest grant to it, or, for a
// leader that has just taken over, `leaderSinceMs` + primaryLeaseMs + margin, because
// the previous leader may have granted one just before it stopped leading (it stopped
// before this one started: see leadership.ts).
//
// `replacing` closes the window between a decision to change a primary and the
// compare-and-set that records it: the shell sets it in the same turn as the decision,
// so no grant slips in after the decision has read `leaseUntilMs`.
//
// One book lives for one tenure of leadership; a new tenure starts an empty one.

import { mayGrantLease, type PartitionRecord, type Report, volumeIdOf } from "./decisions.ts";

export interface LeaseBookOptions {
  /** When this leader's tenure began (monotonic). */
  leaderSinceMs: number;
  leaseMs: number;
  driftMarginMs: number;
  /** Reports older than this are not given to decisions (their primary went quiet). */
  reportAgeMsMax: number;
}

export type Grant = { volume: string; partition: number; epoch: number };

/** A partition of one incarnation: the key of every per-partition map of the leader. */
export function partitionKey(record: PartitionRecord): string {
  return `${volumeIdOf(record)}/${record.partition}`;
}

export class LeaseBook {
  private readonly grants = new Map<string, { primary: string; untilMs: number }>();
  private readonly reports = new Map<string, { node: string; report: Report; atMs: number }>();
  private readonly replacing = new Set<string>();

  constructor(private readonly options: LeaseBookOptions) {}

  get leaderSinceMs(): number {
    return this.options.leaderSinceMs;
  }

  setReplacing(record: PartitionRecord, replacing: boolean): void {
    if (replacing) this.replacing.add(partitionKey(record));
    else this.replacing.delete(partitionKey(record));
  }

  /**
   * One primary's entry of a report from `node`, against the leader's record of that
   * partition (of the same incarnation). Keeps the report if `node` is the record's
   * primary; returns whether its lease is renewed.
   */
  onReport(
    node: string,
    report: Report,
    record: PartitionRecord,
    alive: ReadonlySet<string>,
    nowMs: number,
  ): boolean {
    if (report.volumeId !== undefined && report.volumeId !== volumeIdOf(record)) return false;
    const key = partitionKey(record);
    if (node === record.primary) this.reports.set(key, { node, report, atMs: nowMs });
    // A replica that reports itself failed serves nothing: a grant would only delay
    // its replacement.
    if (report.failed === true) return false;
    if (!mayGrantLease(record, node, report.epoch, alive, this.replacing.has(key))) return false;
    const untilMs = nowMs + this.options.leaseMs + this.options.driftMarginMs;
    const previous = this.grants.get(key);
    this.grants.set(key, {
      primary: node,
      untilMs: previous?.primary === node ? Math.max(previous.untilMs, untilMs) : untilMs,
    });
    return true;
  }

  /** The newest report from the record's primary, if recent enough to act on. */
  reportOf(record: PartitionRecord, nowMs: number): Report | undefined {
    const kept = this.reports.get(partitionKey(record));
    if (kept === undefined || kept.node !== record.primary) return undefined;
    if (nowMs - kept.atMs > this.options.reportAgeMsMax) return undefined;
    return kept.report;
  }

  /** The newest report from the record's primary, however old (for progress shown). */
  lastReportOf(record: PartitionRecord): Report | undefined {
    const kept = this.reports.get(partitionKey(record));
    return kept?.node === record.primary ? kept.report : undefined;
  }

  /** Until when the record's primary may hold a read lease (leader's monotonic clock). */
  leaseUntilMs(record: PartitionRecord): number {
    const { leaderSinceMs, leaseMs, driftMarginMs } = this.options;
    const beforeUs = leaderSinceMs + leaseMs + driftMarginMs;
    const granted = this.grants.get(partitionKey(record));
    return granted?.primary === record.primary ? Math.max(granted.untilMs, beforeUs) : beforeUs;
  }

  /** Drops everything about a partition (its volume was deleted). */
  forget(record: PartitionRecord): void {
    const key = partitionKey(record);
    this.grants.delete(key);
    this.reports.delete(key);
    this.replacing.delete(key);
  }
}
