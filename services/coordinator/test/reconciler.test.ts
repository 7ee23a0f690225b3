// The reconciler decides a partition again only when an input of its last `keep`
// changed (issue 14: an idle cost flat in partitions), and each settled partition at
// its own point of settledRecheckMs as a safety net.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { createLogger } from "@ballast/runtime";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Catalogue, keys, type VolumeRecord } from "../src/catalogue.ts";
import { Configurer, refreshDue } from "../src/configurer.ts";
import {
  catalogueRefreshMs,
  catalogueRereadMsMax,
  configureRefreshMs,
  configureVerifyMs,
  flushStallNodesMemoryMs,
  primaryUnconfirmedMsMax,
  reconcileSliceMax,
  settledRecheckMs,
} from "../src/constants.ts";
import type { PartitionRecord, Report } from "../src/decisions.ts";
import { partitionKey } from "../src/leases.ts";
import {
  membersKey,
  Reconciler,
  type SettledInputs,
  settle,
  settledCheck,
  spreadMs,
} from "../src/reconciler.ts";
import { SledReach } from "../src/sled-reach.ts";
import { forgetConfigured, newTenure, type Tenure, touch } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";

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

/** `hung`: nodes whose configures never complete (a hung disk): never acknowledged. */
function setup(
  catalogue: unknown = {},
  hung: ReadonlySet<string> = new Set(),
  /** Partitions whose configures are not sent (they wait for a slot). */
  held: ReadonlySet<number> = new Set(),
  sleds: readonly string[] = ["sled-1"],
  records: (partition: number) => PartitionRecord = record,
  flushStallFailover = false,
  sledReach?: SledReach,
) {
  const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
  tenure.ready = true;
  tenure.refreshing = true; // no catalogue reads in these tests
  tenure.volumes.set("vol", volume);
  for (const partition of [0, 1, 2]) {
    const value = records(partition);
    tenure.records.set(partitionKey(value), { value, revision: partition + 1 });
  }
  const alive = new Set(["head-1", "head-2"]);
  const decided: number[] = [];
  const real = new Configurer(
    {} as never,
    {} as never,
    { held: () => tenure } as never,
    {} as never,
  );
  const configurer = {
    // Configures every live member at once, as an instant and successful push would.
    configure(
      t: Tenure,
      value: PartitionRecord,
      live: ReadonlySet<string>,
      sleds: readonly string[],
    ) {
      decided.push(value.partition);
      if (held.has(value.partition)) return Promise.resolve();
      const key = partitionKey(value);
      const nodes = t.configured.get(key) ?? new Map();
      t.configured.set(key, nodes);
      const asked = t.asked.get(key) ?? new Map<string, { epoch: number; atMs: number }>();
      t.asked.set(key, asked);
      for (const node of [value.primary, ...value.secondaries, ...(value.learners ?? [])]) {
        if (live.has(node)) asked.set(node, { epoch: value.epoch, atMs: clockMs });
        if (live.has(node) && !hung.has(node)) {
          nodes.set(node, { epoch: value.epoch, atMs: clockMs, sleds: [...sleds] });
        }
      }
      return Promise.resolve();
    },
    current: real.current.bind(real),
  };
  const reconciler = new Reconciler({
    logger: createLogger({ service: "test", nodeId: "test", level: "silent" }),
    catalogue: catalogue as never,
    heartbeats: {
      listening: () => false,
      aliveHeadNodes: () => new Set(alive),
      aliveSleds: () => [...sleds],
      headNodeDisks: () => new Map(),
    },
    configurer,
    tenures: { held: () => tenure, current: () => tenure },
    flushStallFailover,
    ...(sledReach === undefined ? {} : { sledReach }),
  });
  /** The partitions decided by one round. */
  const round = (): number[] => {
    decided.length = 0;
    reconciler.reconcile();
    return [...decided].sort();
  };
  return { tenure, alive, round, reconciler, decided };
}

