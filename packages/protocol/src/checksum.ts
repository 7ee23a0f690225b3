// The one checksum of Ballast: CRC32C (Castagnoli), as in iSCSI and ext4 metadata. It
// guards notes on the wire and in journals, and chunks, blobs and checkpoints on sleds.
// @node-rs/crc32 uses the CPU's CRC instruction where there is one (GB/s per core).

import { crc32c as nativeCrc32c } from "@node-rs/crc32";

/** CRC32C of `data`, continuing from `previous` when a value is checksummed in parts. */
export function crc32c(data: Uint8Array, previous = 0): number {
  return nativeCrc32c(data as Buffer, previous) >>> 0;
}
