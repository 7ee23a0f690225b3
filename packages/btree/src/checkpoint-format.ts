// The checkpoint format, version 1: a tree's extents in offset order, as a stream of
// frames that a writer produces and a reader consumes one at a time, so that neither
// holds more than one block besides the tree itself. All integers are little-endian.
//
//   header   36 bytes  magic "BALLASTX" (8), format version u32, flags u32 (zero),
//                      op number u64 (the last op the tree reflects), extent count u64,
//                      checksum u32
//   block    12 bytes  record count u32 (at least 1), payload bytes u32, checksum u32,
//            + payload that many bytes of records
//   ...
//   trailer  24 bytes  zero u32 (where a block has its record count), extent count u64,
//                      mapped bytes u64, checksum u32
//
// A record is one extent: varint gap from the end of the previous extent (from 0 for the
// first), varint length, varint op number, one byte of location code, and for journal
// and chunk locations two varints, id then offset. Sorted, non-overlapping extents make
// every gap non-negative, and a gap is far smaller than an absolute offset.
//
// Every checksum field holds the CRC-32C of all bytes of the stream before it, checksum
// fields excluded, so a single running checksum verifies each block as it arrives and
// also catches blocks that were dropped, repeated or reordered; the trailer's covers the
// whole stream. The counts in the header and trailer must agree with the records.

import { varintBytesMax } from "./varint.ts";

export const checkpointMagic: Uint8Array = new TextEncoder().encode("BALLASTX");

export const checkpointFormatVersion = 1;

/** What a checkpoint records besides the extents. */
export interface CheckpointMeta {
  /** The op number the tree reflects: every op up to it applied, none after it. */
  readonly opNum: number;
}

export const headerLayout = {
  magic: 0,
  version: 8,
  flags: 12,
  opNum: 16,
  extentCount: 24,
  checksum: 32,
  bytes: 36,
} as const;

export const blockLayout = {
  recordCount: 0,
  payloadBytes: 4,
  checksum: 8,
  bytes: 12,
} as const;

export const trailerLayout = {
  marker: 0,
  extentCount: 4,
  mappedBytes: 12,
  checksum: 20,
  bytes: 24,
} as const;

/** The longest record: five varints and the location code. */
export const recordBytesMax = 5 * varintBytesMax + 1;

const twoTo32 = 0x1_0000_0000;

/** Writes a safe integer as an unsigned 64-bit little-endian field. */
export function setUint64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % twoTo32, true);
  view.setUint32(offset + 4, Math.floor(value / twoTo32), true);
}

/** Reads an unsigned 64-bit little-endian field; above 2^53 - 1 it returns -1. */
export function getUint64(view: DataView, offset: number): number {
  const value = view.getUint32(offset + 4, true) * twoTo32 + view.getUint32(offset, true);
  return Number.isSafeInteger(value) ? value : -1;
}

/** `value` as eight hex digits, for messages about checksums and flags. */
export function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}
