import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { type Allocation, FreeRanges, reserveOf, SpaceAllocator } from "../src/allocator.ts";
import { SledAssertionError } from "../src/errors.ts";

describe("free ranges", () => {
  test("take is best fit and coalesces on give", () => {
    const ranges = new FreeRanges(100);
    expect(ranges.claim(10, 5)).toBe(true); // free: [0,10) [15,100)
    expect(ranges.claim(20, 70)).toBe(true); // free: [0,10) [15,20) [90,100)
    expect(ranges.take(5)).toBe(15); // the exact fit, not the first fit
    expect(ranges.take(8)).toBe(0); // best of [0,10) and [90,100): both 10, lowest start
    expect(ranges.ranges()).toEqual([
      { start: 8, length: 2 },
      { start: 90, length: 10 },
    ]);
    ranges.give(20, 70);
    ranges.give(0, 8);
    ranges.give(15, 5);
    ranges.give(10, 5);
    expect(ranges.ranges()).toEqual([{ start: 0, length: 100 }]);
    expect(ranges.freeUnits).toBe(100);
  });

  test("take answers undefined when no range is large enough", () => {
    const ranges = new FreeRanges(10);
    expect(ranges.claim(4, 1)).toBe(true);
    expect(ranges.take(6)).toBeUndefined();
    expect(ranges.largestFree).toBe(5);
  });

  test("claim refuses space that is not wholly free, without changing anything", () => {
    const ranges = new FreeRanges(10);
    expect(ranges.claim(2, 4)).toBe(true);
    for (const [start, length] of [
      [0, 3],
      [5, 2],
      [3, 1],
      [8, 3],
      [-1, 1],
      [0, 0],
    ] as const) {
      expect(ranges.claim(start, length)).toBe(false);
    }
    expect(ranges.freeUnits).toBe(6);
  });

  test("giving back free space is a broken invariant", () => {
    const ranges = new FreeRanges(10);
    ranges.claim(0, 5);
    expect(() => ranges.give(3, 4)).toThrow(SledAssertionError);
    expect(() => ranges.give(8, 1)).toThrow(SledAssertionError);
    expect(() => ranges.give(9, 5)).toThrow(SledAssertionError);
  });
});

