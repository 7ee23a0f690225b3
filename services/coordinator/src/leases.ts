// Read leases of primaries, on the leader's side: a pure book of reports and grants,
// time as an argument (the shell passes its monotonic clock).
//
// Node leases (issue 14: an idle cost flat in the number of partitions). Every head node
// sends `headnode.report.v1` every headnodeReportIntervalMs. The book holds, per node,
// the state it last reported (its primaries' entries, at a revision `seq` of a
// `session`); a report changes that state (only the entries that changed, and those
// gone) or replaces it (a whole state). A change whose base is not the revision held
// (a lost answer, a new leader, a restart) is refused with `full`: the node sends its
// whole state next, and nothing is renewed meanwhile. So an idle node costs one small
// report and one small answer per interval, whatever it holds.
//
// Each accepted report is one grant to the node: its lease (`nodeUntilMs`) runs from the
// moment the grant is decided, plus primaryLeaseMs and a drift margin. It covers each
// partition of the state for which `mayGrantLease` holds (the record's primary, at the
// record's epoch, alive, not being replaced) and the entry is not failed; the others are
// `excluded` in the answer, and the head node renews its lease on every other primary of
// that state. The primary counts its lease from when it *sent* the report, which is
// earlier, so its lease always runs out first, whatever the two clocks read.
//
// Per partition the book keeps who holds its lease: `live` while the node's grants
// cover it (its lease is the node's), and frozen at the node's lease of that moment
// once they stop covering it (replacing set, a failed or gone entry, a record of another
// primary or epoch). A primary is never replaced before `leaseUntilMs`: that lease, or,
// for a leader that has just taken over, `leaderSinceMs` + primaryLeaseMs + margin,
// because the previous leader may have granted one just before it stopped leading (it
// stopped before this one started: see leadership.ts).
//
// `replacing` closes the window between a decision to change a primary and the
// compare-and-set that records it: the shell sets it in the same turn as the decision,
// which freezes the partition's lease, so no grant slips in after the decision has read
// `leaseUntilMs`.
//
// A report without `seq` (a head node that predates node leases) replaces the state
// and is answered partition by partition (`granted`): the same coverage, listed.
//
// The book also holds, per node, its failed replicas that are not primary (`failures`:
// a secondary, joiner or learner whose journal failed), changed with the same report,
// and indexed per partition so that decisions drop such a member at once
// (`failedMembers`). They grant nothing.
//
// Cost per report (a 16,384-partition create kept the leader 85 % busy, a fifth of it
// here): a report judges again only the entries whose verdict may have moved, not every
// primary the node holds. A verdict (covered, excluded, deposed) depends on the entry,
// the record `recordOf` gives for it, whether the node is alive, and whether the
// partition is `replacing`. So each node's state keeps its verdicts and a `dirty` set:
// the entries a report changes or removes; those whose record changed, which the owner
// of the records says (`recordChanged`, or `volumeChanged` when a volume name's
// incarnation did: tenure.ts wires both to its maps); those whose `replacing` flipped,
// or that were forgotten. A whole state, or a node counted alive or dead since its last
// report, judges every entry again. The answer still lists every excluded entry (the
// node renews every other): those are few. `judged` counts entries judged, for tests,
// and `verify` compares the verdicts with a full judgement (the simulator checks it).
//
// One book lives for one tenure of leadership; a new tenure starts an empty one (every
// node's next change is refused, and it sends its whole state).

import { limits } from "@ballast/protocol";
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

/** What a head node's report says, as the book needs it. */
export interface NodeReport {
  node: string;
  session?: number | undefined;
  /** Absent: a head node that predates node leases (whole state, answered per partition). */
  seq?: number | undefined;
  /** Absent: the report is the node's whole state. */
  base?: number | undefined;
  primaries: readonly Report[];
  gone?: readonly { volume: string; partition: number }[] | undefined;
  /** Failed non-primary replicas, new or changed (all of them in a whole state). */
  failures?: readonly FailedReplica[] | undefined;
  failuresGone?: readonly { volume: string; partition: number }[] | undefined;
}

