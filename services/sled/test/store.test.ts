import { open as openFile, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32c, ErrorCode, sledLimits } from "@ballast/protocol";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { blobUploadIdleMsMax, blockBytes } from "../src/constants.ts";
import { DeviceError } from "../src/errors.ts";
import type { SledStore } from "../src/store.ts";
import { codeOf, mebibyte, openStoreOnFiles, patterned, temporaryDirectory } from "./support.ts";

const owner = { volume: "vol-1", partition: 0 };
let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
let store: SledStore | undefined;

beforeEach(async () => {
  directory = await temporaryDirectory();
});
afterEach(async () => {
  await store?.close();
  store = undefined;
  await directory.remove();
});

async function open(
  options: { deviceCount?: number; deviceBytes?: number; nowMs?: () => number } = {},
) {
  await store?.close();
  const opened = await openStoreOnFiles({ dataDir: directory.path, ...options });
  store = opened.store;
  return opened;
}

async function putBlob(
  target: SledStore,
  key: string,
  data: Buffer,
  partBytes = sledLimits.blobPartBytesMax,
) {
  const { uploadId } = target.beginBlob(key, data.byteLength, crc32c(data));
  for (let offset = 0; offset < data.byteLength; offset += partBytes) {
    await target.putBlobPart(uploadId, offset, data.subarray(offset, offset + partBytes));
  }
  return target.commitBlob(uploadId);
}

async function flipByte(path: string, position: number): Promise<void> {
  const handle = await openFile(path, "r+");
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, position);
    byte[0]! ^= 0x5a;
    await handle.write(byte, 0, 1, position);
  } finally {
    await handle.close();
  }
}

