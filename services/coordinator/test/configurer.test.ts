// The configurer pushes a record to its members when their epoch is out of date, and
// again to a primary whose reports contradict its acknowledgement (it lost its
// configuration) — not only at the slow refresh (issue 14). A refusal for a journal
// failed in this boot is kept, so that describe names that member failed.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  Configurer,
  failingOver,
  noReplicaMembers,
  outOfStep,
  provenDisks,
  refreshDue,
  reopeningMembers,
  unprovenMembers,
} from "../src/configurer.ts";
import {
  configureOtherDiskRetryMs,
  configureRefreshMs,
  configuresPerNodeInflightMax,
  configureVerifyMs,
  configureVerifyMsMin,
} from "../src/constants.ts";
import { decidePartition, type PartitionRecord, type Report } from "../src/decisions.ts";
import { partitionKey } from "../src/leases.ts";
import { forget, forgetConfigured, newTenure, type Tenure } from "../src/tenure.ts";
import { failedField } from "../src/volumes.ts";

const record: PartitionRecord = {
  volume: "vol",
  volumeId: "1-abc",
  partition: 0,
  partitionStart: 0,
  partitionBytes: 1024 * 1024,
  epoch: 2,
  primary: "head-1",
  secondaries: ["head-2"],
  term: 1,
};

function report(epoch: number): Report {
  return {
    volume: "vol",
    volumeId: "1-abc",
    partition: 0,
    epoch,
    session: 1,
    commitOpNum: 3,
    tailCommitted: true,
    followers: [{ node: "head-2", matchOpNum: 3, learner: false }],
  };
}

/** The live head nodes and their disks, as the reconciler passes them. */
const both = { alive: new Set(["head-1", "head-2"]) };

/**
 * A Configurer over a fake bus (`request`), head nodes `alive`, one sled, and the tenure
 * leading while `leads()` holds (unit).
 */
function queueingConfigurer(
  tenure: Tenure,
  request: (subject: string, message: { partition: number }) => Promise<unknown>,
  alive: Set<string>,
  leads: () => boolean = () => true,
): Configurer {
  return new Configurer(
    { bus: { request }, logger: { debug: () => undefined, warn: () => undefined } } as never,
    {} as never,
    { held: () => tenure, current: () => (leads() ? tenure : undefined) },
    { aliveHeadNodes: () => alive, aliveSleds: () => ["sled-1"], headNodeDisks: () => new Map() },
  );
}

/** `records` held by the tenure, each at a revision of its own. */
function hold(tenure: Tenure, records: PartitionRecord[]): PartitionRecord[] {
  records.forEach((one, revision) => {
    tenure.records.set(partitionKey(one), { value: one, revision });
  });
  return records;
}

let clockMs = 1000;

