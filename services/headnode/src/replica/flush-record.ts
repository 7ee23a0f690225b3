// A flush record: the note that moves metadata from the journal to a sled chunk. The
// primary writes the chunk first, then proposes this record through the op stream, so
// every replica updates its metadata identically and in op order. Each piece says
// "bytes [offset, offset+length) of op `opNum` are now at `chunkOffset` in the chunk";
// applying it changes only ranges whose stored op number is still `opNum`, so a newer
// write to the same range is never clobbered.
//
// A record with no chunk advances `throughOpNum` only: every op it covers had been
// overwritten or trimmed before the flush, so there was nothing to write (or it carries
// only chunk-table maintenance, below).
//
// Chunk-table maintenance rides in the same records, applied after the pieces, so that
// every replica changes its table at the same op:
// - `copies` replaces a chunk's copy list (a copy was re-made on another sled because a
//   sled holding one is out of service);
// - `drop` removes chunks that no extent of any tree refers to any more. Nothing can add
//   a reference to a chunk between the proposal and the commit (writes only take
//   references away, and one record is in flight at a time), so a dropped chunk is
//   unreferenced on every replica. Replicas never delete sled objects; the coordinator's
//   orphan sweep does, once no recorded checkpoint lists the chunk.
//
// The chunk's CRC32C is computed by the primary from the bytes it packed, before any
// sled sees them, so every replica's metadata (and every checkpoint) can check a copy
// end to end: a sled's own checks prove only that it returns what it stored. Records
// written before the field existed decode without it, and their chunks are checked by
// the sleds alone.

import { Packr, Unpackr } from "msgpackr";
import { z } from "zod";

export const FlushRecord = z.object({
  /** Every op up to this one has its live bytes in chunks once this record applies. */
  throughOpNum: z.number().int().nonnegative(),
  chunk: z
    .object({
      chunkNumber: z.number().int().nonnegative(),
      sledChunkId: z.string().min(1).max(64),
      copies: z.array(z.string().min(1).max(63)).min(1).max(8),
      bytes: z.number().int().positive(),
      /** CRC32C of the whole chunk as the primary packed it; absent in older records. */
      checksum: z.number().int().min(0).max(0xffff_ffff).optional(),
    })
    .nullable(),
  /** [offset, length, opNum, chunkOffset] per piece, flat for compactness. */
  pieces: z.array(z.number().int().nonnegative()),
  /** New copy lists of chunks already in the table: [chunkNumber, sleds]. */
  copies: z
    .array(
      z.tuple([z.number().int().nonnegative(), z.array(z.string().min(1).max(63)).min(1).max(8)]),
    )
    .optional(),
  /** Chunks no tree refers to any more, removed from the table. */
  drop: z.array(z.number().int().nonnegative()).optional(),
});

export type FlushRecord = z.infer<typeof FlushRecord>;

export interface FlushPiece {
  offset: number;
  length: number;
  opNum: number;
  chunkOffset: number;
}

const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export function encodeFlushRecord(record: FlushRecord): Uint8Array {
  return packr.pack(record);
}

/** Decodes a committed flush record; a bad one is a bug on the primary, not bad input. */
export function decodeFlushRecord(data: Uint8Array): FlushRecord {
  const decoded: unknown = unpackr.unpack(data as Buffer);
  const pieces = (decoded as { pieces?: unknown } | null | undefined)?.pieces;
  let record: FlushRecord;
  if (Array.isArray(pieces) && pieces.every(isCount)) {
    // A record of a full chunk has thousands of pieces: zod checked each number one by one
    // on every replica, at every commit of a flush (issue 14: 2.4 % of a secondary's busy
    // time at QD32). The same check by hand; zod checks the rest.
    record = FlushRecord.parse({ ...(decoded as object), pieces: [] });
    record.pieces = pieces;
  } else {
    record = FlushRecord.parse(decoded);
  }
  if (record.pieces.length % 4 !== 0) {
    throw new Error(`flush record pieces must come in fours, got ${record.pieces.length}`);
  }
  return record;
}

/** What `z.number().int().nonnegative()` accepts: a safe integer of at least 0. */
function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

export function* flushPieces(record: FlushRecord): Generator<FlushPiece> {
  const flat = record.pieces;
  for (let index = 0; index < flat.length; index += 4) {
    yield {
      offset: flat[index]!,
      length: flat[index + 1]!,
      opNum: flat[index + 2]!,
      chunkOffset: flat[index + 3]!,
    };
  }
}
