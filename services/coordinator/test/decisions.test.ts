// The leader's per-partition decision, pure: records, reports and time in, one decision
// out. Time is an argument; nothing here waits.

import { limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import {
  flushStallNodesMemoryMs,
  primaryUnconfirmedMsMax,
  sledEvidenceFreshMs,
  standInAvoidedAfterMs,
  standInProbesMax,
} from "../src/constants.ts";
import {
  decidePartition,
  failingOver,
  failsOver,
  flushStalledNodes,
  mayGrantLease,
  outOfStep,
  type PartitionRecord,
  type PartitionView,
  probeTargets,
  type Report,
  unconfirmedSince,
} from "../src/decisions.ts";
import { loadOf } from "../src/placement.ts";

const heads = ["head-1", "head-2", "head-3", "head-4"];
const mebibyte = 1024 * 1024;

const base: PartitionRecord = {
  volume: "v",
  volumeId: "v-1",
  partition: 0,
  partitionStart: 0,
  partitionBytes: mebibyte,
  epoch: 4,
  primary: "head-1",
  secondaries: ["head-2"],
};

function view(record: PartitionRecord, overrides: Partial<PartitionView> = {}): PartitionView {
  return {
    nowMs: 100_000,
    alive: new Set(heads),
    load: loadOf([record], heads),
    replicaCount: 2,
    leaseUntilMs: 0,
    learnersSinceMs: new Map(),
    learnerCatchUpMsMax: 30_000,
    ...overrides,
  };
}

function report(record: PartitionRecord, overrides: Partial<Report> = {}): Report {
  return {
    volume: record.volume,
    partition: record.partition,
    epoch: record.epoch,
    session: 1,
    commitOpNum: 100,
    tailCommitted: true,
    followers: [],
    ...overrides,
  };
}

describe("safe promotion of a learner", () => {
  const learning: PartitionRecord = { ...base, secondaries: [], learners: ["head-2"] };

  test("a caught-up learner first joins: it counts for commit but is not a secondary yet", () => {
    const decision = decidePartition(
      learning,
      view(learning, {
        report: report(learning, {
          followers: [{ node: "head-2", matchOpNum: 100, learner: true }],
        }),
      }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, secondaries: [], joining: ["head-2"], learners: [] },
    });
  });

  test("a stale 'caught up' report from the epoch before joining never promotes the joiner", () => {
    const joining: PartitionRecord = { ...learning, epoch: 5, learners: [], joining: ["head-2"] };
    const stale = report(joining, {
      epoch: 4,
      followers: [{ node: "head-2", matchOpNum: 100, learner: true }],
    });
    expect(decidePartition(joining, view(joining, { report: stale }))).toEqual({ kind: "keep" });
    // Matched, but the primary has not yet committed the tail it inherited: not yet.
    const untailed = report(joining, {
      tailCommitted: false,
      followers: [{ node: "head-2", matchOpNum: 100, learner: false }],
    });
    expect(decidePartition(joining, view(joining, { report: untailed }))).toEqual({
      kind: "keep",
    });
  });

  test("a report from the joining epoch with the tail committed makes the joiner a secondary", () => {
    const joining: PartitionRecord = { ...learning, epoch: 5, learners: [], joining: ["head-2"] };
    const fresh = report(joining, {
      followers: [{ node: "head-2", matchOpNum: 100, learner: false }],
    });
    expect(decidePartition(joining, view(joining, { report: fresh }))).toMatchObject({
      kind: "update",
      record: { epoch: 6, secondaries: ["head-2"], joining: [] },
    });
  });

  test("a learner behind the commit point stays a learner", () => {
    const decision = decidePartition(
      learning,
      view(learning, {
        report: report(learning, {
          followers: [{ node: "head-2", matchOpNum: 99, learner: true }],
        }),
      }),
    );
    expect(decision).toEqual({ kind: "keep" });
  });

  test("a follower the primary reports unheard is no match, even at an empty partition's commit point 0 (seeds 9600248, 9602764)", () => {
    // A new volume's partition: commit point 0, and a learner whose configure never
    // opened anything (its node's disk hung, or the configure was lost) is reported at
    // op 0. Counted as matched, it joined, became a voter hosting nothing, and was once
    // promoted primary: the partition never served again.
    const unheard = { node: "head-2", matchOpNum: 0, learner: true, unheard: true };
    const empty = report(learning, { commitOpNum: 0, followers: [unheard] });
    expect(decidePartition(learning, view(learning, { report: empty }))).toEqual({
      kind: "keep",
    });
    const joining: PartitionRecord = { ...learning, epoch: 5, learners: [], joining: ["head-2"] };
    const unheardJoiner = report(joining, {
      commitOpNum: 0,
      followers: [{ ...unheard, learner: false }],
    });
    expect(decidePartition(joining, view(joining, { report: unheardJoiner }))).toEqual({
      kind: "keep",
    });
    // Once it has acknowledged (in this epoch), op 0 is a match: it joins.
    const { unheard: _, ...heard } = unheard;
    const acknowledged = report(learning, { commitOpNum: 0, followers: [heard] });
    expect(decidePartition(learning, view(learning, { report: acknowledged }))).toMatchObject({
      kind: "update",
      record: { epoch: 5, joining: ["head-2"], learners: [] },
    });
    // And an unheard learner past its catch-up bound is dropped, to be added afresh.
    const since = new Map([["head-2", 100_000 - 30_001]]);
    expect(
      decidePartition(learning, view(learning, { report: empty, learnersSinceMs: since })),
    ).toMatchObject({ kind: "update", record: { learners: [] } });
  });
});

describe("a dead primary", () => {
  const three: PartitionRecord = {
    ...base,
    secondaries: ["head-3"],
    joining: ["head-2"],
    learners: ["head-4"],
  };
  const withoutPrimary = new Set(["head-2", "head-3", "head-4"]);

  test("waits for its read lease to run out, then promotes only a voting secondary", () => {
    const waiting = decidePartition(
      three,
      view(three, { alive: withoutPrimary, replicaCount: 3, leaseUntilMs: 100_500 }),
    );
    expect(waiting).toMatchObject({ kind: "wait", untilMs: 100_500 });
    const promoted = decidePartition(
      three,
      view(three, { alive: withoutPrimary, replicaCount: 3, leaseUntilMs: 99_999 }),
    );
    expect(promoted).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-3", secondaries: [], joining: [] },
    });
    // The joiner and the learner rebuild from the new primary as learners.
    expect(promoted.kind === "update" && [...promoted.record.learners!].sort()).toEqual([
      "head-2",
      "head-4",
    ]);
  });

  test("a primary that reports itself failed is replaced like a dead one, after its lease", () => {
    // Its journal could not write (ENOSPC): the node is alive and reports, but serves
    // nothing. Before, only a dead node's primaries were ever replaced.
    const failed = report(base, { failed: true, tailCommitted: false, followers: [] });
    expect(
      decidePartition(base, view(base, { report: failed, leaseUntilMs: 100_500 })),
    ).toMatchObject({ kind: "wait", reason: expect.stringContaining("head-1 has failed") });
    expect(decidePartition(base, view(base, { report: failed }))).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-2", secondaries: [] },
    });
    // A failed report from an older epoch says nothing of this one.
    const stale = report(base, { epoch: 3, failed: true });
    expect(decidePartition(base, view(base, { report: stale }))).toEqual({ kind: "keep" });
  });

  test("with only a joiner and a learner left, nobody is promoted", () => {
    const noVoter: PartitionRecord = { ...three, secondaries: [] };
    expect(
      decidePartition(noVoter, view(noVoter, { alive: withoutPrimary, replicaCount: 3 })).kind,
    ).toBe("unavailable");
  });

  test("a stall its last report named does not keep the secondary from being promoted", () => {
    const stalled = report(base, {
      followers: [
        { node: "head-2", matchOpNum: 90, learner: false, stalledMs: limits.commitStallMsMax },
      ],
    });
    expect(
      decidePartition(base, view(base, { alive: new Set(["head-2"]), report: stalled })),
    ).toMatchObject({ kind: "update", record: { primary: "head-2", epoch: 5 } });
  });
});