describe("chunks", () => {
  test("a read-many answers each read as a single read would, failures in place", async () => {
    const { store: target } = await open();
    const one = patterned(3 * blockBytes, 1);
    const two = patterned(2 * blockBytes, 2);
    await target.writeChunk(owner, "c-1", one);
    await target.writeChunk(owner, "c-2", two);
    const answer = await target.readChunks(owner, [
      { chunkId: "c-2", offset: 4096, length: 4096 },
      { chunkId: "c-9", offset: 0, length: 512 },
      { chunkId: "c-1", offset: 512, length: 8192 },
      { chunkId: "c-1", offset: 100, length: 512 },
      { chunkId: "c-1", offset: 0, length: 4 * blockBytes },
    ]);
    expect(answer.data.map((data) => data.byteLength)).toEqual([4096, 0, 8192, 0, 0]);
    expect(answer.data[0]).toEqual(two.subarray(4096, 8192));
    expect(answer.data[2]).toEqual(one.subarray(512, 512 + 8192));
    expect(answer.failed?.map(({ index, code }) => [index, code])).toEqual([
      [1, ErrorCode.NotFound],
      [3, ErrorCode.Unaligned],
      [4, ErrorCode.OutOfRange],
    ]);
    // No failures: no `failed` list. The read limit bounds all of a request's reads.
    expect(await target.readChunks(owner, [{ chunkId: "c-1", offset: 0, length: 512 }])).toEqual({
      data: [one.subarray(0, 512)],
    });
    const many = Array.from({ length: 2 }, () => ({
      chunkId: "c-1",
      offset: 0,
      length: sledLimits.readBytesMax / 2 + 512,
    }));
    expect(await codeOf(() => target.readChunks(owner, many))).toBe(ErrorCode.PayloadTooLarge);
  });

  test("a written chunk reads back whole and in sector ranges, and survives a reopen", async () => {
    const { store: first } = await open();
    const data = patterned(3 * blockBytes + 1536, 1);
    const written = await first.writeChunk(owner, "c-1", data);
    expect(written).toMatchObject({
      bytes: data.byteLength,
      checksum: crc32c(data),
      created: true,
    });
    expect(written.location.dataOffset - written.location.offset).toBe(blockBytes);
    expect(await first.readChunk(owner, "c-1", 0, data.byteLength)).toEqual(data);
    expect(await first.readChunk(owner, "c-1", 4096 + 512, 5120)).toEqual(
      data.subarray(4096 + 512, 4096 + 512 + 5120),
    );
    const { store: second, report } = await open();
    expect(report).toMatchObject({ chunks: 1, damagedSlots: 0, clearedSlots: 0 });
    expect(await second.readChunk(owner, "c-1", 0, data.byteLength)).toEqual(data);
    expect(second.statChunk(owner, "c-1")).toMatchObject({
      location: written.location,
      bytes: data.byteLength,
    });
  });

  test("the same bytes again are an idempotent success; other bytes or owners are refused", async () => {
    const { store: target } = await open();
    const data = patterned(8192, 2);
    const first = await target.writeChunk(owner, "c-2", data);
    const again = await target.writeChunk(owner, "c-2", Buffer.from(data));
    expect(again).toEqual({ ...first, created: false });
    expect(await codeOf(() => target.writeChunk(owner, "c-2", patterned(8192, 3)))).toBe(
      ErrorCode.AlreadyExists,
    );
    expect(
      await codeOf(() => target.writeChunk({ volume: "vol-2", partition: 0 }, "c-2", data)),
    ).toBe(ErrorCode.AlreadyExists);
    expect(target.stat().chunks).toBe(1);
  });

  test("delete frees the space durably, and the id can be written again", async () => {
    const { store: target } = await open();
    const empty = target.stat().usedBytes;
    await target.writeChunk(owner, "c-3", patterned(65536, 3));
    expect(target.stat().usedBytes).toBe(empty + 65536 + blockBytes);
    expect(await target.deleteChunk(owner, "c-3")).toEqual({ freedBytes: 65536 + blockBytes });
    expect(await codeOf(() => target.readChunk(owner, "c-3", 0, 512))).toBe(ErrorCode.NotFound);
    const { store: reopened } = await open();
    expect(reopened.stat()).toMatchObject({ usedBytes: empty, chunks: 0 });
    await reopened.writeChunk(owner, "c-3", patterned(512, 4));
    expect(await reopened.readChunk(owner, "c-3", 0, 512)).toEqual(patterned(512, 4));
  });

  test("bad input answers typed errors and damages nothing", async () => {
    const { store: target } = await open();
    const data = patterned(16384, 5);
    await target.writeChunk(owner, "c-4", data);
    const cases: [string, () => unknown, string][] = [
      [
        "unaligned length",
        () => target.writeChunk(owner, "c-5", Buffer.alloc(1000)),
        ErrorCode.Unaligned,
      ],
      ["empty", () => target.writeChunk(owner, "c-5", Buffer.alloc(0)), ErrorCode.InvalidArgument],
      [
        "oversized",
        () => target.writeChunk(owner, "c-5", Buffer.alloc(sledLimits.chunkBytesMax + 512)),
        ErrorCode.PayloadTooLarge,
      ],
      ["unaligned offset", () => target.readChunk(owner, "c-4", 100, 512), ErrorCode.Unaligned],
      ["unaligned read length", () => target.readChunk(owner, "c-4", 0, 100), ErrorCode.Unaligned],
      ["empty read", () => target.readChunk(owner, "c-4", 0, 0), ErrorCode.InvalidArgument],
      [
        "past the end",
        () => target.readChunk(owner, "c-4", 16384 - 512, 1024),
        ErrorCode.OutOfRange,
      ],
      [
        "read too large",
        () => target.readChunk(owner, "c-4", 0, sledLimits.readBytesMax + 512),
        ErrorCode.PayloadTooLarge,
      ],
      ["unknown chunk", () => target.readChunk(owner, "c-404", 0, 512), ErrorCode.NotFound],
      ["unknown delete", () => target.deleteChunk(owner, "c-404"), ErrorCode.NotFound],
      [
        "wrong owner read",
        () => target.readChunk({ volume: "vol-1", partition: 1 }, "c-4", 0, 512),
        ErrorCode.InvalidArgument,
      ],
      [
        "wrong owner delete",
        () => target.deleteChunk({ volume: "vol-9", partition: 0 }, "c-4"),
        ErrorCode.InvalidArgument,
      ],
      [
        "wrong owner stat",
        () => target.statChunk({ volume: "vol-9", partition: 0 }, "c-4"),
        ErrorCode.InvalidArgument,
      ],
    ];
    for (const [what, work, code] of cases) {
      expect(await codeOf(work), what).toBe(code);
    }
    expect(await target.readChunk(owner, "c-4", 0, 16384)).toEqual(data);
    expect(target.stat().chunks).toBe(1);
  });

  test("a flipped byte answers ChecksumMismatch with the location; other blocks still read", async () => {
    const { store: target } = await open();
    const data = patterned(4 * blockBytes, 6);
    const { location } = await target.writeChunk(owner, "c-6", data);
    await target.writeChunk(owner, "c-7", patterned(blockBytes, 7));
    const path = join(directory.path, `device-${location.device}.dev`);
    await flipByte(path, location.dataOffset + 2 * blockBytes + 100);
    try {
      await target.readChunk(owner, "c-6", 0, data.byteLength);
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({
        code: ErrorCode.ChecksumMismatch,
        details: {
          sled: "sled-1",
          device: location.device,
          offset: location.dataOffset + 2 * blockBytes,
          chunkId: "c-6",
          block: 2,
        },
      });
    }
    expect(await target.readChunk(owner, "c-6", 0, 2 * blockBytes)).toEqual(
      data.subarray(0, 2 * blockBytes),
    );
    expect(await target.readChunk(owner, "c-6", 3 * blockBytes, blockBytes)).toEqual(
      data.subarray(3 * blockBytes),
    );
    // The damaged block read alone, whole or in part (a read of one block is checked
    // without a view of it), and beside a good one in a read-many.
    for (const [offset, length] of [
      [2 * blockBytes, blockBytes],
      [2 * blockBytes + 512, 512],
    ] as const) {
      await expect(target.readChunk(owner, "c-6", offset, length)).rejects.toMatchObject({
        code: ErrorCode.ChecksumMismatch,
        details: { block: 2 },
      });
    }
    const many = await target.readChunks(owner, [
      { chunkId: "c-6", offset: 2 * blockBytes, length: blockBytes },
      { chunkId: "c-6", offset: blockBytes, length: blockBytes },
    ]);
    expect(many.failed).toMatchObject([{ index: 0, code: ErrorCode.ChecksumMismatch }]);
    expect(Buffer.from(many.data[1]!)).toEqual(
      Buffer.from(data.subarray(blockBytes, 2 * blockBytes)),
    );
    const report = await target.scrub();
    expect(report).toMatchObject({ chunksChecked: 2, damagedTruncated: false });
    expect(report.damaged).toEqual([
      {
        kind: "chunk",
        id: "c-6",
        owner,
        device: location.device,
        offset: location.dataOffset + 2 * blockBytes,
        badBlocks: 1,
        reason: "1 of 4 blocks fail their checksum",
      },
    ]);
  });

  test("a damaged header is caught on the first read and by scrub", async () => {
    const { store: target } = await open();
    const { location } = await target.writeChunk(owner, "c-8", patterned(8192, 8));
    await flipByte(join(directory.path, `device-${location.device}.dev`), location.offset + 516); // the CRC of block 1
    const { store: reopened } = await open(); // an empty CRC-table cache
    expect(await codeOf(() => reopened.readChunk(owner, "c-8", 0, 512))).toBe(
      ErrorCode.ChecksumMismatch,
    );
    const report = await reopened.scrub();
    expect(report.damaged).toMatchObject([{ id: "c-8", offset: location.offset, badBlocks: 0 }]);
  });

  test("a full sled answers NoSpace, and deleting makes room", async () => {
    const { store: target } = await open({ deviceCount: 2, deviceBytes: 4 * mebibyte });
    const written: string[] = [];
    let code: string | undefined;
    for (let index = 0; index < 20 && code === undefined; index++) {
      try {
        await target.writeChunk(owner, `full-${index}`, patterned(mebibyte, index));
        written.push(`full-${index}`);
      } catch (error) {
        code = (error as { code?: string }).code;
      }
    }
    expect(code).toBe(ErrorCode.NoSpace);
    expect(written.length).toBe(6); // three 1 MiB chunks (plus headers) per 4 MiB device
    await target.deleteChunk(owner, written[0]!);
    await target.writeChunk(owner, "after-delete", patterned(mebibyte, 99));
    for (const id of written.slice(1)) {
      expect(await target.readChunk(owner, id, 0, 512)).toEqual(
        patterned(512, Number(id.slice(5))),
      );
    }
  });

  test("a sled full of chunks still stores a checkpoint blob: the reserve is kept for it", async () => {
    const { store: target } = await open({ deviceCount: 2, deviceBytes: 8 * mebibyte });
    let code: string | undefined;
    let written = 0;
    for (let index = 0; index < 400 && code === undefined; index++) {
      try {
        await target.writeChunk(owner, `fill-${index}`, patterned(64 * 1024, index));
        written++;
      } catch (error) {
        code = (error as { code?: string }).code;
      }
    }
    expect(code).toBe(ErrorCode.NoSpace);
    expect(written).toBeGreaterThan(100);
    // A checkpoint of 128 KiB (two chunks' worth) still fits, on a sled that takes no more chunks.
    const checkpoint = patterned(128 * 1024, 7);
    await putBlob(target, "checkpoints/vol-1/0/head-1/1", checkpoint);
    const got = await target.getBlob("checkpoints/vol-1/0/head-1/1", 0, undefined);
    expect(Buffer.from(got.data)).toEqual(checkpoint);
    expect(await codeOf(() => target.writeChunk(owner, "one-more", patterned(64 * 1024, 1)))).toBe(
      ErrorCode.NoSpace,
    );
  });

  test("concurrent writes share fsyncs (group commit)", async () => {
    const { store: target } = await open({ deviceCount: 1 });
    const writes = 32;
    await Promise.all(
      Array.from({ length: writes }, (_, index) =>
        target.writeChunk(owner, `g-${index}`, patterned(8192, index)),
      ),
    );
    const syncs = target.stat().devices[0]!.syncs;
    // Two syncs per write without sharing; far fewer with it.
    expect(syncs).toBeLessThan(writes);
    for (let index = 0; index < writes; index++) {
      expect(await target.readChunk(owner, `g-${index}`, 0, 8192)).toEqual(patterned(8192, index));
    }
  });

  test("reads that miss the CRC table cache together count the table once, and deletes bring it back to nothing", async () => {
    // A read-many of ranges of one chunk not yet read loads its table once per range,
    // at the same time. Each load used to add the table's bytes to the count while the
    // map kept one: the count grew with every such read-many, never came down, and once
    // past the bound emptied the cache at every insert (a header read on every read).
    const { store: target } = await open();
    const chunks = 12;
    const rangesPerRead = 8;
    const chunkBytes = 32 * blockBytes;
    for (let index = 0; index < chunks; index++) {
      const chunkId = `t-${index}`;
      const data = patterned(chunkBytes, index);
      await target.writeChunk(owner, chunkId, data);
      const answer = await target.readChunks(
        owner,
        Array.from({ length: rangesPerRead }, (_, range) => ({
          chunkId,
          offset: range * 4 * blockBytes,
          length: blockBytes,
        })),
      );
      expect(answer.failed).toBeUndefined();
      expect(answer.data[1]).toEqual(data.subarray(4 * blockBytes, 5 * blockBytes));
      const use = target.crcTableCacheUse();
      expect(use.tables).toBe(index + 1);
      expect(use.bytesCounted).toBe(use.bytes);
    }
    for (let index = 0; index < chunks; index++) await target.deleteChunk(owner, `t-${index}`);
    expect(target.crcTableCacheUse()).toEqual({ tables: 0, bytes: 0, bytesCounted: 0 });
  });
});

