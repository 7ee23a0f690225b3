// Messages every service speaks: liveness and self-description.

import { z } from "zod";
import { diskId, nodeId, serviceKind, text, unsignedInteger } from "./fields.ts";

/** Published (not requested) by every service on its heartbeat subject. */
export const Heartbeat = z.object({
  type: z.literal("heartbeat.v1"),
  kind: serviceKind,
  nodeId,
  pid: unsignedInteger,
  startedAtMs: unsignedInteger,
  sentAtMs: unsignedInteger,
  /** Counts heartbeats since the process started; a reset means a restart. */
  sequence: unsignedInteger,
  version: text,
  /**
   * Its data directory's id. A head node back under its old node id with another one
   * has lost every replica it held: the coordinator counts it out of every replica set
   * that recorded the old one. Absent from services that predate it.
   */
  disk: diskId.optional(),
});

/** Asks a node to describe itself. */
export const NodeInfo = z.object({
  type: z.literal("node.info.v1"),
});

export const NodeInfoResult = z.object({
  kind: serviceKind,
  nodeId,
  pid: unsignedInteger,
  startedAtMs: unsignedInteger,
  uptimeMs: unsignedInteger,
  version: text,
  /** Every subject this node subscribes to, so that tools can probe them. */
  subjects: z.array(text).max(64),
  /** Kind-specific facts (capacity, replicas held, …); shape documented per service. */
  details: z.record(z.string(), z.unknown()),
});