describe("a primary whose journal keeps failing", () => {
  /**
   * The leader's rounds (every 500 ms) over a minute, with the configurer's rule for the
   * primary (`outOfStep`: push, which reopens a failed replica in place) and the lease
   * book's grants (each round to a primary that is well, none to a failed one or one
   * being replaced). The primary's disk fails at once and again `failsAfterMs` after each
   * reopen; the epoch was acknowledged long ago, as in a settled cluster.
   */
  function run(record: PartitionRecord, alive: ReadonlySet<string>, failsAfterMs: number) {
    const roundMs = 500;
    let nowMs = 100_000;
    let acknowledged = { epoch: record.epoch, atMs: nowMs - 60_000 };
    let leaseUntilMs = nowMs + limits.primaryLeaseMs + limits.primaryLeaseDriftMarginMs;
    let failed = true;
    let failsAtMs = Number.POSITIVE_INFINITY;
    let reopens = 0;
    const decisions = new Set<string>();
    for (; nowMs < 160_000; nowMs += roundMs) {
      if (nowMs >= failsAtMs) failed = true;
      const primary = report(record, { failed, tailCommitted: !failed, followers: [] });
      const seen = view(record, { nowMs, alive, report: primary, leaseUntilMs });
      const decision = decidePartition(record, seen);
      decisions.add(decision.kind);
      if (decision.kind === "update") return { reopens, promoted: decision.record, decisions };
      if (!failed && decision.kind === "keep") {
        leaseUntilMs = nowMs + limits.primaryLeaseMs + limits.primaryLeaseDriftMarginMs;
      }
      if (outOfStep(record, primary, acknowledged, nowMs, { alive })) {
        reopens++;
        failed = false;
        acknowledged = { epoch: record.epoch, atMs: nowMs };
        failsAtMs = nowMs + failsAfterMs;
      }
    }
    return { reopens, promoted: undefined, decisions };
  }

  test("is failed over to its healthy secondary, not reopened in place again and again", () => {
    // The old code pushed the configure as soon as the failure was reported (the ack was
    // older than configureVerifyMs), which reopened the primary in place and called the
    // failover off; the disk failed again 3 s later, and so on: 12 reopens in a minute,
    // never promoted.
    const { reopens, promoted } = run(base, new Set(heads), 3000);
    expect(reopens).toBe(0);
    expect(promoted).toMatchObject({ epoch: 5, primary: "head-2", secondaries: [] });
  });

  test("with no secondary to promote, it is reopened in place: the only way out", () => {
    const alone: PartitionRecord = { ...base, secondaries: [] };
    const { reopens, promoted, decisions } = run(alone, new Set(["head-1"]), 3000);
    expect(promoted).toBeUndefined();
    expect(decisions).toEqual(new Set(["unavailable", "keep"]));
    expect(reopens).toBeGreaterThan(5);
    // Likewise with its secondary dead: reopened at once, then the dead one is dropped.
    expect(run(base, new Set(["head-1"]), 3000)).toMatchObject({
      reopens: 1,
      promoted: { epoch: 5, primary: "head-1", secondaries: [] },
    });
  });

  test("its node, dropped while alive, is the last choice to rebuild the lost copy on", () => {
    // No count of failures is kept: each failure of the replica drops it (a primary is
    // failed over, a secondary or learner is dropped), and a node dropped while alive is
    // avoided for droppedNodeAvoidMs as long as another spare is live. With none, it is
    // rebuilt there all the same: the only way back to full strength.
    const after: PartitionRecord = { ...base, epoch: 5, primary: "head-2", secondaries: [] };
    const avoid = new Set(["head-1"]);
    expect(decidePartition(after, view(after, { avoid }))).toMatchObject({
      kind: "update",
      record: { learners: ["head-3"] },
    });
    const only = new Set(["head-1", "head-2"]);
    expect(decidePartition(after, view(after, { alive: only, avoid }))).toMatchObject({
      kind: "update",
      record: { learners: ["head-1"] },
    });
  });

  test("the configurer holds a failed primary exactly when the decision fails it over", () => {
    const failed = report(base, { failed: true, tailCommitted: false, followers: [] });
    const acknowledged = { epoch: base.epoch, atMs: 0 };
    const onDisks: PartitionRecord = { ...base, disks: { "head-1": "d1", "head-2": "d2" } };
    const cases: [PartitionRecord, Partial<PartitionView>][] = [
      [base, {}],
      [base, { alive: new Set(["head-1", "head-3"]) }],
      [{ ...base, secondaries: [], joining: ["head-2"] }, {}],
      [{ ...base, secondaries: [], learners: ["head-2"] }, {}],
      [{ ...base, secondaries: ["head-2", "head-3"] }, { alive: new Set(["head-1", "head-3"]) }],
      [base, { failed: new Set(["head-2"]) }],
      [base, { failed: new Set(["head-2"]), unopened: new Set(["head-2"]) }],
      [onDisks, { disks: new Map([["head-2", "d2"]]) }],
      [onDisks, { disks: new Map([["head-2", "d2-new"]]) }],
      [base, { unproven: new Set(["head-2"]) }],
      [onDisks, { unproven: new Set() }],
    ];
    for (const [record, overrides] of cases) {
      const seen = view(record, { report: failed, ...overrides });
      const kind = decidePartition(record, seen).kind;
      const holds = failingOver(record, failed, seen);
      expect(holds).toBe(failsOver(record, seen));
      expect(kind).toBe(holds ? "update" : "unavailable");
      expect(outOfStep(record, failed, acknowledged, seen.nowMs, seen)).toBe(!holds);
    }
  });
});

