// What the leader does with one partition: a pure function of the partition's record
// and the leader's view (who is alive, what the primary last reported, how far the read
// lease it may hold runs, the time). It never reads a clock, the KV store or the
// network; the shell applies an `update` by compare-and-set on the record's revision,
// so a decision taken on a stale view is refused, not applied, and the next round
// decides again with a fresh view. The simulator drives the same function.
//
// Members of a partition record:
//   primary, secondaries   the voting members of the epoch: every acknowledged write is
//                          on all of them (commit waits for every one), so any live one
//                          may be promoted to primary.
//   learners               replicas being rebuilt from a checkpoint: sent notes, not
//                          counted for commit, never promoted.
//   joining                caught-up learners that count for commit (the head nodes
//                          are told they are secondaries) but are not yet eligible for
//                          promotion.
//
// Safe promotion (defect: promotion on a stale "caught up"). A learner becomes a voter
// in two epochs. First it joins: a new epoch in which the primary counts it for every
// commit. Then, once the primary reports from that epoch that its inherited tail is
// committed and the joiner has matched its commit point, the joiner becomes a secondary.
// Every op acknowledged before the joining epoch is at or below that tail, and every op
// acknowledged in it waited for the joiner, so the joiner holds every acknowledged
// write however stale the report: the report only has to come from the joining epoch.
// A joiner is never promoted to primary; if the primary changes, it becomes a learner
// again and rebuilds from the new primary. No learner the primary reports `unheard`
// (it has acknowledged nothing in the epoch) joins: a primary starts each epoch with
// every follower at op 0, which matches an empty partition's commit point though the
// node may host nothing (simulator seeds 9600248, 9602764). Nor does a joiner stay for
// good: one that has not matched the commit point within learnerCatchUpMsMax of joining
// is dropped (`joinersSinceMs`): a silent voter shows as a stall only when a write waits
// on it (simulator seed 9714544).
//
// Lost disks (defect: a head node back on an empty disk under its old id). Each member
// is recorded with the id of the data directory it joined on (`disks`, heard in its
// heartbeats). A live member whose heartbeats now name another directory lost its
// replica with the old one: it is counted out of the partition as a dead member is (a
// secondary is dropped, a primary replaced by a secondary that holds every acknowledged
// write, never promoted), and may come back only as a learner, rebuilt, recorded on its
// new disk. The head node refuses a configure recorded on another disk, so nothing opens
// the lost replica empty in the meantime (configure-decision.ts).
//
// Members placed before disk ids have none recorded, so their heartbeats prove nothing:
// a node back on an empty disk under its old id looks like one that kept its disk. The
// head node tells them apart, and the coordinator learns only from what it says. A
// configure names no disk for such a member; the head node refuses to open a voter from
// nothing then (`no-replica`), and such a member is lost as above (`noReplica` in the
// view). One that answers the configure says which disk holds the replica it hosts
// (opened from what the disk stored, so it is proof), and that disk is recorded for it
// (`proven`): from then on it is checked as any other. A heartbeat alone never fills a
// disk in: it says where the node is now, not where its replica was. Until it has
// answered the record's epoch such a member is `unproven`, and is never promoted: its
// answer may yet be the refusal, and a primary counted out for it would leave the record
// (simulator seed 9712321).
//
// A disk recorded at placement (or when a learner is added) comes from a heartbeat too:
// where the node was, not proof that it opened the replica there. A member this leader
// has heard answer no configure of the partition is `unproven` as well, disk recorded or
// not. Simulator seed 9781027: a re-created volume's partition was placed on two nodes
// both down but not yet counted dead, one recorded on the disk its last heartbeat named
// though it had just come back on another, unheard. The primary was counted dead first,
// that secondary was promoted, then found on another disk: one voter, its replica lost,
// `unavailable` for good, though nothing had ever been opened or acknowledged and the old
// primary came back on the disk it was placed on. Not promoted, the secondary refuses the
// configure (`other-disk`), is lost, and the returning primary goes on without it.
//
// Unconfirmed primaries (session 9, found by the failover simulator with configures that
// wait on a hung disk). A primary whose configure of the record's epoch never completes
// (its node's disk hangs while the configure opens the replica, or the configure waits
// behind a hung retire) hosts nothing, so it reports nothing for the partition: neither
// failed nor stalled. Before, such a primary was kept for as long as the hang lasted
// while a healthy secondary waited. The leader now tracks since when the primary has
// neither acknowledged the configure of the record's epoch nor reported in it
// (`primaryUnconfirmedSinceMs`, `unconfirmedSince`, measured from when this leader first
// saw the epoch, never from KV time; and not before the configure of the epoch was sent
// to it: one held back by the leader's bounds on configures in flight was asked nothing,
// and a new volume of 16,384 partitions was failed over wholesale for it), and one
// unconfirmed for primaryUnconfirmedMsMax is failed over as a stalled primary is: only
// where a live secondary can take over, after the lease. That is safe for the same reason: the record's secondaries hold every
// acknowledged write (none committed without them).
//
// Reads: a primary serves reads only under a lease (see leases in docs/architecture.md).
// Before a new primary is chosen, the decision waits until every lease the old primary
// may hold has run out (`leaseUntilMs`, on the leader's monotonic clock).

import { checkpointBlobPrefixOf, limits, type MessageOf } from "@ballast/protocol";
import {
  configureOtherDiskRetryMs,
  configureVerifyMs,
  flushStallNodesMemoryMs,
  primaryUnconfirmedMsMax,
  sledEvidenceFreshMs,
  standInAvoidedAfterMs,
  standInProbesMax,
} from "./constants.ts";

const { commitStallMsMax, primaryStallMsMax } = limits;

/** Replicas (of any member kind) and primaries a head node holds. */
export interface Load {
  replicas: number;
  primaries: number;
}

export interface PartitionRecord {
  volume: string;
  /** The volume's incarnation (absent in records written before incarnations). */
  volumeId?: string;
  partition: number;
  partitionStart: number;
  partitionBytes: number;
  epoch: number;
  primary: string;
  secondaries: string[];
  /** Replicas being rebuilt from a checkpoint (absent in records written before them). */
  learners?: string[];
  /** Caught-up learners that count for commit but cannot yet be promoted. */
  joining?: string[];
  /**
   * The data directory each member joined on, by node (see "Lost disks"); absent for
   * members that joined before disk ids or from a head node that sends none.
   */
  disks?: Record<string, string>;
  /**
   * The leadership term of the coordinator that wrote the record (absent before terms).
   * A leader refuses to write over a record of a higher term: it has been deposed.
   */
  term?: number;
  /**
   * The partition's bytes, from its start, inside the volume: its primary refuses I/O
   * past them (resize.ts, "The end on the head nodes"). Absent (records from before
   * it): the whole partition.
   */
  servedBytes?: number;
}

