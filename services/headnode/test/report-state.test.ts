// The head node's side of node leases (report-state.ts), alone and against the
// coordinator's real book (coordinator/src/leases.ts) with lost messages and new leaders.

import type { PartitionRecord } from "@ballast/coordinator/decisions";
import { LeaseBook, type ReportOutcome } from "@ballast/coordinator/leases";
import {
  Follower as FollowerSchema,
  limits,
  PrimaryReport as PrimaryReportSchema,
} from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { exLeaderFenceMs } from "../src/constants.ts";
import { addressKey, type PrimaryReport, ReportState, sameEntry } from "../src/report-state.ts";

function entry(partition: number, overrides: Partial<PrimaryReport> = {}): PrimaryReport {
  return {
    volume: "v",
    volumeId: "v-1",
    partition,
    epoch: 4,
    session: 1,
    commitOpNum: 10,
    tailCommitted: true,
    followers: [{ node: "head-2", matchOpNum: 10, learner: false }],
    ...overrides,
  };
}

function primaries(...entries: PrimaryReport[]): Map<string, PrimaryReport> {
  return new Map(entries.map((e) => [addressKey(e.volume, e.partition), e]));
}

const leaseMs = limits.primaryLeaseMs;

/** The coordinator's answer (reports.ts) to a report, from its book's outcome. */
function answerOf(outcome: ReportOutcome) {
  return {
    leaseMs,
    granted: outcome.granted,
    ...(outcome.accepted === undefined ? {} : { accepted: outcome.accepted }),
    ...(outcome.held === undefined ? {} : { held: outcome.held }),
    excluded: outcome.excluded,
    ...(outcome.full === true ? { full: true } : {}),
  };
}