describe("space allocator", () => {
  test("places an object on the device with the most free blocks", () => {
    const allocator = new SpaceAllocator([
      { dataBlocks: 100, slotCount: 8 },
      { dataBlocks: 200, slotCount: 8 },
    ]);
    const first = allocator.allocate(150);
    expect(first).toMatchObject({ ok: true, allocation: { device: 1, slot: 0, start: 0 } });
    // Device 1 has 50 free now, device 0 has 100.
    expect(allocator.allocate(10)).toMatchObject({ ok: true, allocation: { device: 0 } });
  });

  test("says whether slots or contiguous space ran out", () => {
    const allocator = new SpaceAllocator([{ dataBlocks: 10, slotCount: 2 }]);
    expect(allocator.allocate(11)).toMatchObject({
      ok: false,
      reason: "no-free-extent",
      largestFreeBlocks: 10,
    });
    expect(allocator.allocate(1).ok).toBe(true);
    expect(allocator.allocate(1).ok).toBe(true);
    expect(allocator.allocate(1)).toMatchObject({ ok: false, reason: "no-free-slot" });
  });

  test("claim refuses overlaps, taken slots and out-of-range extents", () => {
    const allocator = new SpaceAllocator([{ dataBlocks: 10, slotCount: 4 }]);
    expect(allocator.claim({ device: 0, slot: 1, start: 2, blocks: 3 })).toBe("claimed");
    expect(allocator.claim({ device: 0, slot: 1, start: 6, blocks: 1 })).toBe("slot-taken");
    expect(allocator.claim({ device: 0, slot: 2, start: 4, blocks: 2 })).toBe("extent-taken");
    expect(allocator.claim({ device: 0, slot: 2, start: 8, blocks: 3 })).toBe(
      "extent-out-of-range",
    );
    expect(allocator.claim({ device: 0, slot: 4, start: 0, blocks: 1 })).toBe("slot-out-of-range");
    expect(allocator.claim({ device: 1, slot: 0, start: 0, blocks: 1 })).toBe("unknown-device");
    expect(allocator.usage(0)).toMatchObject({ usedBlocks: 3, slotsUsed: 1 });
  });

  test("release must match a live allocation exactly", () => {
    const allocator = new SpaceAllocator([{ dataBlocks: 10, slotCount: 4 }]);
    const outcome = allocator.allocate(3);
    if (!outcome.ok) throw new Error("expected room");
    const { allocation } = outcome;
    expect(() => allocator.release({ ...allocation, blocks: 2 })).toThrow(SledAssertionError);
    allocator.release(allocation);
    expect(() => allocator.release(allocation)).toThrow(SledAssertionError);
    expect(allocator.usage(0)).toMatchObject({
      usedBlocks: 0,
      slotsUsed: 0,
      largestFreeBlocks: 10,
    });
  });

  const geometry = fc.array(
    fc.record({
      dataBlocks: fc.integer({ min: 1, max: 300 }),
      slotCount: fc.integer({ min: 1, max: 40 }),
    }),
    { minLength: 1, maxLength: 3 },
  );
  const operations = fc.array(
    fc.oneof(
      fc.record({ allocate: fc.integer({ min: 1, max: 80 }) }),
      fc.record({ release: fc.nat() }),
    ),
    { maxLength: 200 },
  );

  test("random allocate and release keep the books exact", () => {
    fc.assert(
      fc.property(geometry, operations, (devices, steps) => {
        const allocator = new SpaceAllocator(devices);
        const live: Allocation[] = [];
        for (const step of steps) {
          if ("allocate" in step) {
            const fits = devices.some(
              (_, device) =>
                allocator.usage(device).slotsUsed < allocator.usage(device).slotCount &&
                allocator.usage(device).largestFreeBlocks >= step.allocate,
            );
            const outcome = allocator.allocate(step.allocate);
            // Best effort is not enough: it succeeds exactly when some device has room.
            expect(outcome.ok).toBe(fits);
            if (outcome.ok) {
              expect(outcome.allocation.blocks).toBe(step.allocate);
              live.push(outcome.allocation);
            }
          } else if (live.length > 0) {
            const [allocation] = live.splice(step.release % live.length, 1);
            allocator.release(allocation!);
          }
          checkBooks(allocator, devices, live);
        }
        for (const allocation of live.splice(0)) allocator.release(allocation);
        devices.forEach((device, index) => {
          expect(allocator.freeExtents(index)).toEqual([{ start: 0, length: device.dataBlocks }]);
        });
      }),
      { numRuns: 300 },
    );
  });

  test("recovery by claim rebuilds the same free space as the live allocator", () => {
    fc.assert(
      fc.property(geometry, operations, (devices, steps) => {
        const allocator = new SpaceAllocator(devices);
        const live: Allocation[] = [];
        for (const step of steps) {
          if ("allocate" in step) {
            const outcome = allocator.allocate(step.allocate);
            if (outcome.ok) live.push(outcome.allocation);
          } else if (live.length > 0) {
            allocator.release(live.splice(step.release % live.length, 1)[0]!);
          }
        }
        const recovered = new SpaceAllocator(devices);
        for (const allocation of live) expect(recovered.claim(allocation)).toBe("claimed");
        devices.forEach((_, index) => {
          expect(recovered.freeExtents(index)).toEqual(allocator.freeExtents(index));
          expect(recovered.usage(index)).toEqual(allocator.usage(index));
        });
        // Claiming any live allocation twice is refused.
        for (const allocation of live) expect(recovered.claim(allocation)).not.toBe("claimed");
      }),
      { numRuns: 300 },
    );
  });
});