describe("blobs", () => {
  test("a multi-part blob is visible only once committed, and reads back by offset", async () => {
    const { store: target } = await open({ deviceCount: 1, deviceBytes: 32 * mebibyte });
    const data = patterned(9 * mebibyte + 123, 10);
    const { uploadId } = target.beginBlob("checkpoint/vol-1/0/7", data.byteLength, crc32c(data));
    const part = 4 * mebibyte;
    await target.putBlobPart(uploadId, 0, data.subarray(0, part));
    expect(await codeOf(() => target.getBlob("checkpoint/vol-1/0/7", 0, 10))).toBe(
      ErrorCode.NotFound,
    );
    expect(target.listBlobs(undefined, undefined, undefined).blobs).toEqual([]);
    await target.putBlobPart(uploadId, part, data.subarray(part, 2 * part));
    await target.putBlobPart(uploadId, 2 * part, data.subarray(2 * part));
    const info = await target.commitBlob(uploadId);
    expect(info).toMatchObject({
      key: "checkpoint/vol-1/0/7",
      bytes: data.byteLength,
      checksum: crc32c(data),
    });
    const { store: reopened } = await open({ deviceCount: 1, deviceBytes: 32 * mebibyte });
    const pieces: Buffer[] = [];
    for (let offset = 0; offset < data.byteLength; ) {
      const got = await reopened.getBlob("checkpoint/vol-1/0/7", offset, undefined);
      pieces.push(Buffer.from(got.data));
      offset += got.data.byteLength;
    }
    expect(Buffer.concat(pieces).equals(data)).toBe(true);
    expect((await reopened.getBlob("checkpoint/vol-1/0/7", 5000, 7)).data).toEqual(
      data.subarray(5000, 5007),
    );
  });

  test("list, delete and write-once keys", async () => {
    const { store: target } = await open();
    for (const key of ["b/2", "a/1", "b/1", "c"])
      await putBlob(target, key, patterned(1000, key.length));
    expect(target.listBlobs("b/", undefined, undefined).blobs.map((blob) => blob.key)).toEqual([
      "b/1",
      "b/2",
    ]);
    expect(target.listBlobs(undefined, "a/1", 2)).toMatchObject({
      blobs: [{ key: "b/1" }, { key: "b/2" }],
      truncated: true,
    });
    expect(await codeOf(() => target.beginBlob("c", 10, 0))).toBe(ErrorCode.AlreadyExists);
    await target.deleteBlob("c");
    expect(await codeOf(() => target.getBlob("c", 0, undefined))).toBe(ErrorCode.NotFound);
    await putBlob(target, "c", patterned(10, 1));
    expect((await target.getBlob("c", 0, undefined)).data).toEqual(patterned(10, 1));
  });

  test("bad parts, a wrong checksum and idle uploads are refused, and their space comes back", async () => {
    let nowMs = 1_000_000;
    const { store: target } = await open({ nowMs: () => nowMs });
    const empty = target.stat().usedBytes;
    const data = patterned(3 * blockBytes + 10, 11);
    const { uploadId } = target.beginBlob("k", data.byteLength, crc32c(data));
    expect(target.stat().usedBytes).toBeGreaterThan(empty);
    const cases: [string, () => unknown, string][] = [
      [
        "out of order",
        () => target.putBlobPart(uploadId, blockBytes, data.subarray(blockBytes)),
        ErrorCode.InvalidArgument,
      ],
      [
        "unaligned middle part",
        () => target.putBlobPart(uploadId, 0, data.subarray(0, 1000)),
        ErrorCode.Unaligned,
      ],
      [
        "past the end",
        () => target.putBlobPart(uploadId, 0, Buffer.alloc(4 * blockBytes)),
        ErrorCode.OutOfRange,
      ],
      [
        "empty part",
        () => target.putBlobPart(uploadId, 0, Buffer.alloc(0)),
        ErrorCode.InvalidArgument,
      ],
      ["incomplete commit", () => target.commitBlob(uploadId), ErrorCode.InvalidArgument],
      ["unknown upload", () => target.commitBlob("no-such-upload"), ErrorCode.NotFound],
      ["empty blob", () => target.beginBlob("e", 0, 0), ErrorCode.InvalidArgument],
      [
        "huge blob",
        () => target.beginBlob("e", sledLimits.blobBytesMax + 1, 0),
        ErrorCode.PayloadTooLarge,
      ],
      ["get of unknown", () => target.getBlob("nope", 0, undefined), ErrorCode.NotFound],
    ];
    for (const [what, work, code] of cases) expect(await codeOf(work), what).toBe(code);
    // A part whose bytes do not give the declared checksum: the commit refuses and drops it.
    const corrupted = Buffer.from(data);
    corrupted[7]! ^= 1;
    await target.putBlobPart(uploadId, 0, corrupted);
    expect(await codeOf(() => target.commitBlob(uploadId))).toBe(ErrorCode.ChecksumMismatch);
    expect(target.stat()).toMatchObject({ usedBytes: empty, uploads: 0 });
    // An idle upload is dropped after the limit.
    const idle = target.beginBlob("idle", 100, 0);
    nowMs += blobUploadIdleMsMax + 1;
    expect(await target.expireUploads()).toBe(1);
    expect(await codeOf(() => target.commitBlob(idle.uploadId))).toBe(ErrorCode.NotFound);
    expect(target.stat()).toMatchObject({ usedBytes: empty, uploads: 0 });
    // Reads of a blob at any offset and bad ranges.
    await putBlob(target, "ok", data);
    expect(await codeOf(() => target.getBlob("ok", data.byteLength + 1, undefined))).toBe(
      ErrorCode.OutOfRange,
    );
    expect(await codeOf(() => target.getBlob("ok", 10, data.byteLength))).toBe(
      ErrorCode.OutOfRange,
    );
    expect((await target.getBlob("ok", data.byteLength, undefined)).data.byteLength).toBe(0);
  });

  test("an upload lost to a restart leaks nothing", async () => {
    const { store: first } = await open();
    const empty = first.stat().usedBytes;
    const { uploadId } = first.beginBlob("lost", 2 * mebibyte, 0);
    await first.putBlobPart(uploadId, 0, patterned(mebibyte, 1));
    const { store: second } = await open();
    expect(second.stat()).toMatchObject({ usedBytes: empty, blobs: 0, uploads: 0 });
  });

  test("scrub reports a damaged blob", async () => {
    const { store: target } = await open();
    const info = await putBlob(target, "damaged", patterned(5 * blockBytes, 12));
    await putBlob(target, "fine", patterned(5 * blockBytes, 13));
    await flipByte(
      join(directory.path, `device-${info.location.device}.dev`),
      info.location.dataOffset + 4 * blockBytes,
    );
    expect(await codeOf(() => target.getBlob("damaged", 4 * blockBytes, 1))).toBe(
      ErrorCode.ChecksumMismatch,
    );
    const report = await target.scrub();
    expect(report).toMatchObject({ blobsChecked: 2, chunksChecked: 0 });
    expect(report.damaged).toMatchObject([{ kind: "blob", id: "damaged", badBlocks: 1 }]);
  });

  test("what a scrub found damaged is counted by stat until the object is replaced", async () => {
    // Before, the damage went to the scrub's caller and the log only: stat, status and
    // the metrics said nothing of it afterwards.
    const { store: target } = await open();
    const { location } = await target.writeChunk(owner, "c-9", patterned(4 * blockBytes, 9));
    await target.writeChunk(owner, "c-10", patterned(4 * blockBytes, 10));
    expect(target.stat().damagedObjects).toBe(0);
    await flipByte(
      join(directory.path, `device-${location.device}.dev`),
      location.dataOffset + blockBytes,
    );
    await target.scrub();
    expect(target.stat().damagedObjects).toBe(1);
    // Listed for the head nodes, which count that copy as none (sled.chunk.damaged.v1).
    expect(target.damagedChunks(undefined, undefined)).toEqual({
      chunks: [{ chunkId: "c-9", owner, bytes: 4 * blockBytes }],
      truncated: false,
    });
    expect(target.damagedChunks("c-9", undefined).chunks).toEqual([]);
    // A second scrub still finds it: still counted once.
    await target.scrub();
    expect(target.stat().damagedObjects).toBe(1);
    // Repaired (dropped, then written again whole): no longer counted.
    await target.deleteChunk(owner, "c-9");
    expect(target.stat().damagedObjects).toBe(0);
    expect(target.damagedChunks(undefined, undefined).chunks).toEqual([]);
    await target.writeChunk(owner, "c-9", patterned(4 * blockBytes, 9));
    await target.scrub();
    expect(target.stat().damagedObjects).toBe(0);
  });
});

