// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and Ballast's sleds, computed with a
// 256-entry table one byte at a time. It is reflected (least significant bit first) with
// polynomial 0x1EDC6F41, whose bit-reversed form 0x82F63B78 drives the table; the register
// starts at all ones and is inverted at the end.
//
// The running form (`crc32cUpdate` on a state from `crc32cInitial`, then `crc32cFinish`)
// checksums a stream piece by piece; the checkpoint format relies on it to keep one
// checksum over everything written so far.

const polynomialReversed = 0x82f63b78;

const table = buildTable();

function buildTable(): Uint32Array {
  const entries = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte += 1) {
    let register = byte;
    for (let bit = 0; bit < 8; bit += 1) {
      register = register & 1 ? (register >>> 1) ^ polynomialReversed : register >>> 1;
    }
    entries[byte] = register >>> 0;
  }
  return entries;
}

/** The register before any byte has been fed in. */
export const crc32cInitial = 0xffffffff;

/** Feeds `bytes` into the running register `state` and returns the new register. */
export function crc32cUpdate(state: number, bytes: Uint8Array): number {
  let register = state;
  for (let index = 0; index < bytes.length; index += 1) {
    register = table[(register ^ bytes[index]!) & 0xff]! ^ (register >>> 8);
  }
  return register;
}

/** The checksum of everything fed into `state`, as an unsigned 32-bit integer. */
export function crc32cFinish(state: number): number {
  return (state ^ 0xffffffff) >>> 0;
}

/** The CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  return crc32cFinish(crc32cUpdate(crc32cInitial, bytes));
}
