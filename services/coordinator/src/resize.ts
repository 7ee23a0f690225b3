// The resize decision: what changing a volume's size does to its partitions. Pure: the
// volume record, its partition ranges and the request come in, a plan goes out; the
// shell (volumes.ts) trims, writes the records and configures the new partitions.
//
// Model: a volume's partitions tile `[0, coveredEnd)` in order, and `coveredEnd` is at
// least the volume's size: the partitions may reach past the size, never fall short of
// it. A create makes them end exactly at the size (its last partition the remainder). A
// grow past `coveredEnd` appends partitions of the volume's full partition size
// (existing partitions never change range: their replicas' bounds are fixed), so a
// later grow within the last one changes only the size. A shrink keeps every partition
// and only lowers the size: whole partitions past the new end stay, empty once trimmed,
// and serve the volume again if it grows (a head node drops replicas only per
// incarnation, and the orphan sweep frees chunks only of partitions the catalogue
// lists, so keeping them is what keeps both correct).
//
// Zeros past the end: nothing past the size may ever be shown again. A shrink trims
// `[newSize, oldSize)` before it lowers the size (freeing the space), and a grow trims
// the part of existing partitions it reveals, `[oldSize, min(newSize, coveredEnd))`,
// before it raises the size. The second trim is the guarantee: a write that landed past
// the end after a shrink (a client that had not yet learned the smaller size) is
// trimmed before any reader can see it; a trim of a never-written range costs one
// metadata op per partition.
//
// Attached clients: an NBD connection keeps the size it opened with, so a shrink under
// one would take writes past the new end and lose them at the next grow. A shrink is
// therefore refused while the volume is attached unless forced (`detachesFirst`,
// attached.ts), and the gateways are told once the smaller size is recorded.
//
// The end on the head nodes: neither of those reaches a gateway that does not answer,
// nor a program using the client library, which learns a shrink only when it next
// describes the volume. So each partition record carries `servedBytes`, the bytes of
// the partition inside the volume (`servedBytesOf`; absent in records from before it:
// all of them), its configure carries it to the primary, and the primary refuses
// (OutOfRange) a write, trim or write-zeroes reaching past it and a read of the volume
// there, whatever size its client believes. It is part of the epoch's configuration: a
// record whose value changes is written in a new epoch (same members), so a configure
// of an older one can never bring an older value back, and a new primary after a
// failover is configured from a record that carries it. The shell has the primary
// confirm the epoch (a flush sent in it succeeds only on a primary configured in it)
// before it goes on. Order: a shrink lowers the value and has it confirmed before it
// trims, so that no write past the new end is acknowledged after the trim, whoever
// sends it; a grow trims what it reveals, then raises the value and has it confirmed,
// then raises the size, so that no client is refused inside the size it was told (and
// first lowers any value past the present size, left by a grow that failed after raising
// it, so that nothing acknowledged there is then trimmed). The resize's own trims pass
// the bound (`pastEnd`): they only discard what lies past the
// end. Every plan, even an unchanged size, names the partitions whose value is not the
// one its size wants (`limitChanges`): a resize that failed halfway, or records from
// before the field, are put right by the next resize of the volume, to any size.
//
// A shrink begun: a shrink that stops after lowering ends (a primary that never
// confirms, a trim that times out, a leader that dies) would leave the tail refused
// inside the size the record still says, with nothing to show it. So before it lowers
// any end the shrink records its target in the volume record (`shrinkingTo`), by
// compare-and-set, and the write of the new size removes it. A shrink once recorded
// goes ahead, never back: part of its tail may be trimmed already. The leader finishes
// a recorded shrink in the background (volumes.ts `resumeShrinks`, retried with a
// back-off), a resize of the volume to any size finishes it first (a retry of the same
// shrink thereby completes it), and describe shows it (`shrinkingTo`, and each
// partition's served bytes).
//
// Rolling upgrades: head nodes older than served bytes ignore them. A shrink is refused
// while a node that serves the volume (a voter of one of its partitions) reported
// without `enforcesServedBytes`, or a primary has not reported to this coordinator
// (`unenforcedEnds`), naming the nodes: the new end would not be enforced there.
//
// Failure model: a plan is a function of what was read; the shell writes the volume
// record by compare-and-set, so a plan made on a stale read is refused, not applied.

import { BallastError, ErrorCode, limits } from "@ballast/protocol";
import type { PartitionRange } from "./placement.ts";

/**
 * The size a shrink begun and not finished is taking `volume` to; undefined when none is.
 * A mark not below the size, or begun from another size than the record's, was carried
 * through a resize by a coordinator older than the mark (it copies the record whole):
 * it means nothing. Finishing it would trim the tail of a volume grown since, where
 * acknowledged writes may be (review-diff19 D4).
 */
