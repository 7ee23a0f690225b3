// The leader's state for one tenure: its copy of the catalogue and the bookkeeping of
// what it has decided and pushed. A new tenure (a takeover, or leading again after a
// lapse) starts from an empty one, so nothing an earlier tenure believed survives it.
//
// The shell (coordinator.ts) owns which tenure is in force; the parts that act for the
// leader (reconciler.ts, configurer.ts, volumes.ts, reports.ts) ask it through
// `Tenures` after every await, and drop what they were doing when the tenure changed.
//
// Change events (issue 14: a reconcile that looks only where something changed). The
// partition records, the volumes and the configuration acknowledgements are maps that
// note every change in `changes`: a record or acknowledgement by its partition key, a
// volume as a change to every partition (volumes change rarely, and each names many).
// The reconciler drains them every round. The acknowledgements' inner maps are edited
// in place, so whoever edits one calls `touch` (configurer.ts, reports.ts,
// `forgetConfigured`).
//
// Head nodes membership forgets (evicted: silent for an hour, membership.ts). The
// per-partition notes keyed by node (`configured`, `noReplica`, `asked`,
// `failuresLogged`) are dropped with the partition (`forget`), and a node's with the
// node once membership has evicted it and evictedHeadNodesNotedMax others since
// (`noteEvicted`). Not at once: an acknowledgement marked out of date (epoch −1, as
// `forgetConfigured` leaves it) is what makes the configurer tell a former member, back
// un-restarted from a long cut, that it is out of a partition it left; a secondary has
// no other way to learn it (a deposed primary also shows in its reports, reports.ts).
// Dropped past that window, a node heard again is a new one: configured where the
// records name it, told it is out where it reports a primary it no longer is. Before,
// every head node evicted kept its notes for the whole tenure, one entry per partition
// it held: head nodes replaced under new ids piled up for as long as the leader led.

import { limits } from "@ballast/protocol";
import { idOfVolume, type Versioned, type VolumeRecord } from "./catalogue.ts";
import { evictedHeadNodesNotedMax, reportAgeMsMax } from "./constants.ts";
import type { PartitionRecord } from "./decisions.ts";
import type { Leading } from "./leadership.ts";
import { LeaseBook, partitionKey } from "./leases.ts";

/** What changed since the reconciler last looked (see the module header). */
export interface Changes {
  /** Partition keys whose record or acknowledgements changed. */
  keys: Set<string>;
  /** Something every partition depends on changed (a volume). */
  all: boolean;
}

/**
 * A map that notes each key it sets to another value, or deletes, with the value before
 * (undefined if none) and after (undefined once deleted).
 */
export class WatchedMap<K, V> extends Map<K, V> {
  constructor(
    private readonly changed: (key: K, before: V | undefined, after: V | undefined) => void,
  ) {
    super();
  }

  override set(key: K, value: V): this {
    // Map's constructor calls set before `changed` is assigned: it is given no entries.
    const before = super.get(key);
    if (before !== value || !super.has(key)) this.changed?.(key, before, value);
    return super.set(key, value);
  }

  override delete(key: K): boolean {
    const before = super.get(key);
    const had = super.delete(key);
    if (had) this.changed(key, before, undefined);
    return had;
  }

  override clear(): void {
    for (const [key, value] of [...super.entries()]) this.changed(key, value, undefined);
    super.clear();
  }
}

