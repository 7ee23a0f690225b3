// What a head node does with a configure (configure-decision.ts), the one decision of the
// head node shell and the failover simulator: every input, enumerated (incarnation
// older, the same or newer than the hosted one; failed or not; epoch unset, older, equal
// or newer; fresh learner or not; each part; create said or not), against the rules of
// the module header, and the cases each shell relies on, by name.

import { describe, expect, test } from "vitest";
import {
  type ConfigureAsk,
  type ConfigureDecision,
  type ConfigureNode,
  decideConfigure,
  type HostedReplica,
  type Part,
  partOf,
} from "../src/configure-decision.ts";

const parts: Part[] = ["primary", "secondary", "learner", "none"];
/** Incarnation 2 of the name is asked for; the hosted one is 1, 2 or 3. */
const askedId = "2-b";
const hostedIds = ["1-a", askedId, "3-c"];
const askedEpoch = 5;

function* hostedReplicas(): Generator<HostedReplica | undefined> {
  yield undefined;
  for (const volumeId of hostedIds) {
    for (const failed of [false, true]) {
      for (const epoch of [undefined, 4, 5, 6]) {
        for (const freshLearner of [false, true]) yield { volumeId, failed, epoch, freshLearner };
      }
    }
  }
}

function* inputs(): Generator<{ ask: ConfigureAsk; node: ConfigureNode }> {
  for (const deleted of [false, true]) {
    for (const hosted of hostedReplicas()) {
      for (const part of parts) {
        for (const create of [undefined, false, true]) {
          const ask: ConfigureAsk = {
            volumeId: askedId,
            epoch: askedEpoch,
            part,
            ...(create === undefined ? {} : { create }),
          };
          yield { ask, node: { deleted, hosted } };
        }
      }
    }
  }
}

const all = [...inputs()].map((input) => ({
  ...input,
  decision: decideConfigure(input.ask, input.node),
}));

function retireOf(decision: ConfigureDecision) {
  return decision.kind === "apply" ? "keep" : decision.retire;
}

