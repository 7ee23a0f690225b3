// The journal's on-disk format: segment file names, the segment header and the record
// framing. Pure functions over bytes, no I/O, so that every rule of the format is tested
// without files. All integers are little-endian; op numbers are unsigned 64-bit on disk
// and must be safe integers (below 2^53) in memory.
//
//   segment-<first op number, 20 digits>.log
//
//   segment header (24 bytes)
//     0   8  magic "BLSTJRNL"
//     8   4  format version (2)
//     12  8  first op number: the op of the segment's first record
//     20  4  CRC32C of bytes 0..20
//
//   record (28 bytes + payload), repeated to the end of the file
//     0   4  marker "NOTE" (0x45544f4e)
//     4   4  payload length in bytes
//     8   8  op number
//     16  8  sync start op number (below)
//     24  4  CRC32C of bytes 0..24, continued over the payload
//     28  …  payload
//
//   the last segment only: zero bytes after the last record, to the end of the file (its
//   runway, journal.ts). Not part of any record: a zero marker is never a record's, so
//   the first zero byte where a record would start ends the records.
//
// The sync start of a record is the op of the first record written to its segment since
// the segment's last sync: the first op of its group commit, or the segment's first op
// when the commit rolled into this segment part way. So the records after one sync and up
// to the next all carry the same sync start, and each record carries either the sync
// start of the record before it or its own op (it begins a new sync region). A group
// commit's writes reach the disk in no particular order until its fdatasync returns (the
// page cache writes pages back as it likes), so after a crash a middle page of the last
// commit may be missing while a later one is there; the sync start lets recovery see that
// every intact record after such damage belongs to the same unsynced commit as the damaged
// one (a torn tail), rather than to a later one (then the damage was synced: corruption).
// Version 1 had no sync start and is refused.
//
// Decoding tells three kinds of bad bytes apart, because recovery treats them
// differently: "incomplete" (the file ends inside the header or record: a write that did
// not finish), "mismatch" (wrong magic, marker or checksum: bytes that were damaged or
// never fully written) and "inconsistent" (the checksum holds but the content is
// impossible, such as an unknown version: never the result of a torn write).

import { crc32c, crc32cCombine } from "@ballast/protocol";
import {
  formatVersion,
  payloadBytesMax,
  recordHeaderBytes,
  recordMarker,
  segmentHeaderBytes,
  segmentMagic,
  segmentNameDigits,
} from "./constants.ts";
import { assert } from "./errors.ts";

const twoToThe32 = 2 ** 32;

/** Where the record header's CRC32C sits; it covers the header bytes before it. */
const checksumOffset = recordHeaderBytes - 4;

/** Bytes that could not be decoded, and why (see the module header for the kinds). */
export interface Damage {
  kind: "incomplete" | "mismatch" | "inconsistent";
  reason: string;
}

export type Decoded<Value> = { kind: "valid"; value: Value } | Damage;

export interface SegmentHeader {
  formatVersion: number;
  firstOpNum: number;
}

export interface DecodedRecord {
  opNum: number;
  /** The op that began the record's sync region (see the module header); at most opNum. */
  syncStartOpNum: number;
  /** A view of the payload inside the decoded bytes (not a copy). */
  payload: Uint8Array;
  /** Offset just past the record. */
  endOffset: number;
}

const segmentNamePattern = new RegExp(`^segment-(\\d{${segmentNameDigits}})\\.log$`);

export function segmentFileName(firstOpNum: number): string {
  assert(Number.isSafeInteger(firstOpNum) && firstOpNum >= 0, `bad op number ${firstOpNum}`);
  return `segment-${String(firstOpNum).padStart(segmentNameDigits, "0")}.log`;
}

/**
 * The first op number a segment file name carries; undefined for a name that is not a
 * segment's, or whose number is not a safe integer (no journal writes such a name).
 */
export function parseSegmentFileName(name: string): number | undefined {
  const match = segmentNamePattern.exec(name);
  if (match === null) return undefined;
  const firstOpNum = Number(match[1]);
  return Number.isSafeInteger(firstOpNum) ? firstOpNum : undefined;
}

