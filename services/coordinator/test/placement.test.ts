import { ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import type { PartitionRecord } from "../src/decisions.ts";
import { loadOf, placePartitions } from "../src/placement.ts";

const heads = ["head-1", "head-2", "head-3"];
const mebibyte = 1024 * 1024;

describe("placement", () => {
  test("each partition's replicas are distinct head nodes, and replicas and primaries spread evenly", () => {
    const load = loadOf([], heads);
    const records = placePartitions("v", "v-1", 12 * mebibyte, mebibyte, 2, heads, load);
    expect(records).toHaveLength(12);
    for (const record of records) {
      const members = [record.primary, ...record.secondaries];
      expect(new Set(members).size).toBe(2);
      expect(record.epoch).toBe(1);
      expect(record.volumeId).toBe("v-1");
    }
    const final = loadOf(records, heads);
    expect([...final.values()].map((entry) => entry.replicas)).toEqual([8, 8, 8]);
    expect([...final.values()].map((entry) => entry.primaries)).toEqual([4, 4, 4]);
  });

  test("each member is recorded with the disk it joins on, where its heartbeats name one", () => {
    const disks = new Map([
      ["head-1", "1".repeat(32)],
      ["head-2", "2".repeat(32)],
    ]);
    const records = placePartitions(
      "v",
      "v-1",
      6 * mebibyte,
      mebibyte,
      2,
      heads,
      loadOf([], heads),
      disks,
    );
    for (const record of records) {
      const members = [record.primary, ...record.secondaries];
      const expected = Object.fromEntries(
        members.filter((node) => disks.has(node)).map((node) => [node, disks.get(node)]),
      );
      expect(record.disks ?? {}).toEqual(expected);
    }
    expect(records.some((record) => record.disks?.["head-1"] !== undefined)).toBe(true);
    // Without disk ids, records are as before.
    const plain = placePartitions("v", "v-1", mebibyte, mebibyte, 2, heads, loadOf([], heads));
    expect(plain[0]).not.toHaveProperty("disks");
  });

  test("the last partition is cut to the volume's size", () => {
    const records = placePartitions(
      "v",
      "v-1",
      2.5 * mebibyte,
      mebibyte,
      2,
      heads,
      loadOf([], heads),
    );
    expect(records.map((record) => [record.partitionStart, record.partitionBytes])).toEqual([
      [0, mebibyte],
      [mebibyte, mebibyte],
      [2 * mebibyte, mebibyte / 2],
    ]);
  });

  test("too few live head nodes for the replica count is refused, naming both numbers", () => {
    expect(() =>
      placePartitions("v", "v-1", mebibyte, mebibyte, 3, ["head-1", "head-2"], loadOf([], heads)),
    ).toThrow(
      expect.objectContaining({
        code: ErrorCode.Unavailable,
        message: expect.stringMatching(/needs 3 .* 2 are alive/),
      }),
    );
  });

  test("learners and joiners count as replicas of the node that holds them", () => {
    const record: PartitionRecord = {
      volume: "v",
      partition: 0,
      partitionStart: 0,
      partitionBytes: mebibyte,
      epoch: 3,
      primary: "head-1",
      secondaries: [],
      joining: ["head-2"],
      learners: ["head-3"],
    };
    const load = loadOf([record], heads);
    expect([...load.values()]).toEqual([
      { replicas: 1, primaries: 1 },
      { replicas: 1, primaries: 0 },
      { replicas: 1, primaries: 0 },
    ]);
  });
});
