// The edge between a program and the client: every caller's offset and length is
// checked here, before anything is queued or sent, with the same codes a head node
// would answer (Unaligned, OutOfRange, InvalidArgument), so that a caller handles one
// error type whether the client or the server noticed. Past this check the client
// trusts the range: splitting and batching assume it is aligned and inside the volume.

import { BallastError, ErrorCode, limits } from "@ballast/protocol";

export interface VolumeExtent {
  readonly name: string;
  readonly sizeBytes: number;
}

/**
 * Whether `[offset, offset + length)` is a valid I/O range: what `checkRange` lets pass.
 * Every NBD request is checked, so the check makes nothing (no message, no closure).
 */
export function isValidRange(volume: VolumeExtent, offset: number, length: number): boolean {
  return (
    Number.isSafeInteger(offset) &&
    Number.isSafeInteger(length) &&
    length > 0 &&
    offset % limits.sectorBytes === 0 &&
    length % limits.sectorBytes === 0 &&
    offset >= 0 &&
    offset + length <= volume.sizeBytes
  );
}

/** Throws a BallastError unless `[offset, offset + length)` is a valid I/O range. */
export function checkRange(
  volume: VolumeExtent,
  operation: string,
  offset: number,
  length: number,
): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) {
    throw refused(
      volume,
      operation,
      offset,
      length,
      ErrorCode.InvalidArgument,
      `offset and length must be integers, got offset ${offset} and length ${length}`,
    );
  }
  if (length <= 0) {
    throw refused(
      volume,
      operation,
      offset,
      length,
      ErrorCode.InvalidArgument,
      `length must be positive, got ${length}`,
    );
  }
  if (offset % limits.sectorBytes !== 0 || length % limits.sectorBytes !== 0) {
    throw refused(
      volume,
      operation,
      offset,
      length,
      ErrorCode.Unaligned,
      `offset ${offset} and length ${length} must both be multiples of the ${limits.sectorBytes}-byte sector`,
    );
  }
  if (offset < 0 || offset + length > volume.sizeBytes) {
    throw refused(
      volume,
      operation,
      offset,
      length,
      ErrorCode.OutOfRange,
      `the range [${offset}, ${offset + length}) is outside the volume's ${volume.sizeBytes} bytes`,
    );
  }
}

function refused(
  volume: VolumeExtent,
  operation: string,
  offset: number,
  length: number,
  code: ErrorCode,
  why: string,
): BallastError {
  return new BallastError(
    code,
    `cannot ${operation} on volume ${JSON.stringify(volume.name)}: ${why}`,
    {
      details: {
        volume: volume.name,
        offset,
        length,
        sectorBytes: limits.sectorBytes,
        sizeBytes: volume.sizeBytes,
      },
    },
  );
}

/** Throws a BallastError unless `data` is binary data (callers in JavaScript may pass anything). */
export function checkWriteData(volume: VolumeExtent, offset: number, data: unknown): Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `cannot write at offset ${offset} on volume ${JSON.stringify(volume.name)}: the data must be a Uint8Array, got ${data === null ? "null" : typeof data}`,
      { details: { volume: volume.name, offset } },
    );
  }
  return data;
}

/** Names an operation for messages: "read 4096 bytes at offset 8192". */
export function describeOperation(kind: string, offset: number, length: number): string {
  return `${kind} ${length} bytes at offset ${offset}`;
}
