// The reconciler decides a partition again only when an input of its last `keep`
// changed (issue 14: an idle cost flat in partitions), with a full pass every
// catalogueRefreshMs as a safety net.

import { createLogger } from "@ballast/runtime";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { VolumeRecord } from "../src/catalogue.ts";
import { Configurer } from "../src/configurer.ts";
import { catalogueRefreshMs, catalogueRereadMsMax } from "../src/constants.ts";
import type { PartitionRecord, Report } from "../src/decisions.ts";
import { partitionKey } from "../src/leases.ts";
import { membersKey, Reconciler, reportText, settledOn } from "../src/reconciler.ts";
import { forgetConfigured, newTenure, type Tenure } from "../src/tenure.ts";

const volume: VolumeRecord = {
  name: "vol",
  id: "1-abc",
  sizeBytes: 3 * 1024 * 1024,
  replicaCount: 2,
  partitionBytes: 1024 * 1024,
  createdAtMs: 0,
};

function record(partition: number, extra: Partial<PartitionRecord> = {}): PartitionRecord {
  return {
    volume: "vol",
    volumeId: "1-abc",
    partition,
    partitionStart: partition * volume.partitionBytes,
    partitionBytes: volume.partitionBytes,
    epoch: 1,
    primary: "head-1",
    secondaries: ["head-2"],
    term: 1,
    ...extra,
  };
}

function report(partition: number, commitOpNum: number): Report {
  return {
    volume: "vol",
    volumeId: "1-abc",
    partition,
    epoch: 1,
    session: 1,
    commitOpNum,
    tailCommitted: true,
    followers: [{ node: "head-2", matchOpNum: commitOpNum, learner: false }],
  };
}

let clockMs = 1000;

function setup() {
  const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
  tenure.ready = true;
  tenure.refreshing = true; // no catalogue reads in these tests
  tenure.volumes.set("vol", volume);
  for (const partition of [0, 1, 2]) {
    const value = record(partition);
    tenure.records.set(partitionKey(value), { value, revision: partition + 1 });
  }
  const alive = new Set(["head-1", "head-2"]);
  const decided: number[] = [];
  const real = new Configurer({} as never, {} as never, { held: () => tenure } as never);
  const configurer = {
    // Configures every live member at once, as an instant and successful push would.
    configure(t: Tenure, value: PartitionRecord, live: ReadonlySet<string>) {
      decided.push(value.partition);
      const key = partitionKey(value);
      const nodes = t.configured.get(key) ?? new Map();
      t.configured.set(key, nodes);
      for (const node of [value.primary, ...value.secondaries, ...(value.learners ?? [])]) {
        if (live.has(node)) nodes.set(node, { epoch: value.epoch, atMs: clockMs });
      }
      return Promise.resolve();
    },
    current: real.current.bind(real),
  };
  const reconciler = new Reconciler({
    logger: createLogger({ service: "test", nodeId: "test", level: "silent" }),
    catalogue: {} as never,
    heartbeats: {
      listening: () => false,
      aliveHeadNodes: () => new Set(alive),
      aliveSleds: () => ["sled-1"],
    },
    configurer,
    tenures: { held: () => tenure, current: () => tenure },
  });
  /** The partitions decided by one round. */
  const round = (): number[] => {
    decided.length = 0;
    reconciler.reconcile();
    return [...decided].sort();
  };
  return { tenure, alive, round };
}