describe("gray failure and rebuild", () => {
  test("a voting secondary the primary reports stalled for commitStallMsMax is dropped", () => {
    const stalled = (stalledMs: number) =>
      report(base, {
        followers: [{ node: "head-2", matchOpNum: 90, learner: false, stalledMs }],
      });
    expect(
      decidePartition(base, view(base, { report: stalled(limits.commitStallMsMax - 1) })),
    ).toEqual({ kind: "keep" });
    expect(
      decidePartition(base, view(base, { report: stalled(limits.commitStallMsMax) })),
    ).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-1", secondaries: [] },
      reason: expect.stringContaining("head-2 stalled commits"),
    });
  });

  test("a joiner that needs notes the primary released is dropped, never left joining", () => {
    // Found by the failover simulator (seed 19019): the learner caught up, the primary
    // committed and released more while it was still a learner, and the joiner could
    // then never match: the partition stayed short for good.
    const joining: PartitionRecord = { ...base, secondaries: [], joining: ["head-2"] };
    const decision = decidePartition(
      joining,
      view(joining, {
        report: report(joining, {
          commitOpNum: 73,
          followers: [{ node: "head-2", matchOpNum: 54, learner: false, needsRebuild: true }],
        }),
      }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-1", secondaries: [], joining: [] },
      reason: expect.stringContaining("cannot catch up"),
    });
  });

  test("a degraded partition gets the least loaded live spare as a learner", () => {
    const degraded: PartitionRecord = { ...base, secondaries: [] };
    const other: PartitionRecord = { ...base, partition: 1, secondaries: ["head-3"] };
    const decision = decidePartition(
      degraded,
      view(degraded, { load: loadOf([degraded, other], heads) }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, secondaries: [], learners: ["head-2"] },
    });
  });

  test("a learner that needs released notes is dropped, to be rebuilt afresh", () => {
    const learning: PartitionRecord = { ...base, secondaries: [], learners: ["head-2"] };
    const decision = decidePartition(
      learning,
      view(learning, {
        report: report(learning, {
          followers: [{ node: "head-2", matchOpNum: 3, learner: true, needsRebuild: true }],
        }),
      }),
    );
    expect(decision).toMatchObject({ kind: "update", record: { epoch: 5, learners: [] } });
  });

  test("a learner overdue and not caught up is dropped; one in time is kept", () => {
    const learning: PartitionRecord = { ...base, secondaries: [], learners: ["head-2"] };
    const behind = report(learning, {
      followers: [{ node: "head-2", matchOpNum: 3, learner: true }],
    });
    const since = new Map([["head-2", 100_000 - 30_001]]);
    expect(
      decidePartition(learning, view(learning, { report: behind, learnersSinceMs: since })),
    ).toMatchObject({ kind: "update", record: { learners: [] } });
    const recent = new Map([["head-2", 100_000 - 29_999]]);
    expect(
      decidePartition(learning, view(learning, { report: behind, learnersSinceMs: recent })),
    ).toEqual({ kind: "keep" });
  });

  test("a joiner that has not matched in its joining epoch within the bound is dropped (seed 9714544)", () => {
    // Its node restarted after the report that counted it caught up, rebuilt it afresh
    // on a learner configure and failed the fetch: it hosts nothing, and with no write
    // to stall on it nothing else ever took it out.
    const joiningRecord: PartitionRecord = { ...base, secondaries: [], joining: ["head-2"] };
    const silent = report(joiningRecord, {
      commitOpNum: 83,
      followers: [{ node: "head-2", matchOpNum: 0, learner: false }],
    });
    const since = new Map([["head-2", 100_000 - 30_001]]);
    expect(
      decidePartition(
        joiningRecord,
        view(joiningRecord, { report: silent, joinersSinceMs: since }),
      ),
    ).toMatchObject({
      kind: "update",
      record: { epoch: 5, secondaries: [], joining: [] },
      reason: expect.stringContaining("joiner head-2 has not matched"),
    });
    // In time, or without a clock for it (an older caller), it is kept.
    const recent = new Map([["head-2", 100_000 - 29_999]]);
    expect(
      decidePartition(
        joiningRecord,
        view(joiningRecord, { report: silent, joinersSinceMs: recent }),
      ),
    ).toEqual({ kind: "keep" });
    expect(decidePartition(joiningRecord, view(joiningRecord, { report: silent }))).toEqual({
      kind: "keep",
    });
    // Matched, however long it has joined, it is promoted, not dropped.
    const matched = report(joiningRecord, {
      commitOpNum: 83,
      followers: [{ node: "head-2", matchOpNum: 83, learner: false }],
    });
    expect(
      decidePartition(
        joiningRecord,
        view(joiningRecord, { report: matched, joinersSinceMs: since }),
      ),
    ).toMatchObject({
      kind: "update",
      record: { epoch: 5, secondaries: ["head-2"], joining: [] },
    });
  });
});

describe("lease grants", () => {
  const alive = new Set(heads);

  test("only the record's primary, at the record's epoch, alive, and not being replaced", () => {
    expect(mayGrantLease(base, "head-1", 4, alive, false)).toBe(true);
    expect(mayGrantLease(base, "head-1", 4, alive, true)).toBe(false);
    expect(mayGrantLease(base, "head-1", 3, alive, false)).toBe(false);
    expect(mayGrantLease(base, "head-1", 5, alive, false)).toBe(false);
    expect(mayGrantLease(base, "head-2", 4, alive, false)).toBe(false);
    expect(mayGrantLease(base, "head-1", 4, new Set(["head-2"]), false)).toBe(false);
  });
});

describe("a member its own node reports failed", () => {
  test("a failed secondary is dropped while its primary lives, with no write stalled on it", () => {
    const decision = decidePartition(base, view(base, { failed: new Set(["head-2"]) }));
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-1", secondaries: [] },
    });
    expect((decision as { reason: string }).reason).toMatch(/head-2's replica has failed/);
  });

  test("a failed learner is dropped; a failed joiner too", () => {
    const learning = { ...base, learners: ["head-3"], joining: ["head-4"] };
    expect(
      decidePartition(learning, view(learning, { failed: new Set(["head-3", "head-4"]) })),
    ).toMatchObject({
      kind: "update",
      record: { epoch: 5, secondaries: ["head-2"], learners: [], joining: [] },
    });
  });

  test("once the primary is dead, a failed secondary is as good as a stalled one: promoted", () => {
    const alive = new Set(["head-2", "head-3"]);
    expect(decidePartition(base, view(base, { alive, failed: new Set(["head-2"]) }))).toMatchObject(
      { kind: "update", record: { epoch: 5, primary: "head-2" } },
    );
  });

  test("no failure: nothing to do", () => {
    expect(decidePartition(base, view(base, { failed: new Set() }))).toEqual({ kind: "keep" });
  });
});

describe("members back on another disk (lost disks)", () => {
  const diskOf = (node: string, generation = 1) => `${node.slice(-1)}${generation}`.padEnd(32, "0");
  const recorded: PartitionRecord = {
    ...base,
    secondaries: ["head-2", "head-3"],
    disks: { "head-1": diskOf("head-1"), "head-2": diskOf("head-2"), "head-3": diskOf("head-3") },
  };
  const disksNow = (changed: Record<string, number> = {}) =>
    new Map(heads.map((node) => [node, diskOf(node, changed[node] ?? 1)]));

  test("on the disks it was recorded on, nothing changes", () => {
    expect(
      decidePartition(recorded, view(recorded, { disks: disksNow(), replicaCount: 3 })),
    ).toEqual({
      kind: "keep",
    });
  });

  test("a secondary back on another disk is dropped while its primary lives, and its old disk forgotten", () => {
    const decision = decidePartition(
      recorded,
      view(recorded, { disks: disksNow({ "head-2": 2 }), replicaCount: 3 }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-1", secondaries: ["head-3"] },
    });
    if (decision.kind !== "update") return;
    expect(decision.reason).toMatch(/head-2 came back on another disk/);
    expect(decision.record.disks).toEqual({
      "head-1": diskOf("head-1"),
      "head-3": diskOf("head-3"),
    });
  });

  test("a primary back on another disk is replaced by a secondary once its lease has run out, never kept", () => {
    const disks = disksNow({ "head-1": 2 });
    expect(
      decidePartition(recorded, view(recorded, { disks, replicaCount: 3, leaseUntilMs: 200_000 })),
    ).toMatchObject({ kind: "wait" });
    const decision = decidePartition(recorded, view(recorded, { disks, replicaCount: 3 }));
    expect(decision).toMatchObject({ kind: "update", record: { epoch: 5, primary: "head-2" } });
    if (decision.kind !== "update") return;
    expect(decision.reason).toMatch(/head-1 came back on another disk/);
    expect(decision.record.secondaries).toEqual(["head-3"]);
    expect(Object.keys(decision.record.disks ?? {}).sort()).toEqual(["head-2", "head-3"]);
  });

  test("a secondary back on another disk is never promoted when its primary dies (the defect)", () => {
    const pair: PartitionRecord = {
      ...base,
      disks: { "head-1": diskOf("head-1"), "head-2": diskOf("head-2") },
    };
    const alive = new Set(["head-2", "head-3", "head-4"]);
    // Back before it was counted dead, empty: promoting it would lose every write.
    const decision = decidePartition(
      pair,
      view(pair, { alive, disks: disksNow({ "head-2": 2 }), load: loadOf([pair], [...alive]) }),
    );
    expect(decision).toMatchObject({ kind: "unavailable" });
    // Without disk ids the same view promotes it.
    expect(
      decidePartition(
        { ...pair, disks: undefined },
        view(pair, { alive, load: loadOf([pair], [...alive]) }),
      ),
    ).toMatchObject({ kind: "update", record: { primary: "head-2" } });
  });

  test("a primary back on another disk with only a learner left is unavailable: the learner is never promoted", () => {
    // Failover seed 229 of the 4-node shape: the primary reported its only secondary
    // stalled and lost its disk two ticks later; the secondary was dropped on that report
    // (the primary still counted alive), a learner was added, rebuilt from a checkpoint
    // older than the newest acknowledged write, and the primary came back empty.
    const alone: PartitionRecord = {
      ...base,
      epoch: 7,
      secondaries: [],
      learners: ["head-2"],
      disks: { "head-1": diskOf("head-1"), "head-2": diskOf("head-2") },
    };
    const progress = report(alone, {
      commitOpNum: 20,
      followers: [{ node: "head-2", matchOpNum: 20, learner: true }],
    });
    for (const leaseUntilMs of [0, 200_000]) {
      const decision = decidePartition(
        alone,
        view(alone, { disks: disksNow({ "head-1": 2 }), report: progress, leaseUntilMs }),
      );
      expect(decision).toMatchObject({ kind: "unavailable" });
      if (decision.kind !== "unavailable") return;
      expect(decision.reason).toMatch(/head-1 came back on another disk/);
    }
  });

  test("a node back on another disk may come back as a learner, recorded on its new disk", () => {
    const pair: PartitionRecord = { ...base, disks: { "head-1": diskOf("head-1") } };
    const alive = new Set(["head-1", "head-2"]);
    const decision = decidePartition(
      pair,
      view(pair, {
        alive,
        disks: disksNow({ "head-2": 3 }),
        load: loadOf([pair], [...alive]),
        replicaCount: 3,
      }),
    );
    // head-2 joined before disk ids (nothing recorded): it is kept, and gets no disk.
    expect(decision).toMatchObject({ kind: "keep" });
    const dropped: PartitionRecord = { ...pair, secondaries: [] };
    const rebuild = decidePartition(
      dropped,
      view(dropped, {
        alive,
        disks: disksNow({ "head-2": 3 }),
        load: loadOf([dropped], [...alive]),
      }),
    );
    expect(rebuild).toMatchObject({ kind: "update", record: { learners: ["head-2"] } });
    if (rebuild.kind !== "update") return;
    expect(rebuild.record.disks).toEqual({
      "head-1": diskOf("head-1"),
      "head-2": diskOf("head-2", 3),
    });
  });
});

