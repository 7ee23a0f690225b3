// Messages a head node answers on its node inbox: the replica set of a partition it
// hosts (from the coordinator, or a test's static assignment), and a replica's state.

import { z } from "zod";
import { nodeId, unsignedInteger, volumeBytes, volumeName } from "./fields.ts";

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
});

export const HeadnodeReplicaStatus = z.object({
  type: z.literal("headnode.replica.status.v1"),
  ...partitionAddress,
});