/** The volume incarnation a record belongs to: records before incarnations use the name. */
export function volumeIdOf(record: PartitionRecord): string {
  return record.volumeId ?? record.volume;
}

/** One primary's entry of a `headnode.report.v1`. */
export type Report = MessageOf<"headnode.report.v1">["primaries"][number];

export interface PartitionView {
  /** The leader's monotonic time. */
  nowMs: number;
  /** Live head nodes, by membership. */
  alive: ReadonlySet<string>;
  /** Each live head node's data directory id, where its heartbeats carry one. */
  disks?: ReadonlyMap<string, string>;
  /**
   * Members the record has no disk for that answered the configure of the record's epoch
   * naming the disk that holds their replica (`headnode.configure.v1`'s result): proof
   * the replica is there, recorded by the next update (see "Lost disks").
   */
  proven?: ReadonlyMap<string, string>;
  /**
   * Members the record has no disk for that refused the configure of the record's epoch
   * because their disk holds nothing of the partition (`no-replica`): back on an empty
   * disk, they lost their replica (see "Lost disks").
   */
  noReplica?: ReadonlySet<string>;
  /** Replicas and primaries per live head node (decisions that add a replica update it). */
  load: Map<string, Load>;
  /** The volume's replica count. */
  replicaCount: number;
  /** The newest report of this partition from its primary, if any. */
  report?: Report;
  /**
   * How many sleds are alive by membership. A primary whose flushes keep failing for
   * want of sleds (`flushStalledMs`) is failed over only while at least chunkCopies are:
   * then the cut is between it and them, and a secondary may reach them; with fewer, no
   * primary could flush, and a failover would only cost a replica. Absent: none counted.
   */
  liveSleds?: number;
  /**
   * How many head nodes reported a primary whose flushes all fail within
   * flushStallNodesMemoryMs, this partition's primary included. A flush-stalled primary
   * is failed over only when its node is the only one: stalls on two or more mean the
   * sleds fail everyone's writes, which no failover cures (each would drop a replica).
   * Absent: one.
   */
  flushStalledNodes?: number;
  /**
   * Whether the primary's node is among those `flushStalledNodes` counts: it reported a
   * primary whose flushes had all failed for primaryStallMsMax within the leader's memory
   * of such stalls. A partition over its count keeps its stand-in meanwhile
   * (decideSurplus). Absent: no.
   */
  primaryFlushStalledLately?: boolean;
  /**
   * Whether a flush-stalled primary is failed over at all (`flushStallFailover`,
   * constants.ts: on by default in the reconciler). Absent: no.
   */
  flushStallFailover?: boolean;
  /**
   * Per head node, the earliest its newest observed store to the sleds can have
   * happened, on the leader's monotonic clock (sled-reach.ts): a flush-stalled primary
   * is failed over only to a secondary whose node stored something since the stall
   * began, positive evidence that it reaches the sleds the primary cannot. Absent: none.
   */
  sledStoredSinceMs?: Pick<ReadonlyMap<string, number>, "get">;
  /**
   * Until when the current primary may still hold a read lease, on the leader's
   * monotonic clock, including the drift margin and leases a previous leader may have
   * granted. A primary is never replaced before this.
   */
  leaseUntilMs: number;
  /** When each current learner was added (leader's clock); absent for ones it did not see added. */
  learnersSinceMs: ReadonlyMap<string, number>;
  /** How long a learner may take to catch up before it is dropped and re-added. */
  learnerCatchUpMsMax: number;
  /**
   * When each current joiner joined (leader's clock); absent for ones it did not see
   * join. One that has not matched the commit point in its joining epoch within
   * learnerCatchUpMsMax is dropped (see "A joiner that never answers").
   */
  joinersSinceMs?: ReadonlyMap<string, number>;
  /**
   * Live nodes recently dropped from this partition (stalled, or unable to catch up): a
   * new learner is chosen among them only when no other spare is live, and a stand-in
   * only when no other has shown evidence in time (`decideStandIn`), so that a node with
   * a hung disk is not re-added over and over while a healthy spare waits.
   */
  avoid?: ReadonlySet<string>;
  /**
   * Members other than the primary whose own node reports their replica failed in the
   * record's epoch (its journal could not write): they acknowledge nothing, so they are
   * dropped as a stalled follower is, without waiting for a write to stall on them.
   */
  failed?: ReadonlySet<string>;
  /**
   * Of `failed`, those whose node could not open their replica at all (its journal or
   * checkpoint refused: `unopened` in its report): they hold no copy a configure would
   * open, so they are never promoted.
   */
  unopened?: ReadonlySet<string>;
  /**
   * Members whose node restarted, or came back from silence, since they last
   * acknowledged a configure of the partition, and that have not acknowledged one since
   * (`reopeningMembers`, configurer.ts: the acknowledgement marked out of date, epoch
   * −1): whether their files open is unknown until a configure opens them (a node
   * restarting on damaged files reports the replica `unopened` only then). They are
   * never promoted while so; a round or two later they are `unopened` or acknowledged.
   */
  reopening?: ReadonlySet<string>;
  /**
   * Members the record has no disk for (placed before disk ids) that have not
   * acknowledged the configure of the record's epoch, and members this leader has heard
   * answer no configure of the partition at all (`unprovenMembers`, configurer.ts):
   * whether their disk holds the replica is unknown until they answer, with the disk that
   * holds it (`proven`) or a refusal (`no-replica`, `other-disk`). They are never promoted
   * while so, as `reopening` ones are not (see "Lost disks").
   */
  unproven?: ReadonlySet<string>;
  /**
   * Since when (leader's monotonic clock) the record's primary has neither acknowledged
   * the configure of the record's epoch nor reported in it, as this leader has seen it
   * (`unconfirmedSince`); absent once it has done either. A primary unconfirmed for
   * primaryUnconfirmedMsMax is failed over as a stalled one (see "Unconfirmed primaries").
   */
  primaryUnconfirmedSinceMs?: number;
  /**
   * How long a primary may stay unconfirmed before it is failed over: the leader's
   * primaryUnconfirmedMsMax unless given (the failover simulator scales it to its runs,
   * as it does learnerCatchUpMsMax).
   */
  primaryUnconfirmedMsMax?: number;
}

/**
 * What the leader remembers of whether a partition's primary has taken the record's
 * epoch: the epoch and primary it is about, and since when it has been unconfirmed
 * (absent while confirmed).
 */
export interface Unconfirmed {
  epoch: number;
  primary: string;
  sinceMs?: number;
}

/**
 * The next `Unconfirmed` of a partition at `nowMs` (pure; the reconciler and the
 * simulator keep it per partition, within one leadership). The primary is confirmed once
 * it acknowledged the configure of the record's epoch (`acknowledged`, the configurer's
 * book) or reports in that epoch (`report`, from the record's primary). Otherwise the
 * clock runs from the first time this leader saw the record's epoch and primary, or from
 * when the confirmation went away (a restart forgets the acknowledgement, and the reopen
 * is timed afresh); a new leader starts it when it first sees the epoch, so its clock
 * never starts before it could have known.
 */
