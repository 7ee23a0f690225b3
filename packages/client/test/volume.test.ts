// A volume as a block device against a well-behaved fake cluster: splitting across
// partitions and the per-request byte limit, reassembly of reads, trims and zeroes,
// flush (the barrier) and flush to sleds, opening, refusing bad input before anything
// is sent, and closing.

import {
  BallastError,
  decodeValue,
  ErrorCode,
  encodeLinkFrame,
  encodeValue,
  isAssembledByLink,
  isBallastError,
  LinkFrameDecoder,
  limits,
  subjects,
} from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import { describe, expect, it } from "vitest";
import { BallastClient, ClientOptionsError, constants, VolumeClosedError } from "../src/index.ts";
import type { RequestBus } from "../src/wire.ts";
import { FakeClusterBus } from "./fake-cluster-bus.ts";
import {
  mebibyte,
  nextTurn,
  openTestVolume,
  patternBytes,
  requestDataBytes,
  VirtualClock,
  waitUntil,
} from "./helpers.ts";

/** Asserts that `promise` rejects with a BallastError of `code` and returns the error. */
async function expectBallastError(promise: Promise<unknown>, code: ErrorCode) {
  const error = await promise.then(
    () => expect.fail(`expected a ${code} BallastError, but the operation succeeded`),
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(BallastError);
  expect((error as BallastError).code).toBe(code);
  return error as BallastError;
}

describe("splitting and reassembly", () => {
  it("writes 10 MiB across three 4 MiB partitions and reads it back byte-identical", async () => {
    const { fake, volume } = await openTestVolume({
      name: "split",
      sizeBytes: 12 * mebibyte,
      partitionBytes: 4 * mebibyte,
    });
    const data = patternBytes(10 * mebibyte, 1);

    await volume.write(mebibyte, data);
    const read = await volume.read(mebibyte, 10 * mebibyte);

    expect(Buffer.from(read).equals(Buffer.from(data))).toBe(true);
    const expected = new Uint8Array(12 * mebibyte);
    expected.set(data, mebibyte);
    expect(Buffer.from(fake.contents("split")).equals(Buffer.from(expected))).toBe(true);
    // One write per partition: 3 MiB, 4 MiB, 3 MiB, each to its own partition's subject.
    const writes = fake.requestsOf("volume.write.v1");
    expect(writes.map((request) => request.message.partition).sort()).toEqual([0, 1, 2]);
    for (const request of [...writes, ...fake.requestsOf("volume.read.v1")]) {
      const { partition } = request.message;
      expect(request.subject).toBe(subjects.volume.build("split", partition));
      const entries =
        "writes" in request.message
          ? request.message.writes.map((write) => ({
              offset: write.offset,
              length: write.data.byteLength,
            }))
          : request.message.reads;
      for (const entry of entries) {
        expect(entry.offset).toBeGreaterThanOrEqual(partition * 4 * mebibyte);
        expect(entry.offset + entry.length).toBeLessThanOrEqual((partition + 1) * 4 * mebibyte);
      }
    }
  });

  it("cuts I/O inside one partition into requests of at most 4 MiB", async () => {
    const { fake, volume } = await openTestVolume({
      name: "large",
      sizeBytes: 16 * mebibyte,
      partitionBytes: 16 * mebibyte,
    });
    const data = patternBytes(9 * mebibyte + 512, 2);

    await volume.write(512, data);
    const read = await volume.read(512, data.byteLength);

    expect(Buffer.from(read).equals(Buffer.from(data))).toBe(true);
    const writes = fake.requestsOf("volume.write.v1");
    const reads = fake.requestsOf("volume.read.v1");
    expect(writes.length).toBe(3);
    expect(reads.length).toBe(3);
    for (const request of [...writes, ...reads]) {
      expect(requestDataBytes(request.message)).toBeLessThanOrEqual(limits.requestDataBytesMax);
    }
  });

  it("honours a smaller per-request byte limit from the options", async () => {
    const { fake, volume } = await openTestVolume(
      { name: "small", sizeBytes: 64 * 1024, partitionBytes: 64 * 1024 },
      { requestDataBytesMax: 4096 },
    );
    const data = patternBytes(20 * 1024, 3);

    await volume.write(0, data);

    expect(Buffer.from(await volume.read(0, data.byteLength)).equals(Buffer.from(data))).toBe(true);
    const writes = fake.requestsOf("volume.write.v1");
    expect(writes.length).toBe(5);
    for (const request of writes)
      expect(requestDataBytes(request.message)).toBeLessThanOrEqual(4096);
  });

  it("reads trimmed and zeroed ranges as zeroes, across a partition boundary", async () => {
    const { fake, volume } = await openTestVolume({
      name: "zeroes",
      sizeBytes: 3 * mebibyte,
      partitionBytes: mebibyte,
    });
    const data = patternBytes(3 * mebibyte, 4);
    await volume.write(0, data);

    await volume.trim(mebibyte - 4096, 8192);
    await volume.writeZeroes(2 * mebibyte - 512, 1024);

    const expected = data.slice();
    expected.fill(0, mebibyte - 4096, mebibyte + 4096);
    expected.fill(0, 2 * mebibyte - 512, 2 * mebibyte + 512);
    expect(Buffer.from(await volume.read(0, 3 * mebibyte)).equals(Buffer.from(expected))).toBe(
      true,
    );
    // Each range was cut at the boundary into one range per partition.
    expect(fake.requestsOf("volume.trim.v1").map((request) => request.message.ranges)).toEqual(
      expect.arrayContaining([
        [{ offset: mebibyte - 4096, length: 4096 }],
        [{ offset: mebibyte, length: 4096 }],
      ]),
    );
    expect(fake.requestsOf("volume.write-zeroes.v1").length).toBe(2);
  });

  it("sends every request with the epoch of its partition and the client's deadline", async () => {
    const { fake, volume } = await openTestVolume(
      { name: "epochs", sizeBytes: 2 * mebibyte, partitionBytes: mebibyte },
      { requestDeadlineMs: 1234 },
    );
    fake.failover("epochs", 1);
    // The volume was described before the failover: partition 1's first request is
    // refused, the client re-describes, and the retry carries epoch 2.
    await volume.write(mebibyte, patternBytes(512, 5));

    const writes = fake.requestsOf("volume.write.v1");
    expect(writes.map((request) => request.message.epoch)).toEqual([1, 2]);
    expect(writes.every((request) => request.deadlineMs === 1234)).toBe(true);
  });
});

describe("reads of one piece", () => {
  it("answer their own bytes, copied out of the reply, when read together in one batch", async () => {
    const fake = new FakeClusterBus([
      { name: "shared", sizeBytes: 4 * mebibyte, partitionBytes: 4 * mebibyte },
    ]);
    // Replies whose buffers are views of one scratch buffer that is written over after
    // the turn the reply arrived in, as a transport may reuse its own buffers.
    const scratch = new Uint8Array(64 * 4096);
    const bus: RequestBus = {
      request: (async (subject: string, message: never, options: never) => {
        const reply = (await fake.request(subject, message, options)) as { data?: Uint8Array[] };
        if ((message as { type: string }).type !== "volume.read.v1") return reply;
        let at = 0;
        const data = (reply.data ?? []).map((bytes) => {
          const view = scratch.subarray(at, at + bytes.byteLength);
          view.set(bytes);
          at += bytes.byteLength;
          return view;
        });
        setImmediate(() => scratch.fill(0xee));
        return { ...reply, data };
      }) as RequestBus["request"],
    };
    const client = new BallastClient(bus, { clock: new VirtualClock(), random: () => 0.5 });
    const volume = await client.openVolume("shared");
    const data = patternBytes(mebibyte, 7);
    await volume.write(0, data);

    const offsets = [0, 4096, 65536, 8192, 1044480, 512 * 1024, 4096 + 512];
    const reads = await Promise.all(offsets.map((offset) => volume.read(offset, 4096)));

    const readRequests = fake.requestsOf("volume.read.v1");
    expect(readRequests).toHaveLength(1);
    expect(readRequests[0]!.message.reads).toHaveLength(offsets.length);
    await new Promise((resolve) => setImmediate(resolve));
    for (const [index, offset] of offsets.entries()) {
      const read = reads[index]!;
      expect(read).toBeInstanceOf(Uint8Array);
      expect(read.byteLength).toBe(4096);
      expect(Buffer.from(read).equals(Buffer.from(data.subarray(offset, offset + 4096)))).toBe(
        true,
      );
    }
    // Each answer is its own: changing one changes no other.
    reads[0]!.fill(0xaa);
    expect(Buffer.from(reads[1]!).equals(Buffer.from(data.subarray(4096, 8192)))).toBe(true);
    expect(Buffer.from(reads[3]!).equals(Buffer.from(data.subarray(8192, 12288)))).toBe(true);
  });

  it("answer views of a reply a link decoder assembled, which no one reuses, not copies", async () => {
    const fake = new FakeClusterBus([
      { name: "linked", sizeBytes: 4 * mebibyte, partitionBytes: 4 * mebibyte },
    ]);
    // Each read reply goes through the link's framing as on the wire: encoded, framed,
    // cut into socket-sized chunks and reassembled by a decoder, then decoded.
    const frames: Uint8Array[] = [];
    const bus: RequestBus = {
      request: (async (subject: string, message: never, options: never) => {
        const reply = await fake.request(subject, message, options);
        if ((message as { type: string }).type !== "volume.read.v1") return reply;
        const wire = Buffer.concat(
          encodeLinkFrame({ kind: "reply", id: 1, payload: encodeValue(reply) }),
        );
        const decoder = new LinkFrameDecoder();
        const decoded = [];
        for (let at = 0; at < wire.byteLength; at += 64 * 1024) {
          decoded.push(...decoder.push(wire.subarray(at, at + 64 * 1024)));
        }
        const frame = decoded[0]!;
        if (frame.kind !== "reply") throw new Error(`expected a reply, got ${frame.kind}`);
        frames.push(frame.payload);
        return decodeValue(frame.payload);
      }) as RequestBus["request"],
    };
    const client = new BallastClient(bus, { clock: new VirtualClock(), random: () => 0.5 });
    const volume = await client.openVolume("linked");
    const data = patternBytes(2 * mebibyte, 3);
    await volume.write(0, data);

    const [first, second] = await Promise.all([
      volume.read(0, mebibyte),
      volume.read(mebibyte, mebibyte),
    ]);

    expect(frames).toHaveLength(1);
    const frame = frames[0]!;
    expect(isAssembledByLink(frame)).toBe(true);
    for (const [read, offset] of [
      [first!, 0],
      [second!, mebibyte],
    ] as const) {
      expect(read.constructor).toBe(Uint8Array);
      expect(read.buffer).toBe(frame.buffer);
      expect(Buffer.from(read).equals(data.subarray(offset, offset + mebibyte))).toBe(true);
    }
    // Each answer is its own: changing one changes no other.
    first!.fill(0xaa);
    expect(Buffer.from(second!).equals(data.subarray(mebibyte))).toBe(true);
  });

  it("fail on a reply of the wrong size, with no bytes", async () => {
    const fake = new FakeClusterBus([
      { name: "short", sizeBytes: 4 * mebibyte, partitionBytes: 4 * mebibyte },
    ]);
    const bus: RequestBus = {
      request: (async (subject: string, message: never, options: never) => {
        const reply = (await fake.request(subject, message, options)) as { data?: Uint8Array[] };
        if ((message as { type: string }).type !== "volume.read.v1") return reply;
        return { ...reply, data: (reply.data ?? []).map((bytes) => bytes.subarray(512)) };
      }) as RequestBus["request"],
    };
    const client = new BallastClient(bus, { clock: new VirtualClock(), random: () => 0.5 });
    const volume = await client.openVolume("short");
    await expect(volume.read(0, 4096)).rejects.toThrow(/answered 3584 bytes/);
  });
});

describe("flush, the durability barrier", () => {
  const spec = { name: "barrier", sizeBytes: 4 * mebibyte, partitionBytes: mebibyte };

  it("sends nothing, and resolves only once the mutations issued before it have settled", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.pause((_, message) => message.type !== "volume.describe.v1");
    const order: string[] = [];
    const mutations = [
      volume.write(0, patternBytes(4096, 1)).then(() => order.push("write")),
      volume.trim(mebibyte, 4096).then(() => order.push("trim")),
      volume.writeZeroes(3 * mebibyte, 512).then(() => order.push("write-zeroes")),
    ];
    const flushed = volume.flush().then(() => order.push("flush"));
    await waitUntil(() => fake.held === 3, "the three mutations are held");
    for (let turn = 0; turn < 5; turn += 1) await nextTurn();
    expect(order).toEqual([]);

    fake.resume();
    await Promise.all([...mutations, flushed]);

    expect(order.at(-1)).toBe("flush");
    expect(fake.requestsOf("volume.flush.v1")).toEqual([]);
  });

  it("needs no flush on the head nodes: it succeeds while they cannot flush to sleds", async () => {
    const { fake, volume } = await openTestVolume(spec);
    await volume.write(0, patternBytes(4096, 2));
    await volume.write(2 * mebibyte, patternBytes(4096, 3));
    // As with fewer live sleds than a chunk needs copies: every flush to sleds fails.
    for (const partition of [0, 2]) {
      fake.failNext(spec.name, partition, Number.POSITIVE_INFINITY, ErrorCode.Internal, {
        types: ["volume.flush.v1"],
      });
    }

    await volume.flush();

    expect(fake.requestsOf("volume.flush.v1")).toEqual([]);
    await expectBallastError(volume.flushToSleds(), ErrorCode.Internal);
  });

  it("does not wait for mutations issued after it", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.pause((_, message) => message.type === "volume.write.v1" && message.partition === 1);
    const before = volume.write(0, patternBytes(512, 4));
    const flushed = volume.flush();
    const after = volume.write(mebibyte, patternBytes(512, 5));
    await waitUntil(() => fake.held === 1, "the later write is held");

    await flushed;
    await before;

    fake.resume();
    await after;
  });

  it("succeeds when a mutation it waited for failed: that failure is the mutation's own", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.failNext(spec.name, 0, 1, ErrorCode.ChecksumMismatch);
    const failed = volume.write(0, patternBytes(512, 6));
    const flushed = volume.flush();

    await expectBallastError(failed, ErrorCode.ChecksumMismatch);
    await expect(flushed).resolves.toBeUndefined();
  });
});

