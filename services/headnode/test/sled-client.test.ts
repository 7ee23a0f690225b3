// The head node's sled client against fake sleds that keep the real sled's rules: chunks
// are write-once (the same bytes again succeed, other bytes answer AlreadyExists, and a
// damaged copy answers ChecksumMismatch to reads and writes), and a missing chunk
// answers NotFound. Checks: writes count only copies with the primary's CRC32C, whole
// reads are checked against the recorded CRC32C, damaged and missing copies are
// repaired, and a repair that cannot complete leaves the damaged copy in place.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallastError, crc32c, decodeMessage, ErrorCode, subjects } from "@ballast/protocol";
import type { Bus, Logger } from "@ballast/runtime";
import { describe, expect, test, vi } from "vitest";
import {
  readManyReprobeMs,
  SledClient,
  type SledClientOptions,
  sledBusOf,
  sledReadHedgeMs,
  sledWriteHedgeMs,
} from "../src/sled-client.ts";
import { sledSlowAnswerMs, sledSlowHoldMs } from "../src/slow-sleds.ts";

const owner = { volume: "vol", partition: 0 };

interface StoredChunk {
  data: Uint8Array;
  damaged: boolean;
}

class FakeSled {
  readonly chunks = new Map<string, StoredChunk>();
  /** Writes answer this error instead of storing (a failing device). */
  writeError: BallastError | undefined;
  /** Stores these bytes instead of the ones sent (bytes changed on the way). */
  storeInstead: Uint8Array | undefined;
  largestFreeBytes = 1 << 30;
  /** Answers read-many as a sled that predates it does. */
  singleReadsOnly = false;
  /** A slow sled: every request waits for this before it is answered. */
  gate: Promise<void> | undefined;
  /** A slow sled: every request fails as one that missed its deadline. */
  missDeadline = false;
  /** Requests of this type are handled, but their answer is lost (a Timeout instead). */
  loseAnswersOf: string | undefined;
  /** Runs before each answer (a test's clock moves here, as a slow answer takes time). */
  beforeAnswer: (() => void) | undefined;
  readonly log: string[] = [];
  /** Committed blobs by key, and uploads begun by id (their key). */
  readonly blobs = new Map<string, number>();
  private readonly uploads = new Map<string, string>();

  // biome-ignore lint/suspicious/noExplicitAny: a fake of the sled's whole request surface
  handle(message: any): unknown {
    this.log.push(message.type);
    const stored = this.chunks.get(message.chunkId);
    switch (message.type) {
      case "sled.blob.begin.v1": {
        const uploadId = `upload-${this.uploads.size}`;
        this.uploads.set(uploadId, message.key);
        return { uploadId, partBytesMax: 1 << 20 };
      }
      case "sled.blob.part.v1":
        return { bytesReceived: message.data.byteLength };
      case "sled.blob.commit.v1":
        this.blobs.set(this.uploads.get(message.uploadId)!, 1);
        return {};
      case "sled.blob.delete.v1":
        if (!this.blobs.delete(message.key)) throw new BallastError(ErrorCode.NotFound, "");
        return { freedBytes: 1 };
      case "sled.chunk.write.v1": {
        if (this.writeError !== undefined) throw this.writeError;
        const data: Uint8Array = this.storeInstead ?? message.data.slice();
        if (stored !== undefined) {
          if (stored.damaged) throw new BallastError(ErrorCode.ChecksumMismatch, "damaged");
          if (!Buffer.from(stored.data).equals(Buffer.from(data)))
            throw new BallastError(ErrorCode.AlreadyExists, "other bytes");
          return result(stored.data, false);
        }
        this.chunks.set(message.chunkId, { data, damaged: false });
        return result(data, true);
      }
      case "sled.chunk.read.v1": {
        if (stored === undefined) throw new BallastError(ErrorCode.NotFound, "no such chunk");
        if (stored.damaged) throw new BallastError(ErrorCode.ChecksumMismatch, "bad block");
        return { data: stored.data.subarray(message.offset, message.offset + message.length) };
      }
      case "sled.chunk.read-many.v1": {
        if (this.singleReadsOnly) {
          throw new BallastError(ErrorCode.UnknownMessageType, "unknown message type");
        }
        const failed: { index: number; code: string; message: string }[] = [];
        const data = message.reads.map(
          (read: { chunkId: string; offset: number; length: number }, index: number) => {
            try {
              return (this.handle({ type: "sled.chunk.read.v1", ...read }) as { data: Uint8Array })
                .data;
            } catch (error) {
              const { code, message: text } = error as BallastError;
              failed.push({ index, code, message: text });
              return new Uint8Array(0);
            } finally {
              this.log.pop();
            }
          },
        );
        return failed.length === 0 ? { data } : { data, failed };
      }
      case "sled.chunk.stat.v1":
        if (stored === undefined) throw new BallastError(ErrorCode.NotFound, "no such chunk");
        return { bytes: stored.data.byteLength, checksum: crc32c(stored.data) };
      case "sled.chunk.delete.v1":
        if (stored === undefined) throw new BallastError(ErrorCode.NotFound, "no such chunk");
        this.chunks.delete(message.chunkId);
        return { freedBytes: stored.data.byteLength };
      case "sled.stat.v1":
        return { devices: [{ failed: false, largestFreeBytes: this.largestFreeBytes }] };
      default:
        throw new Error(`the fake sled does not answer ${message.type}`);
    }
  }
}

