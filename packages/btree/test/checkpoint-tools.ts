// Helpers for checkpoint tests: gather a stream into one buffer, deliver a buffer in
// chunks of chosen sizes, and recompute every checksum of a buffer a test has edited on
// purpose, so that the reader's checks behind the checksums can be reached.

import { serializeCheckpoint } from "../src/checkpoint-write.ts";
import { crc32cFinish, crc32cInitial, crc32cUpdate } from "../src/crc32c.ts";
import type { ExtentTree } from "../src/index.ts";

export function concatenate(frames: Iterable<Uint8Array>): Uint8Array {
  const list = [...frames];
  const bytes = new Uint8Array(list.reduce((total, frame) => total + frame.length, 0));
  let position = 0;
  for (const frame of list) {
    bytes.set(frame, position);
    position += frame.length;
  }
  return bytes;
}

export function checkpointBytes(tree: ExtentTree, opNum: number, blockBytes?: number): Uint8Array {
  return concatenate(
    serializeCheckpoint(tree, { opNum }, blockBytes === undefined ? {} : { blockBytes }),
  );
}

/** Delivers `bytes` asynchronously in chunks of the given sizes, cycling through them. */
export async function* chunked(
  bytes: Uint8Array,
  sizes: readonly number[],
): AsyncGenerator<Uint8Array> {
  let position = 0;
  for (let turn = 0; position < bytes.length; turn += 1) {
    const size = Math.max(1, sizes[turn % sizes.length] ?? 1);
    yield bytes.slice(position, position + size);
    position += size;
  }
}

const headerChecksumAt = 32;
const blockHeaderBytes = 12;
const trailerChecksumAt = 20;

/**
 * Recomputes the running checksum of every frame of a whole checkpoint in `bytes`, in
 * place, walking the frames by their own length fields. Returns `bytes`.
 */
export function reseal(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let checksum = crc32cUpdate(crc32cInitial, bytes.subarray(0, headerChecksumAt));
  view.setUint32(headerChecksumAt, crc32cFinish(checksum), true);
  let position = headerChecksumAt + 4;
  for (;;) {
    const recordCount = view.getUint32(position, true);
    if (recordCount === 0) {
      checksum = crc32cUpdate(checksum, bytes.subarray(position, position + trailerChecksumAt));
      view.setUint32(position + trailerChecksumAt, crc32cFinish(checksum), true);
      return bytes;
    }
    const payloadBytes = view.getUint32(position + 4, true);
    checksum = crc32cUpdate(checksum, bytes.subarray(position, position + 8));
    checksum = crc32cUpdate(
      checksum,
      bytes.subarray(position + blockHeaderBytes, position + blockHeaderBytes + payloadBytes),
    );
    view.setUint32(position + 8, crc32cFinish(checksum), true);
    position += blockHeaderBytes + payloadBytes;
  }
}

/** The byte offsets at which each block frame starts, found by walking the frames. */
export function blockOffsets(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const offsets: number[] = [];
  let position = headerChecksumAt + 4;
  while (view.getUint32(position, true) !== 0) {
    offsets.push(position);
    position += blockHeaderBytes + view.getUint32(position + 4, true);
  }
  return offsets;
}