describe("flushToSleds", () => {
  it("flushes exactly the partitions written since their last flush", async () => {
    const { fake, volume } = await openTestVolume({
      name: "flush",
      sizeBytes: 4 * mebibyte,
      partitionBytes: mebibyte,
    });
    await volume.write(0, patternBytes(4096, 6));
    await volume.trim(2 * mebibyte, 4096);

    await volume.flushToSleds();

    const flushed = fake.requestsOf("volume.flush.v1").map((request) => request.message.partition);
    expect(flushed.sort()).toEqual([0, 2]);
    expect(fake.flushedOpNumOf("flush", 0)).toBe(1);
    expect(fake.flushedOpNumOf("flush", 2)).toBe(1);

    // Nothing written since: nothing to flush, nothing sent.
    await volume.flushToSleds();
    expect(fake.requestsOf("volume.flush.v1").length).toBe(2);

    await volume.writeZeroes(3 * mebibyte, 512);
    await volume.flushToSleds();
    expect(fake.requestsOf("volume.flush.v1").map((request) => request.message.partition)).toEqual([
      0, 2, 3,
    ]);
  });

  it("lets concurrent flushes of a partition share one request", async () => {
    const { fake, volume } = await openTestVolume({
      name: "flushes",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    });
    await volume.write(0, patternBytes(512, 7));

    await Promise.all([volume.flushToSleds(), volume.flushToSleds(), volume.flushToSleds()]);

    expect(fake.requestsOf("volume.flush.v1").length).toBe(1);
  });

  it("flushes again a write acknowledged after the previous flush was sent", async () => {
    const { fake, volume } = await openTestVolume({
      name: "late",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    });
    await volume.write(0, patternBytes(512, 8));
    fake.pause((_, message) => message.type === "volume.flush.v1");
    const firstFlush = volume.flushToSleds();
    await waitUntil(() => fake.held === 1, "the flush is held");
    // Acknowledged while the flush is on its way: the flush may or may not cover it.
    await volume.write(512, patternBytes(512, 9));
    fake.resume();
    await firstFlush;

    await volume.flushToSleds();

    expect(fake.requestsOf("volume.flush.v1").length).toBe(2);
    expect(fake.flushedOpNumOf("late", 0)).toBe(2);
  });
});

