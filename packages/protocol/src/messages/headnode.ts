// Messages a head node answers on its node inbox: the replica set of a partition it
// hosts (from the coordinator, or a test's static assignment), and a replica's state.

import { z } from "zod";
import {
  leftoverIncarnationsPerRequestMax,
  reportPartitionsMax,
  reportSledsMax,
  snapshotsPerVolumeMax,
} from "../limits.ts";
import {
  diskId,
  nodeId,
  positiveInteger,
  snapshotId,
  unsignedInteger,
  volumeBytes,
  volumeId,
  volumeName,
} from "./fields.ts";
import { blobKey } from "./sled.ts";

/** A partition's served bytes (absent: all) are at most its bytes. */
export function servedWithin(partition: {
  partitionBytes: number;
  servedBytes?: number | undefined;
}) {
  return partition.servedBytes === undefined || partition.servedBytes <= partition.partitionBytes;
}

/** Where a replica's metadata checkpoint is stored: a blob on two or more sleds. */
/**
 * Per snapshot of a partition: the chunk bytes its frozen tree refers to and no other
 * tree does, which is what deleting it lets reclamation free (a scan, refreshed every
 * few seconds). Absent when the partition has no snapshot.
 */
export const SnapshotBytes = z
  .array(z.object({ snapshot: snapshotId, uniqueBytes: unsignedInteger }))
  .max(snapshotsPerVolumeMax);

export const CheckpointPointer = z.object({
  opNum: unsignedInteger,
  blobKey,
  sleds: z.array(nodeId).min(1).max(8),
  bytes: unsignedInteger,
  createdAtMs: unsignedInteger,
});

const partitionAddress = { volume: volumeName, partition: unsignedInteger };

/** The fields of `headnode.configure.v1` (HeadnodeConfigure, below). */
const configureFields = z.object({
  type: z.literal("headnode.configure.v1"),
  ...partitionAddress,
  /**
   * The volume's incarnation. A replica of another incarnation of the same name (the
   * volume was deleted and created again) is dropped, never reused. Absent in static
   * assignments, where it defaults to the volume's name.
   */
  volumeId: volumeId.optional(),
  partitionStart: volumeBytes,
  partitionBytes: volumeBytes,
  epoch: unsignedInteger,
  primary: nodeId,
  secondaries: z.array(nodeId).max(2),
  /**
   * Replicas being rebuilt: the primary sends them notes, but they do not count for
   * commit until they have caught up and a new epoch makes them secondaries.
   */
  learners: z.array(nodeId).max(2).optional(),
  /**
   * The primary serves reads only under a lease that `headnode.report.v1` renews (a
   * duration on its own monotonic clock). Absent in static assignments, which run
   * unleased.
   */
  leased: z.boolean().optional(),
  /** For a learner with no state of its own: the checkpoint to rebuild from. */
  checkpoint: CheckpointPointer.optional(),
  /** The sleds flushes may write chunks to. */
  sleds: z.array(nodeId).min(1).max(64),
  /**
   * The data directory the coordinator recorded this node's replica on (heard in its
   * heartbeat when it joined the replica set). A node whose directory has another id lost
   * that replica with its disk and refuses: opened empty, it would serve a replica that
   * lacks acknowledged writes. Absent where nothing was recorded (static assignments,
   * records from before disk ids).
   */
  disk: diskId.optional(),
  /**
   * Set by a sender that records each member's disk (the coordinator): a configure without
   * `disk` is then for a member placed before disk ids, and a voter whose disk stores
   * nothing of the partition refuses rather than open empty (`no-replica`: it is a node
   * back on an empty disk under its old id). Absent in static assignments, where a voter
   * opens from what is stored or empty.
   */
  disksRecorded: z.boolean().optional(),
  /**
   * How many of the partition's bytes, from its start, lie inside the volume: a primary
   * refuses (OutOfRange) a write, trim or write-zeroes reaching past them, and a read of
   * the volume past them, so that I/O past a shrunk volume's end is refused by whoever
   * serves it, whatever size its client still believes. At most `partitionBytes`; 0 for
   * a partition wholly past the end. Fixed per epoch (a resize that changes it writes a
   * new epoch). Absent (static assignments, records from before it): the whole partition.
   */
  servedBytes: volumeBytes.optional(),
});

/**
 * Hosts (or re-configures) one partition replica. An epoch older than the one the
 * replica holds is refused; the same epoch again is a no-op.
 */
export const HeadnodeConfigure = configureFields.refine(servedWithin, {
  message: "servedBytes must be at most partitionBytes",
  path: ["servedBytes"],
});

