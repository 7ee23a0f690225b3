// Batching: operations on one partition issued in the same event-loop turn, or while its
// queue is at its in-flight bound, leave as one request with many entries, within the
// wire's limits; each caller still gets its own result; the in-flight bounds hold.

import { ErrorCode, limits } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import {
  kibibyte,
  mebibyte,
  nextTurn,
  openTestVolume,
  patternBytes,
  requestDataBytes,
  waitUntil,
} from "./helpers.ts";

describe("coalescing", () => {
  it("merges 100 concurrent 4 KiB writes to one partition into a few requests, and all land", async () => {
    const { fake, volume } = await openTestVolume({
      name: "merge",
      sizeBytes: 4 * mebibyte,
      partitionBytes: 4 * mebibyte,
    });
    const blocks = Array.from({ length: 100 }, (_, index) => patternBytes(4 * kibibyte, index));

    await Promise.all(blocks.map((block, index) => volume.write(index * 4 * kibibyte, block)));

    const writes = fake.requestsOf("volume.write.v1");
    expect(writes.length).toBeLessThanOrEqual(4);
    const entriesPerRequest = writes.map((request) => request.message.writes.length);
    expect(entriesPerRequest.reduce((sum, count) => sum + count, 0)).toBe(100);
    for (const count of entriesPerRequest) expect(count).toBeGreaterThanOrEqual(25);
    const contents = fake.contents("merge");
    for (const [index, block] of blocks.entries()) {
      const at = index * 4 * kibibyte;
      expect(Buffer.from(contents.subarray(at, at + 4 * kibibyte)).equals(Buffer.from(block))).toBe(
        true,
      );
    }
  });

  it("merges concurrent reads and gives each caller its own bytes", async () => {
    const { fake, volume } = await openTestVolume({
      name: "reads",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    });
    const data = patternBytes(mebibyte, 1);
    await volume.write(0, data);

    const offsets = Array.from({ length: 64 }, (_, index) => (63 - index) * 8 * kibibyte);
    const reads = await Promise.all(offsets.map((offset) => volume.read(offset, 4 * kibibyte)));

    expect(fake.requestsOf("volume.read.v1").length).toBe(1);
    for (const [index, offset] of offsets.entries()) {
      const expected = data.subarray(offset, offset + 4 * kibibyte);
      expect(Buffer.from(reads[index]!).equals(Buffer.from(expected))).toBe(true);
    }
  });

  it("keeps issue order inside a batch, so the later of two overlapping writes wins", async () => {
    const { fake, volume } = await openTestVolume({
      name: "order",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    });
    const first = patternBytes(4096, 1);
    const second = patternBytes(4096, 2);

    await Promise.all([volume.write(0, first), volume.write(2048, second)]);

    expect(fake.requestsOf("volume.write.v1").length).toBe(1);
    const contents = fake.contents("order");
    expect(
      Buffer.from(contents.subarray(0, 2048)).equals(Buffer.from(first.subarray(0, 2048))),
    ).toBe(true);
    expect(Buffer.from(contents.subarray(2048, 6144)).equals(Buffer.from(second))).toBe(true);
  });

  it("merges operations issued in later turns while the partition's queue is full", async () => {
    const { fake, volume } = await openTestVolume(
      { name: "queue", sizeBytes: mebibyte, partitionBytes: mebibyte },
      { requestsInflightPerQueueMax: 2 },
    );
    fake.pause();
    const writes: Promise<void>[] = [];
    // Two writes in two turns fill the queue's two slots; eight more, each in its own
    // turn, must wait, and then leave together.
    for (let index = 0; index < 10; index += 1) {
      writes.push(volume.write(index * 4096, patternBytes(4096, index)));
      await nextTurn();
    }
    expect(fake.requestsOf("volume.write.v1").length).toBe(2);

    fake.resume();
    await Promise.all(writes);

    const entriesPerRequest = fake
      .requestsOf("volume.write.v1")
      .map((request) => request.message.writes.length);
    expect(entriesPerRequest).toEqual([1, 1, 8]);
  });

  it("sends a lone operation at the end of its turn, without waiting for company", async () => {
    const { fake, volume } = await openTestVolume({
      name: "lone",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    });
    fake.pause();

    const write = volume.write(0, patternBytes(512, 1));
    expect(fake.requestsOf("volume.write.v1").length).toBe(0);
    await nextTurn();
    expect(fake.requestsOf("volume.write.v1").length).toBe(1);

    fake.resume();
    await write;
  });

  it("merges operations issued by the promise callbacks of one turn, as the NBD gateway issues them", async () => {
    const { fake, volume } = await openTestVolume({
      name: "callbacks",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    });
    fake.pause();

    // Like the gateway's request loop: each request is issued after a few awaited
    // promises (parsing the next header and its data from what one socket read brought).
    const writes: Promise<void>[] = [];
    await (async () => {
      for (let index = 0; index < 6; index++) {
        await Promise.resolve();
        await Promise.resolve();
        writes.push(volume.write(index * 512, patternBytes(512, index)));
      }
    })();
    await nextTurn();
    expect(
      fake.requestsOf("volume.write.v1").map((request) => request.message.writes.length),
    ).toEqual([6]);

    fake.resume();
    await Promise.all(writes);
  });

  it("gathers a busy queue's entries of one loop iteration into one batch (QD32 batching)", async () => {
    const { fake, volume } = await openTestVolume(
      { name: "busy", sizeBytes: mebibyte, partitionBytes: mebibyte },
      { requestsInflightPerQueueMax: 4 },
    );
    fake.pause();
    const writes = [volume.write(0, patternBytes(512, 0))];
    await nextTurn();
    expect(fake.requestsOf("volume.write.v1").length).toBe(1);

    // The queue is busy (one request in flight) but has free slots. Writes issued by
    // separate callbacks of one check phase, as socket reads of one loop iteration are,
    // must leave together rather than one request each.
    await new Promise<void>((resolve) => {
      for (let index = 1; index <= 3; index++) {
        setImmediate(() => {
          writes.push(volume.write(index * 512, patternBytes(512, index)));
          if (index === 3) resolve();
        });
      }
    });
    await nextTurn();
    expect(
      fake.requestsOf("volume.write.v1").map((request) => request.message.writes.length),
    ).toEqual([1, 3]);

    fake.resume();
    await Promise.all(writes);
  });

  it("never puts more than the entry limit in one request", async () => {
    const { fake, volume } = await openTestVolume({
      name: "entries",
      sizeBytes: 2 * mebibyte,
      partitionBytes: 2 * mebibyte,
    });

    await Promise.all(
      Array.from({ length: 2500 }, (_, index) =>
        volume.write(index * 512, patternBytes(512, index)),
      ),
    );

    const counts = fake
      .requestsOf("volume.write.v1")
      .map((request) => request.message.writes.length);
    expect(counts).toEqual([limits.requestEntriesMax, limits.requestEntriesMax, 452]);
  });

  it("never puts more than the byte limit in one request", async () => {
    const { fake, volume } = await openTestVolume({
      name: "bytes",
      sizeBytes: 16 * mebibyte,
      partitionBytes: 16 * mebibyte,
    });
    const size = 768 * kibibyte;

    await Promise.all(
      Array.from({ length: 12 }, (_, index) =>
        volume.write(index * size, patternBytes(size, index)),
      ),
    );
    await Promise.all(Array.from({ length: 12 }, (_, index) => volume.read(index * size, size)));

    const requests = [...fake.requestsOf("volume.write.v1"), ...fake.requestsOf("volume.read.v1")];
    // Five 768 KiB entries fit in 4 MiB, a sixth does not: 12 entries take 3 requests each way.
    expect(requests.length).toBe(6);
    for (const request of requests) {
      expect(requestDataBytes(request.message)).toBeLessThanOrEqual(limits.requestDataBytesMax);
    }
  });

  it("keeps different partitions and kinds in different requests", async () => {
    const { fake, volume } = await openTestVolume({
      name: "kinds",
      sizeBytes: 2 * mebibyte,
      partitionBytes: mebibyte,
    });

    await Promise.all([
      volume.write(0, patternBytes(512, 1)),
      volume.write(mebibyte, patternBytes(512, 2)),
      volume.trim(4096, 512),
      volume.writeZeroes(8192, 512),
      volume.read(mebibyte + 4096, 512),
    ]);

    const summary = fake.sent
      .slice(1)
      .map(
        (request) =>
          `${request.message.type}@${"partition" in request.message ? request.message.partition : "?"}`,
      )
      .sort();
    expect(summary).toEqual([
      "volume.read.v1@1",
      "volume.trim.v1@0",
      "volume.write-zeroes.v1@0",
      "volume.write.v1@0",
      "volume.write.v1@1",
    ]);
  });
});

