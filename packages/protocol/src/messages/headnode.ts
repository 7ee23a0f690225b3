// Messages a head node answers on its node inbox: the replica set of a partition it
// hosts (from the coordinator, or a test's static assignment), and a replica's state.

import { z } from "zod";
import { nodeId, unsignedInteger, volumeBytes, volumeName } from "./fields.ts";
import { blobKey } from "./sled.ts";

/** Where a replica's metadata checkpoint is stored: a blob on two or more sleds. */
export const CheckpointPointer = z.object({
  opNum: unsignedInteger,
  blobKey,
  sleds: z.array(nodeId).min(1).max(8),
  bytes: unsignedInteger,
  createdAtMs: unsignedInteger,
});

const partitionAddress = { volume: volumeName, partition: unsignedInteger };

/**
 * Hosts (or re-configures) one partition replica. An epoch older than the one the
 * replica holds is refused; the same epoch again is a no-op.
 */
export const HeadnodeConfigure = z.object({
  type: z.literal("headnode.configure.v1"),
  ...partitionAddress,
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
   * For the primary: it may serve reads until this time (the coordinator's clock, less
   * the allowed skew); the coordinator renews it and waits it out before it promotes
   * another primary. Absent in static assignments, which run unleased.
   */
  leaseExpiresAtMs: unsignedInteger.optional(),
  /** For a learner with no state of its own: the checkpoint to rebuild from. */
  checkpoint: CheckpointPointer.optional(),
  /** The sleds flushes may write chunks to. */
  sleds: z.array(nodeId).min(1).max(64),
});

export const ReplicaStatus = z.object({
  ...partitionAddress,
  role: z.enum(["primary", "secondary", "idle"]),
  epoch: unsignedInteger,
  lastOpNum: unsignedInteger,
  durableOpNum: unsignedInteger,
  commitOpNum: unsignedInteger,
  flushedThroughOpNum: unsignedInteger,
  chunks: unsignedInteger,
  extents: unsignedInteger,
  /** A digest of the whole metadata: equal on replicas whose metadata is identical. */
  metadataDigest: z.string(),
  /** On a primary: what each secondary and learner has matched. */
  followers: z
    .array(z.object({ node: nodeId, matchOpNum: unsignedInteger, learner: z.boolean() }))
    .max(4)
    .optional(),
  /** The newest checkpoint stored on sleds, if any. */
  checkpoint: CheckpointPointer.optional(),
  /** Set while the replica rebuilds from a checkpoint. */
  rebuiltFromOpNum: unsignedInteger.optional(),
});

/** A head node tells the coordinator where its newest checkpoint of a replica is. */
export const CheckpointRecord = z.object({
  type: z.literal("checkpoint.record.v1"),
  ...partitionAddress,
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