describe("Configurer", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  function setup(verifyMs?: number) {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const sent: string[] = [];
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string) => {
            sent.push(subject.split(".").at(-1)!);
            return {};
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
      verifyMs,
    );
    const alive = new Set(["head-1", "head-2"]);
    const primaryReports = (epoch: number, failed = false) =>
      tenure.leases.onNodeReport(
        { node: "head-1", primaries: [{ ...report(epoch), ...(failed ? { failed } : {}) }] },
        () => record,
        alive,
        clockMs,
      );
    return { tenure, sent, configurer, alive, primaryReports };
  }

  it("pushes again to a primary whose reports still show an older epoch after it acknowledged", async () => {
    const { tenure, sent, configurer, alive, primaryReports } = setup();
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent.sort()).toEqual(["head-1", "head-2"].sort());
    sent.length = 0;
    // The primary reports the record's epoch: nothing to push, ever (until a refresh).
    primaryReports(2);
    clockMs += configureVerifyMs;
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent).toEqual([]);
    expect(configurer.current(tenure, record, alive, ["sled-1"])).toBe(true);
    // It reports an older epoch (its configuration is lost): pushed again once that has
    // lasted configureVerifyMs from its acknowledgement, to it alone.
    const ackedAtMs = tenure.configured.get(partitionKey(record))!.get("head-1")!.atMs;
    clockMs = ackedAtMs + 1;
    primaryReports(1);
    expect(configurer.current(tenure, record, alive, ["sled-1"])).toBe(true);
    clockMs = ackedAtMs + configureVerifyMs - 1;
    primaryReports(1);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent).toEqual([]);
    clockMs = ackedAtMs + configureVerifyMs;
    expect(configurer.current(tenure, record, alive, ["sled-1"])).toBe(false);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent).toEqual(["head-1"]);
    // Acknowledged again: it waits another configureVerifyMs for the report to agree.
    expect(configurer.current(tenure, record, alive, ["sled-1"])).toBe(true);
  });

  it("with a shorter verify time (--configure-verify-ms), pushes again that much sooner", async () => {
    const verifyMs = configureVerifyMsMin;
    const { tenure, sent, configurer, alive, primaryReports } = setup(verifyMs);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    sent.length = 0;
    const ackedAtMs = tenure.configured.get(partitionKey(record))!.get("head-1")!.atMs;
    clockMs = ackedAtMs + verifyMs - 1;
    primaryReports(1);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent).toEqual([]);
    clockMs = ackedAtMs + verifyMs;
    expect(verifyMs).toBeLessThan(configureVerifyMs);
    expect(configurer.current(tenure, record, alive, ["sled-1"])).toBe(false);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent).toEqual(["head-1"]);
  });

  it("pushes again, at once, to members that lack a live sled", async () => {
    // A volume created while one sled was up: its replicas could place no chunk (a chunk
    // needs two copies) until told of the others, and its writes stalled once the log
    // filled; the refresh (configureRefreshMs) came minutes later.
    const { tenure, sent, configurer, alive, primaryReports } = setup();
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    primaryReports(2);
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
    sent.length = 0;
    clockMs += 1;
    const three = ["sled-3", "sled-1", "sled-2"];
    expect(configurer.current(tenure, record, alive, three)).toBe(false);
    await configurer.configure(tenure, record, alive, three);
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
    sent.length = 0;
    // The same sleds in another order are no change; nor is a sled gone (a flapping
    // sled must not reconfigure every partition), nor its return.
    expect(configurer.current(tenure, record, alive, ["sled-2", "sled-3", "sled-1"])).toBe(true);
    await configurer.configure(tenure, record, alive, ["sled-1", "sled-2", "sled-3"]);
    expect(sent).toEqual([]);
    expect(configurer.current(tenure, record, alive, ["sled-1", "sled-3"])).toBe(true);
    await configurer.configure(tenure, record, alive, ["sled-1", "sled-3"]);
    await configurer.configure(tenure, record, alive, ["sled-3", "sled-2", "sled-1"]);
    expect(sent).toEqual([]);
    // A sled never named is news again.
    await configurer.configure(tenure, record, alive, ["sled-1", "sled-2", "sled-3", "sled-4"]);
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
    // Well before the refresh would have come.
    expect(clockMs - 1000).toBeLessThan(configureRefreshMs / 2);
  });

  it("judges a primary out of step only on an older epoch, after the verify time", () => {
    const acked = { epoch: 2, atMs: 0 };
    expect(outOfStep(record, report(1), acked, configureVerifyMs, both)).toBe(true);
    expect(outOfStep(record, report(1), acked, configureVerifyMs - 1, both)).toBe(false);
    expect(outOfStep(record, report(2), acked, configureVerifyMs, both)).toBe(false);
    expect(outOfStep(record, report(3), acked, configureVerifyMs, both)).toBe(false);
    expect(outOfStep(record, undefined, acked, configureVerifyMs, both)).toBe(false);
    // Not acknowledged in this epoch: an ordinary push, not this.
    expect(outOfStep(record, report(1), { epoch: 1, atMs: 0 }, configureVerifyMs, both)).toBe(
      false,
    );
    // A verify time set shorter (--configure-verify-ms): out of step that much sooner.
    const verifyMs = configureVerifyMsMin;
    expect(verifyMs).toBeLessThan(configureVerifyMs);
    expect(outOfStep(record, report(1), acked, verifyMs, both, verifyMs)).toBe(true);
    expect(outOfStep(record, report(1), acked, verifyMs - 1, both, verifyMs)).toBe(false);
  });

  it("pushes again to a primary that reports itself failed, after the verify time", () => {
    // With no secondary to promote, nothing else would reopen it before the refresh.
    const alone: PartitionRecord = { ...record, secondaries: [] };
    const failed: Report = { ...report(2), followers: [], failed: true };
    const acked = { epoch: 2, atMs: 0 };
    expect(outOfStep(alone, failed, acked, configureVerifyMs, both)).toBe(true);
    expect(outOfStep(alone, failed, acked, configureVerifyMs - 1, both)).toBe(false);
    // Failed in an older epoch: that report is out of step anyway; in a newer one, not ours.
    expect(outOfStep(alone, { ...failed, epoch: 3 }, acked, configureVerifyMs, both)).toBe(false);
    expect(outOfStep(alone, { ...failed, failed: false }, acked, configureVerifyMs, both)).toBe(
      false,
    );
  });

  it("holds a failed primary while its live secondary can take over, and reopens it only when none can", () => {
    // The secondary holds every acknowledged write: the decisions promote it once the
    // primary's lease runs out. A push would reopen the failed primary in place and call
    // that off (the old code did, once configureVerifyMs had passed since the ack).
    const failed: Report = { ...report(2), failed: true };
    const acked = { epoch: 2, atMs: 0 };
    expect(failingOver(record, failed, both)).toBe(true);
    expect(outOfStep(record, failed, acked, configureVerifyMs, both)).toBe(false);
    // The secondary is dead, or back on another disk (its replica is lost), or there is
    // only a joiner: nothing to promote, so the reopen is the way out.
    const dead = { alive: new Set(["head-1"]) };
    const lostDisk = {
      alive: both.alive,
      disks: new Map([
        ["head-1", "d1"],
        ["head-2", "d2-new"],
      ]),
    };
    const onDisks: PartitionRecord = { ...record, disks: { "head-1": "d1", "head-2": "d2" } };
    const joinerOnly: PartitionRecord = { ...record, secondaries: [], joining: ["head-2"] };
    for (const [which, view] of [
      [record, dead],
      [onDisks, lostDisk],
      [joinerOnly, both],
    ] as const) {
      expect(failingOver(which, failed, view)).toBe(false);
      expect(outOfStep(which, failed, acked, configureVerifyMs, view)).toBe(true);
    }
    // On the disk the record has it on, the secondary can take over.
    const sameDisk = { alive: both.alive, disks: new Map([["head-2", "d2"]]) };
    expect(failingOver(onDisks, failed, sameDisk)).toBe(true);
    // Only a failure in the record's epoch: an older report is out of step as before.
    expect(failingOver(record, { ...failed, epoch: 1 }, both)).toBe(false);
    expect(outOfStep(record, { ...failed, epoch: 1 }, acked, configureVerifyMs, both)).toBe(true);
    expect(failingOver(record, report(2), both)).toBe(false);
  });

  it("sends a failed primary nothing while it is failed over, not even the refresh", async () => {
    const { tenure, sent, configurer, alive, primaryReports } = setup();
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    sent.length = 0;
    primaryReports(2, true);
    clockMs += configureVerifyMs;
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent).toEqual([]);
    clockMs += configureRefreshMs;
    primaryReports(2, true);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    // The secondary is refreshed; the failed primary is left to be replaced.
    expect(sent).toEqual(["head-2"]);
    sent.length = 0;
    // Its secondary died meanwhile: the reopen is the way out.
    const alone = new Set(["head-1"]);
    await configurer.configure(tenure, record, alone, ["sled-1"]);
    expect(sent).toEqual(["head-1"]);
    sent.length = 0;
    // Back, but restarted: until a configure opens its files, it may hold no copy that
    // opens (`reopening`), and nothing fails over to it. Both are pushed.
    forgetConfigured(tenure, "head-2");
    clockMs += configureVerifyMs;
    primaryReports(2, true);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
  });

  it("counts a member reopening from its node's restart until it acknowledges again", () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const key = partitionKey(record);
    tenure.configured.set(
      key,
      new Map([
        ["head-1", { epoch: 2, atMs: 0 }],
        ["head-2", { epoch: 2, atMs: 0 }],
      ]),
    );
    expect(reopeningMembers(tenure, record)).toEqual(new Set());
    // head-2 restarted: its acknowledgement is marked out of date (epoch −1).
    forgetConfigured(tenure, "head-2");
    expect(reopeningMembers(tenure, record)).toEqual(new Set(["head-2"]));
    // Whatever the record's epoch (a resize moved it on), until it acknowledges one.
    expect(reopeningMembers(tenure, { ...record, epoch: 3 })).toEqual(new Set(["head-2"]));
    tenure.configured.get(key)!.set("head-2", { epoch: 3, atMs: 1 });
    expect(reopeningMembers(tenure, { ...record, epoch: 3 })).toEqual(new Set());
    // A new tenure knows of no restart: nobody is reopening.
    expect(reopeningMembers(newTenure({ term: 2, tenure: 2 }, 0), record)).toEqual(new Set());
  });

  it("counts a member with no disk recorded unproven until it acknowledges the record's epoch", () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const key = partitionKey(record);
    // A record from before disk ids, in a tenure that has heard nobody yet.
    expect(unprovenMembers(tenure, record)).toEqual(new Set(["head-1", "head-2"]));
    tenure.configured.set(key, new Map([["head-1", { epoch: 2, atMs: 0, disk: "d1" }]]));
    expect(unprovenMembers(tenure, record)).toEqual(new Set(["head-2"]));
    // An answer without a disk (a head node older than the refusal) counts as well.
    tenure.configured.get(key)!.set("head-2", { epoch: 2, atMs: 0 });
    expect(unprovenMembers(tenure, record)).toEqual(new Set());
    // Only the record's epoch counts, and a restart's mark (epoch −1) answers nothing.
    expect(unprovenMembers(tenure, { ...record, epoch: 3 })).toEqual(new Set(["head-1", "head-2"]));
    forgetConfigured(tenure, "head-2");
    expect(unprovenMembers(tenure, record)).toEqual(new Set(["head-2"]));
    // A member with a disk recorded that has answered some configure of the partition
    // (even one since marked out of date by a restart: `reopening`) is checked by its disk.
    expect(unprovenMembers(tenure, { ...record, disks: { "head-2": "d2" } })).toEqual(new Set());
  });

  it("counts a member with a disk recorded unproven until it answers a configure of the partition (seed 9781027)", () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const key = partitionKey(record);
    const placed = { ...record, disks: { "head-1": "d1", "head-2": "d2" } };
    // The disks came from heartbeats at placement: where the nodes were then, not proof
    // that either has opened the replica there (head-2 may be back on another, unheard).
    expect(unprovenMembers(tenure, placed)).toEqual(new Set(["head-1", "head-2"]));
    tenure.configured.set(key, new Map([["head-1", { epoch: 2, atMs: 0, disk: "d1" }]]));
    expect(unprovenMembers(tenure, placed)).toEqual(new Set(["head-2"]));
    // An answer of an earlier epoch proves the disk as well: the record's disk is checked
    // against the heartbeats from then on, as before.
    tenure.configured.get(key)!.set("head-2", { epoch: 1, atMs: 0, disk: "d2" });
    expect(unprovenMembers(tenure, placed)).toEqual(new Set());
  });

  it("keeps the disk an answer names, and a no-replica refusal, for the decisions of a record without disks", async () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const diskOf = (node: string) => node.slice(-1).repeat(32);
    const asked: Record<string, unknown>[] = [];
    /** What each node answers: its disk, no disk (an older head node), or a refusal. */
    const answers = new Map<string, "disk" | "plain" | "no-replica" | "not-found">([
      ["head-1", "disk"],
      ["head-2", "no-replica"],
      ["head-3", "plain"],
    ]);
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string, message: Record<string, unknown>) => {
            const node = subject.split(".").at(-1)!;
            asked.push({ node, ...message });
            const answer = answers.get(node);
            if (answer === "no-replica") {
              throw new BallastError(ErrorCode.NotFound, "holds nothing", {
                details: { refusal: "no-replica" },
              });
            }
            if (answer === "not-found") throw new BallastError(ErrorCode.NotFound, "other");
            return answer === "disk" ? { disk: diskOf(node) } : {};
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    // A record from before disk ids.
    const legacy: PartitionRecord = { ...record, secondaries: ["head-2", "head-3"] };
    const alive = new Set(["head-1", "head-2", "head-3"]);
    await configurer.configure(tenure, legacy, alive, ["sled-1"]);
    // Every configure says the sender records disks, and names none for these members.
    expect(asked).toHaveLength(3);
    for (const message of asked) {
      expect(message.disksRecorded).toBe(true);
      expect(message.disk).toBeUndefined();
    }
    expect(provenDisks(tenure, legacy)).toEqual(new Map([["head-1", diskOf("head-1")]]));
    expect(noReplicaMembers(tenure, legacy)).toEqual(new Set(["head-2"]));
    // The decision drops head-2 and records head-1's disk with it.
    const decision = decidePartition(legacy, {
      nowMs: 100_000,
      alive,
      disks: new Map([...alive].map((node) => [node, `${diskOf(node)}`])),
      proven: provenDisks(tenure, legacy),
      noReplica: noReplicaMembers(tenure, legacy),
      load: new Map([...alive].map((node) => [node, { replicas: 1, primaries: 0 }])),
      replicaCount: 3,
      leaseUntilMs: 0,
      learnersSinceMs: new Map(),
      learnerCatchUpMsMax: 30_000,
    });
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 3, secondaries: ["head-3"], disks: { "head-1": diskOf("head-1") } },
    });
    // Both count for the record's epoch only: the next one is configured afresh.
    const next: PartitionRecord = { ...legacy, epoch: 3 };
    expect(provenDisks(tenure, next)).toEqual(new Map());
    expect(noReplicaMembers(tenure, next)).toEqual(new Set());
    // A recorded disk is not proven again, and a member that answers is no longer refused.
    expect(provenDisks(tenure, { ...legacy, disks: { "head-1": diskOf("head-1") } })).toEqual(
      new Map(),
    );
    answers.set("head-2", "disk");
    clockMs += configureRefreshMs;
    await configurer.configure(tenure, legacy, alive, ["sled-1"]);
    expect(noReplicaMembers(tenure, legacy)).toEqual(new Set());
    expect(provenDisks(tenure, legacy).get("head-2")).toBe(diskOf("head-2"));
    // Any other refusal proves nothing.
    answers.set("head-3", "not-found");
    tenure.configured.get(partitionKey(legacy))!.delete("head-3");
    await configurer.configure(tenure, legacy, alive, ["sled-1"]);
    expect(noReplicaMembers(tenure, legacy)).toEqual(new Set());
  });

  it("keeps a member's refusal for a journal failed in this boot, for describe, until it answers", async () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    let refuse = true;
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string) => {
            if (refuse && subject.endsWith("head-1")) {
              throw new BallastError(ErrorCode.Unavailable, "cannot open the journal", {
                details: { refusal: "journal-failed-this-boot" },
              });
            }
            return {};
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    const alive = new Set(["head-1", "head-2"]);
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    const key = partitionKey(record);
    expect(tenure.failedJournals.get(key)).toEqual(new Map([["head-1", record.epoch]]));
    expect(failedField(record, undefined, undefined, tenure.failedJournals.get(key))).toEqual({
      failed: ["head-1"],
    });
    // Of another epoch, it says nothing of this one.
    expect(
      failedField({ ...record, epoch: 3 }, undefined, undefined, tenure.failedJournals.get(key)),
    ).toEqual({});
    // Rebooted, it opens the replica and answers: no longer failed.
    refuse = false;
    tenure.configured.get(key)?.delete("head-1");
    clockMs += configureRefreshMs;
    await configurer.configure(tenure, record, alive, ["sled-1"]);
    expect(tenure.failedJournals.has(key)).toBe(false);
  });

  it("refreshes a member at its own point of the period, not every member at once", () => {
    expect(refreshDue("vol/0@head-1", 0, 0)).toBe(false);
    const dueAt = Array.from({ length: 100 }, (_, i) => {
      let atMs = 0;
      while (!refreshDue(`vol/${i}@head-1`, 0, atMs)) atMs += 1000;
      return atMs;
    });
    expect(new Set(dueAt).size).toBeGreaterThan(50);
  });
});

