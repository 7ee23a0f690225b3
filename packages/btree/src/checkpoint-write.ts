// Writes a checkpoint of an extent tree as a stream of frames (see checkpoint-format.ts).
//
// The writer is a synchronous generator: each frame is computed when the consumer asks
// for it, so a million-extent tree streams out in 64 KiB blocks without ever existing as
// one buffer. Every yielded array is freshly allocated and the consumer may keep it.
//
// The tree must not change until the generator is done: a checkpoint must reflect
// exactly one op number. A mutation between two frames makes the next one throw
// BtreeAssertionError rather than yield a torn checkpoint. An extent newer than the op
// number the caller says the checkpoint reflects is a caller's bug and throws likewise.

import { assert, assertIntegerInRange, fail } from "./assert.ts";
import {
  blockLayout,
  type CheckpointMeta,
  checkpointFormatVersion,
  checkpointMagic,
  headerLayout,
  recordBytesMax,
  setUint64,
  trailerLayout,
} from "./checkpoint-format.ts";
import { checkpointBlockBytesDefault, checkpointBlockBytesMax } from "./constants.ts";
import { crc32cFinish, crc32cInitial, crc32cUpdate } from "./crc32c.ts";
import { LocationCode, locationCodeOf, locationIdOf, locationOffsetOf } from "./location.ts";
import type { ExtentTree } from "./tree.ts";
import { writeVarint } from "./varint.ts";

export interface SerializeCheckpointOptions {
  /** The most payload bytes per block, from one record's worst case to the format's limit. */
  readonly blockBytes?: number;
}

/** The checkpoint of `tree` at op `meta.opNum`, frame by frame. */
export function* serializeCheckpoint(
  tree: ExtentTree,
  meta: CheckpointMeta,
  options: SerializeCheckpointOptions = {},
): Generator<Uint8Array, void, undefined> {
  assertIntegerInRange(meta.opNum, "checkpoint op number", 0, Number.MAX_SAFE_INTEGER);
  const blockBytes = options.blockBytes ?? checkpointBlockBytesDefault;
  assertIntegerInRange(
    blockBytes,
    "checkpoint block bytes",
    recordBytesMax,
    checkpointBlockBytesMax,
  );
  const extentCount = tree.extentCount;
  let checksum = crc32cInitial;

  const header = new Uint8Array(headerLayout.bytes);
  const headerView = new DataView(header.buffer);
  header.set(checkpointMagic, headerLayout.magic);
  headerView.setUint32(headerLayout.version, checkpointFormatVersion, true);
  headerView.setUint32(headerLayout.flags, 0, true);
  setUint64(headerView, headerLayout.opNum, meta.opNum);
  setUint64(headerView, headerLayout.extentCount, extentCount);
  checksum = crc32cUpdate(checksum, header.subarray(0, headerLayout.checksum));
  headerView.setUint32(headerLayout.checksum, crc32cFinish(checksum), true);
  yield header;

  // One scratch block, copied out when full; records never span blocks.
  const block = new Uint8Array(blockLayout.bytes + blockBytes);
  const blockView = new DataView(block.buffer);
  let position: number = blockLayout.bytes;
  let recordCount = 0;
  let previousEnd = 0;
  let extentsWritten = 0;
  let mappedBytes = 0;
  const sealBlock = (): Uint8Array => {
    blockView.setUint32(blockLayout.recordCount, recordCount, true);
    blockView.setUint32(blockLayout.payloadBytes, position - blockLayout.bytes, true);
    checksum = crc32cUpdate(checksum, block.subarray(0, blockLayout.checksum));
    checksum = crc32cUpdate(checksum, block.subarray(blockLayout.bytes, position));
    blockView.setUint32(blockLayout.checksum, crc32cFinish(checksum), true);
    const frame = block.slice(0, position);
    position = blockLayout.bytes;
    recordCount = 0;
    return frame;
  };

  for (const extent of tree.extents()) {
    if (extent.opNum > meta.opNum) {
      fail(
        `a checkpoint at op ${meta.opNum} cannot hold extent [${extent.offset}, +${extent.length}) of op ${extent.opNum}`,
      );
    }
    if (position - blockLayout.bytes + recordBytesMax > blockBytes) {
      yield sealBlock();
    }
    const location = extent.location;
    const code = locationCodeOf(location);
    position = writeVarint(block, position, extent.offset - previousEnd);
    position = writeVarint(block, position, extent.length);
    position = writeVarint(block, position, extent.opNum);
    block[position] = code;
    position += 1;
    if (code !== LocationCode.zero) {
      position = writeVarint(block, position, locationIdOf(location));
      position = writeVarint(block, position, locationOffsetOf(location));
    }
    previousEnd = extent.offset + extent.length;
    recordCount += 1;
    extentsWritten += 1;
    mappedBytes += extent.length;
  }
  if (recordCount > 0) {
    yield sealBlock();
  }
  assert(
    extentsWritten === extentCount,
    `a checkpoint header promised ${extentCount} extents but ${extentsWritten} were written`,
  );

  const trailer = new Uint8Array(trailerLayout.bytes);
  const trailerView = new DataView(trailer.buffer);
  trailerView.setUint32(trailerLayout.marker, 0, true);
  setUint64(trailerView, trailerLayout.extentCount, extentsWritten);
  setUint64(trailerView, trailerLayout.mappedBytes, mappedBytes);
  checksum = crc32cUpdate(checksum, trailer.subarray(0, trailerLayout.checksum));
  trailerView.setUint32(trailerLayout.checksum, crc32cFinish(checksum), true);
  yield trailer;
}