/** A replica that is not its partition's primary and whose journal failed. */
export interface FailedReplica {
  volume: string;
  volumeId?: string | undefined;
  partition: number;
  /** The epoch of the configuration it held when it failed. */
  epoch: number;
  /** A configure could not open it (its files refused): no copy to promote. */
  unopened?: true | undefined;
}

export interface ReportOutcome {
  /** The revision now held, when the report was accepted (not for legacy reports). */
  accepted?: number;
  /** How many entries the held state has. */
  held?: number;
  /** How many failed replicas the held state has. */
  heldFailures?: number;
  /**
   * The report says something a decision acts on at once: a failed replica, a failed
   * primary, a follower stalled or needing a rebuild.
   */
  urgent?: boolean;
  /** The report's base is not what is held: nothing renewed, a whole state is wanted. */
  full?: boolean;
  /** Entries of the held state whose lease is not renewed. */
  excluded: Grant[];
  /** To a legacy report: the entries whose lease is renewed. */
  granted: Grant[];
  /** Records whose primary is not this node although it reports itself primary. */
  deposed: PartitionRecord[];
}

/** The record a reported entry is about: its volume name's current incarnation's. */
export type RecordOf = (volume: string, partition: number) => PartitionRecord | undefined;

/** A partition of one incarnation: the key of every per-partition map of the leader. */
export function partitionKey(record: PartitionRecord): string {
  return `${volumeIdOf(record)}/${record.partition}`;
}

/** A reported entry's address: the volume's name, as the head node reports it. */
function addressOf(volume: string, partition: number): string {
  return `${volume}/${partition}`;
}

interface NodeState {
  session: number;
  seq: number;
  entries: Map<string, Report>;
  /** Per address of a covered entry: its partition key (the state's verdicts). */
  covered: Map<string, string>;
  /** Excluded entries by address, as the answer lists them. */
  excluded: Map<string, Grant>;
  /** Records of entries whose primary is another node, by address. */
  deposed: Map<string, PartitionRecord>;
  /** Addresses whose verdict may have moved since it was judged. */
  dirty: Set<string>;
  /** Every entry's verdict may have moved (a whole state, a volume changed). */
  allDirty: boolean;
  /** Whether the node was alive when its entries were last judged. */
  judgedAlive: boolean;
  /** Its failed non-primary replicas, by address. */
  failures: Map<string, FailedReplica>;
  /** When the state was last confirmed by an accepted report. */
  atMs: number;
  /** The node's lease: until when its grants run (leader's monotonic clock). */
  untilMs: number;
  /** Partition keys whose lease is the node's (`live`). */
  live: Set<string>;
}

/** Who holds a partition's lease: the node's own while live, else until `frozenUntilMs`. */
interface PartitionLease {
  node: string;
  frozenUntilMs: number | undefined;
}

export class LeaseBook {
  private readonly nodes = new Map<string, NodeState>();
  private readonly leases = new Map<string, PartitionLease>();
  private readonly replacing = new Set<string>();
  /** Failed non-primary replicas by address (`volume/partition`), then node. */
  private readonly failedAt = new Map<string, Map<string, FailedReplica>>();
  /** Addresses whose reported entry or failures changed since `takeChanged`. */
  private changed = new Set<string>();
  /** Entries judged by reports so far (a cost counter, for tests). */
  private judgedCount = 0;

  constructor(private readonly options: LeaseBookOptions) {}

  get leaderSinceMs(): number {
    return this.options.leaderSinceMs;
  }

  /** Entries judged by reports so far: what reports cost (for tests). */
  get judged(): number {
    return this.judgedCount;
  }

  setReplacing(record: PartitionRecord, replacing: boolean): void {
    const key = partitionKey(record);
    if (!replacing) {
      if (this.replacing.delete(key)) this.recordChanged(record.volume, record.partition);
      return;
    }
    if (!this.replacing.has(key)) this.recordChanged(record.volume, record.partition);
    this.replacing.add(key);
    // No later grant of the node's may count for this partition: its lease ends where
    // the node's stands now.
    const lease = this.leases.get(key);
    if (lease !== undefined && lease.node === record.primary) this.freeze(key, lease);
  }

