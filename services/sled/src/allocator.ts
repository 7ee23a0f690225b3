// The sled's allocator: which slots of each device's allocation map and which blocks of
// its data region are in use. A pure, synchronous core: no I/O, no clock, no randomness.
// The shell decides when its answers become durable and obeys one ordering contract:
//
//   - `allocate` hands out space that is free in memory. The shell writes the object's
//     data, then its slot, then syncs; until the slot is durable nothing on disk refers
//     to the space, so a crash before that point frees it again (recovery rebuilds the
//     allocator from the slots that are on disk, through `claim`).
//   - `release` is called only after the slot that referred to the space is durably
//     cleared. Releasing earlier would let new data overwrite an object that a crash
//     could bring back.
//
// A device the shell reports failed (`fail`: an I/O error on its write path, or a slot
// table that could not be read) gets no new allocations, however much free space it
// has; its live allocations stay booked, so that they are released exactly once.
//
// Placement: an object goes to the device with the most free blocks among the healthy
// ones that have a free slot and a free extent large enough, lowest device index on a tie, and
// within a device to the smallest free extent that fits (best fit, lowest start on a
// tie), which keeps large extents whole for large objects.
//
// Reserve: every device keeps back some blocks and slots (`reserveOf`, from the sled's
// constants) that only blobs may use. A chunk goes only to a device that still has its
// reserve free after it; so when data fills a sled, checkpoints can still be written.

import {
  blockBytes,
  chunkReserveBytesMin,
  chunkReserveFraction,
  chunkReserveSlotsMin,
} from "./constants.ts";
import { assert } from "./errors.ts";

export interface Extent {
  start: number;
  length: number;
}

/** The free ranges of [0, size), sorted by start and coalesced: no two touch. */
export class FreeRanges {
  readonly size: number;
  private readonly starts: number[] = [];
  private readonly lengths: number[] = [];
  private free = 0;

  constructor(size: number) {
    assert(Number.isSafeInteger(size) && size >= 0, `range size must be >= 0, got ${size}`);
    this.size = size;
    if (size > 0) {
      this.starts.push(0);
      this.lengths.push(size);
      this.free = size;
    }
  }

  get freeUnits(): number {
    return this.free;
  }

  get usedUnits(): number {
    return this.size - this.free;
  }

  get largestFree(): number {
    let largest = 0;
    for (const length of this.lengths) largest = Math.max(largest, length);
    return largest;
  }

  /** Best fit: takes `length` units from the front of the smallest free range that holds them. */
  take(length: number): number | undefined {
    assert(Number.isSafeInteger(length) && length > 0, `cannot take ${length} units`);
    let best = -1;
    for (let index = 0; index < this.lengths.length; index++) {
      const candidate = this.lengths[index]!;
      if (candidate >= length && (best < 0 || candidate < this.lengths[best]!)) best = index;
    }
    if (best < 0) return undefined;
    const start = this.starts[best]!;
    this.removeFrom(best, start, length);
    return start;
  }