export function unconfirmedSince(
  record: PartitionRecord,
  previous: Unconfirmed | undefined,
  acknowledged: { epoch: number } | undefined,
  report: Report | undefined,
  nowMs: number,
): Unconfirmed {
  const about = { epoch: record.epoch, primary: record.primary };
  if (acknowledged?.epoch === record.epoch || currentReport(record, report) !== undefined) {
    return about;
  }
  const same = previous?.epoch === record.epoch && previous.primary === record.primary;
  return { ...about, sinceMs: (same ? previous.sinceMs : undefined) ?? nowMs };
}

/**
 * How many head nodes reported a primary whose flushes all fail within
 * flushStallNodesMemoryMs of `nowMs` (`stalls`: node → when it last did, kept by the
 * reconciler and the simulator), forgetting older ones: `flushStalledNodes` of the view.
 */
export function flushStalledNodes(
  stalls: Map<string, number>,
  nowMs: number,
  memoryMs = flushStallNodesMemoryMs,
): number {
  for (const [node, atMs] of stalls) {
    if (nowMs - atMs > memoryMs) stalls.delete(node);
  }
  return stalls.size;
}

export type PartitionDecision =
  | { kind: "keep" }
  /** `level`: how the leader logs it (error unless said; a wait for evidence is a warning). */
  | { kind: "unavailable"; reason: string; level?: "warn" }
  /** The primary must change, but its read lease may still run: decide again later. */
  | { kind: "wait"; untilMs: number; reason: string }
  | { kind: "update"; record: PartitionRecord; reason: string };

/** Nodes the head nodes are told are secondaries: voting members and joiners. */
export function votingSecondaries(record: PartitionRecord): string[] {
  return [...record.secondaries, ...(record.joining ?? [])];
}

/** Every node that hosts a replica of the partition under this record. */
export function membersOf(record: PartitionRecord): string[] {
  return [
    record.primary,
    ...record.secondaries,
    ...(record.joining ?? []),
    ...(record.learners ?? []),
  ];
}

/** The report, if it comes from the record's primary in the record's epoch. */
function currentReport(record: PartitionRecord, report: Report | undefined): Report | undefined {
  if (report === undefined || report.epoch !== record.epoch) return undefined;
  return report;
}

/**
 * Voting followers the primary reports as unfit: keeping commits waiting too long (a
 * hung disk), or needing notes it has already released (a learner that joined just as
 * the primary released what it lacked: it can never catch up and must rebuild).
 */
function stalledFollowers(record: PartitionRecord, report: Report | undefined): string[] {
  const voting = votingSecondaries(record);
  return (currentReport(record, report)?.followers ?? [])
    .filter(
      (follower) =>
        voting.includes(follower.node) &&
        !follower.learner &&
        ((follower.stalledMs ?? 0) >= commitStallMsMax || follower.needsRebuild === true),
    )
    .map((follower) => follower.node);
}

/**
 * Whether `node` has evidence that it reaches the sleds a primary flush-stalled for
 * `flushStalledMs` cannot: a store from within the stall, and recent
 * (sledEvidenceFreshMs). `storedSinceMs` is the leader's book (sled-reach.ts).
 */
export function reachesSleds(
  storedSinceMs: Pick<ReadonlyMap<string, number>, "get"> | undefined,
  node: string,
  nowMs: number,
  flushStalledMs: number,
): boolean {
  return (
    (storedSinceMs?.get(node) ?? Number.NEGATIVE_INFINITY) >=
    nowMs - Math.min(flushStalledMs, sledEvidenceFreshMs)
  );
}

/**
 * The head nodes the leader asks to probe the sleds for a partition whose primary's
 * flushes fail (`flushStalledMs` > 0), where a failover could follow: its followers
 * (secondaries, which a failover needs evidence from, and learners and joiners, a
 * stand-in among them, so that its evidence is there once it is a secondary); and, once
 * the stall is long enough to fail over with no follower showing evidence (all cut too,
 * say) and no learner or joiner under way, up to standInProbesMax live spares that a
 * stand-in may go on (`decideStandIn`), fewest replicas first, ones to avoid last. The
 * reconciler and the simulator both ask these.
 */
export function probeTargets(
  record: PartitionRecord,
  flushStalledMs: number,
  view: {
    nowMs: number;
    alive: ReadonlySet<string>;
    load: Map<string, Load>;
    replicaCount: number;
    avoid?: ReadonlySet<string>;
    storedSinceMs: Pick<ReadonlyMap<string, number>, "get">;
  },
): string[] {
  const targets = [...record.secondaries, ...(record.joining ?? []), ...(record.learners ?? [])];
  const evidenced = targets.some((node) =>
    reachesSleds(view.storedSinceMs, node, view.nowMs, flushStalledMs),
  );
  if (flushStalledMs < primaryStallMsMax || evidenced) return targets;
  return [...targets, ...standInSpares(record, view).slice(0, standInProbesMax)];
}

/**
 * The checkpoint a learner rebuilds from (configurer.ts, and the simulator's model of
 * it): of the primary's own newest (`own`) and the partition's newest recorded by any
 * replica (`newest`, Catalogue.newestCheckpoint), the newer by op, the primary's own on a
 * tie. A primary that has recorded none (itself rebuilt from another's checkpoint and
 * cut from the sleds since, simulator seed 9760592), or whose pointer is from an earlier
 * life (recorded, then the replica lost, rebuilt from a newer checkpoint and promoted,
 * seed 9761092), has released notes past its pointer all the same, and a learner sent it
 * needs them: dropped and added again for as long as the primary cannot record a fresh
 * one. Comparing by op is exact: flush records are notes applied at commit, and a
 * checkpoint is taken at its replica's commit point, so its flushed point is a function
 * of its op, the same on every replica; the primary released nothing past the flushed
 * point of the checkpoint it recorded or was rebuilt from, and the sweeper keeps that
 * pointer while no member's is as new.
 *
 * Never a pointer of another incarnation of the name (`volumeId`: a replica of a deleted
 * one may have recorded it under the same key; its blob holds another volume's data);
 * and one with a copy on a live sled (`liveSleds`) before one without: only a primary
 * audits its own recorded checkpoint's copies (replicator.ts), so another replica's,
 * above all a departed one's, may have lost them all. Likewise one a learner already
 * failed to fetch (`unusable`: no copy whole and sound, the configure's answer said)
 * goes after the others: the primary's own, older, then seeds the next learner (the
 * primary released nothing past it), as the simulator found (seed 9790455: the newest,
 * another replica's, damaged on every sled while its primary was cut). With no better
 * candidate, the newer is sent all the same (the fetch fails and the next configure
 * retries).
 */
