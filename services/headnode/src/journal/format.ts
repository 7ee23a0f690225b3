// The journal's on-disk format: segment file names, the segment header and the record
// framing. Pure functions over bytes, no I/O, so that every rule of the format is tested
// without files. All integers are little-endian; op numbers are unsigned 64-bit on disk
// and must be safe integers (below 2^53) in memory.
//
//   segment-<first op number, 20 digits>.log
//
//   segment header (version 3, 32 bytes)
//     0   8  magic "BLSTJRNL"
//     8   4  format version (3)
//     12  8  first op number: the op of the segment's first record
//     20  8  nonce: random bytes drawn when the segment is created (below)
//     28  4  CRC32C of bytes 0..28
//
//   record (28 bytes + payload), repeated to the end of the file
//     0   4  marker "NOTE" (0x45544f4e)
//     4   4  payload length in bytes
//     8   8  op number
//     16  8  sync start op number (below)
//     24  4  CRC32C of the segment's nonce, then bytes 0..24, then the payload
//     28  …  payload
//
//   the last segment only: zero bytes after the last record, to the end of the file (its
//   runway, journal.ts). Not part of any record: a zero marker is never a record's, so
//   the first zero byte where a record would start ends the records.
//
// The nonce ties a record to the segment it was written in. A payload is a tenant's bytes
// (a note's data), and a block device stores anything, journals included: without the
// nonce, bytes inside a payload can hold a record that checks out, header and CRC32C, and
// recovery, searching the bytes after damage for an intact record, would take that copy
// for one (recovery.ts). With it, such bytes check out only if whoever wrote them knew the
// nonce of the segment they would land in, which is drawn after the data exists and never
// leaves the head node; the same goes for a record copied from another segment, or the
// bytes of an older file on blocks a segment reuses. The nonce enters the CRC32C as its
// starting value (the CRC32C of the nonce, computed once per segment: the record seed),
// so it costs nothing per record. Only the 32 bits of that seed count: bytes made without
// the nonce pass with odds of 2^-32 per try, the odds of random damage passing a CRC32C.
//
// The segment header of version 3 is written and synced on its own, before any record of
// the segment (journal.ts), so that a crash never tears it with the records after it:
// recovery, which cannot check a record without its segment's nonce, relies on that.
//
// Version 2, the version before, is still read: its header is 24 bytes (no nonce, its
// CRC32C at 20), its records' CRC32C covers bytes 0..24 and the payload only (a record
// seed of 0), and its header was written in one write with the first records. Recovery
// reads each segment by its own version; the journal appends only to segments of this
// version, so a journal written by an older build goes on in a new segment (layout.ts).
// Version 1 had no sync start and is refused.
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
//
// Decoding tells three kinds of bad bytes apart, because recovery treats them
// differently: "incomplete" (the file ends inside the header or record: a write that did
// not finish), "mismatch" (wrong magic, marker or checksum: bytes that were damaged or
// never fully written) and "inconsistent" (the checksum holds but the content is
// impossible, such as an unknown version: never the result of a torn write).