  /** Marks [start, start + length) used if all of it is free; false (and no change) if not. */
  claim(start: number, length: number): boolean {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length)) return false;
    if (start < 0 || length <= 0 || start + length > this.size) return false;
    const index = this.rangeHolding(start);
    if (index < 0) return false;
    if (start + length > this.starts[index]! + this.lengths[index]!) return false;
    this.removeFrom(index, start, length);
    return true;
  }

  /** Returns [start, start + length) to the free ranges; all of it must be in use. */
  give(start: number, length: number): void {
    assert(
      Number.isSafeInteger(start) && Number.isSafeInteger(length) && length > 0,
      `cannot give back ${length} units at ${start}`,
    );
    assert(
      start >= 0 && start + length <= this.size,
      `range ${start}+${length} is outside ${this.size}`,
    );
    // The first free range that starts after `start`; the one before it must end by `start`.
    const after = this.firstStartingAfter(start);
    const before = after - 1;
    const beforeEnd = before >= 0 ? this.starts[before]! + this.lengths[before]! : 0;
    const afterStart = after < this.starts.length ? this.starts[after]! : this.size;
    assert(
      beforeEnd <= start && start + length <= afterStart,
      `range ${start}+${length} is not wholly in use: it overlaps free space`,
    );
    this.free += length;
    const joinsBefore = before >= 0 && beforeEnd === start;
    const joinsAfter = after < this.starts.length && start + length === afterStart;
    if (joinsBefore && joinsAfter) {
      this.lengths[before]! += length + this.lengths[after]!;
      this.starts.splice(after, 1);
      this.lengths.splice(after, 1);
    } else if (joinsBefore) {
      this.lengths[before]! += length;
    } else if (joinsAfter) {
      this.starts[after] = start;
      this.lengths[after]! += length;
    } else {
      this.starts.splice(after, 0, start);
      this.lengths.splice(after, 0, length);
    }
  }

  /** True when every unit of [start, start + length) is free. */
  isFree(start: number, length: number): boolean {
    const index = this.rangeHolding(start);
    return index >= 0 && start + length <= this.starts[index]! + this.lengths[index]!;
  }

  ranges(): Extent[] {
    return this.starts.map((start, index) => ({ start, length: this.lengths[index]! }));
  }

  /** Index of the free range that contains `unit`, or -1. */
  private rangeHolding(unit: number): number {
    const index = this.firstStartingAfter(unit) - 1;
    if (index < 0) return -1;
    return unit < this.starts[index]! + this.lengths[index]! ? index : -1;
  }

  /** Index of the first free range whose start is greater than `unit` (binary search). */
  private firstStartingAfter(unit: number): number {
    let low = 0;
    let high = this.starts.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.starts[middle]! <= unit) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** Removes [start, start + length) from free range `index`, which contains it. */
  private removeFrom(index: number, start: number, length: number): void {
    const rangeStart = this.starts[index]!;
    const rangeEnd = rangeStart + this.lengths[index]!;
    const end = start + length;
    const starts: number[] = [];
    const lengths: number[] = [];
    if (rangeStart < start) {
      starts.push(rangeStart);
      lengths.push(start - rangeStart);
    }
    if (end < rangeEnd) {
      starts.push(end);
      lengths.push(rangeEnd - end);
    }
    this.starts.splice(index, 1, ...starts);
    this.lengths.splice(index, 1, ...lengths);
    this.free -= length;
  }
}

/** The shape of one device as the allocator sees it. */
export interface DeviceGeometry {
  /** Blocks in the device's data region. */
  dataBlocks: number;
  /** Records in the device's allocation map. */
  slotCount: number;
}

/** Space held by one object: a slot of the map and an extent of the data region. */
export interface Allocation {
  device: number;
  slot: number;
  /** First block of the extent, counted from the start of the data region. */
  start: number;
  blocks: number;
}

/** What an allocation is for: chunks may not use a device's reserve, blobs may. */
export type AllocationPurpose = "chunk" | "blob";

/** The blocks and slots of a device that only blobs may use. */
export interface Reserve {
  blocks: number;
  slots: number;
}

/** A device's reserve: a fraction of it with a floor, never more than half of it. */
export function reserveOf(geometry: DeviceGeometry): Reserve {
  const floorBlocks = Math.ceil(chunkReserveBytesMin / blockBytes);
  const blocks = Math.max(Math.ceil(geometry.dataBlocks * chunkReserveFraction), floorBlocks);
  const slots = Math.max(
    Math.ceil(geometry.slotCount * chunkReserveFraction),
    chunkReserveSlotsMin,
  );
  return {
    blocks: Math.min(blocks, Math.floor(geometry.dataBlocks / 2)),
    slots: Math.min(slots, Math.floor(geometry.slotCount / 2)),
  };
}

