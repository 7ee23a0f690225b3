// How `ballast snapshot list` and `volume describe` print a snapshot's unique bytes: none
// reported yet, every partition reported, and only some of them.

import { describe, expect, test } from "vitest";
import { uniqueText } from "../src/snapshot.ts";

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
