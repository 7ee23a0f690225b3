// Messages the coordinator answers on its inbox.

import { z } from "zod";
import {
  partitionsPerVolumeMax,
  replicaCountMax,
  replicaCountMin,
  statusEntriesMax,
} from "../limits.ts";
import { nodeId, serviceKind, text, unsignedInteger, volumeId, volumeName } from "./fields.ts";

/** Asks for the whole cluster's state: services and volumes. */
export const ClusterStatus = z.object({
  type: z.literal("cluster.status.v1"),
  /** Also ask every live service to describe itself (slower, more detail). */
  probe: z.boolean().optional(),
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
});

export const ClusterStatusResult = z.object({
  coordinator: nodeId,
  generatedAtMs: unsignedInteger,
  services: z.array(ServiceStatus).max(statusEntriesMax),
  volumes: z.array(z.record(z.string(), z.unknown())).max(statusEntriesMax),
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
});

export const VolumeState = z.object({
  name: volumeName,
  /** This incarnation of the name: a deleted and re-created volume gets another. */
  id: volumeId.optional(),
  sizeBytes: unsignedInteger,
  replicaCount: z.number().int().min(replicaCountMin).max(replicaCountMax),
  partitionBytes: unsignedInteger,
  createdAtMs: unsignedInteger,
  partitions: z.array(PartitionState).max(partitionsPerVolumeMax),
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
});

export const VolumeList = z.object({
  type: z.literal("volume.list.v1"),
});

export const VolumeListResult = z.object({
  volumes: z.array(VolumeState).max(statusEntriesMax),
});

export const VolumeDelete = z.object({
  type: z.literal("volume.delete.v1"),
  name: volumeName,
});

export const VolumeDeleteResult = z.object({
  name: volumeName,
  deleted: z.boolean(),
});
