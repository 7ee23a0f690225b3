// The names and the header of a partition replica's checkpoint, as far as a reader other
// than the head node needs them: the coordinator's orphan sweep reads a checkpoint's
// chunk table and next chunk number from the blob's first bytes, and parses the chunk
// ids and blob keys it finds on sleds. The head node writes all three (its metadata
// snapshot, `sledChunkIdOf`, and the checkpoint's blob key); this module is where their
// shapes are defined for both sides.
//
// Checkpoint (metadata snapshot) layout: a 4-byte little-endian header length, the
// msgpack header {format, opNum, flushedThrough op/epoch/session, nextChunkNumber,
// chunks}, then the extent tree in @ballast/btree's checkpoint format (which carries its
// own checksums; the header is validated by its schema here).
//
// Format 2 adds the partition's snapshots (frozen extent trees): the header gains
// `treeBytes` (the length of the current tree's serialization) and `snapshots`
// ([id, opNum, bytes] each), and the snapshot trees follow the current one, in that
// order, each in the same btree format. The chunk table still lists every chunk any
// tree refers to (a snapshot keeps its chunks in the table), so a reader of the header
// alone (the orphan sweep) sees every chunk the checkpoint needs. Format 1 (no
// snapshots) is still read.
//
// Chunk ids: `<volume id>-p<partition>-e<epoch>-s<session>-c<chunk number>` with the
// numbers in decimal (session in base 36); when that is longer than a sled accepts, the
// volume id becomes the base-36 CRC32C of it and every number is written in base 36.
// Checkpoint blob keys: `checkpoints/<volume id>/<partition>/<node>/<op>-<session>-<upload>`.

import { Unpackr } from "msgpackr";
import { z } from "zod";
import { crc32c } from "./checksum.ts";
import { BallastError, ErrorCode } from "./errors.ts";
import { sledLimits } from "./messages/sled.ts";

/** The header format the head node writes. */
export const checkpointHeaderFormat = 2;

/** The oldest header format this reader still accepts (no snapshots). */
export const checkpointHeaderFormatOldest = 1;

/** Bytes of the little-endian length that precedes the msgpack header. */
export const checkpointHeaderLengthBytes = 4;

/**
 * The largest header a reader accepts; a larger length is a damaged blob, not a header.
 * The chunk table dominates it: about 69 bytes a chunk with 36-character sled chunk ids
 * and two copies (measured), so about 970K chunks. The head node refuses to write a
 * checkpoint whose header is larger (metadata.ts), and compaction merges small chunks so
 * that a partition's chunk count stays far below it (replica.ts).
 */
export const checkpointHeaderBytesMax = 64 * 1024 * 1024;

/**
 * The largest checkpoint, header and trees together: it is stored as one sled blob. The
 * head node refuses to write a larger one (nothing could store it, so nothing could ever
 * release the journal it covers); the extent trees cost about 13.5 bytes an extent, so
 * this is about 19M extents summed over the current tree and every snapshot's.
 */
export const checkpointBytesMax = sledLimits.blobBytesMax;

const unsigned = z.number().int().nonnegative();

export const CheckpointHeader = z
  .object({
    format: z.union([z.literal(checkpointHeaderFormatOldest), z.literal(checkpointHeaderFormat)]),
    opNum: unsigned,
    flushedThroughOpNum: unsigned,
    flushedThroughEpoch: unsigned,
    flushedThroughSession: unsigned,
    nextChunkNumber: unsigned,
    // [number, sledChunkId, copies, bytes, checksum?]: snapshots taken before chunks
    // carried a checksum have four elements.
    chunks: z.array(
      z.union([
        z.tuple([unsigned, z.string(), z.array(z.string()), unsigned, unsigned.max(0xffff_ffff)]),
        z.tuple([unsigned, z.string(), z.array(z.string()), unsigned]),
      ]),
    ),
    /** Format 2: bytes of the current tree's serialization (snapshot trees follow it). */
    treeBytes: unsigned.optional(),
    /** Format 2: [snapshot id, op it was taken at, bytes of its tree], in stored order. */
    snapshots: z.array(z.tuple([z.string().min(1), unsigned, unsigned])).optional(),
  })
  .refine(
    (header) =>
      header.format === checkpointHeaderFormatOldest ||
      (header.treeBytes !== undefined && header.snapshots !== undefined),
    { message: `a format ${checkpointHeaderFormat} header needs treeBytes and snapshots` },
  );
export type CheckpointHeader = z.infer<typeof CheckpointHeader>;

// The options the head node packs the header with (metadata.ts): plain maps, no records.
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/**
 * The length of the msgpack header, from a checkpoint's first
 * `checkpointHeaderLengthBytes` bytes. Throws a typed error on a truncated prefix or an
 * impossible length.
 */
