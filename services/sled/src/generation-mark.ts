// The sled's generation high-water mark: a number above every generation the store has
// handed out, made durable before any generation below it is used. Generations tell an
// object's extent from stale or misdirected data (format.ts), which works only if none
// is used twice; the largest generation found on disk after a crash does not bound the
// ones handed out to writes that did not survive (their extent headers may still be on
// disk), and the mark does. The store raises it a batch at a time (generationMarkBatch),
// so it costs one sync per batch of writes, not one per write.
//
// The file holds two copies of the mark, A and B, each 8 bytes little-endian and their
// CRC32C (4 bytes), at the start of blocks 0 and 1 (`markCopyStride` apart, so a torn write
// of one block cannot touch the other). It is made once, whole (written to a temporary
// file, synced, renamed into place, the directory synced), and from then on a raise
// overwrites the copy that holds the lower mark, in place, and syncs it: the other copy
// keeps the previous mark through a crash or a torn write, and a read takes the higher of
// the valid copies. Overwriting blocks the file already has needs no free block, so a full
// file system (the devices are preallocated) does not stop the sled from raising its mark.
// (A copy-on-write file system allocates on every write anyway; there it does not help.)
// A file of the first layout (one 12-byte copy) is read, and replaced by the two-copy file
// at its first raise. A file missing or damaged reads as no mark, and the store then jumps
// far past what it finds (generationJumpWithoutMark).

import { type FileHandle, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { crc32c } from "@ballast/protocol";
import { syncDirectory } from "./block-file.ts";
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
/** Where copy B starts, copy A being at 0: one 4 KiB block apart. */
const markCopyStride = 4096;
/** The two-copy file: two blocks, each beginning with a copy. */
const markCopiesFileBytes = 2 * markCopyStride;

export function encodeGenerationMark(mark: number): Buffer {
  const bytes = Buffer.alloc(markFileBytes);
  bytes.writeUInt32LE(mark % 2 ** 32, 0);
  bytes.writeUInt32LE(Math.floor(mark / 2 ** 32), 4);
  bytes.writeUInt32LE(crc32c(bytes.subarray(0, 8)), 8);
  return bytes;
}

export function decodeGenerationMark(bytes: Uint8Array): GenerationMarkReading {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.byteLength !== markFileBytes) {
    return { missing: `the mark file is ${buffer.byteLength} bytes, not ${markFileBytes}` };
  }
  if (buffer.readUInt32LE(8) !== crc32c(buffer.subarray(0, 8))) {
    return { missing: "the mark file fails its CRC32C" };
  }
  const mark = buffer.readUInt32LE(4) * 2 ** 32 + buffer.readUInt32LE(0);
  if (!Number.isSafeInteger(mark) || mark < 1) return { missing: `the mark ${mark} is invalid` };
  return { mark };
}

/** The marks of both copies of a two-copy file (undefined for an invalid copy). */
function decodeCopies(bytes: Buffer): [number | undefined, number | undefined] {
  const copy = (at: number) => {
    const reading = decodeGenerationMark(bytes.subarray(at, at + markFileBytes));
    return "mark" in reading ? reading.mark : undefined;
  };
  return [copy(0), copy(markCopyStride)];
}

/** The mark in `dataDir`'s `generation-mark` file (see the header). */
export function fileGenerationMark(dataDir: string): GenerationMarkStore {
  const path = join(dataDir, generationMarkFileName);
  const temporary = `${path}.tmp`;

  /** Makes the two-copy file whole, `mark` in copy A and copy B empty (reads as invalid). */
  const replaceWhole = async (mark: number) => {
    const bytes = Buffer.alloc(markCopiesFileBytes);
    encodeGenerationMark(mark).copy(bytes, 0);
    const handle = await open(temporary, "w");
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
    await syncDirectory(dataDir);
  };

  return {
    async read() {
      let bytes: Buffer;
      try {
        bytes = await readFile(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") {
          return { missing: "there is no mark file" };
        }
        return { missing: `the mark file cannot be read: ${(error as Error).message}` };
      }
      if (bytes.byteLength === markFileBytes) return decodeGenerationMark(bytes);
      if (bytes.byteLength !== markCopiesFileBytes) {
        return {
          missing: `the mark file is ${bytes.byteLength} bytes, not ${markCopiesFileBytes} (or ${markFileBytes})`,
        };
      }
      const [a, b] = decodeCopies(bytes);
      if (a === undefined && b === undefined) {
        return { missing: "neither copy of the mark passes its CRC32C" };
      }
      return { mark: Math.max(a ?? 0, b ?? 0) };
    },
    async write(mark) {
      let handle: FileHandle;
      try {
        handle = await open(path, "r+");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
        return replaceWhole(mark);
      }
      let whole = false;
      try {
        if ((await handle.stat()).size !== markCopiesFileBytes) {
          // The first layout (or a damaged file): made whole once, then overwritten.
          whole = true;
        } else {
          const [a, b] = decodeCopies(await handle.readFile());
          // Overwrite the copy holding the lower mark (an invalid copy counts lowest), so
          // the other keeps the higher one until this write is durable.
          const target = (a ?? 0) <= (b ?? 0) ? 0 : markCopyStride;
          await handle.write(encodeGenerationMark(mark), 0, markFileBytes, target);
          await handle.datasync();
        }
      } finally {
        await handle.close();
      }
      if (whole) await replaceWhole(mark);
    },
  };
}