export function encodeSegmentHeader(firstOpNum: number): Uint8Array {
  const bytes = new Uint8Array(segmentHeaderBytes);
  const view = viewOf(bytes);
  bytes.set(segmentMagic, 0);
  view.setUint32(8, formatVersion, true);
  writeUint64(view, 12, firstOpNum);
  view.setUint32(20, crc32c(bytes.subarray(0, 20)), true);
  return bytes;
}

export function decodeSegmentHeader(bytes: Uint8Array): Decoded<SegmentHeader> {
  if (bytes.length < segmentHeaderBytes) {
    return {
      kind: "incomplete",
      reason: `the segment header is incomplete: ${bytes.length} of ${segmentHeaderBytes} bytes`,
    };
  }
  const view = viewOf(bytes);
  const magic = bytes.subarray(0, segmentMagic.length);
  if (!magic.every((byte, index) => byte === segmentMagic[index])) {
    return {
      kind: "mismatch",
      reason: `the segment magic is ${hex(magic)}, not ${hex(segmentMagic)}`,
    };
  }
  const checksumStored = view.getUint32(20, true);
  const checksumComputed = crc32c(bytes.subarray(0, 20));
  if (checksumStored !== checksumComputed) {
    return {
      kind: "mismatch",
      reason: `the segment header checksum is ${hex32(checksumStored)}, computed ${hex32(checksumComputed)}`,
    };
  }
  const version = view.getUint32(8, true);
  if (version !== formatVersion) {
    return {
      kind: "inconsistent",
      reason: `the segment has format version ${version}, and this build reads only version ${formatVersion}`,
    };
  }
  const firstOpNum = readUint64(view, 12);
  if (firstOpNum === undefined) {
    return {
      kind: "inconsistent",
      reason: `the segment's first op number ${readUint64Text(view, 12)} is not a safe integer`,
    };
  }
  return { kind: "valid", value: { formatVersion: version, firstOpNum } };
}

/**
 * The record's header and a copy of its payload, in one buffer ready to write. The sync
 * start defaults to the op itself: a record that begins its own sync region.
 */
export function encodeRecord(
  opNum: number,
  payload: Uint8Array,
  syncStartOpNum = opNum,
): Uint8Array {
  assert(payload.length <= payloadBytesMax, `payload of ${payload.length} bytes over the limit`);
  const bytes = new Uint8Array(recordHeaderBytes + payload.length);
  bytes.set(payload, recordHeaderBytes);
  // Checksum the copy that will be written, not the caller's buffer, which may change.
  return frameRecord(bytes, opNum, syncStartOpNum);
}

/**
 * Writes the record header into the first `recordHeaderBytes` of `framed`, whose rest is
 * the payload, and returns `framed`: the record in place, with no copy (the one pass the
 * head node's note encoding makes, see JournalRecord.framed in layout.ts). With `tail`,
 * the payload goes on with those bytes, in order (JournalRecord.tail): the header counts
 * and checksums them, and the caller writes them right after `framed`.
 */
export function frameRecord(
  framed: Uint8Array,
  opNum: number,
  syncStartOpNum = opNum,
  tail: readonly Uint8Array[] = noTail,
  tailChecksums?: readonly (number | undefined)[],
): Uint8Array {
  assert(Number.isSafeInteger(opNum) && opNum >= 0, `bad op number ${opNum}`);
  assert(
    Number.isSafeInteger(syncStartOpNum) && syncStartOpNum >= 0 && syncStartOpNum <= opNum,
    `bad sync start ${syncStartOpNum} for op ${opNum}`,
  );
  const payloadBytes = framed.length - recordHeaderBytes + bytesOf(tail);
  assert(
    framed.length >= recordHeaderBytes && payloadBytes <= payloadBytesMax,
    `a framed record of ${framed.length} bytes has no room for its header or is over the limit`,
  );
  const view = viewOf(framed);
  view.setUint32(0, recordMarker, true);
  view.setUint32(4, payloadBytes, true);
  writeUint64(view, 8, opNum);
  writeUint64(view, 16, syncStartOpNum);
  let checksum = crc32c(
    framed.subarray(recordHeaderBytes),
    crc32c(framed.subarray(0, checksumOffset)),
  );
  // A part whose CRC32C the caller knows is combined, not read again (JournalRecord).
  for (let index = 0; index < tail.length; index++) {
    const part = tail[index]!;
    const known = tailChecksums?.[index];
    checksum =
      known === undefined
        ? crc32c(part, checksum)
        : crc32cCombine(checksum, known, part.byteLength);
  }
  view.setUint32(checksumOffset, checksum, true);
  return framed;
}

