// How `ballast snapshot list` and `volume describe` print a snapshot's unique bytes: none
// reported yet, every partition reported, and only some of them; of a large volume, whose
// answer names its first partitions only (and their count), and its first clones only;
// and how `volume rollback` counts the partitions rolled back.

import { limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { clonesText, uniqueText } from "../src/snapshot.ts";
import { rolledBackLine } from "../src/volume.ts";

const snapshot = {
  volume: "disk",
  name: "first",
  id: "s1",
  volumeId: "1-abc",
  createdAtMs: 0,
  partitions: [0, 1, 2].map((index) => ({ index, opNum: 5 })),
};

describe("a snapshot's unique bytes", () => {
  test("nothing reported yet reads as a dash", () => {
    expect(uniqueText(snapshot)).toBe("-");
  });

  test("every partition reported: the sum alone", () => {
    expect(
      uniqueText({ ...snapshot, uniqueBytes: 4 * 1024 * 1024, uniqueBytesPartitions: 3 }),
    ).toBe("4MiB");
  });

  test("some partitions reported: the sum says how many", () => {
    expect(uniqueText({ ...snapshot, uniqueBytes: 1536, uniqueBytesPartitions: 2 })).toBe(
      "1.5KiB (2 of 3 partitions)",
    );
  });
});

describe("a snapshot of a volume larger than an answer names", () => {
  const large = {
    ...snapshot,
    partitions: Array.from({ length: limits.snapshotPartitionsListedMax }, (_, index) => ({
      index,
      opNum: 5,
    })),
    partitionCount: limits.partitionsPerVolumeMax,
  };

  test("its unique bytes count reports against all its partitions, not those named", () => {
    // More partitions reported than the answer names, fewer than the volume has.
    const reported = limits.snapshotPartitionsListedMax + 1;
    expect(uniqueText({ ...large, uniqueBytes: 1024, uniqueBytesPartitions: reported })).toBe(
      `1KiB (${reported} of ${limits.partitionsPerVolumeMax} partitions)`,
    );
    expect(
      uniqueText({ ...large, uniqueBytes: 1024, uniqueBytesPartitions: large.partitionCount }),
    ).toBe("1KiB");
  });

  test("its clones say how many the answer left out", () => {
    expect(clonesText(snapshot)).toBe("-");
    expect(clonesText({ ...snapshot, clones: ["a", "b"], cloneCount: 2 })).toBe("a, b");
    expect(clonesText({ ...snapshot, clones: ["a", "b"], cloneCount: 300 })).toBe(
      "a, b and 298 more",
    );
    // From a coordinator before the count: the names are all of them.
    expect(clonesText({ ...snapshot, clones: ["a"] })).toBe("a");
  });

  test("a rollback counts every partition rolled back", () => {
    const rolledBack = { volume: "disk", snapshot: "first", partitions: large.partitions };
    expect(rolledBackLine({ ...rolledBack, partitionCount: large.partitionCount })).toBe(
      `rolled volume disk back to snapshot first (${limits.partitionsPerVolumeMax} partitions)\n`,
    );
    // A coordinator before the count named every partition.
    expect(rolledBackLine({ ...rolledBack, partitions: rolledBack.partitions.slice(0, 3) })).toBe(
      "rolled volume disk back to snapshot first (3 partitions)\n",
    );
  });
});
