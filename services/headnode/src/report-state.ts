// What a head node has told the coordinator of its primaries, and what the next report
// says: pure, no I/O, and no clock read (the time is an argument; headnode.ts sends and
// renews).
//
// Node leases (issue 14; the coordinator's side is coordinator/src/leases.ts). The
// coordinator holds a state of this node: its primaries' entries at a revision. Each
// report sends only what changed since the revision the coordinator last accepted
// (entries new or different, partitions gone), or the whole state when the coordinator
// asked for it (`full`: a new leader, a lost answer) or has accepted nothing yet. An
// idle node so sends an empty change. The answer accepts the revision and is one lease
// for the node: every primary of the accepted state is renewed but those `excluded`.
//
// Failure model: a report whose answer is lost may or may not have been applied; the
// next change is from the last revision known accepted, and a coordinator that applied
// the lost one refuses it with `full`. A renewal is only ever of an entry of the state
// the coordinator says it accepted, at the epoch reported there; an answer whose `held`
// count differs from that state renews nothing and makes the next report whole. An
// answer with no `accepted` and no `full` is from a coordinator that predates node
// leases: it lists `granted` partitions, and every report to it is whole.
//
// Failed replicas that are not primary (`failures`) are a second part of the same
// state, sent the same way (new or changed entries, and those gone), so that the
// coordinator hears at once of a secondary or learner whose journal failed, and an idle
// node still sends an empty change. They renew nothing. An answer from a coordinator
// that predates them says nothing of them (`heldFailures` absent): that coordinator
// ignores them, and the check is skipped.
//
// Ex-leaders: reports reach whichever coordinator serves the leaders' queue group, and a
// leader frozen with its clocks held may wake believing it still leads (its wall clock
// not yet set right: coordinator/src/leadership.ts) and answer, granting a lease its
// successor does not count. Answers name the leader's term, and terms only grow: an
// answer in a term below one that answered this node within exLeaderFenceMs is an
// ex-leader's (`admit`). The shell renews nothing on it and takes it as a lost answer
// (the next change is from the last revision accepted, which the current leader's book
// may hold). What it cannot fence is an ex-leader's answer that comes before any of its
// successor's (architecture.md, "Leases"). The fence lapses once no higher term has
// answered for exLeaderFenceMs, so that a control store started afresh (terms from 1
// again) costs a head node its grants for that long, not for good.

import { limits, type MessageOf, type ResultOf } from "@ballast/protocol";
import { exLeaderFenceMs } from "./constants.ts";

export type PrimaryReport = MessageOf<"headnode.report.v1">["primaries"][number];
export type FailedReplica = NonNullable<MessageOf<"headnode.report.v1">["failures"]>[number];
type Answer = ResultOf<"headnode.report.v1">;
type Address = { volume: string; partition: number };

/** The content of one report: what changes the coordinator's state, and into what. */
export interface Outgoing {
  seq: number;
  /** Absent: the whole state. */
  base: number | undefined;
  primaries: PrimaryReport[];
  gone: Address[];
  /** The state the coordinator holds once it accepts this report. */
  state: ReadonlyMap<string, PrimaryReport>;
  /** Failed non-primary replicas new or changed since `base` (all of them when whole). */
  failures: FailedReplica[];
  failuresGone: Address[];
  /** The failed replicas the coordinator holds once it accepts this report. */
  failureState: ReadonlyMap<string, FailedReplica>;
}

export function addressKey(volume: string, partition: number): string {
  return `${volume}/${partition}`;
}

/**
 * Whether two entries say the same (then the coordinator need not hear it again). Every
 * field counts (a test holds this to the message's schema): one left out is never sent
 * while nothing else changes. `stalledMs` was, and a primary whose disk hung while no
 * new write reached it (one write in flight, acknowledged by its secondary) never
 * reported the stall, so the coordinator kept renewing it and never failed it over.
 */
