// The sled client with its chunk cache against a model: random chunk writes (through the
// client, as a primary's flush, or straight onto the sleds, as another head node's),
// random reads of parts and of whole chunks, with any cache size (off, one block, a
// few, plenty): every read answers exactly the chunk's bytes, as the client without a
// cache does. The test scribbles over each reply's buffer once the client is done with
// it, and over each chunk it wrote that lies within a larger buffer, so a cache that kept
// a view of either instead of a copy answers garbage. A chunk that is a buffer of its own
// is handed over, as a flush's is (the cache may keep it whole), and never written again.

import { BallastError, crc32c, ErrorCode, subjects } from "@ballast/protocol";
import type { Bus, Logger } from "@ballast/runtime";
import fc from "fast-check";
import { describe, expect, test, vi } from "vitest";
import {
  cacheBlockBytes,
  cacheEntryOverheadBytes,
  cacheFillReadBytesMax,
} from "../src/chunk-cache.ts";
import { SledClient } from "../src/sled-client.ts";

const owner = { volume: "vol", partition: 0 };
const block = cacheBlockBytes;
const charge = block + cacheEntryOverheadBytes;
const sledNames = ["sled-1", "sled-2", "sled-3"];

/** Sleds in memory that answer writes, reads and read-manys as real ones do. */
function fakeSleds() {
  const stored = new Map<string, Map<string, Uint8Array>>(
    sledNames.map((name) => [name, new Map()]),
  );
  /** Reply buffers handed out: `scribble` writes over them (the client is done). */
  let replies: Uint8Array[] = [];
  const scribble = () => {
    for (const reply of replies) reply.fill(0xee);
    replies = [];
  };
  const readOne = (
    sled: Map<string, Uint8Array>,
    read: { chunkId: string; offset: number; length: number },
  ) => {
    const data = sled.get(read.chunkId);
    if (data === undefined) throw new BallastError(ErrorCode.NotFound, "no such chunk");
    if (read.offset + read.length > data.byteLength) {
      throw new BallastError(ErrorCode.InvalidArgument, "past the chunk's end");
    }
    const reply = data.slice(read.offset, read.offset + read.length);
    replies.push(reply);
    return reply;
  };
  let requests = 0;
  const bus = {
    // biome-ignore lint/suspicious/noExplicitAny: a fake of the sleds' request surface
    request: async (subject: string, message: any) => {
      requests++;
      const sled = stored.get(subject.split(".").at(-1)!)!;
      switch (message.type) {
        case "sled.chunk.write.v1": {
          const data: Uint8Array = message.data.slice();
          sled.set(message.chunkId, data);
          return { bytes: data.byteLength, checksum: crc32c(data), created: true, location: {} };
        }
        case "sled.chunk.read.v1":
          return { data: readOne(sled, message) };
        case "sled.chunk.read-many.v1":
          return {
            data: message.reads.map((read: { chunkId: string; offset: number; length: number }) =>
              readOne(sled, read),
            ),
          };
        default:
          throw new Error(`the fake sled does not answer ${message.type}`);
      }
    },
  } as unknown as Bus;
  return { stored, bus, scribble, requests: () => requests };
}

const logger = {
  info: vi.fn(),
  warn: vi.fn(),
  error: vi.fn(),
  debug: vi.fn(),
} as unknown as Logger;

function pattern(bytes: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, index) => (index * 131 + seed * 17) & 0xff);
}

type Step =
  | { kind: "write"; size: number; direct: boolean; inLarger: boolean }
  | { kind: "read"; chunk: number; from: number; length: number; whole: boolean; together: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("write" as const),
    size: fc.oneof(
      fc.integer({ min: 1, max: 6 * block }),
      fc.integer({ min: 1, max: 6 }).map((n) => n * block),
    ),
    direct: fc.boolean(),
    // Through the client: the chunk is a view within a larger buffer (copied as blocks,
    // then scribbled over), not a buffer of its own (kept whole).
    inLarger: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("read" as const),
    chunk: fc.nat(),
    from: fc.nat(6 * block),
    length: fc.integer({ min: 1, max: 3 * block }),
    whole: fc.boolean(),
    // Reads asked for in the same turn (one read-many): this many more of the same chunk.
    together: fc.nat(3),
  }),
);