function result(data: Uint8Array, created: boolean) {
  return { bytes: data.byteLength, checksum: crc32c(data), created, location: {} };
}

function cluster(names: string[], options: SledClientOptions = {}) {
  const sleds = new Map(names.map((name) => [name, new FakeSled()]));
  const sent: { subject: string; message: unknown; encoded: readonly Uint8Array[] | undefined }[] =
    [];
  const bus = {
    request: async (
      subject: string,
      message: unknown,
      options?: { encoded?: readonly Uint8Array[] },
    ) => {
      sent.push({ subject, message, encoded: options?.encoded });
      const sled = sleds.get(subject.split(".").at(-1)!);
      if (sled === undefined) throw new BallastError(ErrorCode.Unavailable, "no responders");
      if (sled.gate !== undefined) await sled.gate;
      sled.beforeAnswer?.();
      if (sled.missDeadline) throw new BallastError(ErrorCode.Timeout, "request timed out");
      const answer = sled.handle(message);
      if ((message as { type: string }).type === sled.loseAnswersOf)
        throw new BallastError(ErrorCode.Timeout, "request timed out");
      return answer;
    },
  } as unknown as Bus;
  const logger = {
    info: vi.fn(),
    warn: vi.fn(),
    error: vi.fn(),
    debug: vi.fn(),
  } as unknown as Logger & { error: ReturnType<typeof vi.fn>; info: ReturnType<typeof vi.fn> };
  return { sleds, logger, sent, client: new SledClient(bus, logger, options) };
}

function pattern(bytes: number, seed: number): Uint8Array {
  return new Uint8Array(bytes).map((_, index) => (index * 31 + seed) & 0xff);
}

const good = pattern(8192, 1);
const checksum = crc32c(good);
const expectation = { bytes: good.byteLength, checksum };

function sled(sleds: Map<string, FakeSled>, name: string): FakeSled {
  return sleds.get(name)!;
}

/** Holds every answer of `fake` until the function returned is called (a slow sled). */
function hold(fake: FakeSled): () => void {
  let release: () => void = () => undefined;
  fake.gate = new Promise((resolve) => {
    release = resolve;
  });
  return () => release();
}

describe("chunk writes", () => {
  test("a sled that stores other bytes than the primary packed does not count as a copy", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"]);
    sled(sleds, "sled-1").storeInstead = pattern(8192, 2);
    const holders = await client.writeChunk(owner, "c0", good, [...sleds.keys()], 0, checksum);
    expect(holders).toEqual(["sled-2", "sled-3"]);
    // The wrong copy it made is dropped, not left as a copy of the chunk.
    expect(sled(sleds, "sled-1").chunks.has("c0")).toBe(false);
  });

  test("a chunk is encoded once for all its copies, and the encoding is the message", async () => {
    const { sleds, sent, client } = cluster(["sled-1", "sled-2", "sled-3"]);
    sled(sleds, "sled-1").writeError = new BallastError(ErrorCode.Unavailable, "down");
    await client.writeChunk(owner, "c0", good, [...sleds.keys()], 0, checksum);
    const writes = sent.filter(
      (request) => (request.message as { type: string }).type === "sled.chunk.write.v1",
    );
    // Two copies at first, one of them failed, then one more: three requests.
    expect(writes.length).toBe(3);
    const [first] = writes;
    expect(first!.encoded).toBeInstanceOf(Array);
    for (const write of writes) expect(write.encoded).toBe(first!.encoded);
    expect(decodeMessage(Buffer.concat(first!.encoded!))).toEqual({
      type: "sled.chunk.write.v1",
      owner,
      chunkId: "c0",
      data: Buffer.from(good),
    });
  });

  test("a write that fails because every failing sled is full rejects NoSpace, else Unavailable", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"]);
    const full = () => new BallastError(ErrorCode.NoSpace, "full");
    sled(sleds, "sled-1").writeError = full();
    sled(sleds, "sled-2").writeError = full();
    const write = (id: string) =>
      client.writeChunk(owner, id, good, [...sleds.keys()], 0, checksum);
    await expect(write("c0")).rejects.toMatchObject({ code: ErrorCode.NoSpace });
    sled(sleds, "sled-2").writeError = new BallastError(ErrorCode.Unavailable, "device failed");
    await expect(write("c1")).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });
});