export interface Tenure {
  term: number;
  tenure: number;
  /** Set once every partition record carries this term: only then does it decide. */
  ready: boolean;
  /** Set when fencing failed: the next renewal starts the tenure's state again. */
  failed: boolean;
  leases: LeaseBook;
  /** Volumes by name, and partition records by partitionKey: the leader's copy. */
  volumes: Map<string, VolumeRecord>;
  records: Map<string, Versioned<PartitionRecord>>;
  /** Partitions with a compare-and-set (or a re-read after an unclear one) in flight. */
  inflight: Set<string>;
  /** Partitions whose last compare-and-set may or may not have applied. */
  unsure: Set<string>;
  /**
   * Per partition, per node: the epoch it last acknowledged and when (monotonic), and the
   * disk its answer said holds its replica (decisions.ts, "Lost disks").
   */
  configured: Map<string, Map<string, Configured>>;
  /**
   * Per partition, per node: the epoch whose configure it refused for holding nothing of
   * the partition on its disk (`no-replica`, decisions.ts "Lost disks").
   */
  noReplica: Map<string, Map<string, number>>;
  /**
   * Per partition, per node: the epoch whose configure it refused because its replica's
   * journal failed in this boot of its machine (`journal-failed-this-boot`): alive, but
   * serving nothing of the partition until rebuilt or rebooted. Shown by describe.
   */
  failedJournals: Map<string, Map<string, number>>;
  /**
   * Per partition, per node: the epoch whose configure it refused for being on another
   * disk than the record's (`other-disk`), and when (monotonic): not sent that epoch
   * again for a while (decisions.ts `otherDiskBackoff`). Dropped when it restarts.
   */
  otherDisk: Map<string, Map<string, { epoch: number; atMs: number }>>;
  /**
   * Per partition: the checkpoint blobs a learner's configure failed to fetch (no usable
   * copy on any sled it names: `checkpoint-unusable`). The next learner is sent another
   * where there is one (decisions.ts `learnerCheckpoint`).
   */
  unusableCheckpoints: Map<string, Set<string>>;
  /**
   * Per partition: a member that refused a configure for holding the partition in a
   * later epoch than this tenure's record (`older-epoch`), the highest such epoch. Epochs
   * only grow, so the catalogue is older than the data (a control store restored from an
   * older copy): the partition is neither decided nor configured, and its primary gets
   * no lease, while the record stays below that epoch (reconciler.ts).
   */
  behind: Map<string, { node: string; epoch: number }>;
  /** `${partitionKey}@${node}` of configure requests in flight. */
  configuring: Set<string>;
  /** Configure requests in flight, per head node. */
  configuringPerNode: Map<string, number>;
  /**
   * Per head node, by partition key, in the order queued: the records whose configure
   * was owed to it but waited for room under the bounds on requests in flight
   * (configurer.ts). The next goes out as soon as one of its requests settles.
   */
  configureQueue: Map<string, Map<string, PartitionRecord>>;
  /**
   * Per partition, per node: the epoch of the last configure sent to it, and when
   * (monotonic). A primary not yet sent its epoch's configure (waiting behind the bounds
   * on requests in flight) is not unconfirmed: nothing was asked of it; its clock starts
   * when the configure is sent (decisions.ts, "Unconfirmed primaries"; reconciler.ts).
   */
  asked: Map<string, Map<string, { epoch: number; atMs: number }>>;
  /**
   * Per partition, per node: the epoch whose failed configure was logged (a warning once
   * per epoch, and debug lines for its retries). One epoch per node, and dropped with
   * the partition: keyed by epoch too, it grew by one entry per partition and outage of
   * a member for as long as the tenure lasted (a failed configure of an old epoch is
   * never followed by a success of that epoch that would remove it).
   */
  failuresLogged: Map<string, Map<string, number>>;
  /** Per partition, when this tenure first saw each learner. */
  learnersSince: Map<string, Map<string, number>>;
  /** Per partition, when this tenure first saw each joiner (decisions.ts `joinersSinceMs`). */
  joinersSince: Map<string, Map<string, number>>;
  /** Per partition, live nodes dropped from it and until when to avoid re-adding them. */
  dropped: Map<string, Map<string, number>>;
  /**
   * Head nodes membership evicted while this tenure held notes of them (see the module
   * header), earliest first: at most evictedHeadNodesNotedMax. One heard again leaves it.
   */
  evicted: Set<string>;
  /** The last non-update decision logged per partition: logged when it changes. */
  reasons: Map<string, string>;
  /**
   * Per partition the leader last judged unavailable, why (the decision's reason), until
   * a later decision says otherwise: describe and status show it.
   */
  unavailable: Map<string, string>;
  refreshedAtMs: number;
  /** The catalogue watch's count when the last re-read began (catalogue-changes.ts). */
  refreshedVersion: number | undefined;
  refreshing: boolean;
  /** Grows on every create or delete, so a listing begun before one removes nothing. */
  generation: number;
  /** Changes to records, volumes and acknowledgements since the reconciler looked. */
  changes: Changes;
}

/** A member's acknowledged configuration (configurer.ts). */
export interface Configured {
  epoch: number;
  atMs: number;
  /** The sleds the configure named: a member that lacks a live one is out of date too. */
  sleds?: readonly string[];
  /** The disk its head node said holds the replica, where the answer said one. */
  disk?: string;
}

/** Which tenure is in force, as the shell knows it. */
export interface Tenures {
  /** The tenure last started, even if its lease has lapsed since: checked after awaits. */
  held(): Tenure | undefined;
  /** The tenure this coordinator leads in right now, if any. */
  current(): Tenure | undefined;
}

/** An empty tenure, begun at `sinceMs` on the monotonic clock. */
export function newTenure(leading: Leading, sinceMs: number): Tenure {
  const changes: Changes = { keys: new Set(), all: false };
  const changed = (key: string) => changes.keys.add(key);
  const leases = new LeaseBook({
    leaderSinceMs: sinceMs,
    leaseMs: limits.primaryLeaseMs,
    driftMarginMs: limits.primaryLeaseDriftMarginMs,
    reportAgeMsMax,
  });
  return {
    ...leading,
    ready: false,
    failed: false,
    leases,
    // The lease book judges a report's entries against these two (reports.ts): it is
    // told what changed, so that a report costs what changed (leases.ts).
    volumes: new WatchedMap<string, VolumeRecord>((_, before, after) => {
      changes.all = true;
      const id = (volume: VolumeRecord | undefined) =>
        volume === undefined ? undefined : idOfVolume(volume);
      if (id(before) !== id(after)) leases.volumeChanged();
    }),
    records: new WatchedMap<string, Versioned<PartitionRecord>>((key, before, after) => {
      changed(key);
      for (const entry of [before, after]) {
        if (entry !== undefined) leases.recordChanged(entry.value.volume, entry.value.partition);
      }
    }),
    inflight: new Set(),
    unsure: new Set(),
    configured: new WatchedMap<string, Map<string, Configured>>(changed),
    noReplica: new Map(),
    failedJournals: new Map(),
    otherDisk: new Map(),
    unusableCheckpoints: new Map(),
    behind: new Map(),
    configuring: new Set(),
    configuringPerNode: new Map(),
    configureQueue: new Map(),
    asked: new Map(),
    failuresLogged: new Map(),
    learnersSince: new Map(),
    joinersSince: new Map(),
    dropped: new Map(),
    evicted: new Set(),
    reasons: new Map(),
    unavailable: new Map(),
    refreshedAtMs: sinceMs,
    refreshedVersion: undefined,
    refreshing: false,
    generation: 0,
    changes,
  };
}

