import { ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { decideFailover, loadOf, type PartitionRecord, placePartitions } from "../src/placement.ts";

const heads = ["head-1", "head-2", "head-3"];
const mebibyte = 1024 * 1024;

describe("placement", () => {
  test("each partition's replicas are distinct head nodes, and replicas and primaries spread evenly", () => {
    const load = loadOf([], heads);
    const records = placePartitions("v", 12 * mebibyte, mebibyte, 2, heads, load);
    expect(records).toHaveLength(12);
    for (const record of records) {
      const members = [record.primary, ...record.secondaries];
      expect(new Set(members).size).toBe(2);
      expect(record.epoch).toBe(1);
    }
    const final = loadOf(records, heads);
    expect([...final.values()].map((entry) => entry.replicas)).toEqual([8, 8, 8]);
    expect([...final.values()].map((entry) => entry.primaries)).toEqual([4, 4, 4]);
  });

  test("the last partition is cut to the volume's size", () => {
    const records = placePartitions("v", 2.5 * mebibyte, mebibyte, 2, heads, loadOf([], heads));
    expect(records.map((record) => [record.partitionStart, record.partitionBytes])).toEqual([
      [0, mebibyte],
      [mebibyte, mebibyte],
      [2 * mebibyte, mebibyte / 2],
    ]);
  });

  test("too few live head nodes for the replica count is refused, naming both numbers", () => {
    expect(() =>
      placePartitions("v", mebibyte, mebibyte, 3, ["head-1", "head-2"], loadOf([], heads)),
    ).toThrow(
      expect.objectContaining({
        code: ErrorCode.Unavailable,
        message: expect.stringMatching(/needs 3 .* 2 are alive/),
      }),
    );
  });
});

describe("failover", () => {
  const record: PartitionRecord = {
    volume: "v",
    partition: 0,
    partitionStart: 0,
    partitionBytes: mebibyte,
    epoch: 4,
    primary: "head-1",
    secondaries: ["head-2", "head-3"],
  };

  test("all members alive: keep", () => {
    expect(decideFailover(record, new Set(heads), loadOf([record], heads))).toEqual({
      kind: "keep",
    });
  });

  test("a dead primary is replaced by a live secondary, in a new epoch", () => {
    const decision = decideFailover(record, new Set(["head-2", "head-3"]), loadOf([record], heads));
    expect(decision).toMatchObject({
      kind: "change",
      record: { epoch: 5, primary: "head-2", secondaries: ["head-3"] },
    });
  });

  test("the promoted secondary is the one with the fewest primaries", () => {
    const other: PartitionRecord = {
      ...record,
      partition: 1,
      primary: "head-2",
      secondaries: ["head-1"],
    };
    const decision = decideFailover(
      record,
      new Set(["head-2", "head-3"]),
      loadOf([record, other], heads),
    );
    expect(decision).toMatchObject({
      kind: "change",
      record: { primary: "head-3", secondaries: ["head-2"] },
    });
  });

  test("a dead secondary is dropped: degraded, new epoch, same primary", () => {
    const decision = decideFailover(record, new Set(["head-1", "head-2"]), loadOf([record], heads));
    expect(decision).toMatchObject({
      kind: "change",
      record: { epoch: 5, primary: "head-1", secondaries: ["head-2"] },
    });
  });

  test("no live member: nothing can be done", () => {
    expect(decideFailover(record, new Set(), loadOf([record], heads)).kind).toBe("unavailable");
  });
});