describe("members placed before disk ids (legacy records)", () => {
  const diskOf = (node: string, generation = 1) => `${node.slice(-1)}${generation}`.padEnd(32, "0");
  /** A record written before disk ids: no `disks` at all. */
  const legacy: PartitionRecord = { ...base, secondaries: ["head-2", "head-3"] };
  const disksNow = (changed: Record<string, number> = {}) =>
    new Map(heads.map((node) => [node, diskOf(node, changed[node] ?? 1)]));

  test("a heartbeat alone records nothing, and proves nothing lost", () => {
    // head-2's heartbeat names a disk the record never had: not a lost disk, not a disk.
    expect(
      decidePartition(legacy, view(legacy, { disks: disksNow({ "head-2": 2 }), replicaCount: 3 })),
    ).toEqual({ kind: "keep" });
  });

  test("a member whose configure answer names the disk holding its replica gets that disk recorded, in the same epoch", () => {
    const proven = new Map([
      ["head-1", diskOf("head-1")],
      ["head-3", diskOf("head-3")],
    ]);
    const decision = decidePartition(
      legacy,
      view(legacy, { disks: disksNow(), proven, replicaCount: 3 }),
    );
    expect(decision).toMatchObject({ kind: "update", record: { ...legacy, epoch: 4 } });
    if (decision.kind !== "update") return;
    expect(decision.record.disks).toEqual({
      "head-1": diskOf("head-1"),
      "head-3": diskOf("head-3"),
    });
    expect(decision.reason).toMatch(/head-1 holds its replica on disk/);
    // Recorded, it is checked as any other: back on another disk it is lost.
    const filled = decision.record;
    expect(
      decidePartition(filled, view(filled, { disks: disksNow({ "head-3": 2 }), replicaCount: 3 })),
    ).toMatchObject({ kind: "update", record: { epoch: 5, secondaries: ["head-2"] } });
  });

  test("a proof never overrides a recorded disk", () => {
    const recorded: PartitionRecord = { ...legacy, disks: { "head-1": diskOf("head-1") } };
    const proven = new Map([["head-1", diskOf("head-1", 2)]]);
    expect(
      decidePartition(recorded, view(recorded, { disks: disksNow(), proven, replicaCount: 3 })),
    ).toEqual({ kind: "keep" });
  });

  test("proven disks ride along with another update", () => {
    const dead = new Set(["head-1", "head-2"]);
    const decision = decidePartition(
      legacy,
      view(legacy, {
        alive: dead,
        disks: disksNow(),
        proven: new Map([["head-2", diskOf("head-2")]]),
        replicaCount: 3,
        load: loadOf([legacy], [...dead]),
      }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, secondaries: ["head-2"] },
    });
    if (decision.kind !== "update") return;
    expect(decision.record.disks).toEqual({ "head-2": diskOf("head-2") });
  });

  test("a secondary that refused for holding nothing on its disk is dropped while its primary lives", () => {
    const decision = decidePartition(
      legacy,
      view(legacy, {
        disks: disksNow({ "head-2": 2 }),
        noReplica: new Set(["head-2"]),
        replicaCount: 3,
      }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-1", secondaries: ["head-3"] },
    });
    if (decision.kind !== "update") return;
    expect(decision.reason).toMatch(/head-2 holds no replica on its disk/);
  });

  test("a primary that refused for holding nothing on its disk is replaced by a secondary once its lease has run out (the limit)", () => {
    const noReplica = new Set(["head-1"]);
    const disks = disksNow({ "head-1": 2 });
    expect(
      decidePartition(
        legacy,
        view(legacy, { disks, noReplica, replicaCount: 3, leaseUntilMs: 200_000 }),
      ),
    ).toMatchObject({ kind: "wait" });
    const decision = decidePartition(legacy, view(legacy, { disks, noReplica, replicaCount: 3 }));
    expect(decision).toMatchObject({ kind: "update", record: { epoch: 5, primary: "head-2" } });
    if (decision.kind !== "update") return;
    expect(decision.reason).toMatch(/primary head-1 holds no replica on its disk/);
    expect(decision.record.secondaries).toEqual(["head-3"]);
    // Without the refusal the same view keeps it: its heartbeat alone proves nothing.
    expect(decidePartition(legacy, view(legacy, { disks, replicaCount: 3 }))).toEqual({
      kind: "keep",
    });
  });

  test("a secondary that has not answered the record's epoch is never promoted until it does (seed 9712321)", () => {
    // Simulator seed 9712321: a volume placed before disk ids, one secondary's configure
    // waiting on a hung disk since. The primary's journal failed and the secondary was
    // promoted on its heartbeats alone; once its disk answered, it refused the epoch for
    // holding nothing, with the failed primary, the one copy, out of the record.
    const primaryDead = new Set(["head-2", "head-3", "head-4"]);
    const unproven = new Set(["head-2"]);
    const seen = view(legacy, { alive: primaryDead, disks: disksNow(), unproven });
    const pair: PartitionRecord = { ...base };
    const alone = view(pair, { alive: primaryDead, disks: disksNow(), unproven });
    expect(decidePartition(pair, alone)).toMatchObject({
      kind: "unavailable",
      reason: expect.stringContaining("head-2: not yet answered"),
    });
    // Nor does the configurer hold a failed primary's configure for it: reopened in
    // place, the primary serves again.
    expect(failsOver(pair, alone)).toBe(false);
    const failedPrimary = report(pair, { failed: true, tailCommitted: false });
    expect(failingOver(pair, failedPrimary, alone)).toBe(false);
    // Once its answer proves its disk, it is promoted, and that disk recorded.
    const proven = new Map([["head-2", diskOf("head-2")]]);
    const answered = decidePartition(
      pair,
      view(pair, { alive: primaryDead, disks: disksNow(), proven }),
    );
    expect(answered).toMatchObject({ kind: "update", record: { epoch: 5, primary: "head-2" } });
    if (answered.kind !== "update") return;
    expect(answered.record.disks).toEqual({ "head-2": diskOf("head-2") });
    // Beside one that answered, that one is promoted; the other stays a secondary.
    const beside = decidePartition(legacy, {
      ...seen,
      proven: new Map([["head-3", diskOf("head-3")]]),
    });
    expect(beside).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-3", secondaries: ["head-2"] },
    });
  });

  test("a secondary that refused is never promoted, and is not one a failed primary fails over to", () => {
    const pair: PartitionRecord = { ...base };
    const alive = new Set(["head-2", "head-3", "head-4"]);
    const noReplica = new Set(["head-2"]);
    expect(
      decidePartition(
        pair,
        view(pair, { alive, disks: disksNow(), noReplica, load: loadOf([pair], [...alive]) }),
      ),
    ).toMatchObject({ kind: "unavailable" });
    expect(failsOver(pair, { alive: new Set(heads), noReplica })).toBe(false);
    expect(failsOver(pair, { alive: new Set(heads) })).toBe(true);
  });

  test("a refusal counts only for a member with no disk recorded", () => {
    const recorded: PartitionRecord = {
      ...legacy,
      disks: { "head-2": diskOf("head-2") },
    };
    expect(
      decidePartition(
        recorded,
        view(recorded, { disks: disksNow(), noReplica: new Set(["head-2"]), replicaCount: 3 }),
      ),
    ).toEqual({ kind: "keep" });
  });

  test("the member dropped for it comes back as a learner recorded on its disk", () => {
    const dropped: PartitionRecord = { ...legacy, epoch: 5, secondaries: ["head-3"] };
    const alive = new Set(["head-1", "head-2", "head-3"]);
    const decision = decidePartition(
      dropped,
      view(dropped, {
        alive,
        disks: disksNow({ "head-2": 2 }),
        load: loadOf([dropped], [...alive]),
        replicaCount: 3,
      }),
    );
    expect(decision).toMatchObject({ kind: "update", record: { learners: ["head-2"] } });
    if (decision.kind !== "update") return;
    expect(decision.record.disks).toEqual({ "head-2": diskOf("head-2", 2) });
  });
});

