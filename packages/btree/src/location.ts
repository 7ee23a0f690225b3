// Where the newest bytes of an extent live. Three kinds:
//
// - "journal": not yet flushed; the bytes sit in the head node's journal, in `segment`
//   at byte `position`.
// - "chunk": flushed; the bytes sit in sled chunk `chunkId` at byte `offset`.
// - "zero": a write-zeroes (or a trim that must not be undone by replaying older notes);
//   the range reads as zeros and occupies no space anywhere.
//
// A location names the place of the extent's first byte. When the tree cuts k bytes off
// the front of an extent, it advances the location by k, so that every piece still
// points at its own bytes.
//
// Public code sees locations as small immutable objects. Inside the tree a location is
// stored as three numbers in the leaf's parallel arrays: a kind code, an id (segment or
// chunk id) and an offset (position or offset in chunk); "zero" stores 0 and 0. Chunk
// ids are numbers rather than strings so that the tree and its checkpoint never hold a
// string per extent. The codes are persisted in checkpoints: never renumber them.

import { assertIntegerInRange } from "./assert.ts";
import { locationFieldMax } from "./constants.ts";
import { BtreeAssertionError } from "./errors.ts";

export interface JournalLocation {
  readonly kind: "journal";
  readonly segment: number;
  readonly position: number;
}

export interface ChunkLocation {
  readonly kind: "chunk";
  readonly chunkId: number;
  readonly offset: number;
}

export interface ZeroLocation {
  readonly kind: "zero";
}

export type Location = JournalLocation | ChunkLocation | ZeroLocation;

/** The stored code of each location kind. Persisted in checkpoints. */
export const LocationCode = {
  zero: 0,
  journal: 1,
  chunk: 2,
} as const;

export type LocationCode = (typeof LocationCode)[keyof typeof LocationCode];

/** One shared instance: zero locations carry nothing, so pieces need not allocate one. */
export const zeroLocation: ZeroLocation = Object.freeze({ kind: "zero" });

export function isLocationCode(value: number): value is LocationCode {
  return (
    value === LocationCode.zero || value === LocationCode.journal || value === LocationCode.chunk
  );
}

/** The stored code of `location`'s kind. */
export function locationCodeOf(location: Location): LocationCode {
  switch (location.kind) {
    case "zero":
      return LocationCode.zero;
    case "journal":
      return LocationCode.journal;
    case "chunk":
      return LocationCode.chunk;
    default:
      return unknownKind(location);
  }
}

/** The stored id: the journal segment, the chunk id, or 0. */
export function locationIdOf(location: Location): number {
  switch (location.kind) {
    case "zero":
      return 0;
    case "journal":
      return location.segment;
    case "chunk":
      return location.chunkId;
    default:
      return unknownKind(location);
  }
}

/** The stored offset: the journal position, the offset in the chunk, or 0. */
export function locationOffsetOf(location: Location): number {
  switch (location.kind) {
    case "zero":
      return 0;
    case "journal":
      return location.position;
    case "chunk":
      return location.offset;
    default:
      return unknownKind(location);
  }
}

/** Rebuilds the public object from its stored form. */
export function locationFromParts(code: number, id: number, offset: number): Location {
  switch (code) {
    case LocationCode.zero:
      return zeroLocation;
    case LocationCode.journal:
      return { kind: "journal", segment: id, position: offset };
    case LocationCode.chunk:
      return { kind: "chunk", chunkId: id, offset };
    default:
      throw new BtreeAssertionError(`no location kind has code ${code}`);
  }
}

/** The stored offset of a location advanced by `bytes`: zero locations have none to move. */
export function advanceLocationOffset(code: number, offset: number, bytes: number): number {
  return code === LocationCode.zero ? 0 : offset + bytes;
}

/** The location of the byte `bytes` past the one `location` names. */
export function advanceLocation(location: Location, bytes: number): Location {
  assertIntegerInRange(bytes, "bytes to advance a location", 0, locationFieldMax);
  return locationFromParts(
    locationCodeOf(location),
    locationIdOf(location),
    advanceLocationOffset(locationCodeOf(location), locationOffsetOf(location), bytes),
  );
}

/**
 * Asserts that `location` is well formed and that it can be advanced across an extent of
 * `lengthBytes` without leaving the safe integers.
 */
export function assertLocation(location: Location, lengthBytes: number): void {
  if (typeof location !== "object" || location === null) {
    throw new BtreeAssertionError(`location must be an object, got ${typeof location}`);
  }
  switch (location.kind) {
    case "zero":
      return;
    case "journal":
      assertIntegerInRange(location.segment, "journal segment", 0, locationFieldMax);
      assertIntegerInRange(
        location.position,
        "journal position",
        0,
        locationFieldMax - lengthBytes,
      );
      return;
    case "chunk":
      assertIntegerInRange(location.chunkId, "chunk id", 0, locationFieldMax);
      assertIntegerInRange(location.offset, "offset in chunk", 0, locationFieldMax - lengthBytes);
      return;
    default:
      unknownKind(location);
  }
}

function unknownKind(location: never): never {
  throw new BtreeAssertionError(
    `location kind must be "journal", "chunk" or "zero", got ${JSON.stringify((location as { kind: unknown }).kind)}`,
  );
}
