import { Packr } from "msgpackr";
import { expect, test } from "vitest";
// The head node builds what this module parses: check the two sides agree.
import { PartitionMetadata } from "../../../services/headnode/src/replica/metadata.ts";
import { sledChunkIdOf } from "../../../services/headnode/src/replica/replica.ts";
import {
  BallastError,
  checkpointBlobPrefixOf,
  checkpointHeaderLengthOf,
  opNumOfCheckpointBlobKey,
  parseSledChunkId,
  partitionOfCheckpointBlobKey,
  readCheckpointHeader,
} from "../src/index.ts";

test("a head node's snapshot header reads back: op, next chunk number and chunk table", () => {
  const metadata = new PartitionMetadata();
  metadata.nextChunkNumber = 7;
  metadata.chunks.set(3, { sledChunkId: "v-p0-e1-s1-c3", copies: ["a", "b"], bytes: 4096 });
  metadata.chunks.set(5, {
    sledChunkId: "v-p0-e1-s1-c5",
    copies: ["b"],
    bytes: 512,
    checksum: 0xdeadbeef,
  });
  const snapshot = metadata.snapshot(42, { epoch: 1, session: 1 });
  const { header, headerEnd } = readCheckpointHeader(snapshot);
  expect(header.opNum).toBe(42);
  expect(header.nextChunkNumber).toBe(7);
  expect(header.chunks).toEqual([
    [3, "v-p0-e1-s1-c3", ["a", "b"], 4096],
    [5, "v-p0-e1-s1-c5", ["b"], 512, 0xdeadbeef],
  ]);
  // The first bytes alone name where the header ends, and the header alone parses.
  expect(4 + checkpointHeaderLengthOf(snapshot.subarray(0, 4))).toBe(headerEnd);
  expect(readCheckpointHeader(snapshot.subarray(0, headerEnd)).header).toEqual(header);
});

test("a truncated or malformed header is a typed error, never a partial header", () => {
  const snapshot = new PartitionMetadata().snapshot(1, { epoch: 1, session: 1 });
  const headerEnd = readCheckpointHeader(snapshot).headerEnd;
  expect(() => readCheckpointHeader(snapshot.subarray(0, 3))).toThrow(BallastError);
  expect(() => readCheckpointHeader(snapshot.subarray(0, headerEnd - 1))).toThrow(/truncated/);
  const wrong = new Packr({ useRecords: false }).pack({ format: 1, opNum: -1 });
  const bytes = new Uint8Array(4 + wrong.byteLength);
  new DataView(bytes.buffer).setUint32(0, wrong.byteLength, true);
  bytes.set(wrong, 4);
  expect(() => readCheckpointHeader(bytes)).toThrow(/schema/);
  const huge = new Uint8Array(8);
  new DataView(huge.buffer).setUint32(0, 0xffff_ffff, true);
  expect(() => checkpointHeaderLengthOf(huge)).toThrow(/more than/);
});

test("format 2 lists snapshots after the tree; format 1 still reads; format 2 needs both", () => {
  const snapshot = new PartitionMetadata().snapshot(1, { epoch: 1, session: 1 });
  const { header } = readCheckpointHeader(snapshot);
  expect(header.format).toBe(2);
  expect(header.snapshots).toEqual([]);
  expect(header.treeBytes).toBeGreaterThan(0);
  const pack = (value: object) => {
    const packed = new Packr({ useRecords: false }).pack(value);
    const bytes = new Uint8Array(4 + packed.byteLength);
    new DataView(bytes.buffer).setUint32(0, packed.byteLength, true);
    bytes.set(packed, 4);
    return bytes;
  };
  const { treeBytes: _tree, snapshots: _snapshots, ...format1 } = header;
  expect(readCheckpointHeader(pack({ ...format1, format: 1 })).header.format).toBe(1);
  expect(() => readCheckpointHeader(pack({ ...format1, format: 2 }))).toThrow(/treeBytes/);
  expect(() => readCheckpointHeader(pack({ ...header, format: 3 }))).toThrow(/schema/);
});

test("the head node's readable chunk ids parse to their partition and chunk number", () => {
  const identity = { volume: "vol", volumeId: "1-abc", partition: 12, session: 40 };
  const id = sledChunkIdOf(identity, 3, 1234);
  expect(id).toBe("1-abc-p12-e3-s14-c1234");
  expect(parseSledChunkId(id, "1-abc")).toEqual({ partition: 12, chunkNumber: 1234 });
  // Another incarnation's id, or an id of another shape, does not parse.
  expect(parseSledChunkId(id, "2-abc")).toBeUndefined();
  expect(parseSledChunkId(id, "1-ab")).toBeUndefined();
  expect(parseSledChunkId("1-abc-p12-c4", "1-abc")).toBeUndefined();
});

test("the head node's hashed chunk ids (long volume ids) parse too", () => {
  const volumeId = `1-${"n".repeat(60)}`;
  const identity = { volume: "vol", volumeId, partition: 40, session: 7 };
  const id = sledChunkIdOf(identity, 50, 100_000);
  expect(id.startsWith(volumeId)).toBe(false);
  expect(parseSledChunkId(id, volumeId)).toEqual({ partition: 40, chunkNumber: 100_000 });
  expect(parseSledChunkId(id, `2-${"n".repeat(60)}`)).toBeUndefined();
});

test("a volume named without an incarnation id parses with its name", () => {
  const id = sledChunkIdOf({ volume: "plain", partition: 0, session: 1 }, 1, 0);
  expect(parseSledChunkId(id, "plain")).toEqual({ partition: 0, chunkNumber: 0 });
});

test("checkpoint blob keys name their partition under the incarnation's prefix", () => {
  const key = `${checkpointBlobPrefixOf("1-abc", 3)}node-a/17-2-1`;
  expect(key).toBe("checkpoints/1-abc/3/node-a/17-2-1");
  expect(partitionOfCheckpointBlobKey(key, "1-abc")).toBe(3);
  expect(partitionOfCheckpointBlobKey(key, "1-ab")).toBeUndefined();
  expect(partitionOfCheckpointBlobKey("checkpoints/1-abc/x/node-a/1", "1-abc")).toBeUndefined();
  expect(partitionOfCheckpointBlobKey("checkpoints/1-abc/3/node-a", "1-abc")).toBeUndefined();
});

test("checkpoint blob keys name the op they were taken at", () => {
  expect(opNumOfCheckpointBlobKey("checkpoints/1-abc/3/node-a/17-2-1", "1-abc")).toBe(17);
  expect(opNumOfCheckpointBlobKey("checkpoints/1-abc/3/node-a/0-k-12", "1-abc")).toBe(0);
  expect(opNumOfCheckpointBlobKey("checkpoints/1-abc/3/node-a/17-2-1", "1-ab")).toBeUndefined();
  expect(opNumOfCheckpointBlobKey("checkpoints/1-abc/3/node-a/x-2-1", "1-abc")).toBeUndefined();
  expect(opNumOfCheckpointBlobKey("checkpoints/1-abc/3/node-a/017-2-1", "1-abc")).toBeUndefined();
  expect(opNumOfCheckpointBlobKey("checkpoints/1-abc/3/node-a/17", "1-abc")).toBeUndefined();
});