/** Notes a change to the partition's inputs that its maps cannot see (an edited acknowledgement). */
export function touch(tenure: Tenure, key: string): void {
  tenure.changes.keys.add(key);
}

/** Keeps a record in the leader's copy unless the copy holds a newer revision. */
export function remember(tenure: Tenure, entry: Versioned<PartitionRecord>): void {
  const key = partitionKey(entry.value);
  const cached = tenure.records.get(key);
  if (cached === undefined || entry.revision > cached.revision) tenure.records.set(key, entry);
}

/** Drops every piece of the tenure's state about a partition. */
export function forget(tenure: Tenure, record: PartitionRecord): void {
  const key = partitionKey(record);
  tenure.records.delete(key);
  tenure.leases.forget(record);
  tenure.configured.delete(key);
  tenure.asked.delete(key);
  for (const queue of tenure.configureQueue.values()) queue.delete(key);
  tenure.noReplica.delete(key);
  tenure.failedJournals.delete(key);
  tenure.otherDisk.delete(key);
  tenure.unusableCheckpoints.delete(key);
  tenure.behind.delete(key);
  tenure.learnersSince.delete(key);
  tenure.joinersSince.delete(key);
  tenure.dropped.delete(key);
  tenure.reasons.delete(key);
  tenure.unavailable.delete(key);
  tenure.unsure.delete(key);
  tenure.failuresLogged.delete(key);
}

/**
 * A restarted node has lost its replicas' configuration, and a node back from silence
 * may have missed a failover: mark it out of date everywhere, so the next configure
 * round pushes to it again (members and deposed members alike).
 */
export function forgetConfigured(tenure: Tenure | undefined, nodeId: string): void {
  if (tenure === undefined) return;
  for (const [key, nodes] of tenure.configured) {
    const last = nodes.get(nodeId);
    if (last === undefined) continue;
    nodes.set(nodeId, { ...last, epoch: -1 });
    // Asked again from when the configure is sent again, not from before it went away.
    tenure.asked.get(key)?.delete(nodeId);
    touch(tenure, key);
  }
  // Restarted, it may have its old disk back: its refusals for another disk are stale.
  for (const [key, nodes] of tenure.otherDisk) {
    if (nodes.delete(nodeId) && nodes.size === 0) tenure.otherDisk.delete(key);
  }
}

/**
 * Membership evicted `nodeId` (after `forgetConfigured`): its notes stay, in case it
 * comes back un-restarted, while fewer than evictedHeadNodesNotedMax nodes were evicted
 * since; past that the earliest one's go (see the module header).
 */
export function noteEvicted(tenure: Tenure | undefined, nodeId: string): void {
  if (tenure === undefined || !holdsNotesOf(tenure, nodeId)) return;
  tenure.evicted.delete(nodeId);
  tenure.evicted.add(nodeId);
  for (const node of tenure.evicted) {
    if (tenure.evicted.size <= evictedHeadNodesNotedMax) break;
    tenure.evicted.delete(node);
    forgetHeadNode(tenure, node);
  }
}

/** `nodeId` joined membership (it may be one evicted before): its notes are live again. */
export function noteJoined(tenure: Tenure | undefined, nodeId: string): void {
  tenure?.evicted.delete(nodeId);
}

/** Drops every per-partition note of a head node (and what waits to be sent to it). */
export function forgetHeadNode(tenure: Tenure, nodeId: string): void {
  for (const [key, nodes] of tenure.configured) {
    if (nodes.delete(nodeId)) touch(tenure, key);
  }
  for (const notes of perNodeNotes(tenure)) {
    for (const [key, nodes] of notes) {
      if (nodes.delete(nodeId) && nodes.size === 0) notes.delete(key);
    }
  }
  tenure.configureQueue.delete(nodeId);
}

function holdsNotesOf(tenure: Tenure, nodeId: string): boolean {
  for (const notes of [tenure.configured, ...perNodeNotes(tenure)]) {
    for (const nodes of notes.values()) if (nodes.has(nodeId)) return true;
  }
  return false;
}

/** The per-partition notes keyed by node other than the acknowledgements. */
function perNodeNotes(tenure: Tenure): Map<string, Map<string, unknown>>[] {
  return [
    tenure.asked,
    tenure.noReplica,
    tenure.failedJournals,
    tenure.otherDisk,
    tenure.failuresLogged,
  ];
}
