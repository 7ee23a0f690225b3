// The status answer stays within one message however many partitions the cluster holds:
// past `statusPartitionsMax` a volume is listed without its partitions (unit: fake
// membership, sled records and volumes; the answer is encoded as the service would).

import { encodeResult, limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { statusPartitionsMax } from "../src/constants.ts";
import { Status } from "../src/status.ts";
import type { VolumeState } from "../src/volumes.ts";

const node = (index: number) => `n${index}-`.padEnd(limits.nodeIdLengthMax, "x");
const big = Number.MAX_SAFE_INTEGER;

/** A volume of a describe page's worth of partitions, each at its longest. */
function large(name: string): VolumeState {
  return {
    name,
    id: `${name}-1`,
    sizeBytes: big,
    replicaCount: 3,
    partitionBytes: big,
    createdAtMs: big,
    partitions: Array.from({ length: limits.describePartitionsMax }, (_, partition) => ({
      partition,
      partitionStart: big,
      partitionBytes: big,
      epoch: big,
      primary: node(0),
      secondaries: [node(1), node(2)],
      inSync: [node(0), node(1), node(2)],
      learners: [node(3), node(4)],
      joining: [node(3), node(4)],
      rebuilds: [3, 4].map((i) => ({ node: node(i), matchOpNum: big, targetOpNum: big })),
      checkpoints: [0, 1, 2, 3].map((i) => ({ node: node(i), opNum: big, ageMs: big })),
      failed: [node(0), node(1), node(2)],
      unavailable: true as const,
    })),
  };
}

function statusOver(volumes: VolumeState[]): Status {
  return new Status(
    { bus: {} as never, nodeId: "coordinator-1" },
    { declareDeaths: () => {}, list: () => [] },
    // Both shapes of the volumes' source: `states` is what status reads now.
    { states: async () => volumes, list: async () => ({ volumes }) } as never,
    { list: () => undefined },
  );
}

describe("status answer size", () => {
  test("four volumes of 4,096 long partitions: the answer fits, partitions within the budget", async () => {
    const volumes = ["a", "b", "c", "d"].map(large);
    const answer = await statusOver(volumes).onClusterStatus({ type: "cluster.status.v1" });
    expect(encodeResult(answer).length).toBeLessThanOrEqual(limits.messageBytesMax);
    const listed = answer.volumes.reduce(
      (sum, volume) => sum + (volume.partitions as unknown[]).length,
      0,
    );
    expect(listed).toBeLessThanOrEqual(statusPartitionsMax);
    // Each omitted volume says so and how many partitions it has.
    for (const volume of answer.volumes) {
      expect(volume).toMatchObject({
        partitionsOmitted: true,
        partitionCount: limits.describePartitionsMax,
        partitions: [],
      });
    }
  });

  test("volumes within the budget are listed whole; a later small one still fits", async () => {
    const small = (name: string, count: number): VolumeState => {
      const volume = large(name);
      return { ...volume, partitions: volume.partitions.slice(0, count) };
    };
    const answer = await statusOver([
      small("a", statusPartitionsMax - 2),
      small("b", 3),
      small("c", 2),
    ]).onClusterStatus({ type: "cluster.status.v1" });
    expect(answer.volumes.map((volume) => [volume.name, volume.partitionsOmitted])).toEqual([
      ["a", undefined],
      ["b", true],
      ["c", undefined],
    ]);
    expect(answer.volumes.map((volume) => volume.partitionCount)).toEqual([
      statusPartitionsMax - 2,
      3,
      2,
    ]);
  });
});