describe("Configurer: a replica in a later epoch than the record", () => {
  function refusing(currentEpoch: number) {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    hold(tenure, [record]);
    const errors: unknown[] = [];
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string) => {
            if (subject.endsWith("head-2")) {
              throw new BallastError(ErrorCode.WrongEpoch, "vol/0 is in a later epoch", {
                details: { epoch: record.epoch, currentEpoch },
              });
            }
            return {};
          },
        },
        logger: {
          debug: () => undefined,
          warn: () => undefined,
          error: (fields: unknown) => errors.push(fields),
        },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    return { tenure, configurer, errors };
  }

  it("notes the catalogue as behind the data, once, naming the node and its epoch", async () => {
    const { tenure, configurer, errors } = refusing(record.epoch + 3);
    await configurer.configure(tenure, record, both.alive, ["sled-1"]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(tenure.behind.get(partitionKey(record))).toEqual({
      node: "head-2",
      epoch: record.epoch + 3,
    });
    expect(errors).toHaveLength(1);
  });

  it("a refusal naming an epoch not above the record's is no such note", async () => {
    const { tenure, configurer } = refusing(record.epoch);
    await configurer.configure(tenure, record, both.alive, ["sled-1"]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(tenure.behind.size).toBe(0);
  });
});

describe("Configurer: a new volume of many partitions", () => {
  // 16,384 partitions on two head nodes: with only the bound over all nodes, 512
  // configures were queued at each, more than it opened within the deadline; they timed
  // out and were sent again, and the partitions were failed over for not confirming.
  it("sends each head node at most its bound at once, and the next as one is answered", async () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    /** A fake bus: each request waits until the test answers it. */
    const waiting: { node: string; partition: number; answer: () => void }[] = [];
    const fakeBus = {
      request: (subject: string, message: { partition: number }) =>
        new Promise((resolve) =>
          waiting.push({
            node: subject.split(".").at(-1)!,
            partition: message.partition,
            answer: () => resolve({}),
          }),
        ),
    };
    const alive = new Set(["head-1", "head-2"]);
    const configurer = queueingConfigurer(tenure, fakeBus.request, alive);
    // Four times the bound per head node, each node primary of half.
    const count = 8 * configuresPerNodeInflightMax;
    const records = hold(
      tenure,
      Array.from({ length: count }, (_, partition) => ({
        ...record,
        partition,
        epoch: 1,
        ...(partition % 2 === 0 ? {} : { primary: "head-2", secondaries: ["head-1"] }),
      })),
    );
    const perNode = () => {
      const counts = new Map<string, number>();
      for (const { node } of waiting) counts.set(node, (counts.get(node) ?? 0) + 1);
      return counts;
    };
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    // One round: every partition is owed both members; the bound holds back the rest.
    for (const one of records) void configurer.configure(tenure, one, alive, ["sled-1"]);
    await settle();
    const full = new Map([
      ["head-1", configuresPerNodeInflightMax],
      ["head-2", configuresPerNodeInflightMax],
    ]);
    expect(perNode()).toEqual(full);
    // A queued primary has not been asked: its failover clock has not started.
    const last = records.at(-1)!;
    expect(tenure.asked.get(partitionKey(last))).toBeUndefined();
    // head-1 answers one: its next goes out at once, with no round in between; head-2's
    // count stays.
    const answered = waiting.findIndex((one) => one.node === "head-1");
    const first = waiting.splice(answered, 1)[0]!;
    first.answer();
    await settle();
    expect(perNode()).toEqual(full);
    expect(waiting.at(-1)).toMatchObject({
      node: "head-1",
      partition: configuresPerNodeInflightMax,
    });
    // A record replaced while its configure waits (an update) is not sent from the queue:
    // the decision on its successor configures that.
    const replaced = records[count - 2]!;
    tenure.records.set(partitionKey(replaced), {
      value: { ...replaced, epoch: 2 },
      revision: count,
    });
    // Answering everything, round after round of answers and no reconcile round, reaches
    // every member of every partition once, the replaced one's none.
    let sent = 2 * configuresPerNodeInflightMax + 1;
    while (waiting.length > 0) {
      for (const one of waiting.splice(0)) one.answer();
      await settle();
      sent += waiting.length;
      for (const [, inflight] of perNode()) {
        expect(inflight).toBeLessThanOrEqual(configuresPerNodeInflightMax);
      }
    }
    expect(sent).toBe(2 * (count - 1));
    for (const one of records) {
      const acked = tenure.configured.get(partitionKey(one));
      expect(acked?.size ?? 0).toBe(one === replaced ? 0 : 2);
    }
    expect(tenure.asked.get(partitionKey(last))?.get(last.primary)?.epoch).toBe(1);
    expect(tenure.configuring.size).toBe(0);
    expect(tenure.configuringPerNode.size).toBe(0);
    expect(tenure.configureQueue.size).toBe(0);
  });

  it("sends nothing queued once the tenure no longer leads", async () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    let leading = true;
    /** A fake bus: each request waits until the test answers it. */
    const waiting: (() => void)[] = [];
    const fakeBus = {
      request: () => new Promise((resolve) => waiting.push(() => resolve({}))),
    };
    const alive = new Set(["head-1", "head-2"]);
    const configurer = queueingConfigurer(tenure, fakeBus.request, alive, () => leading);
    const records = hold(
      tenure,
      Array.from({ length: 2 * configuresPerNodeInflightMax }, (_, partition) => ({
        ...record,
        partition,
      })),
    );
    for (const one of records) void configurer.configure(tenure, one, alive, ["sled-1"]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(waiting).toHaveLength(2 * configuresPerNodeInflightMax);
    // Its lease lapsed: answers come in, and nothing more is sent.
    leading = false;
    for (const answer of waiting.splice(0)) answer();
    await new Promise((resolve) => setImmediate(resolve));
    expect(waiting).toHaveLength(0);
  });

  it("drops the queue of a head node the heartbeats count dead", async () => {
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    /** A fake bus: each request waits until the test fails it (a timeout). */
    const waiting: { node: string; fail: () => void }[] = [];
    const fakeBus = {
      request: (subject: string) =>
        new Promise((_, reject) =>
          waiting.push({
            node: subject.split(".").at(-1)!,
            fail: () => reject(new BallastError(ErrorCode.Timeout, "timed out")),
          }),
        ),
    };
    const alive = new Set(["head-1", "head-2"]);
    const configurer = queueingConfigurer(tenure, fakeBus.request, alive);
    const records = hold(
      tenure,
      Array.from({ length: 2 * configuresPerNodeInflightMax }, (_, partition) => ({
        ...record,
        partition,
      })),
    );
    for (const one of records) void configurer.configure(tenure, one, alive, ["sled-1"]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(tenure.configureQueue.get("head-1")?.size).toBe(configuresPerNodeInflightMax);
    // head-1 dies: its requests time out, and nothing queued for it is sent.
    alive.delete("head-1");
    for (const one of waiting.filter((one) => one.node === "head-1")) one.fail();
    await new Promise((resolve) => setImmediate(resolve));
    expect(waiting.filter((one) => one.node === "head-1")).toHaveLength(
      configuresPerNodeInflightMax,
    );
    expect(tenure.configureQueue.has("head-1")).toBe(false);
    expect(tenure.configuringPerNode.has("head-1")).toBe(false);
  });
});

