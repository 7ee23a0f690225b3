// The one checksum of Ballast: CRC32C (Castagnoli), as in iSCSI and ext4 metadata. It
// guards notes on the wire and in journals, and chunks, blobs and checkpoints on sleds.
// @node-rs/crc32 uses the CPU's CRC instruction where there is one (GB/s per core).

import { crc32c as nativeCrc32c } from "@node-rs/crc32";

/** CRC32C of `data`, continuing from `previous` when a value is checksummed in parts. */
export function crc32c(data: Uint8Array, previous = 0): number {
  return nativeCrc32c(data as Buffer, previous) >>> 0;
}

// Combining: the CRC of A followed by B from the CRCs of A and B and the length of B,
// without reading either again (the method zlib's crc32_combine uses). Appending a zero
// bit to a message is a linear map of its CRC register over GF(2), so appending n zero
// bytes is a 32×32 bit matrix, one word per column; CRC(A‖B) is CRC(A) carried through
// len(B) zero bytes, xor CRC(B) (the pre- and post-inversion cancel). A sled checks a
// chunk's blocks one by one for its CRC table and needs the whole chunk's CRC too: this
// makes the second from the first instead of a second pass over the bytes.

/** CRC32C's polynomial, bit-reflected (as the register shifts right). */
const castagnoliReflected = 0x82f63b78;

/** The matrix applied to a vector: xor of the columns its set bits pick. */
function gf2Times(matrix: Uint32Array, vector: number): number {
  let sum = 0;
  for (let bit = 0; vector !== 0; bit++, vector >>>= 1) {
    if ((vector & 1) !== 0) sum ^= matrix[bit]!;
  }
  return sum >>> 0;
}

function gf2Square(matrix: Uint32Array): Uint32Array<ArrayBuffer> {
  const square = new Uint32Array(32);
  for (let bit = 0; bit < 32; bit++) square[bit] = gf2Times(matrix, matrix[bit]!);
  return square;
}

/**
 * A matrix as four tables of 256 words, one per byte of the vector: entry `b` of table
 * `j` is the matrix applied to `b << 8j`, so applying it is four lookups and three xors
 * rather than up to 32 steps of `gf2Times` (which made a combine cost about 110 ns per
 * set bit of the length: more than reading 4,095 bytes, whose length has 12).
 */
function byteTables(matrix: Uint32Array): Uint32Array {
  const tables = new Uint32Array(4 * 256);
  for (let table = 0; table < 4; table++) {
    const base = table * 256;
    for (let byte = 1; byte < 256; byte++) {
      // A byte's image: that of the byte without its lowest set bit, xor that bit's column.
      const lowest = 31 - Math.clz32(byte & -byte);
      tables[base + byte] = tables[base + (byte & (byte - 1))]! ^ matrix[table * 8 + lowest]!;
    }
  }
  return tables;
}

/** The matrix whose `byteTables` are `tables`, applied to `vector`. */
function tablesTimes(tables: Uint32Array, vector: number): number {
  return (
    (tables[vector & 0xff]! ^
      tables[256 + ((vector >>> 8) & 0xff)]! ^
      tables[512 + ((vector >>> 16) & 0xff)]! ^
      tables[768 + (vector >>> 24)]!) >>>
    0
  );
}

/**
 * The operators for 2^k zero bytes, k = 0, 1, …: each the square of the one before,
 * the first the one-zero-bit operator squared three times; beside each, its byte tables
 * (4 KiB). Built as far as a length needs, once per process: 23 of them for lengths
 * below 8 MiB (92 KiB of tables), at most 53 for any safe integer.
 */
const powerMatrices: Uint32Array[] = [];
const powerTables: Uint32Array[] = [];

function powerOperator(power: number): Uint32Array {
  while (powerTables.length <= power) {
    const last = powerMatrices.at(-1);
    let matrix: Uint32Array;
    if (last !== undefined) {
      matrix = gf2Square(last);
    } else {
      matrix = new Uint32Array(32);
      matrix[0] = castagnoliReflected;
      for (let bit = 1; bit < 32; bit++) matrix[bit] = 1 << (bit - 1);
      for (let squarings = 0; squarings < 3; squarings++) matrix = gf2Square(matrix);
    }
    powerMatrices.push(matrix);
    powerTables.push(byteTables(matrix));
  }
  return powerTables[power]!;
}

/**
 * `crc` carried through `bytes` zero bytes: one table product per set bit of `bytes`
 * (a 4 KiB block is one), whatever the length, so no length is slow.
 */
function shiftByZeros(crc: number, bytes: number): number {
  let shifted = crc >>> 0;
  let power = 0;
  let left = bytes;
  // Past 2^31 the bit operators would see a negative number: halve by division there.
  for (; left > 0x7fff_ffff; left = Math.floor(left / 2), power++) {
    if (left % 2 === 1) shifted = tablesTimes(powerOperator(power), shifted);
  }
  for (; left !== 0; left >>>= 1, power++) {
    if ((left & 1) !== 0) shifted = tablesTimes(powerOperator(power), shifted);
  }
  return shifted;
}

/** CRC32C of A followed by B, from `first` = CRC32C(A), `second` = CRC32C(B) and B's length. */
export function crc32cCombine(first: number, second: number, secondBytes: number): number {
  if (!Number.isSafeInteger(secondBytes) || secondBytes < 0) {
    throw new RangeError(`cannot combine CRCs over ${secondBytes} bytes`);
  }
  if (secondBytes === 0) return first >>> 0;
  return (shiftByZeros(first, secondBytes) ^ second) >>> 0;
}

/**
 * CRC32C of bytes checksummed in consecutive pieces of `pieceBytes` each (the last one
 * over what is left of `totalBytes`), from the pieces' CRCs in order.
 */
export function crc32cOfPieces(
  checksums: ArrayLike<number>,
  pieceBytes: number,
  totalBytes: number,
): number {
  if (checksums.length !== Math.ceil(totalBytes / pieceBytes)) {
    throw new RangeError(
      `${checksums.length} piece checksums for ${totalBytes} bytes in pieces of ${pieceBytes}`,
    );
  }
  let crc = 0;
  for (let piece = 0; piece < checksums.length; piece++) {
    const bytes = Math.min(pieceBytes, totalBytes - piece * pieceBytes);
    crc = piece === 0 ? checksums[0]! >>> 0 : crc32cCombine(crc, checksums[piece]!, bytes);
  }
  return crc;
}