export function shrinkingOf(volume: {
  sizeBytes: number;
  shrinkingTo?: number;
  shrinkingFrom?: number;
}): number | undefined {
  const target = volume.shrinkingTo;
  return target !== undefined &&
    target < volume.sizeBytes &&
    volume.shrinkingFrom === volume.sizeBytes
    ? target
    : undefined;
}

/**
 * What finishing the shrink begun on `volume` does (see `shrinkingOf`): lower the ends
 * not yet lowered, trim the whole tail again (trims are idempotent), write the size.
 */
export function finishShrinkPlan(
  volume: { sizeBytes: number; shrinkingTo?: number; shrinkingFrom?: number },
  partitions: readonly PartitionRange[],
): Extract<ResizePlan, { kind: "shrink" }> | undefined {
  const target = shrinkingOf(volume);
  if (target === undefined) return undefined;
  return {
    kind: "shrink",
    sizeBytes: target,
    trim: { offset: target, length: volume.sizeBytes - target },
    limits: limitChanges(partitions, target),
  };
}

/**
 * The nodes serving `partitions` on which a shrink's new end would not be enforced, each
 * with why: a voter whose last report said nothing of `enforcesServedBytes` (a head node
 * older than served bytes), or a primary not heard from at all (its version unknown). A
 * secondary not heard from is not named: it is no primary now, and once back it reports
 * before it can be promoted.
 */
export function unenforcedEnds(
  partitions: readonly { primary: string; secondaries: readonly string[] }[],
  enforces: (node: string) => boolean | undefined,
): { node: string; why: string }[] {
  const named = new Map<string, string>();
  for (const partition of partitions) {
    for (const node of [partition.primary, ...partition.secondaries]) {
      if (named.has(node)) continue;
      const known = enforces(node);
      if (known === false) named.set(node, "runs a head node that does not enforce volume ends");
      else if (known === undefined && node === partition.primary) {
        named.set(node, "has not reported to this coordinator yet");
      }
    }
  }
  return [...named].sort(([a], [b]) => a.localeCompare(b)).map(([node, why]) => ({ node, why }));
}

/** A range of volume bytes. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** A partition whose served bytes a resize changes, and their new value. */
export interface LimitChange {
  partition: number;
  servedBytes: number;
}

export type ResizePlan =
  /** The size is already the one asked for; set `limits` (usually none). */
  | { kind: "unchanged"; sizeBytes: number; limits: LimitChange[] }
  /**
   * Lower `lowerFirst` (served bytes past the present size: a grow that failed after
   * raising them), trim `trim` (inside existing partitions, possibly empty), raise
   * `limits`, write `added` partition records, then raise the size.
   */
  | {
      kind: "grow";
      sizeBytes: number;
      lowerFirst: LimitChange[];
      trim: ByteRange | undefined;
      limits: LimitChange[];
      added: PartitionRange[];
    }
  /** Lower `limits`, trim `trim`, then lower the size; partitions stay. */
  | { kind: "shrink"; sizeBytes: number; trim: ByteRange; limits: LimitChange[] };

/**
 * The bytes of `partition`, from its start, inside a volume of `sizeBytes`: all of them
 * for a partition wholly inside, none for one wholly past the end.
 */
export function servedBytesOf(
  partition: Pick<PartitionRange, "partitionStart" | "partitionBytes">,
  sizeBytes: number,
): number {
  return Math.min(partition.partitionBytes, Math.max(0, sizeBytes - partition.partitionStart));
}

/** The served bytes `partitions` records for partition `index` (absent: all). */
function servedOf(partitions: readonly PartitionRange[], index: number): number {
  const found = partitions.find((partition) => partition.partition === index)!;
  return found.servedBytes ?? found.partitionBytes;
}

/**
 * The partitions whose served bytes (absent: all) are not what a volume of `sizeBytes`
 * wants, each with the value it wants, in partition order.
 */
export function limitChanges(
  partitions: readonly PartitionRange[],
  sizeBytes: number,
): LimitChange[] {
  const changes: LimitChange[] = [];
  for (const partition of partitions) {
    const wanted = servedBytesOf(partition, sizeBytes);
    if ((partition.servedBytes ?? partition.partitionBytes) !== wanted) {
      changes.push({ partition: partition.partition, servedBytes: wanted });
    }
  }
  return changes;
}

export interface ResizeRequest {
  name: string;
  sizeBytes: number;
  allowShrink?: boolean;
}