describe("Configurer: failed configures logged (unit, fake bus)", () => {
  it("keeps one logged epoch per member and partition however many epochs fail, and none once the partition is forgotten", async () => {
    // A member whose configures fail (down, cut off) at epoch after epoch: the leader
    // warns once per epoch and retries quietly. What it noted to do so was keyed by
    // epoch, and an epoch that failed is never configured again at that epoch, so a
    // leader that led for months kept one entry per partition and outage of a member,
    // even after the volume was deleted.
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const warned: number[] = [];
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string, message: { epoch: number }) => {
            if (subject.endsWith("head-2")) {
              throw new BallastError(ErrorCode.Timeout, "no answer from head-2");
            }
            return { epoch: message.epoch };
          },
        },
        logger: {
          debug: () => undefined,
          warn: (context: { epoch: number }) => warned.push(context.epoch),
        },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {
        aliveHeadNodes: () => new Set(["head-1", "head-2"]),
        aliveSleds: () => ["sled-1"],
        headNodeDisks: () => new Map(),
      },
    );
    const alive = new Set(["head-1", "head-2"]);
    const epochs = 40;
    for (let epoch = 2; epoch < 2 + epochs; epoch++) {
      const at = { ...record, epoch };
      // Each round retries the member that failed: warned once per epoch.
      await configurer.configure(tenure, at, alive, ["sled-1"]);
      await configurer.configure(tenure, at, alive, ["sled-1"]);
    }
    expect(warned).toEqual(Array.from({ length: epochs }, (_, index) => 2 + index));
    expect(tenure.failuresLogged.size).toBe(1);
    expect(tenure.failuresLogged.get(partitionKey(record))?.size).toBe(1);
    // The volume is deleted: nothing of the partition is left.
    forget(tenure, record);
    expect(tenure.failuresLogged.size).toBe(0);
  });
});

