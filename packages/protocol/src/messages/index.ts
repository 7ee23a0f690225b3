// The message catalogue: every message type of protocol v1, as one discriminated union
// on `type`, plus the result schema of each request type. A type name carries its
// version (`….v1`); a changed message gets a new name and the old one stays until no
// service sends it.

import { z } from "zod";
import { Heartbeat, LinkOffer, LinkOfferResult, NodeInfo, NodeInfoResult } from "./common.ts";
import {
  ClusterStatus,
  ClusterStatusResult,
  VolumeClone,
  VolumeCreate,
  VolumeDelete,
  VolumeDeleteResult,
  VolumeDescribe,
  VolumeList,
  VolumeListResult,
  VolumeResize,
  VolumeState,
} from "./coordinator.ts";
import { GatewayVolumeShrunk, GatewayVolumeShrunkResult } from "./gateway.ts";
import {
  CheckpointRecord,
  CheckpointRecordResult,
  HeadnodeConfigure,
  HeadnodeConfigureResult,
  HeadnodeDrop,
  HeadnodeDropResult,
  HeadnodeLeftovers,
  HeadnodeLeftoversResult,
  HeadnodeReplicaStatus,
  HeadnodeReport,
  HeadnodeReportResult,
  ReplicaStatus,
} from "./headnode.ts";
import { ReplicaAck, ReplicaNotes } from "./replica.ts";
import {
  SledBlobAbort,
  SledBlobAbortResult,
  SledBlobBegin,
  SledBlobBeginResult,
  SledBlobCommit,
  SledBlobDelete,
  SledBlobGet,
  SledBlobGetResult,
  SledBlobInfo,
  SledBlobList,
  SledBlobListResult,
  SledBlobPart,
  SledBlobPartResult,
  SledChunkDelete,
  SledChunkList,
  SledChunkListResult,
  SledChunkRead,
  SledChunkReadMany,
  SledChunkReadManyResult,
  SledChunkReadResult,
  SledChunkStat,
  SledChunkStatResult,
  SledChunkWrite,
  SledChunkWriteResult,
  SledDeleteResult,
  SledScrub,
  SledScrubResult,
  SledStat,
  SledStatResult,
} from "./sled.ts";
import {
  PartitionSnapshotDrop,
  PartitionSnapshotHold,
  PartitionSnapshotHoldResult,
  PartitionSnapshotRelease,
  PartitionSnapshotReleaseResult,
  PartitionSnapshotResult,
  PartitionSnapshotRollback,
  PartitionSnapshotTake,
  SnapshotCreate,
  SnapshotDelete,
  SnapshotDeleteResult,
  SnapshotList,
  SnapshotListResult,
  SnapshotState,
  VolumeRollback,
  VolumeRollbackResult,
} from "./snapshot.ts";
import {
  VolumeFlush,
  VolumeFlushResult,
  VolumeMutationResult,
  VolumeRead,
  VolumeReadResult,
  VolumeTrim,
  VolumeWrite,
  VolumeWriteZeroes,
} from "./volume.ts";

export * from "./common.ts";
export * from "./coordinator.ts";
export * as fields from "./fields.ts";
export * from "./gateway.ts";
export * from "./headnode.ts";
export * from "./replica.ts";
export * from "./sled.ts";
export * from "./snapshot.ts";
export * from "./volume.ts";

export const Message = z.discriminatedUnion("type", [
  Heartbeat,
  NodeInfo,
  LinkOffer,
  ClusterStatus,
  VolumeCreate,
  VolumeDescribe,
  VolumeList,
  VolumeDelete,
  VolumeResize,
  VolumeClone,
  VolumeWrite,
  VolumeRead,
  VolumeTrim,
  VolumeWriteZeroes,
  VolumeFlush,
  SnapshotCreate,
  SnapshotList,
  SnapshotDelete,
  PartitionSnapshotHold,
  PartitionSnapshotTake,
  PartitionSnapshotRelease,
  PartitionSnapshotDrop,
  PartitionSnapshotRollback,
  VolumeRollback,
  GatewayVolumeShrunk,
  ReplicaNotes,
  ReplicaAck,
  HeadnodeConfigure,
  HeadnodeReplicaStatus,
  HeadnodeDrop,
  HeadnodeReport,
  HeadnodeLeftovers,
  CheckpointRecord,
  SledChunkWrite,
  SledChunkRead,
  SledChunkReadMany,
  SledChunkDelete,
  SledChunkStat,
  SledChunkList,
  SledStat,
  SledBlobBegin,
  SledBlobPart,
  SledBlobCommit,
  SledBlobAbort,
  SledBlobGet,
  SledBlobDelete,
  SledBlobList,
  SledScrub,
]);

export type Message = z.infer<typeof Message>;
export type MessageType = Message["type"];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