export function sameEntry(a: PrimaryReport, b: PrimaryReport): boolean {
  if (
    a.volume !== b.volume ||
    a.volumeId !== b.volumeId ||
    a.partition !== b.partition ||
    a.epoch !== b.epoch ||
    a.session !== b.session ||
    a.commitOpNum !== b.commitOpNum ||
    a.tailCommitted !== b.tailCommitted ||
    a.failed !== b.failed ||
    a.stalledMs !== b.stalledMs ||
    a.flushStalledMs !== b.flushStalledMs ||
    a.chunkBytes !== b.chunkBytes ||
    a.liveBytes !== b.liveBytes ||
    !sameSnapshotBytes(a.snapshotBytes, b.snapshotBytes) ||
    a.chunksShortOfCopies !== b.chunksShortOfCopies ||
    (a.auditedDisks ?? []).join() !== (b.auditedDisks ?? []).join() ||
    a.followers.length !== b.followers.length
  ) {
    return false;
  }
  return a.followers.every((f, i) => {
    const g = b.followers[i]!;
    return (
      f.node === g.node &&
      f.matchOpNum === g.matchOpNum &&
      f.learner === g.learner &&
      f.stalledMs === g.stalledMs &&
      f.needsRebuild === g.needsRebuild &&
      f.unheard === g.unheard
    );
  });
}

/** Whether an entry carries news the coordinator acts on (not only figures). */
function needsAction(entry: PrimaryReport): boolean {
  return (
    entry.failed === true ||
    entry.stalledMs !== undefined ||
    entry.flushStalledMs !== undefined ||
    entry.followers.some((f) => f.stalledMs !== undefined || f.needsRebuild === true)
  );
}

function sameFailure(a: FailedReplica, b: FailedReplica): boolean {
  return (
    a.volume === b.volume &&
    a.volumeId === b.volumeId &&
    a.partition === b.partition &&
    a.epoch === b.epoch &&
    a.unopened === b.unopened
  );
}

export class ReportState {
  /** The state the coordinator last accepted, and its revision; undefined: send whole. */
  private accepted:
    | {
        seq: number;
        state: ReadonlyMap<string, PrimaryReport>;
        failureState: ReadonlyMap<string, FailedReplica>;
      }
    | undefined;
  private seq = 0;
  /** The highest leader term that has answered this node, and when it last did. */
  private newest: { term: number; atMs: number } | undefined;
  /** Where the next report too large for one starts among the changed entries. */
  private overflowCursor = 0;

  /**
   * `same` says whether an entry need not be sent again: sameEntry, but for the failover
   * simulator's sabotage that puts back an older comparison.
   */
  constructor(private readonly same: (a: PrimaryReport, b: PrimaryReport) => boolean = sameEntry) {}

  /**
   * More changed entries than one report carries (reportPartitionsMax): the rest go in
   * the next reports. Entries the coordinator must act on (a failed or stalled primary, a
   * stalled follower, a learner to rebuild) go first, then the others from where the
   * last such report stopped, so that no entry is left out report after report while
   * the ones before it keep changing (it would be renewed on a stale state: a stalled
   * primary never replaced, as when sameEntry ignored its stall).
   */
  private mostUrgent(changed: [string, PrimaryReport][]): [string, PrimaryReport][] {
    const max = limits.reportPartitionsMax;
    const start = this.overflowCursor % changed.length;
    const rotated = [...changed.slice(start), ...changed.slice(0, start)];
    const urgent = rotated.filter(([, entry]) => needsAction(entry));
    const rest = rotated.filter(([, entry]) => !needsAction(entry));
    this.overflowCursor = start + Math.max(0, max - urgent.length);
    return [...urgent, ...rest].slice(0, max);
  }

