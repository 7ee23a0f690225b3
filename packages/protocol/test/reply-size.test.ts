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
    failed: [node(0), node(1), node(2)],
    unavailable: true as const,
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

/**
 * The largest `n` in [0, `ceiling`] for which `schema` accepts `build(n)` (it accepts
 * every smaller one too): how long the schema lets a list grow, whatever its bound.
 */
function mostAccepted(
  schema: { safeParse(value: unknown): { success: boolean } },
  build: (n: number) => unknown,
  ceiling: number,
): number {
  let [low, high] = [0, ceiling];
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (schema.safeParse(build(middle)).success) low = middle;
    else high = middle - 1;
  }
  return low;
}

/**
 * A snapshot of the largest volume as an answer names it, every field at its longest,
 * with `partitions` ops and `clones` names.
 */
function worstSnapshot(index: number, partitions: number, clones: number) {
  return {
    volume: longName("vol", limits.volumeNameLengthMax),
    name: longName(`s${index}`, limits.snapshotNameLengthMax),
    id: longName(`sid${index}`, limits.snapshotIdLengthMax),
    volumeId: longName("vid", limits.volumeIdLengthMax),
    createdAtMs: big,
    partitions: Array.from({ length: partitions }, (_, partition) => ({
      index: limits.partitionsPerVolumeMax - 1 - partition,
      opNum: big,
    })),
    partitionCount: limits.partitionsPerVolumeMax,
    sizeBytes: big,
    overlap: big,
    clones: Array.from({ length: clones }, (_, clone) =>
      longName(`c${index}-${clone}`, limits.volumeNameLengthMax),
    ),
    cloneCount: big,
    uniqueBytes: big,
    uniqueBytesPartitions: limits.partitionsPerVolumeMax,
  };
}

describe("snapshot replies fit one message", () => {
  const answer = resultSchemas["snapshot.create.v1"];
  // As many partition ops and clones as the schema lets one snapshot name, up to every
  // partition of the largest volume and the most volumes a list names. The old schema
  // let a snapshot name all 65,536 partitions (1.7 MiB) and 4,096 clones (260 KiB).
  const partitions = mostAccepted(
    answer,
    (n) => worstSnapshot(0, n, 0),
    limits.partitionsPerVolumeMax,
  );
  const clones = mostAccepted(answer, (n) => worstSnapshot(0, 0, n), limits.statusEntriesMax);

  test("the schema bounds what a snapshot names, below what the largest volume has", () => {
    expect(partitions).toBe(limits.snapshotPartitionsListedMax);
    expect(clones).toBe(limits.snapshotClonesListedMax);
    expect(partitions).toBeLessThan(limits.partitionsPerVolumeMax);
  });

  test("a list of the most snapshots of the largest volume, every field at its longest", () => {
    const listed = {
      snapshots: Array.from({ length: limits.snapshotsPerVolumeMax }, (_, index) =>
        worstSnapshot(index, partitions, clones),
      ),
    };
    // The shape is one the receiver accepts, so the size measured is of a real reply.
    expect(resultSchemas["snapshot.list.v1"].safeParse(listed).success).toBe(true);
    expect(encodeResult(listed).length).toBeLessThanOrEqual(limits.messageBytesMax);
  });

  test("a create's and a rollback's answer at their longest fit", () => {
    const created = worstSnapshot(0, partitions, clones);
    expect(answer.safeParse(created).success).toBe(true);
    expect(encodeResult(created).length).toBeLessThanOrEqual(limits.messageBytesMax);
    const rollback = resultSchemas["volume.rollback.v1"];
    const rolledBack = (n: number) => ({
      volume: created.volume,
      snapshot: created.name,
      partitions: worstSnapshot(0, n, 0).partitions,
      partitionCount: limits.partitionsPerVolumeMax,
    });
    const most = mostAccepted(rollback, rolledBack, limits.partitionsPerVolumeMax);
    expect(most).toBe(limits.snapshotPartitionsListedMax);
    expect(encodeResult(rolledBack(most)).length).toBeLessThanOrEqual(limits.messageBytesMax);
  });
});