describe("a primary whose own journal hangs", () => {
  const stalled = (stalledMs: number) => report(base, { stalledMs });

  test("is replaced by its secondary once it has kept writes waiting for primaryStallMsMax, after its lease", () => {
    expect(
      decidePartition(base, view(base, { report: stalled(limits.primaryStallMsMax - 1) })),
    ).toEqual({ kind: "keep" });
    expect(
      decidePartition(
        base,
        view(base, { report: stalled(limits.primaryStallMsMax), leaseUntilMs: 200_000 }),
      ),
    ).toMatchObject({ kind: "wait" });
    const decision = decidePartition(
      base,
      view(base, { report: stalled(limits.primaryStallMsMax) }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-2", secondaries: [] },
    });
    if (decision.kind === "update") expect(decision.reason).toMatch(/its own journal/);
  });

  test("with no secondary to take over, it stays: it may yet recover", () => {
    const alone: PartitionRecord = { ...base, secondaries: [] };
    expect(
      decidePartition(alone, view(alone, { report: report(alone, { stalledMs: 10_000 }) })),
    ).toMatchObject({ kind: "unavailable" });
  });
});

describe("a primary cut from sleds the leader sees alive (review-reach R1)", () => {
  // Its flushes all fail for want of sleds it can reach: its journal is never released,
  // and once full every write waits and times out for as long as the cut lasts. Before,
  // nothing reported it and the leader kept it while its secondary, which holds every
  // acknowledged write and may reach the sleds, stood by.
  const cut = (flushStalledMs: number) => report(base, { flushStalledMs });
  /**
   * The view with the failover of flush-stalled primaries on (the reconciler's default)
   * and head-2 seen storing on the sleds 1 ms ago: evidence from within any stall.
   */
  const enabled = (record: PartitionRecord, overrides: Partial<PartitionView> = {}) =>
    view(record, {
      flushStallFailover: true,
      sledStoredSinceMs: new Map([["head-2", 100_000 - 1]]),
      ...overrides,
    });

  test("stays while the failover is off (the reconciler's option)", () => {
    expect(
      decidePartition(base, view(base, { liveSleds: 3, report: cut(limits.primaryStallMsMax) })),
    ).toEqual({ kind: "keep" });
  });

  test("stays while no secondary has stored on the sleds since the stall began, lately (review-diff19 D1)", () => {
    // One node carrying the writes, sleds failing everyone: its stall alone cannot be
    // told from a cut, and the failover would drop a copy of what cannot be flushed. So a
    // secondary is promoted only on evidence that its node reaches the sleds now: none,
    // a store from before the stall, or one within it but older than
    // sledEvidenceFreshMs (the sleds may have failed everyone since: review 30, finding
    // 3) keeps the primary, which still serves from its journal; the status says why,
    // and the leader logs it as a warning.
    const stallMs = 10_000;
    const nowMs = 100_000;
    for (const sledStoredSinceMs of [
      new Map<string, number>(),
      new Map([["head-2", nowMs - stallMs - 1]]),
      new Map([["head-2", nowMs - sledEvidenceFreshMs - 1]]),
    ]) {
      const decision = decidePartition(
        base,
        enabled(base, { liveSleds: 3, report: cut(stallMs), sledStoredSinceMs }),
      );
      expect(decision).toMatchObject({ kind: "unavailable", level: "warn" });
      if (decision.kind === "unavailable")
        expect(decision.reason).toMatch(/head-2: no evidence that its node reaches them/);
    }
    // A store at the freshness bound is evidence, or at the stall's start if that is later.
    for (const [stalledMs, storedSinceMs] of [
      [stallMs, nowMs - sledEvidenceFreshMs],
      [limits.primaryStallMsMax, nowMs - Math.min(limits.primaryStallMsMax, sledEvidenceFreshMs)],
    ] as const) {
      expect(
        decidePartition(
          base,
          enabled(base, {
            liveSleds: 3,
            report: cut(stalledMs),
            sledStoredSinceMs: new Map([["head-2", storedSinceMs]]),
          }),
        ),
      ).toMatchObject({ kind: "update", record: { primary: "head-2" } });
    }
  });

  describe("stand-ins: a spare that reaches the sleds, for a primary whose secondaries are all cut too", () => {
    // Before (review 30), no secondary with evidence meant no change at all while the
    // replica count was met: the partition waited for the cut to end, its writes held
    // once the primary's journal filled, though head-3 and head-4 reached the sleds.
    const stallMs = 10_000;
    const nowMs = 100_000;
    const standInView = (record: PartitionRecord, stored: Record<string, number>) =>
      enabled(record, {
        liveSleds: 3,
        report: report(record, { flushStalledMs: stallMs }),
        sledStoredSinceMs: new Map(Object.entries(stored)),
      });

    test("one learner beyond the count goes on a spare with evidence, the least loaded", () => {
      const decision = decidePartition(base, standInView(base, { "head-4": nowMs - 1 }));
      expect(decision).toMatchObject({
        kind: "update",
        record: { epoch: 5, primary: "head-1", secondaries: ["head-2"], learners: ["head-4"] },
      });
      if (decision.kind === "update") expect(decision.reason).toMatch(/stand-in learner/);
      // Both spares with evidence: the one with fewer replicas.
      const busy = decidePartition(
        base,
        standInView(base, { "head-3": nowMs - 1, "head-4": nowMs - 1 }),
      );
      expect(busy).toMatchObject({ record: { learners: ["head-3"] } });
    });

    test("none on a spare without fresh evidence or beside a learner under way; one to avoid only if no other has evidence", () => {
      for (const stored of [{}, { "head-3": nowMs - sledEvidenceFreshMs - 1 }] as Record<
        string,
        number
      >[]) {
        expect(decidePartition(base, standInView(base, stored))).toMatchObject({
          kind: "unavailable",
          level: "warn",
        });
      }
      // head-3, dropped lately, reaches the sleds and head-4 gives no evidence: head-3
      // once head-4 has had time to answer its probe (before: never, and the partition
      // waited for the cut to end); not sooner, while head-4 lives.
      expect(stallMs).toBeGreaterThanOrEqual(limits.primaryStallMsMax + standInAvoidedAfterMs);
      expect(
        decidePartition(base, {
          ...standInView(base, { "head-3": nowMs - 1 }),
          avoid: new Set(["head-3"]),
        }),
      ).toMatchObject({ kind: "update", record: { learners: ["head-3"] } });
      const early = {
        ...standInView(base, { "head-3": nowMs - 1 }),
        report: report(base, { flushStalledMs: limits.primaryStallMsMax }),
        avoid: new Set(["head-3"]),
      };
      expect(decidePartition(base, early)).toMatchObject({ kind: "unavailable" });
      // With no other spare, at once.
      expect(
        decidePartition(base, { ...early, alive: new Set(["head-1", "head-2", "head-3"]) }),
      ).toMatchObject({ kind: "update", record: { learners: ["head-3"] } });
      expect(
        decidePartition(base, {
          ...standInView(base, { "head-3": nowMs - 1, "head-4": nowMs - 1 }),
          avoid: new Set(["head-3"]),
        }),
      ).toMatchObject({ kind: "update", record: { learners: ["head-4"] } });
      const learning: PartitionRecord = { ...base, learners: ["head-3"] };
      expect(
        decidePartition(
          learning,
          standInView(learning, { "head-3": nowMs - 1, "head-4": nowMs - 1 }),
        ),
      ).toMatchObject({ kind: "unavailable" });
    });

    test("joined as a secondary, the stand-in is promoted and the old primary leaves", () => {
      const joined: PartitionRecord = { ...base, secondaries: ["head-2", "head-3"] };
      const decision = decidePartition(joined, standInView(joined, { "head-3": nowMs - 1 }));
      expect(decision).toMatchObject({
        kind: "update",
        record: { epoch: 5, primary: "head-3", secondaries: ["head-2"] },
      });
      // Without evidence yet (its probe not reported): kept, no second stand-in.
      expect(decidePartition(joined, standInView(joined, { "head-4": nowMs - 1 }))).toMatchObject({
        kind: "unavailable",
      });
    });

    test("over its count with the primary's flushes back, a partition drops its most loaded secondary", () => {
      const over: PartitionRecord = { ...base, secondaries: ["head-2", "head-3"] };
      const other: PartitionRecord = { ...base, partition: 1, secondaries: ["head-3"] };
      const load = loadOf([over, other], heads);
      const decision = decidePartition(
        over,
        view(over, { load, report: report(over, { flushStalledMs: 0 }) }),
      );
      expect(decision).toMatchObject({
        kind: "update",
        record: { epoch: 5, primary: "head-1", secondaries: ["head-2"] },
      });
      // Not while its flushes still fail, or without a report, or while its node is
      // remembered flush-stalled (a cut that comes and goes keeps its stand-in).
      expect(
        decidePartition(
          over,
          view(over, { load, report: report(over), primaryFlushStalledLately: true }),
        ),
      ).toEqual({ kind: "keep" });
      expect(
        decidePartition(over, view(over, { report: report(over, { flushStalledMs: 100 }) })),
      ).toEqual({ kind: "keep" });
      expect(decidePartition(over, view(over))).toEqual({ kind: "keep" });
      // A secondary whose files are in doubt goes before a more loaded one.
      expect(
        decidePartition(
          over,
          view(over, { load, report: report(over), reopening: new Set(["head-2"]) }),
        ),
      ).toMatchObject({ record: { secondaries: ["head-3"] } });
    });

    test("flushes back while the stand-in is still a learner or joiner: the stand-in goes", () => {
      for (const stage of [{ learners: ["head-3"] }, { joining: ["head-3"] }]) {
        const standing: PartitionRecord = { ...base, ...stage };
        expect(
          decidePartition(
            standing,
            view(standing, { report: report(standing), primaryFlushStalledLately: true }),
          ),
        ).toEqual({ kind: "keep" });
        const decision = decidePartition(standing, view(standing, { report: report(standing) }));
        expect(decision).toMatchObject({
          kind: "update",
          record: {
            epoch: 5,
            primary: "head-1",
            secondaries: ["head-2"],
            learners: [],
            joining: [],
          },
        });
        if (decision.kind === "update")
          expect(decision.reason).toMatch(/stand-in no longer needed/);
      }
      // A learner rebuilding a partition short of its count is not a stand-in: kept.
      const short: PartitionRecord = { ...base, secondaries: [], learners: ["head-3"] };
      expect(decidePartition(short, view(short, { report: report(short) }))).toEqual({
        kind: "keep",
      });
    });

    test("spares are asked to probe only once the stall could fail over and no secondary shows evidence", () => {
      const ask = (
        stalledMs: number,
        stored: Record<string, number>,
        record = base,
        avoid: ReadonlySet<string> = new Set(),
      ) =>
        probeTargets(record, stalledMs, {
          nowMs,
          alive: new Set(heads),
          load: loadOf([record], heads),
          replicaCount: 2,
          avoid,
          storedSinceMs: new Map(Object.entries(stored)),
        });
      expect(ask(limits.primaryStallMsMax - 1, {})).toEqual(["head-2"]);
      expect(ask(stallMs, { "head-2": nowMs - 1 })).toEqual(["head-2"]);
      expect(ask(stallMs, {})).toEqual(
        ["head-2", "head-3", "head-4"].slice(0, 1 + standInProbesMax),
      );
      // A node to avoid after the others.
      expect(ask(stallMs, {}, base, new Set(["head-3"]))).toEqual(["head-2", "head-4", "head-3"]);
      // A stand-in under way is asked itself, and no spare beside it.
      const learning: PartitionRecord = { ...base, learners: ["head-3"] };
      expect(ask(stallMs, {}, learning)).toEqual(["head-2", "head-3"]);
    });
  });

  test("a primary failed, or stalled on its own journal, as well as cut is replaced without evidence", () => {
    // The cut is then not the only reason: any sound secondary takes over.
    for (const also of [{ failed: true }, { stalledMs: limits.primaryStallMsMax }]) {
      expect(
        decidePartition(
          base,
          enabled(base, {
            liveSleds: 3,
            report: report(base, { flushStalledMs: 10_000, ...also }),
            sledStoredSinceMs: new Map(),
          }),
        ),
      ).toMatchObject({ kind: "update", record: { primary: "head-2" } });
    }
  });

  test("promotes only a secondary with evidence, and keeps the others as secondaries", () => {
    const three: PartitionRecord = { ...base, secondaries: ["head-2", "head-3"] };
    for (const [reaching, promoted, kept] of [
      ["head-2", "head-2", "head-3"],
      ["head-3", "head-3", "head-2"],
    ] as const) {
      const decision = decidePartition(
        three,
        enabled(three, {
          replicaCount: 3,
          liveSleds: 3,
          report: report(three, { flushStalledMs: 10_000 }),
          sledStoredSinceMs: new Map([[reaching, 100_000 - 1]]),
        }),
      );
      expect(decision).toMatchObject({
        kind: "update",
        record: { epoch: 5, primary: promoted, secondaries: [kept] },
      });
    }
  });

  test("is replaced by its secondary once its flushes have failed for primaryStallMsMax, after its lease", () => {
    const sleds = { liveSleds: 3 };
    expect(
      decidePartition(base, enabled(base, { ...sleds, report: cut(limits.primaryStallMsMax - 1) })),
    ).toEqual({ kind: "keep" });
    expect(
      decidePartition(
        base,
        enabled(base, { ...sleds, report: cut(limits.primaryStallMsMax), leaseUntilMs: 200_000 }),
      ),
    ).toMatchObject({ kind: "wait" });
    const decision = decidePartition(
      base,
      enabled(base, { ...sleds, report: cut(limits.primaryStallMsMax) }),
    );
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-2", secondaries: [] },
    });
    if (decision.kind === "update") expect(decision.reason).toMatch(/cannot reach them/);
  });

  test("stays while fewer than chunkCopies sleds are alive: no primary could flush then", () => {
    for (const liveSleds of [undefined, 0, limits.chunkCopies - 1]) {
      expect(decidePartition(base, enabled(base, { liveSleds, report: cut(60_000) }))).toEqual({
        kind: "keep",
      });
    }
  });

  test("stays while another head node's flushes failed lately: the sleds fail everyone's writes", () => {
    // A cascade otherwise: each promoted secondary stalls in turn and each failover drops
    // a replica, down to one, while the sleds (a read-only device, say) cure nothing.
    const decision = decidePartition(
      base,
      enabled(base, { liveSleds: 3, flushStalledNodes: 2, report: cut(60_000) }),
    );
    expect(decision).toEqual({ kind: "keep" });
  });

  test("flushStalledNodes counts the nodes heard within the memory and forgets the rest", () => {
    const stalls = new Map([
      ["head-1", 100_000],
      ["head-2", 100_000 - flushStallNodesMemoryMs],
      ["head-3", 100_000 - flushStallNodesMemoryMs - 1],
    ]);
    expect(flushStalledNodes(stalls, 100_000)).toBe(2);
    expect([...stalls.keys()]).toEqual(["head-1", "head-2"]);
    expect(flushStalledNodes(stalls, 100_000, 0)).toBe(1);
  });

  test("with no secondary to take over and no spare, it stays, shown unavailable with the reason", () => {
    const alone: PartitionRecord = { ...base, secondaries: [] };
    const decision = decidePartition(
      alone,
      enabled(alone, {
        alive: new Set(["head-1"]),
        liveSleds: 3,
        report: report(alone, { flushStalledMs: 60_000 }),
      }),
    );
    expect(decision).toMatchObject({ kind: "unavailable" });
    if (decision.kind === "unavailable") expect(decision.reason).toMatch(/every flush/);
  });

  test("with no secondary, it still leads a rebuild: a learner is added, joins once caught up, then is promoted (seed 9123815)", () => {
    // Before, the round stopped at "unavailable": the learner caught up and was never
    // promoted, and the partition waited out the whole cut with nothing to fail over to.
    const stalled = { flushStalledMs: 60_000 };
    const alone: PartitionRecord = { ...base, secondaries: [] };
    const added = decidePartition(
      alone,
      enabled(alone, { liveSleds: 3, report: report(alone, stalled) }),
    );
    expect(added).toMatchObject({ kind: "update", record: { epoch: 5, learners: ["head-2"] } });
    if (added.kind !== "update") return;
    const learning = added.record;
    const caughtUp = (record: PartitionRecord, learner: boolean) =>
      report(record, { ...stalled, followers: [{ node: "head-2", matchOpNum: 100, learner }] });
    const joined = decidePartition(
      learning,
      enabled(learning, { liveSleds: 3, report: caughtUp(learning, true) }),
    );
    expect(joined).toMatchObject({
      kind: "update",
      record: { epoch: 6, secondaries: [], joining: ["head-2"], learners: [] },
    });
    if (joined.kind !== "update") return;
    const secondary = decidePartition(
      joined.record,
      enabled(joined.record, { liveSleds: 3, report: caughtUp(joined.record, false) }),
    );
    expect(secondary).toMatchObject({
      kind: "update",
      record: { epoch: 7, secondaries: ["head-2"], joining: [] },
    });
    if (secondary.kind !== "update") return;
    // Now there is one to take over: the cut primary is failed over to it.
    const failover = decidePartition(
      secondary.record,
      enabled(secondary.record, { liveSleds: 3, report: report(secondary.record, stalled) }),
    );
    expect(failover).toMatchObject({
      kind: "update",
      record: { epoch: 8, primary: "head-2", secondaries: [] },
    });
  });

  test("a primary that also stalls its own journal is not decided as live: unavailable", () => {
    const alone: PartitionRecord = { ...base, secondaries: [], learners: ["head-2"] };
    const decision = decidePartition(
      alone,
      enabled(alone, {
        liveSleds: 3,
        report: report(alone, {
          flushStalledMs: 60_000,
          stalledMs: limits.primaryStallMsMax,
          followers: [{ node: "head-2", matchOpNum: 100, learner: true }],
        }),
      }),
    );
    expect(decision).toMatchObject({ kind: "unavailable" });
  });
  test("a rebuild's learner goes first on a spare with evidence that it reaches the sleds (seed 9790238)", () => {
    // A lone primary cut from the sleds, short a voter, every spare avoided (each dropped
    // lately for not catching up). head-2 is cut from the sleds too and cannot fetch any
    // checkpoint; head-3 stores on them (another partition's primary). Before, the least
    // loaded came first, head-2 by name, and was added, dropped and added again for as
    // long as the cuts lasted: no stand-in beside a learner under way, so writes waited.
    const alone: PartitionRecord = { ...base, secondaries: [] };
    const three = new Set(["head-1", "head-2", "head-3"]);
    const nowMs = 100_000;
    const stalled = (epoch: number) =>
      enabled(alone, {
        alive: three,
        load: loadOf([alone], [...three]),
        avoid: new Set(["head-2", "head-3"]),
        liveSleds: 3,
        // The report of the epoch before (the learner is added in the round after the
        // one that dropped its predecessor) or of the record's.
        report: { ...report(alone, { flushStalledMs: 20_000 }), epoch },
        sledStoredSinceMs: new Map([["head-3", nowMs - 1]]),
      });
    for (const epoch of [alone.epoch - 1, alone.epoch]) {
      expect(decidePartition(alone, stalled(epoch))).toMatchObject({
        kind: "update",
        record: { epoch: 5, primary: "head-1", learners: ["head-3"] },
      });
    }
    // Without evidence from either, or with the primary's flushes fine: the least loaded.
    expect(
      decidePartition(alone, { ...stalled(alone.epoch), sledStoredSinceMs: new Map() }),
    ).toMatchObject({ kind: "update", record: { learners: ["head-2"] } });
    expect(
      decidePartition(alone, {
        ...stalled(alone.epoch),
        report: report(alone),
        sledStoredSinceMs: new Map([["head-3", nowMs - 1]]),
      }),
    ).toMatchObject({ kind: "update", record: { learners: ["head-2"] } });
  });
});

