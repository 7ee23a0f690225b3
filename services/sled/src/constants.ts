// Every limit and default of the sled, in one place. Sizes are bytes unless the name
// says otherwise; units come last. The on-disk constants (block, slot, superblock and
// header sizes) are part of the device format: changing one needs a new format version.

import { limits } from "@ballast/protocol";

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const gibibyte = 1024 * mebibyte;

/** The version written in every superblock; a device of another version is refused. */
export const deviceFormatVersion = 1;

/** The checksum and allocation unit: one CRC32C per block, extents in whole blocks. */
export const blockBytes = 4 * kibibyte;

/** One superblock copy; two copies sit at the start of every device. */
export const superblockBytes = 4 * kibibyte;
export const superblockCopies = 2;

/** One allocation-map record: one sector, so that a write of it is all old or all new. */
export const slotBytes = limits.sectorBytes;

/**
 * Slots per device are one per this much device space, so that the slot table (1/128
 * of the device) runs out only when the average object is smaller than this.
 */
export const deviceBytesPerSlot = 64 * kibibyte;

/** The fewest slots a device has, however small. */
export const slotCountMin = 64;

/** The fixed part of an extent header; the per-block CRC32C table follows it. */
export const extentHeaderFixedBytes = 512;

/**
 * Space kept back on every device for metadata checkpoints (blobs): a chunk write is
 * refused with NoSpace when, after it, the device's free data space would be below
 * `chunkReserveFraction` of its data region (at least `chunkReserveBytesMin`), or its free
 * slots below `chunkReserveFraction` of its slots (at least `chunkReserveSlotsMin`). Blobs
 * may use the reserve. Why: when data fills a sled, a head node can still upload a
 * checkpoint, so it can release its journal and the space reclamation that needs a
 * checkpoint can still make progress. On a very small device the reserve is capped at
 * half of it, so that chunks can still be stored at all.
 */
export const chunkReserveFraction = 1 / 16;
export const chunkReserveBytesMin = 256 * kibibyte;
export const chunkReserveSlotsMin = 8;

/** Default number of devices of a new sled, and the bounds the option accepts. */
export const deviceCountDefault = 2;
export const deviceCountMin = 1;
export const deviceCountMax = 64;

/**
 * Default size of each device file, and the bounds the option accepts. The largest is
 * the size tested: a sled reads a device's whole slot table (1/128 of it) at every
 * start, and a free 1 TiB device (16 GiB of table, sparse) took 51 s, 17 s of it CPU,
 * with no heap growth, on a 2-core machine at load 10-12. The former 16 TiB was never
 * startable: one object per slot ran out of heap near 5 TiB, and ext4 cannot hold a
 * file of 16 TiB.
 */
export const deviceBytesDefault = 1 * gibibyte;
export const deviceBytesMin = 1 * mebibyte;
export const deviceBytesMax = 1024 * gibibyte;

/** Verified CRC tables of recently read objects kept in memory, bounded by their size. */
export const crcTableCacheBytesMax = 16 * mebibyte;

/** Blob uploads a sled holds open at once; each reserves its whole extent. */
export const blobUploadsInflightMax = 16;

/** An upload with no part, commit or abort for this long is dropped and its space freed. */
export const blobUploadIdleMsMax = 60_000;

/** How often idle uploads are looked for. */
export const blobUploadSweepIntervalMs = 5000;

/** Damaged slots named in the sled's status details; the rest only counted. */
export const damagedSlotsDescribedMax = 16;

/** Scrub reads each object in pieces of this size (a multiple of the block size). */
export const scrubReadBytes = 1 * mebibyte;

/** The name of device file `index` in the sled's data directory. */
export function deviceFileName(index: number): string {
  return `device-${index}.dev`;
}

/** Where a device file is built before it is renamed into place. */
export function deviceTemporaryFileName(index: number): string {
  return `device-${index}.dev.tmp`;
}

/**
 * Generations a durable high-water mark covers at once (generation-mark.ts): one sync of
 * the mark file per this many objects written.
 */
export const generationMarkBatch = 4096;
/**
 * How far generations jump past the largest found on disk when the mark file is missing
 * or damaged (a sled older than the mark, a lost file): no bound on the generations
 * handed out unseen is known then, so a gap far larger than any run writes between two
 * marks. 2^32 leaves room for 2^21 such jumps below 2^53.
 */
export const generationJumpWithoutMark = 2 ** 32;

/** The generation high-water mark's file in the sled's data directory. */
export const generationMarkFileName = "generation-mark";

/**
 * Worker threads that read device files (read-pool.ts), per process. A new one starts
 * only when reads wait and every one is busy; at most as many as libuv's threadpool has
 * threads, so that as many reads can wait on the disk at once as before.
 */
export const readWorkersMax = 4;

/**
 * What one trip to a read worker carries at most: bytes and ranges. Each worker has a
 * shared area of this many bytes that its trips are read into; reads larger than this
 * do not go through the workers (they go to libuv's threadpool, as before, where a
 * trip's cost is small against their bytes).
 */
export const readTripBytesMax = 256 * kibibyte;
export const readTripRangesMax = 128;

/** Characters of a failed read's error message that cross from a read worker. */
export const readFailureMessageCharsMax = 160;