/** The schema of each message type, for validating one type without the union. */
export const messageSchemas: { [T in MessageType]: z.ZodType<MessageOf<T>> } = {
  "heartbeat.v1": Heartbeat,
  "node.info.v1": NodeInfo,
  "link.offer.v1": LinkOffer,
  "cluster.status.v1": ClusterStatus,
  "volume.create.v1": VolumeCreate,
  "volume.describe.v1": VolumeDescribe,
  "volume.list.v1": VolumeList,
  "volume.delete.v1": VolumeDelete,
  "volume.resize.v1": VolumeResize,
  "volume.clone.v1": VolumeClone,
  "volume.write.v1": VolumeWrite,
  "volume.read.v1": VolumeRead,
  "volume.trim.v1": VolumeTrim,
  "volume.write-zeroes.v1": VolumeWriteZeroes,
  "volume.flush.v1": VolumeFlush,
  "snapshot.create.v1": SnapshotCreate,
  "snapshot.list.v1": SnapshotList,
  "snapshot.delete.v1": SnapshotDelete,
  "partition.snapshot.hold.v1": PartitionSnapshotHold,
  "partition.snapshot.take.v1": PartitionSnapshotTake,
  "partition.snapshot.release.v1": PartitionSnapshotRelease,
  "partition.snapshot.drop.v1": PartitionSnapshotDrop,
  "partition.snapshot.rollback.v1": PartitionSnapshotRollback,
  "volume.rollback.v1": VolumeRollback,
  "gateway.volume.shrunk.v1": GatewayVolumeShrunk,
  "replica.notes.v1": ReplicaNotes,
  "replica.ack.v1": ReplicaAck,
  "headnode.configure.v1": HeadnodeConfigure,
  "headnode.replica.status.v1": HeadnodeReplicaStatus,
  "headnode.drop.v1": HeadnodeDrop,
  "headnode.report.v1": HeadnodeReport,
  "headnode.leftovers.v1": HeadnodeLeftovers,
  "checkpoint.record.v1": CheckpointRecord,
  "sled.chunk.write.v1": SledChunkWrite,
  "sled.chunk.read.v1": SledChunkRead,
  "sled.chunk.read-many.v1": SledChunkReadMany,
  "sled.chunk.delete.v1": SledChunkDelete,
  "sled.chunk.stat.v1": SledChunkStat,
  "sled.chunk.list.v1": SledChunkList,
  "sled.stat.v1": SledStat,
  "sled.blob.begin.v1": SledBlobBegin,
  "sled.blob.part.v1": SledBlobPart,
  "sled.blob.commit.v1": SledBlobCommit,
  "sled.blob.abort.v1": SledBlobAbort,
  "sled.blob.get.v1": SledBlobGet,
  "sled.blob.delete.v1": SledBlobDelete,
  "sled.blob.list.v1": SledBlobList,
  "sled.scrub.v1": SledScrub,
};

export const messageTypes = Object.keys(messageSchemas) as MessageType[];

/** What each request type answers with. Messages absent here are published, not requested. */
export const resultSchemas = {
  "node.info.v1": NodeInfoResult,
  "link.offer.v1": LinkOfferResult,
  "cluster.status.v1": ClusterStatusResult,
  "volume.create.v1": VolumeState,
  "volume.describe.v1": VolumeState,
  "volume.list.v1": VolumeListResult,
  "volume.delete.v1": VolumeDeleteResult,
  "volume.resize.v1": VolumeState,
  "volume.clone.v1": VolumeState,
  "volume.write.v1": VolumeMutationResult,
  "volume.read.v1": VolumeReadResult,
  "volume.trim.v1": VolumeMutationResult,
  "volume.write-zeroes.v1": VolumeMutationResult,
  "volume.flush.v1": VolumeFlushResult,
  "snapshot.create.v1": SnapshotState,
  "snapshot.list.v1": SnapshotListResult,
  "snapshot.delete.v1": SnapshotDeleteResult,
  "partition.snapshot.hold.v1": PartitionSnapshotHoldResult,
  "partition.snapshot.take.v1": PartitionSnapshotResult,
  "partition.snapshot.release.v1": PartitionSnapshotReleaseResult,
  "partition.snapshot.drop.v1": PartitionSnapshotResult,
  "partition.snapshot.rollback.v1": PartitionSnapshotResult,
  "volume.rollback.v1": VolumeRollbackResult,
  "gateway.volume.shrunk.v1": GatewayVolumeShrunkResult,
  "headnode.configure.v1": HeadnodeConfigureResult,
  "headnode.replica.status.v1": ReplicaStatus,
  "headnode.drop.v1": HeadnodeDropResult,
  "headnode.report.v1": HeadnodeReportResult,
  "headnode.leftovers.v1": HeadnodeLeftoversResult,
  "checkpoint.record.v1": CheckpointRecordResult,
  "sled.chunk.write.v1": SledChunkWriteResult,
  "sled.chunk.read.v1": SledChunkReadResult,
  "sled.chunk.read-many.v1": SledChunkReadManyResult,
  "sled.chunk.delete.v1": SledDeleteResult,
  "sled.chunk.stat.v1": SledChunkStatResult,
  "sled.chunk.list.v1": SledChunkListResult,
  "sled.stat.v1": SledStatResult,
  "sled.blob.begin.v1": SledBlobBeginResult,
  "sled.blob.part.v1": SledBlobPartResult,
  "sled.blob.commit.v1": SledBlobInfo,
  "sled.blob.abort.v1": SledBlobAbortResult,
  "sled.blob.get.v1": SledBlobGetResult,
  "sled.blob.delete.v1": SledDeleteResult,
  "sled.blob.list.v1": SledBlobListResult,
  "sled.scrub.v1": SledScrubResult,
} as const;

export type RequestType = keyof typeof resultSchemas;
export type RequestMessage = MessageOf<RequestType>;
export type ResultOf<T extends RequestType> = z.infer<(typeof resultSchemas)[T]>;

export function isRequestType(type: MessageType): type is RequestType {
  return type in resultSchemas;
}
