// Messages a sled answers on its node inbox (`subjects.node.build("sled", sledId)`): chunks of
// volume data written by head nodes, blobs (metadata checkpoints) by key, usage, and
// scrub. Every stored byte carries a CRC32C per 4 KiB block; a read that finds a
// mismatch answers ChecksumMismatch with the location, never the bad bytes.
//
// Chunks are write-once: writing an existing chunk id again with the same owner and the
// same bytes is an idempotent success (`created: false`, the same location), anything
// else answers AlreadyExists. Blobs are write-once too, and are put in parts so that a
// blob larger than one message (a 40 MB checkpoint) fits through the 8 MiB limit:
// `sled.blob.begin.v1` declares the size and CRC32C of the whole blob, parts arrive in
// order, and `sled.blob.commit.v1` makes the blob visible only once it is complete and
// its checksum matches. Gets are by offset, so a large blob is read in pieces.
//
// Sizes and alignment are checked by the sled (typed Unaligned, OutOfRange and
// PayloadTooLarge errors), not here, so that a caller learns which rule it broke.

import { z } from "zod";
import { bytes, nodeId, text, uint32, unsignedInteger, volumeName } from "./fields.ts";

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;

/** Limits of the sled's wire. Part of the protocol: head nodes plan chunks and blobs by them. */
export const sledLimits = {
  /** The most data one chunk holds. Chunk sizes are multiples of the sector size (512). */
  chunkBytesMax: 4 * mebibyte,
  /** Chunk ids: 1 to 64 characters of `[a-z0-9-]`, starting with a letter or digit. */
  chunkIdLengthMax: 64,
  /** Blob keys: 1 to 200 characters of `[a-z0-9._/-]`, starting with a letter or digit. */
  blobKeyLengthMax: 200,
  /** The largest blob (a checkpoint); it is stored contiguously on one device. */
  blobBytesMax: 256 * mebibyte,
  /** The most data one blob part carries. Every part but the last is a multiple of 4 KiB. */
  blobPartBytesMax: 4 * mebibyte,
  /** The most data one chunk read or blob get returns (a read-many: all its reads). */
  readBytesMax: 4 * mebibyte,
  /** The most ranges one `sled.chunk.read-many.v1` asks for. */
  readManyEntriesMax: 256,
  /** The most blobs one list reply holds; `truncated` says when there are more. */
  blobListEntriesMax: 1000,
  /** The most chunks one list reply holds; `truncated` says when there are more. */
  chunkListEntriesMax: 1000,
  /** The most damaged objects one scrub reply names; `damagedTruncated` says when cut. */
  scrubReportEntriesMax: 1000,
  /** Upload ids are the sled's own (a UUID today); this bounds what a request may carry. */
  uploadIdLengthMax: 64,
} as const;

/** The alignment of blob parts: every part but the last is a whole number of these. */
export const blobPartAlignmentBytes = 4 * kibibyte;

export const chunkIdPattern = /^[a-z0-9][a-z0-9-]*$/;
export const blobKeyPattern = /^[a-z0-9][a-z0-9._/-]*$/;

export const chunkId = z.string().min(1).max(sledLimits.chunkIdLengthMax).regex(chunkIdPattern);
export const blobKey = z.string().min(1).max(sledLimits.blobKeyLengthMax).regex(blobKeyPattern);
const uploadId = z
  .string()
  .min(1)
  .max(sledLimits.uploadIdLengthMax)
  .regex(/^[a-z0-9][a-z0-9-]*$/);

/** The partition replica a chunk belongs to; reads and deletes must name the same owner. */
export const ChunkOwner = z.object({
  volume: volumeName,
  partition: uint32,
});

/**
 * Where an object lives: its extent on one device of one sled. `offset` is the device
 * byte offset of the extent (header first), `dataOffset` the device byte offset of the
 * object's first data byte. Operators and tests use these to find bytes on disk.
 */
export const SledLocation = z.object({
  sled: nodeId,
  device: unsignedInteger,
  offset: unsignedInteger,
  extentBytes: unsignedInteger,
  dataOffset: unsignedInteger,
});

export const SledChunkWrite = z.object({
  type: z.literal("sled.chunk.write.v1"),
  owner: ChunkOwner,
  chunkId,
  data: bytes,
});