/** No two allocations overlap, and used + free is the whole of each device. */
function checkBooks(
  allocator: SpaceAllocator,
  devices: { dataBlocks: number; slotCount: number }[],
  live: Allocation[],
): void {
  devices.forEach((device, index) => {
    const mine = live.filter((allocation) => allocation.device === index);
    const blocks = new Uint8Array(device.dataBlocks);
    const slots = new Set<number>();
    for (const allocation of mine) {
      expect(slots.has(allocation.slot)).toBe(false);
      slots.add(allocation.slot);
      for (let block = allocation.start; block < allocation.start + allocation.blocks; block++) {
        if (blocks[block] !== 0) throw new Error(`block ${block} of device ${index} is held twice`);
        blocks[block] = 1;
      }
    }
    for (const free of allocator.freeExtents(index)) {
      for (let block = free.start; block < free.start + free.length; block++) {
        if (blocks[block] !== 0)
          throw new Error(`block ${block} of device ${index} is free and held`);
        blocks[block] = 2;
      }
    }
    expect(blocks.every((state) => state !== 0)).toBe(true);
    const ranges = allocator.freeExtents(index);
    for (let at = 1; at < ranges.length; at++) {
      // Coalesced: a gap separates neighbouring free ranges.
      expect(ranges[at]!.start).toBeGreaterThan(ranges[at - 1]!.start + ranges[at - 1]!.length);
    }
    expect(allocator.usage(index).slotsUsed).toBe(mine.length);
  });
}

describe("the checkpoint reserve", () => {
  test("a chunk may not use a device's reserve; a blob may", () => {
    const geometry = { dataBlocks: 1024, slotCount: 256 };
    const reserve = reserveOf(geometry);
    expect(reserve.blocks).toBeGreaterThan(0);
    expect(reserve.blocks).toBeLessThanOrEqual(512);
    const allocator = new SpaceAllocator([geometry]);
    const chunk = allocator.allocate(1024 - reserve.blocks, "chunk");
    expect(chunk.ok).toBe(true);
    expect(allocator.allocate(1, "chunk")).toMatchObject({ ok: false, reason: "reserve" });
    expect(allocator.allocate(reserve.blocks, "blob").ok).toBe(true);
  });

  test("slots are reserved too", () => {
    const geometry = { dataBlocks: 1024, slotCount: 32 };
    const { slots } = reserveOf(geometry);
    const allocator = new SpaceAllocator([geometry]);
    for (let index = 0; index < 32 - slots; index++) {
      expect(allocator.allocate(1, "chunk").ok).toBe(true);
    }
    expect(allocator.allocate(1, "chunk")).toMatchObject({ ok: false, reason: "reserve" });
    expect(allocator.allocate(1, "blob").ok).toBe(true);
  });

  test("a chunk goes to the device that keeps its reserve", () => {
    const allocator = new SpaceAllocator([
      { dataBlocks: 1000, slotCount: 64 },
      { dataBlocks: 1000, slotCount: 64 },
    ]);
    const { blocks } = reserveOf({ dataBlocks: 1000, slotCount: 64 });
    // Device 0 is left with less than its reserve beyond one more block.
    expect(allocator.allocate(1000 - blocks, "blob")).toMatchObject({ allocation: { device: 0 } });
    expect(allocator.allocate(1000 - blocks - 10, "blob")).toMatchObject({
      allocation: { device: 1 },
    });
    // Device 1 has more free (blocks + 10) but 20 would eat its reserve; device 0 cannot either.
    expect(allocator.allocate(20, "chunk")).toMatchObject({ ok: false, reason: "reserve" });
    expect(allocator.allocate(10, "chunk")).toMatchObject({ ok: true, allocation: { device: 1 } });
  });
});

describe("failed devices", () => {
  test("a failed device gets no allocations, even with the most free space", () => {
    const allocator = new SpaceAllocator([
      { dataBlocks: 1000, slotCount: 64 },
      { dataBlocks: 100, slotCount: 64 },
    ]);
    allocator.fail(0);
    for (let object = 0; object < 10; object++) {
      const outcome = allocator.allocate(4);
      expect(outcome.ok && outcome.allocation.device).toBe(1);
    }
    expect(allocator.isFailed(0)).toBe(true);
  });

  test("with every device failed there is no space", () => {
    const allocator = new SpaceAllocator([{ dataBlocks: 1000, slotCount: 64 }]);
    allocator.fail(0);
    expect(allocator.allocate(1)).toMatchObject({ ok: false, reason: "no-healthy-device" });
  });
});
