import { Readable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BtreeAssertionError,
  CheckpointCorruptError,
  CheckpointError,
  CheckpointFormatError,
  ExtentTree,
  loadCheckpoint,
  serializeCheckpoint,
  zeroLocation,
} from "../src/index.ts";
import { blockOffsets, checkpointBytes, chunked, concatenate, reseal } from "./checkpoint-tools.ts";
import {
  applyToTree,
  buildTree,
  type OperationSpace,
  operationArbitrary,
  sortedEntries,
} from "./model.ts";

const space: OperationSpace = { unitCount: 256, unitBytes: 512, rangeUnitsMax: 32, opNumMax: 40 };
const checkpointOpNum = 40;

/** A tree of a few dozen extents of every location kind, written in blocks of ~100 bytes. */
function sampleTree(): ExtentTree {
  const tree = new ExtentTree({ fanout: 4 });
  for (let index = 0; index < 60; index += 1) {
    const location =
      index % 3 === 0
        ? { kind: "chunk" as const, chunkId: index % 7, offset: index * 4096 }
        : index % 3 === 1
          ? { kind: "journal" as const, segment: 2, position: index * 1000 }
          : zeroLocation;
    tree.insert({
      offset: index * 8192,
      length: 4096 + (index % 4) * 512,
      opNum: index + 1,
      location,
    });
  }
  return tree;
}

async function expectRefused(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  errorClass: typeof CheckpointCorruptError | typeof CheckpointFormatError,
  message: RegExp,
): Promise<CheckpointError> {
  const error: unknown = await loadCheckpoint(source).then(
    (loaded) => {
      throw new Error(`a tree of ${loaded.tree.extentCount} extents was handed out`);
    },
    (refusal: unknown) => refusal,
  );
  expect(error).toBeInstanceOf(errorClass);
  const checkpointError = error as CheckpointError;
  expect(checkpointError.name).toBe(errorClass.name);
  expect(checkpointError.message).toMatch(message);
  expect(checkpointError.byteOffset).toBeGreaterThanOrEqual(0);
  return checkpointError;
}

