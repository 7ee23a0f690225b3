import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { ByteSlab, copyInSlabBytesMax, slabBytes } from "../src/byte-slab.ts";

describe("ByteSlab", () => {
  test("copies are equal to their source and share no memory with it or each other", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 9000 }), { maxLength: 300 }), (sources) => {
        const slab = new ByteSlab();
        const copies = sources.map((source) => slab.copy(source));
        // Changing every source after the fact changes no copy.
        for (const source of sources) source.fill(0xee);
        copies.forEach((copy, index) => {
          expect(copy.byteLength).toBe(sources[index]!.byteLength);
          expect(copy.buffer).not.toBe(sources[index]!.buffer);
        });
        // Writing one copy leaves the others as they were.
        const before = copies.map((copy) => Uint8Array.from(copy));
        copies[0]?.fill(0x11);
        copies.slice(1).forEach((copy, index) => {
          expect(Buffer.compare(copy, before[index + 1]!)).toBe(0);
        });
      }),
      { numRuns: 50 },
    );
  });

  test("copies the bytes exactly", () => {
    const slab = new ByteSlab();
    const source = Uint8Array.from({ length: 4096 }, (_, index) => index % 253);
    const view = new Uint8Array(source.buffer, 100, 3000);
    expect(Buffer.compare(slab.copy(view), Buffer.from(source.subarray(100, 3100)))).toBe(0);
  });

  test("small copies share one slab; 4 KiB writes do not each get a buffer of their own", () => {
    const slab = new ByteSlab();
    const copies = Array.from({ length: 200 }, () => slab.copy(new Uint8Array(4096).fill(1)));
    const buffers = new Set(copies.map((copy) => copy.buffer));
    expect(buffers.size).toBe(Math.ceil((200 * 4096) / slabBytes));
  });

  test("a large copy gets a buffer of its own and leaves the slab alone", () => {
    const slab = new ByteSlab();
    const small = slab.copy(new Uint8Array(10).fill(2));
    const large = slab.copy(new Uint8Array(copyInSlabBytesMax + 1).fill(3));
    const next = slab.copy(new Uint8Array(10).fill(4));
    expect(large.buffer).not.toBe(small.buffer);
    expect(large.byteOffset).toBe(0);
    expect(large.buffer.byteLength).toBe(copyInSlabBytesMax + 1);
    expect(next.buffer).toBe(small.buffer);
    expect([...small, ...next]).toEqual([...Array(10).fill(2), ...Array(10).fill(4)]);
  });
});
