import { createLogger } from "@ballast/runtime";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Catalogue } from "../src/catalogue.ts";
import type { Member } from "../src/membership.ts";
import { copiesWholeSince, SledRecords } from "../src/sled-records.ts";
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

describe("copiesWholeSince: when a sled back on another disk may come back in (unit)", () => {
  test("only once every listed partition's primary reported, after the out, no chunk short", () => {
    const volume = {
      name: "vol",
      sizeBytes: 1,
      replicaCount: 2,
      partitionBytes: 1,
      createdAtMs: 1,
    };
    const record = {
      volume: "vol",
      volumeId: "vol",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 1,
      epoch: 3,
      primary: "head-1",
      secondaries: ["head-2"],
      term: 1,
    };
    let reportedAtMs: number | undefined = 1_000;
    let report: Record<string, unknown> | undefined = { epoch: 3, chunksShortOfCopies: 2 };
    const tenure = {
      ready: true,
      volumes: new Map([["vol", volume]]),
      records: new Map([["vol/0", { value: record, revision: 1 }]]),
      leases: { reportedAtMs: () => reportedAtMs, reportOf: () => report },
    } as never;
    // Too soon after the out: a report then may not know the sled is out.
    expect(copiesWholeSince(tenure, 1_000, 1_500)).toBe(false);
    // Reported since, but short of copies.
    reportedAtMs = 4_000;
    expect(copiesWholeSince(tenure, 1_000, 4_000)).toBe(false);
    report = { epoch: 3, chunksShortOfCopies: 0 };
    expect(copiesWholeSince(tenure, 1_000, 4_000)).toBe(true);
    // A report of another epoch, a failed primary, or none recent: not known whole.
    report = { epoch: 2, chunksShortOfCopies: 0 };
    expect(copiesWholeSince(tenure, 1_000, 4_000)).toBe(false);
    report = { epoch: 3, failed: true };
    expect(copiesWholeSince(tenure, 1_000, 4_000)).toBe(false);
    report = undefined;
    expect(copiesWholeSince(tenure, 1_000, 4_000)).toBe(false);
    // Its last accepted report before the out: not known to count the sled out.
    report = { epoch: 3, chunksShortOfCopies: 0 };
    reportedAtMs = 2_000;
    expect(copiesWholeSince(tenure, 1_000, 4_000)).toBe(false);
  });
});
