// The fake cluster itself: the other tests trust it to refuse what a head node refuses,
// so those refusals are tested here.

import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { FakeClusterBus } from "./fake-cluster-bus.ts";

const subject = subjects.volume.build("v", 1);
const address = { volume: "v", partition: 1, epoch: 1 };

function fakeCluster(): FakeClusterBus {
  return new FakeClusterBus([{ name: "v", sizeBytes: 8192, partitionBytes: 4096 }]);
}

async function refusal(promise: Promise<unknown>): Promise<BallastError> {
  const error = await promise.then(
    () => expect.fail("the fake accepted the request"),
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(BallastError);
  return error as BallastError;
}

describe("FakeClusterBus", () => {
  it("describes its volumes and answers NotFound for others", async () => {
    const fake = fakeCluster();
    const state = await fake.request<"volume.describe.v1">(subjects.coordinator.build(), {
      type: "volume.describe.v1",
      name: "v",
    });
    expect(
      state.partitions.map((partition) => [partition.partitionStart, partition.epoch]),
    ).toEqual([
      [0, 1],
      [4096, 1],
    ]);
    const missing = fake.request<"volume.describe.v1">(subjects.coordinator.build(), {
      type: "volume.describe.v1",
      name: "w",
    });
    expect((await refusal(missing)).code).toBe(ErrorCode.NotFound);
  });

  it("refuses an old epoch after a failover, naming the current one and the new primary", async () => {
    const fake = fakeCluster();
    const { epoch, primary } = fake.failover("v", 1);

    const error = await refusal(
      fake.request<"volume.read.v1">(subject, {
        type: "volume.read.v1",
        ...address,
        reads: [{ offset: 4096, length: 512 }],
      }),
    );

    expect(error.code).toBe(ErrorCode.WrongEpoch);
    expect(error.details).toEqual({ epoch: 1, currentEpoch: epoch, primary });
    expect(epoch).toBe(2);
  });

  it("refuses ranges outside the addressed partition, unaligned ones, and empty requests", async () => {
    const fake = fakeCluster();
    const trim = (ranges: { offset: number; length: number }[]) =>
      fake.request<"volume.trim.v1">(subject, { type: "volume.trim.v1", ...address, ranges });

    expect((await refusal(trim([{ offset: 0, length: 512 }]))).code).toBe(ErrorCode.OutOfRange);
    expect((await refusal(trim([{ offset: 4100, length: 512 }]))).code).toBe(ErrorCode.Unaligned);
    expect((await refusal(trim([]))).code).toBe(ErrorCode.InvalidMessage);
  });

  it("refuses a request sent to another partition's subject", async () => {
    const fake = fakeCluster();
    const error = await refusal(
      fake.request<"volume.flush.v1">(subjects.volume.build("v", 0), {
        type: "volume.flush.v1",
        ...address,
      }),
    );
    expect(error.code).toBe(ErrorCode.InvalidArgument);
  });

  it("refuses a request for another incarnation of the volume with WrongEpoch, as a head node does", async () => {
    const fake = fakeCluster();
    fake.createVolume({ name: "v", id: "v-2", sizeBytes: 8192, partitionBytes: 4096 });

    const error = await refusal(
      fake.request<"volume.read.v1">(subject, {
        type: "volume.read.v1",
        ...address,
        volumeId: "v-1",
        reads: [{ offset: 4096, length: 512 }],
      }),
    );

    expect(error.code).toBe(ErrorCode.WrongEpoch);
    expect(error.details).toEqual({ epoch: 1, volumeId: "v-1", currentVolumeId: "v-2" });
  });

  it("holds a reply served before a change, and answers it as it was served", async () => {
    const fake = fakeCluster();
    fake.holdReplies((_, message) => message.type === "volume.describe.v1");
    const describing = fake.request<"volume.describe.v1">(subjects.coordinator.build(), {
      type: "volume.describe.v1",
      name: "v",
    });
    fake.resizeVolume("v", 16384);
    expect(fake.held).toBe(1);
    fake.resume();

    expect((await describing).sizeBytes).toBe(8192);
  });

  it("applies a write before losing its reply when told to", async () => {
    const fake = fakeCluster();
    fake.failNext("v", 1, 1, ErrorCode.Timeout, { afterApplying: true });
    const data = new Uint8Array(512).fill(7);

    const error = await refusal(
      fake.request<"volume.write.v1">(subject, {
        type: "volume.write.v1",
        ...address,
        writes: [{ offset: 4096, data }],
      }),
    );

    expect(error.code).toBe(ErrorCode.Timeout);
    expect(fake.contents("v").subarray(4096, 4608)).toEqual(data);
  });

  it("times a delayed request out at its deadline", async () => {
    const fake = fakeCluster();
    fake.requestDelayMs = 50;
    const error = await refusal(
      fake.request<"volume.flush.v1">(
        subject,
        { type: "volume.flush.v1", ...address },
        { deadlineMs: 5 },
      ),
    );
    expect(error.code).toBe(ErrorCode.Timeout);
  });
});
