// The sled's rules for sizes, alignment and ranges, checked once at the edge after the
// protocol's schemas have checked shapes. Each broken rule is a BallastError with the
// code that names it (Unaligned, OutOfRange, PayloadTooLarge, InvalidArgument) and the
// values seen, so that a caller can tell which rule it broke. Pure: no state, no I/O.

import {
  BallastError,
  blobPartAlignmentBytes,
  ErrorCode,
  limits,
  sledLimits,
} from "@ballast/protocol";
import type { ChunkOwner } from "./format.ts";

const sector = limits.sectorBytes;

function unaligned(what: string, value: number, alignment: number): BallastError {
  return new BallastError(
    ErrorCode.Unaligned,
    `${what} ${value} is not a multiple of ${alignment} bytes`,
    { details: { [what.replaceAll(" ", "")]: value, alignment } },
  );
}

/** A chunk's data: 512 bytes to 4 MiB, whole sectors. */
export function checkChunkData(bytes: number): void {
  if (bytes > sledLimits.chunkBytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `a chunk holds at most ${sledLimits.chunkBytesMax} bytes, got ${bytes}`,
      { details: { bytes, bytesMax: sledLimits.chunkBytesMax } },
    );
  }
  if (bytes === 0) {
    throw new BallastError(ErrorCode.InvalidArgument, "a chunk cannot be empty");
  }
  if (bytes % sector !== 0) throw unaligned("chunk length", bytes, sector);
}

/** A read of a chunk: whole sectors, at most the read limit. Range is checked once found. */
export function checkChunkReadShape(offset: number, length: number): void {
  if (offset % sector !== 0) throw unaligned("read offset", offset, sector);
  if (length % sector !== 0) throw unaligned("read length", length, sector);
  if (length === 0) throw new BallastError(ErrorCode.InvalidArgument, "a read cannot be empty");
  if (length > sledLimits.readBytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `a read returns at most ${sledLimits.readBytesMax} bytes, asked for ${length}`,
      { details: { length, lengthMax: sledLimits.readBytesMax } },
    );
  }
}

/** The range must lie inside the object. */
export function checkRange(
  what: string,
  offset: number,
  length: number,
  objectBytes: number,
): void {
  if (offset + length > objectBytes) {
    throw new BallastError(
      ErrorCode.OutOfRange,
      `cannot read ${length} bytes at offset ${offset} of ${what}: it holds ${objectBytes} bytes`,
      { details: { offset, length, bytes: objectBytes } },
    );
  }
}

/** A request must name the owner the chunk was written for. */
export function checkOwner(chunkId: string, stored: ChunkOwner, given: ChunkOwner): void {
  if (stored.volume !== given.volume || stored.partition !== given.partition) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `chunk ${chunkId} belongs to ${stored.volume}/${stored.partition}, not ${given.volume}/${given.partition}`,
      { details: { reason: "wrong-owner", chunkId, owner: stored, given } },
    );
  }
}

/** A blob's declared size: 1 byte to the blob limit. */
export function checkBlobSize(bytes: number): void {
  if (bytes > sledLimits.blobBytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `a blob holds at most ${sledLimits.blobBytesMax} bytes, asked for ${bytes}`,
      { details: { bytes, bytesMax: sledLimits.blobBytesMax } },
    );
  }
  if (bytes === 0) throw new BallastError(ErrorCode.InvalidArgument, "a blob cannot be empty");
}

/**
 * The next part of an upload: at the offset received so far, non-empty, at most the part
 * limit, inside the blob, and whole 4 KiB blocks unless it is the last part.
 */
export function checkBlobPart(
  upload: { received: number; bytes: number },
  offset: number,
  length: number,
): void {
  if (offset !== upload.received) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `parts must arrive in order: expected offset ${upload.received}, got ${offset}`,
      { details: { reason: "out-of-order", expectedOffset: upload.received, offset } },
    );
  }
  if (length === 0) throw new BallastError(ErrorCode.InvalidArgument, "a part cannot be empty");
  if (length > sledLimits.blobPartBytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `a part holds at most ${sledLimits.blobPartBytesMax} bytes, got ${length}`,
      { details: { length, lengthMax: sledLimits.blobPartBytesMax } },
    );
  }
  if (offset + length > upload.bytes) {
    throw new BallastError(
      ErrorCode.OutOfRange,
      `a part of ${length} bytes at offset ${offset} runs past the blob's ${upload.bytes} bytes`,
      { details: { offset, length, bytes: upload.bytes } },
    );
  }
  const isLast = offset + length === upload.bytes;
  if (!isLast && length % blobPartAlignmentBytes !== 0) {
    throw unaligned("part length", length, blobPartAlignmentBytes);
  }
}

/** A blob get: any alignment; the length defaults to the rest of the blob, up to the limit. */
export function blobGetLength(offset: number, length: number | undefined, blobBytes: number) {
  if (offset > blobBytes) checkRange("the blob", offset, 0, blobBytes);
  const wanted = length ?? Math.min(blobBytes - offset, sledLimits.readBytesMax);
  if (wanted > sledLimits.readBytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `a get returns at most ${sledLimits.readBytesMax} bytes, asked for ${wanted}`,
      { details: { length: wanted, lengthMax: sledLimits.readBytesMax } },
    );
  }
  checkRange("the blob", offset, wanted, blobBytes);
  return wanted;
}
