// The human view of `volume describe`, `volume list` and `status`: what the JSON holds
// about a volume's incarnation and its replica sets must be visible in it too.

import { describe, expect, test } from "vitest";
import { formatStatus } from "../src/status.ts";
import { partitionLine, summary, type VolumeState } from "../src/volume.ts";

const mebibyte = 1024 * 1024;

function volume(partition: Partial<VolumeState["partitions"][number]> = {}): VolumeState {
  return {
    name: "vol",
    id: "m1abc-0123456789ab",
    sizeBytes: 4 * mebibyte,
    replicaCount: 3,
    partitionBytes: 4 * mebibyte,
    createdAtMs: 1,
    partitions: [
      {
        partition: 0,
        partitionStart: 0,
        partitionBytes: 4 * mebibyte,
        epoch: 3,
        primary: "head-1",
        secondaries: ["head-2"],
        inSync: ["head-1", "head-2"],
        learners: [],
        joining: [],
        rebuilds: [],
        checkpoints: [],
        ...partition,
      },
    ],
  };
}

describe("volume view", () => {
  test("the summary names the incarnation after the layout", () => {
    expect(summary(volume())).toBe(
      "vol  4MiB  3 replicas  1 partitions of 4MiB  id m1abc-0123456789ab\n",
    );
    // A volume from before incarnations has no id: nothing is shown for it.
    expect(summary({ ...volume(), id: undefined })).toBe(
      "vol  4MiB  3 replicas  1 partitions of 4MiB\n",
    );
    // A listed volume carries its partition count, not its partitions.
    const { partitions: _partitions, ...listed } = volume();
    expect(summary({ ...listed, partitionCount: 3 })).toBe(
      "vol  4MiB  3 replicas  3 partitions of 4MiB  id m1abc-0123456789ab\n",
    );
  });

  test("a shrink begun and not finished, and each partition's end short of its size, are shown", () => {
    const state = {
      ...volume({ servedBytes: mebibyte }),
      shrinkingTo: mebibyte,
    };
    // Old: neither was shown (describe did not carry them either).
    expect(summary(state)).toBe(
      "vol  4MiB  3 replicas  1 partitions of 4MiB  id m1abc-0123456789ab\n" +
        "  SHRINKING to 1MiB: begun, not finished (the coordinator finishes it; I/O past 1MiB is refused)\n",
    );
    expect(partitionLine(state.partitions[0]!)).toContain(
      "secondaries head-2  serves 1MiB of 4MiB\n",
    );
    // A partition served whole says nothing of it.
    expect(partitionLine(volume().partitions[0]!)).not.toContain("serves");
  });

  test("a partition line shows joining members apart from secondaries and learners", () => {
    const state = volume({
      secondaries: [],
      joining: ["head-3"],
      learners: ["head-2"],
      rebuilds: [{ node: "head-2", matchOpNum: 5, targetOpNum: 9 }],
    });
    expect(partitionLine(state.partitions[0]!)).toBe(
      "  partition 0  epoch 3  primary head-1  secondaries (none: degraded)  joining head-3  rebuilding head-2 (op 5 of 9)\n",
    );
    expect(partitionLine(volume().partitions[0]!)).toBe(
      "  partition 0  epoch 3  primary head-1  secondaries head-2\n",
    );
  });

  test("status shows each volume's incarnation and joining members", () => {
    const text = formatStatus(
      {
        nats: "nats://127.0.0.1:4222",
        coordinator: "coordinator-1",
        generatedAtMs: 1,
        services: [],
        volumes: [volume({ joining: ["head-3"] })],
      },
      1,
    );
    expect(text).toContain(
      "  vol  4MiB  3 replicas  1 partitions of 4MiB  id m1abc-0123456789ab\n",
    );
    expect(text).toContain("primary head-1  secondaries head-2  joining head-3");
  });
});