describe("opening a volume", () => {
  it("fails with the coordinator's NotFound for a volume that does not exist", async () => {
    const fake = new FakeClusterBus([]);
    const client = new BallastClient(fake);

    await expectBallastError(client.openVolume("missing"), ErrorCode.NotFound);
    expect(fake.describeCount).toBe(1);
  });

  it("refuses a name that cannot be a volume's without sending anything", async () => {
    const fake = new FakeClusterBus([]);
    const client = new BallastClient(fake);

    const error = await expectBallastError(
      client.openVolume("Bad.Name"),
      ErrorCode.InvalidArgument,
    );
    expect(error.message).toContain('"Bad.Name"');
    expect(fake.sent).toEqual([]);
  });

  it("reads every page of a volume with more partitions than one describe lists", async () => {
    const partitionBytes = 4096;
    const count = limits.describePartitionsMax + 3;
    const fake = new FakeClusterBus([
      { name: "v", sizeBytes: count * partitionBytes, partitionBytes },
    ]);
    const volume = await new BallastClient(fake).openVolume("v");

    expect(volume.partitionCount).toBe(count);
    expect(fake.requestsOf("volume.describe.v1").map((sent) => sent.message)).toEqual([
      { type: "volume.describe.v1", name: "v" },
      { type: "volume.describe.v1", name: "v", partitionsFrom: limits.describePartitionsMax },
    ]);
    // The last partition, known only from the second page, takes I/O.
    const data = patternBytes(partitionBytes, 3);
    await volume.write((count - 1) * partitionBytes, data);
    expect(await volume.read((count - 1) * partitionBytes, partitionBytes)).toEqual(data);
    expect(fake.requestsOf("volume.write.v1")[0]!.message).toMatchObject({ partition: count - 1 });
  });

  it("retries a coordinator that is briefly unavailable", async () => {
    const fake = new FakeClusterBus([{ name: "v", sizeBytes: mebibyte, partitionBytes: mebibyte }]);
    fake.failDescribes(2, ErrorCode.Unavailable);
    const client = new BallastClient(fake, { retryDelayMsInitial: 1, retryDelayMsMax: 2 });

    const volume = await client.openVolume("v");

    expect(volume.sizeBytes).toBe(mebibyte);
    expect(volume.partitionCount).toBe(1);
    expect(fake.describeCount).toBe(3);
  });

  it("refuses options outside their range, naming every problem", () => {
    const fake = new FakeClusterBus([]);
    const build = () =>
      new BallastClient(fake, {
        requestDataBytesMax: limits.requestDataBytesMax + 512,
        requestEntriesMax: 0,
        retryDelayMsInitial: 100,
        retryDelayMsMax: 10,
      });

    expect(build).toThrow(ClientOptionsError);
    try {
      build();
    } catch (error) {
      expect((error as ClientOptionsError).problems.length).toBe(3);
    }
  });

  it("refuses timing options the bus or the timers could not honour, at construction", () => {
    const fake = new FakeClusterBus([]);
    const problemsOf = (options: ConstructorParameters<typeof BallastClient>[1]) => {
      try {
        new BallastClient(fake, options);
      } catch (error) {
        expect(error).toBeInstanceOf(ClientOptionsError);
        return (error as ClientOptionsError).problems;
      }
      return [];
    };
    const deadlineMax = runtimeConstants.requestDeadlineMsMax;
    const timerMax = runtimeConstants.timerDelayMsMax;
    // The bus refuses a deadline past its maximum: every request would have failed.
    expect(problemsOf({ requestDeadlineMs: deadlineMax + 1 })).toEqual([
      `requestDeadlineMs must be from 1 to ${deadlineMax}, got ${deadlineMax + 1}`,
    ]);
    expect(problemsOf({ describeDeadlineMs: deadlineMax + 1 })).toEqual([
      `describeDeadlineMs must be from 1 to ${deadlineMax}, got ${deadlineMax + 1}`,
    ]);
    // A timer past 2^31 - 1 ms fires after 1 ms: a tight retry loop.
    expect(problemsOf({ retryDelayMsMax: timerMax + 1 })).toEqual([
      `retryDelayMsMax must be from ${constants.retryDelayMsInitial} to ${timerMax}, got ${timerMax + 1}`,
    ]);
    expect(problemsOf({ retryBudgetMs: 2 ** 40 })).toEqual([
      `retryBudgetMs must be from 0 to ${timerMax}, got ${2 ** 40}`,
    ]);
    // At the bounds, the options are taken.
    expect(
      problemsOf({
        requestDeadlineMs: deadlineMax,
        describeDeadlineMs: deadlineMax,
        retryDelayMsMax: timerMax,
        retryBudgetMs: timerMax,
      }),
    ).toEqual([]);
  });

  it("defaults to the named limits", async () => {
    const fake = new FakeClusterBus([{ name: "v", sizeBytes: mebibyte, partitionBytes: mebibyte }]);
    const volume = await new BallastClient(fake).openVolume("v");

    await volume.write(0, patternBytes(512, 10));

    expect(fake.requestsOf("volume.write.v1")[0]!.deadlineMs).toBe(constants.requestDeadlineMs);
    expect(fake.requestsOf("volume.describe.v1")[0]!.deadlineMs).toBe(constants.describeDeadlineMs);
  });
});

