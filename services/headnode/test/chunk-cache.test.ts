// The chunk cache alone (chunk-cache.ts): which reads it answers, what it inserts,
// least-recently-used eviction within its byte bound, and, as a property against a
// model of chunk bytes, that whatever it answers is the chunk's bytes.

import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  ChunkCache,
  cacheBlockBytes,
  cacheEntryOverheadBytes,
  chunkChargeBytes,
} from "../src/chunk-cache.ts";

const block = cacheBlockBytes;
/** One block of a chunk with no other block here. */
const charge = block + cacheEntryOverheadBytes + chunkChargeBytes;
/** Room for every block of the property's four chunks of at most six blocks. */
const roomy = 24 * charge;

function pattern(bytes: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, index) => (index * 31 + seed * 7) & 0xff);
}

function same(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && Buffer.compare(a, b) === 0;
}

describe("ChunkCache", () => {
  test("answers a read only when every block it covers is present", () => {
    const cache = new ChunkCache(1 << 20);
    const chunk = pattern(4 * block, 1);
    // A read of [1000, 2·4096 + 10) covers block 1 whole only.
    cache.insert("c", 1000, chunk.subarray(1000, 2 * block + 10));
    expect(cache.stats().blocks).toBe(1);
    expect(same(cache.read("c", block + 5, 100), chunk.subarray(block + 5, block + 105))).toBe(
      true,
    );
    expect(cache.read("c", block - 1, 2)).toBeUndefined();
    expect(cache.read("c", 0, 10)).toBeUndefined();
    cache.insert("c", 0, chunk.subarray(0, block));
    expect(same(cache.read("c", 100, block + 200), chunk.subarray(100, block + 300))).toBe(true);
    expect(cache.read("other", 100, 10)).toBeUndefined();
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 3, blocks: 2 });
  });

  test("keeps a chunk's short last block only when told where the chunk ends", () => {
    const cache = new ChunkCache(1 << 20);
    const chunk = pattern(block + 100, 2);
    cache.insert("c", 0, chunk);
    expect(cache.stats().blocks).toBe(1);
    expect(cache.read("c", block, 100)).toBeUndefined();
    cache.insert("c", 0, chunk, chunk.byteLength);
    expect(cache.stats().blocks).toBe(2);
    expect(same(cache.read("c", 0, chunk.byteLength), chunk)).toBe(true);
    // Past the chunk's end is never answered.
    expect(cache.read("c", block, 101)).toBeUndefined();
  });

  test("copies what it inserts: changing the source later changes nothing cached", () => {
    const cache = new ChunkCache(1 << 20);
    const source = pattern(2 * block, 3);
    const kept = source.slice();
    cache.insert("c", 0, source);
    source.fill(0xee);
    expect(same(cache.read("c", 0, 2 * block), kept)).toBe(true);
    expect(same(cache.read("c", 10, 20), kept.subarray(10, 30))).toBe(true);
  });

  test("a view it returned stays valid after its block is evicted and the memory reused", () => {
    const cache = new ChunkCache(2 * charge + chunkChargeBytes * 2);
    const first = pattern(block, 7);
    cache.insert("a", 0, first);
    const view = cache.read("a", 100, 200)!;
    // Evict a (lent) and then blocks never lent, whose memory the next inserts reuse.
    for (let seed = 0; seed < 6; seed++) cache.insert(`x${seed}`, 0, pattern(block, seed + 20));
    expect(cache.stats().evictions).toBeGreaterThanOrEqual(5);
    expect(same(view, first.subarray(100, 300))).toBe(true);
    for (let seed = 4; seed < 6; seed++) {
      expect(same(cache.read(`x${seed}`, 0, block), pattern(block, seed + 20))).toBe(true);
    }
  });

  test("evicts the least recently used blocks to stay within its bytes, overhead included", () => {
    const cache = new ChunkCache(3 * charge);
    for (const id of ["a", "b", "c"]) cache.insert(id, 0, pattern(block, id.charCodeAt(0)));
    expect(cache.stats()).toMatchObject({ blocks: 3, bytes: 3 * charge, evictions: 0 });
    // Reading a makes b the oldest.
    expect(cache.read("a", 0, 1)).toBeDefined();
    cache.insert("d", 0, pattern(block, 4));
    expect(cache.stats()).toMatchObject({ blocks: 3, evictions: 1 });
    expect(cache.read("b", 0, 1)).toBeUndefined();
    for (const id of ["a", "c", "d"]) expect(cache.read(id, 0, 1)).toBeDefined();
  });

  test("a capacity below one block is off; forget drops a chunk's blocks", () => {
    const off = new ChunkCache(charge - 1);
    off.insert("c", 0, pattern(block, 5));
    expect(off.read("c", 0, 1)).toBeUndefined();
    expect(off.stats()).toMatchObject({ blocks: 0, hits: 0, misses: 0 });
    const cache = new ChunkCache(1 << 20);
    cache.insert("c", 0, pattern(3 * block, 5));
    cache.insert("d", 0, pattern(block, 6));
    cache.forget("c");
    expect(cache.stats()).toMatchObject({ blocks: 1, bytes: charge });
    expect(cache.read("c", 0, 1)).toBeUndefined();
  });

  test("property: any answer is the chunk's bytes; the bound always holds", () => {
    const chunkIds = ["c0", "c1", "c2", "c3"];
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("insert" as const),
        chunk: fc.nat(3),
        from: fc.nat(6 * block),
        length: fc.nat(4 * block),
        ends: fc.boolean(),
      }),
      fc.record({
        kind: fc.constant("read" as const),
        chunk: fc.nat(3),
        from: fc.nat(6 * block),
        length: fc.integer({ min: 1, max: 4 * block }),
      }),
    );
    fc.assert(
      fc.property(
        // Off, one block, a few, and room for every block of every chunk (never evicts).
        fc.oneof(fc.constant(0), fc.constant(charge), fc.nat(12 * charge), fc.constant(roomy)),
        fc.array(fc.integer({ min: 1, max: 6 * block }), { minLength: 4, maxLength: 4 }),
        fc.array(op, { maxLength: 60 }),
        (capacity, sizes, ops) => {
          const chunks = sizes.map((size, index) => pattern(size, index + 11));
          const cache = new ChunkCache(capacity);
          /** Blocks inserted whole, by `chunk/index`: with room for all, each must hit. */
          const inserted = new Set<string>();
          for (const step of ops) {
            const chunk = chunks[step.chunk]!;
            const id = chunkIds[step.chunk]!;
            const from = Math.min(step.from, chunk.byteLength - 1);
            const to = Math.min(chunk.byteLength, from + step.length);
            if (step.kind === "insert") {
              cache.insert(
                id,
                from,
                chunk.slice(from, to),
                step.ends ? chunk.byteLength : undefined,
              );
              for (let index = 0; index * block < chunk.byteLength; index++) {
                const end = step.ends
                  ? Math.min((index + 1) * block, chunk.byteLength)
                  : (index + 1) * block;
                if (index * block >= from && end <= to) inserted.add(`${step.chunk}/${index}`);
              }
            } else {
              const got = cache.read(id, from, to - from);
              if (got !== undefined) expect(same(got, chunk.subarray(from, to))).toBe(true);
              let all = true;
              for (let index = Math.floor(from / block); index * block < to; index++) {
                all &&= inserted.has(`${step.chunk}/${index}`);
              }
              if (capacity === roomy && all) expect(got).toBeDefined();
            }
            expect(cache.stats().bytes).toBeLessThanOrEqual(capacity);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
