// How a volume's byte range maps onto its partitions. Pure functions over the
// coordinator's description: no I/O, no state.
//
// Model: a volume of `sizeBytes` is tiled by partitions, each `[partitionStart,
// partitionStart + partitionBytes)`, in order, without gaps or overlaps (sizes may
// differ). The partitions cover at least the volume: a resized volume's may reach past
// its size (a grow adds whole partitions, a shrink keeps them), and I/O is bounded by
// the size, not by them. Offsets stay volume offsets throughout: the wire carries them
// that way, so splitting only ever cuts a range, never rebases it.
//
// Failure model: the description comes from another process. It is checked here once,
// when it arrives, and normalised: a partition listed twice (a catalogue listing taken
// while the partition's record changed) is kept once, at its newest epoch. A description
// that does not tile its volume, or a layout that changed under an open volume, is
// refused with InvalidVolumeStateError rather than guessed at; a volume deleted and
// created again under the same name while open is NotFound. Past that check, the
// functions assert nothing more about it.

import { BallastError, ErrorCode, limits, type ResultOf } from "@ballast/protocol";
import { InvalidVolumeStateError } from "./errors.ts";

/** The coordinator's description of a volume, as volume.describe.v1 answers it. */
export type VolumeState = ResultOf<"volume.describe.v1">;

export type PartitionLayout = Pick<
  VolumeState["partitions"][number],
  "partition" | "partitionStart" | "partitionBytes"
>;

/** A part of a range that lies in one partition; `index` is the partition's position. */
export interface Piece {
  readonly index: number;
  readonly offset: number;
  readonly length: number;
}

/**
 * The description the client uses: `state` with each partition listed once, in partition
 * order. Throws InvalidVolumeStateError unless it describes `name` and its partitions
 * tile the volume from 0 without gaps, to its size or past it.
 *
 * A partition listed twice is not an inconsistency: the coordinator lists its catalogue
 * with a key listing that returns a key again when the key is updated during the
 * listing (a failover in progress), and it reads each copy separately. The copies then
 * agree on the partition's range and differ at most in epoch and members; the one with
 * the higher epoch is the newer, and is kept. Copies that disagree on the range are a
 * real inconsistency.
 */
export function normalizeVolumeState(name: string, state: VolumeState): VolumeState {
  if (state.name !== name) {
    throw new InvalidVolumeStateError(
      name,
      `the coordinator answered for volume ${JSON.stringify(state.name)}`,
    );
  }
  if (state.sizeBytes % limits.sectorBytes !== 0) {
    throw new InvalidVolumeStateError(
      name,
      `its size ${state.sizeBytes} is not a multiple of ${limits.sectorBytes} bytes`,
    );
  }
  const partitions = newestCopies(name, state.partitions);
  let expectedStart = 0;
  for (const [index, partition] of partitions.entries()) {
    if (partition.partition !== index) {
      throw new InvalidVolumeStateError(
        name,
        `its partitions are numbered ${partitions.map((each) => each.partition).join(", ")}, not 0 to ${partitions.length - 1}`,
      );
    }
    if (partition.partitionStart !== expectedStart) {
      throw new InvalidVolumeStateError(
        name,
        `partition ${partition.partition} starts at ${partition.partitionStart}, expected ${expectedStart}`,
      );
    }
    if (partition.partitionBytes <= 0 || partition.partitionBytes % limits.sectorBytes !== 0) {
      throw new InvalidVolumeStateError(
        name,
        `partition ${partition.partition} has ${partition.partitionBytes} bytes, not a positive multiple of ${limits.sectorBytes}`,
      );
    }
    expectedStart += partition.partitionBytes;
  }
  if (expectedStart < state.sizeBytes) {
    throw new InvalidVolumeStateError(
      name,
      `its partitions cover ${expectedStart} bytes, but its size is ${state.sizeBytes}`,
    );
  }
  return partitions === state.partitions ? state : { ...state, partitions };
}

type PartitionState = VolumeState["partitions"][number];

/**
 * Each partition once, the copy with the highest epoch (the first of equals), sorted by
 * partition number; the very array given when it already is so (the common case).
 */
