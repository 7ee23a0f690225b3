// The partition math: finding a partition, cutting a range at partition boundaries and
// at the per-request limit, and refusing descriptions that do not tile their volume.

import { describe, expect, it } from "vitest";
import { InvalidVolumeStateError } from "../src/index.ts";
import {
  checkSameLayout,
  checkVolumeState,
  partitionIndexOf,
  splitRange,
  type VolumeState,
} from "../src/layout.ts";

/** A description of a volume cut into partitions of the given sizes. */
function volumeState(name: string, partitionSizes: readonly number[]): VolumeState {
  let start = 0;
  const partitions = partitionSizes.map((partitionBytes, partition) => {
    const state = {
      partition,
      partitionStart: start,
      partitionBytes,
      epoch: 1,
      primary: "headnode-1",
      secondaries: ["headnode-2"],
      inSync: ["headnode-1", "headnode-2"],
      learners: [],
      rebuilds: [],
      checkpoints: [],
    };
    start += partitionBytes;
    return state;
  });
  return {
    name,
    sizeBytes: start,
    replicaCount: 2,
    partitionBytes: partitionSizes[0] ?? 0,
    createdAtMs: 0,
    partitions,
  };
}

describe("partitionIndexOf", () => {
  const { partitions } = volumeState("v", [4096, 4096, 4096, 1024]);

  it("finds the partition holding each byte, including first and last bytes", () => {
    expect(partitionIndexOf(partitions, 0)).toBe(0);
    expect(partitionIndexOf(partitions, 4095)).toBe(0);
    expect(partitionIndexOf(partitions, 4096)).toBe(1);
    expect(partitionIndexOf(partitions, 12_287)).toBe(2);
    expect(partitionIndexOf(partitions, 12_288)).toBe(3);
    expect(partitionIndexOf(partitions, 13_311)).toBe(3);
  });
});

describe("splitRange", () => {
  const { partitions } = volumeState("v", [4096, 4096, 4096, 1024]);

  it("keeps a range inside one partition whole when it fits one request", () => {
    expect(splitRange(partitions, 512, 1024, 4096)).toEqual([
      { index: 0, offset: 512, length: 1024 },
    ]);
  });

  it("cuts at partition boundaries, keeping volume offsets", () => {
    expect(splitRange(partitions, 3584, 9728, 4096)).toEqual([
      { index: 0, offset: 3584, length: 512 },
      { index: 1, offset: 4096, length: 4096 },
      { index: 2, offset: 8192, length: 4096 },
      { index: 3, offset: 12_288, length: 1024 },
    ]);
  });

  it("cuts inside a partition at the per-piece limit", () => {
    expect(splitRange(partitions, 4096, 4096, 1536)).toEqual([
      { index: 1, offset: 4096, length: 1536 },
      { index: 1, offset: 5632, length: 1536 },
      { index: 1, offset: 7168, length: 1024 },
    ]);
  });

  it("restarts the per-piece count at each partition boundary", () => {
    expect(splitRange(partitions, 3072, 2048, 1536)).toEqual([
      { index: 0, offset: 3072, length: 1024 },
      { index: 1, offset: 4096, length: 1024 },
    ]);
  });
});

describe("checkVolumeState", () => {
  it("accepts partitions that tile the volume, the last one shorter", () => {
    expect(() => checkVolumeState("v", volumeState("v", [4096, 4096, 512]))).not.toThrow();
  });

  it("refuses a description of another volume", () => {
    expect(() => checkVolumeState("v", volumeState("w", [4096]))).toThrow(
      'cannot use the description of volume "v": the coordinator answered for volume "w"',
    );
  });

  it("refuses a gap between partitions", () => {
    const state = volumeState("v", [4096, 4096]);
    state.partitions[1]!.partitionStart = 8192;
    state.sizeBytes = 12_288;
    expect(() => checkVolumeState("v", state)).toThrow(
      "partition 1 (position 1) starts at 8192, expected 4096",
    );
  });

  it("refuses partitions that do not cover the volume's size", () => {
    const state = volumeState("v", [4096, 4096]);
    state.sizeBytes = 16_384;
    expect(() => checkVolumeState("v", state)).toThrow(InvalidVolumeStateError);
  });

  it("refuses an unaligned partition", () => {
    expect(() => checkVolumeState("v", volumeState("v", [4096, 1000, 24]))).toThrow(
      "partition 1 has 1000 bytes, not a positive multiple of 512",
    );
  });
});

describe("checkSameLayout", () => {
  it("accepts a description that differs only in epochs and members", () => {
    const next = volumeState("v", [4096, 4096]);
    next.partitions[0]!.epoch = 7;
    next.partitions[0]!.primary = "headnode-9";
    expect(() => checkSameLayout(volumeState("v", [4096, 4096]), next)).not.toThrow();
  });

  it("refuses a description with other partitions", () => {
    expect(() =>
      checkSameLayout(volumeState("v", [4096, 4096]), volumeState("v", [2048, 6144])),
    ).toThrow("partition 0 at [0, +4096) became partition 0 at [0, +2048)");
  });

  it("refuses a description with more partitions", () => {
    expect(() =>
      checkSameLayout(volumeState("v", [4096, 4096]), volumeState("v", [4096, 4096, 4096])),
    ).toThrow(InvalidVolumeStateError);
  });
});
