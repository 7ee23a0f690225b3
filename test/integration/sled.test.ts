// The sled as a real process on real device files, through a real nats-server: chunks
// and blobs round trip, a flipped byte on disk answers ChecksumMismatch and is the one
// thing scrub (request and CLI) reports, a full sled answers NoSpace and recovers room
// on delete, and bad input of every request type gets a typed error while stored data
// stays readable. Devices are tiny (2 × 8 MiB) so that filling them is quick.

import { open } from "node:fs/promises";
import { join } from "node:path";
import {
  BallastError,
  crc32c,
  decodeValue,
  ErrorCode,
  type MessageOf,
  type RequestType,
  type ResultOf,
  sledLimits,
  subjects,
} from "@ballast/protocol";
import { pack } from "msgpackr";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { scrubCommand } from "../../apps/cli/src/scrub.ts";
import { removeStoreMarks, startTestCluster, type TestCluster } from "../support/cluster.ts";

const mebibyte = 1024 * 1024;
const owner = { volume: "vol-1", partition: 0 };
let cluster: TestCluster;
let inbox: string;

beforeAll(async () => {
  cluster = await startTestCluster({
    sleds: 1,
    env: { BALLAST_SLED_DEVICES: "2", BALLAST_SLED_DEVICE_BYTES: String(8 * mebibyte) },
  });
  inbox = subjects.node.build("sled", "sled-1");
  // The tests count the sled's objects and bytes: the coordinator's mark is not theirs.
  await removeStoreMarks(cluster);
});
afterAll(() => cluster?.stop());

function request<T extends RequestType>(message: MessageOf<T>): Promise<ResultOf<T>> {
  return cluster.bus.request<T>(inbox, message, { deadlineMs: 10_000 });
}

async function codeOf(work: () => Promise<unknown>): Promise<string> {
  try {
    await work();
  } catch (error) {
    if (error instanceof BallastError) return error.code;
    throw error;
  }
  throw new Error("expected an error reply, but the request succeeded");
}

/** Bytes that differ by seed and position. */
function patterned(bytes: number, seed: number): Uint8Array<ArrayBuffer> {
  const data = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at++) data[at] = (at * 31 + seed * 17 + (at >> 9)) & 0xff;
  return data;
}

async function putBlob(key: string, data: Uint8Array<ArrayBuffer>, partBytes = 4 * mebibyte) {
  const { uploadId } = await request({
    type: "sled.blob.begin.v1",
    key,
    bytes: data.byteLength,
    checksum: crc32c(data),
  });
  for (let offset = 0; offset < data.byteLength; offset += partBytes) {
    await request({
      type: "sled.blob.part.v1",
      uploadId,
      offset,
      data: data.subarray(offset, offset + partBytes),
    });
  }
  return request({ type: "sled.blob.commit.v1", uploadId });
}

/** Runs `work` with stdout captured (the CLI command prints there). */
async function captureStdout<T>(work: () => Promise<T>): Promise<{ result: T; output: string }> {
  const output: string[] = [];
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    output.push(String(chunk));
    return true;
  });
  try {
    return { result: await work(), output: output.join("") };
  } finally {
    write.mockRestore();
  }
}

async function flipByteOnDisk(device: number, offset: number): Promise<void> {
  const path = join(cluster.dataDir, "sled-1", `device-${device}.dev`);
  const handle = await open(path, "r+");
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0]! ^= 0xff;
    await handle.write(byte, 0, 1, offset);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