describe("bad input is refused before anything is sent", () => {
  const spec = { name: "input", sizeBytes: 2 * mebibyte, partitionBytes: mebibyte };

  const cases: {
    name: string;
    code: ErrorCode;
    run: (volume: Awaited<ReturnType<typeof openTestVolume>>["volume"]) => Promise<unknown>;
  }[] = [
    { name: "an unaligned read offset", code: ErrorCode.Unaligned, run: (v) => v.read(100, 512) },
    { name: "an unaligned read length", code: ErrorCode.Unaligned, run: (v) => v.read(0, 1000) },
    {
      name: "an unaligned write length",
      code: ErrorCode.Unaligned,
      run: (v) => v.write(0, new Uint8Array(513)),
    },
    { name: "an unaligned trim", code: ErrorCode.Unaligned, run: (v) => v.trim(512, 10) },
    {
      name: "an unaligned write-zeroes",
      code: ErrorCode.Unaligned,
      run: (v) => v.writeZeroes(1, 512),
    },
    {
      name: "a read past the end",
      code: ErrorCode.OutOfRange,
      run: (v) => v.read(2 * mebibyte - 512, 1024),
    },
    {
      name: "a write past the end",
      code: ErrorCode.OutOfRange,
      run: (v) => v.write(2 * mebibyte, new Uint8Array(512)),
    },
    { name: "a negative offset", code: ErrorCode.OutOfRange, run: (v) => v.trim(-512, 512) },
    { name: "a zero-length read", code: ErrorCode.InvalidArgument, run: (v) => v.read(0, 0) },
    {
      name: "a zero-length write",
      code: ErrorCode.InvalidArgument,
      run: (v) => v.write(0, new Uint8Array(0)),
    },
    {
      name: "a zero-length write-zeroes",
      code: ErrorCode.InvalidArgument,
      run: (v) => v.writeZeroes(512, 0),
    },
    { name: "a fractional offset", code: ErrorCode.InvalidArgument, run: (v) => v.read(0.5, 512) },
    {
      name: "write data that is not bytes",
      code: ErrorCode.InvalidArgument,
      run: (v) => v.write(0, "not bytes" as unknown as Uint8Array),
    },
  ];

  for (const testCase of cases) {
    it(`refuses ${testCase.name} with ${testCase.code}`, async () => {
      const { fake, volume } = await openTestVolume(spec);
      const sentBefore = fake.sent.length;

      const error = await expectBallastError(testCase.run(volume), testCase.code);

      expect(error.message).toContain('volume "input"');
      await nextTurn();
      // A range past the known end describes the volume again (it may have grown), and
      // sends nothing else.
      expect(
        fake.sent.slice(sentBefore).filter((sent) => sent.message.type !== "volume.describe.v1"),
      ).toEqual([]);
    });
  }

  it("says in the message what was refused and the values seen", async () => {
    const { volume } = await openTestVolume(spec);

    const error = await expectBallastError(volume.read(100, 512), ErrorCode.Unaligned);

    expect(error.message).toBe(
      'cannot read 512 bytes at offset 100 on volume "input": offset 100 and length 512 must both be multiples of the 512-byte sector',
    );
    expect(error.details).toMatchObject({ offset: 100, length: 512, sectorBytes: 512 });
  });
});

