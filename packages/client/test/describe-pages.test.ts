// Reading a large volume's description page by page (wire.ts `describeVolumeWhole`),
// against a scripted fake coordinator (unit): pages are joined in order, the volume's
// fields are the last page's, and pages of two incarnations are refused.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { describeVolumeWhole, type RequestBus } from "../src/index.ts";

const partition = (index: number) => ({
  partition: index,
  partitionStart: index * 4096,
  partitionBytes: 4096,
  epoch: 1,
  primary: "head-1",
  secondaries: ["head-2"],
  inSync: ["head-1", "head-2"],
  learners: [],
  rebuilds: [],
  checkpoints: [],
});

/** A fake coordinator answering each describe with the next scripted page. */
function scripted(pages: object[]) {
  const asked: unknown[] = [];
  const bus = {
    request: async (_subject: string, message: unknown) => {
      asked.push(message);
      const page = pages.shift();
      if (page === undefined) throw new Error("no page scripted");
      return page;
    },
  } as unknown as RequestBus;
  return { bus, asked };
}

const base = { name: "v", replicaCount: 2, partitionBytes: 4096, createdAtMs: 1 };

describe("describe in pages", () => {
  test("joins the pages in order and takes the volume's fields from the last", async () => {
    const { bus, asked } = scripted([
      {
        ...base,
        id: "v-1",
        sizeBytes: 3 * 4096,
        partitionCount: 3,
        partitionsNext: 2,
        partitions: [partition(0), partition(1)],
      },
      // A grow between the pages: the last page knows the new size.
      {
        ...base,
        id: "v-1",
        sizeBytes: 4 * 4096,
        partitionCount: 4,
        partitions: [partition(2), partition(3)],
      },
    ]);
    const state = await describeVolumeWhole(bus, "v", { deadlineMs: 1000, stored: true });
    expect(asked).toEqual([
      { type: "volume.describe.v1", name: "v", stored: true },
      { type: "volume.describe.v1", name: "v", stored: true, partitionsFrom: 2 },
    ]);
    expect(state.partitions.map((entry) => entry.partition)).toEqual([0, 1, 2, 3]);
    expect(state.sizeBytes).toBe(4 * 4096);
    expect(state).not.toHaveProperty("partitionsNext");
  });

  test("pages of two incarnations are refused as Unavailable, to retry", async () => {
    const { bus } = scripted([
      {
        ...base,
        id: "v-1",
        sizeBytes: 2 * 4096,
        partitionCount: 2,
        partitionsNext: 1,
        partitions: [partition(0)],
      },
      { ...base, id: "v-2", sizeBytes: 2 * 4096, partitionCount: 2, partitions: [partition(1)] },
    ]);
    const failure = await describeVolumeWhole(bus, "v", { deadlineMs: 1000 }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(BallastError);
    expect((failure as BallastError).code).toBe(ErrorCode.Unavailable);
    expect((failure as BallastError).message).toContain("incarnation v-1 then v-2");
  });

  test("a volume within one page is one describe", async () => {
    const { bus, asked } = scripted([
      { ...base, id: "v-1", sizeBytes: 4096, partitionCount: 1, partitions: [partition(0)] },
    ]);
    const state = await describeVolumeWhole(bus, "v", { deadlineMs: 1000 });
    expect(asked).toHaveLength(1);
    expect(state.partitions).toHaveLength(1);
  });
});
