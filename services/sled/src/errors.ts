// Errors of the sled. Three kinds, kept apart on purpose:
//
// - DeviceError: a device file the sled will not use (another sled's, another format,
//   another size, a damaged superblock, a missing member of the device set). It stops
//   the sled at start with a sentence that names the file and what was found, because
//   guessing (reformatting, adopting) could destroy acknowledged data.
// - BallastError (from @ballast/protocol): an operating fault or bad input that crosses
//   the bus as a typed code: NotFound, NoSpace, ChecksumMismatch, Unaligned, … The
//   builders below give each one its message and details in one place.
// - SledAssertionError: a broken invariant of the sled's own code (an allocator asked to
//   free what it never handed out). It is a bug, not a condition to handle.

import { BallastError, ErrorCode } from "@ballast/protocol";

export class DeviceError extends Error {
  override readonly name = "DeviceError";
  readonly path: string;

  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`cannot use device file ${path}: ${message}`, options);
    this.path = path;
  }
}

export class SledAssertionError extends Error {
  override readonly name = "SledAssertionError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new SledAssertionError(message);
}

/** Where a checksum failed: enough for an operator (or a repair) to find the bytes. */
export interface DamageLocation {
  sled: string;
  device: number;
  /** Device byte offset of the damaged block or header. */
  offset: number;
  kind: "chunk" | "blob";
  /** The chunk id or blob key. */
  id: string;
  /** The failed block's index within the object's data, absent for a header. */
  block?: number;
  reason: string;
}

export function checksumMismatch(damage: DamageLocation): BallastError {
  const what = damage.kind === "chunk" ? `chunk ${damage.id}` : `blob ${damage.id}`;
  const { kind, id, ...rest } = damage;
  return new BallastError(
    ErrorCode.ChecksumMismatch,
    `cannot read ${what}: ${damage.reason} on sled ${damage.sled} device ${damage.device} at offset ${damage.offset}`,
    { details: { ...rest, ...(kind === "chunk" ? { chunkId: id } : { blobKey: id }) } },
  );
}

export function notFound(kind: "chunk" | "blob" | "upload", id: string): BallastError {
  return new BallastError(ErrorCode.NotFound, `no ${kind} ${JSON.stringify(id)} on this sled`, {
    details: { kind, id },
  });
}

export function noSpace(bytes: number, reason: string, details: Record<string, unknown>) {
  return new BallastError(ErrorCode.NoSpace, `cannot store ${bytes} bytes: ${reason}`, {
    details: { bytes, ...details },
  });
}

export function deviceFailed(device: number, cause: unknown): BallastError {
  return new BallastError(
    ErrorCode.Unavailable,
    `device ${device} takes no more writes after an I/O error: ${(cause as Error)?.message ?? String(cause)}`,
    { cause, details: { device } },
  );
}