describe("resizing", () => {
  const spec = { name: "resized", sizeBytes: 1.5 * mebibyte, partitionBytes: mebibyte };

  it("after a grow, I/O past the old end works without reopening", async () => {
    const { fake, volume } = await openTestVolume(spec);
    const before = patternBytes(1.5 * mebibyte, 3);
    await volume.write(0, before);
    fake.resizeVolume(spec.name, 3 * mebibyte);

    const after = patternBytes(1.5 * mebibyte, 4);
    await volume.write(1.5 * mebibyte, after);

    expect(volume.sizeBytes).toBe(3 * mebibyte);
    // [0, 1 MiB), [1, 1.5 MiB) as created; [1.5, 2.5), [2.5, 3.5) added whole.
    expect(volume.partitionCount).toBe(4);
    // Buffer.equals: a deep equality over megabytes takes seconds.
    expect(Buffer.from(await volume.read(0, 1.5 * mebibyte)).equals(before)).toBe(true);
    expect(Buffer.from(await volume.read(1.5 * mebibyte, 1.5 * mebibyte)).equals(after)).toBe(true);
  });

  it("after a shrink, I/O past the new end is refused with OutOfRange", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.resizeVolume(spec.name, 0.5 * mebibyte);
    await volume.refreshSize();

    const error = await expectBallastError(volume.read(mebibyte, 512), ErrorCode.OutOfRange);

    expect(error.message).toContain(`outside the volume's ${0.5 * mebibyte} bytes`);
    expect(fake.requestsOf("volume.read.v1")).toEqual([]);
    expect(await volume.read(0, 512)).toEqual(new Uint8Array(512));
  });

  it("refreshSize sees a grow made while a describe read before it was in flight", async () => {
    const { fake, volume } = await openTestVolume(spec);
    // A failover makes a read describe the volume; the fake cluster reads its catalogue
    // for that describe at once, and holds the answer back.
    fake.failover(spec.name, 0);
    fake.holdReplies((_, message) => message.type === "volume.describe.v1");
    const reading = volume.read(0, 512);
    await waitUntil(() => fake.held === 1, "the failover's describe is in flight");
    fake.resizeVolume(spec.name, 3 * mebibyte);

    // Two callers that must see the grow, as two NBD connections opening at once.
    const refreshes = [volume.refreshSize(), volume.refreshSize()];
    fake.resume();
    await Promise.all(refreshes);

    expect(volume.sizeBytes).toBe(3 * mebibyte);
    // The open, the failover's describe, and one more shared by both callers.
    expect(fake.describeCount).toBe(3);
    expect(await reading).toEqual(new Uint8Array(512));
  });

  it("I/O past the old end works when a describe from before the grow is in flight", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.failover(spec.name, 0);
    fake.holdReplies((_, message) => message.type === "volume.describe.v1");
    const reading = volume.read(0, 512);
    await waitUntil(() => fake.held === 1, "the failover's describe is in flight");
    fake.resizeVolume(spec.name, 3 * mebibyte);

    const data = patternBytes(4096, 5);
    const writing = volume.write(2 * mebibyte, data);
    fake.resume();

    await writing;
    expect(Buffer.from(await volume.read(2 * mebibyte, 4096)).equals(data)).toBe(true);
    expect(await reading).toEqual(new Uint8Array(512));
  });
});

