// The leader's sums of what primaries report of their snapshots' unique bytes (status.ts),
// and a listing's, over every partition of the volume (coordinator.ts).

import { limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { withSnapshotBytes } from "../src/coordinator.ts";
import { snapshotBytesOf } from "../src/status.ts";

type Report = NonNullable<Parameters<typeof snapshotBytesOf>[0][number]>;

function report(partition: number, snapshotBytes?: [string, number][]): Report {
  return {
    volume: "v",
    partition,
    epoch: 1,
    session: 1,
    commitOpNum: 10,
    tailCommitted: true,
    followers: [],
    chunkBytes: 100,
    liveBytes: 50,
    ...(snapshotBytes === undefined
      ? {}
      : {
          snapshotBytes: snapshotBytes.map(([snapshot, uniqueBytes]) => ({
            snapshot,
            uniqueBytes,
          })),
        }),
  } as Report;
}

describe("snapshot bytes", () => {
  test("are summed per snapshot over the partitions that report them, counting those", () => {
    const sums = snapshotBytesOf([
      report(0, [
        ["s1", 4096],
        ["s2", 0],
      ]),
      undefined,
      report(2, [["s1", 512]]),
      report(3),
    ]);
    expect(sums).toEqual(
      new Map([
        ["s1", { uniqueBytes: 4608, partitions: 2 }],
        ["s2", { uniqueBytes: 0, partitions: 1 }],
      ]),
    );
  });
});

describe("a listing's unique bytes", () => {
  test("cover every partition of a volume larger than the listing names", () => {
    // The listing names the first partitions only; the sum is over all of them.
    const count = limits.snapshotPartitionsListedMax + 7;
    const records = new Map(
      Array.from({ length: count }, (_, partition) => [
        `v.${partition}`,
        { value: { volume: "v", partition } },
      ]),
    );
    const tenure = {
      records,
      leases: {
        lastReportOf: (record: { partition: number }) => report(record.partition, [["s1", 2]]),
      },
    };
    const listed = {
      snapshots: [
        {
          volume: "v",
          name: "first",
          id: "s1",
          volumeId: "1-abc",
          createdAtMs: 0,
          partitions: Array.from({ length: limits.snapshotPartitionsListedMax }, (_, index) => ({
            index,
            opNum: 5,
          })),
          partitionCount: count,
        },
      ],
    };
    const [snapshot] = withSnapshotBytes(listed, "v", tenure as never).snapshots;
    expect(snapshot!.uniqueBytesPartitions).toBe(count);
    expect(snapshot!.uniqueBytes).toBe(2 * count);
  });
});
