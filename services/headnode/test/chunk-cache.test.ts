// The chunk cache alone (chunk-cache.ts): which reads it answers, what it inserts,
// least-recently-used eviction within its byte bound, and, as a property against a
// model of chunk bytes, that whatever it answers is the chunk's bytes.

import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  ChunkCache,
  cacheBlockBytes,
  cacheEntryOverheadBytes,
  chunkCacheBytesCeiling,
  chunkCacheBytesFloor,
  chunkCacheBytesFor,
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

  test("tryRead answers as read does but counts only hits", () => {
    const cache = new ChunkCache(1 << 20);
    const chunk = pattern(2 * block, 3);
    cache.insert("c", 0, chunk.subarray(0, block));
    expect(same(cache.tryRead("c", 10, 100), chunk.subarray(10, 110))).toBe(true);
    expect(cache.tryRead("c", block, 10)).toBeUndefined();
    expect(cache.tryRead("other", 0, 10)).toBeUndefined();
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 0 });
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

  test("a whole chunk: every read within it is a view of it, past its end a miss", () => {
    const cache = new ChunkCache(1 << 20);
    const chunk = pattern(5 * block + 100, 8);
    const kept = chunk.slice();
    cache.insertChunk("c", chunk);
    expect(cache.stats()).toMatchObject({
      blocks: 0,
      wholeChunks: 1,
      bytes: chunk.byteLength + cacheEntryOverheadBytes + chunkChargeBytes,
    });
    for (const [from, to] of [
      [0, chunk.byteLength],
      [100, 200],
      [block - 1, 3 * block + 7],
      [5 * block, 5 * block + 100],
    ] as const) {
      const got = cache.read("c", from, to - from)!;
      expect(same(got, kept.subarray(from, to))).toBe(true);
      // No copy: the flush's own buffer.
      expect(got.buffer).toBe(chunk.buffer);
      expect(got.byteOffset).toBe(from);
    }
    expect(cache.read("c", 5 * block, 101)).toBeUndefined();
    expect(cache.stats()).toMatchObject({ hits: 4, misses: 1 });
    // Blocks read back from a sled add nothing to a chunk held whole.
    cache.insert("c", 0, kept.subarray(0, 2 * block));
    expect(cache.stats()).toMatchObject({ blocks: 0, wholeChunks: 1 });
  });

  test("a whole chunk replaces the chunk's blocks; forget drops it", () => {
    const cache = new ChunkCache(1 << 20);
    const chunk = pattern(3 * block, 9);
    cache.insert("c", 0, chunk.slice(0, 2 * block));
    expect(cache.stats()).toMatchObject({ blocks: 2, wholeChunks: 0 });
    cache.insertChunk("c", chunk);
    expect(cache.stats()).toMatchObject({
      blocks: 0,
      wholeChunks: 1,
      bytes: chunk.byteLength + cacheEntryOverheadBytes + chunkChargeBytes,
    });
    // Again: only marked used, not charged twice.
    cache.insertChunk("c", chunk);
    expect(cache.stats().bytes).toBe(chunk.byteLength + cacheEntryOverheadBytes + chunkChargeBytes);
    cache.forget("c");
    expect(cache.stats()).toMatchObject({ blocks: 0, wholeChunks: 0, bytes: 0 });
    expect(cache.read("c", 0, 1)).toBeUndefined();
  });

  test("whole chunks are charged and evicted whole, least recently used first", () => {
    const size = 4 * block;
    const wholeCharge = size + cacheEntryOverheadBytes + chunkChargeBytes;
    const cache = new ChunkCache(2 * wholeCharge + charge);
    const a = pattern(size, 1);
    const b = pattern(size, 2);
    cache.insertChunk("a", a);
    cache.insertChunk("b", b);
    cache.insert("x", 0, pattern(block, 3));
    expect(cache.stats()).toMatchObject({ bytes: 2 * wholeCharge + charge, evictions: 0 });
    const view = cache.read("a", 10, 2 * block)!;
    // a is used, so b is the oldest entry: one more block evicts all of b.
    cache.insert("y", 0, pattern(block, 4));
    expect(cache.stats()).toMatchObject({ wholeChunks: 1, blocks: 2, evictions: size / block });
    expect(cache.read("b", 0, 1)).toBeUndefined();
    expect(cache.stats().bytes).toBe(wholeCharge + 2 * charge);
    // A new whole chunk evicts the oldest entries until it fits: here block x alone.
    cache.insertChunk("c", pattern(size, 5));
    expect(cache.stats()).toMatchObject({ bytes: 2 * wholeCharge + charge, wholeChunks: 2 });
    expect(cache.read("x", 0, 1)).toBeUndefined();
    for (const id of ["a", "y"]) expect(cache.read(id, 0, 1)).toBeDefined();
    expect(same(cache.read("c", 0, size), pattern(size, 5))).toBe(true);
    // Now y is the oldest; a chunk as large as the cache's room evicts the rest.
    cache.insertChunk("d", pattern(2 * size, 6));
    expect(cache.stats()).toMatchObject({ wholeChunks: 1, blocks: 0 });
    expect(cache.stats().bytes).toBeLessThanOrEqual(cache.capacityBytes);
    // A view handed out before eviction still holds the chunk's bytes.
    expect(same(view, pattern(size, 1).subarray(10, 10 + 2 * block))).toBe(true);
  });

  test("a chunk that is not its whole buffer, or too large, goes in as copied blocks", () => {
    const cache = new ChunkCache(1 << 20);
    const larger = pattern(4 * block, 6);
    const view = larger.subarray(block, 3 * block + 50);
    const kept = view.slice();
    cache.insertChunk("v", view);
    // Not kept whole: that would pin the larger buffer beyond what is charged.
    expect(cache.stats()).toMatchObject({ wholeChunks: 0, blocks: 3 });
    larger.fill(0xee);
    expect(same(cache.read("v", 0, kept.byteLength), kept)).toBe(true);
    // A chunk whose charge exceeds the cache: only its last blocks fit.
    const small = new ChunkCache(3 * charge);
    const big = pattern(8 * block, 7);
    small.insertChunk("big", big);
    expect(small.stats()).toMatchObject({ wholeChunks: 0 });
    expect(small.stats().bytes).toBeLessThanOrEqual(small.capacityBytes);
    expect(small.read("big", 0, 1)).toBeUndefined();
    expect(same(small.read("big", 7 * block, block), big.subarray(7 * block))).toBe(true);
    big.fill(0);
    expect(
      same(
        small.read("big", 7 * block + 1, 5),
        pattern(8 * block, 7).subarray(7 * block + 1, 7 * block + 6),
      ),
    ).toBe(true);
    // Off: nothing kept.
    const off = new ChunkCache(0);
    off.insertChunk("c", pattern(block, 1));
    expect(off.stats()).toMatchObject({ wholeChunks: 0, blocks: 0, bytes: 0 });
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
      // The whole chunk, as a buffer of its own (kept whole) or within a larger one.
      fc.record({
        kind: fc.constant("whole" as const),
        chunk: fc.nat(3),
        own: fc.boolean(),
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
            if (step.kind === "whole") {
              if (step.own) {
                cache.insertChunk(id, chunk.slice());
              } else {
                const larger = new Uint8Array(chunk.byteLength + block);
                larger.set(chunk, 7);
                cache.insertChunk(id, larger.subarray(7, 7 + chunk.byteLength));
                larger.fill(0xee);
              }
              for (let index = 0; index * block < chunk.byteLength; index++) {
                inserted.add(`${step.chunk}/${index}`);
              }
              expect(cache.stats().bytes).toBeLessThanOrEqual(capacity);
              continue;
            }
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

describe("the default bound from the machine's memory", () => {
  const gibibyte = 1024 ** 3;

  test("a sixteenth of memory, never below the floor nor above the ceiling", () => {
    expect(chunkCacheBytesFor(1 * gibibyte)).toBe(chunkCacheBytesFloor);
    expect(chunkCacheBytesFor(4 * gibibyte)).toBe(256 * 1024 ** 2);
    expect(chunkCacheBytesFor(24 * gibibyte)).toBe(1.5 * gibibyte);
    expect(chunkCacheBytesFor(512 * gibibyte)).toBe(chunkCacheBytesCeiling);
  });

  test("any memory size gives whole blocks within the bounds", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (memory) => {
        const bound = chunkCacheBytesFor(memory);
        expect(bound % cacheBlockBytes).toBe(0);
        expect(bound).toBeGreaterThanOrEqual(chunkCacheBytesFloor);
        expect(bound).toBeLessThanOrEqual(chunkCacheBytesCeiling);
        expect(bound).toBeLessThanOrEqual(Math.max(chunkCacheBytesFloor, memory / 16));
      }),
    );
  });
});