describe("a primary that never takes the record's epoch (its configure hangs)", () => {
  // Session 9, found by the failover simulator with configures that wait on a hung disk:
  // a primary whose configure never completes hosts nothing and reports nothing, and was
  // kept as long as the hang lasted while a healthy secondary waited.
  const nowMs = 100_000;
  const since = (ms: number) => ({ primaryUnconfirmedSinceMs: nowMs - ms });

  test("is replaced by a live secondary once unconfirmed for primaryUnconfirmedMsMax, after its lease", () => {
    expect(
      decidePartition(
        base,
        view(base, { ...since(primaryUnconfirmedMsMax), leaseUntilMs: 200_000 }),
      ),
    ).toMatchObject({ kind: "wait" });
    const decision = decidePartition(base, view(base, since(primaryUnconfirmedMsMax)));
    expect(decision).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-2", secondaries: [] },
    });
    if (decision.kind === "update") expect(decision.reason).toMatch(/configure hangs/);
  });

  test("is kept before the bound", () => {
    expect(decidePartition(base, view(base, since(primaryUnconfirmedMsMax - 1)))).toEqual({
      kind: "keep",
    });
  });

  test("the bound may be given (the simulator scales it)", () => {
    const scaled = { primaryUnconfirmedMsMax: 6000 };
    expect(decidePartition(base, view(base, { ...since(5999), ...scaled }))).toEqual({
      kind: "keep",
    });
    expect(decidePartition(base, view(base, { ...since(6000), ...scaled }))).toMatchObject({
      kind: "update",
      record: { primary: "head-2" },
    });
  });

  test("is kept with no live secondary to take over", () => {
    const alone: PartitionRecord = { ...base, secondaries: [] };
    expect(decidePartition(alone, view(alone, since(10 * primaryUnconfirmedMsMax)))).toMatchObject({
      kind: "unavailable",
    });
    const secondaryDead = view(base, {
      ...since(10 * primaryUnconfirmedMsMax),
      alive: new Set(["head-1", "head-3"]),
    });
    expect(decidePartition(base, secondaryDead)).toMatchObject({ kind: "unavailable" });
  });

  test("is kept once it reports in the record's epoch, whatever the view's clock says", () => {
    expect(
      decidePartition(
        base,
        view(base, { ...since(10 * primaryUnconfirmedMsMax), report: report(base) }),
      ),
    ).toEqual({ kind: "keep" });
  });

  describe("unconfirmedSince: the clock the leader keeps", () => {
    const acked = { epoch: base.epoch };

    test("runs from when the leader first saw the epoch, and stops once it is acknowledged or reported", () => {
      const first = unconfirmedSince(base, undefined, undefined, undefined, 1000);
      expect(first).toEqual({ epoch: 4, primary: "head-1", sinceMs: 1000 });
      expect(unconfirmedSince(base, first, undefined, undefined, 5000).sinceMs).toBe(1000);
      // An acknowledgement or a report of an older epoch confirms nothing.
      expect(
        unconfirmedSince(base, first, { epoch: 3 }, report(base, { epoch: 3 }), 5000).sinceMs,
      ).toBe(1000);
      expect(unconfirmedSince(base, first, acked, undefined, 5000).sinceMs).toBeUndefined();
      expect(unconfirmedSince(base, first, undefined, report(base), 5000).sinceMs).toBeUndefined();
    });

    test("starts afresh for a new epoch or primary, and when a confirmation goes away", () => {
      const first = unconfirmedSince(base, undefined, undefined, undefined, 1000);
      const next: PartitionRecord = { ...base, epoch: 5 };
      expect(unconfirmedSince(next, first, undefined, undefined, 9000).sinceMs).toBe(9000);
      const confirmed = unconfirmedSince(base, first, acked, undefined, 5000);
      // A restart forgot the acknowledgement: its reopen is timed from now, not the epoch.
      expect(unconfirmedSince(base, confirmed, undefined, undefined, 7000).sinceMs).toBe(7000);
    });
  });
});

