// Messages the coordinator answers on its inbox.

import { z } from "zod";
import {
  describePartitionsMax,
  partitionsPerVolumeMax,
  replicaCountMax,
  replicaCountMin,
  statusEntriesMax,
} from "../limits.ts";
import { SlowSledsInfo } from "./common.ts";
import {
  diskId,
  nodeId,
  serviceKind,
  snapshotId,
  snapshotName,
  text,
  unsignedInteger,
  volumeId,
  volumeName,
} from "./fields.ts";

/** Asks for the whole cluster's state: services and volumes. */
export const ClusterStatus = z.object({
  type: z.literal("cluster.status.v1"),
  /**
   * Also ask every live service to describe itself, every live sled for its capacity,
   * and every live sled for each volume's chunks (slower, more detail).
   */
  probe: z.boolean().optional(),
});

/** A sled's capacity and usage, summed over its devices (from its `sled.stat.v1`). */
export const SledCapacity = z.object({
  capacityBytes: unsignedInteger,
  usedBytes: unsignedInteger,
  freeBytes: unsignedInteger,
  chunks: unsignedInteger,
  blobs: unsignedInteger,
  devices: unsignedInteger,
  /** Devices that took an I/O error on the write path and take no more writes. */
  failedDevices: z.array(z.object({ device: unsignedInteger, path: text })).max(1024),
  /** Objects a scrub found damaged there, not yet repaired (the sled's `damagedObjects`). */
  damagedObjects: unsignedInteger.optional(),
});

export const ServiceStatus = z.object({
  kind: serviceKind,
  id: nodeId,
  pid: unsignedInteger,
  healthy: z.boolean(),
  startedAtMs: unsignedInteger,
  lastHeartbeatAtMs: unsignedInteger,
  lastHeartbeatAgeMs: unsignedInteger,
  version: text,
  /** With `probe`: the node's own description, or why it could not be had. */
  info: z.record(z.string(), z.unknown()).optional(),
  probeError: text.optional(),
  /** With `probe`, for a live sled: its capacity, or why it could not be had. */
  capacity: SledCapacity.optional(),
  capacityError: text.optional(),
  /**
   * With `probe`, for a live head node: the sleds it asks last, seen slow lately, and the
   * reads it hedged (its node info's `details.slowSleds`). Absent when its info could not
   * be had, or from head nodes that predate it.
   */
  slowSleds: SlowSledsInfo.optional(),
});

/** Capacity summed over the live sleds that answered; `sledsUnanswered` did not. */
export const ClusterCapacity = z.object({
  sleds: unsignedInteger,
  sledsUnanswered: unsignedInteger,
  capacityBytes: unsignedInteger,
  usedBytes: unsignedInteger,
  freeBytes: unsignedInteger,
  chunks: unsignedInteger,
  blobs: unsignedInteger,
  failedDevices: unsignedInteger,
});

/**
 * A sled as the leader's sled records hold it (re-replication): in or out of service,
 * since when (wall clock), and how long the leader has not heard it.
 */
export const SledState = z.object({
  id: nodeId,
  state: z.enum(["in", "out"]),
  since: unsignedInteger,
  firstSeenMs: unsignedInteger,
  lastSeenMs: unsignedInteger,
  silentMs: unsignedInteger,
  /** The id of the data directory it was last heard from (absent: never said). */
  disk: diskId.optional(),
  /**
   * Heard back on another data directory (wiped or replaced) and not yet verified: the
   * copies the head nodes' tables list there may be gone until every primary has
   * audited it. It stays in service meanwhile. `sinceMs`: when the new directory was
   * first heard (wall clock); `partitions`: partitions whose primary has not yet said it
   * audited it; `volumes`: the volumes of those partitions.
   */
  refilling: z
    .object({
      sinceMs: unsignedInteger,
      partitions: unsignedInteger,
      volumes: z.array(volumeName).max(statusEntriesMax),
    })
    .optional(),
});

