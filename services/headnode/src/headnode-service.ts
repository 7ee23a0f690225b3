// The head node's service definition for the runtime.

import { totalmem } from "node:os";
import {
  type CommonConfig,
  type ConfigOf,
  linkOptions,
  listenLinksAsConfigured,
  type OptionSpecs,
  type Service,
} from "@ballast/runtime";
import { chunkCacheBytesFor } from "./chunk-cache.ts";
import { flushBytesMin, replicaLimitsDefault, tickMs } from "./constants.ts";
import { HeadNode } from "./headnode.ts";
import { checkpointCheckIntervalMs, scrubIntervalMs } from "./replicator.ts";
import { nextSession } from "./session.ts";

/**
 * The memory this process may count on: the machine's, or its cgroup's limit when one is
 * set and lower (a container sees the host's total in `totalmem`).
 */
export function memoryAvailableBytes(): number {
  const total = totalmem();
  const constrained = process.constrainedMemory?.() ?? 0;
  return constrained > 0 && constrained < total ? constrained : total;
}

export const headnodeOptions = {
  checkpointIntervalMs: {
    flag: "checkpoint-interval-ms",
    env: "BALLAST_CHECKPOINT_INTERVAL_MS",
    type: "integer",
    default: replicaLimitsDefault.checkpointIntervalTicks * tickMs,
    min: 100,
    max: 3_600_000,
    description: "checkpoint a replica's metadata at least this often while it flushes",
  },
  checkpointIntervalOps: {
    flag: "checkpoint-interval-ops",
    env: "BALLAST_CHECKPOINT_INTERVAL_OPS",
    type: "integer",
    default: replicaLimitsDefault.checkpointIntervalOps,
    min: 1,
    max: 100_000_000,
    description: "checkpoint a replica's metadata at least every this many ops",
  },
  flushBytes: {
    flag: "flush-bytes",
    env: "BALLAST_FLUSH_BYTES",
    type: "integer",
    default: replicaLimitsDefault.flushBytesThreshold,
    min: flushBytesMin,
    max: replicaLimitsDefault.logBytesMax,
    description:
      "flush a primary's committed writes to the sleds once this many bytes wait (else on its flush interval)",
  },
  journalBytesMax: {
    flag: "journal-bytes-max",
    env: "BALLAST_JOURNAL_BYTES_MAX",
    type: "integer",
    default: replicaLimitsDefault.logBytesMax,
    min: 1024 * 1024,
    max: 64 * 1024 * 1024 * 1024,
    description:
      "note bytes a replica holds before new writes wait; with full sleds and half of it held, writes answer NoSpace",
  },
  chunkCacheBytes: {
    flag: "chunk-cache-bytes",
    env: "BALLAST_CHUNK_CACHE_BYTES",
    type: "integer",
    default: chunkCacheBytesFor(memoryAvailableBytes()),
    min: 0,
    max: 64 * 1024 * 1024 * 1024,
    description:
      "memory for sled chunk bytes read or flushed by this node, served again without a sled read (default: 1/16 of memory, 256 MiB to 4 GiB); 0 turns it off",
  },
  scrubIntervalMs: {
    flag: "scrub-interval-ms",
    env: "BALLAST_SCRUB_INTERVAL_MS",
    type: "integer",
    default: scrubIntervalMs,
    min: 1000,
    max: 30 * 24 * 3_600_000,
    description:
      "read every chunk copy a primary's table lists whole once in this long, repairing the damaged and missing ones",
  },
  checkpointCheckIntervalMs: {
    flag: "checkpoint-check-ms",
    env: "BALLAST_CHECKPOINT_CHECK_MS",
    type: "integer",
    default: checkpointCheckIntervalMs,
    min: 1000,
    max: 24 * 3_600_000,
    description:
      "look for a primary's recorded checkpoint on the sleds it names this often, storing a lost copy again",
  },
  // Where it takes links (volume I/O and replication without nats-server).
  ...linkOptions,
} as const satisfies OptionSpecs;

export const headnodeDefinition = {
  kind: "headnode" as const,
  options: headnodeOptions,
  async start(service: Service, config: ConfigOf<typeof headnodeOptions> & CommonConfig) {
    // Links before any subject is served: served subjects are routed from the listener.
    // A node with links off neither takes nor sends any (everything over NATS). With
    // links on it sends replication, and its sleds' chunk traffic (their inboxes), by link.
    if (await listenLinksAsConfigured(service, config)) {
      service.bus.enableLinks(["replica", "node"]);
    }
    const limits = {
      checkpointIntervalTicks: Math.max(1, Math.round(config.checkpointIntervalMs / tickMs)),
      checkpointIntervalOps: config.checkpointIntervalOps,
      logBytesMax: config.journalBytesMax,
      flushBytesThreshold: config.flushBytes,
    };
    new HeadNode(
      service,
      config,
      await nextSession(config.dataDir),
      limits,
      { cacheBytes: config.chunkCacheBytes, meter: service.meter },
      {
        scrubIntervalMs: config.scrubIntervalMs,
        checkpointCheckIntervalMs: config.checkpointCheckIntervalMs,
      },
    ).start();
  },
};