describe("a replica its node could not open (its files refused)", () => {
  // What a head node reports of a primary whose configure could not open its files
  // (primary-report.ts `unopenedReporter`): failed in the configure's epoch, nothing
  // committed there, no followers.
  const unopened = report(base, { failed: true, commitOpNum: 0, tailCommitted: false });
  const withoutSecondary = new Set(["head-1", "head-3", "head-4"]);

  test("a primary reported failed at open fails over to its sound secondary", () => {
    expect(decidePartition(base, view(base, { report: unopened }))).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-2", secondaries: [] },
    });
  });

  test("with its one sound secondary dead, the record keeps that secondary and waits", () => {
    const decision = decidePartition(
      base,
      view(base, { report: unopened, alive: withoutSecondary }),
    );
    expect(decision).toMatchObject({ kind: "unavailable" });
  });

  test("beside a primary not yet confirmed in the epoch (restarting), a dead secondary is not dropped", () => {
    // The primary's node restarted and was sent the epoch's configure; it has neither
    // answered nor reported yet. Before, the dead secondary, perhaps the one sound copy,
    // was dropped as beside any live primary, and when the primary's files were then
    // refused the partition was left unavailable with that copy out of the record.
    const restarting = view(base, { alive: withoutSecondary, primaryUnconfirmedSinceMs: 99_000 });
    expect(decidePartition(base, restarting)).toEqual({ kind: "keep" });
    // Once it reports in the epoch (its files opened), the dead secondary is dropped.
    const confirmed = view(base, {
      alive: withoutSecondary,
      primaryUnconfirmedSinceMs: 99_000,
      report: report(base),
    });
    expect(decidePartition(base, confirmed)).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-1", secondaries: [] },
    });
    // A dead learner still goes: it counts for nothing.
    const learning: PartitionRecord = { ...base, learners: ["head-3"] };
    const restartingWithLearner = view(learning, {
      alive: new Set(["head-1", "head-4"]),
      primaryUnconfirmedSinceMs: 99_000,
    });
    expect(decidePartition(learning, restartingWithLearner)).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-1", secondaries: ["head-2"], learners: [] },
    });
  });

  test("a secondary its node could not open is never promoted; a sound one is preferred to a failed one", () => {
    const two: PartitionRecord = { ...base, secondaries: ["head-2", "head-3"] };
    const primaryDead = new Set(["head-2", "head-3", "head-4"]);
    const refused = new Set(["head-2"]);
    // head-2 sorts first; its files were refused at open: head-3 is promoted, head-2 goes.
    expect(
      decidePartition(two, view(two, { alive: primaryDead, failed: refused, unopened: refused })),
    ).toMatchObject({ kind: "update", record: { epoch: 5, primary: "head-3", secondaries: [] } });
    // A journal failed while open: still passed over for a sound one.
    expect(decidePartition(two, view(two, { alive: primaryDead, failed: refused }))).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-3", secondaries: [] },
    });
    // With only the one whose files were refused, nobody is promoted: the record keeps
    // the dead primary, perhaps the one sound copy, and waits for it.
    const only = view(base, { alive: primaryDead, failed: refused, unopened: refused });
    expect(decidePartition(base, only)).toMatchObject({
      kind: "unavailable",
      reason: expect.stringContaining("head-2: files refused at open"),
    });
    expect(failsOver(base, only)).toBe(false);
    const failedPrimary = report(base, { failed: true, tailCommitted: false });
    expect(failingOver(base, failedPrimary, only)).toBe(false);
  });

  test("a secondary not yet reopened since its node restarted is not promoted until a configure opens it", () => {
    // Simulator seed 9201217: the primary's journal failed while its secondary was down;
    // the secondary came back on damaged files and, alive by its heartbeats, was promoted
    // before any configure had tried them. The failed primary, which held every
    // acknowledged write and needed only a reboot, left the record for good.
    const primaryDead = new Set(["head-2", "head-3", "head-4"]);
    const reopening = new Set(["head-2"]);
    const only = view(base, { alive: primaryDead, reopening });
    expect(decidePartition(base, only)).toMatchObject({
      kind: "unavailable",
      reason: expect.stringContaining("head-2: not yet reopened since a restart"),
    });
    // Nor does the configurer hold the failed primary's configure for it.
    expect(failsOver(base, only)).toBe(false);
    const failedPrimary = report(base, { failed: true, tailCommitted: false });
    expect(failingOver(base, failedPrimary, only)).toBe(false);
    // Once it has acknowledged (reopened), it is promoted as before.
    expect(decidePartition(base, view(base, { alive: primaryDead }))).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-2", secondaries: [] },
    });
    // Beside a secondary that did reopen, that one is promoted, and the one still
    // reopening stays a secondary: its files may well open.
    const two: PartitionRecord = { ...base, secondaries: ["head-2", "head-3"] };
    expect(decidePartition(two, view(two, { alive: primaryDead, reopening }))).toMatchObject({
      kind: "update",
      record: { epoch: 5, primary: "head-3", secondaries: ["head-2"] },
    });
  });
});
