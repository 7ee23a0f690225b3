// A counter kept in a file that is raised in place: for numbers a service must keep
// durable and only ever raise (the head node's session, a replica's voter epoch), on a
// file system that may be full.
//
// Replacing such a file through a temporary file and a rename (writeFileDurably) needs a
// free block each time, so a full data disk stopped a head node from starting: its
// session take failed with ENOSPC, though its journals are preallocated and readable.
// Here the file holds two copies of the value, A and B, each 8 bytes little-endian and
// their CRC32C (4 bytes), at the start of blocks 0 and 1 (`counterCopyStride` apart, so a
// torn write of one block cannot touch the other). It is made once, whole (through
// writeFileDurably), and from then on a raise overwrites the copy holding the lower value
// in place and syncs it: the other copy keeps the previous value through a crash or a
// torn write, and a read takes the higher of the valid copies. Overwriting blocks the
// file already has needs no free block. (A copy-on-write file system allocates on every
// write anyway; there it does not help.)
//
// The layout is the sled's generation mark's (services/sled/src/generation-mark.ts). A
// file in some earlier layout of the caller's is read with the caller's `readEarlier`,
// and replaced by the two-copy file at its first raise: that one raise still needs a
// free block.
//
// Raises of one file must not overlap: the caller serialises them (a raise reads which
// copy is lower, then overwrites it), and one process owns the file (its data directory's
// lock).
//
// A write or sync that fails leaves its copy uncertain: the page cache may show the new
// value while the disk holds the old one or a torn block (Linux may drop the failed pages).
// The next raise must then not overwrite the other copy, the last value made durable,
// although it reads lower. So the process remembers, per file, which copy its last
// successful raise synced and what it holds (`lastSynced`), and while that copy still reads
// so, a raise overwrites the other one. Without that memory (a new process), the lower copy
// is overwritten: a failed sync, then a restart in the same boot, then a crash during the
// next raise could still lose the last value.

import { type FileHandle, open, readFile } from "node:fs/promises";
import { crc32c } from "@ballast/protocol";
import { writeFileDurably } from "./data-dir.ts";

/** One copy: 8 bytes of value and 4 of CRC32C. */
export const counterCopyBytes = 12;
/** Where copy B starts, copy A being at 0: one 4 KiB block apart. */
export const counterCopyStride = 4096;
/** The two-copy file: two blocks, each beginning with a copy. */
export const counterFileBytes = 2 * counterCopyStride;

/** A counter file as read: its value, no file, or damage (no valid copy); an I/O error throws. */
export type CounterReading = { value: number } | { absent: true } | { damaged: string };

export interface CounterFile {
  read(): Promise<CounterReading>;
  /** Stores `value` (above the stored one); resolves once it is durable. */
  raise(value: number): Promise<void>;
}

export function encodeCounterCopy(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`a counter holds a whole number from 0 to 2^53, not ${value}`);
  }
  const bytes = Buffer.alloc(counterCopyBytes);
  bytes.writeUInt32LE(value % 2 ** 32, 0);
  bytes.writeUInt32LE(Math.floor(value / 2 ** 32), 4);
  bytes.writeUInt32LE(crc32c(bytes.subarray(0, 8)), 8);
  return bytes;
}

/** The value of one copy, or undefined if it fails its CRC32C (an all-zero copy does). */
export function decodeCounterCopy(bytes: Uint8Array): number | undefined {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.byteLength !== counterCopyBytes) return undefined;
  if (buffer.readUInt32LE(8) !== crc32c(buffer.subarray(0, 8))) return undefined;
  const value = buffer.readUInt32LE(4) * 2 ** 32 + buffer.readUInt32LE(0);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** Per file, the copy this process's last successful raise synced, and its value. */
const lastSynced = new Map<string, { at: number; value: number }>();

function decodeCopies(bytes: Buffer): [number | undefined, number | undefined] {
  const copy = (at: number) => decodeCounterCopy(bytes.subarray(at, at + counterCopyBytes));
  return [copy(0), copy(counterCopyStride)];
}

/**
 * The counter in the file at `path`. `readEarlier`: the value of a file in the caller's
 * earlier layout (any size but `counterFileBytes`), or a reason it is damaged.
 */
export function counterFile(
  path: string,
  readEarlier: (bytes: Buffer) => number | { damaged: string } = (bytes) => ({
    damaged: `${path} is ${bytes.byteLength} bytes, not ${counterFileBytes}`,
  }),
): CounterFile {
  /** Makes the two-copy file whole: `value` in copy A, copy B empty (invalid). */
  const replaceWhole = async (value: number) => {
    const bytes = Buffer.alloc(counterFileBytes);
    encodeCounterCopy(value).copy(bytes, 0);
    await writeFileDurably(path, bytes);
    lastSynced.set(path, { at: 0, value });
  };

  return {
    async read() {
      let bytes: Buffer;
      try {
        bytes = await readFile(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return { absent: true };
        throw error;
      }
      if (bytes.byteLength !== counterFileBytes) {
        const earlier = readEarlier(bytes);
        return typeof earlier === "number" ? { value: earlier } : earlier;
      }
      const [a, b] = decodeCopies(bytes);
      if (a === undefined && b === undefined) {
        return { damaged: `neither copy in ${path} passes its CRC32C` };
      }
      return { value: Math.max(a ?? 0, b ?? 0) };
    },

    async raise(value) {
      const copy = encodeCounterCopy(value);
      let handle: FileHandle;
      try {
        handle = await open(path, "r+");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
        return replaceWhole(value);
      }
      let whole = false;
      try {
        if ((await handle.stat()).size !== counterFileBytes) {
          // An earlier layout (or a damaged file): made whole once, then overwritten.
          whole = true;
        } else {
          const [a, b] = decodeCopies(await handle.readFile());
          // Overwrite the copy other than the one last synced by this process, if it still
          // holds what was synced; else the copy holding the lower value (an invalid copy
          // counts lowest). The other keeps its value until this write is durable.
          const synced = lastSynced.get(path);
          const target =
            synced !== undefined && (synced.at === 0 ? a : b) === synced.value
              ? counterCopyStride - synced.at
              : a === undefined || (b !== undefined && a <= b)
                ? 0
                : counterCopyStride;
          const { bytesWritten } = await handle.write(copy, 0, counterCopyBytes, target);
          if (bytesWritten !== counterCopyBytes) {
            throw new Error(`${path}: wrote ${bytesWritten} of a copy's ${counterCopyBytes} bytes`);
          }
          await handle.datasync();
          lastSynced.set(path, { at: target, value });
        }
      } finally {
        await handle.close();
      }
      if (whole) await replaceWhole(value);
    },
  };
}
