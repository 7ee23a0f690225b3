// The partition math: finding a partition, cutting a range at partition boundaries and
// at the per-request limit, keeping one copy of a partition listed twice, and refusing
// descriptions that do not tile their volume.

import { ErrorCode, isBallastError } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { InvalidVolumeStateError } from "../src/index.ts";
import {
  checkSameLayout,
  normalizeVolumeState,
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

describe("normalizeVolumeState", () => {
  it("accepts partitions that tile the volume, the last one shorter", () => {
    expect(() => normalizeVolumeState("v", volumeState("v", [4096, 4096, 512]))).not.toThrow();
  });

  it("refuses a description of another volume", () => {
    expect(() => normalizeVolumeState("v", volumeState("w", [4096]))).toThrow(
      'cannot use the description of volume "v": the coordinator answered for volume "w"',
    );
  });

  it("refuses a gap between partitions", () => {
    const state = volumeState("v", [4096, 4096]);
    state.partitions[1]!.partitionStart = 8192;
    state.sizeBytes = 12_288;
    expect(() => normalizeVolumeState("v", state)).toThrow(
      "partition 1 starts at 8192, expected 4096",
    );
  });

  it("refuses partitions that do not cover the volume's size", () => {
    const state = volumeState("v", [4096, 4096]);
    state.sizeBytes = 16_384;
    expect(() => normalizeVolumeState("v", state)).toThrow(InvalidVolumeStateError);
  });

  it("keeps one copy of a partition listed twice, the one with the higher epoch, in either order", () => {
    // The coordinator's key listing returns a partition's key again when its record is
    // updated during the listing: two copies, the newer one at a higher epoch.
    for (const staleFirst of [true, false]) {
      const state = volumeState("v", [4096, 4096, 4096]);
      const current = { ...state.partitions[1]!, epoch: 3, primary: "headnode-2" };
      const stale = { ...state.partitions[1]!, epoch: 2 };
      state.partitions.splice(1, 1, ...(staleFirst ? [stale, current] : [current, stale]));

      const normalized = normalizeVolumeState("v", state);

      expect(normalized.partitions.map((partition) => partition.partition)).toEqual([0, 1, 2]);
      expect(normalized.partitions[1]).toEqual(current);
      expect(normalized.sizeBytes).toBe(12_288);
    }
  });

  it("sorts partitions listed out of order, and returns a tidy description as it is", () => {
    const tidy = volumeState("v", [4096, 4096]);
    expect(normalizeVolumeState("v", tidy)).toBe(tidy);
    const shuffled = volumeState("v", [4096, 4096]);
    shuffled.partitions.reverse();
    expect(normalizeVolumeState("v", shuffled).partitions).toEqual(tidy.partitions);
  });

  it("refuses a partition listed twice with different ranges", () => {
    const state = volumeState("v", [4096, 4096]);
    state.partitions.push({ ...state.partitions[1]!, partitionBytes: 2048 });
    expect(() => normalizeVolumeState("v", state)).toThrow(
      "partition 1 is listed twice with different ranges, [4096, +4096) and [4096, +2048)",
    );
  });

  it("refuses a missing partition, naming the numbers it found", () => {
    const state = volumeState("v", [4096, 4096, 4096]);
    state.partitions.splice(1, 1);
    expect(() => normalizeVolumeState("v", state)).toThrow(
      "its partitions are numbered 0, 2, not 0 to 1",
    );
  });

  it("refuses overlapping partitions", () => {
    const state = volumeState("v", [4096, 4096]);
    state.partitions[1]!.partitionStart = 2048;
    expect(() => normalizeVolumeState("v", state)).toThrow(
      "partition 1 starts at 2048, expected 4096",
    );
  });

  it("refuses an unaligned partition", () => {
    expect(() => normalizeVolumeState("v", volumeState("v", [4096, 1000, 24]))).toThrow(
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

  it("says NotFound for another incarnation of the name", () => {
    const previous = { ...volumeState("v", [4096]), id: "v-1" };
    const next = { ...volumeState("v", [4096]), id: "v-2" };
    let thrown: unknown;
    try {
      checkSameLayout(previous, next);
    } catch (error) {
      thrown = error;
    }
    expect(isBallastError(thrown, ErrorCode.NotFound)).toBe(true);
    expect((thrown as Error).message).toBe(
      'volume "v" was deleted while open: the name now belongs to another volume (incarnation v-2, not v-1)',
    );
    // A description without an incarnation (an older coordinator) says nothing about it.
    expect(() => checkSameLayout(previous, volumeState("v", [4096]))).not.toThrow();
  });

  it("takes a resize: partitions added after the last, another size", () => {
    const grown = { ...volumeState("v", [4096, 4096, 4096]), sizeBytes: 10_240 };
    expect(() => checkSameLayout(volumeState("v", [4096, 4096]), grown)).not.toThrow();
    const shrunk = { ...volumeState("v", [4096, 4096]), sizeBytes: 512 };
    expect(() => checkSameLayout(volumeState("v", [4096, 4096]), shrunk)).not.toThrow();
  });

  it("refuses a description with fewer partitions", () => {
    expect(() =>
      checkSameLayout(volumeState("v", [4096, 4096, 4096]), volumeState("v", [4096, 4096])),
    ).toThrow(InvalidVolumeStateError);
  });
});