  /**
   * A head node's report, against the leader's records: keeps the state it reports and
   * decides the node's lease. `recordOf` gives the record of an entry's volume name and
   * partition (undefined: none, or the volume is unknown).
   */
  onNodeReport(
    report: NodeReport,
    recordOf: RecordOf,
    alive: ReadonlySet<string>,
    nowMs: number,
  ): ReportOutcome {
    const legacy = report.seq === undefined;
    const session = report.session ?? 0;
    const seq = report.seq ?? 0;
    let state = this.nodes.get(report.node);
    if (report.base === undefined) {
      // A whole state: refused only if older than the one held (a late duplicate, or a
      // report of an earlier life of the node).
      if (
        !legacy &&
        state !== undefined &&
        (session < state.session || (session === state.session && seq <= state.seq))
      ) {
        return refused();
      }
      const entries = new Map<string, Report>();
      for (const address of state?.entries.keys() ?? []) this.changed.add(address);
      for (const entry of report.primaries) {
        const address = addressOf(entry.volume, entry.partition);
        entries.set(address, entry);
        this.changed.add(address);
      }
      for (const address of state?.failures.keys() ?? []) this.unfail(address, report.node);
      const failures = new Map<string, FailedReplica>();
      for (const failure of report.failures ?? []) {
        const address = addressOf(failure.volume, failure.partition);
        failures.set(address, failure);
        this.fail(address, report.node, failure);
      }
      state = {
        session,
        seq,
        entries,
        // The verdicts of the state replaced, all judged again below.
        covered: state?.covered ?? new Map(),
        excluded: state?.excluded ?? new Map(),
        deposed: state?.deposed ?? new Map(),
        dirty: new Set(),
        allDirty: true,
        judgedAlive: state?.judgedAlive ?? false,
        failures,
        atMs: nowMs,
        untilMs: state?.untilMs ?? Number.NEGATIVE_INFINITY,
        live: state?.live ?? new Set(),
      };
      this.nodes.set(report.node, state);
    } else {
      if (
        state === undefined ||
        state.session !== session ||
        state.seq !== report.base ||
        seq <= report.base
      ) {
        return refused();
      }
      for (const gone of report.gone ?? []) {
        const address = addressOf(gone.volume, gone.partition);
        state.entries.delete(address);
        state.dirty.add(address);
        this.changed.add(address);
      }
      for (const entry of report.primaries) {
        const address = addressOf(entry.volume, entry.partition);
        state.entries.set(address, entry);
        state.dirty.add(address);
        this.changed.add(address);
      }
      for (const gone of report.failuresGone ?? []) {
        const address = addressOf(gone.volume, gone.partition);
        state.failures.delete(address);
        this.unfail(address, report.node);
      }
      for (const failure of report.failures ?? []) {
        const address = addressOf(failure.volume, failure.partition);
        state.failures.set(address, failure);
        this.fail(address, report.node, failure);
      }
      state.seq = seq;
      state.atMs = nowMs;
    }

    // Judge again what may have moved (see "Cost per report").
    const nodeAlive = alive.has(report.node);
    if (state.judgedAlive !== nodeAlive) state.allDirty = true;
    state.judgedAlive = nodeAlive;
    const addresses = state.allDirty
      ? new Set([
          ...state.covered.keys(),
          ...state.excluded.keys(),
          ...state.deposed.keys(),
          ...state.entries.keys(),
        ])
      : state.dirty;
    state.dirty = new Set();
    state.allDirty = false;
    this.judgedCount += addresses.size;
    /** Keys covered before and not now; keys covered now (among those judged). */
    const uncovered: string[] = [];
    const covered: string[] = [];
    for (const address of addresses) {
      const before = state.covered.get(address);
      const after = this.judge(state, address, report.node, recordOf, alive);
      if (before !== undefined && before !== after) uncovered.push(before);
      if (after === undefined) {
        state.covered.delete(address);
      } else {
        state.covered.set(address, after);
        covered.push(after);
      }
    }
    // Partitions this node's grants covered and no longer do keep the lease they had
    // before this grant; then the grant extends the node's lease over the rest.
    for (const key of uncovered) {
      if (!state.live.has(key)) continue;
      const lease = this.leases.get(key);
      if (lease !== undefined && lease.node === report.node) this.freeze(key, lease);
      state.live.delete(key);
    }
    if (nodeAlive) {
      const untilMs = nowMs + this.options.leaseMs + this.options.driftMarginMs;
      state.untilMs = Math.max(state.untilMs, untilMs);
    }
    // Covered entries not judged again have kept their lease live: nothing else moves it.
    for (const key of covered) {
      const lease = this.leases.get(key);
      if (lease?.node === report.node) {
        lease.frozenUntilMs = undefined;
      } else {
        this.leases.set(key, { node: report.node, frozenUntilMs: undefined });
      }
      state.live.add(key);
    }
    const outcome: ReportOutcome = {
      excluded: [...state.excluded.values()],
      granted: [],
      deposed: [...state.deposed.values()],
    };
    if (legacy) {
      for (const address of state.covered.keys()) {
        const entry = state.entries.get(address)!;
        outcome.granted.push({
          volume: entry.volume,
          partition: entry.partition,
          epoch: entry.epoch,
        });
      }
    }
    if (!legacy) {
      outcome.accepted = seq;
      outcome.held = state.entries.size;
      outcome.heldFailures = state.failures.size;
    }
    if ((report.failures ?? []).length > 0 || report.primaries.some(needsAction)) {
      outcome.urgent = true;
    }
    return outcome;
  }