describe("chunk reads", () => {
  test("reads asked for in one turn go to a sled as one read-many, each answered on its own", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2"]);
    const other = pattern(8192, 5);
    sled(sleds, "sled-1").chunks.set("c0", { data: good.slice(), damaged: false });
    sled(sleds, "sled-1").chunks.set("c1", { data: other.slice(), damaged: false });
    sled(sleds, "sled-2").chunks.set("c2", { data: other.slice(), damaged: false });
    const [a, b, c] = await Promise.all([
      client.readChunk(owner, "c0", ["sled-1", "sled-2"], 4096, 4096),
      client.readChunk(owner, "c1", ["sled-1", "sled-2"], 0, 512),
      // Missing on sled-1 (NotFound within the read-many): read from sled-2.
      client.readChunk(owner, "c2", ["sled-1", "sled-2"], 512, 1024),
    ]);
    expect(Buffer.from(a).equals(Buffer.from(good.subarray(4096)))).toBe(true);
    expect(Buffer.from(b).equals(Buffer.from(other.subarray(0, 512)))).toBe(true);
    expect(Buffer.from(c).equals(Buffer.from(other.subarray(512, 1536)))).toBe(true);
    expect(sled(sleds, "sled-1").log[0]).toBe("sled.chunk.read-many.v1");
    expect(sled(sleds, "sled-1").log.filter((type) => type.startsWith("sled.chunk.read"))).toEqual([
      "sled.chunk.read-many.v1",
    ]);
    expect(sled(sleds, "sled-2").log[0]).toBe("sled.chunk.read.v1");
  });

  test("a turn's reads go to a copy on a sled the turn already reads from: fewer read-manys", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"]);
    const other = pattern(8192, 6);
    for (const name of ["sled-1", "sled-2", "sled-3"]) {
      sled(sleds, name).chunks.set("c0", { data: good.slice(), damaged: false });
      sled(sleds, name).chunks.set("c1", { data: other.slice(), damaged: false });
    }
    const [a, b] = await Promise.all([
      client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 4096),
      // Recorded first on sled-3, but its other copy is on sled-1, which this turn reads.
      client.readChunk(owner, "c1", ["sled-3", "sled-1"], 4096, 4096),
    ]);
    expect(Buffer.from(a).equals(Buffer.from(good.subarray(0, 4096)))).toBe(true);
    expect(Buffer.from(b).equals(Buffer.from(other.subarray(4096)))).toBe(true);
    expect(sled(sleds, "sled-1").log).toEqual(["sled.chunk.read-many.v1"]);
    expect(sled(sleds, "sled-3").log).toEqual([]);
    // Alone in its turn, a read goes to the copy recorded first.
    await client.readChunk(owner, "c1", ["sled-3", "sled-1"], 0, 4096);
    expect(sled(sleds, "sled-3").log).toEqual(["sled.chunk.read.v1"]);
  });

  test("a sled that does not know read-many is asked one read at a time", async () => {
    const { sleds, client } = cluster(["sled-1"]);
    sled(sleds, "sled-1").singleReadsOnly = true;
    sled(sleds, "sled-1").chunks.set("c0", { data: good.slice(), damaged: false });
    const read = () =>
      Promise.all([0, 512, 1024].map((at) => client.readChunk(owner, "c0", ["sled-1"], at, 512)));
    for (const data of await read()) expect(data.byteLength).toBe(512);
    for (const data of await read()) expect(data.byteLength).toBe(512);
    expect(sled(sleds, "sled-1").log).toEqual([
      "sled.chunk.read-many.v1",
      ...Array(6).fill("sled.chunk.read.v1"),
    ]);
  });

  test("a sled that refused read-many is asked it again once the re-probe interval has passed", async () => {
    let nowMs = 0;
    const { sleds, client } = cluster(["sled-1"], { clock: () => nowMs });
    const old = sled(sleds, "sled-1");
    old.singleReadsOnly = true;
    old.chunks.set("c0", { data: good.slice(), damaged: false });
    const read = () =>
      Promise.all([0, 512].map((at) => client.readChunk(owner, "c0", ["sled-1"], at, 512)));
    await read();
    expect(old.log).toEqual(["sled.chunk.read-many.v1", ...Array(2).fill("sled.chunk.read.v1")]);
    // The sled is upgraded; until the interval has passed it is still asked single reads.
    old.singleReadsOnly = false;
    old.log.length = 0;
    nowMs = readManyReprobeMs - 1;
    await read();
    expect(old.log).toEqual(Array(2).fill("sled.chunk.read.v1"));
    old.log.length = 0;
    nowMs = readManyReprobeMs;
    for (const data of await read()) expect(data.byteLength).toBe(512);
    expect(old.log).toEqual(["sled.chunk.read-many.v1"]);
  });

  test("a sled still old at the re-probe refuses once and is asked single reads for another interval", async () => {
    let nowMs = 0;
    const { sleds, client } = cluster(["sled-1"], { clock: () => nowMs });
    const old = sled(sleds, "sled-1");
    old.singleReadsOnly = true;
    old.chunks.set("c0", { data: good.slice(), damaged: false });
    const read = () =>
      Promise.all([0, 512].map((at) => client.readChunk(owner, "c0", ["sled-1"], at, 512)));
    await read();
    nowMs = readManyReprobeMs + 10;
    old.log.length = 0;
    for (const data of await read()) expect(data.byteLength).toBe(512);
    expect(old.log).toEqual(["sled.chunk.read-many.v1", ...Array(2).fill("sled.chunk.read.v1")]);
    old.log.length = 0;
    nowMs = 2 * readManyReprobeMs;
    await read();
    expect(old.log).toEqual(Array(2).fill("sled.chunk.read.v1"));
  });

  test("a read-many that fails as a whole fails each of its reads over to the next copy", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2"]);
    sled(sleds, "sled-2").chunks.set("c0", { data: good.slice(), damaged: false });
    const reads = await Promise.all(
      [0, 512].map((at) => client.readChunk(owner, "c0", ["sled-0", "sled-2"], at, 512)),
    );
    expect(reads.map((data) => data.byteLength)).toEqual([512, 512]);
    expect(sled(sleds, "sled-2").log).toEqual(["sled.chunk.read-many.v1"]);
  });

  test("a whole read checks the recorded CRC32C: a wrong object under the right id is skipped and repaired", async () => {
    const { sleds, logger, client } = cluster(["sled-1", "sled-2"]);
    // Every block of sled-1's copy passes the sled's own checks; the whole is another chunk.
    sled(sleds, "sled-1").chunks.set("c0", { data: pattern(8192, 9), damaged: false });
    sled(sleds, "sled-2").chunks.set("c0", { data: good.slice(), damaged: false });
    const data = await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 8192, expectation);
    expect(Buffer.from(data).equals(Buffer.from(good))).toBe(true);
    await vi.waitFor(() => expect(logger.info).toHaveBeenCalled());
    expect(Buffer.from(sled(sleds, "sled-1").chunks.get("c0")!.data).equals(good)).toBe(true);
  });

  test("a copy the sled answers NotFound for is repaired like a damaged one", async () => {
    const { sleds, logger, client } = cluster(["sled-1", "sled-2"]);
    sled(sleds, "sled-2").chunks.set("c0", { data: good.slice(), damaged: false });
    const data = await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 4096, 4096, expectation);
    expect(Buffer.from(data).equals(Buffer.from(good.subarray(4096)))).toBe(true);
    await vi.waitFor(() => expect(logger.info).toHaveBeenCalled());
    expect(Buffer.from(sled(sleds, "sled-1").chunks.get("c0")!.data).equals(good)).toBe(true);
    // Nothing to drop: the write went straight to the sled that lacked the copy.
    expect(sled(sleds, "sled-1").log).not.toContain("sled.chunk.delete.v1");
  });

  test("a damaged copy is replaced: written first, dropped and rewritten only when the sled refuses", async () => {
    const { sleds, logger, client } = cluster(["sled-1", "sled-2"]);
    sled(sleds, "sled-1").chunks.set("c0", { data: good.slice(), damaged: true });
    sled(sleds, "sled-2").chunks.set("c0", { data: good.slice(), damaged: false });
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 512, expectation);
    await vi.waitFor(() => expect(logger.info).toHaveBeenCalled());
    expect(sled(sleds, "sled-1").chunks.get("c0")).toMatchObject({ damaged: false });
    expect(sled(sleds, "sled-1").log.filter((type) => type !== "sled.chunk.read.v1")).toEqual([
      "sled.chunk.write.v1",
      "sled.stat.v1",
      "sled.chunk.delete.v1",
      "sled.chunk.write.v1",
    ]);
  });

  test("a repair whose write fails leaves the damaged copy in place and reports it", async () => {
    const { sleds, logger, client } = cluster(["sled-1", "sled-2"]);
    sled(sleds, "sled-1").chunks.set("c0", { data: good.slice(), damaged: true });
    sled(sleds, "sled-1").writeError = new BallastError(ErrorCode.Unavailable, "device failed");
    sled(sleds, "sled-2").chunks.set("c0", { data: good.slice(), damaged: false });
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 512, expectation);
    await vi.waitFor(() => expect(logger.error).toHaveBeenCalled());
    expect(sled(sleds, "sled-1").chunks.get("c0")).toMatchObject({ damaged: true });
    expect(sled(sleds, "sled-1").log).not.toContain("sled.chunk.delete.v1");
  });

  test("a sled with no room for the new copy keeps its damaged one", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2"]);
    sled(sleds, "sled-1").chunks.set("c0", { data: good.slice(), damaged: true });
    sled(sleds, "sled-1").largestFreeBytes = 0;
    sled(sleds, "sled-2").chunks.set("c0", { data: good.slice(), damaged: false });
    const outcomes = await client.checkChunk(owner, "c0", ["sled-1", "sled-2"], expectation);
    expect(outcomes).toMatchObject([{ sled: "sled-1", found: "damaged", repaired: false }]);
    expect(sled(sleds, "sled-1").chunks.get("c0")).toMatchObject({ damaged: true });
  });

  test("a repair never copies from a source that fails the recorded CRC32C", async () => {
    const { sleds, logger, client } = cluster(["sled-1", "sled-2"]);
    sled(sleds, "sled-2").chunks.set("c0", { data: pattern(8192, 5), damaged: false });
    // A partial read is served from sled-2 (its blocks pass); the repair must refuse it.
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 512, expectation);
    await vi.waitFor(() => expect(logger.error).toHaveBeenCalled());
    expect(sled(sleds, "sled-1").chunks.has("c0")).toBe(false);
  });
});