describe("decideConfigure, over every input", () => {
  test("covers the whole space", () => {
    expect(all).toHaveLength(2 * (1 + 3 * 2 * 4 * 2) * 4 * 3);
  });

  test("a deleted incarnation is refused and nothing hosted is touched", () => {
    for (const { node, decision } of all.filter(({ node }) => node.deleted)) {
      expect(decision, JSON.stringify(node)).toEqual({
        kind: "refuse",
        refusal: { reason: "deleted" },
        retire: "keep",
        forget: undefined,
      });
    }
  });

  test("an older or the same-numbered other incarnation never replaces the hosted one, failed or not", () => {
    for (const { node, decision } of all) {
      if (node.deleted || node.hosted?.volumeId !== "1-a") continue;
      // 1-a is older than the asked 2-b: the asked one replaces it.
      expect(retireOf(decision)).toBe("remove");
      expect(decision.kind === "apply" ? undefined : decision.forget).toBe("1-a");
    }
    for (const { node, decision } of all) {
      if (node.deleted || node.hosted?.volumeId !== "3-c") continue;
      expect(decision).toEqual({
        kind: "refuse",
        refusal: { reason: "older-incarnation", hostedVolumeId: "3-c" },
        retire: "keep",
        forget: askedId,
      });
    }
  });

  test("never opens a voter with nothing stored when the sender says it is not a first placement", () => {
    for (const { ask, node, decision } of all) {
      if (decision.kind !== "open" || decision.from !== "stored") continue;
      // Stored: only a failed replica of this incarnation, reopened from its disk.
      if (ask.create === false) expect(decision.retire).toBe("close");
      if (decision.retire === "close") expect(node.hosted?.volumeId).toBe(askedId);
      expect(ask.part === "primary" || ask.part === "secondary").toBe(true);
    }
    // And refuses it instead; the head node, which is not told, opens what it stores.
    const empty = (create: boolean | undefined) =>
      decideConfigure(
        { volumeId: askedId, epoch: 1, part: "secondary", create },
        { deleted: false, hosted: undefined },
      );
    expect(empty(false)).toMatchObject({ kind: "refuse", refusal: { reason: "no-state" } });
    expect(empty(true)).toMatchObject({ kind: "open", from: "stored", session: "node" });
    expect(empty(undefined)).toMatchObject({ kind: "open", from: "stored", session: "node" });
  });

  test("whatever follows a failed replica opens in a new session, never the node's", () => {
    for (const { node, decision } of all) {
      if (decision.kind !== "open") continue;
      expect(decision.session).toBe(node.hosted?.failed === true ? "new" : "node");
    }
  });

  test("a failed replica is never configured as it is: it is closed (or removed) first", () => {
    for (const { ask, node, decision } of all) {
      if (node.deleted || node.hosted?.failed !== true || node.hosted.volumeId === "3-c") continue;
      expect(decision.kind).not.toBe("apply");
      const sameIncarnation = node.hosted.volumeId === askedId;
      if (sameIncarnation && node.hosted.epoch !== undefined && node.hosted.epoch > askedEpoch) {
        continue; // an older epoch: refused, the replica kept as it is (below)
      }
      const retire =
        node.hosted.volumeId !== askedId ? "remove" : ask.part === "none" ? "close-out" : "close";
      expect(retireOf(decision)).toBe(retire);
    }
  });

  test("a hosted replica, failed or not, refuses an older epoch and is kept as it is", () => {
    for (const { node, decision } of all) {
      const hosted = node.hosted;
      if (node.deleted || hosted?.volumeId !== askedId) continue;
      if (hosted.epoch === undefined || hosted.epoch <= askedEpoch) continue;
      expect(decision).toEqual({
        kind: "refuse",
        refusal: { reason: "older-epoch", currentEpoch: hosted.epoch },
        retire: "keep",
        forget: undefined,
      });
    }
  });

  test("a live replica refuses an older epoch, and is configured or rebuilt otherwise", () => {
    for (const { ask, node, decision } of all) {
      const hosted = node.hosted;
      if (node.deleted || hosted?.volumeId !== askedId || hosted.failed) continue;
      if (hosted.epoch !== undefined && hosted.epoch > askedEpoch) {
        expect(decision).toEqual({
          kind: "refuse",
          refusal: { reason: "older-epoch", currentEpoch: hosted.epoch },
          retire: "keep",
          forget: undefined,
        });
        continue;
      }
      const newer = hosted.epoch === undefined || askedEpoch > hosted.epoch;
      if (ask.part === "learner" && !hosted.freshLearner && newer) {
        expect(decision).toEqual({
          kind: "open",
          retire: "remove",
          forget: undefined,
          session: "node",
          from: "rebuild",
        });
      } else if (ask.part === "none" && hosted.epoch === undefined) {
        expect(decision).toMatchObject({ kind: "refuse", refusal: { reason: "not-a-member" } });
      } else if (ask.part === "none") {
        // Named out: closed once its disk keeps the out epoch (review-leaks.md, H1).
        expect(decision).toEqual({
          kind: "refuse",
          refusal: { reason: "not-a-member" },
          retire: "close-out",
          forget: undefined,
        });
      } else {
        expect(decision).toEqual({ kind: "apply" });
      }
    }
  });

  test("a replica's own state is removed only to rebuild it as a learner", () => {
    for (const { ask, node, decision } of all) {
      if (retireOf(decision) !== "remove" || node.hosted?.volumeId !== askedId) continue;
      expect(ask.part).toBe("learner");
      expect(node.hosted.freshLearner && !node.hosted.failed).toBe(false);
      expect(decision).toMatchObject({ kind: "open", from: "rebuild" });
    }
  });

  test("only a replica configured in the out epoch or an older one, or not configured since it opened, is closed out", () => {
    let closedOut = 0;
    let failed = 0;
    for (const { ask, node, decision } of all) {
      if (retireOf(decision) !== "close-out") continue;
      closedOut++;
      expect(ask.part).toBe("none");
      expect(node.hosted?.volumeId).toBe(askedId);
      if (node.hosted?.failed === true) failed++;
      if (node.hosted?.epoch === undefined) continue;
      expect(node.hosted.epoch).toBeLessThanOrEqual(askedEpoch);
    }
    expect(failed).toBeGreaterThan(0);
    expect(closedOut).toBeGreaterThan(failed);
  });

  test("named out with nothing of the incarnation open, its out epoch is kept where its replica is stored", () => {
    for (const { ask, node } of all) {
      if (ask.part !== "none" || node.hosted?.volumeId === askedId) continue;
      for (const stored of [undefined, false, true]) {
        const decision = decideConfigure(ask, { ...node, stored });
        expect(decision.kind).toBe("refuse");
        const kept = decision.kind === "refuse" && decision.keepOutEpoch === true;
        // Before, nothing was kept: restarted since it was configured a voter in epoch 4,
        // then named out in 5, a delayed configure of epoch 4 naming it a voter opened it.
        // A newer incarnation hosted: this one was deleted, nothing of it to keep.
        const live = !node.deleted && node.hosted?.volumeId !== "3-c";
        expect(kept, JSON.stringify({ node, stored })).toBe(stored === true && live);
      }
    }
  });

  test("a hosted replica of the incarnation named out is closed with its out epoch kept, failed or not (never closed without)", () => {
    for (const { ask, node, decision } of all) {
      const hosted = node.hosted;
      if (node.deleted || ask.part !== "none" || hosted?.volumeId !== askedId) continue;
      // Not closed at all only when refused for an older epoch.
      expect(retireOf(decision)).not.toBe("close");
      expect(retireOf(decision)).not.toBe("remove");
      if (hosted.epoch !== undefined && hosted.epoch > askedEpoch) continue;
      expect(retireOf(decision)).toBe("close-out");
    }
  });

  test("a node outside the replica set never opens anything", () => {
    for (const { ask, decision } of all) {
      if (ask.part !== "none") continue;
      expect(decision.kind).not.toBe("open");
    }
  });

  test("a learner with nothing (left) hosted is always rebuilt afresh", () => {
    for (const { ask, node, decision } of all) {
      if (ask.part !== "learner" || decision.kind !== "open") continue;
      expect(decision.from).toBe("rebuild");
      expect(node.hosted === undefined || retireOf(decision) !== "keep").toBe(true);
    }
  });
});

