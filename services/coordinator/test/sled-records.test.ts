import { createLogger } from "@ballast/runtime";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Catalogue } from "../src/catalogue.ts";
import type { Member } from "../src/membership.ts";
import { SledRecords } from "../src/sled-records.ts";
import { reportedOf } from "../src/status.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";

const logger = createLogger({ service: "coordinator", nodeId: "c-1", level: "silent" });

function sled(id: string, lastHeartbeatAtMs: number): Member {
  return {
    kind: "sled",
    id,
    pid: 1,
    version: "0.1.0",
    startedAtMs: 0,
    lastSequence: 0,
    lastHeartbeatAtMs,
    alive: true,
  };
}

describe("sled records on the leader", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["performance", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test("declares a silent sled out, persists it, and a new leader loads it out", async () => {
    const catalogue = new Catalogue(new FakeStore());
    const members: Member[] = [];
    let tenure = { ready: true } as Tenure;
    const records = (sledOutAfterMs: number) =>
      new SledRecords({
        logger,
        catalogue,
        heartbeats: { list: () => members, listening: () => false },
        tenures: { held: () => tenure, current: () => tenure },
        sledOutAfterMs,
      });
    const first = records(3000);
    await first.tick(); // loads an empty book
    expect(first.out(tenure)).toEqual([]);
    vi.advanceTimersByTime(100);
    // A heartbeat time with a fraction, as performance.now gives: shown in whole ms.
    members.push(sled("sled-1", performance.now() - 0.25), sled("sled-2", performance.now()));
    await first.tick();
    expect(first.list()!.map((record) => record.state)).toEqual(["in", "in"]);
    for (const record of first.list()!) {
      expect(Number.isInteger(record.since)).toBe(true);
      expect(Number.isInteger(record.lastSeenMs)).toBe(true);
    }
    vi.advanceTimersByTime(2000);
    members[1] = sled("sled-2", performance.now());
    vi.advanceTimersByTime(1000);
    await first.tick();
    expect(first.out(tenure)).toEqual(["sled-1"]);
    expect((await catalogue.sledRecords()).find((r) => r.id === "sled-1")?.state).toBe("out");

    // A new leader: sled-1 stays out; sled-2, silent since before its tenure, is not
    // out until a whole sledOutAfterMs after the tenure began.
    tenure = { ready: true } as Tenure;
    const second = records(3000);
    vi.advanceTimersByTime(10);
    await second.tick();
    expect(second.out(tenure)).toEqual(["sled-1"]);
    vi.advanceTimersByTime(2900);
    await second.tick();
    expect(second.out(tenure)).toEqual(["sled-1"]);
    vi.advanceTimersByTime(200);
    await second.tick();
    expect(second.out(tenure)).toEqual(["sled-1", "sled-2"]);
    // sled-1 heard again: in.
    members[0] = sled("sled-1", performance.now());
    await second.tick();
    expect(second.out(tenure)).toEqual(["sled-2"]);
    expect((await catalogue.sledRecords()).find((r) => r.id === "sled-1")?.state).toBe("in");
  });
});

describe("status sums of primaries' reports", () => {
  const report = {
    volume: "v",
    partition: 0,
    epoch: 1,
    session: 1,
    commitOpNum: 5,
    tailCommitted: true,
    followers: [],
  };
  test("sums chunks short of copies and bytes over the partitions that reported", () => {
    expect(
      reportedOf([
        { ...report, chunksShortOfCopies: 2, chunkBytes: 100, liveBytes: 60 },
        undefined,
        { ...report, partition: 2, chunksShortOfCopies: 1, chunkBytes: 50, liveBytes: 50 },
      ]),
    ).toEqual({
      partitions: 3,
      partitionsReported: 2,
      chunksShortOfCopies: 3,
      chunkBytes: 150,
      liveBytes: 110,
      reclaimableBytes: 40,
    });
    expect(reportedOf([report])).toEqual({ partitions: 1, partitionsReported: 1 });
  });
});
