// The message catalogue: every message type of protocol v1, as one discriminated union
// on `type`, plus the result schema of each request type. A type name carries its
// version (`….v1`); a changed message gets a new name and the old one stays until no
// service sends it.

import { z } from "zod";
import { Heartbeat, NodeInfo, NodeInfoResult } from "./common.ts";
import { ClusterStatus, ClusterStatusResult } from "./coordinator.ts";
import { ReplicaNotes, ReplicaNotesResult } from "./replica.ts";
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
export * from "./replica.ts";
export * from "./volume.ts";

export const Message = z.discriminatedUnion("type", [
  Heartbeat,
  NodeInfo,
  ClusterStatus,
  VolumeWrite,
  VolumeRead,
  VolumeTrim,
  VolumeWriteZeroes,
  VolumeFlush,
  ReplicaNotes,
]);

export type Message = z.infer<typeof Message>;
export type MessageType = Message["type"];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

/** The schema of each message type, for validating one type without the union. */
export const messageSchemas: { [T in MessageType]: z.ZodType<MessageOf<T>> } = {
  "heartbeat.v1": Heartbeat,
  "node.info.v1": NodeInfo,
  "cluster.status.v1": ClusterStatus,
  "volume.write.v1": VolumeWrite,
  "volume.read.v1": VolumeRead,
  "volume.trim.v1": VolumeTrim,
  "volume.write-zeroes.v1": VolumeWriteZeroes,
  "volume.flush.v1": VolumeFlush,
  "replica.notes.v1": ReplicaNotes,
};

export const messageTypes = Object.keys(messageSchemas) as MessageType[];

/** What each request type answers with. Messages absent here are published, not requested. */
export const resultSchemas = {
  "node.info.v1": NodeInfoResult,
  "cluster.status.v1": ClusterStatusResult,
  "volume.write.v1": VolumeMutationResult,
  "volume.read.v1": VolumeReadResult,
  "volume.trim.v1": VolumeMutationResult,
  "volume.write-zeroes.v1": VolumeMutationResult,
  "volume.flush.v1": VolumeFlushResult,
  "replica.notes.v1": ReplicaNotesResult,
} as const;

export type RequestType = keyof typeof resultSchemas;
export type RequestMessage = MessageOf<RequestType>;
export type ResultOf<T extends RequestType> = z.infer<(typeof resultSchemas)[T]>;

export function isRequestType(type: MessageType): type is RequestType {
  return type in resultSchemas;
}