  /**
   * One entry's verdict, kept in the node's state: its partition key if covered; else
   * undefined, and the entry is excluded (and deposed, if its record's primary is
   * another node). Nothing else is changed.
   */
  private judge(
    state: NodeState,
    address: string,
    node: string,
    recordOf: RecordOf,
    alive: ReadonlySet<string>,
  ): string | undefined {
    state.excluded.delete(address);
    state.deposed.delete(address);
    const entry = state.entries.get(address);
    if (entry === undefined) return undefined;
    const record = recordOf(entry.volume, entry.partition);
    const grant = { volume: entry.volume, partition: entry.partition, epoch: entry.epoch };
    if (
      record === undefined ||
      (entry.volumeId !== undefined && entry.volumeId !== volumeIdOf(record))
    ) {
      state.excluded.set(address, grant);
      return undefined;
    }
    if (record.primary !== node) state.deposed.set(address, record);
    const key = partitionKey(record);
    // A replica that reports itself failed serves nothing: a grant would only delay
    // its replacement.
    if (
      entry.failed === true ||
      !mayGrantLease(record, node, entry.epoch, alive, this.replacing.has(key))
    ) {
      state.excluded.set(address, grant);
      return undefined;
    }
    return key;
  }

  /**
   * The record of `volume/partition` (by the volume's name) changed, or may have: the
   * entries of that address are judged again at their nodes' next reports.
   */
  recordChanged(volume: string, partition: number): void {
    const address = addressOf(volume, partition);
    for (const state of this.nodes.values()) {
      if (state.entries.has(address) || state.covered.has(address)) state.dirty.add(address);
    }
  }

  /** Which incarnation a volume name means changed: every entry is judged again. */
  volumeChanged(): void {
    for (const state of this.nodes.values()) state.allDirty = true;
  }

  /**
   * Where the node's kept verdicts differ from a full judgement against `recordOf` and
   * `alive` (none, unless a change went unsaid); right after a report of the node was
   * accepted, before anything else changes. For tests and the simulator.
   */
  verify(node: string, recordOf: RecordOf, alive: ReadonlySet<string>): string[] {
    const state = this.nodes.get(node);
    if (state === undefined) return [];
    const full: NodeState = {
      ...state,
      covered: new Map(),
      excluded: new Map(),
      deposed: new Map(),
    };
    const problems: string[] = [];
    for (const address of state.entries.keys()) {
      const key = this.judge(full, address, node, recordOf, alive);
      const kept = state.covered.get(address);
      if (kept !== key) problems.push(`${node} ${address}: covered ${kept} but should be ${key}`);
      if (key !== undefined && !state.live.has(key)) {
        problems.push(`${node} ${address}: covered but its lease is not the node's`);
      }
      if (state.excluded.has(address) !== full.excluded.has(address)) {
        problems.push(`${node} ${address}: excluded is ${state.excluded.has(address)}, wrongly`);
      }
      if (state.deposed.get(address) !== full.deposed.get(address)) {
        problems.push(`${node} ${address}: deposed differs`);
      }
    }
    for (const address of [...state.covered.keys(), ...state.excluded.keys()]) {
      if (!state.entries.has(address)) problems.push(`${node} ${address}: judged but not held`);
    }
    return problems;
  }