import { crc32c, crc32cCombine } from "@ballast/protocol";
import {
  formatVersion,
  formatVersionWithoutNonce,
  payloadBytesMax,
  recordHeaderBytes,
  recordMarker,
  segmentHeaderBytes,
  segmentHeaderBytesWithoutNonce,
  segmentMagic,
  segmentNameDigits,
  segmentNonceBytes,
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
  /**
   * The starting value of every record's CRC32C in the segment: the CRC32C of its nonce
   * (version 3), or 0 (version 2, no nonce).
   */
  recordSeed: number;
  /** The header's length: where the segment's first record starts. */
  bytes: number;
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

/** The record seed (SegmentHeader.recordSeed) of a segment of this version with this nonce. */
export function recordSeedOf(nonce: Uint8Array): number {
  assert(nonce.length === segmentNonceBytes, `a nonce of ${nonce.length} bytes`);
  return crc32c(nonce);
}

/** The header of a new segment, of this build's version, with the nonce drawn for it. */
export function encodeSegmentHeader(firstOpNum: number, nonce: Uint8Array): Uint8Array {
  assert(nonce.length === segmentNonceBytes, `a nonce of ${nonce.length} bytes`);
  const bytes = new Uint8Array(segmentHeaderBytes);
  const view = viewOf(bytes);
  bytes.set(segmentMagic, 0);
  view.setUint32(8, formatVersion, true);
  writeUint64(view, 12, firstOpNum);
  bytes.set(nonce, 20);
  view.setUint32(28, crc32c(bytes.subarray(0, 28)), true);
  return bytes;
}

/** The header's length in each version read; its CRC32C is its last 4 bytes. */
const headerBytesOfVersion = new Map([
  [formatVersion, segmentHeaderBytes],
  [formatVersionWithoutNonce, segmentHeaderBytesWithoutNonce],
]);

/** Where the version field ends: the bytes needed to know the header's length. */
const versionEnd = 12;

export function decodeSegmentHeader(bytes: Uint8Array): Decoded<SegmentHeader> {
  const magic = bytes.subarray(0, segmentMagic.length);
  if (bytes.length >= segmentMagic.length && !magic.every((byte, i) => byte === segmentMagic[i])) {
    return {
      kind: "mismatch",
      reason: `the segment magic is ${hex(magic)}, not ${hex(segmentMagic)}`,
    };
  }
  const versionRead = bytes.length >= versionEnd ? viewOf(bytes).getUint32(8, true) : undefined;
  const expectedBytes = headerBytesOfVersion.get(versionRead ?? formatVersion);
  if (bytes.length < (expectedBytes ?? versionEnd)) {
    return {
      kind: "incomplete",
      reason: `the segment header is incomplete: ${bytes.length} of ${expectedBytes ?? segmentHeaderBytes} bytes`,
    };
  }
  const view = viewOf(bytes);
  const version = versionRead!;
  if (expectedBytes === undefined) {
    // An unknown version: intact (inconsistent) if its checksum holds where a version
    // read here keeps it, else damaged bytes, such as a version field that was garbled.
    const intact = [...headerBytesOfVersion.values()].some(
      (length) => bytes.length >= length && headerChecksumHolds(bytes, length),
    );
    if (!intact) {
      return { kind: "mismatch", reason: `the segment header checksum does not hold` };
    }
    return {
      kind: "inconsistent",
      reason: `the segment has format version ${version}, and this build reads only versions ${formatVersionWithoutNonce} and ${formatVersion}`,
    };
  }
  const checksumOffsetOfHeader = expectedBytes - 4;
  const checksumStored = view.getUint32(checksumOffsetOfHeader, true);
  const checksumComputed = crc32c(bytes.subarray(0, checksumOffsetOfHeader));
  if (checksumStored !== checksumComputed) {
    return {
      kind: "mismatch",
      reason: `the segment header checksum is ${hex32(checksumStored)}, computed ${hex32(checksumComputed)}`,
    };
  }
  const firstOpNum = readUint64(view, 12);
  if (firstOpNum === undefined) {
    return {
      kind: "inconsistent",
      reason: `the segment's first op number ${readUint64Text(view, 12)} is not a safe integer`,
    };
  }
  const recordSeed =
    version === formatVersion ? recordSeedOf(bytes.subarray(20, 20 + segmentNonceBytes)) : 0;
  return {
    kind: "valid",
    value: { formatVersion: version, firstOpNum, recordSeed, bytes: expectedBytes },
  };
}

function headerChecksumHolds(bytes: Uint8Array, headerBytes: number): boolean {
  const stored = viewOf(bytes).getUint32(headerBytes - 4, true);
  return stored === crc32c(bytes.subarray(0, headerBytes - 4));
}

/**
 * The record's header and a copy of its payload, in one buffer ready to write into the
 * segment whose record seed is `recordSeed`. The sync start defaults to the op itself: a
 * record that begins its own sync region.
 */
export function encodeRecord(
  recordSeed: number,
  opNum: number,
  payload: Uint8Array,
  syncStartOpNum = opNum,
): Uint8Array {
  assert(payload.length <= payloadBytesMax, `payload of ${payload.length} bytes over the limit`);
  const bytes = new Uint8Array(recordHeaderBytes + payload.length);
  bytes.set(payload, recordHeaderBytes);
  // Checksum the copy that will be written, not the caller's buffer, which may change.
  return frameRecord(recordSeed, bytes, opNum, syncStartOpNum);
}

/**
 * Writes the record header into the first `recordHeaderBytes` of `framed`, whose rest is
 * the payload, and returns `framed`: the record in place, with no copy (the one pass the
 * head node's note encoding makes, see JournalRecord.framed in layout.ts). With `tail`,
 * the payload goes on with those bytes, in order (JournalRecord.tail): the header counts
 * and checksums them, and the caller writes them right after `framed`. The checksum
 * starts from `recordSeed`, the record seed of the segment the record goes to.
 */
export function frameRecord(
  recordSeed: number,
  framed: Uint8Array,
  opNum: number,
  syncStartOpNum = opNum,
  tail: readonly Uint8Array[] = noTail,
  tailChecksums?: readonly (number | undefined)[],
): Uint8Array {
  // Each record of every append passes here: the messages are built only on failure.
  if (!Number.isSafeInteger(opNum) || opNum < 0) assert(false, `bad op number ${opNum}`);
  if (!Number.isSafeInteger(syncStartOpNum) || syncStartOpNum < 0 || syncStartOpNum > opNum) {
    assert(false, `bad sync start ${syncStartOpNum} for op ${opNum}`);
  }
  const payloadBytes = framed.length - recordHeaderBytes + bytesOf(tail);
  if (framed.length < recordHeaderBytes || payloadBytes > payloadBytesMax) {
    assert(
      false,
      `a framed record of ${framed.length} bytes has no room for its header or is over the limit`,
    );
  }
  const view = viewOf(framed);
  view.setUint32(0, recordMarker, true);
  view.setUint32(4, payloadBytes, true);
  writeUint64(view, 8, opNum);
  writeUint64(view, 16, syncStartOpNum);
  let checksum = crc32c(
    framed.subarray(recordHeaderBytes),
    crc32c(framed.subarray(0, checksumOffset), recordSeed),
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

/**
 * Decodes the record that starts at `offset` of a segment whose record seed is
 * `recordSeed`; `bytes` ends where the file ends.
 */
export function decodeRecordAt(
  bytes: Uint8Array,
  offset: number,
  recordSeed: number,
): Decoded<DecodedRecord> {
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
  const checksumComputed = crc32c(
    payload,
    crc32c(bytes.subarray(offset, offset + checksumOffset), recordSeed),
  );
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
