// The leader's book of read leases and reports, pure: time is an argument.

import { limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import type { VolumeRecord } from "../src/catalogue.ts";
import { decidePartition, type PartitionRecord, type Report } from "../src/decisions.ts";
import { LeaseBook, partitionKey, type RecordOf, type ReportOutcome } from "../src/leases.ts";
import { loadOf } from "../src/placement.ts";
import { newTenure } from "../src/tenure.ts";

const { primaryLeaseMs, primaryLeaseDriftMarginMs, commitStallMsMax } = limits;
const heads = ["head-1", "head-2", "head-3"];
const alive = new Set(heads);

const record: PartitionRecord = {
  volume: "v",
  volumeId: "v-1",
  partition: 0,
  partitionStart: 0,
  partitionBytes: 1024 * 1024,
  epoch: 4,
  primary: "head-1",
  secondaries: ["head-2"],
};

function report(overrides: Partial<Report> = {}): Report {
  return {
    volume: "v",
    volumeId: "v-1",
    partition: 0,
    epoch: 4,
    session: 1,
    commitOpNum: 10,
    tailCommitted: true,
    followers: [{ node: "head-2", matchOpNum: 10, learner: false }],
    ...overrides,
  };
}

function book(leaderSinceMs = 0) {
  return new LeaseBook({
    leaderSinceMs,
    leaseMs: primaryLeaseMs,
    driftMarginMs: primaryLeaseDriftMarginMs,
    reportAgeMsMax: 2000,
  });
}

const lease = primaryLeaseMs + primaryLeaseDriftMarginMs;

/** Records by address, as the leader's copy of the catalogue gives them. */
function recordsOf(...records: PartitionRecord[]): RecordOf {
  return (volume, partition) =>
    records.find((r) => r.volume === volume && r.partition === partition);
}

/**
 * Sends `node`'s whole state as one report of a head node that predates node leases:
 * returns whether `entry`'s partition was granted.
 */
function legacy(
  leases: LeaseBook,
  node: string,
  entry: Report,
  on: PartitionRecord,
  live: ReadonlySet<string>,
  nowMs: number,
): boolean {
  const outcome = leases.onNodeReport({ node, primaries: [entry] }, recordsOf(on), live, nowMs);
  return outcome.granted.length === 1;
}

/** A head node with node leases: each call is its next report (session 1). */
function reporter(leases: LeaseBook, node: string, records: RecordOf) {
  let seq = 0;
  let base: number | undefined;
  return {
    /** A change (or, with `whole`, the whole state) at `nowMs`. */
    send(
      nowMs: number,
      change: { primaries?: Report[]; gone?: { volume: string; partition: number }[] } = {},
      options: { whole?: boolean; live?: ReadonlySet<string>; base?: number } = {},
    ): ReportOutcome {
      seq += 1;
      const outcome = leases.onNodeReport(
        {
          node,
          session: 1,
          seq,
          base: options.whole === true ? undefined : (options.base ?? base),
          primaries: change.primaries ?? [],
          gone: change.gone ?? [],
        },
        records,
        options.live ?? alive,
        nowMs,
      );
      if (outcome.accepted !== undefined) base = outcome.accepted;
      return outcome;
    },
  };
}

describe("lease grants", () => {
  test("a grant runs for the lease plus the drift margin from when it is decided", () => {
    const leases = book();
    expect(legacy(leases, "head-1", report(), record, alive, 50_000)).toBe(true);
    expect(leases.leaseUntilMs(record)).toBe(50_000 + lease);
    // A later grant extends it; an earlier one never shortens it.
    legacy(leases, "head-1", report(), record, alive, 51_000);
    legacy(leases, "head-1", report(), record, alive, 50_500);
    expect(leases.leaseUntilMs(record)).toBe(51_000 + lease);
  });

  test("refused while the partition's primary is being replaced", () => {
    const leases = book();
    legacy(leases, "head-1", report(), record, alive, 50_000);
    const until = leases.leaseUntilMs(record);
    leases.setReplacing(record, true);
    expect(legacy(leases, "head-1", report(), record, alive, 51_000)).toBe(false);
    expect(leases.leaseUntilMs(record)).toBe(until);
    leases.setReplacing(record, false);
    expect(legacy(leases, "head-1", report(), record, alive, 51_000)).toBe(true);
    expect(leases.leaseUntilMs(record)).toBe(51_000 + lease);
  });

  test("refused to a primary that reports itself failed, whose report is still kept", () => {
    const leases = book();
    const until = leases.leaseUntilMs(record);
    expect(legacy(leases, "head-1", report({ failed: true }), record, alive, 50_000)).toBe(false);
    expect(leases.leaseUntilMs(record)).toBe(until);
    expect(leases.reportOf(record, 50_100)?.failed).toBe(true);
  });

  test("refused at another epoch, to a node that is not the primary, or of another incarnation", () => {
    const leases = book();
    expect(legacy(leases, "head-1", report({ epoch: 3 }), record, alive, 50_000)).toBe(false);
    expect(legacy(leases, "head-2", report(), record, alive, 50_000)).toBe(false);
    expect(legacy(leases, "head-1", report({ volumeId: "v-0" }), record, alive, 50_000)).toBe(
      false,
    );
    expect(legacy(leases, "head-1", report(), record, new Set(["head-2"]), 50_000)).toBe(false);
    expect(leases.leaseUntilMs(record)).toBe(lease);
  });

  test("a new leader assumes a lease granted just before it took over is outstanding", () => {
    const leases = book(70_000);
    expect(leases.leaseUntilMs(record)).toBe(70_000 + lease);
    const promoted = { ...record, epoch: 5, primary: "head-2", secondaries: [] };
    legacy(leases, "head-1", report(), record, alive, 80_000);
    // A grant to the old primary says nothing about the new one.
    expect(leases.leaseUntilMs(promoted)).toBe(70_000 + lease);
  });
});

describe("node leases", () => {
  const other: PartitionRecord = { ...record, partition: 1, partitionStart: 1024 * 1024 };
  const records = recordsOf(record, other);

  test("an idle node's empty change renews every primary it holds and keeps its reports fresh", () => {
    const leases = book();
    const head1 = reporter(leases, "head-1", records);
    expect(
      head1.send(50_000, { primaries: [report(), report({ partition: 1 })] }, { whole: true }),
    ).toMatchObject({
      accepted: 1,
      held: 2,
      excluded: [],
    });
    for (let at = 50_500; at <= 60_000; at += 500) {
      expect(head1.send(at)).toMatchObject({ accepted: expect.any(Number), held: 2, excluded: [] });
    }
    expect(leases.leaseUntilMs(record)).toBe(60_000 + lease);
    expect(leases.leaseUntilMs(other)).toBe(60_000 + lease);
    // The entry sent once, 10 s ago, is still the primary's current report.
    expect(leases.reportOf(other, 60_100)?.partition).toBe(1);
    expect(leases.reportOf(other, 62_001)).toBeUndefined();
  });

  test("a change on another base is refused with full and renews nothing; the whole state is accepted", () => {
    const leases = book();
    const head1 = reporter(leases, "head-1", records);
    head1.send(50_000, { primaries: [report()] }, { whole: true });
    // The answer to seq 2 was lost: the node sends seq 3 on base 1, the book holds 2.
    head1.send(50_500);
    expect(head1.send(51_000, {}, { base: 1 })).toMatchObject({ full: true });
    expect(leases.leaseUntilMs(record)).toBe(50_500 + lease);
    expect(head1.send(51_500, { primaries: [report()] }, { whole: true })).toMatchObject({
      accepted: 4,
      held: 1,
    });
    expect(leases.leaseUntilMs(record)).toBe(51_500 + lease);
  });

  test("a whole state of an earlier session, or an older one of this session, is refused", () => {
    const leases = book();
    const whole = (session: number, seq: number, nowMs: number) =>
      leases.onNodeReport(
        { node: "head-1", session, seq, primaries: [report()] },
        records,
        alive,
        nowMs,
      );
    expect(whole(2, 5, 50_000).accepted).toBe(5);
    expect(whole(1, 9, 50_500).full).toBe(true);
    expect(whole(2, 5, 50_500).full).toBe(true);
    expect(whole(3, 1, 51_000).accepted).toBe(1);
    expect(leases.leaseUntilMs(record)).toBe(51_000 + lease);
  });

  test("a failover waits out the old primary's node lease on that partition", () => {
    const leases = book();
    const head1 = reporter(leases, "head-1", records);
    head1.send(50_000, { primaries: [report(), report({ partition: 1 })] }, { whole: true });
    head1.send(50_500);
    // head-1 dies: silent, and no longer alive.
    const withoutHead1 = new Set(["head-2", "head-3"]);
    const view = (nowMs: number) => ({
      nowMs,
      alive: withoutHead1,
      load: loadOf([record], [...withoutHead1]),
      replicaCount: 2,
      report: leases.reportOf(record, nowMs),
      leaseUntilMs: leases.leaseUntilMs(record),
      learnersSinceMs: new Map(),
      learnerCatchUpMsMax: 30_000,
    });
    expect(decidePartition(record, view(52_000))).toMatchObject({
      kind: "wait",
      untilMs: 50_500 + lease,
    });
    leases.setReplacing(record, true);
    expect(decidePartition(record, view(50_500 + lease))).toMatchObject({ kind: "wait" });
    expect(decidePartition(record, view(50_500 + lease + 1))).toMatchObject({
      kind: "update",
      record: { primary: "head-2", epoch: 5 },
    });
  });

  test("once a partition stops being covered, the node's later grants do not extend its lease", () => {
    const leases = book();
    const head1 = reporter(leases, "head-1", records);
    head1.send(50_000, { primaries: [report(), report({ partition: 1 })] }, { whole: true });
    // head-1 stays alive and reports partition 0 failed: excluded, and its lease stays
    // where the grant before left it, while partition 1 is renewed on.
    const failed = head1.send(50_500, { primaries: [report({ failed: true })] });
    expect(failed).toMatchObject({ held: 2, excluded: [{ volume: "v", partition: 0, epoch: 4 }] });
    for (let at = 51_000; at <= 60_000; at += 500) head1.send(at);
    expect(leases.leaseUntilMs(record)).toBe(50_000 + lease);
    expect(leases.leaseUntilMs(other)).toBe(60_000 + lease);
    const decision = decidePartition(record, {
      nowMs: 60_000,
      alive,
      load: loadOf([record, other], heads),
      replicaCount: 2,
      report: leases.reportOf(record, 60_000),
      leaseUntilMs: leases.leaseUntilMs(record),
      learnersSinceMs: new Map(),
      learnerCatchUpMsMax: 30_000,
    });
    expect(decision).toMatchObject({ kind: "update", record: { primary: "head-2" } });
  });

  test("a partition gone from the node's state, or being replaced, keeps the lease it had", () => {
    const leases = book();
    const head1 = reporter(leases, "head-1", records);
    head1.send(50_000, { primaries: [report(), report({ partition: 1 })] }, { whole: true });
    head1.send(50_500, { gone: [{ volume: "v", partition: 0 }] });
    leases.setReplacing(other, true);
    for (let at = 51_000; at <= 55_000; at += 500) {
      expect(head1.send(at)).toMatchObject({ held: 1, excluded: [{ partition: 1 }] });
    }
    expect(leases.leaseUntilMs(record)).toBe(50_000 + lease);
    expect(leases.leaseUntilMs(other)).toBe(50_500 + lease);
    // Coming back into the state, and no longer replaced: covered again.
    leases.setReplacing(other, false);
    head1.send(56_000, { primaries: [report()] });
    expect(leases.leaseUntilMs(record)).toBe(56_000 + lease);
    expect(leases.leaseUntilMs(other)).toBe(56_000 + lease);
  });

  test("a node that reports a partition it no longer leads is named deposed and excluded", () => {
    const leases = book();
    const head2 = reporter(leases, "head-2", records);
    const outcome = head2.send(50_000, { primaries: [report()] }, { whole: true });
    expect(outcome.deposed).toEqual([record]);
    expect(outcome.excluded).toEqual([{ volume: "v", partition: 0, epoch: 4 }]);
    expect(leases.reportOf(record, 50_000)).toBeUndefined();
  });
});

describe("reports feed the decisions", () => {
  test("a stall the primary reports reaches decidePartition, which drops the follower", () => {
    const leases = book();
    const stalled = report({
      followers: [{ node: "head-2", matchOpNum: 7, learner: false, stalledMs: commitStallMsMax }],
    });
    legacy(leases, "head-1", stalled, record, alive, 50_000);
    const decision = decidePartition(record, {
      nowMs: 50_100,
      alive,
      load: loadOf([record], heads),
      replicaCount: 2,
      report: leases.reportOf(record, 50_100),
      leaseUntilMs: leases.leaseUntilMs(record),
      learnersSinceMs: new Map(),
      learnerCatchUpMsMax: 30_000,
    });
    expect(decision).toMatchObject({ kind: "update", record: { secondaries: [] } });
  });

  test("only the record primary's report is kept, and a stale one is not acted on", () => {
    const leases = book();
    legacy(leases, "head-2", report({ commitOpNum: 99 }), record, alive, 50_000);
    expect(leases.reportOf(record, 50_000)).toBeUndefined();
    legacy(leases, "head-1", report(), record, alive, 50_000);
    expect(leases.reportOf(record, 52_000)?.commitOpNum).toBe(10);
    expect(leases.reportOf(record, 52_001)).toBeUndefined();
    expect(leases.lastReportOf(record)?.commitOpNum).toBe(10);
  });
});

describe("what a report costs", () => {
  /** `count` partitions of volume v, all led by head-1 at epoch 4. */
  function many(count: number): PartitionRecord[] {
    return Array.from({ length: count }, (_, partition) => ({ ...record, partition }));
  }

  /** Records by partition, counting every look-up a report makes (its work per entry). */
  function counted(records: PartitionRecord[]) {
    const byPartition = new Map(records.map((one) => [one.partition, one]));
    const counter = {
      lookups: 0,
      byPartition,
      recordOf: ((volume, partition) => {
        counter.lookups++;
        return volume === "v" ? byPartition.get(partition) : undefined;
      }) as RecordOf,
    };
    return counter;
  }

  test("a change judges the entries it names, not every primary the node holds", () => {
    const leases = book();
    const records = many(4096);
    const counter = counted(records);
    const head1 = reporter(leases, "head-1", counter.recordOf);
    const whole = head1.send(
      50_000,
      { primaries: records.map((one) => report({ partition: one.partition })) },
      { whole: true },
    );
    expect(whole).toMatchObject({ held: 4096, excluded: [] });
    expect(counter.lookups).toBe(4096);
    // Idle reports: nothing changed, nothing looked up, every lease renewed.
    counter.lookups = 0;
    for (let at = 50_500; at <= 55_000; at += 500) {
      expect(head1.send(at)).toMatchObject({ held: 4096, excluded: [] });
    }
    expect(counter.lookups).toBe(0);
    expect(leases.leaseUntilMs(records[4095]!)).toBe(55_000 + lease);
    // A change of three entries (one failed) costs three.
    const failed = head1.send(55_500, {
      primaries: [report({ partition: 7, failed: true }), report({ partition: 8 })],
      gone: [{ volume: "v", partition: 9 }],
    });
    expect(counter.lookups).toBe(2);
    expect(failed).toMatchObject({ held: 4095, excluded: [{ partition: 7 }] });
    expect(head1.send(56_000)).toMatchObject({ excluded: [{ partition: 7 }] });
    expect(leases.leaseUntilMs(records[7]!)).toBe(55_000 + lease);
    expect(leases.leaseUntilMs(records[9]!)).toBe(55_000 + lease);
    expect(leases.leaseUntilMs(records[8]!)).toBe(56_000 + lease);
    expect(leases.verify("head-1", counter.recordOf, alive)).toEqual([]);
  });

  test("what moves a verdict without a change of the node's judges that entry again", () => {
    const leases = book();
    const records = many(1024);
    const counter = counted(records);
    const head1 = reporter(leases, "head-1", counter.recordOf);
    head1.send(
      50_000,
      { primaries: records.map((one) => report({ partition: one.partition })) },
      { whole: true },
    );
    counter.lookups = 0;
    // A failover of partition 3 to head-2: its record changes, as the leader's copy says.
    const moved = { ...records[3]!, primary: "head-2", secondaries: ["head-1"], epoch: 5 };
    counter.byPartition.set(3, moved);
    leases.recordChanged("v", 3);
    expect(head1.send(50_500)).toMatchObject({ excluded: [{ partition: 3 }], deposed: [moved] });
    expect(counter.lookups).toBe(1);
    expect(leases.leaseUntilMs(records[3]!)).toBe(50_000 + lease);
    // Partition 4 is being replaced, then not.
    leases.setReplacing(records[4]!, true);
    leases.setReplacing(records[4]!, true);
    expect(
      head1
        .send(51_000)
        .excluded.map((one) => one.partition)
        .sort(),
    ).toEqual([3, 4]);
    leases.setReplacing(records[4]!, false);
    expect(head1.send(51_500)).toMatchObject({ excluded: [{ partition: 3 }] });
    expect(leases.leaseUntilMs(records[4]!)).toBe(51_500 + lease);
    expect(counter.lookups).toBe(3);
    // A keep of partition 5 says it is not being replaced every round: no cost.
    for (let at = 52_000; at <= 54_000; at += 500) {
      leases.setReplacing(records[5]!, false);
      head1.send(at);
    }
    expect(counter.lookups).toBe(3);
    // The node counted dead, then alive again: every entry is judged again, each time.
    expect(head1.send(54_500, {}, { live: new Set(["head-2"]) }).excluded).toHaveLength(1024);
    expect(head1.send(55_000)).toMatchObject({ excluded: [{ partition: 3 }] });
    expect(counter.lookups).toBe(3 + 2 * 1024);
    expect(leases.verify("head-1", counter.recordOf, alive)).toEqual([]);
  });

  test("a tenure tells its book of every record and volume change", () => {
    const tenure = newTenure({ term: 1, tenure: 1 }, 0);
    const volume = { name: "v", id: "v-1" } as unknown as VolumeRecord;
    tenure.volumes.set("v", volume);
    for (const one of many(4)) tenure.records.set(partitionKey(one), { value: one, revision: 1 });
    // As reports.ts looks records up.
    const recordOf: RecordOf = (name, partition) =>
      name === "v" ? tenure.records.get(`v-1/${partition}`)?.value : undefined;
    const head1 = reporter(tenure.leases, "head-1", recordOf);
    head1.send(
      50_000,
      { primaries: many(4).map((one) => report({ partition: one.partition })) },
      { whole: true },
    );
    const next = { ...tenure.records.get("v-1/2")!.value, epoch: 5 };
    tenure.records.set("v-1/2", { value: next, revision: 2 });
    tenure.records.delete("v-1/1");
    expect(
      head1
        .send(50_500)
        .excluded.map((one) => one.partition)
        .sort(),
    ).toEqual([1, 2]);
    expect(tenure.leases.verify("head-1", recordOf, alive)).toEqual([]);
  });
});

describe("nodes membership forgot", () => {
  test("a node evicted leaves nothing in the book but the lease end it had, and starts afresh if heard again", () => {
    // Head nodes replaced under new ids over a long tenure: each kept its last state
    // (entries, failed replicas) in the book, and the purger counted it as holding the
    // incarnations it last reported.
    const leases = book();
    const records = recordsOf(record);
    const head1 = reporter(leases, "head-1", records);
    head1.send(10_000, { primaries: [report()] }, { whole: true });
    leases.onNodeReport(
      {
        node: "head-3",
        session: 1,
        seq: 1,
        primaries: [],
        failures: [{ volume: "v", volumeId: "v-1", partition: 0, epoch: 4 }],
      },
      records,
      alive,
      10_000,
    );
    const withHead3 = { ...record, secondaries: ["head-2", "head-3"] };
    expect(leases.failedMembers(withHead3)).toEqual(new Set(["head-3"]));
    expect(leases.nodesHeld).toBe(2);
    leases.takeChanged();
    const leaseEnd = leases.leaseUntilMs(record);
    expect(leaseEnd).toBe(10_000 + lease);

    leases.forgetNode("head-1");
    leases.forgetNode("head-3");
    expect(leases.nodesHeld).toBe(0);
    expect(leases.holdersOf(new Set(["v-1"]))).toEqual(new Map());
    expect(leases.failedMembers(withHead3)).toEqual(new Set());
    expect(leases.reportOf(record, 10_001)).toBeUndefined();
    // The decisions look again at what it reported.
    expect(leases.peekChanged()).toEqual(new Set(["v/0"]));
    // Its lease ends where it did: forgetting neither extends nor shortens it.
    expect(leases.leaseUntilMs(record)).toBe(leaseEnd);
    // Heard again: a change is refused, its whole state is taken and granted anew.
    expect(head1.send(20_000, {}).full).toBe(true);
    head1.send(20_000, { primaries: [report()] }, { whole: true });
    expect(leases.leaseUntilMs(record)).toBe(20_000 + lease);
    expect(leases.nodesHeld).toBe(1);
  });
});