export function learnerCheckpoint<P extends { opNum: number; blobKey: string; sleds: string[] }>(
  own: P | undefined,
  newest: P | undefined,
  volumeId: string,
  partition: number,
  liveSleds: ReadonlySet<string>,
  unusable: ReadonlySet<string> = new Set(),
): P | undefined {
  const prefix = checkpointBlobPrefixOf(volumeId, partition);
  const ours = [own, newest].filter(
    (pointer): pointer is P => pointer?.blobKey.startsWith(prefix) === true,
  );
  const reachable = (pointer: P) => pointer.sleds.some((sled) => liveSleds.has(sled));
  const usable = (pointer: P) => !unusable.has(pointer.blobKey);
  // The first of the newest by op: the primary's own on a tie.
  const newer = (candidates: P[]) =>
    candidates.reduce<P | undefined>(
      (best, pointer) => (best === undefined || pointer.opNum > best.opNum ? pointer : best),
      undefined,
    );
  return (
    newer(ours.filter((pointer) => usable(pointer) && reachable(pointer))) ??
    newer(ours.filter(usable)) ??
    newer(ours.filter(reachable)) ??
    newer(ours)
  );
}

/**
 * The live spares a stand-in may go on (see "Stand-ins"), fewest replicas first, and
 * those the partition avoids (dropped lately: a hung disk, say) after all the others:
 * none while a learner or joiner is under way or the record is over its count. Probes
 * are asked of the first few (`probeTargets`); the stand-in is the first of them with
 * evidence (`decideStandIn`), one to avoid only when no other has any once they have
 * had time to answer (standInAvoidedAfterMs) or there is no other, as a rebuild's
 * learner is one to avoid only when no other spare is live. Before, none to
 * avoid was ever taken: a spare dropped a minute earlier for a journal that has since
 * come back left the partition waiting for the cut to end (the integration test of a
 * primary and secondary cut from the sleds, run after a failover, found it).
 */
function standInSpares(
  record: PartitionRecord,
  view: Pick<PartitionView, "alive" | "load" | "replicaCount" | "avoid">,
): string[] {
  if ((record.learners ?? []).length > 0 || (record.joining ?? []).length > 0) return [];
  const members = membersOf(record);
  if (members.length > view.replicaCount) return [];
  const spares = [...view.alive]
    .filter((node) => !members.includes(node) && view.load.has(node))
    .sort(byLoad(view.load));
  const avoided = (node: string) => view.avoid?.has(node) === true;
  return [...spares.filter((node) => !avoided(node)), ...spares.filter(avoided)];
}

function byLoad(load: Map<string, Load>) {
  return (a: string, b: string) => {
    const left = load.get(a) ?? { replicas: 0, primaries: 0 };
    const right = load.get(b) ?? { replicas: 0, primaries: 0 };
    return left.replicas - right.replicas || left.primaries - right.primaries || a.localeCompare(b);
  };
}

/**
 * Members whose replica is lost (see "Lost disks"): alive on another disk than the one
 * the record has them on, or, with none recorded, refusing the record's configure for
 * holding nothing of the partition on their disk (`noReplica`).
 */
export function lostDisks(
  record: PartitionRecord,
  view: Pick<PartitionView, "disks" | "noReplica">,
): string[] {
  const recorded = record.disks ?? {};
  return membersOf(record).filter((node) => {
    const was = recorded[node];
    if (was === undefined) return view.noReplica?.has(node) === true;
    const now = view.disks?.get(node);
    return now !== undefined && was !== now;
  });
}

/**
 * The record's disks for its members in `next`: kept for those that stay, the live disk
 * for those that join (a new learner). A member recorded without one keeps none unless
 * its answer to a configure proved where its replica is (`proven`): it joined before
 * disk ids, and its disk now may already be another.
 */
function disksOf(
  next: PartitionRecord,
  record: PartitionRecord,
  view: Pick<PartitionView, "disks" | "proven">,
): Record<string, string> | undefined {
  const before = new Set(membersOf(record));
  const disks: Record<string, string> = {};
  for (const node of membersOf(next)) {
    const disk = before.has(node)
      ? (record.disks?.[node] ?? view.proven?.get(node))
      : view.disks?.get(node);
    if (disk !== undefined) disks[node] = disk;
  }
  return Object.keys(disks).length === 0 ? undefined : disks;
}

/** Members the record has no disk for whose answer proved one (`proven`). */
function unrecorded(record: PartitionRecord, view: Pick<PartitionView, "proven">): string[] {
  return membersOf(record).filter(
    (node) => record.disks?.[node] === undefined && view.proven?.get(node) !== undefined,
  );
}

/** Why a lost member's replica is gone, for the decision's reason. */
function lostWhy(record: PartitionRecord, node: string): string {
  return record.disks?.[node] === undefined
    ? "holds no replica on its disk (back on an empty one)"
    : "came back on another disk (its replica is lost)";
}

/** The view as the decisions below see it: members on a lost disk are not alive. */
interface Seen extends PartitionView {
  /** Members alive on another disk than the record's (`lostDisks`). */
  lost: readonly string[];
}

/** The one decision for a partition this round. */
export function decidePartition(record: PartitionRecord, view: PartitionView): PartitionDecision {
  // A member on a lost disk is, to this partition, a dead one.
  const lost = lostDisks(record, view);
  const seen: Seen =
    lost.length === 0
      ? { ...view, lost }
      : { ...view, alive: new Set([...view.alive].filter((node) => !lost.includes(node))), lost };
  const decision = decideMembership(record, seen) ??
    decideRebuild(record, seen) ??
    decidePromotion(record, seen) ?? { kind: "keep" };
  if (decision.kind === "keep") {
    // Nothing else to change: record the disks members proved, in the same epoch (the
    // head nodes' configuration does not change).
    const proven = unrecorded(record, view);
    if (proven.length === 0) return decision;
    return {
      kind: "update",
      record: { ...record, disks: disksOf(record, record, view) },
      reason: `${proven.map((node) => `${node} holds its replica on disk ${view.proven!.get(node)}`).join("; ")}: recording ${proven.length === 1 ? "it" : "them"}`,
    };
  }
  if (decision.kind !== "update") return decision;
  const { disks: _was, ...next } = decision.record;
  const disks = disksOf(next, record, view);
  return { ...decision, record: disks === undefined ? next : { ...next, disks } };
}

/**
 * Dead or stalled members leave. A dead primary is replaced by the live voting
 * secondary with the fewest primaries, once its lease has run out.
 */
