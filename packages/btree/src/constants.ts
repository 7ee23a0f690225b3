// Every limit of the extent index and its checkpoint format, in one place. Names carry
// their unit last. A limit that the checkpoint reader enforces is part of the format:
// raising it lets this reader accept streams an older reader would refuse.

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;

/**
 * Entries per leaf and children per branch unless the caller chooses otherwise. Large
 * enough that a million extents sit three levels deep and a leaf's arrays amortise
 * their object overhead; small enough that shifting a leaf on insert stays cheap.
 */
export const fanoutDefault = 128;

/** The smallest fanout accepted: a node must keep at least two entries after a split. */
export const fanoutMin = 4;

/** The largest fanout accepted: beyond this a leaf shift costs more than a level saves. */
export const fanoutMax = 4096;

/**
 * How full the bulk builder (checkpoint load) packs each node. Not 1: a little room per
 * leaf lets the first writes after a rebuild land without splitting every leaf they touch.
 */
export const bulkFillRatio = 0.875;

/**
 * The deepest tree the descent path has room for. With the smallest fanout (a minimum
 * fill of two) a tree this deep would hold 2^63 extents, more than offsets can address.
 */
export const heightMax = 64;

/** Offsets, lengths and their sums stay safe integers: exact in a double. */
export const addressBytesMax = Number.MAX_SAFE_INTEGER;

/** Op numbers, chunk ids, journal segments and positions: any safe integer. */
export const locationFieldMax = Number.MAX_SAFE_INTEGER;

/** The payload a checkpoint writer puts in one block unless told otherwise. */
export const checkpointBlockBytesDefault = 64 * kibibyte;

/**
 * The largest block payload a writer may choose and a reader accepts. The reader holds
 * one block in memory at a time, so this bounds what a corrupt length field can make it
 * allocate.
 */
export const checkpointBlockBytesMax = 4 * mebibyte;
