// Every limit and format constant of the note journal, in one place. Sizes are bytes
// unless the name says otherwise; units and qualifiers come last. The format constants
// (magic values, header sizes, the version) are the on-disk format: changing one needs a
// new format version, because recovery refuses segments it cannot read.

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const gibibyte = 1024 * mebibyte;

/**
 * The version written in every new segment header (3: records checksummed with the
 * segment's nonce, format.ts). Segments of `formatVersionWithoutNonce` are still read, by
 * that version's rules, and never appended to; any other version is refused.
 */
export const formatVersion = 3;

/** The oldest version read: 2, whose records' checksums cover only their own bytes. */
export const formatVersionWithoutNonce = 2;

/** First bytes of every segment file: ASCII "BLSTJRNL" (Ballast journal). */
export const segmentMagic: Uint8Array = new TextEncoder().encode("BLSTJRNL");

/**
 * First field of every record: the ASCII bytes "NOTE" read as a little-endian u32. It is
 * never zero, so the zero-filled tail a crash can leave, or the last segment's runway of
 * zeros (journal.ts), is never mistaken for a record.
 */
export const recordMarker = 0x45_54_4f_4e;

/** The random nonce in a segment header (version 3), which every record's CRC32C covers. */
export const segmentNonceBytes = 8;

/**
 * Segment header (version 3): magic (8), format version (4), first op number (8), nonce
 * (8), CRC32C (4). Also the offset of a new segment's first record.
 */
export const segmentHeaderBytes = 32;

/** Segment header of version 2: magic (8), format version (4), first op number (8), CRC32C (4). */
export const segmentHeaderBytesWithoutNonce = 24;

/**
 * Record header: marker (4), payload length (4), op number (8), sync start op number (8),
 * CRC32C (4), the same in versions 2 and 3 (version 3 changes what the CRC32C covers, not
 * the layout). The sync start (since version 2) is what lets recovery tell a torn group
 * commit from damage to synced records (see format.ts).
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

/**
 * The first zeros written past a segment's last record (its runway, journal.ts): a
 * record written into zeros that are already allocated and synced costs one data write,
 * while one that extends the file also commits its new size and extents (a file-system
 * journal commit), 2-3x the time of a 4 KiB O_DSYNC write. Small, because a node holds
 * thousands of partition replicas and most of them are idle.
 */
export const runwayStepFirstBytes = 64 * kibibyte;

/**
 * The largest runway extension: each extension of a journal doubles the step up to this,
 * so a busy journal extends rarely. Bounded because a commit that outruns the zeros left
 * waits for the extension (journal.ts), and because an idle replica keeps its runway on
 * disk. Measured here, an O_DSYNC write of 1 MiB of zeros into a new file took about
 * 1 ms (4 MiB: 3 ms): about 4 µs per 4 KiB record written into it, against the
 * 200-400 µs each saves.
 */
export const runwayStepMaxBytes = 1 * mebibyte;

/**
 * The runway is extended once the zeros left past the last record fall below the next
 * step divided by this: early enough that the commits queued after the extension still
 * find zeros to write into, late enough that a journal written once keeps one step.
 */
export const runwayLowWaterDivisor = 4;

/**
 * After a runway extension the file system refused for want of space (ENOSPC, EDQUOT),
 * the next is tried once records of at least this many bytes have been appended since,
 * or when a new segment is started, whichever comes first. The zeros are not needed for
 * correctness, so a full disk only stops them (journal.ts); this bounds the refused
 * attempts, each a failed write and a cut, to one per this many bytes of records.
 */
export const runwayRetryAfterBytes = 1 * mebibyte;

/**
 * A group commit of at most this many bytes is written on the event loop's own thread (a
 * blocking writev) when no other record write of the process is on libuv's threadpool
 * (journal.ts, "Blocking writes"). A threadpool write costs a worker's wake-up and a
 * completion posted back to the loop: measured here, a 4 KiB O_DSYNC write awaited one
 * at a time took 150 µs and 71-85 µs of CPU through the threadpool, 105 µs and 37-44 µs
 * blocking. The bound keeps the loop's stall short (a 16 KiB O_DSYNC write: 0.1-0.3 ms
 * here) where a larger batch means the replica is busy and a worker is worth its cost.
 */
export const blockingWriteBytesMax = 16 * kibibyte;

/** The zeros a runway extension writes, in buffers of this many bytes (one shared buffer). */
export const runwayZeroBufferBytes = 64 * kibibyte;

/** Buffers per `writev` call: Linux's IOV_MAX, above which the kernel refuses the call. */
export const writeBuffersMax = 1024;