describe("ReportState", () => {
  test("the whole state first, then only what changed, and an empty change when idle", () => {
    const state = new ReportState();
    const first = state.next(primaries(entry(0), entry(1)));
    expect(first).toMatchObject({ seq: 1, base: undefined, gone: [] });
    expect(first.primaries.map((e) => e.partition)).toEqual([0, 1]);
    expect(state.onAnswer(first, { leaseMs, granted: [], accepted: 1, held: 2 })).toHaveLength(2);

    const idle = state.next(primaries(entry(0), entry(1)));
    expect(idle).toMatchObject({ seq: 2, base: 1, primaries: [], gone: [] });
    expect(state.onAnswer(idle, { leaseMs, granted: [], accepted: 2, held: 2 })).toHaveLength(2);

    const changed = state.next(primaries(entry(0, { commitOpNum: 11 })));
    expect(changed).toMatchObject({
      seq: 3,
      base: 2,
      primaries: [{ partition: 0, commitOpNum: 11 }],
      gone: [{ volume: "v", partition: 1 }],
    });
  });

  test("an answer asking for the whole state renews nothing, and the next report is whole", () => {
    const state = new ReportState();
    state.onAnswer(state.next(primaries(entry(0))), { leaseMs, granted: [], accepted: 1, held: 1 });
    const change = state.next(primaries(entry(0)));
    expect(state.onAnswer(change, { leaseMs, granted: [], full: true })).toEqual([]);
    expect(state.next(primaries(entry(0)))).toMatchObject({ base: undefined, primaries: [{}] });
  });

  test("a lost answer leaves the next change on the last accepted revision", () => {
    const state = new ReportState();
    state.onAnswer(state.next(primaries(entry(0))), { leaseMs, granted: [], accepted: 1, held: 1 });
    state.next(primaries(entry(0, { commitOpNum: 12 }))); // its answer is lost
    expect(state.next(primaries(entry(0, { commitOpNum: 12 })))).toMatchObject({
      seq: 3,
      base: 1,
      primaries: [{ commitOpNum: 12 }],
    });
  });

  test("renews every primary of the accepted state but the excluded and the failed", () => {
    const state = new ReportState();
    const sent = state.next(primaries(entry(0), entry(1), entry(2, { failed: true })));
    const renewed = state.onAnswer(sent, {
      leaseMs,
      granted: [],
      accepted: 1,
      held: 3,
      excluded: [{ volume: "v", partition: 1, epoch: 4 }],
    });
    expect(renewed.map((e) => e.partition)).toEqual([0]);
  });

  test("an answer for another state than the one sent renews nothing", () => {
    const state = new ReportState();
    const sent = state.next(primaries(entry(0), entry(1)));
    expect(state.onAnswer(sent, { leaseMs, granted: [], accepted: 1, held: 3 })).toEqual([]);
    expect(state.onAnswer(sent, { leaseMs, granted: [], accepted: 7, held: 2 })).toEqual([]);
    expect(state.next(primaries(entry(0), entry(1))).base).toBeUndefined();
  });

  test("an answer in a term below one that answered lately is an ex-leader's, and goes as a lost one", () => {
    // Reports reach whichever coordinator serves the queue group: term 5 answers, then a
    // term-4 leader woken from a freeze (its wall clock not yet set right) answers, and
    // would have renewed every lease on a grant its successor does not count.
    const state = new ReportState();
    const first = state.next(primaries(entry(0), entry(1)));
    const fives = { leaseMs, granted: [], accepted: 1, held: 2, term: 5 };
    expect(state.admit(fives, 1000)).toBe(true);
    expect(state.onAnswer(first, fives)).toHaveLength(2);
    expect(state.leaderTerm).toBe(5);
    state.next(primaries(entry(0, { commitOpNum: 12 }), entry(1)));
    const exLeaders = { leaseMs, granted: [], accepted: 2, held: 2, term: 4 };
    expect(state.admit(exLeaders, 1000 + exLeaderFenceMs - 1)).toBe(false);
    expect(state.leaderTerm).toBe(5);
    // Not given to onAnswer, as after a lost answer: the next change is from what term 5
    // accepted.
    expect(state.next(primaries(entry(0, { commitOpNum: 12 }), entry(1)))).toMatchObject({
      base: 1,
      primaries: [{ partition: 0, commitOpNum: 12 }],
    });
    // The same term, a higher one, or one that names none (an older coordinator) is used.
    for (const term of [5, 6, undefined]) {
      expect(
        state.admit({ leaseMs, granted: [], ...(term === undefined ? {} : { term }) }, 2000),
      ).toBe(true);
    }
    expect(state.leaderTerm).toBe(6);
    expect(state.admit(exLeaders, 2000 + exLeaderFenceMs - 1)).toBe(false);
  });

  test("the fence lapses once no higher term has answered for exLeaderFenceMs (a control store started afresh)", () => {
    const state = new ReportState();
    expect(state.admit({ leaseMs, granted: [], term: 57 }, 0)).toBe(true);
    // Terms from 1 again: refused while term 57 might still be answering, then heard.
    expect(state.admit({ leaseMs, granted: [], term: 1 }, exLeaderFenceMs - 1)).toBe(false);
    expect(state.admit({ leaseMs, granted: [], term: 1 }, exLeaderFenceMs)).toBe(true);
    expect(state.leaderTerm).toBe(1);
    expect(state.admit({ leaseMs, granted: [], term: 2 }, exLeaderFenceMs + 1)).toBe(true);
  });

  test("a coordinator that predates node leases: exactly what it grants, and whole reports", () => {
    const state = new ReportState();
    const sent = state.next(primaries(entry(0), entry(1)));
    const renewed = state.onAnswer(sent, {
      leaseMs,
      granted: [
        { volume: "v", partition: 1, epoch: 4 },
        { volume: "v", partition: 0, epoch: 3 },
      ],
    });
    expect(renewed.map((e) => e.partition)).toEqual([1]);
    expect(state.next(primaries(entry(0), entry(1)))).toMatchObject({ base: undefined });
  });
});