export function checkpointHeaderLengthOf(bytes: Uint8Array): number {
  if (bytes.byteLength < checkpointHeaderLengthBytes) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `a checkpoint is truncated: ${bytes.byteLength} bytes, its header length needs ${checkpointHeaderLengthBytes}`,
    );
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  if (length > checkpointHeaderBytesMax) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `a checkpoint names a header of ${length} bytes, more than ${checkpointHeaderBytesMax}`,
    );
  }
  return length;
}

/**
 * Parses a checkpoint's header from `bytes`, which hold at least the length prefix and
 * the header (the whole checkpoint, or just its first bytes). Returns the header and how
 * many bytes it took with its prefix (where the tree begins). Throws a typed error if
 * the header is truncated or does not match the schema.
 */
export function readCheckpointHeader(bytes: Uint8Array): {
  header: CheckpointHeader;
  headerEnd: number;
} {
  const length = checkpointHeaderLengthOf(bytes);
  const headerEnd = checkpointHeaderLengthBytes + length;
  if (headerEnd > bytes.byteLength) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `a checkpoint header is truncated: it needs ${headerEnd} bytes, ${bytes.byteLength} are there`,
    );
  }
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(
      Buffer.from(bytes.buffer, bytes.byteOffset + checkpointHeaderLengthBytes, length),
    );
  } catch (error) {
    throw new BallastError(ErrorCode.InvalidArgument, "a checkpoint header is not msgpack", {
      cause: error,
    });
  }
  const parsed = CheckpointHeader.safeParse(decoded);
  if (!parsed.success) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `a checkpoint header does not match its schema: ${parsed.error.message}`,
    );
  }
  return { header: parsed.data, headerEnd };
}

/** The prefix a head node uses in place of a volume id too long for a chunk id. */
export function hashedChunkIdPrefixOf(volumeId: string): string {
  return crc32c(new TextEncoder().encode(volumeId)).toString(36);
}

const readableTail = /^-p([0-9]+)-e([0-9]+)-s[0-9a-z]+-c([0-9]+)$/;
const hashedTail = /^-p([0-9a-z]+)-e[0-9a-z]+-s[0-9a-z]+-c([0-9a-z]+)$/;

/**
 * The partition and chunk number of a chunk id of incarnation `volumeId`, in either the
 * readable or the hashed form; undefined for an id of another shape or another volume
 * id (a hashed id of another incarnation whose CRC collides parses too: callers also
 * check the chunk's owner).
 */
export function parseSledChunkId(
  chunkId: string,
  volumeId: string,
): { partition: number; chunkNumber: number } | undefined {
  if (chunkId.startsWith(volumeId)) {
    const tail = readableTail.exec(chunkId.slice(volumeId.length));
    if (tail !== null) return numbers(tail[1]!, tail[3]!, 10);
  }
  const hashed = hashedChunkIdPrefixOf(volumeId);
  if (chunkId.startsWith(hashed)) {
    const tail = hashedTail.exec(chunkId.slice(hashed.length));
    if (tail !== null) return numbers(tail[1]!, tail[2]!, 36);
  }
  return undefined;
}

function numbers(partitionText: string, chunkText: string, radix: number) {
  const partition = Number.parseInt(partitionText, radix);
  const chunkNumber = Number.parseInt(chunkText, radix);
  if (!Number.isSafeInteger(partition) || !Number.isSafeInteger(chunkNumber)) return undefined;
  return { partition, chunkNumber };
}

/**
 * Every checkpoint blob key of incarnation `volumeId` begins with this; with a
 * partition, every key of that partition's replicas.
 */
export function checkpointBlobPrefixOf(volumeId: string, partition?: number): string {
  return partition === undefined
    ? `checkpoints/${volumeId}/`
    : `checkpoints/${volumeId}/${partition}/`;
}

/** The partition a checkpoint blob key of `volumeId` names; undefined for another shape. */
export function partitionOfCheckpointBlobKey(key: string, volumeId: string): number | undefined {
  const prefix = checkpointBlobPrefixOf(volumeId);
  if (!key.startsWith(prefix)) return undefined;
  const match = /^(0|[1-9][0-9]*)\/[^/]+\/[^/]+$/.exec(key.slice(prefix.length));
  if (match === null) return undefined;
  const partition = Number(match[1]);
  return Number.isSafeInteger(partition) ? partition : undefined;
}

/**
 * The op number a checkpoint blob key of `volumeId` names (the replica's commit op when
 * it took the checkpoint: `<op>-<session>-<upload>`); undefined for another shape.
 */
export function opNumOfCheckpointBlobKey(key: string, volumeId: string): number | undefined {
  if (partitionOfCheckpointBlobKey(key, volumeId) === undefined) return undefined;
  const match = /^(0|[1-9][0-9]*)-[^/]+$/.exec(key.slice(key.lastIndexOf("/") + 1));
  if (match === null) return undefined;
  const opNum = Number(match[1]);
  return Number.isSafeInteger(opNum) ? opNum : undefined;
}