  /**
   * Members of the record, other than its primary, whose own node reports their replica
   * failed in the record's epoch. A failure of an earlier epoch is not theirs now: the
   * configure of the record's epoch reopens a failed replica, and a replica that fails
   * again is reported at the epoch it was configured in.
   */
  failedMembers(record: PartitionRecord): ReadonlySet<string> {
    const failed = this.failedAt.get(addressOf(record.volume, record.partition));
    if (failed === undefined) return noNodes;
    const nodes = new Set<string>();
    for (const [node, failure] of failed) {
      if (node === record.primary || failure.epoch !== record.epoch) continue;
      if (failure.volumeId !== undefined && failure.volumeId !== volumeIdOf(record)) continue;
      nodes.add(node);
    }
    return nodes.size === 0 ? noNodes : nodes;
  }

  /**
   * Of `failedMembers`, those whose node could not open the replica at all (`unopened`):
   * they hold no copy a configure would open.
   */
  unopenedMembers(record: PartitionRecord): ReadonlySet<string> {
    const failed = this.failedMembers(record);
    if (failed.size === 0) return noNodes;
    const states = this.failedAt.get(addressOf(record.volume, record.partition));
    const nodes = new Set([...failed].filter((node) => states?.get(node)?.unopened === true));
    return nodes.size === 0 ? noNodes : nodes;
  }

  /**
   * The addresses (`volume/partition`, by the volume's name) whose reported entry or
   * failed replicas changed since the last call: what `lastReportOf` and
   * `failedMembers` say of them may have changed. Drained by the caller.
   */
  takeChanged(): ReadonlySet<string> {
    const changed = this.changed;
    this.changed = new Set();
    return changed;
  }

  /** What `takeChanged` would return, without draining it (for tests). */
  peekChanged(): ReadonlySet<string> {
    return this.changed;
  }

  /**
   * The nodes whose reports `reportOf` gives at `nowMs` (recent enough), as one
   * comparable string: when it changes, so may `reportOf` of any of their partitions.
   */
  reportingKey(nowMs: number): string {
    const nodes: string[] = [];
    for (const [node, state] of this.nodes) {
      if (nowMs - state.atMs <= this.options.reportAgeMsMax) nodes.push(node);
    }
    return nodes.sort().join(",");
  }

  private fail(address: string, node: string, failure: FailedReplica): void {
    this.changed.add(address);
    let failed = this.failedAt.get(address);
    if (failed === undefined) {
      failed = new Map();
      this.failedAt.set(address, failed);
    }
    failed.set(node, failure);
  }

  private unfail(address: string, node: string): void {
    const failed = this.failedAt.get(address);
    if (failed === undefined) return;
    this.changed.add(address);
    failed.delete(node);
    if (failed.size === 0) this.failedAt.delete(address);
  }

  /** The newest report from the record's primary, if recent enough to act on. */
  reportOf(record: PartitionRecord, nowMs: number): Report | undefined {
    const state = this.nodes.get(record.primary);
    if (state === undefined || nowMs - state.atMs > this.options.reportAgeMsMax) return undefined;
    return this.lastReportOf(record);
  }

  /** The newest report from the record's primary, however old (for progress shown). */
  lastReportOf(record: PartitionRecord): Report | undefined {
    const entry = this.nodes
      .get(record.primary)
      ?.entries.get(addressOf(record.volume, record.partition));
    if (entry === undefined) return undefined;
    if (entry.volumeId !== undefined && entry.volumeId !== volumeIdOf(record)) return undefined;
    return entry;
  }

