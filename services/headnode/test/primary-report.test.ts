// What a head node's report says of one replica (primary-report.ts), the one builder of
// both the head node shell's reports and the failover simulator's: a primary's entry
// (followers' stalls in ms, space, chunks short of copies), a failed primary's entry, a
// failed non-primary's entry of `failures`, and nothing for the rest. Real cores, driven
// by hand.

import { describe, expect, test } from "vitest";
import {
  failedReplicaOf,
  followerOnTheWire,
  nodeEntriesOf,
  primaryReportOf,
  type ReportContext,
  type Reporter,
  renewalsOf,
} from "../src/primary-report.ts";
import { type Configuration, Replica } from "../src/replica/replica.ts";
import { syncJournal } from "./effects-helpers.ts";

const partitionBytes = 1024 * 1024;
const address = { volume: "vol", volumeId: "vol-7", partition: 2 };
const context: ReportContext = { tickMs: 20, sledsOut: new Set(["sled-3"]) };
/** What every primary entry of these tests starts with. */
const head = { ...address, epoch: 4, session: 9, commitOpNum: 0 };
const configuration: Configuration = {
  epoch: 4,
  primary: "head-1",
  secondaries: ["head-2"],
  learners: ["head-3"],
};

function core(nodeId: string, session = 9): Replica {
  return new Replica(
    { nodeId, volume: "vol", partition: 2, partitionStart: 0, partitionBytes, session },
    { notes: [] },
    { commitStallTicks: 3, primaryStallTicks: 3 },
  );
}

/** A primary that has taken one write; its effects (the journal append) are returned. */
function primaryWithOneWrite(): { primary: Replica; effects: ReturnType<Replica["drainEffects"]> } {
  const primary = core("head-1");
  primary.configure(configuration);
  primary.onClientRequest({
    kind: "write",
    requestId: 1,
    epoch: 4,
    writes: [{ offset: 0, data: new Uint8Array(512).fill(1) }],
  });
  return { primary, effects: primary.drainEffects() };
}

/** A primary with one op durable on itself only, so that head-2 keeps it waiting. */
function stalledPrimary(ticks: number): Replica {
  const { primary, effects } = primaryWithOneWrite();
  syncJournal(primary, effects);
  for (let tick = 0; tick < ticks; tick++) primary.tick();
  return primary;
}

describe("a primary's entry", () => {
  test("says its epoch, session, commit point and tail, its followers' stalls in ms, its space and its chunks short of copies", () => {
    const primary = stalledPrimary(4);
    // Two chunks in the table, one with a copy on a sled out of service.
    primary.metadata.chunks.set(1, { sledChunkId: "c1", copies: ["sled-1", "sled-2"], bytes: 100 });
    primary.metadata.chunks.set(2, { sledChunkId: "c2", copies: ["sled-1", "sled-3"], bytes: 60 });

    expect(primaryReportOf(primary, address, false, context)).toEqual({
      ...head,
      tailCommitted: true,
      // The learner has acknowledged nothing in the epoch: unheard.
      followers: [
        { node: "head-2", matchOpNum: 0, learner: false, stalledMs: 4 * 20 },
        { node: "head-3", matchOpNum: 0, learner: true, unheard: true },
      ],
      chunkBytes: 160,
      liveBytes: 0,
      chunksShortOfCopies: 1,
    });
    expect(failedReplicaOf(primary, address, false)).toBeUndefined();
  });

  test("counts a stall only from the core's limit, in the context's tick length", () => {
    expect(primaryReportOf(stalledPrimary(2), address, false, context)?.followers[0]).toEqual({
      node: "head-2",
      matchOpNum: 0,
      learner: false,
    });
    const slow = { ...context, tickMs: 100 };
    expect(primaryReportOf(stalledPrimary(3), address, false, slow)?.followers[0]?.stalledMs).toBe(
      300,
    );
  });

  test("says its own journal has kept a write waiting once that reaches the core's limit", () => {
    // Its journal hangs: the append never completes.
    const { primary } = primaryWithOneWrite();
    for (let tick = 0; tick < 2; tick++) primary.tick();
    expect(primaryReportOf(primary, address, false, context)).not.toHaveProperty("stalledMs");
    primary.tick();
    expect(primaryReportOf(primary, address, false, context)?.stalledMs).toBe(3 * 20);
  });

  test("says its flushes have all failed once that reaches the core's limit (review-reach R1)", () => {
    const primary = new Replica(
      {
        nodeId: "head-1",
        volume: "vol",
        partition: 2,
        partitionStart: 0,
        partitionBytes,
        session: 9,
      },
      { notes: [] },
      { primaryStallTicks: 3, flushBytesThreshold: 1, flushRetryTicks: 1 },
    );
    primary.configure({ epoch: 4, primary: "head-1", secondaries: [] });
    primary.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 4,
      writes: [{ offset: 0, data: new Uint8Array(512).fill(1) }],
    });
    syncJournal(primary, primary.drainEffects());
    const failEveryFlush = () => {
      primary.tick();
      for (const effect of primary.drainEffects()) {
        if (effect.type === "chunk.write") primary.onChunkFailed(effect.chunkNumber);
      }
    };
    for (let tick = 0; tick < 3; tick++) failEveryFlush();
    expect(primaryReportOf(primary, address, false, context)).not.toHaveProperty("flushStalledMs");
    failEveryFlush();
    expect(primaryReportOf(primary, address, false, context)?.flushStalledMs).toBe(3 * 20);
  });

  test("a follower on the wire carries a rebuild only when one is needed", () => {
    const follower = { node: "head-3", matchOpNum: 5, learner: true };
    expect(followerOnTheWire({ ...follower, needsRebuild: false }, 20)).toEqual(follower);
    expect(followerOnTheWire({ ...follower, needsRebuild: true }, 20)).toEqual({
      ...follower,
      needsRebuild: true,
    });
  });

  test("a follower on the wire is marked unheard only when it has acknowledged nothing in the epoch", () => {
    const follower = { node: "head-3", matchOpNum: 0, learner: true };
    expect(followerOnTheWire({ ...follower, unheard: false }, 20)).toEqual(follower);
    expect(followerOnTheWire({ ...follower, unheard: true }, 20)).toEqual({
      ...follower,
      unheard: true,
    });
  });
});