  /**
   * The next report, from every primary's entry now and every failed non-primary
   * replica now (both keyed by addressKey).
   */
  next(
    current: ReadonlyMap<string, PrimaryReport>,
    currentFailures: ReadonlyMap<string, FailedReplica> = new Map(),
  ): Outgoing {
    const base = this.accepted;
    // The states are copied on the first change only: an idle node (every report, for
    // every primary it holds) sends the state it was answered on, unchanged. No state
    // map is changed once made, so sharing one between reports is safe.
    let state: Map<string, PrimaryReport> | undefined;
    const primaries: PrimaryReport[] = [];
    const gone: Address[] = [];
    let changed: [string, PrimaryReport][] = [];
    for (const [key, entry] of current) {
      const held = base?.state.get(key);
      if (held !== undefined && (held === entry || this.same(held, entry))) continue;
      changed.push([key, entry]);
    }
    if (changed.length > limits.reportPartitionsMax) changed = this.mostUrgent(changed);
    for (const [key, entry] of changed) {
      primaries.push(entry);
      state ??= new Map(base?.state);
      state.set(key, entry);
    }
    for (const [key, held] of base?.state ?? []) {
      if (current.has(key) || gone.length === limits.reportPartitionsMax) continue;
      gone.push({ volume: held.volume, partition: held.partition });
      state ??= new Map(base?.state);
      state.delete(key);
    }
    let failureState: Map<string, FailedReplica> | undefined;
    const failures: FailedReplica[] = [];
    const failuresGone: Address[] = [];
    for (const [key, entry] of currentFailures) {
      const held = base?.failureState.get(key);
      if (held !== undefined && sameFailure(held, entry)) continue;
      if (failures.length === limits.reportPartitionsMax) break;
      failures.push(entry);
      failureState ??= new Map(base?.failureState);
      failureState.set(key, entry);
    }
    for (const [key, held] of base?.failureState ?? []) {
      if (currentFailures.has(key) || failuresGone.length === limits.reportPartitionsMax) continue;
      failuresGone.push({ volume: held.volume, partition: held.partition });
      failureState ??= new Map(base?.failureState);
      failureState.delete(key);
    }
    this.seq += 1;
    return {
      seq: this.seq,
      base: base?.seq,
      primaries,
      gone,
      state: state ?? base?.state ?? new Map(),
      failures,
      failuresGone,
      failureState: failureState ?? base?.failureState ?? new Map(),
    };
  }

  /** The highest leader term that has answered this node (0 while none has named one). */
  get leaderTerm(): number {
    return this.newest?.term ?? 0;
  }

  /**
   * Whether to use `answer`, received at `nowMs` (monotonic): not if it is an
   * ex-leader's, in a term below one that answered within exLeaderFenceMs. An answer
   * that names no term (a coordinator that predates terms) is used, and changes nothing.
   */
  admit(answer: Answer, nowMs: number): boolean {
    const { term } = answer;
    if (term === undefined) return true;
    const newest = this.newest;
    if (newest !== undefined && term < newest.term && nowMs - newest.atMs < exLeaderFenceMs) {
      return false;
    }
    this.newest = { term, atMs: nowMs };
    return true;
  }

  /**
   * The answer to `sent`: the entries whose lease it renews (each at the epoch it was
   * reported in), and what the next report is based on. Only for an answer `admit` took.
   */
  onAnswer(sent: Outgoing, answer: Answer): PrimaryReport[] {
    if (answer.accepted === undefined) {
      this.accepted = undefined;
      if (answer.full === true) return [];
      // A coordinator that predates node leases: exactly the partitions it lists.
      const renewed: PrimaryReport[] = [];
      for (const grant of answer.granted) {
        const entry = sent.state.get(addressKey(grant.volume, grant.partition));
        if (entry !== undefined && entry.epoch === grant.epoch && entry.failed !== true) {
          renewed.push(entry);
        }
      }
      return renewed;
    }
    if (
      answer.accepted !== sent.seq ||
      answer.held !== sent.state.size ||
      (answer.heldFailures !== undefined && answer.heldFailures !== sent.failureState.size)
    ) {
      // Not the state this node sent: renew nothing, and start again from the whole.
      this.accepted = undefined;
      return [];
    }
    this.accepted = { seq: sent.seq, state: sent.state, failureState: sent.failureState };
    const excluded = new Set(
      (answer.excluded ?? []).map((grant) => addressKey(grant.volume, grant.partition)),
    );
    const renewed: PrimaryReport[] = [];
    for (const [key, entry] of sent.state) {
      if (entry.failed !== true && !excluded.has(key)) renewed.push(entry);
    }
    return renewed;
  }
}

function sameSnapshotBytes(
  a: PrimaryReport["snapshotBytes"],
  b: PrimaryReport["snapshotBytes"],
): boolean {
  if (a === undefined || b === undefined) return a === b;
  return (
    a.length === b.length &&
    a.every(
      (entry, index) =>
        entry.snapshot === b[index]!.snapshot && entry.uniqueBytes === b[index]!.uniqueBytes,
    )
  );
}
