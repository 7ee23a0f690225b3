// The sled's generation high-water mark: a number above every generation the store has
// handed out, made durable before any generation below it is used. Generations tell an
// object's extent from stale or misdirected data (format.ts), which works only if none
// is used twice; the largest generation found on disk after a crash does not bound the
// ones handed out to writes that did not survive (their extent headers may still be on
// disk), and the mark does. The store raises it a batch at a time (generationMarkBatch),
// so it costs one sync per batch of writes, not one per write.
//
// The file is a counter file (runtime counter-file.ts, shared with the head node's
// session and voter-epoch files): two copies of the mark, each 8 bytes little-endian and
// their CRC32C, at the start of blocks 0 and 1, so a torn write of one block cannot touch
// the other. It is made once, whole (written to a temporary file, synced, renamed into
// place, the directory synced), and from then on a raise overwrites the copy that holds
// the lower mark (or, after a failed sync, the copy that failed), in place, and syncs it:
// the other copy keeps the previous mark through a crash or a torn write, and a read takes
// the higher of the valid copies. Overwriting blocks the file already has needs no free
// block, so a full file system (the devices are preallocated) does not stop the sled from
// raising its mark. (A copy-on-write file system allocates on every write anyway; there it
// does not help.) A file of the first layout (one 12-byte copy) is read, and replaced by
// the two-copy file at its first raise. A file missing or damaged reads as no mark, and
// the store then jumps far past what it finds (generationJumpWithoutMark).

import { join } from "node:path";
import { counterFile, decodeCounterCopy, encodeCounterCopy } from "@ballast/runtime";
import { generationMarkFileName } from "./constants.ts";

/** The mark as read: its value, or why there is none. */
export type GenerationMarkReading = { mark: number } | { missing: string };

/** Where the mark is kept: the data directory's file, or memory in tests. */
export interface GenerationMarkStore {
  read(): Promise<GenerationMarkReading>;
  /** Resolves once `mark` is durable. */
  write(mark: number): Promise<void>;
}

/** One copy of the mark: 8 bytes of mark and 4 of CRC32C (also the first layout's whole file). */
const markFileBytes = 12;

/** One copy of the mark, as the counter file writes it (also the first layout's file). */
export const encodeGenerationMark = encodeCounterCopy;

export function decodeGenerationMark(bytes: Uint8Array): GenerationMarkReading {
  if (bytes.byteLength !== markFileBytes) {
    return { missing: `the mark file is ${bytes.byteLength} bytes, not ${markFileBytes}` };
  }
  const mark = decodeCounterCopy(bytes);
  if (mark === undefined) return { missing: "the mark file fails its CRC32C" };
  if (mark < 1) return { missing: `the mark ${mark} is invalid` };
  return { mark };
}

/** The mark in `dataDir`'s `generation-mark` file (see the header). */
export function fileGenerationMark(dataDir: string): GenerationMarkStore {
  const file = counterFile(join(dataDir, generationMarkFileName), (bytes) => {
    const reading = decodeGenerationMark(bytes);
    return "mark" in reading ? reading.mark : { damaged: reading.missing };
  });
  return {
    async read() {
      try {
        const stored = await file.read();
        if ("absent" in stored) return { missing: "there is no mark file" };
        if ("damaged" in stored) return { missing: stored.damaged };
        if (stored.value < 1) return { missing: `the mark ${stored.value} is invalid` };
        return { mark: stored.value };
      } catch (error) {
        return { missing: `the mark file cannot be read: ${(error as Error).message}` };
      }
    },
    write: (mark) => file.raise(mark),
  };
}