/**
 * Whether the plan needs the volume detached (or the request forced) before it runs: a
 * shrink does. An NBD connection keeps the size it opened with, so its writes past the
 * new end would be acknowledged and then lost (the next grow trims them). A grow
 * discards nothing: an attached client keeps its old size and sees the new bytes on its
 * next connection.
 */
export function detachesFirst(plan: ResizePlan): boolean {
  return plan.kind === "shrink";
}

/**
 * The plan for resizing a volume of `currentBytes` whose volume-wide partition size is
 * `partitionBytes` and whose partitions are `partitions` (in partition order, tiling
 * from 0). Throws InvalidArgument for a size create would refuse, a shrink without
 * `allowShrink`, or a grow past the partition limit.
 */
export function planResize(
  volume: { sizeBytes: number; partitionBytes: number },
  partitions: readonly PartitionRange[],
  request: ResizeRequest,
): ResizePlan {
  const refuse = (why: string): never => {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `cannot resize volume ${request.name} to ${request.sizeBytes} bytes: ${why}`,
      { details: { volume: request.name, sizeBytes: request.sizeBytes } },
    );
  };
  const size = request.sizeBytes;
  if (!Number.isSafeInteger(size) || size <= 0 || size % limits.sectorBytes !== 0) {
    refuse(`the size must be a positive multiple of ${limits.sectorBytes} bytes`);
  }
  if (size > limits.volumeBytesMax) {
    refuse(`the size must be at most ${limits.volumeBytesMax} bytes`);
  }
  const changes = limitChanges(partitions, size);
  if (size === volume.sizeBytes) return { kind: "unchanged", sizeBytes: size, limits: changes };
  if (size < volume.sizeBytes) {
    if (request.allowShrink !== true) {
      refuse(
        `that would shrink it from ${volume.sizeBytes} bytes and discard the data past the new end; pass allowShrink (--allow-shrink) to shrink`,
      );
    }
    return {
      kind: "shrink",
      sizeBytes: size,
      trim: { offset: size, length: volume.sizeBytes - size },
      limits: changes,
    };
  }
  const last = partitions.at(-1);
  const coveredEnd = last === undefined ? 0 : last.partitionStart + last.partitionBytes;
  const revealedEnd = Math.min(size, coveredEnd);
  const trim =
    revealedEnd > volume.sizeBytes
      ? { offset: volume.sizeBytes, length: revealedEnd - volume.sizeBytes }
      : undefined;
  const added: PartitionRange[] = [];
  let start = coveredEnd;
  let partition = partitions.length;
  const count = Math.max(0, Math.ceil((size - coveredEnd) / volume.partitionBytes));
  if (partitions.length + count > limits.partitionsPerVolumeMax) {
    refuse(
      `it would need ${partitions.length + count} partitions, over the limit of ${limits.partitionsPerVolumeMax}; with its partitions of ${volume.partitionBytes} bytes it can grow to at most ${Math.min(limits.volumeBytesMax, coveredEnd + Math.max(0, limits.partitionsPerVolumeMax - partitions.length) * volume.partitionBytes)} bytes`,
    );
  }
  while (start < size) {
    const bytes = Math.min(volume.partitionBytes, limits.volumeBytesMax - start);
    const range: PartitionRange = { partition, partitionStart: start, partitionBytes: bytes };
    // The last may reach past the size: its primary serves only what is inside.
    const served = servedBytesOf(range, size);
    added.push(served === bytes ? range : { ...range, servedBytes: served });
    start += bytes;
    partition++;
  }
  // Served past the present size (a grow that failed after raising them): lowered before
  // the trim, or a write acknowledged there meanwhile would be trimmed.
  const lowerFirst = limitChanges(partitions, volume.sizeBytes).filter(
    (change) => change.servedBytes < servedOf(partitions, change.partition),
  );
  const lowered = partitions.map((partition) => {
    const change = lowerFirst.find((one) => one.partition === partition.partition);
    return change === undefined ? partition : { ...partition, servedBytes: change.servedBytes };
  });
  return {
    kind: "grow",
    sizeBytes: size,
    lowerFirst,
    trim,
    limits: limitChanges(lowered, size),
    added,
  };
}

/** `range` cut at the partitions' boundaries: each piece with its partition's number. */
export function piecesOf(
  partitions: readonly PartitionRange[],
  range: ByteRange,
): { partition: number; offset: number; length: number }[] {
  const end = range.offset + range.length;
  const pieces: { partition: number; offset: number; length: number }[] = [];
  for (const partition of partitions) {
    const from = Math.max(range.offset, partition.partitionStart);
    const to = Math.min(end, partition.partitionStart + partition.partitionBytes);
    if (from < to) pieces.push({ partition: partition.partition, offset: from, length: to - from });
  }
  return pieces;
}