describe("Reconciler: the catalogue re-read past a damaged record", () => {
  beforeEach(() => {
    clockMs = 100_000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  it("reads every other record, and keeps what it held of the damaged one", async () => {
    const store = new FakeStore();
    store.put(keys.volume("vol"), volume);
    store.put(keys.partition("vol", 0), record(0, { epoch: 2 }));
    store.put(keys.partition("vol", 1), { volume: "vol", partition: "1", epoch: -1 });
    store.put(keys.partition("vol", 2), record(2));
    const { tenure, round } = setup(new Catalogue(store));
    tenure.refreshing = false;
    tenure.refreshedAtMs = clockMs - catalogueRefreshMs;
    round();
    // The re-read finished (before, the damaged record failed it, every pass)...
    await vi.waitFor(() => expect(tenure.refreshedAtMs).toBe(clockMs));
    expect(tenure.records.get(partitionKey(record(0)))?.value.epoch).toBe(2);
    // ...and the partition it could not read is not taken for deleted, nor its volume.
    expect(tenure.records.get(partitionKey(record(1)))?.value).toEqual(record(1));
    expect(tenure.volumes.get("vol")).toEqual(volume);
    // A volume record that does not decode is kept the same way.
    store.put(keys.volume("vol"), { name: "vol", sizeBytes: "huge" });
    clockMs += catalogueRefreshMs;
    round();
    await vi.waitFor(() => expect(tenure.refreshedAtMs).toBe(clockMs));
    expect(tenure.volumes.get("vol")).toEqual(volume);
    expect(tenure.records.size).toBe(3);
  });

  it("forgets a damaged partition record once its key is removed rather than rewritten", async () => {
    const store = new FakeStore();
    const catalogue = new Catalogue(store);
    store.put(keys.volume("vol"), volume);
    store.put(keys.partition("vol", 0), record(0));
    store.put(keys.partition("vol", 1), { volume: "vol", partition: "1", epoch: -1 });
    const { tenure, round } = setup(catalogue);
    tenure.refreshing = false;
    tenure.refreshedAtMs = clockMs - catalogueRefreshMs;
    round();
    await vi.waitFor(() => expect(tenure.refreshedAtMs).toBe(clockMs));
    expect(catalogue.unreadable.has(keys.partition("vol", 1))).toBe(true);
    expect(tenure.records.has(partitionKey(record(1)))).toBe(true);
    // The operator's repair: the damaged key removed (with any NATS tool). Only a read
    // of that very key cleared it before, and the listings never read it again: the
    // leader kept acting on the partition for as long as it led.
    await store.delete(keys.partition("vol", 1));
    clockMs += catalogueRefreshMs;
    round();
    await vi.waitFor(() => expect(tenure.refreshedAtMs).toBe(clockMs));
    expect(catalogue.unreadable.keys()).toEqual([]);
    expect(tenure.records.has(partitionKey(record(1)))).toBe(false);
    expect(tenure.records.has(partitionKey(record(0)))).toBe(true);
  });
});

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

  it("drops a secondary at once when its own node reports its replica failed while idle", async () => {
    // Issue 14 made the configure refresh 300 s and settled partitions are decided only
    // on change: a secondary whose journal failed with no write to stall on it used to
    // go unseen (the partition on one good copy) until a refresh reopened it.
    const updates: PartitionRecord[] = [];
    const { tenure, alive, round } = setup({
      updatePartition: (next: PartitionRecord) => {
        updates.push(next);
        return Promise.resolve({ applied: true, revision: 100 });
      },
    });
    expect(round()).toEqual([0, 1, 2]);
    clockMs += 500;
    expect(round()).toEqual([]);

    // head-2 reports its replica of partition 1 failed, in the record's epoch. Its
    // primary's report says nothing new (no write waits on it).
    const recordOf = (_: string, partition: number) => record(partition);
    const outcome = tenure.leases.onNodeReport(
      {
        node: "head-2",
        session: 1,
        seq: 1,
        primaries: [],
        failures: [{ volume: "vol", volumeId: "1-abc", partition: 1, epoch: 1 }],
      },
      recordOf,
      new Set(alive),
      clockMs,
    );
    expect(outcome).toMatchObject({ accepted: 1, held: 0, heldFailures: 1, urgent: true });
    // The next round (the shell runs one at once on an urgent report) drops it.
    clockMs += 1;
    round();
    await new Promise((resolve) => setImmediate(resolve));
    expect(updates).toHaveLength(1);
    expect(updates[0]).toMatchObject({
      partition: 1,
      epoch: 2,
      primary: "head-1",
      secondaries: [],
    });

    // A failure of an earlier epoch (before the configure that reopens it) drops nothing.
    tenure.leases.onNodeReport(
      {
        node: "head-2",
        session: 1,
        seq: 2,
        base: 1,
        primaries: [],
        failures: [{ volume: "vol", volumeId: "1-abc", partition: 2, epoch: 0 }],
        failuresGone: [{ volume: "vol", partition: 1 }],
      },
      recordOf,
      new Set(alive),
      clockMs,
    );
    clockMs += 500;
    round();
    await new Promise((resolve) => setImmediate(resolve));
    expect(updates.filter((update) => update.partition === 2)).toEqual([]);
  });

  it("fails a failed primary over to its secondary instead of configuring it again in place", async () => {
    // The old configurer pushed the configure to a primary reporting itself failed once
    // configureVerifyMs had passed since its ack (at once in a settled cluster), during
    // the wait for its lease: the reopen in place called the failover off. The real
    // configurer here, with a bus that records what it sends. Partition 1's secondary,
    // head-3, comes back on another disk as the primary fails: it has nothing to promote.
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    tenure.refreshing = true;
    tenure.volumes.set("vol", volume);
    for (const [partition, secondary] of [
      [0, "head-2"],
      [1, "head-3"],
    ] as const) {
      const value = record(partition, {
        secondaries: [secondary],
        disks: { "head-1": "d1", [secondary]: `d${secondary.at(-1)}` },
      });
      tenure.records.set(partitionKey(value), { value, revision: partition + 1 });
    }
    const sent: { node: string; partition: number; epoch: number }[] = [];
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string, message: { partition: number; epoch: number }) => {
            const { partition, epoch } = message;
            sent.push({ node: subject.split(".").at(-1)!, partition, epoch });
            return {};
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    const updates: PartitionRecord[] = [];
    const alive = new Set(["head-1", "head-2", "head-3"]);
    const liveDisks = new Map([
      ["head-1", "d1"],
      ["head-2", "d2"],
      ["head-3", "d3"],
    ]);
    const reconciler = new Reconciler({
      logger: createLogger({ service: "test", nodeId: "test", level: "silent" }),
      catalogue: {
        updatePartition: (next: PartitionRecord) => {
          updates.push(next);
          return Promise.resolve({ applied: true, revision: 100 + updates.length });
        },
      } as never,
      heartbeats: {
        listening: () => false,
        aliveHeadNodes: () => new Set(alive),
        aliveSleds: () => ["sled-1"],
        headNodeDisks: () => liveDisks,
      },
      configurer,
      tenures: { held: () => tenure, current: () => tenure },
    });
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    const primaryReports = (seq: number, failed: boolean) =>
      tenure.leases.onNodeReport(
        {
          node: "head-1",
          session: 1,
          seq,
          primaries: [0, 1].map((partition) => ({
            ...report(partition, 5),
            ...(failed ? { failed, tailCommitted: false, followers: [] } : {}),
          })),
        },
        (_, partition) => tenure.records.get(`1-abc/${partition}`)?.value,
        alive,
        clockMs,
      );
    reconciler.reconcile();
    await settle();
    expect(sent).toHaveLength(4);
    // Settled and leased: the epoch was acknowledged long ago, the lease runs.
    clockMs += configureVerifyMs + 1000;
    primaryReports(1, false);
    reconciler.reconcile();
    await settle();
    sent.length = 0;
    // head-1's journal fails; head-3 is back on another disk.
    liveDisks.set("head-3", "d3-new");
    clockMs += 10;
    primaryReports(2, true);
    reconciler.reconcile();
    await settle();
    // Partition 0 waits for the lease and sends its failed primary nothing; partition 1
    // has nothing to promote (head-3 is on another disk than its record's), so its
    // primary is configured again at once: the reopen is its way out.
    expect(sent).toEqual([{ node: "head-1", partition: 1, epoch: 1 }]);
    expect(updates).toEqual([]);
    sent.length = 0;
    // Once the lease has run out, partition 0's secondary is promoted.
    clockMs += 4000;
    primaryReports(3, true);
    reconciler.reconcile();
    await settle();
    expect(updates).toMatchObject([{ partition: 0, epoch: 2, primary: "head-2" }]);
    expect(sent.filter((push) => push.node === "head-1" && push.partition === 0)).toEqual([
      { node: "head-1", partition: 0, epoch: 2 },
    ]);
  });

  /**
   * A reconciler with the real configurer over a fake bus (unit test): head nodes answer
   * configures with `answer(node)`, the heartbeats say head-1 and head-2 alive (`alive`)
   * with the disks `disks()`, and partition 0's record is placed before disk ids.
   * `keepRecords` writes each update back as the catalogue would.
   */
  const legacyReconciler = (options: {
    answer: (node: string) => Promise<unknown>;
    disks: () => Map<string, string>;
    keepRecords: boolean;
  }) => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    tenure.refreshing = true;
    tenure.volumes.set("vol", volume);
    const legacy = record(0);
    tenure.records.set(partitionKey(legacy), { value: legacy, revision: 1 });
    const configurer = new Configurer(
      {
        bus: { request: (subject: string) => options.answer(subject.split(".").at(-1)!) },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    const updates: PartitionRecord[] = [];
    const alive = new Set(["head-1", "head-2"]);
    const reconciler = new Reconciler({
      logger: createLogger({ service: "test", nodeId: "test", level: "silent" }),
      catalogue: {
        updatePartition: (next: PartitionRecord) => {
          updates.push(next);
          const revision = 100 + updates.length;
          if (options.keepRecords)
            tenure.records.set(partitionKey(next), { value: next, revision });
          return Promise.resolve({ applied: true, revision });
        },
      } as never,
      heartbeats: {
        listening: () => false,
        aliveHeadNodes: () => new Set(alive),
        aliveSleds: () => ["sled-1"],
        headNodeDisks: options.disks,
      },
      configurer,
      tenures: { held: () => tenure, current: () => tenure },
    });
    const settleAll = () => new Promise((resolve) => setImmediate(resolve));
    const rounds = async (count: number) => {
      for (let i = 0; i < count; i++) {
        reconciler.reconcile();
        await settleAll();
        await settleAll();
      }
    };
    return { tenure, legacy, updates, alive, rounds };
  };

  it("records the disk of a member placed before disk ids from its configure answer, and fails over a primary that refuses for holding nothing", async () => {
    // The real configurer, with head nodes that answer as headnode.ts does: the disk
    // holding the replica, or a `no-replica` refusal once head-1 is back on an empty disk.
    /** Each node's disk now, and whether it still holds its replica; old: no disk said. */
    const nodes = new Map([
      ["head-1", { disk: "d1", holds: true, old: true }],
      ["head-2", { disk: "d2", holds: true, old: true }],
    ]);
    const { tenure, legacy, updates, rounds } = legacyReconciler({
      answer: async (id) => {
        const node = nodes.get(id)!;
        if (!node.holds) {
          throw new BallastError(ErrorCode.NotFound, "holds nothing", {
            details: { refusal: "no-replica" },
          });
        }
        return node.old ? {} : { disk: node.disk };
      },
      disks: () => new Map([...nodes].map(([id, node]) => [id, node.disk])),
      keepRecords: false,
    });
    // Head nodes that say no disk: heartbeats alone fill nothing in.
    await rounds(3);
    expect(updates).toEqual([]);
    // Restarted (configured again) as head nodes that answer with their disk: recorded,
    // in the same epoch.
    for (const node of nodes.values()) node.old = false;
    forgetConfigured(tenure, "head-1");
    forgetConfigured(tenure, "head-2");
    await rounds(3);
    expect(updates).toHaveLength(1);
    expect(updates[0]).toMatchObject({ epoch: 1, disks: { "head-1": "d1", "head-2": "d2" } });
    // Now a record with only head-2's disk (head-1 not yet heard from): head-1 comes back
    // on an empty disk; it refuses, and head-2 is promoted once the lease has run out.
    updates.length = 0;
    const partly = { ...legacy, disks: { "head-2": "d2" } };
    tenure.records.set(partitionKey(legacy), { value: partly, revision: 200 });
    nodes.set("head-1", { disk: "d1-new", holds: false, old: false });
    forgetConfigured(tenure, "head-1");
    clockMs += 10_000;
    await rounds(2);
    expect(updates).toMatchObject([{ epoch: 2, primary: "head-2", secondaries: [] }]);
    expect(updates[0]!.disks).toEqual({ "head-2": "d2" });
  });

  it("promotes a secondary placed before disk ids only once it has answered the record's epoch (seed 9712321)", async () => {
    // head-2's configures wait on a hung disk (they time out) from the volume's
    // placement on; its heartbeats go on. Promoted on them alone it refused the epoch
    // once its disk answered, holding nothing, with the old primary out of the record.
    let hung = true;
    const { tenure, legacy, updates, alive, rounds } = legacyReconciler({
      answer: async (node) => {
        if (node === "head-2" && hung) throw new BallastError(ErrorCode.Timeout, "hung");
        return { disk: node === "head-1" ? "d1" : "d2" };
      },
      disks: () =>
        new Map([
          ["head-1", "d1"],
          ["head-2", "d2"],
        ]),
      keepRecords: true,
    });
    await rounds(3);
    // head-1 answered: its disk is recorded; head-2 has said nothing.
    expect(updates).toMatchObject([{ epoch: 1, disks: { "head-1": "d1" } }]);
    updates.length = 0;
    alive.delete("head-1");
    clockMs += 10_000;
    await rounds(3);
    expect(updates).toEqual([]);
    expect(tenure.unavailable.get(partitionKey(legacy))).toMatch(/head-2: not yet answered/);
    // Its disk answers: proven there, it is promoted, and that disk recorded.
    hung = false;
    clockMs += configureRefreshMs;
    await rounds(3);
    expect(updates).toMatchObject([
      { epoch: 2, primary: "head-2", secondaries: [], disks: { "head-2": "d2" } },
    ]);
  });

  it("decides each settled partition again at its own point of settledRecheckMs", () => {
    const { tenure, round } = setup();
    expect(round()).toEqual([0, 1, 2]);
    const due = [0, 1, 2].map((partition) => ({
      partition,
      atMs: clockMs + spreadMs(partitionKey(record(partition)), settledRecheckMs),
    }));
    due.sort((a, b) => a.atMs - b.atMs);
    // Nothing before the first is due, whatever the number of rounds.
    const startMs = clockMs;
    for (clockMs = startMs + 500; clockMs < due[0]!.atMs; clockMs += 500) {
      expect(round()).toEqual([]);
    }
    // Then each exactly when it is due, not all in one round.
    const decided: number[] = [];
    for (; clockMs <= due[2]!.atMs + 500; clockMs += 500) {
      const now = round();
      for (const partition of now) {
        const at = due.find((one) => one.partition === partition)!.atMs;
        expect(clockMs).toBeGreaterThanOrEqual(at);
        expect(clockMs - at).toBeLessThan(500);
      }
      decided.push(...now);
    }
    expect(decided.sort()).toEqual([0, 1, 2]);
    expect(tenure.records.size).toBe(3);
  });

  it("decides a settled partition again when a member's configuration is acknowledged anew", () => {
    const { tenure, round } = setup();
    expect(round()).toEqual([0, 1, 2]);
    clockMs += 500;
    expect(round()).toEqual([]);
    // A refresh acknowledged (a new entry, the same epoch): that partition only.
    // Whoever edits an acknowledgement in place says so (`touch`), as configurer.ts does.
    const key = partitionKey(record(1));
    const nodes = tenure.configured.get(key)!;
    nodes.set("head-2", { epoch: 1, atMs: clockMs });
    touch(tenure, key);
    clockMs += 500;
    expect(round()).toEqual([1]);
    // A former member that holds nothing is forgotten: decided again too.
    nodes.set("head-9", { epoch: 1, atMs: clockMs });
    touch(tenure, key);
    clockMs += 500;
    expect(round()).toEqual([1]);
    nodes.delete("head-9");
    touch(tenure, key);
    clockMs += 500;
    expect(round()).toEqual([1]);
    clockMs += 500;
    expect(round()).toEqual([]);
  });

  it("forgets what it remembered of partitions the catalogue no longer holds", () => {
    const { tenure, round, reconciler } = setup();
    expect(round()).toEqual([0, 1, 2]);
    expect(reconciler.settledCount()).toBe(3);
    // Partition 2 deleted (a volume deleted or shrunk): forgotten within a period.
    tenure.records.delete(partitionKey(record(2)));
    const startMs = clockMs;
    for (clockMs += 500; clockMs <= startMs + settledRecheckMs; clockMs += 500) round();
    expect(reconciler.settledCount()).toBe(2);
  });

  it("decides every round a partition whose primary reports an older epoch", () => {
    const { tenure, alive, round } = setup();
    tenure.leases.onNodeReport(
      { node: "head-1", primaries: [{ ...report(0, 3), epoch: 0 }] },
      (_, partition) => record(partition),
      new Set(alive),
      clockMs,
    );
    expect(round()).toEqual([0, 1, 2]);
    clockMs += 500;
    expect(round()).toEqual([0]);
    // Its report catches up: settled.
    tenure.leases.onNodeReport(
      { node: "head-1", primaries: [report(0, 3)] },
      (_, partition) => record(partition),
      new Set(alive),
      clockMs,
    );
    clockMs += 500;
    expect(round()).toEqual([0]);
    clockMs += 500;
    expect(round()).toEqual([]);
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

  it("compares reports by content, and every other input by identity", () => {
    const first = report(0, 3);
    const acknowledged = new Map([
      ["head-1", { epoch: 1, atMs: 0 }],
      ["head-2", { epoch: 1, atMs: 0 }],
    ]);
    const inputs: SettledInputs = {
      revision: 1,
      volume,
      members: membersKey(new Set(["head-1"]), ["sled-1"]),
      report: first,
      failed: "",
      acknowledged,
    };
    const settled = settle("vol/0", inputs, 0);
    const check = (changes: Partial<SettledInputs>, nowMs = 1) =>
      settledCheck(settled, { ...inputs, ...changes }, nowMs);
    expect(check({})).toBe("settled");
    expect(check({ report: report(0, 3) })).toBe("same-report");
    expect(check({ report: report(0, 4) })).toBe("decide");
    expect(check({ report: undefined })).toBe("decide");
    expect(check({ revision: 2 })).toBe("decide");
    expect(check({ failed: "head-2" })).toBe("decide");
    expect(check({ volume: { ...volume } })).toBe("decide");
    expect(check({ members: membersKey(new Set(["head-2"]), ["sled-1"]) })).toBe("decide");
    expect(check({ acknowledged: undefined })).toBe("decide");
    expect(check({ acknowledged: new Map(acknowledged) })).toBe("decide");
    // Entries replaced (forgetConfigured, a new acknowledgement) or added in place.
    acknowledged.set("head-2", { epoch: -1, atMs: 0 });
    expect(check({})).toBe("decide");
    acknowledged.set("head-2", settled.acks[1]![1]);
    expect(check({})).toBe("settled");
    acknowledged.set("head-3", { epoch: 1, atMs: 0 });
    expect(check({})).toBe("decide");
    acknowledged.delete("head-3");
    // The safety net, by time alone.
    expect(check({}, settled.dueAtMs - 1)).toBe("settled");
    expect(check({}, settled.dueAtMs)).toBe("decide");
    expect(membersKey(new Set(["b", "a"]), ["s2", "s1"])).toBe(
      membersKey(new Set(["a", "b"]), ["s1", "s2"]),
    );
  });

  it("spreads periodic work over the second half of its period, by key", () => {
    const points = Array.from({ length: 1000 }, (_, i) => spreadMs(`vol/${i}@head-1`, 60_000));
    for (const point of points) {
      expect(point).toBeGreaterThanOrEqual(30_000);
      expect(point).toBeLessThanOrEqual(60_000);
    }
    expect(spreadMs("vol/7@head-1", 60_000)).toBe(points[7]);
    // Spread, not bunched: every tenth of the half period holds some of them.
    const buckets = new Set(points.map((point) => Math.floor((point - 30_000) / 3000)));
    expect(buckets.size).toBeGreaterThanOrEqual(10);
    // A configuration refresh is due at the member's own point, never before half.
    const member = "vol/3@head-2";
    const at = spreadMs(member, configureRefreshMs);
    expect(refreshDue(member, 0, configureRefreshMs / 2 - 1)).toBe(false);
    expect(refreshDue(member, 0, at - 1)).toBe(false);
    expect(refreshDue(member, 0, at)).toBe(true);
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
        headNodeDisks: () => new Map(),
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

describe("Reconciler: looking only where a change event points", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  /** Reports by change from each node, as head nodes send them (empty when idle). */
  function reporter(tenure: Tenure, alive: Set<string>) {
    const seqs = new Map<string, number>();
    const recordOf = (_: string, partition: number) =>
      tenure.records.get(partitionKey(record(partition)))?.value;
    return (node: string, change: Partial<NodeReportChange> = {}) => {
      const seq = seqs.get(node);
      const next = (seq ?? 0) + 1;
      seqs.set(node, next);
      return tenure.leases.onNodeReport(
        {
          node,
          session: 1,
          seq: next,
          ...(seq === undefined ? {} : { base: seq }),
          primaries: [],
          ...change,
        },
        recordOf,
        new Set(alive),
        clockMs,
      );
    };
  }
  type NodeReportChange = Parameters<Tenure["leases"]["onNodeReport"]>[0];

  function settledSetup(updates: PartitionRecord[] = []) {
    const context = setup({
      updatePartition: (next: PartitionRecord) => {
        updates.push(next);
        return Promise.resolve({ applied: true, revision: 100 + updates.length });
      },
    });
    const send = reporter(context.tenure, context.alive);
    send("head-1", { primaries: [0, 1, 2].map((partition) => report(partition, 3)) });
    send("head-2");
    expect(context.round()).toEqual([0, 1, 2]);
    clockMs += 500;
    send("head-1");
    send("head-2");
    expect(context.round()).toEqual([]);
    return { ...context, send };
  }

  it("decides on the next round a partition whose input changed, and no other", async () => {
    const updates: PartitionRecord[] = [];
    const { tenure, alive, round, send, reconciler } = settledSetup(updates);
    const next = () => {
      clockMs += 500;
      send("head-1");
      if (alive.has("head-2")) send("head-2");
      expect(reconciler.missed(clockMs)).toEqual([]);
      const before = updates.length;
      const configured = round();
      const updated = updates.slice(before).map((update) => update.partition);
      return [...new Set([...configured, ...updated])].sort();
    };
    // A report with a stalled follower (an urgent report) on partition 2.
    const stalled = {
      ...report(2, 3),
      followers: [{ node: "head-2", matchOpNum: 1, learner: false, stalledMs: 60_000 }],
    };
    expect(send("head-1", { primaries: [stalled] }).urgent).toBe(true);
    expect(round()).toEqual([]);
    // Decided, and the decision is an update (head-2 dropped), not a configure.
    expect(updates.map((update) => update.partition)).toEqual([2]);
    await new Promise((resolve) => setImmediate(resolve));
    // A secondary's own node reports its replica failed (urgent) on partition 0.
    expect(
      send("head-2", {
        failures: [{ volume: "vol", volumeId: "1-abc", partition: 0, epoch: 1 }],
      }).urgent,
    ).toBe(true);
    round();
    // (Partition 2's new record is decided again too: its record changed.)
    expect(updates.slice(1).map((update) => update.partition)).toContain(0);
    await new Promise((resolve) => setImmediate(resolve));
    // A catalogue change: partition 1's record at a new revision.
    const entry = tenure.records.get(partitionKey(record(1)))!;
    tenure.records.set(partitionKey(record(1)), { ...entry, revision: entry.revision + 10 });
    expect(next()).toContain(1);
    // Settles again once the drops are written and configured.
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      next();
    }
    // Partitions 0 and 2 lack a replica (head-2 is avoided): decided every round.
    expect(next()).toEqual([0, 2]);
    // A head node's death: the settled partition 1 too.
    alive.delete("head-2");
    expect(next()).toEqual([0, 1, 2]);
  });

  it("decides a settled partition at its safety-net point with no event at all", () => {
    const { round, send } = settledSetup();
    const startMs = clockMs;
    const seen = new Map<number, number>();
    for (clockMs += 500; clockMs <= startMs + settledRecheckMs + 500; clockMs += 500) {
      send("head-1");
      send("head-2");
      for (const partition of round()) if (!seen.has(partition)) seen.set(partition, clockMs);
    }
    expect([...seen.keys()].sort()).toEqual([0, 1, 2]);
    for (const [partition, atMs] of seen) {
      const dueMs = startMs - 500 + spreadMs(partitionKey(record(partition)), settledRecheckMs);
      expect(atMs).toBeGreaterThanOrEqual(dueMs);
      expect(atMs).toBeLessThan(dueMs + 500 + 1);
    }
  });

  it("misses no change over random event sequences (against the scan it replaced)", () => {
    let seed = 7;
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 0x1_0000_0000;
    };
    for (let run = 0; run < 30; run++) {
      clockMs = 1000;
      const { tenure, alive, round, send, reconciler } = settledSetup();
      let commit = 3;
      for (let step = 0; step < 60; step++) {
        const partition = Math.floor(random() * 3);
        const key = partitionKey(record(partition));
        switch (Math.floor(random() * 11)) {
          case 0:
            send("head-1", { primaries: [report(partition, ++commit)] });
            break;
          case 1:
            send("head-1", { primaries: [report(partition, commit)] });
            break;
          case 2:
            send("head-2", {
              failures: [{ volume: "vol", volumeId: "1-abc", partition, epoch: 1 }],
            });
            break;
          case 3:
            send("head-2", { failuresGone: [{ volume: "vol", partition }] });
            break;
          case 4: {
            const entry = tenure.records.get(key);
            if (entry !== undefined) {
              tenure.records.set(key, { ...entry, revision: entry.revision + 1 });
            }
            break;
          }
          case 5:
            tenure.volumes.set("vol", { ...volume });
            break;
          case 6:
            if (alive.has("head-3")) alive.delete("head-3");
            else alive.add("head-3");
            break;
          case 7: {
            const nodes = tenure.configured.get(key);
            if (nodes !== undefined) {
              nodes.set("head-2", { epoch: 1, atMs: clockMs });
              touch(tenure, key);
            }
            break;
          }
          case 8:
            forgetConfigured(tenure, random() < 0.5 ? "head-1" : "head-2");
            break;
          case 9:
            // A node goes quiet long enough for its reports to be too old to act on.
            clockMs += 2500;
            send("head-1");
            break;
          default:
            clockMs += Math.floor(random() * 20_000);
        }
        clockMs += 500;
        send("head-1");
        send("head-2");
        expect(reconciler.missed(clockMs)).toEqual([]);
        round();
      }
    }
  });
});

describe("Reconciler: a primary that never takes the record's epoch", () => {
  // Session 9: a primary whose configure hangs (its disk hangs while it opens the
  // replica) hosts nothing and reports nothing; the reconciler now tells the decision
  // since when it has neither acknowledged nor reported the epoch.
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  it("does not fail over a primary whose configure has not been sent yet (waiting behind the bounds)", async () => {
    const updates: PartitionRecord[] = [];
    const catalogue = {
      updatePartition: (next: PartitionRecord) => {
        updates.push(next);
        return Promise.resolve({ applied: true, revision: 100 });
      },
    };
    // head-1 never answers (a hung disk, or a head node opening thousands of replicas);
    // partitions 1 and 2 also wait for a configure slot, as a new volume's thousands
    // queue behind the bounds on configures in flight: nothing is sent for them yet.
    const held = new Set([1, 2]);
    const { reconciler } = setup(catalogue, new Set(["head-1"]), held);
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    const runUntil = async (endMs: number) => {
      while (clockMs < endMs) {
        reconciler.reconcile();
        await settle();
        clockMs += 500;
      }
    };
    clockMs = 500_000;
    await runUntil(clockMs + 3 * primaryUnconfirmedMsMax);
    const updated = () => [...new Set(updates.map((next) => next.partition))].sort();
    // Partition 0's configure went out and hangs: failed over. 1 and 2 were asked nothing.
    expect(updated()).toEqual([0]);
    // Sent at last, and never answered: failed over primaryUnconfirmedMsMax after.
    held.clear();
    const sentAtMs = clockMs;
    await runUntil(sentAtMs + primaryUnconfirmedMsMax - 500);
    expect(updated()).toEqual([0]);
    await runUntil(sentAtMs + primaryUnconfirmedMsMax + 1000);
    expect(updated()).toEqual([0, 1, 2]);
  });

  it("is failed over once unconfirmed for primaryUnconfirmedMsMax from when this leader first saw the epoch; one that reports is kept", async () => {
    const updates: PartitionRecord[] = [];
    const catalogue = {
      updatePartition: (next: PartitionRecord) => {
        updates.push(next);
        return Promise.resolve({ applied: true, revision: 100 });
      },
    };
    const { tenure, alive, round } = setup(catalogue, new Set(["head-1"]));
    // This leader takes over long after the epoch began: its clock starts now.
    clockMs = 500_000;
    const firstSeenMs = clockMs;
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    const step = (ms: number) => {
      clockMs += ms;
      // head-1 reports partition 0 in the record's epoch: it took it, and is kept.
      tenure.leases.onNodeReport(
        { node: "head-1", primaries: [report(0, 5)] },
        (_, partition) => record(partition),
        new Set(alive),
        clockMs,
      );
      round();
    };
    step(0);
    while (clockMs + 500 < firstSeenMs + primaryUnconfirmedMsMax) step(500);
    await settle();
    expect(updates).toEqual([]);
    step(firstSeenMs + primaryUnconfirmedMsMax - clockMs);
    await settle();
    expect(updates.map((next) => next.partition).sort()).toEqual([1, 2]);
    for (const next of updates) {
      expect(next).toMatchObject({ epoch: 2, primary: "head-2", secondaries: [] });
    }
  });
});

describe("Reconciler: a primary cut from the sleds (review-reach R1)", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  /** Partition 1 led by head-2 (head-1 its secondary), the others by head-1. */
  const split = (partition: number) =>
    partition === 1 ? record(1, { primary: "head-2", secondaries: ["head-1"] }) : record(partition);
  const stalled = (partition: number): Report => ({
    ...report(partition, 5),
    flushStalledMs: 60_000,
  });
  /** When each update of the last run was made, on the leader's clock. */
  const updateTimesMs: number[] = [];

  /**
   * Runs rounds for `ms`, each node reporting `reports(node)` every 500 ms, with its
   * count of stores to the sleds; a node of `reaching` whose answer asks for a probe
   * (sled-reach.ts) stores one, which its next report counts.
   */
  async function run(
    sleds: readonly string[],
    reports: (node: string) => Report[],
    ms = 20_000,
    failoverOn = true,
    reaching: ReadonlySet<string> = new Set(["head-2"]),
    probed: string[] = [],
    spares: readonly string[] = [],
    records: (partition: number) => PartitionRecord = split,
  ): Promise<PartitionRecord[]> {
    const updates: PartitionRecord[] = [];
    updateTimesMs.length = 0;
    const catalogue = {
      updatePartition: (next: PartitionRecord) => {
        updates.push(next);
        updateTimesMs.push(clockMs);
        return Promise.resolve({ applied: true, revision: 100 });
      },
    };
    const reach = new SledReach();
    const stores = new Map<string, number>();
    // Each node's reports: every one answered at once, so each names the last as its base.
    const seqs = new Map<string, number>();
    const { tenure, alive, round } = setup(
      catalogue,
      new Set(),
      new Set(),
      sleds,
      records,
      failoverOn,
      reach,
    );
    for (const spare of spares) alive.add(spare);
    clockMs = 500_000;
    const endMs = clockMs + ms;
    while (clockMs < endMs) {
      for (const node of alive) {
        const seq = (seqs.get(node) ?? 0) + 1;
        seqs.set(node, seq);
        reach.heard(
          node,
          {
            session: 1,
            seq,
            ...(seq > 1 ? { base: seq - 1 } : {}),
            sledStores: stores.get(node) ?? 0,
          },
          clockMs,
        );
        if (reach.probeWanted(node, clockMs)) {
          probed.push(node);
          if (reaching.has(node)) stores.set(node, (stores.get(node) ?? 0) + 1);
        }
        tenure.leases.onNodeReport(
          { node, primaries: reports(node) },
          (_, partition) => records(partition),
          new Set(alive),
          clockMs,
        );
      }
      round();
      await new Promise((resolve) => setImmediate(resolve));
      clockMs += 500;
    }
    return updates;
  }

  it("fails its partition over to the secondary once its flushes have all failed, with sleds alive", async () => {
    const probed: string[] = [];
    const updates = await run(
      ["sled-1", "sled-2", "sled-3"],
      (node) =>
        node === "head-1" ? [stalled(0), report(2, 5)] : [{ ...report(1, 5), followers: [] }],
      20_000,
      true,
      new Set(["head-2"]),
      probed,
    );
    // (The fake catalogue keeps the old record, so the update is decided again.)
    const changed = new Set(updates.map((next) => `${next.partition} to ${next.primary}`));
    expect([...changed]).toEqual(["0 to head-2"]);
    // The evidence came from the probe the leader asked the secondary's node for.
    expect(new Set(probed)).toEqual(new Set(["head-2"]));
  });

  it("keeps it while the secondary's node gives no evidence that it reaches the sleds (review-diff19 D1)", async () => {
    // Its probes fail too (sleds failing everyone's writes, or a cut of its own): a
    // failover would only drop a copy of what nobody can flush.
    const probed: string[] = [];
    const updates = await run(
      ["sled-1", "sled-2", "sled-3"],
      (node) =>
        node === "head-1" ? [stalled(0), report(2, 5)] : [{ ...report(1, 5), followers: [] }],
      20_000,
      true,
      new Set(),
      probed,
    );
    expect(updates).toEqual([]);
    expect(probed).toContain("head-2");
  });

  it("with the secondary's node cut too, asks a spare to probe and adds it as a stand-in learner", async () => {
    // head-2's probes fail as head-1's flushes do; head-3, which holds nothing, reaches
    // the sleds. Before, the partition waited for the cut to end (review 30).
    const probed: string[] = [];
    const updates = await run(
      ["sled-1", "sled-2", "sled-3"],
      (node) =>
        node === "head-1"
          ? [stalled(0), report(2, 5)]
          : node === "head-2"
            ? [{ ...report(1, 5), followers: [] }]
            : [],
      20_000,
      true,
      new Set(["head-3"]),
      probed,
      ["head-3"],
    );
    expect(new Set(probed)).toEqual(new Set(["head-2", "head-3"]));
    const standIns = updates.filter((next) => next.partition === 0);
    expect(standIns.length).toBeGreaterThan(0);
    for (const next of standIns) {
      expect(next).toMatchObject({
        primary: "head-1",
        secondaries: ["head-2"],
        learners: ["head-3"],
      });
    }
  });

  it("over its count, keeps the stand-in while the primary's node is remembered flush-stalled (review 31)", async () => {
    // A stand-in joined as a secondary (three voters, a count of two); head-1's flushes
    // failed until 5 s in, then succeed, before either secondary gave evidence. Before, the first report without a stall dropped
    // a voter, and a cut that came back cost another stand-in.
    const over = (partition: number) =>
      partition === 0 ? record(0, { secondaries: ["head-2", "head-3"] }) : split(partition);
    const startMs = 500_000;
    const updates = await run(
      ["sled-1", "sled-2", "sled-3"],
      (node) =>
        node === "head-1"
          ? [clockMs < startMs + 5_000 ? stalled(0) : report(0, 5), report(2, 5)]
          : node === "head-2"
            ? [{ ...report(1, 5), followers: [] }]
            : [],
      20_000 + flushStallNodesMemoryMs,
      true,
      // No evidence from either secondary while the stall lasts: no failover.
      new Set(),
      [],
      ["head-3"],
      over,
    );
    const drops = updates.flatMap((next, index) =>
      next.partition === 0 ? [{ next, atMs: updateTimesMs[index]! }] : [],
    );
    expect(drops.length).toBeGreaterThan(0);
    for (const { next, atMs } of drops) {
      expect(next.secondaries).toHaveLength(1);
      // None before the leader's memory of the stall ran out.
      expect(atMs).toBeGreaterThan(startMs + 5_000 + flushStallNodesMemoryMs - 1_000);
    }
  });

  it("keeps it while the failover of flush-stalled primaries is off (review-diff19 D1)", async () => {
    const updates = await run(
      ["sled-1", "sled-2", "sled-3"],
      (node) =>
        node === "head-1" ? [stalled(0), report(2, 5)] : [{ ...report(1, 5), followers: [] }],
      20_000,
      false,
    );
    expect(updates).toEqual([]);
  });

  it("keeps it with fewer than two sleds alive: no primary could flush", async () => {
    const updates = await run(["sled-1"], (node) =>
      node === "head-1" ? [stalled(0), report(2, 5)] : [{ ...report(1, 5), followers: [] }],
    );
    expect(updates).toEqual([]);
  });

  it("keeps both when two head nodes report flushes failing: the sleds fail everyone", async () => {
    const updates = await run(["sled-1", "sled-2", "sled-3"], (node) =>
      node === "head-1" ? [stalled(0), report(2, 5)] : [{ ...stalled(1), followers: [] }],
    );
    expect(updates).toEqual([]);
  });
});

describe("Reconciler: a round over many partitions, in slices", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  // A new volume of 16,384 partitions (the size that knocked its leader out): none is
  // settled, so a round decides every one. It must not do so in one synchronous stretch,
  // or the lease renewal, a timer of the same event loop, waits behind all of them.
  it("decides at most a slice per turn of the event loop, and each partition once a round", async () => {
    const partitions = 16_384;
    // head-2's configures never complete: no partition settles, as while a new volume's
    // replicas are being created, so every round decides every one.
    const { tenure } = setup({}, new Set(["head-2"]));
    tenure.volumes.set("vol", { ...volume, sizeBytes: partitions * volume.partitionBytes });
    for (let partition = 3; partition < partitions; partition++) {
      const value = record(partition);
      tenure.records.set(partitionKey(value), { value, revision: partition + 1 });
    }
    const decided: number[] = [];
    const reconciler = new Reconciler({
      logger: createLogger({ service: "test", nodeId: "test", level: "silent" }),
      catalogue: {} as never,
      heartbeats: {
        listening: () => false,
        aliveHeadNodes: () => new Set(["head-1", "head-2"]),
        aliveSleds: () => ["sled-1"],
        headNodeDisks: () => new Map(),
      },
      configurer: {
        configure: (_tenure, value) => {
          decided.push(value.partition);
          return Promise.resolve();
        },
        current: () => false,
      },
      tenures: { held: () => tenure, current: () => tenure },
    });
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    for (const round of [1, 2]) {
      decided.length = 0;
      reconciler.reconcile();
      const slices = [decided.length];
      while (reconciler.roundUnderWay()) {
        const before = decided.length;
        // A tick while the round runs starts nothing more.
        reconciler.reconcile();
        expect(decided.length).toBe(before);
        await turn();
        slices.push(decided.length - before);
      }
      expect(
        slices.every((count) => count <= reconcileSliceMax),
        `round ${round}`,
      ).toBe(true);
      expect(slices.length).toBe(Math.ceil(partitions / reconcileSliceMax));
      const once = [...decided].sort((a, b) => a - b);
      expect(once).toEqual(Array.from({ length: partitions }, (_, index) => index));
    }
  });

  it("takes into the round under way the partitions a change touches meanwhile", async () => {
    const partitions = 3 * reconcileSliceMax;
    const { tenure, reconciler, decided } = setup();
    tenure.volumes.set("vol", { ...volume, sizeBytes: partitions * volume.partitionBytes });
    for (let partition = 3; partition < partitions; partition++) {
      const value = record(partition);
      tenure.records.set(partitionKey(value), { value, revision: partition + 1 });
    }
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    reconciler.reconcile();
    // Partition 7, decided in the first slice, changes while the round goes on.
    expect(decided.filter((partition) => partition === 7)).toHaveLength(1);
    const value = { ...record(7), epoch: 2 };
    tenure.records.set(partitionKey(value), { value, revision: partitions + 10 });
    while (reconciler.roundUnderWay()) await turn();
    expect(decided.filter((partition) => partition === 7)).toHaveLength(2);
    expect(reconciler.settledCount()).toBe(partitions);
    expect(reconciler.missed(clockMs)).toEqual([]);
  });
});

describe("Reconciler: a secondary never heard answering the partition", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  // Simulator seed 9781027: a re-created volume's partition was placed on head-1 and
  // head-2 while both were down but not yet counted dead, head-2 recorded on the disk its
  // last heartbeat named; it had come back on another, unheard. head-1 was counted dead
  // first, and head-2, which had answered nothing, was promoted in its place: the record
  // was left with one voter whose disk was lost, `unavailable` for good, though no write
  // had been acknowledged and head-1 came back on the disk it was placed on.
  it("is not promoted before it answers a configure of the partition, disk recorded or not", async () => {
    const updates: PartitionRecord[] = [];
    const catalogue = {
      updatePartition: (next: PartitionRecord) => {
        updates.push(next);
        return Promise.resolve({ applied: true, revision: 100 });
      },
    };
    const hung = new Set(["head-2"]);
    const placed = (partition: number) =>
      record(partition, { epoch: 6, disks: { "head-1": "disk-1", "head-2": "disk-2" } });
    const { tenure, alive, round } = setup(catalogue, hung, new Set(), ["sled-1"], placed);
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    alive.delete("head-1");
    for (let rounds = 0; rounds < 3; rounds++) {
      round();
      await settle();
      clockMs += 500;
    }
    expect(updates).toEqual([]);
    for (const partition of [0, 1, 2]) {
      const reason = tenure.unavailable.get(partitionKey(placed(partition)));
      expect(reason).toContain("head-2: not yet answered");
    }
    // Once head-2 answers from the disk it was placed on, it holds every acknowledged
    // write (none committed without it) and is promoted.
    hung.delete("head-2");
    for (let rounds = 0; rounds < 3 && updates.length < 3; rounds++) {
      round();
      await settle();
      clockMs += 500;
    }
    expect(updates.map((next) => next.partition).sort()).toEqual([0, 1, 2]);
    for (const next of updates) {
      expect(next).toMatchObject({ epoch: 7, primary: "head-2", secondaries: [] });
    }
  });
});

describe("Reconciler: a partition judged unavailable, for describe", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  it("is noted while the decision says so, and no longer once its primary is back", () => {
    const { tenure, alive, round } = setup();
    // Partition 0 goes on with head-1 alone; then head-1 dies: nothing can serve it.
    const lone = record(0, { epoch: 2, secondaries: [] });
    tenure.records.set(partitionKey(lone), { value: lone, revision: 10 });
    // The other two fail over to head-2, recorded on its disk and heard answering the
    // epoch (one not yet heard is not promoted before it has answered: `unproven`).
    for (const partition of [1, 2]) {
      const value = record(partition, { disks: { "head-1": "disk-1", "head-2": "disk-2" } });
      tenure.records.set(partitionKey(value), { value, revision: partition + 1 });
      tenure.configured.set(
        partitionKey(value),
        new Map([["head-2", { epoch: value.epoch, atMs: clockMs, disk: "disk-2" }]]),
      );
    }
    alive.delete("head-1");
    round();
    expect([...tenure.unavailable.keys()]).toEqual([partitionKey(lone)]);
    alive.add("head-1");
    clockMs += 500;
    round();
    expect(tenure.unavailable.size).toBe(0);
  });
});