describe("decideConfigure, by name", () => {
  const live = (fields: Partial<HostedReplica> = {}): ConfigureNode => ({
    deleted: false,
    hosted: { volumeId: askedId, failed: false, epoch: 5, freshLearner: false, ...fields },
  });
  const ask = (part: Part, epoch = askedEpoch): ConfigureAsk => ({
    volumeId: askedId,
    epoch,
    part,
  });

  test("the same epoch again is applied (a no-op in the core)", () => {
    expect(decideConfigure(ask("secondary"), live())).toEqual({ kind: "apply" });
  });

  test("a fresh learner named a learner again keeps what it rebuilt", () => {
    expect(decideConfigure(ask("learner", 6), live({ freshLearner: true }))).toEqual({
      kind: "apply",
    });
  });

  test("a stale configure naming a voter a learner is refused, not rebuilt", () => {
    expect(decideConfigure(ask("learner", 4), live())).toMatchObject({
      kind: "refuse",
      refusal: { reason: "older-epoch", currentEpoch: 5 },
    });
  });

  test("a failed replica out of the set is closed once its disk keeps the out epoch, and the configure refused", () => {
    // Before, closed (`close`) with the out epoch kept nowhere: after a reboot, which lifts
    // the failed marker's refusal, a delayed configure of epoch 5 or 6 naming it a voter
    // found only epoch 4 on its disk, and opened it.
    for (const epoch of [undefined, 4, 7]) {
      expect(decideConfigure(ask("none", 7), live({ failed: true, epoch }))).toEqual({
        kind: "refuse",
        refusal: { reason: "not-a-member" },
        retire: "close-out",
        forget: undefined,
      });
    }
  });

  test("a failed replica kept hosted with its out epoch in memory (its disk refused it) refuses an older epoch", () => {
    // The shell passes the out epoch as the hosted epoch (partition-host.ts `fencedEpoch`).
    expect(decideConfigure(ask("primary", 6), live({ failed: true, epoch: 7 }))).toEqual({
      kind: "refuse",
      refusal: { reason: "older-epoch", currentEpoch: 7 },
      retire: "keep",
      forget: undefined,
    });
  });

  test("a failed learner is rebuilt afresh in a new session", () => {
    expect(decideConfigure(ask("learner"), live({ failed: true, freshLearner: true }))).toEqual({
      kind: "open",
      retire: "close",
      forget: undefined,
      session: "new",
      from: "rebuild",
    });
  });

  test("a failed voter refuses an older epoch, and reopens from its disk in a new session at its own or a newer one", () => {
    expect(decideConfigure(ask("primary", 4), live({ failed: true }))).toEqual({
      kind: "refuse",
      refusal: { reason: "older-epoch", currentEpoch: 5 },
      retire: "keep",
      forget: undefined,
    });
    expect(decideConfigure(ask("primary", 5), live({ failed: true }))).toEqual({
      kind: "open",
      retire: "close",
      forget: undefined,
      session: "new",
      from: "stored",
    });
  });

  test("partOf names the node's part", () => {
    const members = { primary: "a", secondaries: ["b"], learners: ["c"] };
    expect(["a", "b", "c", "d"].map((node) => partOf(node, members))).toEqual([
      "primary",
      "secondary",
      "learner",
      "none",
    ]);
    expect(partOf("c", { primary: "a", secondaries: [] })).toBe("none");
  });
});