describe("Reconciler: deciding only what changed", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  it("decides a settled partition again only when one of its inputs changes", () => {
    const { tenure, alive, round } = setup();
    expect(round()).toEqual([0, 1, 2]);
    clockMs += 500;
    expect(round()).toEqual([]);

    // A report with new content (a write committed) on partition 1 only.
    const live = new Set(alive);
    tenure.leases.onNodeReport(
      { node: "head-1", primaries: [report(1, 5)] },
      (_, partition) => record(partition),
      live,
      clockMs,
    );
    clockMs += 500;
    expect(round()).toEqual([1]);
    // The same content again, as an idle primary reports every interval: nothing.
    tenure.leases.onNodeReport(
      { node: "head-1", primaries: [report(1, 5)] },
      (_, partition) => record(partition),
      live,
      clockMs,
    );
    clockMs += 500;
    expect(round()).toEqual([]);

    // A new revision of partition 2's record.
    const key = partitionKey(record(2));
    tenure.records.set(key, { value: record(2), revision: 10 });
    clockMs += 500;
    expect(round()).toEqual([2]);

    // A head node joins: every partition.
    alive.add("head-3");
    clockMs += 500;
    expect(round()).toEqual([0, 1, 2]);
    clockMs += 500;
    expect(round()).toEqual([]);

    // A member restarted: its configuration is forgotten, so every partition it holds.
    forgetConfigured(tenure, "head-2");
    clockMs += 500;
    expect(round()).toEqual([0, 1, 2]);
    clockMs += 500;
    expect(round()).toEqual([]);
  });

  it("runs a full pass every catalogueRefreshMs all the same", () => {
    const { round } = setup();
    expect(round()).toEqual([0, 1, 2]);
    clockMs += catalogueRefreshMs - 1;
    expect(round()).toEqual([]);
    clockMs += 1;
    expect(round()).toEqual([0, 1, 2]);
  });

  it("decides every round a partition with learners (their progress is timed)", () => {
    const { tenure, alive, round } = setup();
    alive.add("head-3");
    const value = record(0, { learners: ["head-3"] });
    tenure.records.set(partitionKey(value), { value, revision: 20 });
    expect(round()).toEqual([0, 1, 2]);
    clockMs += 500;
    expect(round()).toEqual([0]);
    clockMs += 500;
    expect(round()).toEqual([0]);
  });

  it("compares reports by content", () => {
    const first = report(0, 3);
    const settled = {
      revision: 1,
      volume,
      members: membersKey(new Set(["head-1"]), ["sled-1"]),
      report: first,
      reportText: reportText(first),
    };
    const inputs = { revision: 1, volume, members: settled.members };
    expect(settledOn(settled, { ...inputs, report: report(0, 3) })).toBe(true);
    expect(settledOn(settled, { ...inputs, report: report(0, 4) })).toBe(false);
    expect(settledOn(settled, { ...inputs, report: undefined })).toBe(false);
    expect(settledOn(settled, { ...inputs, report: first, revision: 2 })).toBe(false);
    expect(membersKey(new Set(["b", "a"]), ["s2", "s1"])).toBe(
      membersKey(new Set(["a", "b"]), ["s1", "s2"]),
    );
  });
});

describe("Reconciler: re-reading the catalogue only when it changed", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  function watched(version: () => number | undefined) {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    tenure.volumes.set("vol", volume);
    const value = record(0);
    tenure.records.set(partitionKey(value), { value, revision: 1 });
    let reads = 0;
    const reconciler = new Reconciler({
      logger: createLogger({ service: "test", nodeId: "test", level: "silent" }),
      catalogue: {
        volumes: async () => [volume],
        allPartitions: async () => {
          reads++;
          return [{ value, revision: 1 }];
        },
      } as never,
      heartbeats: {
        listening: () => false,
        aliveHeadNodes: () => new Set(["head-1", "head-2"]),
        aliveSleds: () => ["sled-1"],
      },
      configurer: { configure: () => Promise.resolve(), current: () => true },
      tenures: { held: () => tenure, current: () => tenure },
      changes: { version },
    });
    /** Rounds every 500 ms for `ms`; returns the catalogue reads they made. */
    const run = async (ms: number) => {
      const before = reads;
      for (let elapsed = 0; elapsed < ms; elapsed += 500) {
        clockMs += 500;
        reconciler.reconcile();
        await new Promise((resolve) => setImmediate(resolve));
      }
      return reads - before;
    };
    return { run };
  }

  it("skips a re-read while the watch saw no change, and reads at least every catalogueRereadMsMax", async () => {
    let version = 7;
    const { run } = watched(() => version);
    expect(await run(catalogueRefreshMs)).toBe(1); // the first: the watch's count is new
    expect(await run(4 * catalogueRefreshMs)).toBe(0);
    version++; // a record changed
    expect(await run(catalogueRefreshMs)).toBe(1);
    expect(await run(catalogueRereadMsMax - catalogueRefreshMs)).toBe(0);
    expect(await run(2 * catalogueRefreshMs)).toBe(1);
  });

  it("re-reads on every interval while the catalogue is not watched", async () => {
    const { run } = watched(() => undefined);
    expect(await run(4 * catalogueRefreshMs)).toBe(4);
  });
});