const noTail: readonly Uint8Array[] = [];

/** Decodes the record that starts at `offset`; `bytes` ends where the file ends. */
export function decodeRecordAt(bytes: Uint8Array, offset: number): Decoded<DecodedRecord> {
  const available = bytes.length - offset;
  if (available < recordHeaderBytes) {
    return {
      kind: "incomplete",
      reason: `the record header is incomplete: ${available} of ${recordHeaderBytes} bytes`,
    };
  }
  const view = viewOf(bytes, offset);
  const marker = view.getUint32(0, true);
  if (marker !== recordMarker) {
    return {
      kind: "mismatch",
      reason: `the record marker is ${hex32(marker)}, not ${hex32(recordMarker)}`,
    };
  }
  const payloadBytes = view.getUint32(4, true);
  if (payloadBytes > payloadBytesMax) {
    return {
      kind: "mismatch",
      reason: `the record's payload length ${payloadBytes} is over the limit of ${payloadBytesMax} bytes`,
    };
  }
  const endOffset = offset + recordHeaderBytes + payloadBytes;
  if (endOffset > bytes.length) {
    return {
      kind: "incomplete",
      reason: `the record of ${payloadBytes} payload bytes would end at offset ${endOffset}, past the end of the file at ${bytes.length}`,
    };
  }
  const payload = bytes.subarray(offset + recordHeaderBytes, endOffset);
  const checksumStored = view.getUint32(checksumOffset, true);
  const checksumComputed = crc32c(payload, crc32c(bytes.subarray(offset, offset + checksumOffset)));
  if (checksumStored !== checksumComputed) {
    return {
      kind: "mismatch",
      reason: `the record checksum is ${hex32(checksumStored)}, computed ${hex32(checksumComputed)}`,
    };
  }
  const opNum = readUint64(view, 8);
  if (opNum === undefined) {
    return {
      kind: "inconsistent",
      reason: `the record's op number ${readUint64Text(view, 8)} is not a safe integer`,
    };
  }
  const syncStartOpNum = readUint64(view, 16);
  if (syncStartOpNum === undefined || syncStartOpNum > opNum) {
    return {
      kind: "inconsistent",
      reason: `the record of op ${opNum} gives sync start ${readUint64Text(view, 16)}, which is not an op at or before it`,
    };
  }
  return { kind: "valid", value: { opNum, syncStartOpNum, payload, endOffset } };
}

/** Bytes a record of this payload takes on disk. */
export function recordBytes(payloadBytes: number): number {
  return recordHeaderBytes + payloadBytes;
}

/** Total length of a list of buffers. */
export function bytesOf(buffers: readonly Uint8Array[]): number {
  let bytes = 0;
  for (const buffer of buffers) bytes += buffer.length;
  return bytes;
}

function viewOf(bytes: Uint8Array, offset = 0): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, bytes.length - offset);
}

function writeUint64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % twoToThe32, true);
  view.setUint32(offset + 4, Math.floor(value / twoToThe32), true);
}

function readUint64(view: DataView, offset: number): number | undefined {
  const value = view.getUint32(offset + 4, true) * twoToThe32 + view.getUint32(offset, true);
  return Number.isSafeInteger(value) ? value : undefined;
}

function readUint64Text(view: DataView, offset: number): string {
  return view.getBigUint64(offset, true).toString();
}

function hex(bytes: Uint8Array): string {
  return `0x${Buffer.from(bytes).toString("hex")}`;
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}