describe("decideConfigure and the node's disk", () => {
  const diskA = "a".repeat(32);
  const diskB = "b".repeat(32);

  test("a configure recorded on another disk is refused whatever else holds, and nothing hosted is touched", () => {
    for (const { ask, node } of all) {
      const decision = decideConfigure({ ...ask, disk: diskA }, { ...node, disk: diskB });
      expect(decision, JSON.stringify({ ask, node })).toEqual({
        kind: "refuse",
        refusal: { reason: "other-disk", disk: diskA },
        retire: "keep",
        forget: undefined,
      });
    }
  });

  test("a configure on this disk, or one that names none, is decided as before", () => {
    for (const { ask, node, decision } of all) {
      expect(decideConfigure({ ...ask, disk: diskA }, { ...node, disk: diskA })).toEqual(decision);
      expect(decideConfigure(ask, { ...node, disk: diskB })).toEqual(decision);
    }
  });

  test("an empty disk under the old node id never opens the voter it was (the defect)", () => {
    // The coordinator re-pushes the primary's configuration in the same epoch to a node
    // back on an empty disk: before disk ids it opened an empty primary.
    const repush = { volumeId: askedId, epoch: askedEpoch, part: "primary" as const, disk: diskA };
    expect(
      decideConfigure(repush, { disk: diskB, deleted: false, hosted: undefined }),
    ).toMatchObject({ kind: "refuse", refusal: { reason: "other-disk" } });
    expect(
      decideConfigure(
        { ...repush, disk: undefined },
        { disk: diskB, deleted: false, hosted: undefined },
      ),
    ).toMatchObject({ kind: "open", from: "stored" });
  });
});