/** What a primary knows of one follower. */
export const Follower = z.object({
  node: nodeId,
  matchOpNum: unsignedInteger,
  /** A learner is replicated to but does not count for commit. */
  learner: z.boolean(),
  /** Set once a voting follower has kept a commit waiting longer than commitStallMsMax. */
  stalledMs: unsignedInteger.optional(),
  /** Set when a learner needs notes this primary has released: it must rebuild afresh. */
  needsRebuild: z.boolean().optional(),
  /**
   * Set for a learner that has acknowledged nothing in this epoch: its matchOpNum (0) is
   * not a match, and it must not be counted caught up (it may host no replica at all).
   */
  unheard: z.boolean().optional(),
});

export const ReplicaStatus = z.object({
  ...partitionAddress,
  volumeId: volumeId.optional(),
  role: z.enum(["primary", "secondary", "idle"]),
  epoch: unsignedInteger,
  lastOpNum: unsignedInteger,
  durableOpNum: unsignedInteger,
  commitOpNum: unsignedInteger,
  flushedThroughOpNum: unsignedInteger,
  chunks: unsignedInteger,
  extents: unsignedInteger,
  /** Bytes of the chunks in the table: what this partition holds on sleds, per copy. */
  chunkBytes: unsignedInteger.optional(),
  /** Of those, bytes some extent still refers to; the rest is reclaimable. */
  liveBytes: unsignedInteger.optional(),
  snapshotBytes: SnapshotBytes.optional(),
  /** On a primary: chunks with fewer than `chunkCopies` (limits.ts) copies on sleds in service. */
  chunksShortOfCopies: unsignedInteger.optional(),
  /** A digest of the whole metadata: equal on replicas whose metadata is identical. */
  metadataDigest: z.string(),
  /** On a primary: what each secondary and learner has matched. */
  followers: z.array(Follower).max(4).optional(),
  /** On a primary: whether the tail it inherited at the start of its epoch is committed. */
  tailCommitted: z.boolean().optional(),
  /** The newest checkpoint stored on sleds, if any. */
  checkpoint: CheckpointPointer.optional(),
  /** Set while the replica rebuilds from a checkpoint. */
  rebuiltFromOpNum: unsignedInteger.optional(),
  /**
   * Set while the replica refuses to take checkpoints because one would be too large to
   * store on a sled or read back (too many chunks or extents): why, in words. Its journal
   * is not released meanwhile; writes are refused (NoSpace) once it is half full.
   */
  checkpointRefused: z.string().optional(),
  /** Set once the replica's journal failed (a full disk, say): it serves nothing since. */
  failed: z.string().optional(),
});

/**
 * A configure's answer: the replica's state, and the data directory that holds it. A head
 * node answers only with a replica its disk holds (opened from what it stored, rebuilt on
 * it, or placed on it by the configure's `disk`): it refuses to open a voter from nothing
 * where the configure names no disk (configure-decision.ts, `no-replica`). So `disk` is
 * proof that the replica lives there, and the coordinator records it for a member placed
 * before disk ids (decisions.ts, "Lost disks"). Absent from head nodes that predate it.
 */
export const HeadnodeConfigureResult = ReplicaStatus.extend({
  disk: diskId.optional(),
});

/** A head node tells the coordinator where its newest checkpoint of a replica is. */
export const CheckpointRecord = z.object({
  type: z.literal("checkpoint.record.v1"),
  ...partitionAddress,
  /**
   * The incarnation the replica belongs to: a late record from a deleted incarnation
   * is refused rather than kept under its re-creation's name. Absent from head nodes
   * that predate it, whose records are checked for membership only.
   */
  volumeId: volumeId.optional(),
  node: nodeId,
  checkpoint: CheckpointPointer,
});

export const CheckpointRecordResult = z.object({
  /** The pointer it replaced, whose blob the head node may now delete. */
  replaced: CheckpointPointer.optional(),
});

export const HeadnodeReplicaStatus = z.object({
  type: z.literal("headnode.replica.status.v1"),
  ...partitionAddress,
});

/**
 * Drops every replica of one incarnation of a volume (sent when it is deleted): the
 * replica stops serving and its directory is removed.
 */
export const HeadnodeDrop = z.object({
  type: z.literal("headnode.drop.v1"),
  volume: volumeName,
  volumeId,
});

export const HeadnodeDropResult = z.object({ dropped: unsignedInteger });

/**
 * A head node asks the leading coordinator which of the incarnations it keeps files of
 * but does not host (`partitions/<volumeId>/` left on its disk) are gone: the files of
 * an incarnation deleted while the node was away past the purge record's life, whose
 * `headnode.drop.v1` it never got. Sent at start and rarely after, only when there is
 * something to ask, and only about ids of the shape the coordinator issues
 * (`isIssuedVolumeId`). The answer names only ids the leader positively knows are gone
 * (no volume, partition or purge record names them); the node removes those and keeps
 * the rest. A coordinator that predates it refuses the type, and the node keeps
 * everything.
 */