describe("checking every copy", () => {
  test("finds a missing and a wrong copy and repairs both from the sound one", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"]);
    sled(sleds, "sled-1").chunks.set("c0", { data: pattern(8192, 4), damaged: false });
    sled(sleds, "sled-3").chunks.set("c0", { data: good.slice(), damaged: false });
    const outcomes = await client.checkChunk(
      owner,
      "c0",
      ["sled-1", "sled-2", "sled-3"],
      expectation,
    );
    expect(outcomes).toEqual([
      { sled: "sled-1", found: "damaged", repaired: true },
      { sled: "sled-2", found: "missing", repaired: true },
    ]);
    for (const name of ["sled-1", "sled-2"]) {
      expect(Buffer.from(sled(sleds, name).chunks.get("c0")!.data).equals(good)).toBe(true);
    }
    expect(await client.checkChunk(owner, "c0", ["sled-1", "sled-2"], expectation)).toEqual([]);
  });
});

describe("the chunk cache", () => {
  test("a whole read answered from the cache is checked against the recorded CRC32C", async () => {
    const { sleds, logger, client } = cluster(["sled-1", "sled-2"]);
    // sled-1 holds another object under the id: its blocks pass, partial reads cache them.
    sled(sleds, "sled-1").chunks.set("c0", { data: pattern(8192, 9), damaged: false });
    sled(sleds, "sled-2").chunks.set("c0", { data: good.slice(), damaged: false });
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 4096, expectation);
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 4096, 4096, expectation);
    expect(client.cache.stats().blocks).toBe(2);
    const data = await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 8192, expectation);
    expect(Buffer.from(data).equals(Buffer.from(good))).toBe(true);
    // The wrong blocks went, the sound ones came in, and the wrong copy was repaired.
    await vi.waitFor(() => expect(logger.info).toHaveBeenCalled());
    const again = await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 4096, expectation);
    expect(Buffer.from(again).equals(Buffer.from(good.subarray(0, 4096)))).toBe(true);
  });

  test("the scrub reads sleds, not the cache, and drops what it proves wrong from the cache", async () => {
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"]);
    await client.writeChunk(owner, "c0", good, ["sled-1", "sled-2", "sled-3"], 0, checksum);
    // What this client wrote is held whole (the chunk's own buffer).
    expect(client.cache.stats()).toMatchObject({ blocks: 0, wholeChunks: 1 });
    // A copy damaged since: the cache cannot tell, the scrub must.
    sled(sleds, "sled-1").chunks.get("c0")!.damaged = true;
    expect(await client.checkChunk(owner, "c0", ["sled-1", "sled-2"], expectation)).toEqual([
      { sled: "sled-1", found: "damaged", repaired: true },
    ]);
    // Wrong blocks cached from partial reads of a wrong object are dropped by the check
    // that finds it, so reads see the repaired bytes.
    sled(sleds, "sled-3").chunks.set("c1", { data: pattern(8192, 9), damaged: false });
    sled(sleds, "sled-2").chunks.set("c1", { data: good.slice(), damaged: false });
    await client.readChunk(owner, "c1", ["sled-3", "sled-2"], 0, 4096, expectation);
    expect(await client.checkChunk(owner, "c1", ["sled-3", "sled-2"], expectation)).toEqual([
      { sled: "sled-3", found: "damaged", repaired: true },
    ]);
    const read = await client.readChunk(owner, "c1", ["sled-3", "sled-2"], 0, 4096, expectation);
    expect(Buffer.from(read).equals(Buffer.from(good.subarray(0, 4096)))).toBe(true);
  });
});

