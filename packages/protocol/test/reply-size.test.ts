// The coordinator's volume replies must fit one message by construction: a page of a
// volume's state at `describePartitionsMax` partitions, every field at its longest,
// still encodes within `messageBytesMax`, and so does a list of the most volumes. A
// limit raised past what fits fails here, not in a cluster whose largest volume can no
// longer be opened.

import { describe, expect, test } from "vitest";
import { encodeResult, limits, type ResultOf, resultSchemas } from "../src/index.ts";

/** A name of `length` characters from the names' alphabet, distinct per `seed`. */
function longName(seed: string, length: number): string {
  return `${seed}-`.padEnd(length, "x");
}

/** The largest value an unsigned field may carry: msgpack writes it as a 9-byte float64. */
const big = Number.MAX_SAFE_INTEGER;

const node = (index: number) => longName(`n${index}`, limits.nodeIdLengthMax);

/** One partition with every list at the length its schema allows and 63-character ids. */
function worstPartition(partition: number) {
  return {
    partition,
    partitionStart: big,
    partitionBytes: big,
    epoch: big,
    primary: node(0),
    secondaries: [node(1), node(2)],
    inSync: [node(0), node(1), node(2)],
    learners: [node(3), node(4)],
    joining: [node(3), node(4)],
    rebuilds: [3, 4].map((index) => ({ node: node(index), matchOpNum: big, targetOpNum: big })),
    checkpoints: [0, 1, 2, 3].map((index) => ({ node: node(index), opNum: big, ageMs: big })),
  };
}

const parent = {
  volume: longName("parent", limits.volumeNameLengthMax),
  volumeId: longName("pid", limits.volumeIdLengthMax),
  snapshot: longName("snap", limits.snapshotNameLengthMax),
  snapshotId: longName("sid", limits.snapshotIdLengthMax),
  overlap: big,
};

function worstSummary(index: number) {
  return {
    name: longName(`v${index}`, limits.volumeNameLengthMax),
    id: longName(`i${index}`, limits.volumeIdLengthMax),
    sizeBytes: big,
    replicaCount: limits.replicaCountMax,
    partitionBytes: big,
    createdAtMs: big,
    partitionCount: limits.partitionsPerVolumeMax,
    parent,
  };
}

/**
 * Room a describe with `stored` keeps for what the volume stores on sleds: one entry per
 * sled (the count of sleds in a cluster, far below `statusEntriesMax`).
 */
const storedReserveBytes = 1024 * 1024;

describe("volume replies fit one message", () => {
  test("a describe page at the page limit, every field at its longest", () => {
    const state = {
      ...worstSummary(0),
      partitionsNext: limits.partitionsPerVolumeMax - 1,
      partitions: Array.from({ length: limits.describePartitionsMax }, (_, index) =>
        worstPartition(limits.partitionsPerVolumeMax - 1 - limits.describePartitionsMax + index),
      ),
    };
    // The shape is one the receiver accepts, so the size measured is of a real reply;
    // one partition more than a page is refused.
    expect(resultSchemas["volume.describe.v1"].safeParse(state).success).toBe(true);
    const over = { ...state, partitions: [...state.partitions, worstPartition(0)] };
    expect(resultSchemas["volume.describe.v1"].safeParse(over).success).toBe(false);
    const bytes = encodeResult(state as ResultOf<"volume.describe.v1">).length;
    expect(bytes).toBeLessThanOrEqual(limits.messageBytesMax - storedReserveBytes);
  });

  test("list of the most volumes a reply names, every field at its longest", () => {
    const listed = {
      volumes: Array.from({ length: limits.statusEntriesMax }, (_, index) => worstSummary(index)),
    };
    expect(resultSchemas["volume.list.v1"].safeParse(listed).success).toBe(true);
    expect(encodeResult(listed).length).toBeLessThanOrEqual(limits.messageBytesMax);
  });
});