describe("against the coordinator's book", () => {
  const partitions = [0, 1, 2, 3, 4, 5];
  /** The leader's records: head-1 leads the even partitions at epoch 4, head-2 the odd. */
  const records = new Map<number, PartitionRecord>(
    partitions.map((p) => [
      p,
      {
        volume: "v",
        volumeId: "v-1",
        partition: p,
        partitionStart: p * 1024 * 1024,
        partitionBytes: 1024 * 1024,
        epoch: 4,
        primary: p % 2 === 0 ? "head-1" : "head-2",
        secondaries: [p % 2 === 0 ? "head-2" : "head-1"],
      },
    ]),
  );
  const recordOf = (volume: string, partition: number) =>
    volume === "v" ? records.get(partition) : undefined;
  const alive = new Set(["head-1", "head-2"]);
  const book = (sinceMs: number) =>
    new LeaseBook({
      leaderSinceMs: sinceMs,
      leaseMs,
      driftMarginMs: limits.primaryLeaseDriftMarginMs,
      reportAgeMsMax: 2000,
    });

  const step = fc.record({
    /** head-1's primaries this round: partition → epoch, commit point, failed. */
    held: fc.array(
      fc.record({
        partition: fc.constantFrom(...partitions),
        epoch: fc.constantFrom(3, 4),
        commitOpNum: fc.integer({ min: 0, max: 3 }),
        failed: fc.boolean(),
      }),
      { maxLength: 6 },
    ),
    fate: fc.constantFrom(
      "delivered",
      "delivered",
      "delivered",
      "lost",
      "answer-lost",
      "new-leader",
    ),
    replacing: fc.option(fc.constantFrom(...partitions), { nil: undefined }),
  });

  test("a renewal is only ever of a partition the book covers, and an idle node converges", () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
        const state = new ReportState();
        let nowMs = 10_000;
        let leases = book(nowMs);
        for (const { held, fate, replacing } of steps) {
          nowMs += 500;
          if (fate === "new-leader") leases = book(nowMs);
          for (const p of partitions) leases.setReplacing(records.get(p)!, p === replacing);
          const current = primaries(
            ...held.map((h) =>
              entry(h.partition, { epoch: h.epoch, commitOpNum: h.commitOpNum, failed: h.failed }),
            ),
          );
          const sent = state.next(current);
          if (fate === "lost") continue;
          const outcome = leases.onNodeReport(
            {
              node: "head-1",
              session: 1,
              seq: sent.seq,
              base: sent.base,
              primaries: sent.primaries,
              gone: sent.gone,
            },
            recordOf,
            alive,
            nowMs,
          );
          if (fate === "answer-lost") continue;
          const renewed = state.onAnswer(sent, answerOf(outcome));
          for (const e of renewed) {
            const record = records.get(e.partition)!;
            // The head node's lease (from its send, earlier) ends no later than the book's.
            expect(record.primary).toBe("head-1");
            expect(record.epoch).toBe(e.epoch);
            expect(e.failed).not.toBe(true);
            expect(e.partition).not.toBe(replacing);
            expect(leases.leaseUntilMs(record)).toBeGreaterThanOrEqual(nowMs + leaseMs);
          }
        }
        // Two delivered rounds with nothing changing: the book holds what the node has.
        const last = steps.at(-1)!.held;
        const current = primaries(
          ...last.map((h) =>
            entry(h.partition, { epoch: h.epoch, commitOpNum: h.commitOpNum, failed: h.failed }),
          ),
        );
        for (let round = 0; round < 2; round++) {
          nowMs += 500;
          const sent = state.next(current);
          const outcome = leases.onNodeReport(
            {
              node: "head-1",
              session: 1,
              seq: sent.seq,
              base: sent.base,
              primaries: sent.primaries,
              gone: sent.gone,
            },
            recordOf,
            alive,
            nowMs,
          );
          state.onAnswer(sent, answerOf(outcome));
        }
        for (const p of partitions) {
          const record = records.get(p)!;
          if (record.primary !== "head-1") continue;
          const want = current.get(addressKey("v", p));
          expect(leases.reportOf(record, nowMs)).toEqual(want);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("failed replicas that are not primary", () => {
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
  const failure = { volume: "v", volumeId: "v-1", partition: 0, epoch: 4 };

  test("reach the coordinator's book as a change, once, and leave it when reopened", () => {
    const book = new LeaseBook({
      leaderSinceMs: 0,
      leaseMs,
      driftMarginMs: limits.primaryLeaseDriftMarginMs,
      reportAgeMsMax: 2000,
    });
    const state = new ReportState();
    const exchange = (failures: Map<string, typeof failure>) => {
      const sent = state.next(new Map(), failures);
      const outcome = book.onNodeReport(
        {
          node: "head-2",
          session: 1,
          seq: sent.seq,
          base: sent.base,
          primaries: sent.primaries,
          gone: sent.gone,
          failures: sent.failures,
          failuresGone: sent.failuresGone,
        },
        () => record,
        new Set(["head-1", "head-2"]),
        1000,
      );
      state.onAnswer(sent, {
        ...answerOf(outcome),
        ...(outcome.heldFailures === undefined ? {} : { heldFailures: outcome.heldFailures }),
      });
      return { sent, outcome };
    };
    expect(exchange(new Map()).outcome.heldFailures).toBe(0);
    expect(book.failedMembers(record)).toEqual(new Set());

    const failed = new Map([[addressKey("v", 0), failure]]);
    const first = exchange(failed);
    expect(first.sent.failures).toEqual([failure]);
    expect(first.outcome.urgent).toBe(true);
    expect(book.failedMembers(record)).toEqual(new Set(["head-2"]));
    // Idle: an empty change, and the book still holds the failure.
    const idle = exchange(failed);
    expect(idle.sent).toMatchObject({ primaries: [], gone: [], failures: [], failuresGone: [] });
    expect(idle.outcome.urgent).toBeUndefined();
    expect(book.failedMembers(record)).toEqual(new Set(["head-2"]));
    // Not a member's failure in a later epoch (the configure of it reopens the replica).
    expect(book.failedMembers({ ...record, epoch: 5 })).toEqual(new Set());
    // Reopened: gone from the book.
    expect(exchange(new Map()).sent.failuresGone).toEqual([{ volume: "v", partition: 0 }]);
    expect(book.failedMembers(record)).toEqual(new Set());
  });

  test("a book that holds another count of them has the next report sent whole", () => {
    const state = new ReportState();
    const failed = new Map([[addressKey("v", 0), failure]]);
    const sent = state.next(new Map(), failed);
    state.onAnswer(sent, { leaseMs, granted: [], accepted: sent.seq, held: 0, heldFailures: 0 });
    expect(state.next(new Map(), failed)).toMatchObject({ base: undefined, failures: [failure] });
  });
});

test("a changed snapshot figure makes a report entry differ, so that it is sent", () => {
  const entry = (snapshotBytes?: [string, number][]): PrimaryReport => ({
    volume: "v",
    partition: 0,
    epoch: 1,
    session: 1,
    commitOpNum: 10,
    tailCommitted: true,
    followers: [],
    ...(snapshotBytes === undefined
      ? {}
      : {
          snapshotBytes: snapshotBytes.map(([snapshot, uniqueBytes]) => ({
            snapshot,
            uniqueBytes,
          })),
        }),
  });
  expect(sameEntry(entry([["s1", 4096]]), entry([["s1", 4096]]))).toBe(true);
  expect(sameEntry(entry([["s1", 4096]]), entry([["s1", 8192]]))).toBe(false);
  expect(sameEntry(entry([["s1", 4096]]), entry())).toBe(false);
  expect(sameEntry(entry(), entry())).toBe(true);
});

describe("sameEntry tells apart entries that differ in any field the schema names", () => {
  // An entry with every field of the message set, so that none can be forgotten: a
  // field sameEntry ignores is never sent while nothing else in the entry changes.
  const full: PrimaryReport = {
    volume: "v",
    volumeId: "v-1",
    partition: 3,
    epoch: 4,
    session: 2,
    commitOpNum: 10,
    tailCommitted: true,
    followers: [
      {
        node: "head-2",
        matchOpNum: 9,
        learner: false,
        stalledMs: 500,
        needsRebuild: true,
        unheard: true,
      },
    ],
    failed: false,
    stalledMs: 2000,
    flushStalledMs: 7000,
    chunkBytes: 8192,
    liveBytes: 4096,
    snapshotBytes: [{ snapshot: "s1", uniqueBytes: 4096 }],
    chunksShortOfCopies: 1,
    auditedDisks: ["0123456789abcdef0123456789abcdef"],
  };
  const copy = (): PrimaryReport => structuredClone(full);
  const other = (value: unknown): unknown => {
    if (typeof value === "number") return value + 1;
    if (typeof value === "boolean") return !value;
    if (typeof value === "string") return `${value}x`;
    throw new Error(`no other value for ${String(value)}`);
  };

  test("the full entry sets every field of the schema, and of a follower's", () => {
    expect(Object.keys(full).sort()).toEqual(Object.keys(PrimaryReportSchema.shape).sort());
    expect(Object.keys(full.followers[0]!).sort()).toEqual(
      Object.keys(FollowerSchema.shape).sort(),
    );
    expect(sameEntry(full, copy())).toBe(true);
  });

  test.each(Object.keys(PrimaryReportSchema.shape))("a change of %s", (key) => {
    const changed = copy() as Record<string, unknown>;
    if (key === "followers") changed.followers = [];
    else if (key === "snapshotBytes") changed.snapshotBytes = [];
    else if (key === "auditedDisks") changed.auditedDisks = ["fedcba9876543210fedcba9876543210"];
    else changed[key] = other(changed[key]);
    expect(sameEntry(full, changed as PrimaryReport)).toBe(false);
    expect(sameEntry(changed as PrimaryReport, full)).toBe(false);
    if (PrimaryReportSchema.shape[key as keyof PrimaryReport].isOptional()) {
      const without = copy() as Record<string, unknown>;
      delete without[key];
      expect(sameEntry(full, without as PrimaryReport), `${key} absent`).toBe(false);
    }
  });

  test.each(Object.keys(FollowerSchema.shape))("a change of a follower's %s", (key) => {
    const changed = copy();
    const follower = changed.followers[0]! as Record<string, unknown>;
    follower[key] = other(follower[key]);
    expect(sameEntry(full, changed)).toBe(false);
    if (FollowerSchema.shape[key as keyof typeof FollowerSchema.shape].isOptional()) {
      const without = copy();
      delete (without.followers[0]! as Record<string, unknown>)[key];
      expect(sameEntry(full, without), `follower's ${key} absent`).toBe(false);
    }
  });
});

test("a primary whose own journal stalls is reported, though nothing else changed", () => {
  // The defect: one write in flight, acknowledged by the secondary, then the disk hangs.
  // Commit point and followers stay put; only the entry's own stall appears. The next
  // report must carry it, or the coordinator renews the lease and never fails it over.
  const state = new ReportState();
  const calm = entry(0);
  const first = state.next(primaries(calm));
  state.onAnswer(first, { leaseMs, granted: [], accepted: first.seq, held: 1, excluded: [] });
  const stalled = entry(0, { stalledMs: limits.primaryStallMsMax });
  expect(state.next(primaries(stalled)).primaries).toEqual([stalled]);
});

test("a primary whose flushes all fail is reported, though nothing else changed (review-reach R1)", () => {
  // Cut from the sleds with no write coming: only the entry's flush stall appears, and
  // it must be sent (and count as an entry to act on when reports overflow).
  const state = new ReportState();
  const calm = entry(0);
  const first = state.next(primaries(calm));
  state.onAnswer(first, { leaseMs, granted: [], accepted: first.seq, held: 1, excluded: [] });
  const stalled = entry(0, { flushStalledMs: limits.primaryStallMsMax });
  expect(state.next(primaries(stalled)).primaries).toEqual([stalled]);
});

test("more changes than one report carries: entries to act on go first, and none is left out report after report", () => {
  const max = limits.reportPartitionsMax;
  const count = max + 100;
  const last = count - 1;
  const busy = (round: number, stalled = false) =>
    primaries(
      ...Array.from({ length: count }, (_, partition) =>
        entry(partition, {
          commitOpNum: 10 + round,
          ...(stalled && partition === last ? { stalledMs: limits.primaryStallMsMax } : {}),
        }),
      ),
    );
  const state = new ReportState();
  const sent = new Set<number>();
  const accept = (outgoing: ReturnType<ReportState["next"]>) => {
    for (const one of outgoing.primaries) sent.add(one.partition);
    state.onAnswer(outgoing, {
      leaseMs,
      granted: [],
      accepted: outgoing.seq,
      held: outgoing.state.size,
      excluded: [],
    });
    return outgoing;
  };
  expect(accept(state.next(busy(0))).primaries).toHaveLength(max);
  // Every entry changes again, and the last in order stalls: the stall goes in this
  // report, whatever its place, and so do the entries the first report had no room for.
  const second = accept(state.next(busy(1, true)));
  expect(second.primaries).toHaveLength(max);
  expect(second.primaries[0]).toMatchObject({
    partition: last,
    stalledMs: limits.primaryStallMsMax,
  });
  expect(sent.size, "every entry sent at least once in two reports").toBe(count);
});
