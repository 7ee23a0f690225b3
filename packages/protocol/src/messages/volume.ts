// Block I/O on one partition of a volume, sent to the partition's subject and served by
// its primary. Offsets are volume offsets (not partition-relative) so that a request can
// be read on its own; a request never crosses a partition boundary (the client splits).
// Every request carries many entries: batching is the normal case, not an extension.

import { z } from "zod";
import {
  bytes,
  clientSession,
  entries,
  positiveInteger,
  range,
  snapshotId,
  unsignedInteger,
  volumeBytes,
  volumeId,
  volumeName,
} from "./fields.ts";

const partitionAddress = {
  volume: volumeName,
  partition: unsignedInteger,
  /** The epoch the client believes current; a mismatch answers WrongEpoch or NotPrimary. */
  epoch: unsignedInteger,
  /**
   * The volume incarnation the client opened. A primary of another incarnation of the
   * name answers WrongEpoch, so the client describes again and learns the volume was
   * deleted (or that the primary has not caught up). Absent: not checked.
   */
  volumeId: volumeId.optional(),
};

/**
 * The ordering fence of a mutation attempt (write, trim, write-zeroes). A client draws
 * a session id when it starts and numbers every attempt it sends, a retry included, with
 * a `sequence` higher than any it sent before. The primary remembers, per partition, the
 * highest sequence it took from each session, and refuses an attempt numbered below it
 * with Superseded, before it gets an op number: that attempt is a stale copy (one its
 * client timed out on and has sent again, or given up), which would otherwise overwrite
 * a later write the client was already told is done. Attempts in flight together have
 * no order, so refusing the lower of two that arrived out of order loses nothing: its
 * client sends it again as a new attempt. A request's entries are taken or refused
 * together, so one sequence covers a batch. Absent (an older client): not fenced.
 */
export const MutationFence = z.object({
  session: clientSession,
  sequence: positiveInteger,
});
export type MutationFence = z.infer<typeof MutationFence>;

export const VolumeWrite = z.object({
  type: z.literal("volume.write.v1"),
  ...partitionAddress,
  writes: entries(z.object({ offset: volumeBytes, data: bytes })),
  fence: MutationFence.optional(),
});

export const VolumeRead = z.object({
  type: z.literal("volume.read.v1"),
  ...partitionAddress,
  reads: entries(range),
  /**
   * Read this snapshot of the partition (its id, from the volume's snapshot record)
   * rather than its current data; a primary that has no snapshot of that id answers
   * NotFound. Same lease and epoch rules as any read.
   */
  snapshot: snapshotId.optional(),
  /**
   * Also say, per range, which parts the partition has never mapped (no write, trim or
   * write-zeroes ever covered them): a clone's reader fills those from its parent's
   * snapshot. They read as zeros in `data` either way.
   */
  unmapped: z.boolean().optional(),
});

export const VolumeTrim = z.object({
  type: z.literal("volume.trim.v1"),
  ...partitionAddress,
  ranges: entries(range),
  fence: MutationFence.optional(),
  /**
   * A resize's trim of the volume's tail (the coordinator's): its ranges may reach past
   * the partition's served bytes (headnode.configure.v1 `servedBytes`), which a shrink
   * lowers before it trims and a grow raises only after. Only within the partition;
   * only a trim, which discards what lies past the end, as a shrink does anyway.
   */
  pastEnd: z.literal(true).optional(),
});

export const VolumeWriteZeroes = z.object({
  type: z.literal("volume.write-zeroes.v1"),
  ...partitionAddress,
  ranges: entries(range),
  fence: MutationFence.optional(),
});

/**
 * Completes once every op the primary had assigned when it arrived is committed, that
 * is durable in every voting replica's journal; it also prompts a flush to sleds but
 * does not wait for one.
 */
export const VolumeFlush = z.object({
  type: z.literal("volume.flush.v1"),
  ...partitionAddress,
});

/** Writes, trims and write-zeroes answer with the op numbers they committed as. */
export const VolumeMutationResult = z.object({
  opNumFirst: unsignedInteger,
  opNumLast: unsignedInteger,
});

export const VolumeReadResult = z.object({
  /** One buffer per requested range, in request order. */
  data: z.array(bytes),
  /**
   * With `unmapped` asked: per requested range, in request order, the never-mapped
   * parts of it, in offset order (volume offsets), adjacent parts merged.
   */
  unmapped: z.array(z.array(range)).optional(),
});

export const VolumeFlushResult = z.object({
  flushedOpNum: unsignedInteger,
});