export const HeadnodeLeftovers = z.object({
  type: z.literal("headnode.leftovers.v1"),
  node: nodeId,
  volumeIds: z.array(volumeId).min(1).max(leftoverIncarnationsPerRequestMax),
});

export const HeadnodeLeftoversResult = z.object({
  /** Of the ids asked, those no record names: deleted, never to be used again. */
  gone: z.array(volumeId).max(leftoverIncarnationsPerRequestMax),
});

/** One partition a head node serves as primary, as it reports it. */
export const PrimaryReport = z.object({
  ...partitionAddress,
  volumeId: volumeId.optional(),
  epoch: unsignedInteger,
  session: unsignedInteger,
  commitOpNum: unsignedInteger,
  /** Whether the tail it inherited at the start of its epoch is committed. */
  tailCommitted: z.boolean(),
  followers: z.array(Follower).max(4),
  /**
   * Set when this node was configured as the primary but the replica has failed (its
   * journal could not write): it serves nothing, and the coordinator must fail the
   * partition over as if the node were dead.
   */
  failed: z.boolean().optional(),
  /**
   * Set once its own journal has kept a write waiting commitStallMsMax or longer without
   * making anything more durable (a disk that hangs without failing): the coordinator
   * fails the partition over to a secondary as for a failed primary. Absent from head
   * nodes that predate it.
   */
  stalledMs: unsignedInteger.optional(),
  /**
   * Set once every chunk write of its flushes has failed for primaryStallMsMax or longer
   * for want of sleds it can reach (none answered NoSpace): its journal is never
   * released, so writes will wait and time out, and reads of flushed data fail. A
   * coordinator with the failover of such primaries on (off by default) fails the
   * partition over to a secondary as for a stalled primary while at least `chunkCopies`
   * sleds are alive to it (the cut is this node's, not the sleds' outage). Absent from
   * head nodes that predate it.
   */
  flushStalledMs: unsignedInteger.optional(),
  /** Bytes of the chunks in the partition's table, and of those still referred to. */
  chunkBytes: unsignedInteger.optional(),
  liveBytes: unsignedInteger.optional(),
  snapshotBytes: SnapshotBytes.optional(),
  /**
   * Chunks with fewer than `chunkCopies` (limits.ts) sound copies on sleds in service (re-replication to do):
   * a copy its sled says a scrub found damaged is not counted.
   */
  chunksShortOfCopies: unsignedInteger.optional(),
  /**
   * Of the sled disks the coordinator asked audited (`sledsToAudit` in the answer), those
   * whose audit has looked for every copy this primary's table lists on that sled and
   * repaired the missing ones, by the disk's id. Absent when none (and from head nodes
   * that predate it, which leave such a sled unverified in status).
   */
  auditedDisks: z.array(diskId).max(reportSledsMax).optional(),
});

/**
 * A replica on a head node that is not its primary (a secondary, joiner or learner) and
 * whose journal failed: it acknowledges nothing, so the coordinator drops it at once
 * rather than when a write stalls on it or a configure refresh happens to reopen it.
 */
export const FailedReplica = z.object({
  ...partitionAddress,
  volumeId: volumeId.optional(),
  /** The epoch of the configuration the replica held when it failed. */
  epoch: unsignedInteger,
  /**
   * Set when a configure could not open the replica at all (its journal or checkpoint
   * refused as damaged, or the open failed), rather than its journal failing while
   * open: it holds no copy a configure would open, so the coordinator never promotes
   * it. Absent from head nodes that predate it, which reported no such replica.
   */
  unopened: z.literal(true).optional(),
});

/**
 * Sent by every head node to the coordinator every headnodeReportIntervalMs: its
 * primaries, their followers' progress and stalls.
 *
 * Node leases (issue 14: an idle cost flat in the number of partitions). A report with
 * `seq` is a change to the state the coordinator holds of this node: `primaries` are
 * the entries that are new or changed since revision `base` of that state, `gone` the
 * partitions no longer reported; without `base` it is a whole state (the first report,
 * or after the coordinator answered `full`). An idle node so sends one small message
 * per interval. The answer is one lease for the node: it renews the read lease of every
 * primary in the state as of `accepted` except those `excluded`, for leaseMs counted
 * from when the report was sent (by the head node's monotonic clock).
 *
 * A report without `seq` (a head node that predates node leases) is a whole state too,
 * and its answer lists `granted` partition by partition.
 */
