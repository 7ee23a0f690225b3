// Snapshots: crash-consistent points in time of a whole volume, taken by the leading
// coordinator across every partition (its requests, `snapshot.*.v1`, on its inbox), and
// the per-partition requests it sends each partition's primary to take one
// (`partition.snapshot.*.v1`, on the partition's control subject, served by the primary).
//
// How a snapshot is taken (the coordinator's snapshots.ts says why it is consistent):
// hold acknowledgements on every partition's primary, take the snapshot on every one
// (a control note through each op stream), then release. A primary answers a hold with
// its epoch; a release says whether the hold was in force throughout (a failover or the
// hold's own deadline ends it early, and the attempt is then given up).

import { z } from "zod";
import {
  partitionsPerVolumeMax,
  snapshotClonesListedMax,
  snapshotPartitionsListedMax,
  snapshotsPerVolumeMax,
} from "../limits.ts";
import { snapshotId, snapshotName, unsignedInteger, volumeId, volumeName } from "./fields.ts";

const partitionAddress = {
  volume: volumeName,
  partition: unsignedInteger,
  /** The incarnation the coordinator means; another one answers NotFound. */
  volumeId,
};

/**
 * Mutation replies of the partition wait (writes are still assigned and committed) until
 * released or `holdMs` has passed. A new hold replaces the one in force.
 */
export const PartitionSnapshotHold = z.object({
  type: z.literal("partition.snapshot.hold.v1"),
  ...partitionAddress,
  hold: snapshotId,
  holdMs: z.number().int().positive().max(60_000),
});

export const PartitionSnapshotHoldResult = z.object({
  epoch: unsignedInteger,
  /** The last op the primary had assigned when the hold began. */
  lastOpNum: unsignedInteger,
});

/** Takes snapshot `snapshot` of the partition; idempotent by id. */
export const PartitionSnapshotTake = z.object({
  type: z.literal("partition.snapshot.take.v1"),
  ...partitionAddress,
  snapshot: snapshotId,
});

/** Drops snapshot `snapshot` of the partition; idempotent (no such snapshot is fine). */
export const PartitionSnapshotDrop = z.object({
  type: z.literal("partition.snapshot.drop.v1"),
  ...partitionAddress,
  snapshot: snapshotId,
});

/**
 * Replaces the partition's current tree with a copy of snapshot `snapshot`'s (the
 * snapshot stays); NotFound if the partition has no such snapshot. Asking twice leaves
 * the same state when nothing was written between.
 */
export const PartitionSnapshotRollback = z.object({
  type: z.literal("partition.snapshot.rollback.v1"),
  ...partitionAddress,
  snapshot: snapshotId,
});

/**
 * A take answers with the op the snapshot was taken at; a drop or a rollback with the op
 * it committed at.
 */
export const PartitionSnapshotResult = z.object({
  epoch: unsignedInteger,
  opNum: unsignedInteger,
});

export const PartitionSnapshotRelease = z.object({
  type: z.literal("partition.snapshot.release.v1"),
  ...partitionAddress,
  hold: snapshotId,
});

export const PartitionSnapshotReleaseResult = z.object({
  /** Whether that hold was in force until this release (false: it ended early). */
  held: z.boolean(),
});

/**
 * The op each of a snapshot's first partitions took it (or rolled back) at, by index: at
 * most `snapshotPartitionsListedMax`, all of them in a volume of no more, so that an
 * answer fits one message whatever the volume's size. Coordinators before the limit
 * answered every partition; older readers take the first ones for all of them.
 */
const partitionOps = z
  .array(z.object({ index: unsignedInteger, opNum: unsignedInteger }))
  .max(snapshotPartitionsListedMax);

/**
 * How many partitions the snapshot (or rollback) covers in all, of which `partitions`
 * names the first; absent from coordinators before the limit (`partitions` had them all).
 */
const partitionCount = z.number().int().nonnegative().max(partitionsPerVolumeMax).optional();

/**
 * A snapshot as the coordinator answers it (create, list): what the catalogue records,
 * its per-partition ops cut to the first `snapshotPartitionsListedMax`. Nothing needs
 * the rest: the coordinator reads them from its own records.
 */
export const SnapshotState = z.object({
  volume: volumeName,
  name: snapshotName,
  id: snapshotId,
  /** The incarnation of the volume it is of. */
  volumeId,
  createdAtMs: unsignedInteger,
  partitions: partitionOps,
  partitionCount,
  /** The volume's size when it was taken (absent in records made before clones). */
  sizeBytes: unsignedInteger.optional(),
  /**
   * A snapshot of a clone: the clone's overlap when it was taken, which its reads fall
   * through below (the clone's may be lower since, after a shrink).
   */
  overlap: unsignedInteger.optional(),
  /**
   * In a listing: the volumes cloned from it, by name, the first
   * `snapshotClonesListedMax` in name order (absent when none).
   */
  clones: z.array(volumeName).max(snapshotClonesListedMax).optional(),
  /** In a listing: how many clones it has in all (absent when none, and from older coordinators). */
  cloneCount: z.number().int().positive().optional(),
  /**
   * In a listing: the chunk bytes only this snapshot refers to, summed over the
   * partitions whose primaries have reported it to the leader (per copy): what deleting
   * it would let reclamation free. Absent until some partition has reported.
   */
  uniqueBytes: unsignedInteger.optional(),
  /** How many partitions the `uniqueBytes` sum covers, of the snapshot's partitions. */
  uniqueBytesPartitions: unsignedInteger.optional(),
});

export const SnapshotCreate = z.object({
  type: z.literal("snapshot.create.v1"),
  volume: volumeName,
  name: snapshotName,
});

export const SnapshotList = z.object({
  type: z.literal("snapshot.list.v1"),
  volume: volumeName,
});

export const SnapshotListResult = z.object({
  snapshots: z.array(SnapshotState).max(snapshotsPerVolumeMax),
});

/**
 * Deletes snapshot `name` of volume `volume`. With `id` (`SnapshotState.id`), only that
 * snapshot: another of the name (taken since the client read it) is refused NotFound and
 * kept, as for `volume.delete.v1`'s `id`.
 */
export const SnapshotDelete = z.object({
  type: z.literal("snapshot.delete.v1"),
  volume: volumeName,
  name: snapshotName,
  id: snapshotId.optional(),
});

export const SnapshotDeleteResult = z.object({
  deleted: z.literal(true),
});

/**
 * Rolls volume `volume` back to its snapshot `snapshot` (a name): every partition's
 * current tree becomes a copy of the snapshot's. Refused (InvalidArgument) while a
 * gateway reports an NBD client attached to the volume, unless `force` (for
 * client-library users who know no writer is using it). All partitions roll back or
 * the request fails naming those that did not; retrying is safe.
 */
export const VolumeRollback = z.object({
  type: z.literal("volume.rollback.v1"),
  volume: volumeName,
  snapshot: snapshotName,
  force: z.boolean().optional(),
});

export const VolumeRollbackResult = z.object({
  volume: volumeName,
  snapshot: snapshotName,
  /** The op each of the first partitions rolled back at (every one did). */
  partitions: partitionOps,
  partitionCount,
});
