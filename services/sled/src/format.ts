// The on-disk format of a sled device, and its pure encoders and decoders. No I/O here:
// the device module reads and writes these byte images.
//
// A device is one preallocated file of fixed size, laid out as:
//
//   offset 0            superblock, copy A (4 KiB)
//   offset 4 KiB        superblock, copy B (4 KiB)
//   offset 8 KiB        slot table: slotCount records of 512 bytes (one per 64 KiB of
//                       device), padded to a whole block. This is the allocation map.
//   dataOffset          data region: dataBlocks blocks of 4 KiB, to the end of the file
//
// Superblock (written once, when the device is formatted, and never again):
//
//   0   8  magic "BLSTSLED"          64  8  created at (ms since the epoch)
//   8   4  format version            72 16  device uuid
//   12  4  device index               88  1  sled id length
//   16  4  device count              89 63  sled id (ASCII)
//   20  4  block bytes (4096)         …      zero
//   24  4  slot bytes (512)         4092 4  CRC32C of bytes 0‥4091
//   28  4  slot count
//   32  8  device bytes
//   40  8  slot table offset
//   48  8  data offset
//   56  8  data blocks
//
// Slot (one per stored object; all zeros when free):
//
//   0   4  magic "BSLT"              24  8  data bytes
//   4   1  record version (1)        32  8  extent start (block of the data region)
//   5   1  kind (1 chunk, 2 blob)    40  4  extent blocks
//   6   1  key length                48 200 key: chunk id or blob key (ASCII)
//   7   1  owner volume length      248 63  owner volume (chunks)
//   8   8  generation                 …      zero
//   16  4  owner partition          508  4  CRC32C of bytes 0‥507
//   20  4  CRC32C of the whole data
//
// Extent (where the slot points): a header, then the data in whole blocks. The header is
// a 512-byte fixed part laid out as the slot (magic "BEXT", and at 32 the block count
// instead of the extent's place), then one CRC32C per data block, padded to a whole
// block (a 4 MiB chunk has a two-block header); its own CRC32C (bytes 508‥511) covers
// the fixed part and the CRC table. Block i of the data holds bytes [4096 i, 4096 (i + 1)) of the object and its
// CRC covers exactly those bytes (the last block's only the bytes the object has), so a
// 4 KiB read verifies one block and never reads the whole object.
//
// Integers are little-endian; 8-byte fields hold safe integers (below 2^53).
//
// Why a torn or half-written record is never trusted: every record carries a CRC32C
// over all of its bytes, checked on every read. A slot is one sector, written in place
// only when it is free (a new object) or being freed (a delete): a torn slot write is
// either the old or the new sector, or fails its CRC with one end of the sector zero
// (`inspectDamagedSlot`), and recovery may read it as free, because neither the write
// nor the delete had been acknowledged. A slot that fails its CRC otherwise is damage,
// not free space (store.ts says what recovery does with it). The extent
// header repeats the slot's generation, key and size, so a slot that points at data of
// another object (stale or misdirected) is caught on the first read. The superblock is
// written to a temporary file that is renamed into place only after it is durable, and
// kept twice, so one damaged copy is survivable and a damaged pair is refused.

import { crc32c } from "@ballast/protocol";
import {
  blockBytes,
  deviceBytesPerSlot,
  deviceFormatVersion,
  extentHeaderFixedBytes,
  slotBytes,
  slotCountMin,
  superblockBytes,
  superblockCopies,
} from "./constants.ts";
import { assert } from "./errors.ts";

const superblockMagic = Buffer.from("BLSTSLED", "ascii");
const slotMagic = 0x544c_5342; // "BSLT" little-endian
const extentMagic = 0x5458_4542; // "BEXT" little-endian
const slotRecordVersion = 1;
const extentHeaderVersion = 1;
const objectFieldsOffset = 5;
const checksumOffsetInSuperblock = superblockBytes - 4;
const checksumOffsetInSlot = slotBytes - 4;
const checksumOffsetInHeader = extentHeaderFixedBytes - 4;
const sledIdBytesMax = 63;
const keyBytesMax = 200;
const volumeBytesMax = 63;