export const SledChunkWriteResult = z.object({
  location: SledLocation,
  bytes: unsignedInteger,
  /** CRC32C of the whole chunk. */
  checksum: uint32,
  /** False when the chunk was already stored with these bytes (an idempotent retry). */
  created: z.boolean(),
});

/** Reads `length` bytes at `offset` of a chunk; both are multiples of 512. */
export const SledChunkRead = z.object({
  type: z.literal("sled.chunk.read.v1"),
  owner: ChunkOwner,
  chunkId,
  offset: unsignedInteger,
  length: unsignedInteger,
});

export const SledChunkReadResult = z.object({
  data: bytes,
});

/**
 * Several chunk reads of one owner in one request: a head node serving 4 KiB random
 * reads made one `sled.chunk.read.v1` per read, and each cost the sled, nats-server and
 * the head node a message and a socket write or two each way. Each read is checked and
 * answered as a `sled.chunk.read.v1` would be; their lengths together are at most
 * `readBytesMax` (else the whole request answers PayloadTooLarge).
 */
export const SledChunkReadMany = z.object({
  type: z.literal("sled.chunk.read-many.v1"),
  owner: ChunkOwner,
  reads: z
    .array(z.object({ chunkId, offset: unsignedInteger, length: unsignedInteger }))
    .min(1)
    .max(sledLimits.readManyEntriesMax),
});

/**
 * One buffer per read, in request order; a read that failed has an empty buffer and an
 * entry in `failed` (its index and the error a single read would have answered).
 */
