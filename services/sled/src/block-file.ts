// The disk port: a file read and written at byte positions, made durable by `sync`.
// The real adapter is a Node FileHandle (buffered I/O, fdatasync), whose small reads go
// through the process's read pool (read-pool.ts: worker threads, in trips); tests plug in an
// in-memory file that loses unsynced writes and tears sectors on a simulated crash.
// Everything above this port is written against its contract:
//
//   - `write` resolves when the bytes are in the file's cache, not when they are durable.
//   - `sync` resolves when every write that resolved before it was called is durable.
//   - `read` returns exactly `length` bytes or fails; a short read is an error.

import { execFile } from "node:child_process";
import { type FileHandle, open, rm, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { constants as runtimeConstants } from "@ballast/runtime";
import { DeviceError } from "./errors.ts";
import { type ReadOwner, ReadPool, sharedReadPool } from "./read-pool.ts";

export interface BlockFile {
  read(position: number, length: number): Promise<Buffer>;
  write(position: number, buffers: readonly Uint8Array[]): Promise<void>;
  sync(): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export class FileBlockFile implements BlockFile, ReadOwner {
  /** Reads through the pool not yet settled; close waits for them (they read by descriptor). */
  private poolReads = 0;
  private whenPoolReadsDone: (() => void) | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly handle: FileHandle,
    private readonly pool: ReadPool,
  ) {}

  /**
   * Opens an existing file for reading and writing. Reads of up to `ReadPool.readBytesMax`
   * bytes go through `pool` (read-pool.ts; the process's own by default), larger ones
   * through the file handle.
   */
  static async open(path: string, pool: ReadPool = sharedReadPool()): Promise<FileBlockFile> {
    return new FileBlockFile(await open(path, "r+"), pool);
  }

  read(position: number, length: number): Promise<Buffer> {
    if (this.closing !== undefined) return Promise.reject(new Error("the file is closed"));
    if (length <= ReadPool.readBytesMax) {
      this.poolReads++;
      return this.pool.read(this.handle.fd, position, length, this);
    }
    return this.readLarge(position, length);
  }

  private async readLarge(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(buffer, done, length - done, position + done);
      if (bytesRead === 0) {
        throw new Error(`short read: ${done} of ${length} bytes at ${position} (end of file)`);
      }
      done += bytesRead;
    }
    return buffer;
  }

  async write(position: number, buffers: readonly Uint8Array[]): Promise<void> {
    let pending = buffers.filter((buffer) => buffer.byteLength > 0);
    let at = position;
    while (pending.length > 0) {
      const { bytesWritten } = await this.handle.writev(pending as Uint8Array[], at);
      at += bytesWritten;
      pending = skipBytes(pending, bytesWritten);
    }
  }

  sync(): Promise<void> {
    return this.handle.datasync();
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  /**
   * Closes the file once its reads through the pool have settled: the pool reads by
   * descriptor, and a descriptor closed under a read could be reused by another file by
   * then. (The handle itself waits for its own reads, writes and syncs.) Reads asked for
   * after close fail.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.poolReads > 0) {
        await new Promise<void>((resolve) => {
          this.whenPoolReadsDone = resolve;
        });
      }
      await this.handle.close();
    })();
    return this.closing;
  }

  /** A read through the pool settled (ReadOwner): the last lets a waiting close go on. */
  readSettled(): void {
    this.poolReads--;
    if (this.poolReads === 0 && this.whenPoolReadsDone !== undefined) {
      const resolve = this.whenPoolReadsDone;
      this.whenPoolReadsDone = undefined;
      resolve();
    }
  }
}

/** The buffers that remain after the first `bytes` bytes of them were written. */
function skipBytes(buffers: readonly Uint8Array[], bytes: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  let skip = bytes;
  for (const buffer of buffers) {
    if (skip >= buffer.byteLength) {
      skip -= buffer.byteLength;
    } else {
      rest.push(skip > 0 ? buffer.subarray(skip) : buffer);
      skip = 0;
    }
  }
  return rest;
}

export type Preallocation = { preallocated: true } | { preallocated: false; note: string };

/**
 * How `fallocate(1)` says the file system cannot preallocate at all (util-linux prints
 * "fallocate: fallocate failed: <strerror>" and exits 1 for every failure, so the reason is
 * read from its message, in the C locale): EOPNOTSUPP ("Operation not supported") and
 * ENOSYS ("Function not implemented"). Only these, and a missing command, fall back to a
 * sparse file; any other failure (ENOSPC, EDQUOT, EIO, …) fails the preallocation.
 */
const fallocateUnsupportedPattern = /Operation not supported|Function not implemented/;

/**
 * Reserves the blocks of the first `bytes` bytes of the existing file `path` with the
 * util-linux `fallocate` command (Node has no fallocate). On a file whose blocks are all
 * allocated it changes nothing; on a sparse one it fills the holes with blocks that read as
 * zeros, so the data of the file never changes. Resolves `{ preallocated: false }` with a
 * note when the command is missing or the file system cannot preallocate (the file is then
 * left as it is); rejects with a DeviceError naming the file, the size and the free space
 * when the preallocation fails for any other reason, such as a full file system.
 */
export async function preallocateFile(path: string, bytes: number): Promise<Preallocation> {
  try {
    await promisify(execFile)("fallocate", ["--length", String(bytes), path], {
      env: { ...process.env, LC_ALL: "C" },
    });
    return { preallocated: true };
  } catch (error) {
    const failure = error as { code?: unknown; stderr?: string; message?: string };
    const reason = failure.stderr?.trim() || failure.message || String(error);
    if (failure.code === "ENOENT" || fallocateUnsupportedPattern.test(reason)) {
      return {
        preallocated: false,
        note: `fallocate failed (${reason}); the file is sparse and its blocks are not reserved`,
      };
    }
    throw new DeviceError(
      path,
      `could not reserve its ${bytes} bytes (${reason}); ${await describeFreeSpace(dirname(path))}`,
      { cause: error },
    );
  }
}

/**
 * Creates `path` with `bytes` bytes that read as zeros, their blocks reserved by
 * `preallocateFile` (so a full file system fails here, at format, not at a later write).
 * Where `fallocate` is missing or the file system cannot preallocate, the file is extended
 * with ftruncate instead, sparse, and the returned note says so. On any other failure the
 * file is deleted (a failed fallocate can keep the blocks it got) and the DeviceError is
 * thrown. The file is its owner's alone: a device holds the chunks of every volume.
 */
export async function createZeroedFile(path: string, bytes: number): Promise<Preallocation> {
  const handle = await open(path, "wx", runtimeConstants.dataFileMode);
  await handle.close();
  let preallocation: Preallocation;
  try {
    preallocation = await preallocateFile(path, bytes);
  } catch (error) {
    await rm(path, { force: true });
    throw error;
  }
  if (!preallocation.preallocated) {
    const handleForTruncate = await open(path, "r+");
    try {
      await handleForTruncate.truncate(bytes);
    } finally {
      await handleForTruncate.close();
    }
  }
  return preallocation;
}

/** "<n> bytes are free there" for the file system of `directory`, or why that is unknown. */
async function describeFreeSpace(directory: string): Promise<string> {
  try {
    const info = await statfs(directory);
    return `the file system of ${directory} has ${info.bavail * info.bsize} bytes free`;
  } catch (error) {
    return `the free space of ${directory} is unknown (${(error as Error).message})`;
  }
}

/** fsync of a directory, so that a rename or create in it is durable. */
export async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
