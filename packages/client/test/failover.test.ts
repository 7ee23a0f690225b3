// Failover and failures from the wire: retryable codes are retried with a fresh
// description and the new epoch, describes are shared by concurrent failures, a
// description listing a partition twice and a coordinator failing over are ridden out,
// the retry budget ends in a Timeout-coded BallastError, non-retryable codes fail at
// once, and a batch that fails for good gives each caller the answer to its own entry.

import { BallastError, ErrorCode, isBallastError, subjects } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { BallastClient, InvalidVolumeStateError } from "../src/index.ts";
import { FakeClusterBus } from "./fake-cluster-bus.ts";
import {
  mebibyte,
  nextTurn,
  openTestVolume,
  patternBytes,
  VirtualClock,
  waitUntil,
} from "./helpers.ts";

const spec = { name: "failover", sizeBytes: 3 * mebibyte, partitionBytes: mebibyte };

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

describe("failover", () => {
  it("completes every operation through two epoch changes mid-stream, describing once per change", async () => {
    const { fake, volume } = await openTestVolume(spec);
    const model = new Uint8Array(spec.sizeBytes);
    const blockBytes = 16 * 1024;
    const blockCount = spec.sizeBytes / blockBytes;
    const outcomes: Promise<unknown>[] = [];
    let seed = 0;

    /** Issues one round: a write to each of 24 distinct blocks spread over all partitions. */
    const issueRound = (round: number): Promise<unknown> => {
      const writes: Promise<void>[] = [];
      for (let index = 0; index < 24; index += 1) {
        const block = (round * 7 + index * 8) % blockCount;
        seed += 1;
        const data = patternBytes(blockBytes, seed);
        model.set(data, block * blockBytes);
        writes.push(volume.write(block * blockBytes, data));
      }
      return Promise.all(writes);
    };

    for (let round = 0; round < 12; round += 1) {
      if (round === 4 || round === 8) {
        // Requests are on the wire when the epochs change: hold them, change, release.
        fake.pause();
        outcomes.push(issueRound(round));
        await waitUntil(() => fake.held >= 3, "requests to every partition are held");
        if (round === 4) fake.failover(spec.name, 0);
        else {
          // One change that moves two partitions at once (a head node died).
          fake.failover(spec.name, 1);
          fake.failover(spec.name, 2);
        }
        fake.resume();
      } else {
        outcomes.push(issueRound(round));
      }
      // Reads of the whole volume mid-stream, after this round's writes settle.
      await outcomes[outcomes.length - 1];
      const read = await volume.read(0, spec.sizeBytes);
      expect(Buffer.from(read).equals(Buffer.from(model))).toBe(true);
    }

    const settled = await Promise.allSettled(outcomes);
    expect(settled.filter((outcome) => outcome.status === "rejected")).toEqual([]);
    expect(Buffer.from(fake.contents(spec.name)).equals(Buffer.from(model))).toBe(true);
    // One describe to open, one per change.
    expect(fake.describeCount).toBe(3);
    // Every refused request was retried with the new epoch.
    const refusedThenRetried = fake
      .requestsOf("volume.write.v1")
      .filter((request) => request.message.epoch === 2);
    expect(refusedThenRetried.length).toBeGreaterThan(0);
    expect([0, 1, 2].map((partition) => fake.epochOf(spec.name, partition))).toEqual([2, 2, 2]);
  });

  it("shares one describe among many requests that fail together", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.pause();
    const writes: Promise<void>[] = [];
    // Four turns of writes to each partition: four requests per partition on the wire.
    for (let turn = 0; turn < 4; turn += 1) {
      for (let partition = 0; partition < 3; partition += 1) {
        writes.push(volume.write(partition * mebibyte + turn * 4096, patternBytes(4096, turn)));
      }
      await nextTurn();
    }
    await waitUntil(() => fake.held === 12, "twelve requests are held");
    for (let partition = 0; partition < 3; partition += 1) fake.failover(spec.name, partition);

    fake.resume();
    await Promise.all(writes);

    expect(fake.describeCount).toBe(2);
    expect(fake.requestsOf("volume.write.v1").length).toBe(24);
  });

  it("lets a late failure of an old epoch use the description that already arrived", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.pause((subject) => subject === subjects.volume.build(spec.name, 1));
    const late = volume.write(mebibyte, patternBytes(512, 1));
    await waitUntil(() => fake.held === 1, "the write to partition 1 is held");
    fake.failover(spec.name, 0);
    fake.failover(spec.name, 1);

    // Partition 0's write is refused, the volume is described, and the retry succeeds,
    // all while the write to partition 1 (with the old epoch) is still on its way.
    await volume.write(0, patternBytes(512, 2));
    expect(fake.describeCount).toBe(2);
    fake.resume();
    await late;

    // Its refusal is explained by the description that arrived since it was sent.
    expect(fake.describeCount).toBe(2);
    expect(
      fake
        .requestsOf("volume.write.v1")
        .map((request) => [request.message.partition, request.message.epoch]),
    ).toEqual([
      [1, 1],
      [0, 1],
      [0, 2],
      [1, 2],
    ]);
  });

  for (const code of [
    ErrorCode.WrongEpoch,
    ErrorCode.NotPrimary,
    ErrorCode.Unavailable,
    ErrorCode.Timeout,
    ErrorCode.ShuttingDown,
  ]) {
    it(`retries ${code} with a fresh description until the request succeeds`, async () => {
      const { fake, volume, clock } = await openTestVolume(spec);
      fake.failNext(spec.name, 1, 2, code);

      await volume.write(mebibyte, patternBytes(4096, 3));

      expect(fake.requestsOf("volume.write.v1").length).toBe(3);
      // Two failures, each followed by a describe and a jittered delay.
      expect(fake.describeCount).toBe(3);
      expect(clock.sleepsMs).toEqual([37.5, 75]);
      expect(Buffer.from(fake.contents(spec.name).subarray(mebibyte, mebibyte + 4096))).toEqual(
        Buffer.from(patternBytes(4096, 3)),
      );
    });
  }

  it("applies a write twice when its reply is lost, harmlessly", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.failNext(spec.name, 0, 1, ErrorCode.Timeout, { afterApplying: true });
    const data = patternBytes(8192, 4);

    await volume.write(4096, data);

    const writes = fake.requestsOf("volume.write.v1");
    expect(writes.length).toBe(2);
    expect(writes[1]!.message.writes).toEqual(writes[0]!.message.writes);
    expect(Buffer.from(await volume.read(4096, 8192)).equals(Buffer.from(data))).toBe(true);
  });

  it("keeps retrying while the coordinator itself is unavailable", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.failover(spec.name, 2);
    fake.failDescribes(3, ErrorCode.Unavailable);

    await volume.write(2 * mebibyte, patternBytes(512, 5));

    const epochs = fake.requestsOf("volume.write.v1").map((request) => request.message.epoch);
    expect(epochs.at(-1)).toBe(2);
    expect(epochs.slice(0, -1).every((epoch) => epoch === 1)).toBe(true);
    expect(fake.describeCount).toBe(1 + 4);
  });

  for (const order of ["stale-first", "stale-last"] as const) {
    it(`follows a description that lists the failed-over partition twice (${order})`, async () => {
      // The coordinator's catalogue listing returns a partition's key again when its
      // record changes during the listing: the old copy and the new one.
      const { fake, volume } = await openTestVolume(spec);
      fake.failover(spec.name, 1);
      fake.listTwiceInDescribes(spec.name, 1, order);
      const data = patternBytes(8192, 11);

      await volume.write(mebibyte - 4096, data);
      const read = await volume.read(mebibyte - 4096, 8192);

      expect(Buffer.from(read).equals(Buffer.from(data))).toBe(true);
      const epochs = fake
        .requestsOf("volume.write.v1")
        .filter((request) => request.message.partition === 1)
        .map((request) => request.message.epoch);
      expect(epochs).toEqual([1, 2]);
      expect(volume.partitionCount).toBe(3);
    });
  }

  it("opens a volume whose description lists a partition twice", async () => {
    const fake = new FakeClusterBus([spec]);
    fake.failover(spec.name, 2);
    fake.listTwiceInDescribes(spec.name, 2, "stale-last");
    const volume = await new BallastClient(fake, { clock: new VirtualClock() }).openVolume(
      spec.name,
    );

    await volume.write(2 * mebibyte, patternBytes(512, 12));

    expect(fake.requestsOf("volume.write.v1").map((request) => request.message.epoch)).toEqual([2]);
  });

  it("retries a describe the coordinator fails with Internal (its store failing under it)", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.failover(spec.name, 0);
    fake.failDescribes(2, ErrorCode.Internal);

    await volume.write(0, patternBytes(512, 13));

    expect(fake.describeCount).toBe(1 + 3);
    expect(fake.requestsOf("volume.write.v1").at(-1)?.message.epoch).toBe(2);
  });

  it("retries reads a primary refuses for lack of a read lease", async () => {
    const { fake, volume } = await openTestVolume(spec);
    const data = patternBytes(4096, 14);
    await volume.write(0, data);
    fake.failNext(spec.name, 0, 3, ErrorCode.Unavailable, { types: ["volume.read.v1"] });

    const read = await volume.read(0, 4096);

    expect(Buffer.from(read).equals(Buffer.from(data))).toBe(true);
    expect(fake.requestsOf("volume.read.v1").length).toBe(4);
  });

  it("rides out a frozen primary's whole replacement, as the gateway sees it", async () => {
    // Partition 1's primary freezes (SIGSTOP): requests wait out their 5 s deadline.
    // Its head node is declared dead and stops answering (no responders), the coordinator
    // itself changes leader meanwhile (describes find no responders, then one fails in
    // its store), and once the partition has failed over the listing shows it twice.
    // The new primary refuses reads until its lease arrives. Every operation succeeds.
    const { fake, volume, clock } = await openTestVolume(spec);
    const before = patternBytes(spec.sizeBytes, 15);
    await volume.write(0, before);

    fake.failNext(spec.name, 1, 3, ErrorCode.Timeout, { takesMs: 5000 });
    fake.failNext(spec.name, 1, 4, ErrorCode.Unavailable);
    fake.failNext(spec.name, 1, 2, ErrorCode.Unavailable, { types: ["volume.read.v1"] });
    fake.failDescribes(3, ErrorCode.Unavailable, { takesMs: 100 });
    fake.failDescribes(1, ErrorCode.Internal);
    fake.failover(spec.name, 1);
    fake.listTwiceInDescribes(spec.name, 1, "stale-last");
    const startedMs = clock.nowMs();

    const written = patternBytes(2 * mebibyte, 16);
    const operations = [
      volume.write(mebibyte / 2, written),
      volume.read(mebibyte + 4096, 4096),
      volume.trim(2 * mebibyte - 4096, 4096),
      volume.flush(),
    ];
    const outcomes = await Promise.allSettled(operations);

    expect(outcomes.filter((outcome) => outcome.status === "rejected")).toEqual([]);
    const model = new Uint8Array(before);
    model.set(written, mebibyte / 2);
    model.fill(0, 2 * mebibyte - 4096, 2 * mebibyte);
    expect(Buffer.from(fake.contents(spec.name)).equals(Buffer.from(model))).toBe(true);
    expect(Buffer.from(await volume.read(0, spec.sizeBytes)).equals(Buffer.from(model))).toBe(true);
    // A failover of more than 15 s, well inside the 60 s retry budget.
    expect(clock.nowMs() - startedMs).toBeGreaterThan(15_000);
    // Every planned failure was met on the way, and the write got through at the new epoch.
    expect(fake.failuresPlanned(spec.name, 1)).toBe(0);
    expect(fake.describeFailuresPlanned).toBe(0);
    const writes = fake.requestsOf("volume.write.v1").filter((request) => {
      return request.message.partition === 1;
    });
    expect(writes.at(-1)?.message.epoch).toBe(2);
    expect(fake.requestsOf("volume.flush.v1")).toEqual([]);
  });

  it("fails with NotFound when the volume was deleted during a failover", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.deleteVolume(spec.name);

    expect(volume.isDeleted).toBe(false);
    await expectBallastError(volume.write(0, patternBytes(512, 6)), ErrorCode.NotFound);
    expect(volume.isDeleted).toBe(true);

    // Unavailable (no responders), then a describe that says the volume is gone.
    expect(fake.requestsOf("volume.write.v1").length).toBe(1);
    expect(fake.describeCount).toBe(2);
  });

  it("fails with NotFound when the volume was deleted and created again while open", async () => {
    const fake = new FakeClusterBus([spec]);
    const volume = await new BallastClient(fake, { clock: new VirtualClock() }).openVolume(
      spec.name,
    );
    fake.createVolume({ ...spec, id: "failover-2" });
    fake.failNext(spec.name, 0, 1, ErrorCode.WrongEpoch);

    const error = await expectBallastError(volume.read(0, 512), ErrorCode.NotFound);

    expect(error.message).toContain("was deleted while open");
    expect(fake.requestsOf("volume.read.v1").length).toBe(1);
    expect(volume.isDeleted).toBe(true);
  });

  it("refuses a new description whose layout differs from the open volume's", async () => {
    const { fake, volume } = await openTestVolume(spec);
    // Another partition size: partition 0 no longer holds the same bytes. (A grow, which
    // only adds partitions after the last, is not a change of layout.)
    fake.createVolume({ name: spec.name, sizeBytes: 6 * mebibyte, partitionBytes: 2 * mebibyte });
    fake.failNext(spec.name, 0, 1, ErrorCode.NotPrimary);

    const error = await volume.read(0, 512).then(
      () => expect.fail("a read under a changed layout succeeded"),
      (error: unknown) => error,
    );

    expect(error).toBeInstanceOf(InvalidVolumeStateError);
    expect((error as Error).message).toContain(
      `partition 0 at [0, +${mebibyte}) became partition 0 at [0, +${2 * mebibyte})`,
    );
  });
});