export const ClusterStatusResult = z.object({
  coordinator: nodeId,
  generatedAtMs: unsignedInteger,
  services: z.array(ServiceStatus).max(statusEntriesMax),
  volumes: z.array(z.record(z.string(), z.unknown())).max(statusEntriesMax),
  /** With `probe`: totals over the sleds' capacities. */
  capacity: ClusterCapacity.optional(),
  /** Every sled the leader has records of, in or out of service (absent until loaded). */
  sleds: z.array(SledState).max(statusEntriesMax).optional(),
  /**
   * The control store's identity and the sleds that hold another store's mark (it was
   * lost or replaced since their data was made: coordinator store-marks.ts); `refused`
   * says why nothing is deleted for being absent from the catalogue, while it is not.
   * Absent from older coordinators.
   */
  controlStore: z
    .object({
      storeId: text,
      foreignMarks: z
        .array(z.object({ sled: nodeId, stores: z.array(text).max(statusEntriesMax) }))
        .max(statusEntriesMax),
      /** Partitions whose replicas are in later epochs than the records: an older store. */
      behind: z.array(text).max(statusEntriesMax).optional(),
      /**
       * The catalogue's sequence and the highest one the sleds read witnessed: a witness
       * above the catalogue's means the store is older than the data (restored from an
       * older copy); absent before the sleds' marks were read.
       */
      sequence: z.object({ catalogue: unsignedInteger, witnessed: unsignedInteger }).optional(),
      refused: text.optional(),
    })
    .optional(),
});

/** A partition's replica set, as the coordinator assigned it. */
export const PartitionState = z.object({
  partition: unsignedInteger,
  partitionStart: unsignedInteger,
  partitionBytes: unsignedInteger,
  epoch: unsignedInteger,
  primary: nodeId,
  secondaries: z.array(nodeId).max(2),
  /** Members that hold every acknowledged write (all of them, unless rebuilding). */
  inSync: z.array(nodeId).max(3),
  /** Replicas being rebuilt from a checkpoint; they join as secondaries once caught up. */
  learners: z.array(nodeId).max(2),
  /**
   * Caught-up learners that already count for commit but may not yet be promoted to
   * primary: the next epoch makes them secondaries (see docs/architecture.md).
   */
  joining: z.array(nodeId).max(2).optional(),
  /** How far each rebuild is, as the primary last reported: matched op of its commit point. */
  rebuilds: z
    .array(z.object({ node: nodeId, matchOpNum: unsignedInteger, targetOpNum: unsignedInteger }))
    .max(2),
  /** Each replica's newest checkpoint on sleds: op number and age. */
  checkpoints: z
    .array(z.object({ node: nodeId, opNum: unsignedInteger, ageMs: unsignedInteger }))
    .max(4),
  /**
   * Voting members whose replica failed in the record's epoch (its journal failed, or its
   * core threw, and it was not yet dropped or reopened): alive as services, but serving
   * nothing here. Absent when none has, or no report says so yet.
   */
  failed: z.array(nodeId).max(3).optional(),
  /**
   * Present while the leader judges the partition unavailable: no member that holds every
   * acknowledged write can be its primary, so it serves nothing (its log says why).
   */
  unavailable: z.literal(true).optional(),
  /**
   * The partition's bytes inside the volume, which its primary serves (from its start):
   * present only when fewer than `partitionBytes` (the last partition, one past the end
   * after a shrink, or a resize not finished). Past them the primary refuses I/O.
   */
  servedBytes: unsignedInteger.optional(),
});

/**
 * What an incarnation's chunks occupy on sleds: the chunk bytes summed over every copy
 * on every sled. The totals are omitted, with `reason`, when some sled could not be
 * counted (dead, silent, or more chunks than a bounded listing reads).
 */
export const VolumeStored = z.object({
  bytes: unsignedInteger.optional(),
  chunks: unsignedInteger.optional(),
  reason: text.optional(),
  sleds: z
    .array(
      z.object({
        sled: nodeId,
        bytes: unsignedInteger.optional(),
        chunks: unsignedInteger.optional(),
        error: text.optional(),
      }),
    )
    .max(statusEntriesMax),
});

/**
 * A clone's parent: the snapshot it was cloned from. Reads of the clone fall through to
 * that snapshot wherever the clone never mapped a byte, below `overlap` (the snapshot's
 * size when cloned; shrinking the clone lowers it, growing never raises it).
 */
export const VolumeParent = z.object({
  volume: volumeName,
  /** The parent's incarnation: the snapshot is of it. */
  volumeId,
  /** The snapshot's name and id. */
  snapshot: snapshotName,
  snapshotId,
  overlap: unsignedInteger,
});