test("a blob that does not reach its copies is removed from the sleds that took it", async () => {
  // "gone" answers nothing: one copy of two.
  const { sleds, client } = cluster(["a"]);
  const refused = await client
    .putBlob("checkpoints/v/0/n/9-1-1", pattern(100, 1), ["a", "gone"], 0)
    .catch((error: BallastError) => error);
  expect(refused).toBeInstanceOf(BallastError);
  expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
  expect([...sleds.get("a")!.blobs.keys()]).toEqual([]);
  // Both copies: kept.
  const two = cluster(["a", "b"]);
  await two.client.putBlob("checkpoints/v/0/n/9-1-1", pattern(100, 1), ["a", "b"], 0);
  expect([...two.sleds.get("a")!.blobs.keys()]).toEqual(["checkpoints/v/0/n/9-1-1"]);
});

test("a blob's copies are stored at once, a failed one on the next sled", async () => {
  const { sleds, sent, client } = cluster(["a", "b", "c"]);
  const asked = () => sent.map(({ subject }) => subject.split(".").at(-1));
  const releaseA = hold(sled(sleds, "a"));
  const releaseB = hold(sled(sleds, "b"));
  sled(sleds, "b").missDeadline = true;
  const stored = client.putBlob("checkpoints/v/0/n/9-1-1", pattern(100, 1), ["a", "b", "c"], 0);
  await new Promise((resolve) => setImmediate(resolve));
  // Both copies begun before either answered (one after the other before: b waited for a).
  expect(asked()).toEqual(["a", "b"]);
  releaseB();
  await new Promise((resolve) => setImmediate(resolve));
  // b missed its deadline: its lane goes on to c while a still waits.
  expect(sled(sleds, "c").blobs.has("checkpoints/v/0/n/9-1-1")).toBe(true);
  releaseA();
  // The holders in the order tried, whatever order they answered in.
  expect(await stored).toEqual(["a", "c"]);
});

