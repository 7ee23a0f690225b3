import { createLogger } from "@ballast/runtime";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Catalogue } from "../src/catalogue.ts";
import type { Member } from "../src/membership.ts";
import { SledRecords, unauditedOf } from "../src/sled-records.ts";
import { reportedOf } from "../src/status.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";

const logger = createLogger({ service: "coordinator", nodeId: "c-1", level: "silent" });

function sled(id: string, lastHeartbeatAtMs: number, disk?: string): Member {
  return {
    ...(disk === undefined ? {} : { disk }),
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

describe("a sled back on another data directory, on the leader", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["performance", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const diskA = "a".repeat(32);
  const diskB = "b".repeat(32);
  const volume = { name: "vol", sizeBytes: 2, replicaCount: 2, partitionBytes: 1, createdAtMs: 1 };
  const record = (partition: number, primary: string) => ({
    volume: "vol",
    volumeId: "vol",
    partition,
    partitionStart: partition,
    partitionBytes: 1,
    epoch: 3,
    primary,
    secondaries: [],
    term: 1,
  });
  const entry = (partition: number, auditedDisks?: string[]) => ({
    volume: "vol",
    volumeId: "vol",
    partition,
    epoch: 3,
    session: 1,
    commitOpNum: 1,
    tailCommitted: true,
    followers: [],
    chunksShortOfCopies: 0,
    ...(auditedDisks === undefined ? {} : { auditedDisks }),
  });

  test("stays in, is refilling in status and asked audited until every primary says it audited it", async () => {
    const catalogue = new Catalogue(new FakeStore());
    const members: Member[] = [];
    const reports = new Map<string, ReturnType<typeof entry>>();
    const tenure = {
      ready: true,
      volumes: new Map([["vol", volume]]),
      records: new Map([
        ["vol/0", { value: record(0, "head-1"), revision: 1 }],
        ["vol/1", { value: record(1, "head-2"), revision: 1 }],
      ]),
      leases: {
        lastReportOf: (of: { partition: number; primary: string }) =>
          reports.get(`${of.primary}/${of.partition}`),
      },
    } as unknown as Tenure;
    const records = new SledRecords({
      logger,
      catalogue,
      heartbeats: { list: () => members, listening: () => false },
      tenures: { held: () => tenure, current: () => tenure },
      sledOutAfterMs: 60_000,
    });
    await records.tick();
    vi.advanceTimersByTime(100);
    members.push(
      sled("sled-1", performance.now(), diskA),
      sled("sled-2", performance.now(), diskA.replace(/a/g, "c")),
    );
    await records.tick();
    expect(records.toAudit(tenure)).toEqual([]);
    expect(records.list()!.every((shown) => shown.refilling === undefined)).toBe(true);

    // sled-1 restarted on a wiped directory, seconds later.
    vi.advanceTimersByTime(2000);
    members[0] = sled("sled-1", performance.now(), diskB);
    await records.tick();
    expect(records.out(tenure)).toEqual([]);
    expect(records.toAudit(tenure)).toEqual([{ sled: "sled-1", disk: diskB }]);
    const shown = records.list()!.find((one) => one.id === "sled-1")!;
    expect(shown).toMatchObject({
      state: "in",
      disk: diskB,
      refilling: { partitions: 2, volumes: ["vol"] },
    });
    expect(shown).not.toHaveProperty("refillingSince");
    expect((await catalogue.sledRecords()).find((r) => r.id === "sled-1")).toMatchObject({
      disk: diskB,
      refillingSince: expect.any(Number),
    });

    // One primary audited it, the other audited an older directory: still refilling.
    reports.set("head-1/0", entry(0, [diskB]));
    reports.set("head-2/1", entry(1, [diskA]));
    await records.tick();
    expect(records.list()!.find((one) => one.id === "sled-1")?.refilling).toMatchObject({
      partitions: 1,
    });
    expect(records.toAudit(tenure)).toHaveLength(1);
    // Both have: verified, no longer asked, persisted so.
    reports.set("head-2/1", entry(1, [diskB]));
    await records.tick();
    expect(records.toAudit(tenure)).toEqual([]);
    expect(records.list()!.find((one) => one.id === "sled-1")).not.toHaveProperty("refilling");
    expect((await catalogue.sledRecords()).find((r) => r.id === "sled-1")).not.toHaveProperty(
      "refillingSince",
    );
  });

  test("unauditedOf: a partition with no report, or of no listed volume", () => {
    const tenure = {
      volumes: new Map([["vol", volume]]),
      records: new Map([
        ["vol/0", { value: record(0, "head-1"), revision: 1 }],
        [
          "gone/0",
          { value: { ...record(0, "head-1"), volume: "gone", volumeId: "gone" }, revision: 1 },
        ],
      ]),
      leases: { lastReportOf: () => undefined },
    } as never;
    expect(unauditedOf(tenure, diskB).map((one) => one.volume)).toEqual(["vol"]);
  });
});
