// The pure sums behind status's capacity and describe's stored bytes: which chunks a
// sled's listing counts for an incarnation, when totals are omitted, and how sleds'
// stat answers become status entries and cluster totals.

import type { ResultOf } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
// The head node's own naming, so that these tests break if the two ever drift apart.
import { sledChunkIdOf } from "../../headnode/src/replica/replica.ts";
import type { ChunkEntry } from "../src/purge.ts";
import { capacityOf, totalsOf } from "../src/status.ts";
import { storedOf } from "../src/volumes.ts";

const live = { name: "vol", id: "2-bbbbbbbbbbbb" };
const older = "1-aaaaaaaaaaaa";

function chunkOf(
  volume: string,
  volumeId: string,
  partition: number,
  chunkNumber: number,
  bytes: number,
): ChunkEntry {
  const chunkId = sledChunkIdOf({ volume, volumeId, partition, session: 7 }, 3, chunkNumber);
  return { chunkId, owner: { volume, partition }, bytes };
}

describe("stored bytes of an incarnation", () => {
  test("sums its chunks over every copy on every sled, and only its own", () => {
    const stored = storedOf(
      live,
      [
        {
          sled: "sled-2",
          chunks: [
            chunkOf("vol", live.id, 0, 0, 4096),
            // An older incarnation of the name, still being purged: not this volume's.
            chunkOf("vol", older, 0, 0, 1 << 20),
          ],
        },
        {
          sled: "sled-1",
          chunks: [chunkOf("vol", live.id, 0, 0, 4096), chunkOf("vol", live.id, 1, 2, 8192)],
        },
      ],
      new Set([live.id]),
    );
    expect(stored).toEqual({
      bytes: 4096 + 4096 + 8192,
      chunks: 3,
      sleds: [
        { sled: "sled-1", bytes: 12288, chunks: 2 },
        { sled: "sled-2", bytes: 4096, chunks: 1 },
      ],
    });
  });

  test("a hashed prefix is counted for its own volume: its own live id is no ambiguity", () => {
    const longName = `v${"x".repeat(60)}`;
    const listing = [{ sled: "sled-1", chunks: [chunkOf(longName, longName, 3, 1, 512)] }];
    const stored = storedOf({ name: longName, id: longName }, listing, new Set([longName]));
    expect(stored.bytes).toBe(512);
    expect(stored.chunks).toBe(1);
  });

  test("a sled not counted omits the totals and says why, keeping the others' shares", () => {
    const stored = storedOf(
      live,
      [
        { sled: "sled-1", chunks: [chunkOf("vol", live.id, 0, 0, 4096)] },
        { sled: "sled-3", error: "not alive" },
      ],
      new Set([live.id]),
    );
    expect(stored.bytes).toBeUndefined();
    expect(stored.chunks).toBeUndefined();
    expect(stored.reason).toBe("not counted on sled-3: not alive");
    expect(stored.sleds).toEqual([
      { sled: "sled-1", bytes: 4096, chunks: 1 },
      { sled: "sled-3", error: "not alive" },
    ]);
  });

  test("no sleds at all is zero, not unknown", () => {
    expect(storedOf(live, [], new Set([live.id]))).toEqual({ bytes: 0, chunks: 0, sleds: [] });
  });
});

type Stat = ResultOf<"sled.stat.v1">;

function device(device: number, used: number, failed = false): Stat["devices"][number] {
  return {
    device,
    path: `/data/dev-${device}`,
    deviceBytes: 1000,
    capacityBytes: 900,
    usedBytes: used,
    freeBytes: 900 - used,
    largestFreeBytes: 900 - used,
    slots: 10,
    slotsUsed: 1,
    chunks: 2,
    blobs: 1,
    syncs: 0,
    failed,
  };
}

function stat(sled: string, devices: Stat["devices"]): Stat {
  const sum = (key: "capacityBytes" | "usedBytes" | "freeBytes" | "chunks" | "blobs") =>
    devices.reduce((total, entry) => total + entry[key], 0);
  return {
    sled,
    capacityBytes: sum("capacityBytes"),
    usedBytes: sum("usedBytes"),
    freeBytes: sum("freeBytes"),
    chunks: sum("chunks"),
    blobs: sum("blobs"),
    uploads: 0,
    devices,
  };
}

function service(id: string, healthy: boolean, extra: object = {}) {
  return {
    kind: "sled" as const,
    id,
    pid: 1,
    healthy,
    startedAtMs: 0,
    lastHeartbeatAtMs: 0,
    lastHeartbeatAgeMs: 0,
    version: "0.1.0",
    ...extra,
  };
}

describe("sled capacity", () => {
  test("a sled's capacity names its failed devices", () => {
    expect(capacityOf(stat("sled-1", [device(0, 100), device(1, 300, true)]))).toEqual({
      capacityBytes: 1800,
      usedBytes: 400,
      freeBytes: 1400,
      chunks: 4,
      blobs: 2,
      devices: 2,
      failedDevices: [{ device: 1, path: "/data/dev-1" }],
    });
  });

  test("totals sum the live sleds that answered and count those that did not", () => {
    const one = capacityOf(stat("sled-1", [device(0, 100)]));
    const two = capacityOf(stat("sled-2", [device(0, 200, true), device(1, 50)]));
    const totals = totalsOf([
      service("sled-1", true, { capacity: one }),
      service("sled-2", true, { capacity: two }),
      service("sled-3", true, { capacityError: "timed out" }),
      // A dead sled is neither summed nor counted as unanswered: it was not asked.
      service("sled-4", false),
      { ...service("head-1", true), kind: "headnode" as const },
    ]);
    expect(totals).toEqual({
      sleds: 2,
      sledsUnanswered: 1,
      capacityBytes: 2700,
      usedBytes: 350,
      freeBytes: 2350,
      chunks: 6,
      blobs: 3,
      failedDevices: 1,
    });
  });
});