export const HeadnodeReport = z.object({
  type: z.literal("headnode.report.v1"),
  node: nodeId,
  primaries: z.array(PrimaryReport).max(reportPartitionsMax),
  /** The reporting process's session: grows on every start. */
  session: unsignedInteger.optional(),
  /** The revision of the state this report leaves: grows with every report of a session. */
  seq: positiveInteger.optional(),
  /** The revision `primaries` and `gone` change; absent: this report is the whole state. */
  base: unsignedInteger.optional(),
  /** Partitions in the state at `base` that this node no longer reports as primary. */
  gone: z.array(z.object(partitionAddress)).max(reportPartitionsMax).optional(),
  /**
   * Its failed non-primary replicas, as a change like `primaries`: those new or changed
   * since `base` (all of them in a whole state). A coordinator that predates it ignores
   * it, and the failure shows as a stall once a write waits on the replica.
   */
  failures: z.array(FailedReplica).max(reportPartitionsMax).optional(),
  /** Partitions in the failures held at `base` that are failed no more (reopened, closed). */
  failuresGone: z.array(z.object(partitionAddress)).max(reportPartitionsMax).optional(),
  /**
   * This head node's primaries refuse I/O past a partition's `servedBytes` (configure).
   * Absent from head nodes that predate it, which ignore the field: the coordinator
   * refuses a shrink while such a node serves the volume (a rolling upgrade), since the
   * new end would not be enforced there.
   */
  enforcesServedBytes: z.literal(true).optional(),
  /**
   * Chunk writes and blob stores of this process (its `session`) that reached their
   * `chunkCopies` sleds, counted since it started. The leader takes growth between two
   * reports as evidence that the node reaches the sleds: a primary whose flushes all
   * fail is failed over only to a secondary on a node with such evidence from within the
   * stall (`probeSleds` asks for it). Absent from head nodes that predate it, which give
   * no evidence, so their flush-stalled primaries wait as before.
   */
  sledStores: unsignedInteger.optional(),
});

/** A primary whose lease the coordinator does not renew, at the epoch it was reported in. */
const LeasedPartition = z.object({ ...partitionAddress, epoch: unsignedInteger });

export const HeadnodeReportResult = z.object({
  leaseMs: positiveInteger,
  /**
   * To a report without `seq`: the primaries whose lease is renewed, exactly these
   * partitions at these epochs. Empty for a report with `seq`.
   */
  granted: z.array(LeasedPartition).max(reportPartitionsMax),
  /**
   * The revision of this node's state the coordinator now holds: the node lease renews
   * every primary in it except `excluded`. Absent when nothing was renewed.
   */
  accepted: positiveInteger.optional(),
  /** How many partitions that state holds: the head node checks it holds as many. */
  held: unsignedInteger.optional(),
  /**
   * How many failed replicas that state holds (absent from a coordinator that predates
   * `failures`): the head node checks it holds as many.
   */
  heldFailures: unsignedInteger.optional(),
  /** Primaries of the accepted state whose lease is not renewed (and why is the record's). */
  excluded: z.array(LeasedPartition).max(reportPartitionsMax).optional(),
  /**
   * The report's `base` is not the revision the coordinator holds (a new leader, a lost
   * answer, a restart): nothing was renewed, and the next report must be a whole state.
   */
  full: z.boolean().optional(),
  /**
   * Sleds the coordinator has declared out of service (silent longer than its
   * sledOutAfterMs): a copy on one of them is lost, and primaries make a new one.
   */
  sledsOut: z.array(nodeId).max(reportSledsMax).optional(),
  /**
   * The answering leader's term (absent from a coordinator that predates it). Terms only
   * grow, so an answer in a term below one that has answered the node lately is an
   * ex-leader's (one frozen and woken, say): the head node renews nothing on it.
   */
  term: unsignedInteger.optional(),
  /**
   * Sleds heard back on another data directory (wiped or replaced) under their old id,
   * with the new directory's id, not yet verified: every copy the primaries' tables list
   * there may be gone. Each primary audits such a sled now (looks for every copy it lists
   * there, repairs the missing ones) and then says so in `auditedDisks`. Absent while the
   * leader does not know yet (the head node keeps what it last heard), and from
   * coordinators that predate it.
   */
  sledsToAudit: z
    .array(z.object({ sled: nodeId, disk: diskId }))
    .max(reportSledsMax)
    .optional(),
  /**
   * The leader wants fresh evidence that this node reaches the sleds (a primary of a
   * partition it follows cannot flush, or one whose followers are all cut and that may
   * need a stand-in here): the node stores a chunk-sized probe blob on `chunkCopies`
   * sleds, deletes it, and its next report's `sledStores` shows whether it got there.
   * Absent from coordinators that predate it.
   */
  probeSleds: z.literal(true).optional(),
  /**
   * With `probeSleds`: the sleds alive by the leader's membership, which a node hosting
   * no replica (so configured with no sleds) probes on. Absent from coordinators that
   * predate it, and without `probeSleds`.
   */
  probeOn: z.array(nodeId).max(reportSledsMax).optional(),
});
