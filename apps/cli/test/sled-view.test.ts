// The human view of sled membership and re-replication: each sled in or out of service,
// and per volume the chunks short of copies and capacity live and reclaimable.

import { describe, expect, test } from "vitest";
import { type ClusterStatus, reportedLine, sledLines } from "../src/status.ts";

const status = (sleds: ClusterStatus["sleds"]): ClusterStatus => ({
  nats: "nats://127.0.0.1:4222",
  coordinator: "coordinator-1",
  generatedAtMs: 0,
  services: [],
  volumes: [],
  sleds,
});

describe("sled and re-replication view", () => {
  test("lists each sled in or OUT, and counts them", () => {
    const lines = sledLines(
      status([
        {
          id: "sled-1",
          state: "out",
          since: 90_000,
          firstSeenMs: 0,
          lastSeenMs: 30_000,
          silentMs: 70_000,
        },
        { id: "sled-2", state: "in", since: 0, firstSeenMs: 0, lastSeenMs: 0, silentMs: 10 },
      ]),
      100_000,
    );
    expect(lines[1]).toBe("SLEDS (1 in service, 1 out)");
    expect(lines.join("\n")).toMatch(/sled-1\s+OUT\s+since 10.0s ago\s+silent 1m10s/);
    expect(lines.join("\n")).toMatch(/sled-2\s+in\s+since 1m40s ago/);
    expect(sledLines(status(undefined), 0)).toEqual([]);
  });

  test("an out sled's silence counts from when it was last heard, across a leader change", () => {
    // A new leader counts silence from its own start: 1.7 s, for a sled last heard 20 s ago.
    const out = {
      id: "sled-1",
      state: "out" as const,
      since: 85_000,
      firstSeenMs: 0,
      lastSeenMs: 80_000,
      silentMs: 1_700,
    };
    expect(sledLines(status([out]), 100_000).join("\n")).toMatch(
      /sled-1\s+OUT\s+since 15.0s ago\s+silent 20.0s/,
    );
  });

  test("shows chunks short of copies, and live and reclaimable bytes when reported", () => {
    expect(reportedLine({ partitions: 2, partitionsReported: 2, chunksShortOfCopies: 3 })).toBe(
      "    3 chunks SHORT OF COPIES\n",
    );
    expect(
      reportedLine({
        partitions: 2,
        partitionsReported: 1,
        chunksShortOfCopies: 0,
        chunkBytes: 8 * 1024 * 1024,
        liveBytes: 6 * 1024 * 1024,
        reclaimableBytes: 2 * 1024 * 1024,
      }),
    ).toBe(
      "    every chunk has 2 copies on sleds in service; chunks 8MiB: live 6MiB, reclaimable 2MiB (1 of 2 partitions reported)\n",
    );
    expect(reportedLine({ partitions: 2, partitionsReported: 0 })).toBe("");
    expect(reportedLine(undefined)).toBe("");
  });
});
