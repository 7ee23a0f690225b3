// The leader's sums of what primaries report of their snapshots' unique bytes (status.ts).

import { describe, expect, test } from "vitest";
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
