// The leader's book of read leases and reports, pure: time is an argument.

import { limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { decidePartition, type PartitionRecord, type Report } from "../src/decisions.ts";
import { LeaseBook } from "../src/leases.ts";
import { loadOf } from "../src/placement.ts";

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

describe("lease grants", () => {
  test("a grant runs for the lease plus the drift margin from when it is decided", () => {
    const leases = book();
    expect(leases.onReport("head-1", report(), record, alive, 50_000)).toBe(true);
    expect(leases.leaseUntilMs(record)).toBe(50_000 + primaryLeaseMs + primaryLeaseDriftMarginMs);
    // A later grant extends it; an earlier one never shortens it.
    leases.onReport("head-1", report(), record, alive, 51_000);
    leases.onReport("head-1", report(), record, alive, 50_500);
    expect(leases.leaseUntilMs(record)).toBe(51_000 + primaryLeaseMs + primaryLeaseDriftMarginMs);
  });

  test("refused while the partition's primary is being replaced", () => {
    const leases = book();
    leases.onReport("head-1", report(), record, alive, 50_000);
    const until = leases.leaseUntilMs(record);
    leases.setReplacing(record, true);
    expect(leases.onReport("head-1", report(), record, alive, 51_000)).toBe(false);
    expect(leases.leaseUntilMs(record)).toBe(until);
    leases.setReplacing(record, false);
    expect(leases.onReport("head-1", report(), record, alive, 51_000)).toBe(true);
  });

  test("refused to a primary that reports itself failed, whose report is still kept", () => {
    const leases = book();
    const until = leases.leaseUntilMs(record);
    expect(leases.onReport("head-1", report({ failed: true }), record, alive, 50_000)).toBe(false);
    expect(leases.leaseUntilMs(record)).toBe(until);
    expect(leases.reportOf(record, 50_100)?.failed).toBe(true);
  });

  test("refused at another epoch, to a node that is not the primary, or of another incarnation", () => {
    const leases = book();
    expect(leases.onReport("head-1", report({ epoch: 3 }), record, alive, 50_000)).toBe(false);
    expect(leases.onReport("head-2", report(), record, alive, 50_000)).toBe(false);
    expect(leases.onReport("head-1", report({ volumeId: "v-0" }), record, alive, 50_000)).toBe(
      false,
    );
    expect(leases.onReport("head-1", report(), record, new Set(["head-2"]), 50_000)).toBe(false);
    expect(leases.leaseUntilMs(record)).toBe(primaryLeaseMs + primaryLeaseDriftMarginMs);
  });

  test("a new leader assumes a lease granted just before it took over is outstanding", () => {
    const leases = book(70_000);
    expect(leases.leaseUntilMs(record)).toBe(70_000 + primaryLeaseMs + primaryLeaseDriftMarginMs);
    const promoted = { ...record, epoch: 5, primary: "head-2", secondaries: [] };
    leases.onReport("head-1", report(), record, alive, 80_000);
    // A grant to the old primary says nothing about the new one.
    expect(leases.leaseUntilMs(promoted)).toBe(70_000 + primaryLeaseMs + primaryLeaseDriftMarginMs);
  });
});

describe("reports feed the decisions", () => {
  test("a stall the primary reports reaches decidePartition, which drops the follower", () => {
    const leases = book();
    const stalled = report({
      followers: [{ node: "head-2", matchOpNum: 7, learner: false, stalledMs: commitStallMsMax }],
    });
    leases.onReport("head-1", stalled, record, alive, 50_000);
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
    leases.onReport("head-2", report({ commitOpNum: 99 }), record, alive, 50_000);
    expect(leases.reportOf(record, 50_000)).toBeUndefined();
    leases.onReport("head-1", report(), record, alive, 50_000);
    expect(leases.reportOf(record, 52_000)?.commitOpNum).toBe(10);
    expect(leases.reportOf(record, 52_001)).toBeUndefined();
    expect(leases.lastReportOf(record)?.commitOpNum).toBe(10);
  });
});