export type AllocateOutcome =
  | { ok: true; allocation: Allocation }
  | {
      ok: false;
      /**
       * Every device failed, or no healthy one has a free slot or a free extent this large,
       * or (a chunk) none would keep its reserve for checkpoints.
       */
      reason: "no-healthy-device" | "no-free-slot" | "no-free-extent" | "reserve";
      freeBlocks: number;
      largestFreeBlocks: number;
    };

export type ClaimOutcome =
  | "claimed"
  | "unknown-device"
  | "slot-out-of-range"
  | "slot-taken"
  | "extent-out-of-range"
  | "extent-taken";

export interface DeviceUsage {
  device: number;
  dataBlocks: number;
  usedBlocks: number;
  freeBlocks: number;
  largestFreeBlocks: number;
  slotCount: number;
  slotsUsed: number;
  /** Blocks and slots kept for blobs: chunks are refused rather than use them. */
  reserveBlocks: number;
  reserveSlots: number;
}

interface DeviceSpace {
  geometry: DeviceGeometry;
  reserve: Reserve;
  blocks: FreeRanges;
  slots: FreeRanges;
  /** Slot → extent of every live allocation, to check each release against. */
  live: Map<number, Extent>;
  failed: boolean;
}

export class SpaceAllocator {
  private readonly devices: DeviceSpace[];

  constructor(geometries: readonly DeviceGeometry[]) {
    this.devices = geometries.map((geometry) => ({
      geometry: { ...geometry },
      reserve: reserveOf(geometry),
      blocks: new FreeRanges(geometry.dataBlocks),
      slots: new FreeRanges(geometry.slotCount),
      live: new Map(),
      failed: false,
    }));
  }

  /** Takes a device out of placement for good (until the sled restarts). */
  fail(device: number): void {
    const space = this.devices[device];
    assert(space !== undefined, `no device ${device}`);
    space.failed = true;
  }

  isFailed(device: number): boolean {
    return this.devices[device]?.failed === true;
  }

  get deviceCount(): number {
    return this.devices.length;
  }

  /**
   * Space for an object of `blocks` blocks (header included), or why there is none. A
   * chunk must leave the device's reserve free; a blob may use it.
   */
  allocate(blocks: number, purpose: AllocationPurpose = "blob"): AllocateOutcome {
    assert(Number.isSafeInteger(blocks) && blocks > 0, `cannot allocate ${blocks} blocks`);
    let chosen = -1;
    let anySlot = false;
    let anyHealthy = false;
    let anyFit = false;
    let freeBlocks = 0;
    let largestFreeBlocks = 0;
    for (let index = 0; index < this.devices.length; index++) {
      const space = this.devices[index]!;
      if (space.failed) continue;
      anyHealthy = true;
      if (space.slots.freeUnits === 0) continue;
      anySlot = true;
      const largest = space.blocks.largestFree;
      freeBlocks = Math.max(freeBlocks, space.blocks.freeUnits);
      largestFreeBlocks = Math.max(largestFreeBlocks, largest);
      if (largest < blocks) continue;
      anyFit = true;
      if (purpose === "chunk") {
        const { reserve } = space;
        if (space.blocks.freeUnits - blocks < reserve.blocks) continue;
        if (space.slots.freeUnits - 1 < reserve.slots) continue;
      }
      if (chosen < 0 || space.blocks.freeUnits > this.devices[chosen]!.blocks.freeUnits) {
        chosen = index;
      }
    }
    if (chosen < 0) {
      return {
        ok: false,
        reason: !anyHealthy
          ? "no-healthy-device"
          : anyFit
            ? "reserve"
            : anySlot
              ? "no-free-extent"
              : "no-free-slot",
        freeBlocks,
        largestFreeBlocks,
      };
    }
    const space = this.devices[chosen]!;
    const slot = space.slots.take(1);
    const start = space.blocks.take(blocks);
    assert(slot !== undefined && start !== undefined, "the chosen device had no room after all");
    space.live.set(slot, { start, length: blocks });
    return { ok: true, allocation: { device: chosen, slot, start, blocks } };
  }