describe("Configurer: a member on another disk than the record's (unit, fake bus)", () => {
  beforeEach(() => {
    clockMs = 1000;
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => vi.restoreAllMocks());

  it("is not sent the epoch it refused every round: again after configureOtherDiskRetryMs, or at once on its old disk or restarted", async () => {
    // head-1 came back on an empty directory (disk-c) under its old id; the record has
    // its replica on disk-a, and no secondary can take over, so it stays the primary.
    // Every round it was sent the configure, and every time it refused (other-disk).
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const onDisk = { ...record, disks: { "head-1": "disk-a", "head-2": "disk-b" } };
    const sent: string[] = [];
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string) => {
            const node = subject.split(".").at(-1)!;
            sent.push(node);
            if (node === "head-1") {
              // As headnode.ts answers it (headnode-faults.test.ts checks that answer).
              throw new BallastError(
                ErrorCode.NotFound,
                "head-1 holds nothing of vol/0 on this disk (disk-c): its replica was on disk disk-a, which this node no longer has",
                { details: { refusal: "other-disk", disk: "disk-a" } },
              );
            }
            return {};
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    const alive = new Set(["head-1", "head-2"]);
    const heartbeatDisks = new Map([
      ["head-1", "disk-c"],
      ["head-2", "disk-b"],
    ]);
    const round = () => configurer.configure(tenure, onDisk, alive, ["sled-1"], heartbeatDisks);
    await round();
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
    sent.length = 0;
    // Rounds every reconcile interval for nearly the whole back-off: nothing goes out.
    for (let step = 0; step < 10; step++) {
      clockMs += (configureOtherDiskRetryMs - 1) / 10;
      await round();
    }
    expect(sent).toEqual([]);
    clockMs += 1;
    await round();
    expect(sent).toEqual(["head-1"]);
    sent.length = 0;
    await round();
    expect(sent).toEqual([]);
    // Its heartbeats name the record's disk again: sent at once.
    heartbeatDisks.set("head-1", "disk-a");
    await round();
    expect(sent).toEqual(["head-1"]);
    sent.length = 0;
    heartbeatDisks.set("head-1", "disk-c");
    await round();
    expect(sent).toEqual([]);
    // Restarted (membership saw a new session): it may have its disk back, sent at once.
    forgetConfigured(tenure, "head-1");
    await round();
    expect(sent).toEqual(["head-1"]);
    sent.length = 0;
    // A new epoch is a new configure: sent at once.
    await configurer.configure(tenure, { ...onDisk, epoch: 3 }, alive, ["sled-1"], heartbeatDisks);
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
  });
});

describe("Configurer: answers after the partition is forgotten (unit, fake bus)", () => {
  it("notes nothing of a refusal or failure that arrives once the volume is deleted", async () => {
    // Configures in flight when the volume is deleted: the head nodes drop the replicas
    // and the requests fail. The refusal (no-replica) and the failure were noted under
    // the forgotten partition's key, where nothing would ever remove them.
    const tenure: Tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const pending: ((error: Error) => void)[] = [];
    const configurer = new Configurer(
      {
        bus: {
          request: () => new Promise((_, reject) => pending.push(reject)),
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {} as never,
      { held: () => tenure, current: () => tenure },
      {
        aliveHeadNodes: () => new Set(["head-1", "head-2"]),
        aliveSleds: () => ["sled-1"],
        headNodeDisks: () => new Map(),
      },
    );
    const sending = configurer.configure(tenure, record, new Set(["head-1", "head-2"]), ["sled-1"]);
    expect(pending).toHaveLength(2);
    forget(tenure, record);
    const [first, second] = pending;
    first!(
      new BallastError(ErrorCode.NotFound, "holds nothing", {
        details: { refusal: "no-replica" },
      }),
    );
    second!(new BallastError(ErrorCode.Timeout, "no answer"));
    await sending;
    expect(tenure.noReplica.size).toBe(0);
    expect(tenure.failuresLogged.size).toBe(0);
    expect(tenure.configured.size).toBe(0);
  });
});

describe("Configurer: a learner's checkpoint read outlasting the tenure (unit, fake bus)", () => {
  // review-retries.md item 3: a leader frozen inside the checkpoint read woke after a
  // newer one promoted the learner, which acknowledged writes and restarted; its late
  // learner configure had the head node rebuild the replica, removing its journal.
  const learning: PartitionRecord = { ...record, learners: ["head-3"] };
  const alive = new Set(["head-1", "head-2", "head-3"]);

  /** A configurer whose checkpoint reads wait for `release`; `sent` names who was asked. */
  function frozenRead(tenure: Tenure, leads: () => boolean) {
    const sent: string[] = [];
    let release: () => void = () => undefined;
    const read = new Promise<void>((resolve) => {
      release = resolve;
    });
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string) => {
            sent.push(subject.split(".").at(-1)!);
            return {};
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {
        checkpoint: async () => {
          await read;
          return { opNum: 7, blobKey: "checkpoints/1-abc/0/head-1/7", sleds: ["sled-1"] };
        },
        newestCheckpoint: async () => undefined,
      } as never,
      { held: () => tenure, current: () => (leads() ? tenure : undefined) },
      {} as never,
    );
    return { sent, configurer, release: () => release() };
  }

  function readyTenure(): Tenure {
    const tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    hold(tenure, [learning]);
    return tenure;
  }

  it("sends the learner nothing when the tenure ended during the read", async () => {
    const tenure = readyTenure();
    let leading = true;
    const { sent, configurer, release } = frozenRead(tenure, () => leading);
    const done = configurer.configure(tenure, learning, alive, ["sled-1"]);
    // The voters have no read to wait for: theirs went out at once.
    await Promise.resolve();
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
    leading = false;
    release();
    await done;
    expect(sent.sort()).toEqual(["head-1", "head-2"]);
    // Nothing noted of it, and nothing left in flight.
    expect(tenure.configured.get(partitionKey(learning))?.has("head-3")).toBe(false);
    expect(tenure.configuring.size).toBe(0);
  });

  it("sends the learner nothing when the tenure moved the partition on during the read", async () => {
    const tenure = readyTenure();
    const { sent, configurer, release } = frozenRead(tenure, () => true);
    const done = configurer.configure(tenure, learning, alive, ["sled-1"]);
    // Promoted meanwhile, by this same tenure: the learner configure is of an older epoch.
    hold(tenure, [{ ...learning, epoch: 3, secondaries: ["head-2", "head-3"], learners: [] }]);
    release();
    await done;
    expect(sent).not.toContain("head-3");
  });

  it("sends the learner its configure, with the checkpoint, while the tenure leads", async () => {
    const tenure = readyTenure();
    const { sent, configurer, release } = frozenRead(tenure, () => true);
    const done = configurer.configure(tenure, learning, alive, ["sled-1"]);
    release();
    await done;
    expect(sent.sort()).toEqual(["head-1", "head-2", "head-3"]);
  });
});

describe("Configurer: the checkpoint a learner rebuilds from (unit, fake bus)", () => {
  // Simulator seed 9760592: the primary, itself rebuilt from another replica's checkpoint
  // and cut from the sleds before it recorded one of its own, had released notes; each
  // learner was sent no checkpoint, started from nothing, needed the released notes and
  // was dropped and added again for the whole cut, the partition acknowledging nothing,
  // while former members' checkpoints sat on the sleds.
  const learning: PartitionRecord = { ...record, secondaries: [], learners: ["head-3"] };
  const alive = new Set(["head-1", "head-3"]);
  const own = { opNum: 9, blobKey: "checkpoints/1-abc/0/head-1/9", sleds: ["sled-1"] };
  const departed = { opNum: 7, blobKey: "checkpoints/1-abc/0/head-2/7", sleds: ["sled-1"] };

  async function learnerCheckpoint(
    primaryHas: typeof own | undefined,
    liveSleds: string[] = ["sled-1"],
  ): Promise<unknown> {
    const tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    hold(tenure, [learning]);
    const sent = new Map<string, { checkpoint?: unknown }>();
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string, message: { checkpoint?: unknown }) => {
            sent.set(subject.split(".").at(-1)!, message);
            return {};
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {
        checkpoint: async (_volume: string, _partition: number, node: string) =>
          node === "head-1" ? primaryHas : undefined,
        // As the catalogue: the newest of this incarnation, the primary's own among them.
        newestCheckpoint: async () =>
          primaryHas?.blobKey.startsWith("checkpoints/1-abc/") === true &&
          primaryHas.opNum > departed.opNum
            ? primaryHas
            : departed,
      } as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    await configurer.configure(tenure, learning, alive, liveSleds);
    expect(sent.get("head-1")?.checkpoint).toBeUndefined();
    return sent.get("head-3")?.checkpoint;
  }

  it("sends the primary's own checkpoint when it has recorded one", async () => {
    expect(await learnerCheckpoint(own)).toEqual(own);
  });

  it("sends the partition's newest of any replica when the primary has recorded none", async () => {
    expect(await learnerCheckpoint(undefined)).toEqual(departed);
  });

  // Simulator seed 9761092: the primary's pointer was from an earlier life (recorded,
  // then the node crashed, was rebuilt as a learner from a newer checkpoint and
  // promoted); cut from the sleds, it could record none newer, and each learner sent the
  // old pointer needed notes it had released.
  it("sends the partition's newest of any replica when the primary's own is older", async () => {
    const stale = { opNum: 5, blobKey: "checkpoints/1-abc/0/head-1/5", sleds: ["sled-1"] };
    expect(await learnerCheckpoint(stale)).toEqual(departed);
  });

  it("keeps the primary's own when another's is only as new", async () => {
    const same = { opNum: 7, blobKey: "checkpoints/1-abc/0/head-1/7", sleds: ["sled-1"] };
    expect(await learnerCheckpoint(same)).toEqual(same);
  });

  // Review 32: the primary's own pointer was read by its key alone, and a deleted
  // incarnation's replica may have recorded one under the same name.
  it("never sends the primary's pointer of another incarnation, however new", async () => {
    const other = { opNum: 50, blobKey: "checkpoints/9-old/0/head-1/50", sleds: ["sled-1"] };
    expect(await learnerCheckpoint(other)).toEqual(departed);
  });

  // Simulator seed 9790455: the newest, another replica's, was damaged on every sled while
  // the primary was cut from them; each learner failed to fetch it and was dropped and
  // added again, though the primary's own, older, was sound.
  it("sends the primary's own, older, once a learner found no usable copy of the newer", async () => {
    const older = { opNum: 5, blobKey: "checkpoints/1-abc/0/head-1/5", sleds: ["sled-1"] };
    const tenure = newTenure({ term: 1, tenure: 1 }, 0);
    tenure.ready = true;
    hold(tenure, [learning]);
    const sent: unknown[] = [];
    const configurer = new Configurer(
      {
        bus: {
          request: async (subject: string, message: { checkpoint?: unknown }) => {
            if (subject.split(".").at(-1) !== "head-3") return {};
            sent.push(message.checkpoint);
            throw new BallastError(ErrorCode.Unavailable, "no usable copy", {
              details: { refusal: "checkpoint-unusable", blobKey: departed.blobKey },
            });
          },
        },
        logger: { debug: () => undefined, warn: () => undefined },
      } as never,
      {
        checkpoint: async (_volume: string, _partition: number, node: string) =>
          node === "head-1" ? older : undefined,
        newestCheckpoint: async () => departed,
      } as never,
      { held: () => tenure, current: () => tenure },
      {} as never,
    );
    await configurer.configure(tenure, learning, alive, ["sled-1"]);
    await configurer.configure(tenure, { ...learning, epoch: learning.epoch + 1 }, alive, [
      "sled-1",
    ]);
    expect(sent).toEqual([departed, older]);
  });

  // Review 32: only a primary audits its own checkpoint's copies; another replica's may
  // have lost them all.
  it("prefers the primary's own, older, when the newer has no copy on a live sled", async () => {
    const older = { opNum: 5, blobKey: "checkpoints/1-abc/0/head-1/5", sleds: ["sled-2"] };
    expect(await learnerCheckpoint(older, ["sled-2"])).toEqual(older);
  });
});

describe("failedField: the voters describe names failed (unit)", () => {
  it("a primary reporting itself failed in the record's epoch, and failed secondaries", () => {
    const failedReport = { ...report(record.epoch), failed: true, followers: [] };
    expect(failedField(record, failedReport, undefined, undefined)).toEqual({
      failed: ["head-1"],
    });
    // A failed report of an earlier epoch is not the primary's now.
    expect(failedField(record, { ...failedReport, epoch: 1 }, undefined, undefined)).toEqual({});
    expect(failedField(record, report(record.epoch), undefined, undefined)).toEqual({});
    const leases = { failedMembers: () => new Set(["head-2", "head-9"]) };
    // head-9 is no voter of the record: not named.
    expect(failedField(record, failedReport, leases, undefined)).toEqual({
      failed: ["head-1", "head-2"],
    });
  });
});