describe("closing", () => {
  const spec = { name: "closing", sizeBytes: mebibyte, partitionBytes: mebibyte };

  it("refuses every operation after close with VolumeClosedError, sending nothing", async () => {
    const { fake, volume } = await openTestVolume(spec);
    await volume.close();
    const sentBefore = fake.sent.length;

    const attempts = [
      volume.read(0, 512),
      volume.write(0, new Uint8Array(512)),
      volume.trim(0, 512),
      volume.writeZeroes(0, 512),
      volume.flush(),
      volume.flushToSleds(),
    ];

    for (const attempt of attempts) {
      const error = await attempt.then(
        () => expect.fail("an operation after close succeeded"),
        (error: unknown) => error,
      );
      expect(error).toBeInstanceOf(VolumeClosedError);
      expect((error as VolumeClosedError).volume).toBe("closing");
      expect(isBallastError(error)).toBe(false);
    }
    await nextTurn();
    expect(fake.sent.length).toBe(sentBefore);
    expect(volume.isClosed).toBe(true);
  });

  it("waits for operations in flight, which complete, and refuses new ones meanwhile", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.pause();
    const write = volume.write(0, patternBytes(4096, 11));
    await waitUntil(() => fake.held === 1, "the write is held");

    let closed = false;
    const closing = volume.close().then(() => {
      closed = true;
    });
    await nextTurn();
    expect(closed).toBe(false);
    await expect(volume.read(0, 512)).rejects.toBeInstanceOf(VolumeClosedError);

    fake.resume();
    await closing;

    await expect(write).resolves.toBeUndefined();
    expect(Buffer.from(fake.contents("closing").subarray(0, 4096))).toEqual(
      Buffer.from(patternBytes(4096, 11)),
    );
  });
});
