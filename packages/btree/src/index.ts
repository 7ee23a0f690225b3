// @ballast/btree: the extent index of a partition replica and its checkpoint format.
//
// `ExtentTree` maps byte ranges of a partition to where their newest data lives (the
// journal, a sled chunk, or zeros), resolving overlaps by op number; it keeps live bytes
// per chunk for space reclamation. `serializeCheckpoint` and `loadCheckpoint` stream it
// to and from a compact, checksummed, versioned binary form.

export type { ByteSource } from "./byte-stream.ts";
export { type CheckpointMeta, checkpointFormatVersion } from "./checkpoint-format.ts";
export { type LoadedCheckpoint, loadCheckpoint } from "./checkpoint-read.ts";
export { type SerializeCheckpointOptions, serializeCheckpoint } from "./checkpoint-write.ts";
export {
  checkpointBlockBytesDefault,
  checkpointBlockBytesMax,
  fanoutDefault,
  fanoutMax,
  fanoutMin,
} from "./constants.ts";
export { crc32c } from "./crc32c.ts";
export {
  BtreeAssertionError,
  CheckpointCorruptError,
  CheckpointError,
  type CheckpointErrorOptions,
  CheckpointFormatError,
} from "./errors.ts";
export {
  advanceLocation,
  type ChunkLocation,
  type JournalLocation,
  type Location,
  type ZeroLocation,
  zeroLocation,
} from "./location.ts";
export {
  type Extent,
  ExtentTree,
  type ExtentTreeOptions,
  type Hole,
  type Piece,
} from "./tree.ts";