export type ObjectKind = "chunk" | "blob";
const kindCodes: Record<ObjectKind, number> = { chunk: 1, blob: 2 };

function kindOf(code: number): ObjectKind | undefined {
  if (code === kindCodes.chunk) return "chunk";
  if (code === kindCodes.blob) return "blob";
  return undefined;
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

// ---------------------------------------------------------------------------------------
// Device layout

export interface DeviceLayout {
  deviceBytes: number;
  slotCount: number;
  slotTableOffset: number;
  dataOffset: number;
  dataBlocks: number;
}

/** Where everything sits on a new device of `deviceBytes` (a multiple of the block size). */
export function deviceLayout(deviceBytes: number): DeviceLayout {
  assert(deviceBytes % blockBytes === 0, `device size ${deviceBytes} is not whole blocks`);
  const slotCount = Math.max(slotCountMin, Math.floor(deviceBytes / deviceBytesPerSlot));
  const slotTableOffset = superblockBytes * superblockCopies;
  const dataOffset = slotTableOffset + alignUp(slotCount * slotBytes, blockBytes);
  const dataBlocks = Math.floor((deviceBytes - dataOffset) / blockBytes);
  assert(dataBlocks > 0, `a device of ${deviceBytes} bytes has no room for data`);
  return { deviceBytes, slotCount, slotTableOffset, dataOffset, dataBlocks };
}

/** Device byte offset of slot `slot`. */
export function slotOffset(layout: DeviceLayout, slot: number): number {
  return layout.slotTableOffset + slot * slotBytes;
}

/** Device byte offset of block `block` of the data region. */
export function blockOffset(layout: DeviceLayout, block: number): number {
  return layout.dataOffset + block * blockBytes;
}

// ---------------------------------------------------------------------------------------
// Superblock

export interface Superblock extends DeviceLayout {
  formatVersion: number;
  sledId: string;
  deviceIndex: number;
  deviceCount: number;
  blockBytes: number;
  slotBytes: number;
  createdAtMs: number;
  /** 32 hex digits. */
  deviceUuid: string;
}

export type SuperblockDecoding =
  | { ok: true; superblock: Superblock }
  | { ok: false; problem: "blank" | "not-ballast" | "checksum" | "version"; detail: string };

export function encodeSuperblock(superblock: Superblock): Buffer {
  const buffer = Buffer.alloc(superblockBytes);
  superblockMagic.copy(buffer, 0);
  buffer.writeUInt32LE(superblock.formatVersion, 8);
  buffer.writeUInt32LE(superblock.deviceIndex, 12);
  buffer.writeUInt32LE(superblock.deviceCount, 16);
  buffer.writeUInt32LE(superblock.blockBytes, 20);
  buffer.writeUInt32LE(superblock.slotBytes, 24);
  buffer.writeUInt32LE(superblock.slotCount, 28);
  writeUint64(buffer, 32, superblock.deviceBytes);
  writeUint64(buffer, 40, superblock.slotTableOffset);
  writeUint64(buffer, 48, superblock.dataOffset);
  writeUint64(buffer, 56, superblock.dataBlocks);
  writeUint64(buffer, 64, superblock.createdAtMs);
  assert(/^[0-9a-f]{32}$/.test(superblock.deviceUuid), "device uuid must be 32 hex digits");
  Buffer.from(superblock.deviceUuid, "hex").copy(buffer, 72);
  writeString(buffer, 88, 89, superblock.sledId, sledIdBytesMax);
  buffer.writeUInt32LE(
    crc32c(buffer.subarray(0, checksumOffsetInSuperblock)),
    checksumOffsetInSuperblock,
  );
  return buffer;
}

export function decodeSuperblock(buffer: Uint8Array): SuperblockDecoding {
  const bytes = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  assert(bytes.byteLength === superblockBytes, `a superblock is ${superblockBytes} bytes`);
  if (bytes.every((byte) => byte === 0)) {
    return { ok: false, problem: "blank", detail: "the superblock is all zeros" };
  }
  if (!bytes.subarray(0, 8).equals(superblockMagic)) {
    return {
      ok: false,
      problem: "not-ballast",
      detail: `it does not start with the Ballast sled magic (found ${JSON.stringify(bytes.subarray(0, 8).toString("latin1"))})`,
    };
  }
  const stored = bytes.readUInt32LE(checksumOffsetInSuperblock);
  const computed = crc32c(bytes.subarray(0, checksumOffsetInSuperblock));
  if (stored !== computed) {
    return {
      ok: false,
      problem: "checksum",
      detail: `its checksum is ${hex(stored)}, the bytes give ${hex(computed)} (torn or damaged)`,
    };
  }
  const formatVersion = bytes.readUInt32LE(8);
  if (formatVersion !== deviceFormatVersion) {
    return {
      ok: false,
      problem: "version",
      detail: `it has format version ${formatVersion}; this sled reads version ${deviceFormatVersion}`,
    };
  }
  return {
    ok: true,
    superblock: {
      formatVersion,
      deviceIndex: bytes.readUInt32LE(12),
      deviceCount: bytes.readUInt32LE(16),
      blockBytes: bytes.readUInt32LE(20),
      slotBytes: bytes.readUInt32LE(24),
      slotCount: bytes.readUInt32LE(28),
      deviceBytes: readUint64(bytes, 32),
      slotTableOffset: readUint64(bytes, 40),
      dataOffset: readUint64(bytes, 48),
      dataBlocks: readUint64(bytes, 56),
      createdAtMs: readUint64(bytes, 64),
      deviceUuid: bytes.subarray(72, 88).toString("hex"),
      sledId: readString(bytes, 88, 89),
    },
  };
}

// ---------------------------------------------------------------------------------------
// Objects: what a slot and an extent header both say

export interface ChunkOwner {
  volume: string;
  partition: number;
}

/** An object as the allocation map records it. */
export interface SlotRecord {
  kind: ObjectKind;
  /** Chunk id or blob key. */
  key: string;
  /** Chunks only. */
  owner: ChunkOwner | undefined;
  /** Sled-wide, increasing: tells a slot's own extent from stale data in the same place. */
  generation: number;
  dataBytes: number;
  /** CRC32C of the whole data. */
  dataChecksum: number;
  /** First block of the extent in the data region, and its length in blocks. */
  start: number;
  blocks: number;
}

export type SlotDecoding =
  | { state: "empty" }
  | { state: "damaged"; detail: string; inspection: DamagedSlot }
  | { state: "used"; record: SlotRecord };

export function encodeSlot(record: SlotRecord): Buffer {
  const buffer = Buffer.alloc(slotBytes);
  buffer.writeUInt32LE(slotMagic, 0);
  buffer.writeUInt8(slotRecordVersion, 4);
  writeObjectFields(buffer, record);
  writeUint64(buffer, 32, record.start);
  buffer.writeUInt32LE(record.blocks, 40);
  buffer.writeUInt32LE(crc32c(buffer.subarray(0, checksumOffsetInSlot)), checksumOffsetInSlot);
  return buffer;
}

export function decodeSlot(buffer: Uint8Array): SlotDecoding {
  const decoding = decodeSlotChecked(buffer);
  if (decoding.state !== "damaged") return decoding;
  return { ...decoding, inspection: inspectDamagedSlot(buffer) };
}

function decodeSlotChecked(
  buffer: Uint8Array,
):
  | { state: "empty" }
  | { state: "damaged"; detail: string }
  | { state: "used"; record: SlotRecord } {
  const bytes = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  assert(bytes.byteLength === slotBytes, `a slot is ${slotBytes} bytes`);
  if (bytes.every((byte) => byte === 0)) return { state: "empty" };
  if (bytes.readUInt32LE(0) !== slotMagic) {
    return { state: "damaged", detail: "it does not start with the slot magic" };
  }
  const stored = bytes.readUInt32LE(checksumOffsetInSlot);
  const computed = crc32c(bytes.subarray(0, checksumOffsetInSlot));
  if (stored !== computed) {
    return {
      state: "damaged",
      detail: `its checksum is ${hex(stored)}, the bytes give ${hex(computed)}`,
    };
  }
  if (bytes.readUInt8(4) !== slotRecordVersion) {
    return { state: "damaged", detail: `record version ${bytes.readUInt8(4)} is unknown` };
  }
  const fields = readObjectFields(bytes);
  if (typeof fields === "string") return { state: "damaged", detail: fields };
  return {
    state: "used",
    record: { ...fields, start: readUint64(bytes, 32), blocks: bytes.readUInt32LE(40) },
  };
}

/**
 * What a slot that fails its checks still says, read without trusting its CRC.
 *
 * `torn` is true when the sector is what a torn write between a record and a free (zero)
 * slot leaves: its magic or its CRC field reads as zeros. A slot is written only over a
 * free slot (a new object) or with zeros (a delete), so a write cut inside the sector
 * leaves one end of it zero. Neither such write was acknowledged, so such a slot may
 * read as free. Anything else (a nonzero magic and CRC that do not check) is damage to a
 * record that was once whole.
 *
 * `place` is the extent the slot claims and `generation` its object's generation, when
 * those fields are in range; recovery trusts them only if the extent header there agrees
 * (see store.ts).
 */
export interface DamagedSlot {
  torn: boolean;
  place: { start: number; blocks: number } | undefined;
  generation: number | undefined;
  /** The key and kind the slot names, when those fields still decode. */
  named: { kind: ObjectKind; key: string } | undefined;
}

export function inspectDamagedSlot(buffer: Uint8Array): DamagedSlot {
  const bytes = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  assert(bytes.byteLength === slotBytes, `a slot is ${slotBytes} bytes`);
  const torn = bytes.readUInt32LE(0) === 0 || bytes.readUInt32LE(checksumOffsetInSlot) === 0;
  const generation = bytes.readUInt32LE(12) * 2 ** 32 + bytes.readUInt32LE(8);
  const start = bytes.readUInt32LE(36) * 2 ** 32 + bytes.readUInt32LE(32);
  const blocks = bytes.readUInt32LE(40);
  const place = Number.isSafeInteger(start) && blocks > 0 ? { start, blocks } : undefined;
  const fields = readObjectFields(bytes);
  const named =
    typeof fields === "string" || !/^[\x21-\x7e]+$/.test(fields.key)
      ? undefined
      : { kind: fields.kind, key: fields.key };
  return {
    torn,
    place,
    generation: Number.isSafeInteger(generation) && generation > 0 ? generation : undefined,
    named,
  };
}

// ---------------------------------------------------------------------------------------
// Extents

/** Data blocks of an object of `dataBytes` bytes. */
export function dataBlockCount(dataBytes: number): number {
  return Math.ceil(dataBytes / blockBytes);
}

/** Bytes of the header (fixed part and CRC table) of an object of `dataBytes` bytes. */
export function extentHeaderBytes(dataBytes: number): number {
  return alignUp(extentHeaderFixedBytes + 4 * dataBlockCount(dataBytes), blockBytes);
}

/** Blocks of the whole extent (header and data) of an object of `dataBytes` bytes. */
export function extentBlocks(dataBytes: number): number {
  return extentHeaderBytes(dataBytes) / blockBytes + dataBlockCount(dataBytes);
}

/** CRC32C of each 4 KiB block of `data` (the last one over the bytes it has). */
export function blockChecksums(data: Uint8Array): Uint32Array {
  const checksums = new Uint32Array(dataBlockCount(data.byteLength));
  for (let block = 0; block < checksums.length; block++) {
    checksums[block] = crc32c(data.subarray(block * blockBytes, (block + 1) * blockBytes));
  }
  return checksums;
}

export interface ExtentHeader {
  kind: ObjectKind;
  key: string;
  owner: ChunkOwner | undefined;
  generation: number;
  dataBytes: number;
  dataChecksum: number;
  blockChecksums: Uint32Array;
}

export type ExtentHeaderDecoding =
  | { ok: true; header: ExtentHeader }
  | { ok: false; detail: string };

export function encodeExtentHeader(header: ExtentHeader): Buffer {
  const blocks = dataBlockCount(header.dataBytes);
  assert(header.blockChecksums.length === blocks, "one CRC per data block");
  const buffer = Buffer.alloc(extentHeaderBytes(header.dataBytes));
  buffer.writeUInt32LE(extentMagic, 0);
  buffer.writeUInt8(extentHeaderVersion, 4);
  writeObjectFields(buffer, header);
  buffer.writeUInt32LE(blocks, 32);
  const table = buffer.subarray(extentHeaderFixedBytes, extentHeaderFixedBytes + 4 * blocks);
  for (let block = 0; block < blocks; block++) {
    table.writeUInt32LE(header.blockChecksums[block]!, block * 4);
  }
  buffer.writeUInt32LE(headerChecksum(buffer, blocks), checksumOffsetInHeader);
  return buffer;
}

/** Decodes a header read from disk; `buffer` holds at least the header's bytes. */
export function decodeExtentHeader(buffer: Uint8Array): ExtentHeaderDecoding {
  const bytes = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (bytes.byteLength < extentHeaderFixedBytes) {
    return { ok: false, detail: "the header is shorter than its fixed part" };
  }
  if (bytes.readUInt32LE(0) !== extentMagic) {
    return { ok: false, detail: "the extent does not start with the header magic" };
  }
  if (bytes.readUInt8(4) !== extentHeaderVersion) {
    return { ok: false, detail: `header version ${bytes.readUInt8(4)} is unknown` };
  }
  const blocks = bytes.readUInt32LE(32);
  if (extentHeaderFixedBytes + 4 * blocks > bytes.byteLength) {
    return { ok: false, detail: `the header claims ${blocks} blocks, more than it has room for` };
  }
  const stored = bytes.readUInt32LE(checksumOffsetInHeader);
  const computed = headerChecksum(bytes, blocks);
  if (stored !== computed) {
    return {
      ok: false,
      detail: `the header's checksum is ${hex(stored)}, its bytes give ${hex(computed)}`,
    };
  }
  const fields = readObjectFields(bytes);
  if (typeof fields === "string") return { ok: false, detail: fields };
  if (dataBlockCount(fields.dataBytes) !== blocks) {
    return { ok: false, detail: `the header's size and block count disagree` };
  }
  const blockChecksumTable = new Uint32Array(blocks);
  for (let block = 0; block < blocks; block++) {
    blockChecksumTable[block] = bytes.readUInt32LE(extentHeaderFixedBytes + block * 4);
  }
  return { ok: true, header: { ...fields, blockChecksums: blockChecksumTable } };
}

/** Why a header does not belong to the object its slot describes, or undefined if it does. */
export function headerMismatch(header: ExtentHeader, record: SlotRecord): string | undefined {
  if (header.generation !== record.generation) {
    return `the extent holds generation ${header.generation}, the slot says ${record.generation} (stale or misdirected data)`;
  }
  if (header.kind !== record.kind || header.key !== record.key) {
    return `the extent holds ${header.kind} ${JSON.stringify(header.key)}, the slot says ${record.kind} ${JSON.stringify(record.key)}`;
  }
  if (header.dataBytes !== record.dataBytes || header.dataChecksum !== record.dataChecksum) {
    return "the extent's size or checksum differs from the slot's";
  }
  if (
    header.owner?.volume !== record.owner?.volume ||
    header.owner?.partition !== record.owner?.partition
  ) {
    return "the extent's owner differs from the slot's";
  }
  return undefined;
}

function headerChecksum(bytes: Buffer, blocks: number): number {
  const fixed = crc32c(bytes.subarray(0, checksumOffsetInHeader));
  return crc32c(bytes.subarray(extentHeaderFixedBytes, extentHeaderFixedBytes + 4 * blocks), fixed);
}

// ---------------------------------------------------------------------------------------
// Fields shared by slots and extent headers, at the same offsets in both (see the table
// at the top): kind at 5, key length 6, owner length 7, generation 8, partition 16, data
// CRC 20, data bytes 24, key 48, owner volume 248.

type ObjectFields = Omit<SlotRecord, "start" | "blocks">;

function writeObjectFields(buffer: Buffer, fields: ObjectFields): void {
  const at = objectFieldsOffset;
  buffer.writeUInt8(kindCodes[fields.kind], at);
  writeString(buffer, at + 1, 48, fields.key, keyBytesMax);
  if (fields.owner !== undefined) {
    writeString(buffer, at + 2, 248, fields.owner.volume, volumeBytesMax);
    buffer.writeUInt32LE(fields.owner.partition, 16);
  }
  writeUint64(buffer, 8, fields.generation);
  buffer.writeUInt32LE(fields.dataChecksum >>> 0, 20);
  writeUint64(buffer, 24, fields.dataBytes);
}

function readObjectFields(bytes: Buffer): ObjectFields | string {
  const at = objectFieldsOffset;
  const kind = kindOf(bytes.readUInt8(at));
  if (kind === undefined) return `kind code ${bytes.readUInt8(at)} is unknown`;
  const keyLength = bytes.readUInt8(at + 1);
  const ownerLength = bytes.readUInt8(at + 2);
  if (keyLength === 0 || keyLength > keyBytesMax) return `key length ${keyLength} is invalid`;
  if (ownerLength > volumeBytesMax) return `owner length ${ownerLength} is invalid`;
  if ((kind === "chunk") !== ownerLength > 0) return "a chunk needs an owner and a blob has none";
  return {
    kind,
    key: bytes.toString("latin1", 48, 48 + keyLength),
    owner:
      ownerLength === 0
        ? undefined
        : {
            volume: bytes.toString("latin1", 248, 248 + ownerLength),
            partition: bytes.readUInt32LE(16),
          },
    generation: readUint64(bytes, 8),
    dataChecksum: bytes.readUInt32LE(20),
    dataBytes: readUint64(bytes, 24),
  };
}

function writeString(
  buffer: Buffer,
  lengthAt: number,
  textAt: number,
  text: string,
  bytesMax: number,
): void {
  const encoded = Buffer.from(text, "latin1");
  assert(
    encoded.byteLength <= bytesMax && /^[\x20-\x7e]*$/.test(text),
    `${JSON.stringify(text)} is not printable ASCII of at most ${bytesMax} bytes`,
  );
  buffer.writeUInt8(encoded.byteLength, lengthAt);
  encoded.copy(buffer, textAt);
}

function readString(bytes: Buffer, lengthAt: number, textAt: number): string {
  return bytes.toString("latin1", textAt, textAt + bytes.readUInt8(lengthAt));
}

function writeUint64(buffer: Buffer, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `${value} is not a safe unsigned integer`);
  buffer.writeUInt32LE(value % 2 ** 32, offset);
  buffer.writeUInt32LE(Math.floor(value / 2 ** 32), offset + 4);
}

function readUint64(bytes: Buffer, offset: number): number {
  // A high word above 2^21 - 1 would not be a safe integer; the checksum already vouched
  // for the bytes, so this can only be a writer bug, and the caller's range checks catch it.
  return bytes.readUInt32LE(offset + 4) * 2 ** 32 + bytes.readUInt32LE(offset);
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}