describe("checkpoint round trip", () => {
  it("an empty tree round-trips as a header and a trailer", async () => {
    const frames = [...serializeCheckpoint(new ExtentTree(), { opNum: 0 })];
    expect(frames.map((frame) => frame.length)).toEqual([36, 24]);
    const { tree, meta } = await loadCheckpoint(frames);
    expect(meta).toEqual({ opNum: 0 });
    expect(tree.extentCount).toBe(0);
    tree.check();
  });

  it("random trees round-trip with every extent, count and live byte intact", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(operationArbitrary(space), { maxLength: 60 }),
        fc.integer({ min: 41, max: 600 }),
        fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 5 }),
        fc.constantFrom(4, 5, 16, 128),
        async (operations, blockBytes, chunkSizes, fanout) => {
          const original = new ExtentTree({ fanout: 4 });
          buildTree(operations, space, original);
          const bytes = checkpointBytes(original, checkpointOpNum, blockBytes);
          const { tree, meta } = await loadCheckpoint(chunked(bytes, chunkSizes), { fanout });
          tree.check();
          expect(meta.opNum).toBe(checkpointOpNum);
          expect(tree.fanout).toBe(fanout);
          expect([...tree.extents()]).toEqual([...original.extents()]);
          expect(tree.extentCount).toBe(original.extentCount);
          expect(tree.mappedBytes).toBe(original.mappedBytes);
          expect(sortedEntries(tree.liveBytesByChunk())).toEqual(
            sortedEntries(original.liveBytesByChunk()),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a loaded tree goes on changing exactly like the tree it was saved from", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(operationArbitrary(space), { maxLength: 50 }),
        fc.array(operationArbitrary(space), { maxLength: 50 }),
        async (before, after) => {
          const original = new ExtentTree({ fanout: 4 });
          buildTree(before, space, original);
          const { tree } = await loadCheckpoint(serializeCheckpoint(original, { opNum: 40 }), {
            fanout: 4,
          });
          for (const operation of after) {
            expect(applyToTree(tree, operation)).toEqual(applyToTree(original, operation));
            tree.check();
          }
          expect([...tree.extents()]).toEqual([...original.extents()]);
          expect(sortedEntries(tree.liveBytesByChunk())).toEqual(
            sortedEntries(original.liveBytesByChunk()),
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  it("reads from a Node stream of Buffers", async () => {
    const original = sampleTree();
    const { tree } = await loadCheckpoint(
      Readable.from(
        [...serializeCheckpoint(original, { opNum: 60 })].map((frame) => Buffer.from(frame)),
      ),
    );
    expect([...tree.extents()]).toEqual([...original.extents()]);
  });

  it("yields separate arrays that the consumer may keep", () => {
    const frames = [...serializeCheckpoint(sampleTree(), { opNum: 60 }, { blockBytes: 100 })];
    expect(frames.length).toBeGreaterThan(5);
    expect(new Set(frames.map((frame) => frame.buffer)).size).toBe(frames.length);
  });

  it("keeps every block's payload within the block size asked for", () => {
    const bytes = checkpointBytes(sampleTree(), 60, 100);
    const view = new DataView(bytes.buffer);
    const offsets = blockOffsets(bytes);
    expect(offsets.length).toBeGreaterThan(5);
    for (const offset of offsets) {
      expect(view.getUint32(offset + 4, true)).toBeLessThanOrEqual(100);
    }
  });

  it("takes about a dozen bytes per 4 KiB extent", () => {
    const tree = new ExtentTree();
    for (let index = 0; index < 10_000; index += 1) {
      tree.insert({
        offset: index * 3 * 4096,
        length: 4096,
        opNum: index + 1,
        location: { kind: "chunk", chunkId: index >> 10, offset: (index % 1024) * 4096 },
      });
    }
    const bytes = checkpointBytes(tree, 10_000);
    expect(bytes.length / tree.extentCount).toBeLessThan(14);
  });

  it("the tree must not change while its checkpoint is being written", () => {
    const tree = sampleTree();
    const frames = serializeCheckpoint(tree, { opNum: 60 }, { blockBytes: 100 });
    frames.next();
    frames.next();
    tree.remove(0, 4096);
    expect(() => frames.next()).toThrow(BtreeAssertionError);
  });

  it("a checkpoint cannot claim an op number older than one of its extents", () => {
    expect(() => [...serializeCheckpoint(sampleTree(), { opNum: 59 })]).toThrow(/op 60/);
  });
});

describe("refusing bad checkpoints", () => {
  const good = checkpointBytes(sampleTree(), 60, 100);

  it("a sample checkpoint has several blocks and loads", async () => {
    expect(blockOffsets(good).length).toBeGreaterThan(5);
    const { tree } = await loadCheckpoint([good]);
    expect(tree.extentCount).toBe(60);
  });

  it("an empty stream is refused as corrupt", async () => {
    const error = await expectRefused([], CheckpointCorruptError, /stream is empty/);
    expect(error.byteOffset).toBe(0);
    await expectRefused([new Uint8Array(0)], CheckpointCorruptError, /stream is empty/);
  });

  it("a stream with the wrong magic is refused as a format error", async () => {
    const bytes = good.slice();
    bytes.set(new TextEncoder().encode('{"json":'), 0);
    await expectRefused([bytes], CheckpointFormatError, /magic "BALLASTX" but with bytes 7b 22 6a/);
  });

  it("a stream of an unknown format version is refused as a format error", async () => {
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(8, 2, true);
    const error = await expectRefused(
      [reseal(bytes)],
      CheckpointFormatError,
      /format version is 2/,
    );
    expect(error.byteOffset).toBe(8);
  });

  it("a stream with flags this reader does not know is refused as a format error", async () => {
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(12, 1, true);
    await expectRefused([reseal(bytes)], CheckpointFormatError, /flags 0x00000001/);
  });

  it("any flipped byte is detected", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: good.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (position, mask) => {
          const bytes = good.slice();
          bytes[position] = bytes[position]! ^ mask;
          const error: unknown = await loadCheckpoint([bytes]).then(
            () => undefined,
            (refusal: unknown) => refusal,
          );
          expect(error).toBeInstanceOf(CheckpointError);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("a stream cut short anywhere is refused as corrupt", async () => {
    for (let length = 0; length < good.length; length += 1) {
      await expectRefused([good.subarray(0, length)], CheckpointCorruptError, /truncated/);
    }
  });

  it("bytes after the trailer are refused", async () => {
    await expectRefused(
      [good, new Uint8Array([0])],
      CheckpointCorruptError,
      /bytes follow its trailer/,
    );
  });

  it("blocks swapped in place are caught by the running checksum", async () => {
    const offsets = blockOffsets(good);
    const [first, second, third] = [offsets[0]!, offsets[1]!, offsets[2]!];
    const bytes = concatenate([
      good.subarray(0, first),
      good.subarray(second, third),
      good.subarray(first, second),
      good.subarray(third),
    ]);
    await expectRefused([bytes], CheckpointCorruptError, /block 0 fails its checksum/);
  });

  it("a block that claims more payload than the limit is refused before it is read", async () => {
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(blockOffsets(bytes)[0]! + 4, 0x7fff_ffff, true);
    await expectRefused(
      [bytes],
      CheckpointCorruptError,
      /2147483647 payload bytes, more than the limit/,
    );
  });

  it("a header that promises more extents than the blocks hold is refused", async () => {
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(24, 61, true);
    await expectRefused(
      [reseal(bytes)],
      CheckpointCorruptError,
      /promises 61 extents but its blocks hold 60/,
    );
  });

  it("a header that promises fewer extents than the blocks hold is refused", async () => {
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(24, 10, true);
    await expectRefused(
      [reseal(bytes)],
      CheckpointCorruptError,
      /more than the 10 its header promises/,
    );
  });

  it("a trailer whose totals disagree with the blocks is refused", async () => {
    const bytes = good.slice();
    const view = new DataView(bytes.buffer);
    view.setUint32(
      bytes.length - 24 + 12,
      view.getUint32(bytes.length - 24 + 12, true) + 512,
      true,
    );
    await expectRefused([reseal(bytes)], CheckpointCorruptError, /trailer counts 60 extents/);
  });

  it("a header op number beyond the safe integers is refused", async () => {
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(20, 0xffff_ffff, true);
    const error = await expectRefused(
      [reseal(bytes)],
      CheckpointCorruptError,
      /op number is beyond 2\^53/,
    );
    expect(error.byteOffset).toBe(16);
  });

  it("an extent newer than the checkpoint's op number is refused", async () => {
    const bytes = good.slice();
    new DataView(bytes.buffer).setUint32(16, 50, true);
    await expectRefused(
      [reseal(bytes)],
      CheckpointCorruptError,
      /has op 51, newer than the checkpoint's op 50/,
    );
  });

  describe("records that pass the checksum but describe no valid extent", () => {
    // One extent of one byte at offset 0 with a zero location: its record is the four
    // bytes gap 0, length 1, op 1, location code 0.
    const single = new ExtentTree();
    single.insert({ offset: 0, length: 1, opNum: 1, location: zeroLocation });
    const recordAt = 36 + 12;

    it("the single-record checkpoint has the expected layout", () => {
      const bytes = checkpointBytes(single, 1);
      expect([...bytes.subarray(recordAt, recordAt + 4)]).toEqual([0, 1, 1, 0]);
    });

    it("a zero length is refused", async () => {
      const bytes = checkpointBytes(single, 1);
      bytes[recordAt + 1] = 0;
      await expectRefused([reseal(bytes)], CheckpointCorruptError, /length 0, not a valid extent/);
    });

    it("an unknown location code is refused", async () => {
      const bytes = checkpointBytes(single, 1);
      bytes[recordAt + 3] = 7;
      await expectRefused([reseal(bytes)], CheckpointCorruptError, /location code 7/);
    });

    it("a record cut off by the end of its block is refused", async () => {
      const bytes = checkpointBytes(single, 1);
      bytes[recordAt + 3] = 2;
      await expectRefused([reseal(bytes)], CheckpointCorruptError, /cut short/);
    });
  });

  it("the source is closed when the stream is refused", async () => {
    let closed = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        yield good.subarray(0, 8).map((byte) => byte ^ 0xff);
        yield good.subarray(8);
      } finally {
        closed = true;
      }
    }
    await expectRefused(source(), CheckpointFormatError, /magic/);
    expect(closed).toBe(true);
  });

  it("an error from the source passes through unchanged", async () => {
    const failure = new Error("the sled went away");
    async function* source(): AsyncGenerator<Uint8Array> {
      yield good.subarray(0, 100);
      throw failure;
    }
    await expect(loadCheckpoint(source())).rejects.toBe(failure);
  });
});