export const SledChunkReadManyResult = z.object({
  data: z.array(bytes),
  failed: z
    .array(
      z.object({
        index: uint32,
        code: z.string(),
        message: text,
        details: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .optional(),
});

export const SledChunkDelete = z.object({
  type: z.literal("sled.chunk.delete.v1"),
  owner: ChunkOwner,
  chunkId,
});

export const SledDeleteResult = z.object({
  /** Device space returned to the free pool (the extent, header included). */
  freedBytes: unsignedInteger,
});

/** Describes one stored chunk: size, checksum and location. */
export const SledChunkStat = z.object({
  type: z.literal("sled.chunk.stat.v1"),
  owner: ChunkOwner,
  chunkId,
});

export const SledChunkStatResult = z.object({
  chunkId,
  owner: ChunkOwner,
  bytes: unsignedInteger,
  checksum: uint32,
  location: SledLocation,
});

/**
 * Lists chunks in id order, those whose owner's volume is `volume` (exactly), after
 * `startAfter`. The coordinator purges a deleted volume's chunks with it: the chunk ids
 * a sled holds are known nowhere else once the volume's replicas are dropped.
 */
export const SledChunkList = z.object({
  type: z.literal("sled.chunk.list.v1"),
  volume: volumeName.optional(),
  startAfter: chunkId.optional(),
  limit: z.number().int().min(1).max(sledLimits.chunkListEntriesMax).optional(),
});

export const SledChunkListEntry = z.object({
  chunkId,
  owner: ChunkOwner,
  bytes: unsignedInteger,
});

export const SledChunkListResult = z.object({
  chunks: z.array(SledChunkListEntry).max(sledLimits.chunkListEntriesMax),
  truncated: z.boolean(),
});

/**
 * Lists the chunks the sled's last scrub found damaged that are still stored so (a
 * repair, a delete or a clean scrub clears one), in id order after `startAfter`: their
 * copies here are not sound, and the head nodes count them as none and repair them.
 */
export const SledChunkDamaged = z.object({
  type: z.literal("sled.chunk.damaged.v1"),
  startAfter: chunkId.optional(),
  limit: z.number().int().min(1).max(sledLimits.chunkListEntriesMax).optional(),
});

/** Capacity and usage of the sled and of each of its devices. */
export const SledStat = z.object({
  type: z.literal("sled.stat.v1"),
});

export const SledDeviceStat = z.object({
  device: unsignedInteger,
  path: text,
  deviceBytes: unsignedInteger,
  /** The data region: what chunks and blobs (with their headers) can occupy. */
  capacityBytes: unsignedInteger,
  usedBytes: unsignedInteger,
  freeBytes: unsignedInteger,
  /** The largest object extent that fits now (space can be fragmented). */
  largestFreeBytes: unsignedInteger,
  slots: unsignedInteger,
  slotsUsed: unsignedInteger,
  chunks: unsignedInteger,
  blobs: unsignedInteger,
  /** fdatasync calls since start: fewer than writes when group commit shares them. */
  syncs: unsignedInteger,
  /** True after an I/O error on the write path: the device takes no more writes. */
  failed: z.boolean(),
});

export const SledStatResult = z.object({
  sled: nodeId,
  capacityBytes: unsignedInteger,
  usedBytes: unsignedInteger,
  freeBytes: unsignedInteger,
  chunks: unsignedInteger,
  blobs: unsignedInteger,
  /** Blob uploads begun and not yet committed or aborted; their space is reserved. */
  uploads: unsignedInteger,
  devices: z.array(SledDeviceStat).max(1024),
  /**
   * Objects the last scrub found damaged and still stored so, and damaged slots: their
   * copies here cannot be trusted until repaired (absent from sleds before it).
   */
  damagedObjects: unsignedInteger.optional(),
});

/** Starts a blob upload of `bytes` bytes whose CRC32C is `checksum`. */
export const SledBlobBegin = z.object({
  type: z.literal("sled.blob.begin.v1"),
  key: blobKey,
  bytes: unsignedInteger,
  checksum: uint32,
});

export const SledBlobBeginResult = z.object({
  uploadId,
  partBytesMax: unsignedInteger,
});

/** The next part of an upload: `offset` must equal the bytes received so far. */
export const SledBlobPart = z.object({
  type: z.literal("sled.blob.part.v1"),
  uploadId,
  offset: unsignedInteger,
  data: bytes,
});

export const SledBlobPartResult = z.object({
  bytesReceived: unsignedInteger,
});

/** Makes a complete upload durable and visible under its key. */
export const SledBlobCommit = z.object({
  type: z.literal("sled.blob.commit.v1"),
  uploadId,
});

export const SledBlobInfo = z.object({
  key: blobKey,
  bytes: unsignedInteger,
  checksum: uint32,
  location: SledLocation,
});

/** Drops an upload and the space it reserved. */
export const SledBlobAbort = z.object({
  type: z.literal("sled.blob.abort.v1"),
  uploadId,
});

export const SledBlobAbortResult = z.object({
  freedBytes: unsignedInteger,
});

/** Reads up to `length` bytes at `offset` (any alignment); `length` defaults to the rest. */
export const SledBlobGet = z.object({
  type: z.literal("sled.blob.get.v1"),
  key: blobKey,
  offset: unsignedInteger,
  length: unsignedInteger.optional(),
});

export const SledBlobGetResult = z.object({
  data: bytes,
  /** The blob's whole size and CRC32C, so that a reader in pieces knows when it is done. */
  bytes: unsignedInteger,
  checksum: uint32,
});

export const SledBlobDelete = z.object({
  type: z.literal("sled.blob.delete.v1"),
  key: blobKey,
});

/** Lists blobs in key order, those starting with `prefix`, after `startAfter`. */
export const SledBlobList = z.object({
  type: z.literal("sled.blob.list.v1"),
  prefix: z.string().max(sledLimits.blobKeyLengthMax).optional(),
  startAfter: blobKey.optional(),
  limit: z.number().int().min(1).max(sledLimits.blobListEntriesMax).optional(),
});

export const SledBlobListResult = z.object({
  blobs: z.array(SledBlobInfo).max(sledLimits.blobListEntriesMax),
  truncated: z.boolean(),
});

/** Verifies every stored chunk and blob against its checksums. */
export const SledScrub = z.object({
  type: z.literal("sled.scrub.v1"),
});

export const SledDamage = z.object({
  kind: z.enum(["chunk", "blob"]),
  /** The chunk id or blob key. */
  id: text,
  owner: ChunkOwner.optional(),
  device: unsignedInteger,
  /** Device byte offset of the first damaged block (or of the header when it is damaged). */
  offset: unsignedInteger,
  /** Blocks of the object that failed their checksum. */
  badBlocks: unsignedInteger,
  reason: text,
});

export const SledScrubResult = z.object({
  sled: nodeId,
  chunksChecked: unsignedInteger,
  blobsChecked: unsignedInteger,
  bytesChecked: unsignedInteger,
  durationMs: unsignedInteger,
  damaged: z.array(SledDamage).max(sledLimits.scrubReportEntriesMax),
  damagedTruncated: z.boolean(),
});