describe("sled over NATS", () => {
  test("a chunk round trips: write, stat, range read, delete", async () => {
    const data = patterned(64 * 1024, 1);
    const written = await request({
      type: "sled.chunk.write.v1",
      owner,
      chunkId: "rt-1",
      data,
    });
    expect(written).toMatchObject({
      bytes: data.byteLength,
      checksum: crc32c(data),
      created: true,
    });
    expect(written.location.sled).toBe("sled-1");
    const read = await request({
      type: "sled.chunk.read.v1",
      owner,
      chunkId: "rt-1",
      offset: 4096,
      length: 8192,
    });
    expect(Buffer.from(read.data).equals(Buffer.from(data.subarray(4096, 12288)))).toBe(true);
    const stat = await request({ type: "sled.chunk.stat.v1", owner, chunkId: "rt-1" });
    expect(stat.location).toEqual(written.location);
    const retry = await request({ type: "sled.chunk.write.v1", owner, chunkId: "rt-1", data });
    expect(retry).toEqual({ ...written, created: false });
    const deleted = await request({ type: "sled.chunk.delete.v1", owner, chunkId: "rt-1" });
    expect(deleted.freedBytes).toBe(written.location.extentBytes);
    expect(
      await codeOf(() =>
        request({ type: "sled.chunk.read.v1", owner, chunkId: "rt-1", offset: 0, length: 512 }),
      ),
    ).toBe(ErrorCode.NotFound);
  });

  test("a blob larger than a message is put in parts and read back by offset", async () => {
    const data = patterned(5 * mebibyte + 777, 2);
    const info = await putBlob("checkpoint/vol-1/0/1", data, 2 * mebibyte);
    expect(info).toMatchObject({ bytes: data.byteLength, checksum: crc32c(data) });
    const pieces: Buffer[] = [];
    for (let offset = 0; offset < data.byteLength; ) {
      const got = await request({ type: "sled.blob.get.v1", key: "checkpoint/vol-1/0/1", offset });
      pieces.push(Buffer.from(got.data));
      offset += got.data.byteLength;
    }
    expect(Buffer.concat(pieces).equals(Buffer.from(data))).toBe(true);
    const listed = await request({ type: "sled.blob.list.v1", prefix: "checkpoint/" });
    expect(listed.blobs.map((blob) => blob.key)).toEqual(["checkpoint/vol-1/0/1"]);
    await request({ type: "sled.blob.delete.v1", key: "checkpoint/vol-1/0/1" });
    expect((await request({ type: "sled.blob.list.v1" })).blobs).toEqual([]);
  });

  test("a flipped byte on disk answers ChecksumMismatch, and scrub reports exactly that chunk", async () => {
    const victim = patterned(32 * 1024, 3);
    const healthy = patterned(32 * 1024, 4);
    const { location } = await request({
      type: "sled.chunk.write.v1",
      owner,
      chunkId: "victim",
      data: victim,
    });
    await request({ type: "sled.chunk.write.v1", owner, chunkId: "healthy", data: healthy });
    await putBlob("healthy-blob", patterned(10_000, 5));
    const badOffset = location.dataOffset + 5 * 4096 + 123;
    await flipByteOnDisk(location.device, badOffset);

    const error = await request({
      type: "sled.chunk.read.v1",
      owner,
      chunkId: "victim",
      offset: 0,
      length: victim.byteLength,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BallastError);
    expect(error).toMatchObject({
      code: ErrorCode.ChecksumMismatch,
      details: {
        sled: "sled-1",
        device: location.device,
        offset: location.dataOffset + 5 * 4096,
        chunkId: "victim",
      },
    });
    // The per-block checksums let the good blocks be read on their own.
    const good = await request({
      type: "sled.chunk.read.v1",
      owner,
      chunkId: "victim",
      offset: 0,
      length: 5 * 4096,
    });
    expect(Buffer.from(good.data).equals(Buffer.from(victim.subarray(0, 5 * 4096)))).toBe(true);

    const report = await request({ type: "sled.scrub.v1" });
    expect(report).toMatchObject({ sled: "sled-1", chunksChecked: 2, blobsChecked: 1 });
    expect(report.damaged).toEqual([
      {
        kind: "chunk",
        id: "victim",
        owner,
        device: location.device,
        offset: location.dataOffset + 5 * 4096,
        badBlocks: 1,
        reason: "1 of 8 blocks fail their checksum",
      },
    ]);

    // The operator's view: `ballast scrub --json` says the same and exits 1.
    const scrubbed = await captureStdout(() =>
      scrubCommand(["--all", "--json", "--nats", cluster.cluster.natsUrl]),
    );
    expect(scrubbed.result).toBe(1);
    const summary = JSON.parse(scrubbed.output);
    expect(summary.damaged).toBe(1);
    expect(summary.sleds).toHaveLength(1);
    expect(summary.sleds[0].damaged).toMatchObject([{ id: "victim", badBlocks: 1 }]);

    for (const chunkId of ["victim", "healthy"]) {
      await request({ type: "sled.chunk.delete.v1", owner, chunkId });
    }
    await request({ type: "sled.blob.delete.v1", key: "healthy-blob" });
    expect((await request({ type: "sled.scrub.v1" })).damaged).toEqual([]);
    const clean = await captureStdout(() =>
      scrubCommand(["--sled", "sled-1", "--nats", cluster.cluster.natsUrl]),
    );
    expect(clean.result).toBe(0);
    expect(clean.output).toMatch(/^SLED +CHUNKS +BLOBS/);
    expect(clean.output).toContain("No damage found.");
    await expect(scrubCommand(["--sled", "sled-1", "--all"])).rejects.toMatchObject({
      exitCode: 2,
    });
    await expect(scrubCommand(["--sled", "Bad.Id"])).rejects.toMatchObject({ exitCode: 2 });
  });

  test("bad input of every request type answers a typed error and damages nothing", async () => {
    const kept = patterned(16 * 1024, 6);
    await request({ type: "sled.chunk.write.v1", owner, chunkId: "kept", data: kept });
    await putBlob("kept-blob", patterned(9000, 7));
    const { uploadId } = await request({
      type: "sled.blob.begin.v1",
      key: "partial",
      bytes: 3 * 4096,
      checksum: 0,
    });
    const wrongOwner = { volume: "vol-2", partition: 0 };
    const read = (fields: Partial<MessageOf<"sled.chunk.read.v1">>) => () =>
      request({
        type: "sled.chunk.read.v1",
        owner,
        chunkId: "kept",
        offset: 0,
        length: 512,
        ...fields,
      });
    const cases: [string, () => Promise<unknown>, ErrorCode][] = [
      // write
      [
        "write unaligned",
        () =>
          request({ type: "sled.chunk.write.v1", owner, chunkId: "x", data: new Uint8Array(1000) }),
        ErrorCode.Unaligned,
      ],
      [
        "write oversized",
        () =>
          request({
            type: "sled.chunk.write.v1",
            owner,
            chunkId: "x",
            data: new Uint8Array(sledLimits.chunkBytesMax + 512),
          }),
        ErrorCode.PayloadTooLarge,
      ],
      [
        "write existing id, other bytes",
        () =>
          request({
            type: "sled.chunk.write.v1",
            owner,
            chunkId: "kept",
            data: new Uint8Array(512),
          }),
        ErrorCode.AlreadyExists,
      ],
      [
        "write existing id, other owner",
        () =>
          request({ type: "sled.chunk.write.v1", owner: wrongOwner, chunkId: "kept", data: kept }),
        ErrorCode.AlreadyExists,
      ],
      // read
      ["read unaligned offset", read({ offset: 100 }), ErrorCode.Unaligned],
      ["read unaligned length", read({ length: 1000 }), ErrorCode.Unaligned],
      ["read out of range", read({ offset: 16 * 1024 - 512, length: 1024 }), ErrorCode.OutOfRange],
      [
        "read oversized",
        read({ length: sledLimits.readBytesMax + 512 }),
        ErrorCode.PayloadTooLarge,
      ],
      ["read unknown chunk", read({ chunkId: "nope" }), ErrorCode.NotFound],
      ["read wrong owner", read({ owner: wrongOwner }), ErrorCode.InvalidArgument],
      // delete and stat
      [
        "delete unknown chunk",
        () => request({ type: "sled.chunk.delete.v1", owner, chunkId: "nope" }),
        ErrorCode.NotFound,
      ],
      [
        "delete wrong owner",
        () => request({ type: "sled.chunk.delete.v1", owner: wrongOwner, chunkId: "kept" }),
        ErrorCode.InvalidArgument,
      ],
      [
        "stat unknown chunk",
        () => request({ type: "sled.chunk.stat.v1", owner, chunkId: "nope" }),
        ErrorCode.NotFound,
      ],
      [
        "stat wrong owner",
        () => request({ type: "sled.chunk.stat.v1", owner: wrongOwner, chunkId: "kept" }),
        ErrorCode.InvalidArgument,
      ],
      // blobs
      [
        "begin oversized",
        () =>
          request({
            type: "sled.blob.begin.v1",
            key: "big",
            bytes: sledLimits.blobBytesMax + 1,
            checksum: 0,
          }),
        ErrorCode.PayloadTooLarge,
      ],
      [
        "begin empty",
        () => request({ type: "sled.blob.begin.v1", key: "empty", bytes: 0, checksum: 0 }),
        ErrorCode.InvalidArgument,
      ],
      [
        "begin existing key",
        () => request({ type: "sled.blob.begin.v1", key: "kept-blob", bytes: 1, checksum: 0 }),
        ErrorCode.AlreadyExists,
      ],
      [
        "begin more than fits",
        () =>
          request({ type: "sled.blob.begin.v1", key: "huge", bytes: 64 * mebibyte, checksum: 0 }),
        ErrorCode.NoSpace,
      ],
      [
        "part unknown upload",
        () =>
          request({
            type: "sled.blob.part.v1",
            uploadId: "no-such-upload",
            offset: 0,
            data: new Uint8Array(4096),
          }),
        ErrorCode.NotFound,
      ],
      [
        "part out of order",
        () =>
          request({
            type: "sled.blob.part.v1",
            uploadId,
            offset: 4096,
            data: new Uint8Array(4096),
          }),
        ErrorCode.InvalidArgument,
      ],
      [
        "part unaligned",
        () =>
          request({ type: "sled.blob.part.v1", uploadId, offset: 0, data: new Uint8Array(1000) }),
        ErrorCode.Unaligned,
      ],
      [
        "part out of range",
        () =>
          request({
            type: "sled.blob.part.v1",
            uploadId,
            offset: 0,
            data: new Uint8Array(4 * 4096),
          }),
        ErrorCode.OutOfRange,
      ],
      [
        "commit incomplete",
        () => request({ type: "sled.blob.commit.v1", uploadId }),
        ErrorCode.InvalidArgument,
      ],
      [
        "commit unknown upload",
        () => request({ type: "sled.blob.commit.v1", uploadId: "no-such-upload" }),
        ErrorCode.NotFound,
      ],
      [
        "abort unknown upload",
        () => request({ type: "sled.blob.abort.v1", uploadId: "no-such-upload" }),
        ErrorCode.NotFound,
      ],
      [
        "get unknown blob",
        () => request({ type: "sled.blob.get.v1", key: "nope", offset: 0 }),
        ErrorCode.NotFound,
      ],
      [
        "get out of range",
        () => request({ type: "sled.blob.get.v1", key: "kept-blob", offset: 8000, length: 2000 }),
        ErrorCode.OutOfRange,
      ],
      [
        "get oversized",
        () =>
          request({
            type: "sled.blob.get.v1",
            key: "kept-blob",
            offset: 0,
            length: sledLimits.readBytesMax + 1,
          }),
        ErrorCode.PayloadTooLarge,
      ],
      [
        "delete unknown blob",
        () => request({ type: "sled.blob.delete.v1", key: "nope" }),
        ErrorCode.NotFound,
      ],
    ];
    for (const [what, work, code] of cases) {
      expect(await codeOf(work), what).toBe(code);
    }

    // Malformed messages of each type: fields of the wrong shape never reach the sled.
    const malformed: Record<string, unknown>[] = [
      { type: "sled.chunk.write.v1", owner, chunkId: "Bad_Id", data: new Uint8Array(512) },
      { type: "sled.chunk.write.v1", owner, chunkId: "x".repeat(65), data: new Uint8Array(512) },
      { type: "sled.chunk.write.v1", owner, chunkId: "x", data: "not bytes" },
      { type: "sled.chunk.read.v1", owner, chunkId: "kept", offset: -512, length: 512 },
      {
        type: "sled.chunk.read.v1",
        owner: { volume: "vol-1" },
        chunkId: "kept",
        offset: 0,
        length: 512,
      },
      { type: "sled.chunk.delete.v1", owner, chunkId: 7 },
      { type: "sled.chunk.stat.v1", chunkId: "kept" },
      { type: "sled.blob.begin.v1", key: "../escape", bytes: 10, checksum: 0 },
      { type: "sled.blob.begin.v1", key: "k", bytes: 10, checksum: 2 ** 33 },
      { type: "sled.blob.part.v1", uploadId, offset: 0.5, data: new Uint8Array(1) },
      { type: "sled.blob.commit.v1", uploadId: "UPPER" },
      { type: "sled.blob.abort.v1" },
      { type: "sled.blob.get.v1", key: "kept-blob", offset: "0" },
      { type: "sled.blob.delete.v1", key: "" },
      { type: "sled.blob.list.v1", limit: 0 },
    ];
    for (const message of malformed) {
      const reply = await cluster.bus.connection.request(inbox, pack(message), { timeout: 5000 });
      expect(decodeValue(reply.data), JSON.stringify(message.type)).toMatchObject({
        ok: false,
        error: { code: ErrorCode.InvalidMessage },
      });
    }

    // Nothing stored was damaged, and the sled is the same process.
    const again = await request({
      type: "sled.chunk.read.v1",
      owner,
      chunkId: "kept",
      offset: 0,
      length: kept.byteLength,
    });
    expect(Buffer.from(again.data).equals(Buffer.from(kept))).toBe(true);
    const blob = await request({ type: "sled.blob.get.v1", key: "kept-blob", offset: 0 });
    expect(Buffer.from(blob.data).equals(Buffer.from(patterned(9000, 7)))).toBe(true);
    expect((await request({ type: "sled.scrub.v1" })).damaged).toEqual([]);
    const info = await request({ type: "node.info.v1" });
    expect(info.pid).toBe(cluster.cluster.pid("sled-1"));

    await request({ type: "sled.blob.abort.v1", uploadId });
    await request({ type: "sled.chunk.delete.v1", owner, chunkId: "kept" });
    await request({ type: "sled.blob.delete.v1", key: "kept-blob" });
  });

  test("a full sled answers NoSpace and stays up; deleting makes room again", async () => {
    const empty = await request({ type: "sled.stat.v1" });
    expect(empty).toMatchObject({ usedBytes: 0, chunks: 0, blobs: 0, uploads: 0 });
    expect(empty.devices).toHaveLength(2);
    const written: string[] = [];
    let refusal: BallastError | undefined;
    for (let index = 0; index < 32 && refusal === undefined; index++) {
      try {
        await request({
          type: "sled.chunk.write.v1",
          owner,
          chunkId: `fill-${index}`,
          data: patterned(mebibyte, index),
        });
        written.push(`fill-${index}`);
      } catch (error) {
        if (!(error instanceof BallastError)) throw error;
        refusal = error;
      }
    }
    expect(refusal?.code).toBe(ErrorCode.NoSpace);
    // 8 MiB devices less their maps hold seven 1 MiB chunks (with headers) each.
    expect(written).toHaveLength(14);
    const full = await request({ type: "sled.stat.v1" });
    expect(full.chunks).toBe(14);
    for (const device of full.devices) {
      expect(device.largestFreeBytes).toBeLessThan(mebibyte + 4096);
    }
    expect((await request({ type: "node.info.v1" })).pid).toBe(cluster.cluster.pid("sled-1"));

    await request({ type: "sled.chunk.delete.v1", owner, chunkId: "fill-3" });
    await request({
      type: "sled.chunk.write.v1",
      owner,
      chunkId: "after-delete",
      data: patterned(mebibyte, 99),
    });
    for (const chunkId of written.filter((id) => id !== "fill-3")) {
      const read = await request({
        type: "sled.chunk.read.v1",
        owner,
        chunkId,
        offset: 0,
        length: 4096,
      });
      expect(
        Buffer.from(read.data).equals(
          Buffer.from(patterned(mebibyte, Number(chunkId.slice(5))).subarray(0, 4096)),
        ),
      ).toBe(true);
      await request({ type: "sled.chunk.delete.v1", owner, chunkId });
    }
    await request({ type: "sled.chunk.delete.v1", owner, chunkId: "after-delete" });
    expect(await request({ type: "sled.stat.v1" })).toMatchObject({ usedBytes: 0, chunks: 0 });
  });
});