test("a blob short of its copies is removed too from a sled whose commit went unanswered", async () => {
  // b commits the blob, but its answer is lost: not a holder, yet it holds a copy. Before
  // (review 32), only the holders' copies were removed, and b's waited for the orphan
  // sweep.
  const { sleds, client } = cluster(["a", "b"]);
  sled(sleds, "b").loseAnswersOf = "sled.blob.commit.v1";
  const refused = await client
    .putBlob("checkpoints/v/0/n/9-1-1", pattern(100, 1), ["a", "b"], 0)
    .catch((error: BallastError) => error);
  expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
  expect(sled(sleds, "b").log).toContain("sled.blob.commit.v1");
  expect([...sled(sleds, "a").blobs.keys()]).toEqual([]);
  expect([...sled(sleds, "b").blobs.keys()]).toEqual([]);
});

/**
 * A fake of SledClientOptions.schedule: timers that fire only when the test says, with
 * the delay each was set for.
 */
function fakeTimers() {
  const timers: { ms: number; run: () => void; cancelled: boolean }[] = [];
  return {
    schedule: (ms: number, run: () => void) => {
      const timer = { ms, run, cancelled: false };
      timers.push(timer);
      return () => {
        timer.cancelled = true;
      };
    },
    /** Fires every timer set and not cancelled; returns their delays. */
    fire(): number[] {
      const due = timers.splice(0).filter((timer) => !timer.cancelled);
      for (const timer of due) timer.run();
      return due.map((timer) => timer.ms);
    },
  };
}

/** Lets every settled promise run its callbacks (the fakes answer within a few turns). */
async function turns(): Promise<void> {
  for (let turn = 0; turn < 20; turn++) await Promise.resolve();
}

