// The human view of capacity: each live sled's capacity, usage and objects with failed
// devices named, cluster totals, and what each volume stores on sleds, or why not.

import { describe, expect, test } from "vitest";
import { formatBytes } from "../src/sizes.ts";
import { type ClusterStatus, capacityLines, formatStatus } from "../src/status.ts";
import { storedLine, type VolumeState } from "../src/volume.ts";

const mebibyte = 1024 * 1024;
const gibibyte = 1024 * mebibyte;

const volume: VolumeState = {
  name: "vol",
  id: "2-bbbbbbbbbbbb",
  sizeBytes: 4 * mebibyte,
  replicaCount: 2,
  partitionBytes: 4 * mebibyte,
  createdAtMs: 1,
  partitions: [],
};

function sled(id: string, extra: object = {}): ClusterStatus["services"][number] {
  return {
    kind: "sled",
    id,
    pid: 1,
    healthy: true,
    startedAtMs: 0,
    lastHeartbeatAtMs: 0,
    lastHeartbeatAgeMs: 0,
    version: "0.1.0",
    ...extra,
  };
}

const status: ClusterStatus = {
  nats: "nats://127.0.0.1:4222",
  coordinator: "coordinator-1",
  generatedAtMs: 1,
  services: [
    sled("sled-1", {
      capacity: {
        capacityBytes: 2 * gibibyte,
        usedBytes: gibibyte / 2,
        freeBytes: 1.5 * gibibyte,
        chunks: 12,
        blobs: 3,
        devices: 2,
        failedDevices: [{ device: 1, path: "/d/sled-1/dev-1" }],
      },
    }),
    sled("sled-2", { capacityError: "request timed out" }),
  ],
  volumes: [
    {
      ...volume,
      stored: {
        bytes: 3 * mebibyte,
        chunks: 4,
        sleds: [{ sled: "sled-1", bytes: 3 * mebibyte, chunks: 4 }],
      },
    },
  ],
  capacity: {
    sleds: 1,
    sledsUnanswered: 1,
    capacityBytes: 2 * gibibyte,
    usedBytes: gibibyte / 2,
    freeBytes: 1.5 * gibibyte,
    chunks: 12,
    blobs: 3,
    failedDevices: 1,
  },
};

describe("capacity view", () => {
  test("byte counts are exact when round, else one decimal of the largest unit", () => {
    expect(formatBytes(4 * mebibyte)).toBe("4MiB");
    expect(formatBytes(1.5 * gibibyte)).toBe("1.5GiB");
    expect(formatBytes(1000)).toBe("1000B");
    expect(formatBytes(3 * mebibyte + 12_345)).toBe("3.0MiB");
    expect(formatBytes(0)).toBe("0B");
  });

  test("each sled shows capacity, usage, objects and failed devices; one that did not answer says why", () => {
    const lines = capacityLines(status);
    expect(lines[1]).toBe("CAPACITY (1 sleds, 1 not answering)");
    expect(lines[2]).toMatch(/^ {2}SLED +CAPACITY +USED +FREE +CHUNKS +BLOBS$/);
    expect(lines[3]).toMatch(
      /^ {2}sled-1 +2GiB +512MiB \(25\.0%\) +1\.5GiB +12 +3 +FAILED devices 1 \(\/d\/sled-1\/dev-1\)$/,
    );
    expect(lines[4]).toMatch(/^ {2}sled-2 +- +- +- +- +- +no answer: request timed out$/);
    expect(lines[5]).toBe(
      "  total 2GiB  used 512MiB (25.0%)  free 1.5GiB  12 chunks  3 blobs, 1 failed devices",
    );
  });

  test("no capacity section when status was not probed", () => {
    expect(capacityLines({ ...status, capacity: undefined })).toEqual([]);
    expect(formatStatus({ ...status, capacity: undefined }, 1)).not.toContain("CAPACITY");
  });

  test("a volume's stored bytes, with each sled's share", () => {
    expect(storedLine(status.volumes[0] as VolumeState)).toBe(
      "  stored on sleds 3MiB in 4 chunks (all copies)\n    sled-1 3MiB in 4\n",
    );
    // Not asked for (volume list): nothing.
    expect(storedLine(volume)).toBe("");
  });

  test("stored bytes not counted say why, and keep the shares that were", () => {
    const line = storedLine({
      ...volume,
      stored: {
        reason: "not counted on sled-2: not alive",
        sleds: [
          { sled: "sled-1", bytes: 4096, chunks: 1 },
          { sled: "sled-2", error: "not alive" },
        ],
      },
    });
    expect(line).toBe(
      "  stored on sleds: unknown (not counted on sled-2: not alive)\n    sled-1 4KiB in 1, sled-2 not counted: not alive\n",
    );
  });

  test("status shows the capacity section and each volume's stored line", () => {
    const text = formatStatus(status, 1);
    expect(text).toContain("CAPACITY (1 sleds, 1 not answering)");
    expect(text).toContain("\n    stored on sleds 3MiB in 4 chunks (all copies)\n");
  });
});