describe("the sled client's chunk cache against a model", () => {
  test("every read answers the chunk's bytes, with any cache size", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.constant(0), fc.constant(charge), fc.nat(10 * charge), fc.constant(1 << 24)),
        fc.array(step, { minLength: 1, maxLength: 40 }),
        async (cacheBytes, steps) => {
          const sleds = fakeSleds();
          const client = new SledClient(sleds.bus, logger, { cacheBytes });
          const model: { id: string; data: Uint8Array }[] = [];
          for (const [index, one] of steps.entries()) {
            if (one.kind === "write") {
              const id = `c${index}`;
              const data = pattern(one.size, index);
              model.push({ id, data: data.slice() });
              if (one.direct) {
                // Another head node's chunk: on the sleds, never through this client.
                sleds.stored.get("sled-1")!.set(id, data.slice());
                sleds.stored.get("sled-2")!.set(id, data.slice());
              } else if (one.inLarger) {
                const larger = new Uint8Array(one.size + 2 * block);
                const view = larger.subarray(block, block + one.size);
                view.set(data);
                await client.writeChunk(owner, id, view, sledNames, index, crc32c(data));
                // Not a buffer of its own: the cache must have copied what it keeps.
                larger.fill(0xdd);
              } else {
                // A buffer of its own, handed over as a flush's chunk is: never written again.
                await client.writeChunk(owner, id, data, sledNames, index, crc32c(data));
              }
              continue;
            }
            if (model.length === 0) continue;
            const chunk = model[one.chunk % model.length]!;
            const size = chunk.data.byteLength;
            const ranges = [0, 1, 2, 3].slice(0, one.together + 1).map((shift) => {
              if (one.whole && shift === 0) return { from: 0, to: size };
              const from = Math.min(one.from + shift * 1000, size - 1);
              return { from, to: Math.min(size, from + one.length) };
            });
            const expectation = { bytes: size, checksum: crc32c(chunk.data) };
            // The synchronous lookup (a primary's read of a cached range) answers the
            // chunk's bytes too, or nothing.
            for (const { from, to } of ranges) {
              const now = client.readCached(chunk.id, from, to - from, expectation);
              if (now !== undefined) {
                expect(Buffer.compare(now, chunk.data.subarray(from, to))).toBe(0);
              }
            }
            const reads = await Promise.all(
              ranges.map(({ from, to }) =>
                client.readChunk(owner, chunk.id, sledNames, from, to - from, expectation),
              ),
            );
            ranges.forEach(({ from, to }, at) => {
              expect(Buffer.compare(reads[at]!, chunk.data.subarray(from, to))).toBe(0);
            });
            sleds.scribble();
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  test("readCached answers what the cache holds, synchronously, and nothing else", async () => {
    const sleds = fakeSleds();
    const client = new SledClient(sleds.bus, logger, { cacheBytes: 1 << 20 });
    expect(client.readCached("c0", 0, block)).toBeUndefined();
    const data = pattern(3 * block, 2);
    const checksum = crc32c(data);
    await client.writeChunk(owner, "c0", data, sledNames, 0, checksum);
    const part = client.readCached("c0", 100, block, { bytes: data.byteLength, checksum });
    expect(part).toBeDefined();
    expect(Buffer.compare(part!, data.subarray(100, 100 + block))).toBe(0);
    const whole = client.readCached("c0", 0, data.byteLength, {
      bytes: data.byteLength,
      checksum,
    });
    expect(Buffer.compare(whole!, data)).toBe(0);
    // Past the chunk's end, or a chunk it does not hold: nothing.
    expect(client.readCached("c0", 2 * block, 2 * block)).toBeUndefined();
    expect(client.readCached("c1", 0, block)).toBeUndefined();
    // A whole read whose recorded CRC32C the cached bytes fail: nothing, and readChunk
    // then drops the chunk and reads the sleds.
    const wrong = { bytes: data.byteLength, checksum: (checksum + 1) >>> 0 };
    expect(client.readCached("c0", 0, data.byteLength, wrong)).toBeUndefined();
    const before = sleds.requests();
    await expect(
      client.readChunk(owner, "c0", sledNames, 0, data.byteLength, wrong),
    ).rejects.toThrow();
    expect(sleds.requests()).toBeGreaterThan(before);
    expect(client.readCached("c0", 100, block)).toBeUndefined();
  });

  test("a range counts once: a readCached miss that readChunk then reads is one miss, a hit one hit", async () => {
    const sleds = fakeSleds();
    const client = new SledClient(sleds.bus, logger, { cacheBytes: 1 << 20 });
    const data = pattern(3 * block, 4);
    await sleds.bus.request(subjects.node.build("sled", "sled-1"), {
      type: "sled.chunk.write.v1",
      owner,
      chunkId: "c0",
      data,
    });
    // What a primary does for a range: the synchronous try, then the sled read.
    expect(client.readCached("c0", block, block)).toBeUndefined();
    await client.readChunk(owner, "c0", ["sled-1"], block, block);
    expect(client.cache.stats()).toMatchObject({ hits: 0, misses: 1 });
    expect(client.readCached("c0", block, block)).toBeDefined();
    expect(client.cache.stats()).toMatchObject({ hits: 1, misses: 1 });
  });

  test("a sled read larger than cacheFillReadBytesMax is a scan: not copied into the cache", async () => {
    const sleds = fakeSleds();
    const client = new SledClient(sleds.bus, logger, { cacheBytes: 16 << 20 });
    const data = pattern(2 * cacheFillReadBytesMax, 5);
    await sleds.bus.request(subjects.node.build("sled", "sled-1"), {
      type: "sled.chunk.write.v1",
      owner,
      chunkId: "c0",
      data,
    });
    const large = await client.readChunk(owner, "c0", ["sled-1"], 0, cacheFillReadBytesMax + block);
    expect(Buffer.compare(large, data.subarray(0, cacheFillReadBytesMax + block))).toBe(0);
    expect(client.cache.stats().blocks).toBe(0);
    await client.readChunk(owner, "c0", ["sled-1"], 0, cacheFillReadBytesMax);
    expect(client.cache.stats().blocks).toBe(cacheFillReadBytesMax / block);
    const before = sleds.requests();
    expect(client.readCached("c0", block, block)).toBeDefined();
    expect(sleds.requests()).toBe(before);
  });

  test("a read the cache holds sends nothing to sleds; with the cache off, every read does", async () => {
    for (const cacheBytes of [0, 1 << 20]) {
      const sleds = fakeSleds();
      const client = new SledClient(sleds.bus, logger, { cacheBytes });
      const data = pattern(3 * block, 1);
      await client.writeChunk(owner, "c0", data, sledNames, 0, crc32c(data));
      const before = sleds.requests();
      const read = await client.readChunk(owner, "c0", sledNames, 100, 2 * block);
      expect(Buffer.compare(read, data.subarray(100, 100 + 2 * block))).toBe(0);
      expect(sleds.requests() - before).toBe(cacheBytes === 0 ? 1 : 0);
      expect(client.cache.stats()).toMatchObject(
        cacheBytes === 0 ? { hits: 0, misses: 0 } : { hits: 1, misses: 0 },
      );
    }
  });
});