describe("slow sleds (alive, answering late)", () => {
  test("a read its first copy does not answer asks the next copy after the hedge delay", async () => {
    const timers = fakeTimers();
    const { sleds, client } = cluster(["sled-1", "sled-2"], { schedule: timers.schedule });
    for (const name of ["sled-1", "sled-2"])
      sled(sleds, name).chunks.set("c0", { data: good.slice(), damaged: false });
    const release = hold(sled(sleds, "sled-1"));
    let answered: Uint8Array | undefined;
    const read = client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 4096).then((data) => {
      answered = data;
    });
    await turns();
    expect(answered).toBeUndefined();
    expect(sled(sleds, "sled-2").log).toEqual([]);
    // sled-1 has not answered by the hedge delay: sled-2 is asked too, and answers.
    expect(timers.fire()).toEqual([sledReadHedgeMs]);
    await turns();
    expect(answered !== undefined && Buffer.from(answered).equals(good.subarray(0, 4096))).toBe(
      true,
    );
    expect(sled(sleds, "sled-2").log).toEqual(["sled.chunk.read.v1"]);
    expect(client.slowStats().hedgedReads).toBe(1);
    release();
    await read;
  });

  test("a read answered before the hedge delay asks no other copy", async () => {
    const timers = fakeTimers();
    const { sleds, client } = cluster(["sled-1", "sled-2"], { schedule: timers.schedule });
    for (const name of ["sled-1", "sled-2"])
      sled(sleds, name).chunks.set("c0", { data: good.slice(), damaged: false });
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 4096);
    expect(timers.fire()).toEqual([]);
    expect(sled(sleds, "sled-2").log).toEqual([]);
    expect(client.slowStats().hedgedReads).toBe(0);
  });

  test("a chunk write whose copy does not answer within the hedge delay writes the next sled too", async () => {
    const timers = fakeTimers();
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"], {
      schedule: timers.schedule,
    });
    const release = hold(sled(sleds, "sled-1"));
    let holders: string[] | undefined;
    const write = client.writeChunk(owner, "c0", good, [...sleds.keys()], 0, checksum);
    void write.then((held) => {
      holders = held;
    });
    await turns();
    // sled-2 holds its copy; sled-1 has not answered, and nothing else was asked yet.
    expect(holders).toBeUndefined();
    expect(sled(sleds, "sled-3").log).toEqual([]);
    // By the hedge delay: sled-3 is written too, and the write is done with two copies.
    expect(timers.fire()).toEqual([sledWriteHedgeMs]);
    await turns();
    expect(holders).toEqual(["sled-2", "sled-3"]);
    expect(sled(sleds, "sled-3").chunks.has("c0")).toBe(true);
    expect(client.slowStats().hedgedWrites).toBe(1);
    // Nothing more is hedged once it is done; sled-1's late copy is a spare.
    expect(timers.fire()).toEqual([]);
    release();
    await turns();
    expect(sled(sleds, "sled-1").chunks.has("c0")).toBe(true);
    expect(await write).toEqual(["sled-2", "sled-3"]);
  });

  test("a chunk write whose copies answer before the hedge delay writes no other sled", async () => {
    const timers = fakeTimers();
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"], {
      schedule: timers.schedule,
    });
    expect(await client.writeChunk(owner, "c0", good, [...sleds.keys()], 0, checksum)).toEqual([
      "sled-1",
      "sled-2",
    ]);
    expect(timers.fire()).toEqual([]);
    expect(sled(sleds, "sled-3").log).toEqual([]);
    expect(client.slowStats().hedgedWrites).toBe(0);
  });

  test("a copy that fails is replaced at once, without waiting for the other copy to answer", async () => {
    const timers = fakeTimers();
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"], {
      schedule: timers.schedule,
    });
    sled(sleds, "sled-1").writeError = new BallastError(ErrorCode.Unavailable, "down");
    const release = hold(sled(sleds, "sled-2"));
    const write = client.writeChunk(owner, "c0", good, [...sleds.keys()], 0, checksum);
    await turns();
    // Before session 24 sled-3 was asked only once sled-2 had answered too.
    expect(sled(sleds, "sled-3").chunks.has("c0")).toBe(true);
    release();
    expect(await write).toEqual(["sled-2", "sled-3"]);
    expect(client.slowStats().hedgedWrites).toBe(0);
  });

  test("a failed copy is not replaced while the copies under way can still make two", async () => {
    const timers = fakeTimers();
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3", "sled-4"], {
      schedule: timers.schedule,
    });
    const releaseFirst = hold(sled(sleds, "sled-1"));
    const releaseSecond = hold(sled(sleds, "sled-2"));
    const write = client.writeChunk(owner, "c0", good, [...sleds.keys()], 0, checksum);
    await turns();
    // Neither has answered by the hedge delay: sled-3 is written too, and holds a copy.
    expect(timers.fire()).toEqual([sledWriteHedgeMs]);
    await turns();
    expect(sled(sleds, "sled-3").chunks.has("c0")).toBe(true);
    // sled-2 fails: sled-1, still writing, and sled-3 can make two, so sled-4 is not asked.
    sled(sleds, "sled-2").writeError = new BallastError(ErrorCode.Unavailable, "down");
    releaseSecond();
    await turns();
    expect(sled(sleds, "sled-4").log).toEqual([]);
    releaseFirst();
    expect(await write).toEqual(["sled-1", "sled-3"]);
    expect(sled(sleds, "sled-4").log).toEqual([]);
  });

  test("a chunk write that can no longer reach two sleds fails at once, not once every copy answered", async () => {
    const timers = fakeTimers();
    const { sleds, client } = cluster(["sled-1", "sled-2", "sled-3"], {
      schedule: timers.schedule,
    });
    const release = hold(sled(sleds, "sled-1"));
    sled(sleds, "sled-2").writeError = new BallastError(ErrorCode.Unavailable, "down");
    sled(sleds, "sled-3").writeError = new BallastError(ErrorCode.Unavailable, "down");
    let failed: unknown;
    const write = client
      .writeChunk(owner, "c0", good, [...sleds.keys()], 0, checksum)
      .catch((error: unknown) => {
        failed = error;
      });
    await turns();
    // sled-1 could make one copy at most: the flush hears at once, not in 10 s.
    expect(failed).toBeInstanceOf(BallastError);
    expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
    expect((failed as BallastError).message).toMatch(
      /reached 0 of 2 sleds: sled-2: down; sled-3: down/,
    );
    expect(timers.fire()).toEqual([]);
    release();
    await write;
  });

  test("a sled that missed a deadline is asked last by reads, chunk writes and blob stores, until the hold ends", async () => {
    let nowMs = 0;
    const { sleds, sent, client } = cluster(["sled-1", "sled-2", "sled-3"], {
      clock: () => nowMs,
    });
    for (const name of ["sled-1", "sled-2", "sled-3"])
      sled(sleds, name).chunks.set("c0", { data: good.slice(), damaged: false });
    sled(sleds, "sled-1").missDeadline = true;
    // The first read learns it: sled-1 misses its deadline, sled-2 answers.
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 4096);
    expect(client.slowStats().slow).toEqual(["sled-1"]);
    // What the head node's node info tells operators of it (`ballast status`).
    nowMs = 1_000;
    expect(client.slowStats()).toEqual({
      slow: ["sled-1"],
      hedgedReads: 0,
      hedgedWrites: 0,
      holds: [
        {
          sled: "sled-1",
          slowForMs: 1_000,
          holdLeftMs: sledSlowHoldMs - 1_000,
          holdMs: sledSlowHoldMs,
        },
      ],
    });
    const asked = () => sent.splice(0).map(({ subject }) => subject.split(".").at(-1));
    asked();
    // A read of a chunk recorded first on sled-1 goes to its other copy first.
    await client.readChunk(owner, "c0", ["sled-1", "sled-3"], 4096, 4096);
    expect(asked()).toEqual(["sled-3"]);
    // A chunk write whose spread starts at sled-1 goes to the two others.
    const holders = await client.writeChunk(owner, "c1", good, ["sled-1", "sled-2", "sled-3"], 0);
    expect(holders).toEqual(["sled-2", "sled-3"]);
    expect(asked()).toEqual(["sled-2", "sled-3"]);
    // So does a checkpoint blob (in parts: every request to the same two sleds).
    sled(sleds, "sled-1").missDeadline = false;
    await client.putBlob("ckpt", good, ["sled-1", "sled-2", "sled-3"], 0);
    expect(new Set(asked())).toEqual(new Set(["sled-2", "sled-3"]));
    // After the hold it is asked in its place again.
    nowMs = sledSlowHoldMs;
    expect(client.slowStats().slow).toEqual([]);
    for (const name of ["sled-1", "sled-2"])
      sled(sleds, name).chunks.set("c2", { data: good.slice(), damaged: false });
    await client.readChunk(owner, "c2", ["sled-1", "sled-2"], 0, 512);
    expect(asked()).toEqual(["sled-1"]);
  });

  test("an answer slower than sledSlowAnswerMs marks the sled slow; a faster one does not", async () => {
    let nowMs = 0;
    const { sleds, client } = cluster(["sled-1", "sled-2"], { clock: () => nowMs });
    for (const name of ["sled-1", "sled-2"]) {
      sled(sleds, name).chunks.set("c0", { data: good.slice(), damaged: false });
      sled(sleds, name).chunks.set("c1", { data: good.slice(), damaged: false });
    }
    sled(sleds, "sled-1").beforeAnswer = () => {
      nowMs += sledSlowAnswerMs;
    };
    await client.readChunk(owner, "c0", ["sled-1", "sled-2"], 0, 4096);
    expect(client.slowStats().slow).toEqual([]);
    sled(sleds, "sled-1").beforeAnswer = () => {
      nowMs += sledSlowAnswerMs + 1;
    };
    await client.readChunk(owner, "c1", ["sled-1", "sled-2"], 0, 4096);
    expect(client.slowStats().slow).toEqual(["sled-1"]);
  });
});