describe("in-flight bounds", () => {
  it("keeps at most the volume's bound of requests in flight, and sends the rest later", async () => {
    const { fake, volume } = await openTestVolume(
      { name: "bound", sizeBytes: 8 * mebibyte, partitionBytes: mebibyte },
      { requestsInflightPerVolumeMax: 3 },
    );
    fake.pause();

    const writes = Array.from({ length: 8 }, (_, partition) =>
      volume.write(partition * mebibyte, patternBytes(512, partition)),
    );
    await waitUntil(() => fake.held === 3, "three requests are held");
    await nextTurn();
    expect(fake.requestsOf("volume.write.v1").length).toBe(3);

    fake.resume();
    await Promise.all(writes);
    expect(fake.requestsOf("volume.write.v1").length).toBe(8);
  });

  it("counts a request waiting out a retry delay against the bound", async () => {
    const { fake, volume } = await openTestVolume(
      { name: "waiting", sizeBytes: 2 * mebibyte, partitionBytes: mebibyte },
      {
        requestsInflightPerVolumeMax: 1,
        // Real time, so that the retry delay is a real wait.
        clock: {
          nowMs: () => performance.now(),
          sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
        },
        retryDelayMsInitial: 100,
        retryDelayMsMax: 100,
      },
    );
    fake.failNext("waiting", 0, 1, ErrorCode.Unavailable);

    const first = volume.write(0, patternBytes(512, 1));
    await waitUntil(() => fake.requestsOf("volume.write.v1").length === 1, "the first write fails");
    const second = volume.write(mebibyte, patternBytes(512, 2));
    await new Promise((resolve) => setTimeout(resolve, 10));
    // The first write is waiting to retry and holds the only slot.
    expect(fake.requestsOf("volume.write.v1").length).toBe(1);

    await Promise.all([first, second]);
    expect(fake.requestsOf("volume.write.v1").map((request) => request.message.partition)).toEqual([
      0, 0, 1,
    ]);
  });
});