  /**
   * Marks space in use that the durable allocation map says is taken (recovery). Refuses,
   * without any change, a slot or extent that is out of range or already taken, so that
   * two records that disagree can never both hold the same blocks.
   */
  claim(allocation: Allocation): ClaimOutcome {
    const space = this.devices[allocation.device];
    if (space === undefined) return "unknown-device";
    if (!Number.isSafeInteger(allocation.slot) || allocation.slot < 0) return "slot-out-of-range";
    if (allocation.slot >= space.geometry.slotCount) return "slot-out-of-range";
    const { start, blocks } = allocation;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(blocks)) return "extent-out-of-range";
    if (start < 0 || blocks <= 0 || start + blocks > space.geometry.dataBlocks) {
      return "extent-out-of-range";
    }
    if (!space.slots.isFree(allocation.slot, 1)) return "slot-taken";
    if (!space.blocks.isFree(start, blocks)) return "extent-taken";
    space.slots.claim(allocation.slot, 1);
    space.blocks.claim(start, blocks);
    space.live.set(allocation.slot, { start, length: blocks });
    return "claimed";
  }

  /**
   * Marks one slot in use with no extent: a damaged slot whose extent is unknown, kept
   * out of reuse until it is cleared (`releaseSlot`). False (and no change) if it is not free.
   */
  claimSlot(device: number, slot: number): boolean {
    const space = this.devices[device];
    if (space === undefined || !Number.isSafeInteger(slot)) return false;
    if (slot < 0 || slot >= space.geometry.slotCount || !space.slots.isFree(slot, 1)) return false;
    space.slots.claim(slot, 1);
    space.live.set(slot, { start: 0, length: 0 });
    return true;
  }

  /** Returns a slot claimed by `claimSlot`. */
  releaseSlot(device: number, slot: number): void {
    const space = this.devices[device];
    assert(space !== undefined, `release on unknown device ${device}`);
    assert(space.live.get(slot)?.length === 0, `slot ${slot} of ${device} is not a bare slot`);
    space.live.delete(slot);
    space.slots.give(slot, 1);
  }

  /** Returns an allocation's slot and extent; it must be exactly one that is live. */
  release(allocation: Allocation): void {
    const space = this.devices[allocation.device];
    assert(space !== undefined, `release on unknown device ${allocation.device}`);
    const extent = space.live.get(allocation.slot);
    assert(
      extent !== undefined &&
        extent.start === allocation.start &&
        extent.length === allocation.blocks,
      `release of device ${allocation.device} slot ${allocation.slot} (${allocation.start}+${allocation.blocks}) does not match a live allocation`,
    );
    space.live.delete(allocation.slot);
    space.slots.give(allocation.slot, 1);
    space.blocks.give(allocation.start, allocation.blocks);
  }

  usage(device: number): DeviceUsage {
    const space = this.devices[device];
    assert(space !== undefined, `no device ${device}`);
    return {
      device,
      dataBlocks: space.geometry.dataBlocks,
      usedBlocks: space.blocks.usedUnits,
      freeBlocks: space.blocks.freeUnits,
      largestFreeBlocks: space.blocks.largestFree,
      slotCount: space.geometry.slotCount,
      slotsUsed: space.slots.usedUnits,
      reserveBlocks: space.reserve.blocks,
      reserveSlots: space.reserve.slots,
    };
  }

  /** Every live allocation, for checkers. */
  liveAllocations(): Allocation[] {
    return this.devices.flatMap((space, device) =>
      [...space.live]
        .filter(([, extent]) => extent.length > 0)
        .map(([slot, extent]) => ({
          device,
          slot,
          start: extent.start,
          blocks: extent.length,
        })),
    );
  }

  /** The free block ranges of a device, for checkers. */
  freeExtents(device: number): Extent[] {
    const space = this.devices[device];
    assert(space !== undefined, `no device ${device}`);
    return space.blocks.ranges();
  }
}