function decideMembership(record: PartitionRecord, view: Seen): PartitionDecision | undefined {
  // A primary that reports itself failed (its journal could not write) serves nothing:
  // fail over as if its node were dead. So does one whose own journal has kept writes
  // waiting past the stall bound (a disk that hangs without failing): it acknowledges
  // nothing, and no follower can report that stall. So does one whose flushes have all
  // failed for as long while enough sleds are alive (`flushStalledMs`, `liveSleds`) and
  // no other node's have lately (`flushStalledNodes`): it cannot reach them, its journal
  // is never released, and writes will wait on it for as long as the cut lasts, while a
  // secondary may reach them. So does one that has neither
  // acknowledged the record's epoch nor reported in it for primaryUnconfirmedMsMax (its
  // configure hangs: see "Unconfirmed primaries"). Where no secondary can take over,
  // nothing changes: it may yet recover (one only cut from the sleds still gets its
  // learner promoted: see below).
  const current = currentReport(record, view.report);
  const primaryStalled = (current?.stalledMs ?? 0) >= primaryStallMsMax;
  // A node with evidence that it reaches the sleds: a store from within the primary's
  // flush stall, and recent (sledEvidenceFreshMs).
  const flushStalledMs = current?.flushStalledMs ?? 0;
  const reaches = (node: string) =>
    reachesSleds(view.sledStoredSinceMs, node, view.nowMs, flushStalledMs);
  const primaryCutFromSleds =
    view.flushStallFailover === true &&
    flushStalledMs >= primaryStallMsMax &&
    (view.liveSleds ?? 0) >= limits.chunkCopies &&
    (view.flushStalledNodes ?? 1) <= 1;
  const unconfirmedMs =
    current === undefined && view.primaryUnconfirmedSinceMs !== undefined
      ? view.nowMs - view.primaryUnconfirmedSinceMs
      : 0;
  const primaryUnconfirmed =
    view.alive.has(record.primary) &&
    unconfirmedMs >= (view.primaryUnconfirmedMsMax ?? primaryUnconfirmedMsMax);
  const primaryFailed =
    current?.failed === true || primaryStalled || primaryCutFromSleds || primaryUnconfirmed;
  const alive = primaryFailed
    ? new Set([...view.alive].filter((node) => node !== record.primary))
    : view.alive;
  const primaryGone = primaryStalled
    ? `has kept writes waiting on its own journal for ${current?.stalledMs} ms`
    : primaryCutFromSleds
      ? `has failed every flush for ${primaryStallMsMax} ms or more while ${view.liveSleds} sleds are alive (it cannot reach them, so its journal cannot be released)`
      : primaryUnconfirmed
        ? `has neither acknowledged nor reported epoch ${record.epoch} for ${Math.floor(unconfirmedMs)} ms (its configure hangs)`
        : primaryFailed
          ? "has failed"
          : view.lost.includes(record.primary)
            ? lostWhy(record, record.primary)
            : "is dead";
  // A stall is a wait of the live primary's commits; once the primary is dead it says
  // nothing (a stalled follower still holds every acknowledged write: none committed
  // without it), so it must not keep a secondary from being promoted.
  // A failed voter is treated as a stalled one: it holds every write acknowledged before
  // it failed, so it is dropped only while the primary lives.
  const failed = view.failed ?? new Set<string>();
  // A primary its leader has asked for the record's epoch and that has neither answered
  // nor reported in it may hold no sound copy: a node restarting on damaged files
  // reports the replica failed only once a configure tries to open it (headnode.ts).
  // Beside it no voter is dropped: one that died meanwhile may be the one sound copy,
  // and dropping it left the partition unavailable with that copy out of the record.
  // Once it confirms, or is counted failed, the round decides again.
  const primaryUnsure = current === undefined && view.primaryUnconfirmedSinceMs !== undefined;
  const stalled = new Set(
    alive.has(record.primary)
      ? [
          ...stalledFollowers(record, view.report),
          ...votingSecondaries(record).filter((node) => failed.has(node)),
        ]
      : [],
  );
  const keepsVoter = (node: string) => alive.has(node) && !stalled.has(node);
  const keeps = (node: string) => keepsVoter(node) || (primaryUnsure && alive.has(record.primary));
  const learners = record.learners ?? [];
  const joining = record.joining ?? [];
  const secondaries = record.secondaries.filter(keeps);
  const liveJoining = joining.filter(keeps);
  // A failed learner counts for nothing and will never catch up.
  const learnerKept = (node: string) => alive.has(node) && !failed.has(node);
  const liveLearners = learners.filter(learnerKept);
  const gone = [
    ...record.secondaries.filter((node) => !keeps(node)),
    ...joining.filter((node) => !keeps(node)),
    ...learners.filter((node) => !learnerKept(node)),
  ];
  const why = (node: string) =>
    view.lost.includes(node)
      ? `${node} ${lostWhy(record, node)}`
      : failed.has(node) && alive.has(node)
        ? `${node}'s replica has failed`
        : stalled.has(node)
          ? `${node} stalled commits or cannot catch up`
          : `${node} is dead`;
  if (alive.has(record.primary)) {
    if (gone.length === 0) return decideSurplus(record, view, current);
    return {
      kind: "update",
      record: {
        ...record,
        epoch: record.epoch + 1,
        secondaries,
        joining: liveJoining,
        learners: liveLearners,
      },
      reason: `${gone.map(why).join("; ")}: continuing without ${gone.length === 1 ? "it" : "them"}`,
    };
  }
  // `failsOver` says the same of the record before the stalls and drops above (with the
  // primary counted out, nothing is stalled): the configurer holds a failed primary
  // exactly while this goes on to wait and promote.
  // Never promoted: a secondary whose node could not open its files (`unopened`): it
  // holds no copy a configure would open, and promoting it would leave the old primary,
  // perhaps the one sound copy, out of the record. Preferred: one not reported failed at
  // all; one whose journal failed while open holds every write acknowledged before, and
  // is promoted only when no sound one is live (a reopen may succeed). The ones passed
  // over leave with the old primary; with none to promote, the record waits, keeping
  // them (a reboot may open one).
  // Nor promoted: one whose node restarted since it last acknowledged (`reopening`),
  // until a configure shows whether its files open. Promoted on the strength of its
  // heartbeats alone, a secondary back on damaged files took the record from a failed
  // primary that held every acknowledged write and needed only a reboot, and the
  // partition stayed unavailable for good (simulator seeds 9201217 and 9201895). Kept
  // as a secondary beside another one promoted: it may well open.
  // Nor promoted: one placed before disk ids that has not answered the record's epoch
  // (`unproven`), until its answer proves its disk holds the replica. Promoted on its
  // heartbeats alone, a secondary whose configure had waited on a hung disk since the
  // volume was placed took the record from a failed primary, then refused the epoch for
  // holding nothing (`no-replica`): the one copy was out of the record, and the
  // partition never served again (simulator seed 9712321).
  const unopened = view.unopened ?? new Set<string>();
  const unproven = view.unproven ?? new Set<string>();
  const reopening = view.reopening ?? new Set<string>();
  const unsure = (node: string) => reopening.has(node) || unproven.has(node);
  const waiting = secondaries.filter((node) => !unopened.has(node) && unsure(node));
  const openable = secondaries.filter((node) => !unopened.has(node) && !unsure(node));
  const notFailed = openable.filter((node) => !failed.has(node));
  const soundAny = notFailed.length > 0 ? notFailed : openable;
  // Counted out only because it cannot reach the sleds, a live primary is replaced only
  // by a secondary with evidence that it reaches them (`sledStoredSinceMs`); the others
  // stay secondaries beside the one promoted.
  const onlyCut =
    primaryCutFromSleds &&
    !primaryStalled &&
    !primaryUnconfirmed &&
    current?.failed !== true &&
    view.alive.has(record.primary);
  const sound = onlyCut ? soundAny.filter(reaches) : soundAny;
  if (sound.length === 0) {
    // A primary counted out only because it cannot reach the sleds still serves from its
    // journal and leads its followers. With no secondary to take over, it is decided as
    // the live primary it is: dead members leave, a learner is added, and a caught-up one
    // joins and becomes the secondary the failover waits for. Before, the round stopped
    // here: the partition was shown unavailable for as long as the cut lasted, its
    // learner caught up but never promoted (simulator seed 9123815, session 29).
    const live = onlyCut
      ? (decideMembership(record, { ...view, flushStallFailover: false }) ??
        decideRebuild(record, view) ??
        decidePromotion(record, view))
      : undefined;
    if (live !== undefined) return live;
    const noEvidence = soundAny.filter((node) => !reaches(node));
    if (onlyCut && noEvidence.length > 0) {
      const standIn = decideStandIn(record, view, reaches, flushStalledMs, noEvidence);
      if (standIn !== undefined) return standIn;
      return {
        kind: "unavailable",
        level: "warn",
        reason: `primary ${record.primary} has failed every flush for ${flushStalledMs} ms, and no secondary has stored anything on the sleds lately (${noEvidence.join(", ")}: no evidence that ${noEvidence.length === 1 ? "its node reaches" : "their nodes reach"} them): a cut of its own cannot be told from sleds failing everyone's writes, so it stays primary, serving from its journal, until a secondary's probe gets its copies or its flushes succeed`,
      };
    }
    const refused = secondaries.filter((node) => !waiting.includes(node));
    const restarted = waiting.filter((node) => reopening.has(node));
    const unanswered = waiting.filter((node) => !reopening.has(node));
    const why = [
      ...(refused.length === 0 ? [] : [`${refused.join(", ")}: files refused at open`]),
      ...(restarted.length === 0
        ? []
        : [`${restarted.join(", ")}: not yet reopened since a restart`]),
      ...(unanswered.length === 0 ? [] : [`${unanswered.join(", ")}: not yet answered`]),
    ];
    const detail = why.length === 0 ? "" : ` (${why.join("; ")})`;
    return {
      kind: "unavailable",
      reason: `primary ${record.primary} ${primaryGone} and no live secondary holds every acknowledged write${detail}; waiting for one to return`,
    };
  }
  if (view.nowMs <= view.leaseUntilMs) {
    return {
      kind: "wait",
      untilMs: view.leaseUntilMs,
      reason: `primary ${record.primary} ${primaryGone}; waiting ${Math.ceil(view.leaseUntilMs - view.nowMs)} ms for its read lease to run out before promoting`,
    };
  }
  const primary = [...sound].sort(
    (a, b) =>
      (view.load.get(a)?.primaries ?? 0) - (view.load.get(b)?.primaries ?? 0) || a.localeCompare(b),
  )[0]!;
  // Joiners were caught up with the old primary, not necessarily with the new one's
  // log: they rebuild as learners of the new primary.
  return {
    kind: "update",
    record: {
      ...record,
      epoch: record.epoch + 1,
      primary,
      secondaries: [...soundAny, ...waiting].filter((node) => node !== primary),
      joining: [],
      learners: [...liveLearners, ...liveJoining.filter((node) => !failed.has(node))],
    },
    reason: `primary ${record.primary} ${primaryGone}: promoting ${primary}${soundAny.length + waiting.length < secondaries.length ? `; dropping ${secondaries.filter((node) => !soundAny.includes(node) && !waiting.includes(node)).join(", ")}, whose replica has failed` : ""}`,
  };
}