describe("failures that retrying cannot fix", () => {
  for (const code of [
    ErrorCode.OutOfRange,
    ErrorCode.Unaligned,
    ErrorCode.InvalidArgument,
    ErrorCode.PayloadTooLarge,
    ErrorCode.NotFound,
    ErrorCode.ChecksumMismatch,
    ErrorCode.Internal,
  ]) {
    it(`fails at once on ${code} from the server, without retrying or describing`, async () => {
      const { fake, volume, clock } = await openTestVolume(spec);
      fake.failNext(spec.name, 0, 1, code);

      const error = await expectBallastError(volume.write(0, patternBytes(512, 7)), code);

      expect(error.message).toContain("fake failure");
      expect(fake.requestsOf("volume.write.v1").length).toBe(1);
      expect(fake.describeCount).toBe(1);
      expect(clock.sleepsMs).toEqual([]);
    });
  }

  it("ends the retry budget with a Timeout that names the attempts and the last error", async () => {
    const { fake, volume, clock } = await openTestVolume(spec);
    fake.failNext(spec.name, 1, Number.POSITIVE_INFINITY, ErrorCode.Unavailable);

    const error = await expectBallastError(
      volume.write(mebibyte, patternBytes(512, 8)),
      ErrorCode.Timeout,
    );

    const attempts = fake.requestsOf("volume.write.v1").length;
    expect(error.message).toMatch(
      /^could not write 1 range \(512 bytes\) in partition 1 of volume "failover" within the retry budget of 60000 ms: \d+ attempts failed, the last with Unavailable: /,
    );
    expect(error.details).toMatchObject({
      attempts,
      retryBudgetMs: 60_000,
      lastCode: "Unavailable",
    });
    expect(isBallastError(error.cause, ErrorCode.Unavailable)).toBe(true);
    // Delays grow from 50 ms and double, but after Unavailable stop at 250 ms (nobody
    // serves the partition: the retry must not land long after a new primary does), and
    // never add up past the budget.
    expect(clock.sleepsMs.slice(0, 6)).toEqual([37.5, 75, 150, 187.5, 187.5, 187.5]);
    expect(Math.max(...clock.sleepsMs)).toBe(187.5);
    const sleptMs = clock.sleepsMs.reduce((sum, delay) => sum + delay, 0);
    expect(sleptMs).toBeLessThanOrEqual(60_000);
    expect(sleptMs).toBeGreaterThan(60_000 - 187.5);
    expect(attempts).toBe(clock.sleepsMs.length + 1);
  });

  it("counts the budget from when the operation was issued", async () => {
    const { fake, volume, clock } = await openTestVolume(spec, { retryBudgetMs: 1000 });
    fake.failNext(spec.name, 0, Number.POSITIVE_INFINITY, ErrorCode.NotPrimary);

    await expectBallastError(volume.trim(0, 512), ErrorCode.Timeout);

    expect(clock.nowMs()).toBeLessThanOrEqual(1000);
    expect(clock.sleepsMs).toEqual([37.5, 75, 150, 300]);
  });

  it("gives each caller in a refused batch the answer to its own entry", async () => {
    const { fake, volume } = await openTestVolume(spec);
    const data = patternBytes(12 * 1024, 9);
    await volume.write(0, data);
    fake.refuseEntriesAt(spec.name, 4096, ErrorCode.ChecksumMismatch);

    const [first, second, third] = await Promise.allSettled([
      volume.read(0, 4096),
      volume.read(4096, 4096),
      volume.read(8192, 4096),
    ]);

    expect(first.status === "fulfilled" && Buffer.from(first.value)).toEqual(
      Buffer.from(data.subarray(0, 4096)),
    );
    expect(third.status === "fulfilled" && Buffer.from(third.value)).toEqual(
      Buffer.from(data.subarray(8192)),
    );
    expect(second.status).toBe("rejected");
    expect(
      isBallastError((second as PromiseRejectedResult).reason, ErrorCode.ChecksumMismatch),
    ).toBe(true);
    // One batch of three, refused as a whole, then one request per entry.
    expect(
      fake.requestsOf("volume.read.v1").map((request) => request.message.reads.length),
    ).toEqual([3, 1, 1, 1]);
  });

  it("settles an operation only after all its pieces settled, with the first failure", async () => {
    const { fake, volume } = await openTestVolume(spec);
    fake.failNext(spec.name, 0, 1, ErrorCode.Internal);
    fake.failNext(spec.name, 2, 1, ErrorCode.Unavailable);
    fake.requestDelayMs = 5;

    const error = await expectBallastError(
      volume.write(mebibyte - 512, patternBytes(mebibyte + 1024, 10)),
      ErrorCode.Internal,
    );

    expect(error.message).toContain("fake failure");
    // By the time the operation failed, the pieces for partitions 1 and 2 had landed,
    // partition 2's after one retry.
    expect(
      fake
        .requestsOf("volume.write.v1")
        .map((request) => request.message.partition)
        .sort(),
    ).toEqual([0, 1, 2, 2]);
    const landed = fake.contents(spec.name).subarray(2 * mebibyte, 2 * mebibyte + 512);
    expect(Buffer.from(landed)).toEqual(
      Buffer.from(patternBytes(mebibyte + 1024, 10).subarray(mebibyte + 512)),
    );
  });
});
