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
 * The operators for 2^k zero bytes, k = 0, 1, …: each the square of the one before,
 * the first the one-zero-bit operator squared three times. Built as far as a length
 * needs (at most 53 of 32 words), once per process.
 */
const powerOperators: Uint32Array[] = [];

function powerOperator(power: number): Uint32Array {
  while (powerOperators.length <= power) {
    const last = powerOperators.at(-1);
    if (last !== undefined) {
      powerOperators.push(gf2Square(last));
      continue;
    }
    let operator = new Uint32Array(32);
    operator[0] = castagnoliReflected;
    for (let bit = 1; bit < 32; bit++) operator[bit] = 1 << (bit - 1);
    for (let squarings = 0; squarings < 3; squarings++) operator = gf2Square(operator);
    powerOperators.push(operator);
  }
  return powerOperators[power]!;
}

/**
 * `crc` carried through `bytes` zero bytes: one matrix product per set bit of `bytes`
 * (a 4 KiB block is one), whatever the length, so no length is slow.
 */
function shiftByZeros(crc: number, bytes: number): number {
  let shifted = crc >>> 0;
  let power = 0;
  for (let left = bytes; left > 0; left = Math.floor(left / 2), power++) {
    if (left % 2 === 1) shifted = gf2Times(powerOperator(power), shifted);
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
