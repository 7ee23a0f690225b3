// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and all of Ballast, through
// @node-rs/crc32, which uses the CPU's CRC instruction where there is one: the same
// implementation @ballast/protocol uses for notes, chunks and blobs.
//
// The running form (`crc32cUpdate` on a state from `crc32cInitial`, then `crc32cFinish`)
// checksums a stream piece by piece; the checkpoint format relies on it to keep one
// checksum over everything written so far. The state is the checksum of the bytes fed
// in so far, which the library continues from.

import { crc32c as nativeCrc32c } from "@node-rs/crc32";

/** The state before any byte has been fed in. */
export const crc32cInitial = 0;

/** Feeds `bytes` into the running `state` and returns the new state. */
export function crc32cUpdate(state: number, bytes: Uint8Array): number {
  return nativeCrc32c(bytes as Buffer, state) >>> 0;
}

/** The checksum of everything fed into `state`, as an unsigned 32-bit integer. */
export function crc32cFinish(state: number): number {
  return state >>> 0;
}

/** The CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  return crc32cUpdate(crc32cInitial, bytes);
}
