// Messages the coordinator answers on its inbox.

import { z } from "zod";
import { statusEntriesMax } from "../limits.ts";
import { nodeId, serviceKind, text, unsignedInteger } from "./fields.ts";

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
