// Every limit and format constant of the note journal, in one place. Sizes are bytes
// unless the name says otherwise; units and qualifiers come last. The format constants
// (magic values, header sizes, the version) are the on-disk format: changing one needs a
// new format version, because recovery refuses segments it cannot read.

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const gibibyte = 1024 * mebibyte;

/** The version written in every segment header; a segment of another version is refused. */
export const formatVersion = 2;

/** First bytes of every segment file: ASCII "BLSTJRNL" (Ballast journal). */
export const segmentMagic: Uint8Array = new TextEncoder().encode("BLSTJRNL");

/**
 * First field of every record: the ASCII bytes "NOTE" read as a little-endian u32. It is
 * never zero, so the zero-filled tail a crash can leave is never mistaken for a record.
 */
export const recordMarker = 0x45_54_4f_4e;

/** Segment header: magic (8), format version (4), first op number (8), CRC32C (4). */
export const segmentHeaderBytes = 24;

/**
 * Record header: marker (4), payload length (4), op number (8), sync start op number (8),
 * CRC32C (4). The sync start (version 2) is what lets recovery tell a torn group commit
 * from damage to synced records (see format.ts).
 */
export const recordHeaderBytes = 28;

/** Segment files are named `segment-<first op number, this many digits>.log`. */
export const segmentNameDigits = 20;

/** A new segment is started once the current one would grow past this. */
export const segmentBytesMaxDefault = 64 * mebibyte;

/** The smallest `segmentBytesMax` accepted: room for a header and a few small records. */
export const segmentBytesMaxFloor = 512;

/**
 * The largest `segmentBytesMax` accepted. Recovery reads one segment at a time into
 * memory, so this also bounds the memory recovery needs beyond the records it returns.
 */
export const segmentBytesMaxCeiling = 1 * gibibyte;

/** The largest payload of one record: one note of at most 8 MiB (a whole message) plus room. */
export const payloadBytesMax = 9 * mebibyte;

/** The largest record on disk, header included. */
export const recordBytesMax = recordHeaderBytes + payloadBytesMax;

/**
 * The largest segment file recovery will read: a segment holds one record past
 * `segmentBytesMax` only when that record alone is larger, so no journal writes more.
 */
export const segmentFileBytesMax = segmentBytesMaxCeiling + segmentHeaderBytes + recordBytesMax;

/** The most records one `append` call may carry (a replication message carries 1024). */
export const appendRecordsMax = 4096;

/** The most payload bytes one `append` call may carry, summed over its records. */
export const appendPayloadBytesMax = 64 * mebibyte;

/** Buffers per `writev` call: Linux's IOV_MAX, above which the kernel refuses the call. */
export const writeBuffersMax = 1024;