/**
 * Stand-ins. A primary cut from the sleds is failed over only to a secondary with
 * evidence that it reaches them; when every secondary is cut too, none has any, and with
 * the replica count met no learner was added: the partition waited for the cut to end,
 * its writes held once the primary's journal filled (review 30). Such a partition now
 * gets one learner more than its count, on a live spare that has stored on the sleds
 * lately (asked to probe: `probeTargets`). It rebuilds, joins and becomes a secondary
 * as any learner does (the primary still replicates to it: only its flushes fail), and
 * then, with evidence, is the one promoted; the old primary leaves and the record is at
 * its count again. One stand-in at a time, and none while a learner or joiner is under
 * way; a stand-in that cannot catch up is dropped as any learner is.
 */
function decideStandIn(
  record: PartitionRecord,
  view: Seen,
  reaches: (node: string) => boolean,
  flushStalledMs: number,
  noEvidence: readonly string[],
): PartitionDecision | undefined {
  // A spare the partition avoids only once the others have had time to answer their
  // probes, or when there is no other (standInAvoidedAfterMs).
  const spares = standInSpares(record, view);
  const avoided = (node: string) => view.avoid?.has(node) === true;
  const preferred = spares.filter((node) => !avoided(node));
  const learner =
    preferred.find(reaches) ??
    (preferred.length === 0 || flushStalledMs >= primaryStallMsMax + standInAvoidedAfterMs
      ? spares.filter(avoided).find(reaches)
      : undefined);
  if (learner === undefined) return undefined;
  view.load.get(learner)!.replicas++;
  return {
    kind: "update",
    record: { ...record, epoch: record.epoch + 1, learners: [learner] },
    reason: `primary ${record.primary} has failed every flush for ${flushStalledMs} ms and no secondary has stored on the sleds lately (${noEvidence.join(", ")}): adding ${learner}, which has, as a stand-in learner to take over once it holds every acknowledged write`,
  };
}

/**
 * A partition over its replica count (a stand-in added, then the primary's flushes came
 * back before it was promoted) sheds a member once the primary reports no failing flush:
 * the stand-in itself while it is still a learner or joiner (it counts for nothing the
 * voters do not hold, and its rebuild is not worth finishing); else a secondary, one
 * whose files are in doubt (`reopening`, `unproven`) first, then the most loaded, the last
 * by name on a tie. The voters left are still its count, each holding every acknowledged
 * write. Not while the primary's node is remembered flush-stalled
 * (`primaryFlushStalledLately`, the leader's memory of such stalls, 30 s): a cut that
 * comes and goes would otherwise cost a stand-in, rebuilt from the newest checkpoint, each
 * time it lasted past the stall bound, and drop it at each return (review 31).
 */
