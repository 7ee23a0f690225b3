// Self-checking block payloads for the chaos workload. Every 4 KiB block a chaos client
// writes says which volume and block it belongs to, who wrote it and which of that
// writer's writes it is; the rest of the block is a fill derived from those four, so a
// read can tell, from the bytes alone, a whole block from a torn one (header of one
// write, bytes of another or of nothing), a block of another volume or offset (misplaced
// I/O), zeros, or garbage.
//
// Layout (little-endian): magic "BLSTCHAO" (8 bytes), volume tag u32, block u32 (low) and
// u32 (high), writer u32, sequence u32, then the fill to the end of the block: a
// xorshift32 stream seeded from the header fields, 4 bytes at a time.

export const payloadBlockBytes = 4096;

const magic = [0x42, 0x4c, 0x53, 0x54, 0x43, 0x48, 0x41, 0x4f] as const;
const headerBytes = 28;

/** What a read found in a block. */
export type BlockValue =
  | { kind: "zero" }
  | { kind: "data"; writer: number; sequence: number }
  | { kind: "torn"; writer: number; sequence: number }
  | { kind: "foreign"; volumeTag: number; block: number; writer: number; sequence: number }
  | { kind: "garbage" };

/** A short, stable name of a value, for histories and reports. */
export function valueName(value: BlockValue): string {
  switch (value.kind) {
    case "zero":
      return "zero";
    case "data":
      return `w${value.writer}#${value.sequence}`;
    case "torn":
      return `torn(w${value.writer}#${value.sequence})`;
    case "foreign":
      return `foreign(vol ${value.volumeTag} block ${value.block} w${value.writer}#${value.sequence})`;
    case "garbage":
      return "garbage";
    default: {
      const unreachable: never = value;
      throw new Error(`unknown block value ${JSON.stringify(unreachable)}`);
    }
  }
}

/** A 32-bit tag of a volume name (FNV-1a), so that blocks of two volumes differ. */
export function volumeTagOf(volume: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(volume)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

function fillSeed(volumeTag: number, block: number, writer: number, sequence: number): number {
  let seed =
    (volumeTag ^ Math.imul(block + 1, 0x9e3779b1) ^ Math.imul(writer + 1, 0x85ebca6b)) >>> 0;
  seed = (seed ^ Math.imul(sequence + 1, 0xc2b2ae35)) >>> 0;
  return seed === 0 ? 0x6d2b79f5 : seed;
}

function writeFill(view: DataView, seed: number): void {
  let state = seed;
  for (let offset = headerBytes; offset + 4 <= view.byteLength; offset += 4) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    view.setUint32(offset, state, true);
  }
}

/** The block `writer` writes as its `sequence`-th write to `block` of the volume. */
export function encodeBlock(
  volumeTag: number,
  block: number,
  writer: number,
  sequence: number,
): Uint8Array {
  if (!Number.isSafeInteger(block) || block < 0) throw new Error(`bad block number ${block}`);
  const bytes = new Uint8Array(payloadBlockBytes);
  const view = new DataView(bytes.buffer);
  bytes.set(magic, 0);
  view.setUint32(8, volumeTag >>> 0, true);
  view.setUint32(12, block % 2 ** 32, true);
  view.setUint32(16, Math.floor(block / 2 ** 32), true);
  view.setUint32(20, writer >>> 0, true);
  view.setUint32(24, sequence >>> 0, true);
  writeFill(view, fillSeed(volumeTag, block, writer, sequence));
  return bytes;
}

/** What the bytes of one block read back as, expected to be `block` of the volume. */
export function decodeBlock(bytes: Uint8Array, volumeTag: number, block: number): BlockValue {
  if (bytes.byteLength !== payloadBlockBytes) {
    throw new Error(`a block is ${payloadBlockBytes} bytes, got ${bytes.byteLength}`);
  }
  if (bytes.every((byte) => byte === 0)) return { kind: "zero" };
  for (let index = 0; index < magic.length; index++) {
    if (bytes[index] !== magic[index]) return { kind: "garbage" };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = view.getUint32(8, true);
  const stored = view.getUint32(12, true) + view.getUint32(16, true) * 2 ** 32;
  const writer = view.getUint32(20, true);
  const sequence = view.getUint32(24, true);
  if (tag !== volumeTag || stored !== block) {
    return { kind: "foreign", volumeTag: tag, block: stored, writer, sequence };
  }
  const expected = encodeBlock(tag, stored, writer, sequence);
  for (let index = headerBytes; index < payloadBlockBytes; index++) {
    if (bytes[index] !== expected[index]) return { kind: "torn", writer, sequence };
  }
  return { kind: "data", writer, sequence };
}
