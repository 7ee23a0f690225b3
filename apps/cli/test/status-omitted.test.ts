// `ballast status` over a cluster whose answer left some volumes' partitions out: each
// is described on its own, so health and the partition lines cover every partition
// (unit: a fake bus that answers describe).

import { BallastError, ErrorCode, type ResultOf } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import { isFullStrength } from "../src/health.ts";
import { describeOmitted } from "../src/status.ts";

const partition = (index: number, secondaries: string[]) => ({
  partition: index,
  partitionStart: index * 1024,
  partitionBytes: 1024,
  epoch: 1,
  primary: "head-1",
  secondaries,
  inSync: ["head-1", ...secondaries],
  learners: [],
  joining: [],
  rebuilds: [],
  checkpoints: [],
});

const base = { sizeBytes: 2048, replicaCount: 2, partitionBytes: 1024, createdAtMs: 1 };

/** A fake bus: describe answers `described`, or NotFound for a name it lacks. */
function fakeBus(described: Record<string, ReturnType<typeof partition>[]>) {
  const asked: string[] = [];
  const bus = {
    request: async (_subject: string, message: { type: string; name: string }) => {
      expect(message.type).toBe("volume.describe.v1");
      asked.push(message.name);
      const partitions = described[message.name];
      if (partitions === undefined) {
        throw new BallastError(ErrorCode.NotFound, `no volume named ${message.name}`);
      }
      return { name: message.name, ...base, partitions };
    },
  } as unknown as Bus;
  return { bus, asked };
}

describe("status with omitted partitions", () => {
  test("an omitted volume is described; its degraded partition is seen; a deleted one is left out", async () => {
    const status: ResultOf<"cluster.status.v1"> = {
      coordinator: "coordinator-1",
      generatedAtMs: 1,
      // Both members alive: a member the status does not list counts as down.
      services: ["head-1", "head-2"].map((id) => ({
        kind: "headnode" as const,
        id,
        pid: 1,
        healthy: true,
        startedAtMs: 1,
        lastHeartbeatAtMs: 1,
        lastHeartbeatAgeMs: 1,
        version: "0.1.0",
      })),
      volumes: [
        { name: "whole", ...base, partitions: [partition(0, ["head-2"])], partitionCount: 1 },
        { name: "big", ...base, partitions: [], partitionCount: 2, partitionsOmitted: true },
        { name: "gone", ...base, partitions: [], partitionCount: 2, partitionsOmitted: true },
      ],
    };
    const { bus, asked } = fakeBus({ big: [partition(0, ["head-2"]), partition(1, [])] });
    // As listed, the omitted volume would count as full strength: it shows no partition.
    expect(isFullStrength(status)).toBe(true);
    const complete = await describeOmitted(bus, status);
    expect(asked).toEqual(["big", "gone"]);
    expect(complete.volumes.map((volume) => volume.name)).toEqual(["whole", "big"]);
    expect(complete.volumes[1]).not.toHaveProperty("partitionsOmitted");
    expect((complete.volumes[1]!.partitions as unknown[]).length).toBe(2);
    expect(isFullStrength(complete)).toBe(false);
  });
});