function decideSurplus(
  record: PartitionRecord,
  view: Seen,
  current: Report | undefined,
): PartitionDecision | undefined {
  const voters = 1 + record.secondaries.length;
  if (membersOf(record).length <= view.replicaCount || voters < view.replicaCount) return undefined;
  if (current === undefined || (current.flushStalledMs ?? 0) > 0) return undefined;
  if (view.primaryFlushStalledLately === true) return undefined;
  const learners = record.learners ?? [];
  const joining = record.joining ?? [];
  const flushesBack = "the primary's flushes succeed again";
  if (learners.length > 0 || joining.length > 0) {
    const dropped = learners[0] ?? joining[0]!;
    return {
      kind: "update",
      record: {
        ...record,
        epoch: record.epoch + 1,
        learners: learners.filter((node) => node !== dropped),
        joining: joining.filter((node) => node !== dropped),
      },
      reason: `${voters} voters for a replica count of ${view.replicaCount}, and ${flushesBack}: dropping ${dropped}, a stand-in no longer needed`,
    };
  }
  const doubtful = (node: string) =>
    view.reopening?.has(node) === true || view.unproven?.has(node) === true ? 1 : 0;
  const byLoadOf = byLoad(view.load);
  const dropped = [...record.secondaries]
    .sort((a, b) => doubtful(a) - doubtful(b) || byLoadOf(a, b))
    .at(-1)!;
  const load = view.load.get(dropped);
  if (load !== undefined) load.replicas--;
  return {
    kind: "update",
    record: {
      ...record,
      epoch: record.epoch + 1,
      secondaries: record.secondaries.filter((node) => node !== dropped),
    },
    reason: `${voters} voters for a replica count of ${view.replicaCount}, and ${flushesBack}: dropping ${dropped}`,
  };
}

/**
 * A partition short of its replica count gets a learner, the least loaded live spare;
 * a learner that cannot catch up (the primary reports it needs notes already released,
 * or it has taken too long) is dropped, and the next round adds one afresh; so is a
 * joiner that has not matched the commit point in time.
 */
function decideRebuild(record: PartitionRecord, view: Seen): PartitionDecision | undefined {
  const learners = record.learners ?? [];
  const report = currentReport(record, view.report);
  for (const learner of learners) {
    const progress = report?.followers.find((follower) => follower.node === learner);
    const sinceMs = view.learnersSinceMs.get(learner);
    const overdue = sinceMs !== undefined && view.nowMs - sinceMs > view.learnerCatchUpMsMax;
    const caughtUp = progress !== undefined && holdsCommitted(progress, report!.commitOpNum);
    if (progress?.needsRebuild === true || (overdue && !caughtUp)) {
      return {
        kind: "update",
        record: {
          ...record,
          epoch: record.epoch + 1,
          learners: learners.filter((node) => node !== learner),
        },
        reason:
          progress?.needsRebuild === true
            ? `learner ${learner} needs notes the primary has released: dropping it to rebuild afresh`
            : `learner ${learner} did not catch up within ${view.learnerCatchUpMsMax} ms: dropping it to start again`,
      };
    }
  }
  // A joiner was caught up, so it matches the commit point within a round trip of its
  // joining epoch. One that has not within learnerCatchUpMsMax hosts nothing the primary
  // hears from: its configures wait on a hung disk or are lost, or (simulator seed
  // 9714544) its node restarted after the report that counted it caught up, rebuilt it
  // afresh on a late learner configure, failed the fetch, and refused the voter configure
  // from nothing. A silent voter shows as a stall only when a write waits on it: on an
  // idle partition such a joiner stayed for good, a copy short and no learner added.
  // Dropping it loses nothing: a joiner is never promoted, and the voters hold every
  // acknowledged write.
  const joining = record.joining ?? [];
  for (const joiner of joining) {
    const sinceMs = view.joinersSinceMs?.get(joiner);
    if (sinceMs === undefined || view.nowMs - sinceMs <= view.learnerCatchUpMsMax) continue;
    const progress = report?.followers.find((follower) => follower.node === joiner);
    if (progress !== undefined && holdsCommitted(progress, report!.commitOpNum)) continue;
    return {
      kind: "update",
      record: {
        ...record,
        epoch: record.epoch + 1,
        joining: joining.filter((node) => node !== joiner),
      },
      reason: `joiner ${joiner} has not matched the commit point within ${view.learnerCatchUpMsMax} ms of joining: dropping it to start again`,
    };
  }
  const members = membersOf(record);
  if (members.length >= view.replicaCount) return undefined;
  const spares = [...view.alive].filter((node) => !members.includes(node) && view.load.has(node));
  if (spares.length === 0) return undefined;
  const welcome = spares.filter((node) => !(view.avoid?.has(node) ?? false));
  // While the primary's flushes fail, a spare with evidence that it reaches the sleds
  // (`sledStoredSinceMs`, as a failover or stand-in needs) comes first among those
  // otherwise chosen: a learner fetches its checkpoint from the sleds, and the primary,
  // unable to store a fresh one, keeps its journal for it to catch up from. Before, the
  // least loaded came first whatever it reached: with the primary and one spare cut from
  // the sleds, the partition short a voter and every spare avoided (each dropped lately
  // for not catching up), the cut spare was added, dropped after learnerCatchUpMsMax and
  // added again for as long as the cuts lasted, while the other spare, reaching the sleds
  // as the other partition's primary, was never tried: no stand-in beside a learner under
  // way, so writes waited once the primary's journal filled (simulator seed 9790238).
  // The primary's report of any epoch: the learner is added in the round after the one
  // that dropped its predecessor, when the primary has not yet reported the new epoch.
  const flushStalledMs = view.report?.flushStalledMs ?? 0;
  const reaches = (node: string) =>
    flushStalledMs > 0 && reachesSleds(view.sledStoredSinceMs, node, view.nowMs, flushStalledMs);
  const candidates = (welcome.length > 0 ? welcome : spares).sort(byLoad(view.load));
  const learner = candidates.find(reaches) ?? candidates[0]!;
  view.load.get(learner)!.replicas++;
  return {
    kind: "update",
    record: { ...record, epoch: record.epoch + 1, learners: [...learners, learner] },
    reason: `adding ${learner} as a learner to rebuild the partition`,
  };
}

/**
 * Whether a follower, as its primary reports it, holds every op through `commitOpNum`:
 * heard in the epoch (not `unheard`, at op 0 though it may host nothing), needing no
 * rebuild, and matched that far. Promotion, and the drops of overdue learners and
 * joiners, all judge by it.
 */
