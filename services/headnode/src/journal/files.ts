// The file-system steps the journal builds its durability from, each doing one thing:
// make a directory entry durable, write every byte of a list of buffers, read a whole
// segment. Nothing here decides what must be durable when; the journal does.
//
// Failure model: an error from the file system is passed up unchanged; the journal turns
// it into a JournalFailedError and stops, because after a failed write or sync the file's
// contents are unknown (all but a runway extension refused for want of space, whose
// zeros the journal cuts off again: journal.ts).

import { writevSync } from "node:fs";
import { type FileHandle, mkdir, open, rm } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { constants as runtimeConstants } from "@ballast/runtime";
import { runwayZeroBufferBytes, writeBuffersMax } from "./constants.ts";
import { assert } from "./errors.ts";
import { forgetFailuresUnder } from "./failed-marker.ts";
import { bytesOf } from "./format.ts";

/** fsync of a directory: makes the creation, renaming or deletion of its entries durable. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates the directory and any missing parents, syncing the parent of each one created,
 * so that a crash cannot take away a directory whose segments were already made durable.
 * Each is made with the data directory's mode (its owner's alone: segments hold volume
 * data).
 */
export async function makeDirectory(directory: string): Promise<void> {
  const firstCreated = await mkdir(directory, {
    recursive: true,
    mode: runtimeConstants.dataDirectoryMode,
  });
  if (firstCreated === undefined) return;
  for (let created = directory; ; created = dirname(created)) {
    await syncDirectory(dirname(created));
    if (created === firstCreated || dirname(created) === created) return;
  }
}

/**
 * Removes the directory and everything in it, then syncs its parent, so that a crash
 * cannot bring the removed entry back (a rebuilt replica's old state, a dropped
 * volume's files). Nothing to remove, or no parent, is not an error. The record of a
 * journal that failed in it goes too (failed-marker.ts): its segments are gone.
 */
export async function removeDirectory(directory: string): Promise<void> {
  await rm(directory, { recursive: true, force: true });
  // A journal failed in there is gone with its files: one made there anew is trusted.
  forgetFailuresUnder(resolve(directory));
  try {
    await syncDirectory(dirname(directory));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

/**
 * Writes all of `buffers` at `position`, in as few writev calls as the kernel allows, and
 * returns how many it made (on a file opened O_DSYNC, each is also a sync).
 */
export async function writeFully(
  handle: FileHandle,
  buffers: readonly Uint8Array[],
  position: number,
): Promise<number> {
  let calls = 0;
  let at = position;
  for (let start = 0; start < buffers.length; start += writeBuffersMax) {
    let group = buffers.slice(start, start + writeBuffersMax);
    let bytesLeft = bytesOf(group);
    while (bytesLeft > 0) {
      const { bytesWritten } = await handle.writev(group, at);
      calls++;
      assert(bytesWritten > 0, `writev wrote nothing of ${bytesLeft} bytes at offset ${at}`);
      at += bytesWritten;
      bytesLeft -= bytesWritten;
      // A short write (a signal, a full quota that later frees) leaves the rest to write.
      if (bytesLeft > 0) group = skipBytes(group, bytesWritten);
    }
  }
  return calls;
}

/**
 * As writeFully, on the calling thread: a blocking writev of the descriptor `fd`, which
 * holds the event loop until the bytes are written and, on a file opened O_DSYNC, synced.
 * For small writes only (journal.ts says when).
 */
export function writeFullySync(
  fd: number,
  buffers: readonly Uint8Array[],
  position: number,
): number {
  let calls = 0;
  let at = position;
  for (let start = 0; start < buffers.length; start += writeBuffersMax) {
    let group = buffers.slice(start, start + writeBuffersMax);
    let bytesLeft = bytesOf(group);
    while (bytesLeft > 0) {
      const bytesWritten = writevSync(fd, group, at);
      calls++;
      assert(bytesWritten > 0, `writev wrote nothing of ${bytesLeft} bytes at offset ${at}`);
      at += bytesWritten;
      bytesLeft -= bytesWritten;
      // A short write (a signal, a full quota that later frees) leaves the rest to write.
      if (bytesLeft > 0) group = skipBytes(group, bytesWritten);
    }
  }
  return calls;
}

/** Never written to: the source of every runway's zeros. */
const zeroBuffer = new Uint8Array(runwayZeroBufferBytes);

/**
 * Writes `bytes` zero bytes at `position` (a runway, journal.ts) and returns how many
 * writev calls it made. The same zero buffer appears many times in one call.
 */
export function writeZeros(handle: FileHandle, position: number, bytes: number): Promise<number> {
  const buffers: Uint8Array[] = [];
  for (let left = bytes; left > 0; left -= runwayZeroBufferBytes) {
    buffers.push(zeroBuffer.subarray(0, Math.min(left, runwayZeroBufferBytes)));
  }
  return writeFully(handle, buffers, position);
}

function skipBytes(buffers: readonly Uint8Array[], bytes: number): Uint8Array[] {
  let skipped = 0;
  for (const [index, buffer] of buffers.entries()) {
    if (skipped + buffer.length > bytes) {
      return [buffer.subarray(bytes - skipped), ...buffers.slice(index + 1)];
    }
    skipped += buffer.length;
  }
  return [];
}