  /** Until when the record's primary may hold a read lease (leader's monotonic clock). */
  leaseUntilMs(record: PartitionRecord): number {
    const { leaderSinceMs, leaseMs, driftMarginMs } = this.options;
    const beforeUs = leaderSinceMs + leaseMs + driftMarginMs;
    const lease = this.leases.get(partitionKey(record));
    if (lease === undefined || lease.node !== record.primary) return beforeUs;
    return Math.max(this.untilOf(lease), beforeUs);
  }

  /**
   * Per incarnation of `volumeIds`, the nodes whose held state names a replica of it (a
   * primary's entry, or a failed replica, that says its incarnation): such a node still
   * has it open, whatever the records say. A deleted incarnation's records are gone, so
   * its entries are only ever `excluded`, never deposed; this is how the purger finds a
   * node that missed the incarnation's drop (purge.ts, "Drops owed").
   */
  holdersOf(volumeIds: ReadonlySet<string>): Map<string, Set<string>> {
    const holders = new Map<string, Set<string>>();
    if (volumeIds.size === 0) return holders;
    const hold = (volumeId: string | undefined, node: string) => {
      if (volumeId === undefined || !volumeIds.has(volumeId)) return;
      let nodes = holders.get(volumeId);
      if (nodes === undefined) {
        nodes = new Set();
        holders.set(volumeId, nodes);
      }
      nodes.add(node);
    };
    for (const [node, state] of this.nodes) {
      for (const entry of state.entries.values()) hold(entry.volumeId, node);
      for (const failure of state.failures.values()) hold(failure.volumeId, node);
    }
    return holders;
  }

  /** Drops everything about a partition (its volume was deleted). */
  forget(record: PartitionRecord): void {
    const key = partitionKey(record);
    this.recordChanged(record.volume, record.partition);
    const lease = this.leases.get(key);
    if (lease !== undefined) this.nodes.get(lease.node)?.live.delete(key);
    this.leases.delete(key);
    this.replacing.delete(key);
  }

  /**
   * Drops everything held of a head node that membership forgot (silent past its
   * eviction time, membership.ts): its reported entries and failed replicas. Its leases
   * keep the end they had (frozen, long past after such a silence), so nothing is
   * granted or shortened by it. Heard again, it is refused a change and sends its whole
   * state, as after a new leader. Without this a node that never came back (replaced,
   * renamed) kept its last state for the whole tenure, and every purge pass still
   * counted it as holding the incarnations it last reported.
   */
  forgetNode(node: string): void {
    const state = this.nodes.get(node);
    if (state === undefined) return;
    for (const key of [...state.live]) {
      const lease = this.leases.get(key);
      if (lease !== undefined && lease.node === node) this.freeze(key, lease);
    }
    for (const address of state.entries.keys()) this.changed.add(address);
    for (const address of state.failures.keys()) this.unfail(address, node);
    this.nodes.delete(node);
  }

  /** Head nodes whose state the book holds (for tests). */
  get nodesHeld(): number {
    return this.nodes.size;
  }

  private untilOf(lease: PartitionLease): number {
    return lease.frozenUntilMs ?? this.nodes.get(lease.node)?.untilMs ?? Number.NEGATIVE_INFINITY;
  }

  private freeze(key: string, lease: PartitionLease): void {
    if (lease.frozenUntilMs !== undefined) return;
    lease.frozenUntilMs = this.untilOf(lease);
    this.nodes.get(lease.node)?.live.delete(key);
  }
}

const noNodes: ReadonlySet<string> = new Set();

/** An entry whose primary has failed, or with a follower the decisions drop. */
function needsAction(entry: Report): boolean {
  return (
    entry.failed === true ||
    (entry.stalledMs ?? 0) >= limits.primaryStallMsMax ||
    (entry.flushStalledMs ?? 0) >= limits.primaryStallMsMax ||
    entry.followers.some(
      (follower) =>
        (follower.stalledMs ?? 0) >= limits.commitStallMsMax || follower.needsRebuild === true,
    )
  );
}

function refused(): ReportOutcome {
  return { full: true, excluded: [], granted: [], deposed: [] };
}