describe("decideConfigure and a configure that names no disk (members placed before disk ids)", () => {
  const disk = "a".repeat(32);
  const voter = (part: Part) => part === "primary" || part === "secondary";
  /**
   * The base decision opened a voter from what the disk stores, not a failed replica, or
   * refused it for the same reason where the sender said it is no first placement.
   */
  const opensStoredVoter = (decision: ConfigureDecision) =>
    (decision.kind === "open" && decision.from === "stored" && decision.retire !== "close") ||
    (decision.kind === "refuse" && decision.refusal.reason === "no-state");

  test("from a sender that records disks, a voter whose disk stores nothing is refused; every other input is decided as before", () => {
    let refused = 0;
    for (const { ask, node, decision } of all) {
      for (const disksRecorded of [undefined, false, true]) {
        for (const stored of [undefined, false, true]) {
          const got = decideConfigure({ ...ask, disksRecorded }, { ...node, disk, stored });
          const context = JSON.stringify({ ask, node, disksRecorded, stored });
          if (disksRecorded === true && stored === false && opensStoredVoter(decision)) {
            refused++;
            expect(voter(ask.part), context).toBe(true);
            expect(got, context).toEqual({
              kind: "refuse",
              refusal: { reason: "no-replica" },
              retire: (decision as { retire: string }).retire,
              forget: (decision as { forget: string | undefined }).forget,
            });
          } else if (stored === true && got.kind === "refuse" && got.keepOutEpoch === true) {
            // Named out with its replica stored and open nowhere: its out epoch kept.
            expect(ask.part, context).toBe("none");
            expect({ ...got, keepOutEpoch: undefined }, context).toEqual(decision);
          } else {
            expect(got, context).toEqual(decision);
          }
        }
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  test("with this disk named, an empty voter still opens (a first placement)", () => {
    for (const { ask, node, decision } of all) {
      expect(
        decideConfigure({ ...ask, disk, disksRecorded: true }, { ...node, disk, stored: false }),
      ).toEqual(decision);
    }
  });

  test("never opens a voter from nothing without its disk named, from a sender that records disks", () => {
    for (const { ask, node } of all) {
      const decision = decideConfigure(
        { ...ask, disksRecorded: true },
        { ...node, disk, stored: false },
      );
      if (decision.kind !== "open" || !voter(ask.part)) continue;
      // Stored only as a failed replica of this incarnation, reopened from its disk.
      expect(decision.from).toBe("stored");
      expect(decision.retire).toBe("close");
      expect(node.hosted?.volumeId).toBe(askedId);
    }
  });

  test("a node back on an empty disk under its old id, with no disk recorded, refuses the voter it was (the limit of disk ids)", () => {
    for (const part of ["primary", "secondary"] as const) {
      const repush = { volumeId: askedId, epoch: askedEpoch, part, disksRecorded: true };
      expect(
        decideConfigure(repush, { disk, deleted: false, hosted: undefined, stored: false }),
      ).toEqual({
        kind: "refuse",
        refusal: { reason: "no-replica" },
        retire: "keep",
        forget: undefined,
      });
      // Its disk intact: it opens what it stores.
      expect(
        decideConfigure(repush, { disk, deleted: false, hosted: undefined, stored: true }),
      ).toEqual({
        kind: "open",
        retire: "keep",
        forget: undefined,
        session: "node",
        from: "stored",
      });
    }
    // A learner is rebuilt, whatever its disk stores.
    expect(
      decideConfigure(
        { volumeId: askedId, epoch: askedEpoch, part: "learner", disksRecorded: true },
        { disk, deleted: false, hosted: undefined, stored: false },
      ),
    ).toMatchObject({ kind: "open", from: "rebuild" });
  });
});

describe("decideConfigure and the epoch a restarted node's journal stores", () => {
  // review-retries.md item 3: with nothing hosted after a restart, a delayed configure
  // naming a voter of a later epoch a learner had its directory removed and rebuilt.
  const storedEpochs = [undefined, 4, 5, 6];

  test("an epoch older than the stored one is refused, and nothing of the incarnation is removed or opened", () => {
    for (const { ask, node } of all.map(({ ask, node }) => ({ ask, node }))) {
      if (ask.part === "none") continue;
      const decision = decideConfigure(ask, { ...node, storedEpoch: 6 });
      expect(decision.kind, JSON.stringify({ ask, node })).not.toBe("open");
      if (decision.kind === "apply") {
        // Only a replica hosted with its epoch: then it was configured (never below
        // what it stores), and the core ignores an older epoch. One open but not
        // configured since was applied the older epoch, a voter's part in it.
        expect(node.hosted?.volumeId).toBe(askedId);
        expect(node.hosted?.epoch, JSON.stringify({ ask, node })).toBeDefined();
        continue;
      }
      const ownRemoved = decision.retire === "remove" && decision.forget === undefined;
      expect(ownRemoved, JSON.stringify({ ask, node })).toBe(false);
      if (node.hosted?.volumeId === askedId) expect(decision.retire).toBe("keep");
    }
  });

  test("a learner with nothing hosted, older than its journal: refused, not rebuilt (the defect)", () => {
    const stale: ConfigureAsk = { volumeId: askedId, epoch: 4, part: "learner" };
    const restarted: ConfigureNode = { deleted: false, hosted: undefined, storedEpoch: 5 };
    expect(decideConfigure(stale, { ...restarted, storedEpoch: undefined })).toMatchObject({
      kind: "open",
      from: "rebuild",
    });
    expect(decideConfigure(stale, restarted)).toEqual({
      kind: "refuse",
      refusal: { reason: "older-epoch", currentEpoch: 5 },
      retire: "keep",
      forget: undefined,
    });
    // Failed before it was configured (hosted, no epoch): kept hosted and failed.
    const failed = { volumeId: askedId, failed: true, epoch: undefined, freshLearner: false };
    expect(decideConfigure(stale, { ...restarted, hosted: failed })).toMatchObject({
      kind: "refuse",
      retire: "keep",
    });
  });

  test("at or above the stored epoch, every decision is as without it", () => {
    for (const { ask, node, decision } of all) {
      for (const storedEpoch of storedEpochs) {
        if (storedEpoch !== undefined && storedEpoch > ask.epoch) continue;
        expect(decideConfigure(ask, { ...node, storedEpoch }), JSON.stringify(node)).toEqual(
          decision,
        );
      }
    }
  });

  test("another incarnation hosted still retires when the asked one's journal refuses", () => {
    const decision = decideConfigure(
      { volumeId: askedId, epoch: 4, part: "learner" },
      {
        deleted: false,
        storedEpoch: 5,
        hosted: { volumeId: "1-a", failed: false, epoch: 9, freshLearner: false },
      },
    );
    expect(decision).toEqual({
      kind: "refuse",
      refusal: { reason: "older-epoch", currentEpoch: 5 },
      retire: "remove",
      forget: "1-a",
    });
  });
});