describe("blob upload expiry", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test("idle time counts on the monotonic clock: a wall clock step neither drops an upload in flight nor keeps an abandoned one", async () => {
    // The store's own clock (none injected), with the wall clock stepped under it: the
    // process's clocks are replaced before the store opens, so it sees them whichever
    // it reads.
    const realDateNow = Date.now.bind(Date);
    const realPerformanceNow = performance.now.bind(performance);
    let wallStepMs = 0;
    let monoStepMs = 0;
    vi.spyOn(Date, "now").mockImplementation(() => realDateNow() + wallStepMs);
    vi.spyOn(performance, "now").mockImplementation(() => realPerformanceNow() + monoStepMs);
    const { store: target } = await open();
    const empty = target.stat().usedBytes;
    const data = patterned(2 * blockBytes, 21);
    const active = target.beginBlob("active", data.byteLength, crc32c(data));
    await target.putBlobPart(active.uploadId, 0, data.subarray(0, blockBytes));
    // NTP steps the wall clock 10 minutes forward: the upload in flight is not idle.
    wallStepMs = 10 * 60_000;
    expect(await target.expireUploads()).toBe(0);
    await target.putBlobPart(active.uploadId, blockBytes, data.subarray(blockBytes));
    expect((await target.commitBlob(active.uploadId)).bytes).toBe(data.byteLength);
    // Then 10 minutes back, and an upload is abandoned: once the limit has passed on the
    // monotonic clock it is dropped, though the wall clock reads earlier than its start.
    target.beginBlob("abandoned", 100, 0);
    wallStepMs = -10 * 60_000;
    monoStepMs = blobUploadIdleMsMax + 1_000;
    expect(await target.expireUploads()).toBe(1);
    expect(target.stat().uploads).toBe(0);
    await target.deleteBlob("active");
    expect(target.stat().usedBytes).toBe(empty);
  });
});

