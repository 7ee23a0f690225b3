// The human view of slow sleds (a gray failure): a line per live head node that holds any
// sled slow, with the sleds, how long each has been slow and how much of its hold is
// left, and the reads it hedged; nothing when none does; and in SLEDS, which head nodes
// hold each sled slow. A slow sled does not make a volume degraded or `--check` fail
// (health.ts header). Crafted status, no cluster.

import { describe, expect, test } from "vitest";
import { isFullStrength, slowSledsHeldOf } from "../src/health.ts";
import { type ClusterStatus, formatStatus, sledLines, slowSledLines } from "../src/status.ts";

type Service = ClusterStatus["services"][number];

const service = (kind: Service["kind"], id: string, extra: Partial<Service> = {}): Service => ({
  kind,
  id,
  pid: 100,
  healthy: true,
  startedAtMs: 0,
  lastHeartbeatAtMs: 99_000,
  lastHeartbeatAgeMs: 200,
  version: "0.1.0",
  ...extra,
});

const status = (services: Service[], volumes: ClusterStatus["volumes"] = []): ClusterStatus => ({
  nats: "nats://127.0.0.1:4222",
  coordinator: "coordinator-1",
  generatedAtMs: 100_000,
  services,
  volumes,
});

/** A volume of one partition at full strength on head-1 and head-2. */
const whole = {
  name: "v",
  id: "v-1",
  sizeBytes: 4096,
  replicaCount: 2,
  partitionBytes: 4096,
  createdAtMs: 0,
  partitions: [
    {
      partition: 0,
      partitionStart: 0,
      partitionBytes: 4096,
      epoch: 1,
      primary: "head-1",
      secondaries: ["head-2"],
      inSync: ["head-1", "head-2"],
      learners: [],
      rebuilds: [],
      checkpoints: [],
    },
  ],
};

describe("slow sleds in status", () => {
  test("a line per head node holding a sled slow: which, for how long, how much longer, reads hedged", () => {
    const lines = slowSledLines(
      status([
        service("headnode", "head-2", {
          slowSleds: {
            slow: ["sled-2", "sled-3"],
            hedgedReads: 1,
            holds: [
              { sled: "sled-2", slowForMs: 130_000, holdLeftMs: 25_000, holdMs: 60_000 },
              { sled: "sled-3", slowForMs: 4_000, holdLeftMs: 26_000, holdMs: 30_000 },
            ],
          },
        }),
        // Holds none slow: no line, whatever it hedged before.
        service("headnode", "head-3", { slowSleds: { slow: [], hedgedReads: 9, holds: [] } }),
        // An older head node says which sleds, not for how long.
        service("headnode", "head-1", { slowSleds: { slow: ["sled-2"], hedgedReads: 14 } }),
        // A newer one says the chunk writes it hedged too, when there were any.
        service("headnode", "head-4", {
          slowSleds: { slow: ["sled-3"], hedgedReads: 1, hedgedWrites: 2, holds: [] },
        }),
        service("sled", "sled-2"),
      ]),
    );
    expect(lines).toEqual([
      "",
      "SLOW SLEDS (alive but answering late: asked last, reads and chunk writes hedged; not counted by --check)",
      "  head-1 holds sled-2 slow; 14 reads hedged since it started",
      "  head-2 holds sled-2 slow for 2m10s (asked last 25.0s more of a 1m0s hold), sled-3 slow for 4.0s (asked last 26.0s more of a 30.0s hold); 1 read hedged since it started",
      "  head-4 holds sled-3 slow; 1 read and 2 chunk writes hedged since it started",
    ]);
  });

  test("nothing when no head node holds a sled slow, or one that does is dead", () => {
    expect(
      slowSledLines(
        status([
          service("headnode", "head-1", { slowSleds: { slow: [], hedgedReads: 3, holds: [] } }),
          // Dead: what it said last is not news (the coordinator does not probe it).
          service("headnode", "head-2", {
            healthy: false,
            slowSleds: { slow: ["sled-1"], hedgedReads: 0 },
          }),
          service("headnode", "head-3"),
        ]),
      ),
    ).toEqual([]);
  });

  test("a cluster at full strength with a slow sled is shown serving: the section, no degraded volume, --check passes", () => {
    const slow = status(
      [
        service("headnode", "head-1", {
          slowSleds: {
            slow: ["sled-1"],
            hedgedReads: 2,
            holds: [{ sled: "sled-1", slowForMs: 1_000, holdLeftMs: 29_000, holdMs: 30_000 }],
          },
        }),
        service("headnode", "head-2"),
        service("sled", "sled-1"),
      ],
      [whole],
    );
    expect(slowSledsHeldOf(slow)).toEqual([
      {
        headNode: "head-1",
        sleds: [{ sled: "sled-1", slowForMs: 1_000, holdLeftMs: 29_000, holdMs: 30_000 }],
        hedgedReads: 2,
      },
    ]);
    // The sled's own row says who holds it slow.
    const sleds = sledLines(
      {
        ...slow,
        sleds: ["sled-1", "sled-2"].map((id) => ({
          id,
          state: "in" as const,
          since: 0,
          firstSeenMs: 0,
          lastSeenMs: 0,
          silentMs: 10,
        })),
      },
      100_000,
    ).join("\n");
    expect(sleds).toMatch(/sled-1\s+in\s+since 1m40s ago\s+SLOW to head-1\n/);
    expect(sleds).toMatch(/sled-2\s+in\s+since 1m40s ago$/);
    const shown = formatStatus(slow, 100_000);
    expect(shown).toContain(
      "\nSLOW SLEDS (alive but answering late: asked last, reads and chunk writes hedged; not counted by --check)\n  head-1 holds sled-1 slow for 1.0s (asked last 29.0s more of a 30.0s hold); 2 reads hedged since it started\n\nVOLUMES\n",
    );
    expect(shown).toContain("health: full strength (1 partitions)");
    expect(isFullStrength(slow)).toBe(true);
  });
});