describe("a failed replica", () => {
  test("configured as primary is an entry of primaries marked failed, with no followers, and no failure entry", () => {
    const primary = stalledPrimary(4);
    expect(primaryReportOf(primary, address, true, context)).toEqual({
      ...head,
      tailCommitted: false,
      followers: [],
      failed: true,
    });
    expect(failedReplicaOf(primary, address, true)).toBeUndefined();
  });

  for (const node of ["head-2", "head-3"]) {
    test(`configured as ${node === "head-2" ? "secondary" : "learner"} is an entry of failures at its epoch, and no primary entry`, () => {
      const follower = core(node);
      follower.configure(configuration);
      expect(failedReplicaOf(follower, address, true)).toEqual({ ...address, epoch: 4 });
      expect(primaryReportOf(follower, address, true, context)).toBeUndefined();
    });
  }

  test("never configured is in neither part", () => {
    const idle = core("head-1");
    expect(failedReplicaOf(idle, address, true)).toBeUndefined();
    expect(primaryReportOf(idle, address, true, context)).toBeUndefined();
  });
});

describe("a healthy replica that is not primary", () => {
  test("is in neither part", () => {
    const secondary = core("head-2");
    secondary.configure(configuration);
    expect(primaryReportOf(secondary, address, false, context)).toBeUndefined();
    expect(failedReplicaOf(secondary, address, false)).toBeUndefined();
    expect(primaryReportOf(core("head-1"), address, false, context)).toBeUndefined();
  });
});

describe("a node's report", () => {
  /** A hosted replica that reports what it is given. */
  function hosted(partition: number, part: "primary" | "failed-primary" | "failure" | "none") {
    const entry = { ...head, partition, tailCommitted: true, followers: [] };
    return {
      partition,
      report: () =>
        part === "primary"
          ? entry
          : part === "failed-primary"
            ? { ...entry, tailCommitted: false, failed: true }
            : undefined,
      failureReport: () => (part === "failure" ? { ...address, partition, epoch: 4 } : undefined),
    } satisfies Reporter & { partition: number };
  }

  test("puts each replica in at most one part, by address, and remembers which replica each primary entry is of", () => {
    const replicas = [
      hosted(0, "primary"),
      hosted(1, "failed-primary"),
      hosted(2, "failure"),
      hosted(3, "none"),
    ];
    const { primaries, failures, reported } = nodeEntriesOf(replicas);
    expect([...primaries.keys()]).toEqual(["vol/0", "vol/1"]);
    expect(primaries.get("vol/1")?.failed).toBe(true);
    expect([...failures]).toEqual([["vol/2", { ...address, partition: 2, epoch: 4 }]]);
    expect([...reported]).toEqual([
      ["vol/0", replicas[0]],
      ["vol/1", replicas[1]],
    ]);
  });

  test("renews only the replica that was reported, if still the one hosted, at the epoch granted", () => {
    const reportedReplicas = [hosted(0, "primary"), hosted(1, "primary"), hosted(2, "primary")];
    const { reported } = nodeEntriesOf(reportedReplicas);
    // Partition 1 was reopened (or rebuilt) since the report, and 2 dropped: the grant
    // was for what was reported, so only partition 0 is renewed.
    const now = new Map([
      [0, reportedReplicas[0]],
      [1, hosted(1, "primary")],
    ]);
    const granted = [0, 1, 2, 3].map((partition) => ({ volume: "vol", partition, epoch: 5 }));
    const renewals = renewalsOf(granted, reported, (volume, partition) =>
      volume === "vol" ? now.get(partition) : undefined,
    );
    expect(renewals).toEqual([{ replica: reportedReplicas[0], epoch: 5 }]);
  });
});
