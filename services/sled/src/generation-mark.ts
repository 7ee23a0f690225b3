// The sled's generation high-water mark: a number above every generation the store has
// handed out, made durable before any generation below it is used. Generations tell an
// object's extent from stale or misdirected data (format.ts), which works only if none
// is used twice; the largest generation found on disk after a crash does not bound the
// ones handed out to writes that did not survive (their extent headers may still be on
// disk), and the mark does. The store raises it a batch at a time (generationMarkBatch),
// so it costs one sync per batch of writes, not one per write.
//
// The file holds the mark as 8 bytes little-endian and their CRC32C (4 bytes). It is
// replaced whole: written to a temporary file, synced, renamed over the old one, and
// the directory synced, so a crash leaves the old mark or the new one, never a mix. A
// file missing or damaged reads as no mark, and the store then jumps far past what it
// finds (generationJumpWithoutMark).

import { open, readFile, rename } from "node:fs/promises";
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

const markFileBytes = 12;

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

/** The mark in `dataDir`'s `generation-mark` file. */
export function fileGenerationMark(dataDir: string): GenerationMarkStore {
  const path = join(dataDir, generationMarkFileName);
  const temporary = `${path}.tmp`;
  return {
    async read() {
      try {
        return decodeGenerationMark(await readFile(path));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") {
          return { missing: "there is no mark file" };
        }
        return { missing: `the mark file cannot be read: ${(error as Error).message}` };
      }
    },
    async write(mark) {
      const handle = await open(temporary, "w");
      try {
        await handle.writeFile(encodeGenerationMark(mark));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, path);
      await syncDirectory(dataDir);
    },
  };
}