describe("the test switch that cuts a node from the sleds (sledBusOf)", () => {
  const sledSubject = subjects.node.build("sled", "sled-1");
  const fakeBus = (sent: string[]) =>
    ({
      request: async (subject: string) => {
        sent.push(subject);
        return {};
      },
    }) as unknown as Bus;

  test("without BALLAST_TEST_FAULTS=1 the bus is the node's own", () => {
    const bus = fakeBus([]);
    expect(sledBusOf(bus, "head-1")).toBe(bus);
  });

  test("with it, the node sends a sled nothing while its file exists; other subjects and nodes pass", async () => {
    const directory = mkdtempSync(join(tmpdir(), "ballast-sleds-cut-"));
    vi.stubEnv("BALLAST_TEST_FAULTS", "1");
    vi.stubEnv("BALLAST_TEST_SLEDS_CUT_DIR", directory);
    vi.resetModules();
    try {
      const fresh = await import("../src/sled-client.ts");
      const sent: string[] = [];
      const bus = fakeBus(sent);
      const one = fresh.sledBusOf(bus, "head-1");
      const other = fresh.sledBusOf(bus, "head-2");
      const message = { type: "sled.stat.v1" } as never;
      await one.request(sledSubject, message);
      writeFileSync(join(directory, "head-1"), "");
      const refused = await one.request(sledSubject, message).catch((error) => error);
      expect(refused).toBeInstanceOf(Error);
      expect((refused as BallastError).code).toBe(ErrorCode.Timeout);
      await one.request(subjects.coordinator.build(), message);
      await other.request(sledSubject, message);
      rmSync(join(directory, "head-1"));
      await one.request(sledSubject, message);
      // The refused request was never sent.
      expect(sent).toEqual([sledSubject, subjects.coordinator.build(), sledSubject, sledSubject]);
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