describe("device files", () => {
  test("a restart never reformats: configuration changes and foreign files are refused", async () => {
    const { store: first } = await open({ deviceCount: 2, deviceBytes: 4 * mebibyte });
    await first.writeChunk(owner, "keep", patterned(4096, 1));
    await first.close();
    store = undefined;
    const refusals: [string, () => Promise<unknown>, RegExp][] = [
      [
        "other size",
        () =>
          openStoreOnFiles({ dataDir: directory.path, deviceBytes: 8 * mebibyte, deviceCount: 2 }),
        /changing the size/,
      ],
      [
        "fewer devices",
        () =>
          openStoreOnFiles({ dataDir: directory.path, deviceBytes: 4 * mebibyte, deviceCount: 1 }),
        /device count/,
      ],
      [
        "more devices",
        () =>
          openStoreOnFiles({ dataDir: directory.path, deviceBytes: 4 * mebibyte, deviceCount: 3 }),
        /missing|device count/,
      ],
      [
        "other sled",
        () =>
          openStoreOnFiles({
            dataDir: directory.path,
            deviceBytes: 4 * mebibyte,
            deviceCount: 2,
            sledId: "sled-2",
          }),
        /belongs to sled "sled-1"/,
      ],
    ];
    for (const [what, work, message] of refusals) {
      await expect(work(), what).rejects.toThrow(DeviceError);
      await expect(work(), what).rejects.toThrow(message);
    }
    // A device that is not a sled device at all.
    const path = join(directory.path, "device-1.dev");
    const original = await readFile(path);
    await writeFile(path, Buffer.alloc(original.byteLength, 0x41));
    await expect(
      openStoreOnFiles({ dataDir: directory.path, deviceBytes: 4 * mebibyte }),
    ).rejects.toThrow(/not a Ballast sled device/);
    await rm(path);
    await expect(
      openStoreOnFiles({ dataDir: directory.path, deviceBytes: 4 * mebibyte }),
    ).rejects.toThrow(/missing/);
    await writeFile(path, original);
    const { store: reopened } = await open({ deviceCount: 2, deviceBytes: 4 * mebibyte });
    expect(await reopened.readChunk(owner, "keep", 0, 4096)).toEqual(patterned(4096, 1));
  });

  test("one damaged superblock copy is repaired from the other; two are refused", async () => {
    await open({ deviceCount: 1, deviceBytes: 4 * mebibyte });
    await store?.close();
    store = undefined;
    const path = join(directory.path, "device-0.dev");
    await flipByte(path, 100);
    const { store: repaired } = await open({ deviceCount: 1, deviceBytes: 4 * mebibyte });
    await repaired.close();
    store = undefined;
    const image = await readFile(path);
    expect(image.subarray(0, 4096).equals(image.subarray(4096, 8192))).toBe(true);
    await flipByte(path, 100);
    await flipByte(path, 4096 + 100);
    await expect(
      openStoreOnFiles({ dataDir: directory.path, deviceCount: 1, deviceBytes: 4 * mebibyte }),
    ).rejects.toThrow(/both superblock copies are damaged/);
  });

  test("a crash between renaming formatted devices into place is finished on restart", async () => {
    const { store: first } = await open({ deviceCount: 2, deviceBytes: 4 * mebibyte });
    const { location } = await first.writeChunk(owner, "early", patterned(4096, 2));
    await first.close();
    store = undefined;
    // As if the first start had renamed one device into place and died before the other.
    const other = location.device === 0 ? 1 : 0;
    await rename(
      join(directory.path, `device-${other}.dev`),
      join(directory.path, `device-${other}.dev.tmp`),
    );
    const { store: reopened } = await open({ deviceCount: 2, deviceBytes: 4 * mebibyte });
    expect(reopened.stat().devices).toHaveLength(2);
    expect(await reopened.readChunk(owner, "early", 0, 4096)).toEqual(patterned(4096, 2));
  });

  test("a device file left half formatted is rebuilt", async () => {
    await writeFile(join(directory.path, "device-0.dev.tmp"), "half");
    const { store: target } = await open({ deviceCount: 1, deviceBytes: 4 * mebibyte });
    expect(target.stat().devices).toHaveLength(1);
  });
});