function holdsCommitted(follower: Report["followers"][number], commitOpNum: number): boolean {
  return (
    follower.needsRebuild !== true &&
    follower.unheard !== true &&
    follower.matchOpNum >= commitOpNum
  );
}

/**
 * Learner → joining → secondary, each step on a report from the current epoch. A
 * follower reported `unheard` (a learner the primary has not heard from in the epoch) is
 * at op 0, which an empty partition's commit point (0) would count as matched though
 * the node may host nothing (its configure waiting on a hung disk, or lost): never.
 */
function decidePromotion(record: PartitionRecord, view: Seen): PartitionDecision | undefined {
  const report = currentReport(record, view.report);
  if (report === undefined || !report.tailCommitted) return undefined;
  const matched = (node: string, learner: boolean) =>
    report.followers.some(
      (follower) =>
        follower.node === node &&
        follower.learner === learner &&
        holdsCommitted(follower, report.commitOpNum),
    );
  const joined = (record.joining ?? []).find((node) => matched(node, false));
  if (joined !== undefined) {
    return {
      kind: "update",
      record: {
        ...record,
        epoch: record.epoch + 1,
        secondaries: [...record.secondaries, joined],
        joining: (record.joining ?? []).filter((node) => node !== joined),
      },
      reason: `${joined} holds every acknowledged write: promoting it to secondary`,
    };
  }
  const caughtUp = (record.learners ?? []).find((node) => matched(node, true));
  if (caughtUp !== undefined) {
    return {
      kind: "update",
      record: {
        ...record,
        epoch: record.epoch + 1,
        learners: (record.learners ?? []).filter((node) => node !== caughtUp),
        joining: [...(record.joining ?? []), caughtUp],
      },
      reason: `learner ${caughtUp} caught up: it now counts for commit, and becomes a secondary once the primary confirms it holds every acknowledged write`,
    };
  }
  return undefined;
}

/**
 * Whether the leader may renew `node`'s read lease on this partition at `epoch`: only
 * the record's primary, in the record's epoch, while alive and not about to be replaced.
 */
export function mayGrantLease(
  record: PartitionRecord,
  node: string,
  epoch: number,
  alive: ReadonlySet<string>,
  replacing: boolean,
): boolean {
  return record.primary === node && record.epoch === epoch && alive.has(node) && !replacing;
}

/** What of the view says whether a failed primary would be failed over (`failsOver`). */
export type FailoverView = Pick<
  PartitionView,
  "alive" | "disks" | "noReplica" | "unopened" | "reopening" | "unproven"
>;

/**
 * Whether a primary counted out would be replaced (decideMembership): a voting secondary
 * is alive on the disk the record has it on and its node opened its files (not
 * `unopened`, nor `reopening` since a restart, nor `unproven` on a disk never recorded),
 * so it holds every acknowledged write and may be promoted once the old primary's lease
 * has run out. Joiners and learners are never promoted.
 */
export function failsOver(record: PartitionRecord, view: FailoverView): boolean {
  const lost = lostDisks(record, view);
  return record.secondaries.some(
    (node) =>
      view.alive.has(node) &&
      !lost.includes(node) &&
      view.unopened?.has(node) !== true &&
      view.reopening?.has(node) !== true &&
      view.unproven?.has(node) !== true,
  );
}

/**
 * Whether the record's primary reports itself failed in the record's epoch while a
 * secondary can take over (`failsOver`): decideMembership fails the partition over, and
 * the configurer sends the primary nothing meanwhile, neither the verify push nor the
 * refresh. A configure would reopen the failed replica in place (configure-decision.ts),
 * its next report would say it is well, and the failover would be called off: a disk that
 * keeps failing then looped through reopen, the partition unavailable each time until
 * the reopen, instead of moving to the healthy secondary once (closing note, session 6).
 * The replica left behind is told it is out by the new epoch, and the node may be
 * rebuilt as a learner, last of the spares (droppedNodeAvoidMs).
 */
export function failingOver(
  record: PartitionRecord,
  report: Report | undefined,
  view: FailoverView,
): boolean {
  return (
    report !== undefined &&
    report.epoch === record.epoch &&
    report.failed === true &&
    failsOver(record, view)
  );
}

/**
 * Whether the primary, which acknowledged the record's epoch at `acknowledged.atMs`,
 * still reports an older one configureVerifyMs later (it has lost its configuration),
 * or reports itself failed in this epoch that long after with no secondary to promote
 * (`failingOver`): a configure reopens it from what is durable, in a new session. That
 * is the way out of a partition that has nothing to fail over to, which otherwise
 * waited for the refresh (300 s). `verifyMs`: the coordinator's --configure-verify-ms.
 */
export function outOfStep(
  record: PartitionRecord,
  report: Report | undefined,
  acknowledged: { epoch: number; atMs: number },
  nowMs: number,
  view: FailoverView,
  verifyMs = configureVerifyMs,
): boolean {
  return (
    report !== undefined &&
    (report.epoch < record.epoch ||
      (report.epoch === record.epoch &&
        report.failed === true &&
        !failingOver(record, report, view))) &&
    acknowledged.epoch === record.epoch &&
    nowMs - acknowledged.atMs >= verifyMs
  );
}

/**
 * Whether a member told of the sleds `told` (its last configure's list) knows every
 * live one. A
 * partition's replicas place new chunk copies on the sleds their configure named alone:
 * a volume created while only one sled was up could flush nothing (a chunk needs two
 * copies) until the slow refresh told it of the others, and its writes stalled once its
 * log filled. So a member that lacks a live sled is pushed again at once. A sled gone
 * is not: the replicas' chunk writes already go past a sled that fails them, and a sled
 * whose heartbeats flap must not reconfigure every partition twice (its return then
 * changes nothing either); the refresh tells them in time.
 */
export function knowsSleds(told: readonly string[] | undefined, live: readonly string[]): boolean {
  return live.every((sled) => told?.includes(sled) === true);
}

/**
 * Whether the configure of `record` to `node` waits, after the node refused the
 * record's epoch for being on another disk than the record has it on (`refused`: the
 * epoch and when, monotonic; configurer.ts): for configureOtherDiskRetryMs, unless its
 * heartbeats (`disks`) name the record's disk for it again. The refusal stands until the
 * node has that disk back, so resending it every round only loaded the node and the
 * bus. Pure; the failover simulator's model coordinator asks it too.
 */
export function otherDiskBackoff(
  record: PartitionRecord,
  node: string,
  refused: { epoch: number; atMs: number } | undefined,
  disks: ReadonlyMap<string, string> | undefined,
  nowMs: number,
): boolean {
  if (refused === undefined || refused.epoch !== record.epoch) return false;
  const recorded = record.disks?.[node];
  if (recorded !== undefined && disks?.get(node) === recorded) return false;
  return nowMs - refused.atMs < configureOtherDiskRetryMs;
}