function newestCopies(
  name: string,
  partitions: readonly PartitionState[],
): VolumeState["partitions"] {
  let inOrder = true;
  for (let index = 1; index < partitions.length && inOrder; index += 1) {
    inOrder = partitions[index - 1]!.partition < partitions[index]!.partition;
  }
  if (inOrder) return partitions as VolumeState["partitions"];
  const newest = new Map<number, PartitionState>();
  for (const copy of partitions) {
    const kept = newest.get(copy.partition);
    if (kept === undefined) {
      newest.set(copy.partition, copy);
      continue;
    }
    if (
      kept.partitionStart !== copy.partitionStart ||
      kept.partitionBytes !== copy.partitionBytes
    ) {
      throw new InvalidVolumeStateError(
        name,
        `partition ${copy.partition} is listed twice with different ranges, [${kept.partitionStart}, +${kept.partitionBytes}) and [${copy.partitionStart}, +${copy.partitionBytes})`,
      );
    }
    if (copy.epoch > kept.epoch) newest.set(copy.partition, copy);
  }
  return [...newest.values()].sort((left, right) => left.partition - right.partition);
}

/**
 * Throws NotFound if `next` is another incarnation of the name than `previous` (the open
 * volume was deleted, and one created under its name: its bytes are not the open
 * volume's), and InvalidVolumeStateError if `next` maps offsets to partitions unlike
 * `previous`. A resize is not a change of layout: the size may differ, and partitions
 * may be added after the last (a grow), as long as every partition `previous` knew
 * keeps its range.
 */
export function checkSameLayout(previous: VolumeState, next: VolumeState): void {
  if (previous.id !== undefined && next.id !== undefined && previous.id !== next.id) {
    throw new BallastError(
      ErrorCode.NotFound,
      `volume ${JSON.stringify(previous.name)} was deleted while open: the name now belongs to another volume (incarnation ${next.id}, not ${previous.id})`,
      { details: { volume: previous.name, id: previous.id, currentId: next.id } },
    );
  }
  const changed = (what: string): never => {
    throw new InvalidVolumeStateError(previous.name, `its layout changed while open: ${what}`);
  };
  if (next.partitions.length < previous.partitions.length) {
    changed(`${previous.partitions.length} partitions became ${next.partitions.length}`);
  }
  for (const [index, before] of previous.partitions.entries()) {
    const after = next.partitions[index]!;
    if (
      after.partition !== before.partition ||
      after.partitionStart !== before.partitionStart ||
      after.partitionBytes !== before.partitionBytes
    ) {
      changed(
        `partition ${before.partition} at [${before.partitionStart}, +${before.partitionBytes}) became partition ${after.partition} at [${after.partitionStart}, +${after.partitionBytes})`,
      );
    }
  }
}

/** The position of the partition holding byte `offset`, which must lie in the volume. */
export function partitionIndexOf(partitions: readonly PartitionLayout[], offset: number): number {
  let low = 0;
  let high = partitions.length - 1;
  while (low < high) {
    // The last partition whose start is at or before the offset.
    const middle = Math.ceil((low + high) / 2);
    if (partitions[middle]!.partitionStart <= offset) low = middle;
    else high = middle - 1;
  }
  return low;
}

/**
 * Cuts `[offset, offset + length)` at partition boundaries, and each partition's part
 * into pieces of at most `pieceBytesMax`, in offset order. The range must lie inside
 * the volume the partitions tile.
 */
export function splitRange(
  partitions: readonly PartitionLayout[],
  offset: number,
  length: number,
  pieceBytesMax: number,
): Piece[] {
  const pieces: Piece[] = [];
  const end = offset + length;
  let cursor = offset;
  let index = partitionIndexOf(partitions, offset);
  while (cursor < end) {
    const partition = partitions[index]!;
    const partitionEnd = partition.partitionStart + partition.partitionBytes;
    const pieceEnd = Math.min(end, partitionEnd, cursor + pieceBytesMax);
    pieces.push({ index, offset: cursor, length: pieceEnd - cursor });
    cursor = pieceEnd;
    if (cursor === partitionEnd) index += 1;
  }
  return pieces;
}