export const VolumeState = z.object({
  name: volumeName,
  /** This incarnation of the name: a deleted and re-created volume gets another. */
  id: volumeId.optional(),
  sizeBytes: unsignedInteger,
  replicaCount: z.number().int().min(replicaCountMin).max(replicaCountMax),
  partitionBytes: unsignedInteger,
  createdAtMs: unsignedInteger,
  /**
   * At most `describePartitionsMax` partitions in index order, from the `partitionsFrom`
   * the describe asked for (0 for create, resize and clone): one page of a larger volume.
   */
  partitions: z.array(PartitionState).max(describePartitionsMax),
  /** How many partitions the volume has in all (absent from coordinators before pages). */
  partitionCount: z.number().int().nonnegative().max(partitionsPerVolumeMax).optional(),
  /** Present when partitions follow this page: the `partitionsFrom` that asks for them. */
  partitionsNext: z.number().int().positive().max(partitionsPerVolumeMax).optional(),
  /** A clone's parent snapshot; absent for a volume that is no clone. */
  parent: VolumeParent.optional(),
  /** On describe and in status (not in list): what the incarnation stores on sleds. */
  stored: VolumeStored.optional(),
  /**
   * A shrink to this size began and has not finished (its partitions' ends may be
   * lowered to it already, and its tail partly trimmed): the leader finishes it, and so
   * does any resize of the volume before its own change. Absent otherwise.
   */
  shrinkingTo: unsignedInteger.optional(),
});

export const VolumeCreate = z.object({
  type: z.literal("volume.create.v1"),
  name: volumeName,
  sizeBytes: unsignedInteger,
  /** Defaults to 2 (a primary and one secondary). */
  replicaCount: z.number().int().optional(),
  /** Defaults to the coordinator's partition size. */
  partitionBytes: unsignedInteger.optional(),
});

export const VolumeDescribe = z.object({
  type: z.literal("volume.describe.v1"),
  name: volumeName,
  /**
   * Also count what the volume stores on sleds (`stored`): a listing of every sled's
   * chunks, so off unless asked. Clients that only route I/O never ask.
   */
  stored: z.boolean().optional(),
  /** The first partition to list (0 by default): a later page of a large volume. */
  partitionsFrom: z.number().int().nonnegative().max(partitionsPerVolumeMax).optional(),
});

export const VolumeList = z.object({
  type: z.literal("volume.list.v1"),
});

/**
 * A volume as `volume.list.v1` names it: no partition detail, so that one listing of the
 * most volumes a reply names fits a message whatever their sizes (describe has the
 * partitions, one volume at a time).
 */
export const VolumeSummary = VolumeState.omit({
  partitions: true,
  partitionsNext: true,
  stored: true,
}).extend({
  partitionCount: z.number().int().nonnegative().max(partitionsPerVolumeMax),
});

export const VolumeListResult = z.object({
  volumes: z.array(VolumeSummary).max(statusEntriesMax),
});

/**
 * Changes a volume's size. A grow is online: new partitions are placed as at create.
 * A shrink is refused unless `allowShrink`; with it, the tail past the new size is
 * trimmed first. A shrink is refused too while a gateway has the volume attached (an
 * NBD connection keeps its size, and its writes past the new end would be lost), or
 * does not say, unless `force`, and while a head node serving the volume does not say
 * it enforces volume ends (headnode.report.v1 `enforcesServedBytes`). A shrink begun and
 * not finished (the state's `shrinkingTo`) is finished before any resize's own change.
 * Answers the volume's state at its new size.
 */
export const VolumeResize = z.object({
  type: z.literal("volume.resize.v1"),
  name: volumeName,
  sizeBytes: unsignedInteger,
  allowShrink: z.boolean().optional(),
  /** Shrink even if a gateway has the volume attached (or does not answer). */
  force: z.boolean().optional(),
});

/**
 * Makes volume `name`, a writable clone of snapshot `snapshot` of volume `volume`: it
 * reads as the snapshot until written, costs no data copy, and is independent of its
 * parent from then on. The snapshot (and its volume) cannot be deleted while the clone
 * exists. Answers the clone's state.
 */
export const VolumeClone = z.object({
  type: z.literal("volume.clone.v1"),
  volume: volumeName,
  snapshot: snapshotName,
  name: volumeName,
  /** Defaults to the parent's. */
  replicaCount: z.number().int().optional(),
});

/**
 * Deletes volume `name`. With `id` (the incarnation, `VolumeState.id`), only that
 * incarnation: another one of the name (deleted and created again since the client read
 * it) is refused NotFound and kept, so a retried delete whose first attempt deleted the
 * volume never deletes its successor (README, "Retried deletes"). Without it, whatever
 * incarnation holds the name. Refused while a gateway has the volume attached (or does
 * not say), unless `force`.
 */
export const VolumeDelete = z.object({
  type: z.literal("volume.delete.v1"),
  name: volumeName,
  id: volumeId.optional(),
  /** Delete even if a gateway has the volume attached (or does not answer). */
  force: z.boolean().optional(),
});

export const VolumeDeleteResult = z.object({
  name: volumeName,
  deleted: z.boolean(),
});
