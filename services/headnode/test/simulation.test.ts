// The seeded simulations, as CI runs them. Any failing seed replays exactly: the
// single partition with `npm run simulate -- --seed N --replicas R`, the cluster with
// failover with `npm run simulate -- --failover --seed N`.

import { describe, expect, test } from "vitest";
import {
  type FailoverOptions,
  type FailoverResult,
  failoverDefaults,
  type Sabotage,
  simulateFailover,
} from "../src/simulation/failover.ts";
import { simulate } from "../src/simulation/simulation.ts";

const seedsPerShape = Number(process.env.BALLAST_SIMULATION_SEEDS ?? 200);
/**
 * Each test's bound: the longest takes under half a minute alone, but `npm test` runs
 * this file at the lowest priority beside the integration tier (vitest.config.ts), where
 * it may wait minutes for idle CPU; a liveness bound, not a speed goal.
 */
const testBoundMs = 900_000;

describe.each([3, 2] as const)("simulation with %i replicas", (replicas) => {
  test(
    `${seedsPerShape} seeds keep every invariant`,
    async () => {
      let acknowledged = 0;
      let reads = 0;
      let crashes = 0;
      let chunks = 0;
      for (let seed = 1; seed <= seedsPerShape; seed++) {
        const result = await simulate(seed, { replicas });
        const summary = result.violations.map((v) => `[${v.check}] ${v.message}`).join("\n");
        expect(
          result.violations,
          `seed ${seed} failed; replay: npm run simulate -- --seed ${seed} --replicas ${replicas}\n${summary}`,
        ).toEqual([]);
        acknowledged += result.stats.acknowledgedMutations;
        reads += result.stats.reads;
        crashes += result.stats.crashes;
        chunks += result.stats.chunks;
      }
      // The runs did real work: writes were acknowledged, reads checked, replicas crashed
      // and restarted, and data went through flushes to chunks.
      expect(acknowledged).toBeGreaterThan(seedsPerShape * 10);
      expect(reads).toBeGreaterThan(seedsPerShape * 5);
      expect(crashes).toBeGreaterThan(seedsPerShape);
      expect(chunks).toBeGreaterThan(seedsPerShape * 3);
    },
    testBoundMs,
  );
});

test("the same seed replays to the same result", async () => {
  const first = await simulate(7, { replicas: 3 });
  const second = await simulate(7, { replicas: 3 });
  expect(second).toEqual(first);
});

test(
  "the checkers catch a disk that loses acknowledged writes",
  async () => {
    let caught = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const result = await simulate(seed, { replicas: 2, diskLosesAcknowledgedWrites: true });
      if (result.violations.length > 0) caught++;
    }
    expect(caught).toBeGreaterThan(0);
  },
  testBoundMs,
);

// ---------------------------------------------------------------- failover

type Overrides = Partial<Omit<FailoverOptions, "seed">>;

// Per shape, seeds that find a known defect not yet fixed, kept out of CI until it is
// (none at present; list them with the diagnosis).
/** Client attempts held in a socket past their timeout (the ordering fence's case). */
const staleRequests = { staleRequestChance: 0.05 };

/**
 * Journals that fail are refused in the boot they failed in, as the head node does (the
 * failed marker: `failedMarker`, below); on in CI's shapes since session 24, which moved
 * their runs' draws (a crash now draws whether it reboots).
 */
const headNodeAsBuilt = { failedMarker: true };

const failoverShapes: [string, Overrides, number[]][] = [
  [
    "5 head nodes, partitions of 3 and 2 replicas",
    { nodes: 5, partitions: [3, 2], ...staleRequests, ...headNodeAsBuilt },
    [],
  ],
  [
    "4 head nodes, partitions of 2, 3 and 2 replicas",
    { nodes: 4, partitions: [2, 3, 2], loadTicks: 350, ...staleRequests, ...headNodeAsBuilt },
    [],
  ],
];

function summary(result: FailoverResult, overrides: Overrides): string {
  const replay = `npm run simulate -- --failover --seed ${result.seed}${
    overrides.sabotage === undefined ? "" : ` --sabotage ${overrides.sabotage}`
  } (with ${JSON.stringify(overrides)})`;
  return `seed ${result.seed} failed; replay: ${replay}\n${result.violations
    .map((violation) => `[${violation.check}] ${violation.message}`)
    .join("\n")}`;
}

describe.each(failoverShapes)("failover simulation: %s", (_name, overrides, knownDefects) => {
  test(
    `${seedsPerShape} seeds keep every invariant`,
    async () => {
      const totals = {
        acknowledgedMutations: 0,
        reads: 0,
        crashes: 0,
        diskLosses: 0,
        pauses: 0,
        promotions: 0,
        longDiskHangs: 0,
        stallFailovers: 0,
        clientPauses: 0,
        rebuilds: 0,
        recreates: 0,
        chunkReads: 0,
        chunksDropped: 0,
        snapshotsChecked: 0,
        configuresWaitingOnDisk: 0,
        configuresSuperseded: 0,
        sledsLate: 0,
        sledOutages: 0,
        staleRequests: 0,
        staleRefused: 0,
        replicasFailed: 0,
        opensRefusedFailedBoot: 0,
        reboots: 0,
      };
      for (let seed = 1; seed <= seedsPerShape; seed++) {
        if (knownDefects.includes(seed)) continue;
        const result = await simulateFailover(seed, overrides);
        expect(result.violations, summary(result, overrides)).toEqual([]);
        for (const key of Object.keys(totals) as (keyof typeof totals)[])
          totals[key] += result.stats[key];
      }
      // The runs did real work: writes acknowledged and reads checked across failovers,
      // primaries replaced, learners rebuilt from checkpoints, volumes re-created.
      expect(totals.acknowledgedMutations).toBeGreaterThan(seedsPerShape * 20);
      expect(totals.reads).toBeGreaterThan(seedsPerShape * 10);
      expect(totals.crashes).toBeGreaterThan(seedsPerShape);
      // Some crashes took the node's disk: it came back empty under its old id.
      expect(totals.diskLosses).toBeGreaterThan(seedsPerShape / 10);
      expect(totals.pauses).toBeGreaterThan(seedsPerShape / 2);
      expect(totals.promotions).toBeGreaterThan(seedsPerShape / 2);
      // Disks hung past the primary's stall bound, and primaries replaced for it.
      expect(totals.longDiskHangs).toBeGreaterThan(seedsPerShape / 10);
      expect(totals.stallFailovers).toBeGreaterThan(seedsPerShape / 40);
      // Clients paused with some of those hangs: only writes in flight reached the primary.
      expect(totals.clientPauses).toBeGreaterThan(seedsPerShape / 20);
      expect(totals.rebuilds).toBeGreaterThan(seedsPerShape);
      expect(totals.recreates).toBeGreaterThan(seedsPerShape / 10);
      // Space was reclaimed under all of it: chunks compacted and dropped.
      expect(totals.chunkReads).toBeGreaterThan(seedsPerShape);
      expect(totals.chunksDropped).toBeGreaterThan(seedsPerShape);
      // Snapshots were taken and dropped under all of it, and read back once settled.
      expect(totals.snapshotsChecked).toBeGreaterThan(seedsPerShape);
      // Configures waited on hung disks to open replicas (configuresWaitOnHungDisk), and
      // resends queued behind them were superseded (configure-queue.ts: one waits).
      expect(totals.configuresWaitingOnDisk).toBeGreaterThan(0);
      expect(totals.configuresSuperseded).toBeGreaterThan(0);
      // Volumes were created with one sled up, and sleds went down and came back.
      expect(totals.sledsLate).toBeGreaterThan(seedsPerShape / 10);
      expect(totals.sledOutages).toBeGreaterThan(seedsPerShape / 4);
      // Attempts were held in sockets past their clients' timeouts, and some arrived after
      // a later attempt of their client was taken: refused by the ordering fence.
      expect(totals.staleRequests).toBeGreaterThan(seedsPerShape);
      expect(totals.staleRefused).toBeGreaterThan(0);
      // Journals failed, and were refused in the boot they failed in until their
      // machines rebooted or the replicas were rebuilt from their peers.
      expect(totals.replicasFailed).toBeGreaterThan(seedsPerShape / 2);
      expect(totals.opensRefusedFailedBoot).toBeGreaterThan(seedsPerShape / 10);
      expect(totals.reboots).toBeGreaterThan(seedsPerShape / 2);
    },
    testBoundMs,
  );
});

test(
  "small fully live chunks merged eagerly keep every invariant under failover",
  async () => {
    // The defaults merge chunks of at most 2 KiB (an eighth of the simulation's chunks, the
    // head node's ratio), which few chunks here are; 8 KiB, four at a time, makes merges of
    // fully live chunks (and of those snapshots share) meet crashes, failovers and rebuilds.
    const seeds = Math.ceil(seedsPerShape / 4);
    const overrides: Overrides = {
      limits: {
        ...failoverDefaults.limits,
        compactionSmallChunkBytes: 8 * 1024,
        compactionSmallChunksMin: 4,
      },
    };
    let chunkReads = 0;
    let rebuilds = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await simulateFailover(seed, overrides);
      expect(result.violations, summary(result, {})).toEqual([]);
      chunkReads += result.stats.chunkReads;
      rebuilds += result.stats.rebuilds;
    }
    // About 22 compaction reads a seed with the defaults, 34 with these (seeds 1 to 50).
    expect(chunkReads).toBeGreaterThan(seeds * 28);
    expect(rebuilds).toBeGreaterThan(seeds);
  },
  testBoundMs,
);

// Re-replication (replicateChance): sleds' stores lost, sleds declared out, and every
// head node's own Replicator copying chunks short of copies, re-storing checkpoints and
// scrubbing, under every other fault. About a second a seed.
const replicating: Overrides = { replicateChance: 1, ...staleRequests };

test(
  "re-replication under failover keeps every copy list true and every chunk at full copies",
  async () => {
    const seeds = Math.ceil(seedsPerShape / 8);
    const totals = {
      sledLosses: 0,
      sledsBackEmpty: 0,
      copiesRecorded: 0,
      copiesRepaired: 0,
      checkpointCopiesRestored: 0,
      chunkReads: 0,
    };
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await simulateFailover(seed, replicating);
      expect(result.violations, summary(result, replicating)).toEqual([]);
      for (const key of Object.keys(totals) as (keyof typeof totals)[])
        totals[key] += result.stats[key];
    }
    // Stores were lost, new copy lists were committed, the scrub repaired copies on sleds
    // back empty, and compaction read chunks whole from the copies left (seeds 1 to 25:
    // 24 losses, 137 lists, 30 repairs, 514 reads).
    expect(totals.sledLosses).toBeGreaterThan(seeds / 2);
    expect(totals.copiesRecorded).toBeGreaterThan(seeds * 2);
    expect(totals.copiesRepaired).toBeGreaterThan(seeds / 2);
    expect(totals.chunkReads).toBeGreaterThan(seeds * 10);
    // Sleds came back empty before they were out, and lost checkpoint copies were stored
    // on them again.
    expect(totals.sledsBackEmpty).toBeGreaterThan(seeds / 4);
    expect(totals.checkpointCopiesRestored).toBeGreaterThan(seeds / 4);
  },
  testBoundMs,
);

// Partial reachability (review-reach): a head node cut from every sled while the sleds
// stay up for the other head nodes and the coordinator. Journals are bounded at 32 KiB
// then, and the load runs 1,200 ticks, so that a cut primary fills its journal and a cut
// outlasts the availability bound. Found with it: a checkpoint recorded while a follower
// held the release back (its match reset by a new epoch) kept a full journal full for
// good (seed 18 at these settings, before the tick's release). About 1.5 s a seed.
const sledCuts: Overrides = { sledCutRate: 0.005, loadTicks: 1200 };

test(
  "head nodes cut from the sleds alone keep every invariant, their primaries failed over",
  async () => {
    const seeds = Math.ceil(seedsPerShape / 10);
    let cuts = 0;
    let failovers = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await simulateFailover(seed, sledCuts);
      expect(result.violations, summary(result, sledCuts)).toEqual([]);
      cuts += result.stats.sledCuts;
      failovers += result.stats.flushStallFailovers;
    }
    // Seeds 1 to 10: 15 cuts, 8 primaries replaced for flushes that all failed.
    expect(cuts).toBeGreaterThan(seeds / 2);
    expect(failovers).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Evidence that the secondary reaches the sleds (session 30): with two faulty nodes, two
// may be cut from the sleds at once, the secondary's node hosting no primary that could
// report its own stall. A coordinator that promoted without evidence handed the partition
// to a node cut since before the primary's stall began (the sled-evidence check); the
// leader's book of stores (sled-reach.ts) and its probes keep it with the primary until a
// secondary shows it reaches the sleds. Seeds 2, 3 and 8 of 1 to 100 caught it; since a
// learner is sent the partition's newest checkpoint when the primary's own is older
// (seed 9761092), seed 3 is the first.
const doubleSledCuts: Overrides = { faultyNodesMax: 2, sledCutRate: 0.01, loadTicks: 1200 };

test(
  "a flush-stalled primary is failed over only to a secondary that shows it reaches the sleds",
  async () => {
    let failovers = 0;
    for (let seed = 1; seed <= 3; seed++) {
      const result = await simulateFailover(seed, doubleSledCuts);
      expect(result.violations, summary(result, doubleSledCuts)).toEqual([]);
      failovers += result.stats.flushStallFailovers;
    }
    expect(failovers).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that fails a flush-stalled primary over without evidence",
  async () => {
    const caught = await firstCaught(
      "promote-without-sled-evidence",
      ["sled-evidence"],
      doubleSledCuts,
      3,
    );
    expect(caught).toBe(3);
  },
  testBoundMs,
);

// Stand-ins (session 31): a primary cut from the sleds beside secondaries cut too had no
// secondary to give evidence, and with the replica count met no learner was added: the
// leader kept the primary for as long as the cuts overlapped, its writes waiting once its
// journal filled, though spares reached the sleds (review 30's known limit). Now a spare
// with evidence takes one learner beyond the count, which rebuilds, joins and is
// promoted. Long cuts, two at once, and no other fault, so that the availability check
// sees the overlap whole: the sabotage (no stand-ins) is caught on seed 7 of 1 to 7
// (also 9 and 13 of 1 to 30); the product passes 1 to 30 with 21 stand-ins.
const standInShape: Overrides = {
  faultyNodesMax: 2,
  sledCutRate: 0.01,
  sledCutTicks: [900, 1300],
  loadTicks: 1500,
  crashRate: 0,
  pauseRate: 0,
  diskHangRate: 0,
  journalFailRate: 0,
  netPartitionRate: 0,
  sledDownRate: 0,
  recreateChance: 0,
  clockStepRate: 0,
};

test(
  "a primary cut from the sleds beside secondaries cut too gets a stand-in on a spare that reaches them, and writes go on",
  async () => {
    let standIns = 0;
    for (let seed = 7; seed <= 9; seed++) {
      const result = await simulateFailover(seed, standInShape);
      expect(result.violations, summary(result, standInShape)).toEqual([]);
      standIns += result.stats.standIns;
    }
    expect(standIns).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that adds no stand-in for a primary whose secondaries are all cut",
  async () => {
    const caught = await firstCaught("no-stand-in", ["available"], standInShape, 7);
    expect(caught).toBe(7);
  },
  testBoundMs,
);

// The same on three nodes: a partition's one spare is often the primary the last
// flush-stall failover dropped, which it avoids for droppedNodeAvoidTicks. The
// coordinator of session 31 put no stand-in on such a spare, however healthy, and the
// partition waited for the cut to end: the integration test of a cut primary and
// secondary (journal-failure.test.ts) found it on real processes, run after failovers
// that had dropped the spare. The sabotage (that coordinator) is caught on seed 29, the
// first of 1 to 29; the product passes seed 29 with a stand-in on an avoided spare.
const standInThreeNodeShape: Overrides = { ...standInShape, nodes: 3, partitions: [2, 2] };

test(
  "a stand-in may go on a spare the partition avoids when no other reaches the sleds",
  async () => {
    const result = await simulateFailover(29, standInThreeNodeShape);
    expect(result.violations, summary(result, standInThreeNodeShape)).toEqual([]);
    expect(result.stats.standInsOnAvoided).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that puts no stand-in on a spare the partition avoids",
  async () => {
    const caught = await firstCaught(
      "stand-in-not-on-avoided",
      ["available"],
      standInThreeNodeShape,
      1,
      29,
    );
    expect(caught).toBe(29);
  },
  testBoundMs,
);

// Seeds 9720021 and 9720259 of a hunt with cuts that overlap among other faults: a
// primary and its healthy secondaries were all cut from the sleds, so no secondary could
// give evidence, and the leader kept the primary while writes waited for room. By design
// (none promoted could flush); the availability check now counts afresh then, as it
// does for two nodes' flush stalls.
const overlappingCutsShape: Overrides = {
  faultyNodesMax: 2,
  sledCutRate: 0.01,
  diskLossChance: 0.2,
  journalFailRate: 0.003,
  failedMarker: true,
  corruptChance: 0.05,
  oneWayCutRate: 0.002,
  lateLearnerConfigureChance: 0.1,
  staleRequestChance: 0.05,
  frozenClockChance: 0.2,
  replicateChance: 0.2,
};

test(
  "a primary whose healthy secondaries are all cut from the sleds too waits by design (seeds 9720021, 9720259)",
  async () => {
    for (const seed of [9720021, 9720259]) {
      const result = await simulateFailover(seed, overlappingCutsShape);
      expect(result.violations, summary(result, overlappingCutsShape)).toEqual([]);
      expect(result.stats.sledCuts).toBeGreaterThan(1);
    }
  },
  testBoundMs,
);

// One-way and pairwise cuts (review-reach): a head node and one other end (a head node,
// the coordinator, the clients) stop hearing each other one way or both, every other
// path working: answers lost while requests are taken, acks lost while notes arrive.
// Seeds 1 to 150 of each shape at this rate: no violation. About half a second a seed.
const oneWayCuts: Overrides = { oneWayCutRate: 0.05, ...staleRequests };

test(
  "one-way and pairwise cuts keep every invariant",
  async () => {
    const seeds = Math.ceil(seedsPerShape / 10);
    let cuts = 0;
    let pairs = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await simulateFailover(seed, oneWayCuts);
      expect(result.violations, summary(result, oneWayCuts)).toEqual([]);
      cuts += result.stats.oneWayCuts;
      pairs += result.stats.pairCuts;
    }
    expect(cuts).toBeGreaterThan(seeds);
    expect(pairs).toBeGreaterThan(seeds / 4);
  },
  testBoundMs,
);

// 13 of seeds 1 to 40: a secondary cut from the sleds stores no checkpoint, so its journal
// is never released; before review-reach R2's fix it took every note for as long as the
// cut lasted (the journal-bound check: past followerLogBytesFactor + 1 times logBytesMax).
test(
  "the checkers catch a follower whose journal grows without bound",
  async () => {
    const caught = await firstCaught("unbounded-follower-log", ["journal-bound"], sledCuts, 40);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// 6 of seeds 1 to 40 (the first 3): the cut must land on a primary early enough in the
// load for its journal to fill and the bound to pass before the load ends.
test(
  "the checkers catch a primary cut from the sleds that is never replaced",
  async () => {
    const caught = await firstCaught("ignore-flush-stall", ["available"], sledCuts, 10);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// 45 of seeds 1 to 100 (the first 2) without the stale requests; 0 of 300 unsabotaged.
test(
  "the checkers catch a copy list recorded before its copy is written",
  async () => {
    const caught = await firstCaught("copy-answered-early", ["copy-list"], replicating, 10);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// 51 of seeds 1 to 100 (the first 1): the others lost only copies that compaction
// replaced or drops freed before settling.
test(
  "the checkers catch re-replication runs with no replicator",
  async () => {
    const caught = await firstCaught("no-replicator", ["re-replication"], replicating, 10);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// Damage (corruptChance): replication messages whose note data had a bit flipped after
// its checksum was computed, or whose checksum field is wrong, whole-chunk reads that
// hand the core damaged bytes, and replicas' files a crash left damaged (refused).
// Before secondaries checked every note's checksum, and before they checked it ahead of
// comparing a note with the one they held (a damaged resend truncated acknowledged
// notes), 288 of seeds 1 to 300 at 0.05 failed (damaged flush and control records
// committed, acknowledged writes lost); none since, in either shape.
const corrupting: Overrides = { corruptChance: 0.05, ...staleRequests };

test(
  "damaged notes, chunk reads and files are refused, and the cluster heals",
  async () => {
    const seeds = Math.ceil(seedsPerShape / 8);
    const totals = {
      notesDamaged: 0,
      checksumsDamaged: 0,
      chunkReadsDamaged: 0,
      filesDamaged: 0,
      opensRefused: 0,
    };
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await simulateFailover(seed, corrupting);
      expect(result.violations, summary(result, corrupting)).toEqual([]);
      for (const key of Object.keys(totals) as (keyof typeof totals)[])
        totals[key] += result.stats[key];
    }
    // Seeds 1 to 25: 227 notes, 120 checksums and 17 chunk reads damaged, and 12
    // replicas' files, whose opens were refused 58 times before they were rebuilt.
    expect(totals.notesDamaged).toBeGreaterThan(seeds * 2);
    expect(totals.checksumsDamaged).toBeGreaterThan(seeds);
    expect(totals.chunkReadsDamaged).toBeGreaterThan(0);
    expect(totals.filesDamaged).toBeGreaterThan(seeds / 5);
    expect(totals.opensRefused).toBeGreaterThan(totals.filesDamaged);
  },
  testBoundMs,
);

// The volume's end on the head nodes (endChangeRate): partitions' served bytes lowered
// (to none, now and then) and raised again in new epochs while loaded, as resizes do,
// through crashes, pauses and failovers, and whole again to settle. At 0.1, no violation
// in seeds 1 to 240 of the first shape without stale requests, 1 to 100 with them, nor
// 1 to 100 of the second shape; with the replica core from before the end (it ignores
// `servedBytes`), seed 1 fails the `end` check at once.
const endChanging: Overrides = { endChangeRate: 0.1, ...staleRequests };

test(
  "with the volume's end changing under failover, nothing past an epoch's end is answered",
  async () => {
    const seeds = Math.ceil(seedsPerShape / 8);
    let endChanges = 0;
    let endRefused = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await simulateFailover(seed, endChanging);
      expect(result.violations, summary(result, endChanging)).toEqual([]);
      endChanges += result.stats.endChanges;
      endRefused += result.stats.endRefused;
    }
    // Seeds 1 to 25: 303 changes, 988 requests refused past the end.
    expect(endChanges).toBeGreaterThan(seeds * 4);
    expect(endRefused).toBeGreaterThan(seeds * 10);
  },
  testBoundMs,
);

// Seed 1 (its first change of the run).
test(
  "the checkers catch a coordinator that configures members without the volume's end",
  async () => {
    const caught = await firstCaught("configure-ignores-end", ["end"], endChanging, 10);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// Each of seeds 1 to 5 (agreement, a core that throws on a damaged record, metadata
// apart); 20 of 20 without the stale requests.
test(
  "the checkers catch damaged notes taken as sound (no note checksums checked)",
  async () => {
    const caught = await firstCaught(
      "unchecked-note-checksums",
      ["agreement", "damage", "read", "acknowledged-lost", "exception", "metadata"],
      corrupting,
      5,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// 18 of seeds 1 to 40 (the first 2); the old replicator, which never looked for the
// copies, 16 of them (the first 2).
test(
  "the checkers catch a checkpoint copy lost on a sled back empty before it was out",
  async () => {
    const caught = await firstCaught(
      "checkpoint-copies-unchecked",
      ["checkpoint-copies"],
      replicating,
      10,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// 16 of seeds 1 to 25 (the first at 1); 0 of 100 unsabotaged. A sled whose store was
// lost is back on a new data directory: the model leader asks every head node to audit
// it (the answer's `sledsToAudit`, as reports.ts) until each primary's report says it did.
test(
  "the checkers catch a sled back on a new disk that no primary is asked to audit",
  async () => {
    const caught = await firstCaught("sled-audit-unasked", ["sled-audits"], replicating, 10);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// 4 of seeds 1 to 300 at 0.25 (25, 171, 176, 236), all `settle`: a partition left with
// its one sound copy out of the record. Few, since the coordinator drops no voter beside
// a primary not yet confirmed in its epoch, which closes most of the window by itself.
// Since session 29 none of seeds 1 to 400 at 0.25 alone: a secondary back from a restart
// is not promoted until a configure opens it (`reopening`), reported or not. With two
// nodes faulty at once, 2 of seeds 1 to 300 (104, 272): a joiner whose refusal is never
// reported stays beside its idle primary, never dropped, and the partition short. Since
// a joiner that never matches is dropped (seed 9714544), none of those: 3 of seeds 301 to
// 1000 (377, 468, 823), a secondary whose refusal is never reported, kept beside its idle
// primary.
test(
  "the checkers catch a head node that reports no replica it could not open",
  async () => {
    // Seed 75, the first of seeds 1-200 to catch it at 0.25 alone once the model no
    // longer lost a disk beside a copy whose files it damaged (anotherCopyOfAll), no
    // longer does either (the `reopening` secondary is not promoted).
    const caught = await firstCaught(
      "silent-open-failure",
      ["settle", "availability"],
      { corruptChance: 0.25, faultyNodesMax: 2 },
      1,
      377,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// Beyond CI's seed range. The model lost a primary's disk two ticks after the primary
// reported its only secondary stalled (cut off, just healed): the coordinator, still
// counting the primary alive, dropped the secondary on that report, and with the disk
// gone nothing provably held every acknowledged write, so the partition stayed
// unavailable (rightly). A voter being dropped is no other copy (anotherCopyOfAll).
test("no disk is lost while its partition's only other voter is being dropped (seed 229)", async () => {
  const result = await simulateFailover(229, {
    nodes: 4,
    partitions: [2, 3, 2],
    loadTicks: 350,
    ...staleRequests,
  });
  expect(result.violations).toEqual([]);
});

// The model lost a disk while the partition's one other voter held files it had damaged
// at a crash (refused at every open): both copies gone, two faults at once, and the
// partition rightly never came back. A copy whose files do not open is no other copy.
test(
  "no disk is lost while its partition's only other copy has damaged files (seed 29)",
  async () => {
    const result = await simulateFailover(29, {
      nodes: 4,
      partitions: [2, 3, 2],
      staleRequestChance: 0.05,
      replicateChance: 0.5,
      corruptChance: 0.05,
      endChangeRate: 0.1,
    });
    expect(result.violations).toEqual([]);
  },
  testBoundMs,
);

// Seed 198 (--corrupt 0.25 --faulty-nodes 2): head-4, primary of a legacy volume's
// partition 1, crashed with its files damaged (head-5, its one secondary, sound), and
// head-5's journal, armed in the same tick, failed two ticks later. The coordinator,
// still counting head-4 alive, dropped the failed secondary as designed; head-4 came back
// unable to open its files, and no voter held the acknowledged writes: the partition
// rightly never came back. Two faults to one copy's data, not what the checkers test: a
// journal failure is now called off on a secondary whose primary's copy is lost
// (primaryCopyLost). A primary's journal failing beside a damaged secondary stays: the
// primary is kept and rebooted (seeds 5392, 5811 below).
test(
  "no journal fails on a partition's last copy beside one whose files are damaged (seed 198)",
  async () => {
    const shape: Overrides = { corruptChance: 0.25, faultyNodesMax: 2 };
    const result = await simulateFailover(198, shape);
    expect(result.violations, summary(result, shape)).toEqual([]);
    expect(result.stats.legacyVolumes).toBeGreaterThan(0);
    expect(result.stats.journalFailuresBesideLostPrimary).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Two faulty nodes at once, disks lost at every other crash, damage (not a CI shape).
const twoFaulty: Overrides = { faultyNodesMax: 2, diskLossChance: 0.5, corruptChance: 0.1 };

// The model lost a secondary's disk (seed 7) or damaged its files (seed 37) while its
// partition's one other voter, the primary, was cut off or paused: the coordinator
// counted the primary dead first and promoted the secondary, still counted alive, and
// the one copy left was out of the record (rightly unavailable: two faults at once). A
// voter with a fault of its own is no other copy (anotherCopyOfAll, anotherSoundCopy).
test(
  "no copy is lost while its partition's only other voter has a fault of its own (seeds 7, 37)",
  async () => {
    for (const seed of [7, 37]) {
      const result = await simulateFailover(seed, twoFaulty);
      expect(result.violations, `seed ${seed}`).toEqual([]);
    }
  },
  testBoundMs,
);

// Seed 9 kept a failed learner beside a primary stalled on its own hung disk with no
// secondary to promote: the coordinator answers `unavailable` and keeps the record as it
// is until the primary recovers (decisions.ts), then drops the learner. The failed-member
// bound restarts while the partition is unavailable, as it does while a lease is waited
// out; the coordinator that ignores failures is still caught (below).
test(
  "a failed learner beside a stalled primary with none to promote leaves once it recovers (seed 9)",
  async () => {
    const result = await simulateFailover(9, twoFaulty);
    expect(result.violations).toEqual([]);
    expect(result.stats.longDiskHangs).toBe(1);
    expect(result.stats.replicasFailed).toBeGreaterThan(0);
  },
  testBoundMs,
);

test("the same failover seed replays to the same result", async () => {
  const first = await simulateFailover(11);
  const second = await simulateFailover(11);
  expect(second).toEqual(first);
});

/**
 * Runs seeds from `from` (1 unless a shape reaches its case only rarely: see its test)
 * until one shows a violation of one of `checks`: each sabotage must be caught by the
 * checker it is meant for, within `seedsMax` seeds.
 */
async function firstCaught(
  sabotage: Sabotage,
  checks: string[],
  overrides: Overrides,
  seedsMax: number,
  from = 1,
): Promise<number | undefined> {
  for (let seed = from; seed < from + seedsMax; seed++) {
    const result = await simulateFailover(seed, { ...overrides, sabotage });
    if (result.violations.some((violation) => checks.includes(violation.check))) return seed;
  }
  return undefined;
}

test(
  "the checkers catch promotion on a stale caught-up report (defect 1)",
  async () => {
    const caught = await firstCaught(
      "promote-on-stale-report",
      // With the current core, divergent replicas often trip a core assertion first.
      ["acknowledged", "acknowledged-twice", "acknowledged-lost", "agreement", "exception"],
      { crashRate: 0.01 },
      60,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a disk that loses acknowledged writes",
  async () => {
    const caught = await firstCaught(
      "disk-loses-acknowledged-writes",
      ["acknowledged", "acknowledged-twice", "acknowledged-lost", "agreement"],
      {},
      60,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// Primaries cut off from the cluster but not from clients: exactly what leases are for.
const leaseFaults: Overrides = {
  netPartitionRate: 0.01,
  netPartitionTicksMax: 300,
  clients: 10,
  clientTimeoutTicks: 30,
  crashRate: 0,
  pauseRate: 0,
  diskHangRate: 0,
  longDiskHangChance: 0,
};

test(
  "the checkers catch a stale copy of a write that lands after its client's later acknowledged write (no ordering fence)",
  async () => {
    // 58 of seeds 1 to 100 without the fence, the first at 1; none of 500 with it (the
    // shapes above run with stale copies held).
    const caught = await firstCaught("no-ordering-fence", ["fence"], staleRequests, 10);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a primary that serves reads without a lease",
  async () => {
    const caught = await firstCaught("no-lease-check", ["read"], leaseFaults, 60);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a node lease that renews the primaries it excludes",
  async () => {
    // A deposed primary that reports again renews its old partition under its node lease.
    // The window is narrow (about 1 seed in 300); these runs keep the streams of the model
    // before journal failures (and legacy records), whose coordinator pushed configures
    // every round (and before sleds went down: their faults change what is flushed when).
    const pushEveryRound: Overrides = {
      legacyRecordChance: 0,
      journalFailRate: 0,
      idleJournalFailChance: 0,
      configureRefreshTicks: 0,
      sledsLateChance: 0,
      sledDownRate: 0,
    };
    const caught = await firstCaught(
      "node-lease-ignores-exclusions",
      ["read"],
      { ...leaseFaults, ...pushEveryRound },
      100,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "with leases, primaries cut off from the cluster serve no stale reads",
  async () => {
    for (let seed = 1; seed <= 40; seed++) {
      const result = await simulateFailover(seed, leaseFaults);
      expect(result.violations, summary(result, leaseFaults)).toEqual([]);
    }
  },
  testBoundMs,
);

// Every pause a frozen VM whose clocks stand still (kvmclock), the wall clock set right
// on resume; wall clocks also step alone, either way.
const frozenClocks: Overrides = { frozenClockChance: 1 };

test(
  "the checkers catch a primary frozen with its clocks held that trusts its monotonic clock alone",
  async () => {
    // The review's F1: woken, the primary's monotonic clock says its lease still runs, and
    // it serves a client still routed to it a read older than a write its successor
    // acknowledged. 2 of seeds 1 to 300 (17 and 38); this window holds both.
    const caught = await firstCaught("lease-ignores-wall-clock", ["read"], frozenClocks, 22, 17);
    expect(caught).toBeDefined();
    // With the wall clock checked too, the same run serves no stale read.
    const result = await simulateFailover(caught!, frozenClocks);
    expect(result.violations, summary(result, frozenClocks)).toEqual([]);
    expect(result.stats.frozenPauses).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "with both clocks checked, primaries frozen with their clocks held serve no stale reads",
  async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const result = await simulateFailover(seed, frozenClocks);
      expect(result.violations, summary(result, frozenClocks)).toEqual([]);
    }
  },
  testBoundMs,
);

test(
  "the checkers catch a head node back on an empty disk that is trusted as before (no disk ids)",
  async () => {
    // Without disk ids an empty primary configured again in its epoch hands out op numbers
    // again over committed ones, and an empty secondary may be promoted.
    const caught = await firstCaught(
      "ignore-disk-ids",
      ["acknowledged", "acknowledged-twice", "acknowledged-lost", "agreement", "read"],
      { diskLossChance: 0.3 },
      40,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a head node that opens a voter named no disk from an empty disk (records from before disk ids)",
  async () => {
    // Every volume placed by a coordinator from before disk ids, upgraded while an original
    // voter's disk is replaced half the time: opened empty, that voter hands out op numbers
    // again over committed ones, or is promoted empty. Few seeds show it: 4 of seeds 1 to
    // 60 before failed checkpoints were paced (9, 26, 41, 52), 2 since (41, 52). Those
    // runs drew the same faults up to their first failed checkpoint, whose retry (at once
    // before, after checkpointRetryTicks since) was the first draw that differed from the
    // shared generator; seeds 9 and 26 then drew other crashes, not a cause in the core.
    // The window holds both seeds found since, so one stream change need not empty it.
    const caught = await firstCaught(
      "open-legacy-voters",
      ["acknowledged", "acknowledged-twice", "acknowledged-lost", "agreement", "read"],
      { legacyRecordChance: 1 },
      12,
      41,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a partition left short of its replica count",
  async () => {
    const caught = await firstCaught("no-rebuild", ["settle"], {}, 20);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a restarted follower that never says hello (idle: no heartbeats)",
  async () => {
    // The quiet restart after settling: without its hello, a secondary restarted below
    // its commit point never learns it from an idle primary, and the cluster never settles.
    const caught = await firstCaught("no-follower-hello", ["settle"], {}, 10);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a replica that drops a chunk still referenced",
  async () => {
    const caught = await firstCaught("drop-referenced-chunk", ["space"], {}, 5);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that ignores failed replicas its nodes report",
  async () => {
    // Once settled, a secondary's journal fails on the snapshot's note: the coordinator that
    // passes decisions no `failed` members drops it only once a commit has stalled on it
    // (commitStallTicks), past the bound; with configures pushed every round instead of on
    // change and on the slow refresh, it would be reopened at once and never seen.
    const caught = await firstCaught("coordinator-ignores-failures", ["failed-member"], {}, 20);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a primary on a hung disk that is never replaced (no stall reports)",
  async () => {
    // Session 7's defect: a primary whose own journal hangs (neither failing nor
    // completing) reports no stall, so it is never failed over, and its partition's writes
    // wait as long as the disk does although a secondary could take over. Only the long
    // disk hangs outlast the stall bound; the availability check sees the writes wait
    // (15 of seeds 1 to 200, the first at 6; with no long hangs, none of 200). Since former
    // members are told they are out and close their replicas (review-leaks.md, H1), which
    // moved every run's draws: 8 of seeds 1 to 200, the first at 74.
    const caught = await firstCaught("ignore-primary-stall", ["available"], {}, 10, 70);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a primary whose reports leave out its own stall",
  async () => {
    // ed63a3d: a report skipped an entry that differed from the one the coordinator held
    // only in the primary's own `stalledMs`, so a primary whose disk hung with a write in
    // flight that its followers had acknowledged (nothing else in its entry changed) kept
    // its lease and was not failed over. Clients that go on writing or retrying hide it;
    // those that pause with a long hang (clientPauseChance) do not, and the stalled-primary
    // check sees the primary stay. The simulator's reports often go whole, which tells the
    // coordinator anyway (see clientPauseChance): 5 of seeds 1 to 200 (the first at 45);
    // with a long hang and a pause in every run, as here, 5 of seeds 1 to 60 (the first at
    // 12) until e0debba (releases at a tick: every run's draws moved), 4 of seeds 1 to 80
    // since (44, 45, 63, 78).
    const everyRun: Overrides = { longDiskHangChance: 1, clientPauseChance: 1 };
    const caught = await firstCaught(
      "report-ignores-own-stall",
      ["stalled-primary"],
      everyRun,
      10,
      40,
    );
    expect(caught).toBeDefined();
    // The report as it is: the same run replaces that primary for its stall.
    const result = await simulateFailover(caught!, everyRun);
    expect(result.violations, summary(result, everyRun)).toEqual([]);
    expect(result.stats.stallFailovers).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Disks slow but working (slowDiskRate): a node's disk makes one journal write durable
// every few ticks (up to just under the primary's stall bound) for a while. Nothing is
// lost, and a primary on such a disk never reports itself stalled (the `slow-disk`
// check): the coordinator would fail over a primary that makes progress, and again
// wherever the load went. Session 19: a release (or truncation) between two group
// commits made nothing more durable, so the primary's stall count ran on through it:
// at over half the bound per write, a primary on a slow disk said it stalled (seeds 163
// and 190 of 200; none of 200 since completed releases count as progress).
const slowDisks: Overrides = { slowDiskRate: 0.005 };

test(
  "with disks slow but working, seeds keep every invariant and no primary on one says it stalled",
  async () => {
    let slow = 0;
    for (const seed of [...Array.from({ length: 25 }, (_, index) => index + 1), 163, 190]) {
      const result = await simulateFailover(seed, slowDisks);
      expect(result.violations, summary(result, slowDisks)).toEqual([]);
      slow += result.stats.slowDisks;
    }
    expect(slow).toBeGreaterThan(10);
  },
  testBoundMs,
);

// Session 26, from a sweep with every fault kind on: a slow disk's second episode began on
// the tick its first ended, and the two read as one unchanged fault (the same "slow"),
// 484 ticks of it, longer than the availability bound. A primary on that disk, making
// progress but acknowledging no write within the clients' timeout, was flagged
// unavailable. Fault episodes are now named with their end, so the second is a new fault.
test(
  "seeds of a sweep with every fault kind on: abutting fault episodes, a disk lost beside a voter just restarted, two nodes cut from the sleds",
  async () => {
    const everyFault: Overrides = {
      lateLearnerConfigureChance: 0.1,
      staleRequestChance: 0.05,
      frozenClockChance: 0.2,
      replicateChance: 0.1,
      sledCutRate: 0.002,
      oneWayCutRate: 0.005,
      corruptChance: 0.01,
      slowDiskRate: 0.01,
      failedMarker: true,
      endChangeRate: 0.01,
    };
    const result = await simulateFailover(920106, everyFault);
    expect(result.violations, summary(result, everyFault)).toEqual([]);
    expect(result.stats.slowDisks).toBeGreaterThanOrEqual(2);

    // The same sweep: a primary's disk lost while its one other voter had just restarted,
    // still idle; the coordinator dropped that voter a few ticks later, and the partition
    // never came back to full strength. A copy counts only once its replica is configured.
    const lost = await simulateFailover(951937, everyFault);
    expect(lost.violations, summary(lost, everyFault)).toEqual([]);
    expect(lost.stats.crashes).toBeGreaterThanOrEqual(2);

    // The same sweep, two faulty nodes of six, both cut from the sleds at once: the
    // coordinator keeps flush-stalled primaries while two nodes stall (it reads that as
    // sleds failing everyone), which the availability check did not count as a reason
    // to wait (314 ticks). It now restarts its count while that lasts.
    const twoCut: Overrides = { ...everyFault, nodes: 6, partitions: [3, 3, 2], faultyNodesMax: 2 };
    const cut = await simulateFailover(931410, twoCut);
    expect(cut.violations, summary(cut, twoCut)).toEqual([]);
    expect(cut.stats.sledCuts).toBeGreaterThanOrEqual(2);
  },
  testBoundMs,
);

test(
  "the checkers catch a primary that reports slow writes as a stall",
  async () => {
    // Its stall the age of its oldest request, not the time its journal made no
    // progress: 4 of seeds 1 to 30, the first at 14.
    const caught = await firstCaught("stall-on-slow-writes", ["slow-disk"], slowDisks, 30);
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

// The failed marker (journal/failed-marker.ts, `failedMarker`): a journal that fails
// keeps its failed append readable (the page cache) until its machine reboots, and its
// head node refuses to open it in that boot; a crash reboots the machine half the time.
// The coordinator rebuilds such a replica from its peers, and a lone primary waits for a
// reboot (the settle phase reboots it, as an operator would). Until session 24 the
// simulator reopened a failed replica from its durable notes in the same boot, which the
// head node has refused since the marker. Journals fail ten times as often as by default
// here. Session 24: no violation in seeds 1 to 400 at 0.02 (once a replica refused for
// the boot counted as no copy where disk losses are drawn: seed 242), nor 1 to 500 of
// each CI shape, nor with whole disks failing, disk losses, re-replication or failing
// session takes beside it; a head node that reopens such a journal in its failed boot
// (`reopen-failed-journal`) recovers the failed append as if durable and leaves a hole
// behind it at its next write: 17 of seeds 1 to 40, the first at 2.
const failedMarker: Overrides = { failedMarker: true, journalFailRate: 0.02 };

test(
  "a journal that failed is not reopened in the boot it failed in, and the cluster heals",
  async () => {
    const seeds = Math.ceil(seedsPerShape / 8);
    const totals = { replicasFailed: 0, opensRefusedFailedBoot: 0, reboots: 0, rebootsToSettle: 0 };
    for (let seed = 1; seed <= seeds; seed++) {
      const result = await simulateFailover(seed, failedMarker);
      expect(result.violations, summary(result, failedMarker)).toEqual([]);
      for (const key of Object.keys(totals) as (keyof typeof totals)[])
        totals[key] += result.stats[key];
    }
    // Seeds 1 to 25: 83 replicas failed, 326 opens refused for the boot, 25 reboots,
    // 4 of them to bring back a lone primary.
    expect(totals.replicasFailed).toBeGreaterThan(seeds);
    expect(totals.opensRefusedFailedBoot).toBeGreaterThan(seeds);
    expect(totals.reboots).toBeGreaterThan(seeds / 5);
    expect(totals.rebootsToSettle).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a journal reopened in the boot it failed in",
  async () => {
    const caught = await firstCaught(
      "reopen-failed-journal",
      ["journal", "exception", "acknowledged", "acknowledged-lost", "agreement"],
      failedMarker,
      10,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

describe("the checkers catch a retire that waits for its handlers before it closes the replica", () => {
  // 3ae96e2: a head node retiring a replica waited for the handlers in flight (requests
  // the replica held) before closing it, off the tick schedule: a write waiting for
  // acknowledgements a newer epoch never sends was never answered, the retire hung, and
  // every later configure of the partition on that node queued behind it.
  const shapes: [string, Overrides, number, number][] = [
    // CI's shape: a configure of a new incarnation, or the drop of the deleted one,
    // reaches the old incarnation's primary while it holds writes; the new partition's
    // configure waits behind it (23 of seeds 1 to 200, the first at 2). Seen with the
    // coordinator before session 9, which kept a new primary whose configure waits: today's
    // fails it over once it has not confirmed its epoch for primaryUnconfirmedMs, which
    // routes around the hung retire at the cost of a failover and a rebuild, and none of
    // seeds 1 to 100 shows it then.
    [
      "5 head nodes, the volume re-created",
      { configuresWaitOnHungDisk: false, primaryUnconfirmedMs: Number.POSITIVE_INFINITY },
      1,
      5,
    ],
    // The chaos run's: three head nodes, no spare, so a primary failed over while cut
    // off from the cluster (clients still reach it: seed 176) or on a hung disk (331) is
    // re-added as a learner as soon as it is back, holding writes that wait for
    // acknowledgements of its old epoch; its rebuild never starts. Rare in this shape:
    // mostly the old primary hears of the newer epoch first (a follower's ack) and answers
    // those writes, or its node crashes later and the restart ends the hang. 3 of seeds 1
    // to 400 before failed checkpoints were paced (3, 176, 331), 2 since (176, 331): seed
    // 3's runs drew the same faults until a checkpoint store failed at tick 229, whose
    // retry (at once before, 20 ticks later since) was the first draw that differed from
    // the shared generator; its cut of head-1 (ticks 365 to 478) was never drawn after.
    // As many runs met a retire holding requests either way (14 and 16 of seeds 1 to 150).
    // Since e0debba and 6a5e9c8 (releases at a tick, flush stalls in reports) moved every
    // run's draws: seed 30, alone of 1 to 150. A former member told it is out closes its
    // replica (review-leaks.md, H1), its held writes answered as its core turns idle, so
    // this shape needs the deposed primary not to hear it (none of seeds 1 to 200 with
    // former members told): `tellFormerMembers` off, as the model was before. Since a
    // learner's silence outlasts epochs (session 29, seed 9502759), fresh checkpoints
    // come at other ticks: seed 73, alone of 1 to 150. Since a flush-stalled primary is
    // failed over only on evidence that the secondary reaches the sleds (session 30),
    // failovers come later: seed 433, the first of 1 to 433. Since a primary made idle by
    // a follower's ack keeps its read lease (session 31), reads succeed that failed: seed
    // 441, the first of 1 to 441 (then 470, 490, 529).
    [
      "3 head nodes, a woken primary re-added as a learner",
      { nodes: 3, partitions: [3, 2], recreateChance: 0, tellFormerMembers: false },
      441,
      5,
    ],
  ];

  test.each(shapes)(
    "%s",
    async (_name, overrides, from, seedsMax) => {
      const caught = await firstCaught(
        "close-after-handlers",
        ["settle", "available"],
        overrides,
        seedsMax,
        from,
      );
      expect(caught).toBeDefined();
      // The order retire.ts runs (the head node's) passes the same seeds.
      for (let seed = from; seed <= caught!; seed++) {
        const result = await simulateFailover(seed, overrides);
        expect(result.violations, summary(result, overrides)).toEqual([]);
      }
    },
    120_000,
  );
});

test(
  "the checkers catch a primary whose configure hangs that is never replaced (it reports nothing)",
  async () => {
    // Session 9's gap: with configures that wait on a hung disk (configuresWaitOnHungDisk),
    // a long hang on a new primary's node leaves it hosting nothing, so it reports neither
    // failure nor stall; the coordinator before primaryUnconfirmedSinceMs kept it while a
    // healthy secondary waited (4 of seeds 1 to 500: 49, 131, 200, 209; since e0debba
    // moved every run's draws, 49 alone of 1 to 400).
    const caught = await firstCaught("keep-unconfirmed-primary", ["available"], {}, 60);
    expect(caught).toBeDefined();
    // The coordinator as it is passes those seeds, failing such a primary over (209 no
    // longer meets one).
    for (const seed of [49, 131, 200]) {
      const result = await simulateFailover(seed);
      expect(result.violations, summary(result, {})).toEqual([]);
      expect(result.stats.unconfirmedFailovers).toBeGreaterThan(0);
    }
  },
  testBoundMs,
);

// A coordinator leader frozen inside a learner's checkpoint read wakes after the node
// was made a voter and restarted (review-retries.md item 3): its late configure reaches
// the node before anything else. Seeds 1 to 100 at chance 0.5: the sabotage is caught in
// 27 of 60 (the first at seed 1, by agreement); with the refusal, none of 100 fail.
const lateConfigures: Overrides = { lateLearnerConfigureChance: 0.5 };

test(
  "with late learner configures, restarted voters refuse them and every check holds",
  async () => {
    let refused = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const result = await simulateFailover(seed, lateConfigures);
      expect(result.violations, summary(result, lateConfigures)).toEqual([]);
      refused += result.stats.lateConfiguresRefused;
    }
    expect(refused).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a head node that rebuilds a restarted voter on a late learner configure",
  async () => {
    // Since e0debba (releases at a tick) moved every run's draws, the sabotage still
    // breaks 12 of seeds 1 to 30, but mostly as a voter left empty that the settle check
    // sees; by lost or diverging writes, seeds 31 and 96 of 31 to 120. Since former members
    // are told they are out (review-leaks.md, H1: every run's draws moved), seed 96 alone
    // of 1 to 150. Since primaries report learners they have not heard from (`unheard`,
    // session 29: the reports' draws moved), seeds 31, 69, 116 and 118 of 1 to 150.
    const caught = await firstCaught(
      "configure-ignores-stored-epoch",
      ["agreement", "acknowledged", "acknowledged-twice", "acknowledged-lost", "read"],
      lateConfigures,
      5,
      67,
    );
    expect(caught).toBeDefined();
  },
  testBoundMs,
);

test(
  "the checkers catch a head node that closes a replica named out without keeping the out epoch",
  async () => {
    // A frozen leader's voter configure of an older epoch (lateVoterConfigureChance, on
    // by default) reaches a node that closed the replica out, at once or as it restarts:
    // with the out epoch kept nowhere, it opens the replica a voter of that epoch. Its
    // members have moved on, so it commits nothing and no data check sees it; the
    // `epoch-fence` check does, in 8 of seeds 1 to 20, the first at 1.
    const caught = await firstCaught("close-out-forgets-epoch", ["epoch-fence"], {}, 5);
    expect(caught).toBeDefined();
    // The head node as it is passes the same seeds, refusing the late copies.
    for (let seed = 1; seed <= caught!; seed++) {
      const result = await simulateFailover(seed);
      expect(result.violations, summary(result, {})).toEqual([]);
    }
  },
  testBoundMs,
);

// Session 28: a voter removed to be rebuilt as a learner whose checkpoint fetch failed
// kept nothing on its disk, and a delayed configure of an older epoch naming it a voter
// (a leader frozen past its tenure) opened it empty, in the epoch and session an earlier
// life of it had used: the `session` check, in 2 of seeds 9120000 to 9123999 with these
// options (9120891, 9122623). The head node now keeps the learner's epoch in the
// partition's directory before the rebuild discards anything (partition-host.ts
// `keepEpoch`); the sabotage is the head node before.
const learnerEpochShape: Overrides = {
  lateLearnerConfigureChance: 0.1,
  staleRequestChance: 0.05,
  frozenClockChance: 0.2,
  replicateChance: 0.2,
  sledCutRate: 0.002,
  oneWayCutRate: 0.002,
};
const learnerEpochSeeds = [9120891, 9122623];

test(
  "a learner's epoch is kept through a failed rebuild: a delayed voter configure of an older epoch opens nothing",
  async () => {
    for (const seed of learnerEpochSeeds) {
      const result = await simulateFailover(seed, learnerEpochShape);
      expect(result.violations, summary(result, learnerEpochShape)).toEqual([]);
      expect(result.stats.lateVoterConfiguresDelivered).toBeGreaterThan(0);
    }
  },
  testBoundMs,
);

test(
  "the checkers catch a rebuild that forgets the learner's epoch",
  async () => {
    for (const seed of learnerEpochSeeds) {
      const caught = await firstCaught(
        "rebuild-forgets-epoch",
        ["session"],
        learnerEpochShape,
        1,
        seed,
      );
      expect(caught).toBe(seed);
    }
  },
  testBoundMs,
);

// Session 29, found by the same hunt as the learner's epoch above (1 of 4,000 seeds
// 9120000 to 9123999): a primary cut from the sleds, alone but for a learner. The
// coordinator counted it out for its flush stall, found no secondary to promote and
// stopped the round at "unavailable", so the learner caught up but never joined and the
// partition waited out the cut with nothing to fail over to.
const cutLearnerSeed = 9123815;

test(
  "a cut primary's learner is still promoted, and the cut primary is then failed over to it",
  async () => {
    const result = await simulateFailover(cutLearnerSeed, learnerEpochShape);
    expect(result.violations, summary(result, learnerEpochShape)).toEqual([]);
    expect(result.stats.flushStallFailovers).toBeGreaterThan(0);
    expect(result.stats.promotions).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that stops at a cut primary with no secondary",
  async () => {
    const caught = await firstCaught(
      "cut-primary-blocks-rebuild",
      ["available"],
      learnerEpochShape,
      1,
      cutLearnerSeed,
    );
    expect(caught).toBe(cutLearnerSeed);
  },
  testBoundMs,
);

// Seed 9126046 with the same options: primary head-4 was cut from the sleds (ticks 104
// to 792) once its journal was held at logBytesMax by flushed notes awaiting a checkpoint.
// Writes waited for room, so no chunk write was tried and none failed; only its
// checkpoint stores did, which counted for no flush stall. It was kept as primary while
// its secondary could take over: the `available` check, at tick 418. Failed checkpoint
// stores now count (replica.ts onCheckpointFailed), and the partition fails over.
test(
  "a primary cut from the sleds with its journal full of flushed notes is failed over (seed 9126046)",
  async () => {
    // 9124511, from a later hunt (1 of 3,000 seeds 9123000 to 9125999), is the same.
    for (const seed of [9126046, 9124511]) {
      const result = await simulateFailover(seed, learnerEpochShape);
      expect(result.violations, summary(result, learnerEpochShape)).toEqual([]);
      expect(result.stats.sledCuts).toBeGreaterThan(0);
      expect(result.stats.flushStallFailovers).toBeGreaterThan(0);
    }
  },
  testBoundMs,
);

test(
  "the checkers catch a primary whose failed checkpoint stores never count as a flush stall",
  async () => {
    const caught = await firstCaught(
      "checkpoint-failures-not-stalls",
      ["available"],
      learnerEpochShape,
      1,
      9126046,
    );
    expect(caught).toBe(9126046);
  },
  testBoundMs,
);

test(
  "the checkers catch a member that lacks a live sled and is not configured again",
  async () => {
    // 6523831: the configurer pushed a member's configuration again only when its epoch
    // changed or at the 5-minute refresh, so a volume created while one sled was up could
    // flush nothing (a chunk needs two copies) until then. The log in the simulation never
    // fills (logBytesMax) and faults change too often for the availability check to see
    // writes wait, so the settled check sees it: a member told of too few of the sleds up
    // (11 of seeds 1 to 200, the first at 4; the others had a new epoch meanwhile).
    const caught = await firstCaught("configure-ignores-sleds", ["sleds"], {}, 10);
    expect(caught).toBeDefined();
    // The configurer as it is passes the same seeds.
    for (let seed = 1; seed <= caught!; seed++) {
      const result = await simulateFailover(seed);
      expect(result.violations, summary(result, {})).toEqual([]);
    }
  },
  testBoundMs,
);

describe("the checkers catch a failed replica given a session it or another life had (session check)", () => {
  // Taking a failed replica's session is a durable step that can fail and takes time
  // (sessionFailRate, sessionWriteTicksMax). Both defects below were found by unit tests
  // first, in a simulator whose sessions came from a counter that could not fail.
  const shapes: [string, Sabotage, Overrides, number][] = [
    // c6bd9ac: the session taken after the failed replica was closed. A take that fails
    // leaves it unhosted, and the configure sent again opens it in the node's session,
    // its failed life's, in the same epoch. Journals fail often here and every take
    // fails while loaded, so that failed primaries are configured again in their epoch
    // (6 of seeds 1 to 30, the first at 3; since e0debba moved every run's draws, the
    // first at 11, then 17 and 18). What it breaks shows too: with journalFailRate 0.02,
    // seed 22 also commits two different notes at one op (agreement).
    [
      "the session taken after the close",
      "session-after-close",
      { journalFailRate: 0.05, sessionFailRate: 1, crashRate: 0.001 },
      20,
    ],
    // 8608891: the session file read and written with no lock. Two takes at once read
    // the same number. Three head nodes each hosting every partition, and journal
    // failures of whole disks, so that one node reopens several partitions at once
    // (13 of seeds 1 to 30, the first at 2).
    [
      "the session file read and written unlocked",
      "session-unlocked",
      { nodes: 3, partitions: [3, 3, 3], journalFailRate: 0.02, diskJournalFailChance: 1 },
      10,
    ],
  ];

  test.each(shapes)(
    "%s",
    async (_name, sabotage, overrides, seedsMax) => {
      const caught = await firstCaught(sabotage, ["session"], overrides, seedsMax);
      expect(caught).toBeDefined();
      // The head node's order and lock pass the same seeds, with sessions taken.
      let takes = 0;
      for (let seed = 1; seed <= caught!; seed++) {
        const result = await simulateFailover(seed, overrides);
        expect(result.violations, summary(result, overrides)).toEqual([]);
        takes += result.stats.sessionTakes;
      }
      expect(takes).toBeGreaterThan(0);
    },
    120_000,
  );
});

// Session 30, found by a hunt with every fault kind on and two nodes faulty at once (2 of
// 1,000 seeds 9201000 to 9201999, with the options below). Seed 9201217: the primary's
// journal failed (the failed marker: refused until a reboot) while its one secondary was
// down; the secondary came back on damaged files and, alive by its heartbeats, was
// promoted before any configure had tried them. The failed primary, which held every
// acknowledged write, left the record, and the partition was never whole again. Seed
// 9201895: the same promotion of a secondary back on damaged files, over a primary just
// restarted whole; the coordinator had heard the secondary refuse its files, but a
// resize's new epoch made that refusal one of an older epoch. A secondary whose node
// restarted since it last acknowledged (`reopening`) is now promoted only once a
// configure has opened it.
const reopeningShape: Overrides = {
  faultyNodesMax: 2,
  diskLossChance: 0.2,
  lateVoterConfigureChance: 0.1,
  oneWayCutRate: 0.001,
  corruptChance: 0.05,
  slowDiskRate: 0.002,
  failedMarker: true,
  endChangeRate: 0.01,
};
const reopeningSeeds = [9201217, 9201895];

test(
  "a restarted secondary is promoted only once a configure has opened its files (seeds 9201217, 9201895)",
  async () => {
    for (const seed of reopeningSeeds) {
      const result = await simulateFailover(seed, reopeningShape);
      expect(result.violations, summary(result, reopeningShape)).toEqual([]);
      expect(result.stats.filesDamaged).toBeGreaterThan(0);
      expect(result.stats.opensRefused).toBeGreaterThan(0);
    }
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that promotes a secondary not yet reopened since its restart",
  async () => {
    for (const seed of reopeningSeeds) {
      const caught = await firstCaught(
        "promote-reopening-secondary",
        ["settle"],
        reopeningShape,
        1,
        seed,
      );
      expect(caught).toBe(seed);
    }
  },
  testBoundMs,
);

// The same hunt's sweep of every fault kind (seeds 5000 to 5499 of the shape below) had
// two more (5202, 5392) that the coordinator handled rightly: a primary whose journal
// failed in its boot, beside its one secondary back on damaged files, was kept with the
// record waiting (`unavailable`: nobody to promote). The settle phase rebooted only a
// failed primary with no secondary at all, so it waited for good; it now reboots one
// beside secondaries whose files are refused, as an operator would.
const everyFault: Overrides = {
  faultyNodesMax: 2,
  diskLossChance: 0.5,
  corruptChance: 0.1,
  failedMarker: true,
  journalFailRate: 0.01,
  lateLearnerConfigureChance: 0.1,
  staleRequestChance: 0.05,
  sledCutRate: 0.002,
  oneWayCutRate: 0.002,
  endChangeRate: 0.01,
  slowDiskRate: 0.002,
};

// Since failovers of flush-stalled primaries wait for evidence (session 30), seed 5202
// runs otherwise; 5392 and 5811 (of 5000 to 5999) meet the case now, counted apart from
// the settle phase's other reboots (`rebootsBesideRefused`).
test(
  "a failed primary beside a secondary whose files are refused is rebooted while settling (seeds 5392, 5811)",
  async () => {
    for (const seed of [5392, 5811]) {
      const result = await simulateFailover(seed, everyFault);
      expect(result.violations, summary(result, everyFault)).toEqual([]);
      expect(result.stats.rebootsBesideRefused).toBeGreaterThan(0);
    }
  },
  testBoundMs,
);

// Found by a hunt of session 29 (seeds 9502600 and up, with the options below). Seed
// 9502759: both copies of the recorded checkpoint of a primary left alone were damaged,
// and the primary was cut from the sleds for a while. No learner could start; the
// coordinator dropped each after learnerCatchUpMs and added another, two learners
// staggered, so the epoch changed every half catch-up time. Each configure started every
// learner's silence count again (replica.ts `silentSince`), so the primary never found
// one silent for learnerSilentTicks, never stored another checkpoint once the cut was
// over, and its learners were replaced for good (144 epochs). A learner not heard from
// now keeps its count across epochs.
const silentLearnerShape: Overrides = {
  faultyNodesMax: 2,
  diskLossChance: 0.2,
  lateLearnerConfigureChance: 0.05,
  lateVoterConfigureChance: 0.05,
  staleRequestChance: 0.05,
  frozenClockChance: 0.2,
  replicateChance: 0.2,
  sledCutRate: 0.002,
  oneWayCutRate: 0.002,
  corruptChance: 0.05,
  slowDiskRate: 0.002,
  journalFailRate: 0.003,
  failedMarker: true,
  endChangeRate: 0.01,
};

test(
  "a learner silent across epochs gets its primary to store a fresh checkpoint (seed 9502759)",
  async () => {
    const result = await simulateFailover(9502759, silentLearnerShape);
    expect(result.violations, summary(result, silentLearnerShape)).toEqual([]);
    expect(result.stats.sledCuts).toBeGreaterThan(0);
    expect(result.stats.epochs).toBeLessThan(100);
  },
  testBoundMs,
);

// Seeds 9600248 and 9602764 (a hunt on three head nodes with no spare): a volume
// deleted and re-created (`recreates`), so partition 0 began again empty, commit point
// 0. A learner whose node never opened its replica (in 9600248 its disk hung with the
// configure queued behind it; in 9602764 the learner configure never reached it) was
// reported by the primary at op 0, which matched that commit point: it joined, then
// became a secondary hosting nothing, its node refusing every voter configure
// (`no-state`). In 9600248 the record stayed short of a copy with no write to stall on
// it; in 9602764 the primary paused and that secondary was promoted, and the partition
// never served again. A primary now reports a learner it has not heard from in its
// epoch as `unheard`, and the coordinator counts no such learner caught up.
const unheardShape: Overrides = {
  nodes: 3,
  partitions: [3, 3, 2],
  lateVoterConfigureChance: 0.05,
  staleRequestChance: 0.05,
  frozenClockChance: 0.2,
  sledCutRate: 0.002,
  corruptChance: 0.03,
  journalFailRate: 0.003,
  failedMarker: true,
};
const unheardSeeds = [9600248, 9602764];

test(
  "an unheard learner is never counted caught up at an empty partition's commit point 0 (seeds 9600248, 9602764)",
  async () => {
    for (const seed of unheardSeeds) {
      const result = await simulateFailover(seed, unheardShape);
      expect(result.violations, summary(result, unheardShape)).toEqual([]);
      expect(result.stats.recreates).toBeGreaterThan(0);
    }
  },
  testBoundMs,
);

test(
  "a head node whose reports do not say which learners are unheard: the empty voter it joins is not promoted (seed 9602764)",
  async () => {
    // 9602764 only: with a silent learner's count kept across epochs (seed 9502759's
    // fix, merged after), 9600248's draws moved and its sabotaged run settles; none of
    // 9600000 to 9600399 is caught then. Since seed 9781027's fix the settle check no
    // longer catches this sabotage at 9602764 either (nor in 9600000 to 9600399 or
    // 9602765 to 9603964): the voter it joined hosts nothing and has answered no
    // configure, so the coordinator does not promote it when the primary pauses
    // (`unproven`), and the partition settles once the primary is back. The two defences overlap; the head node's mark
    // is tested on its own in primary-report.test.ts.
    const shape: Overrides = { ...unheardShape, sabotage: "promote-unheard-learner" };
    const result = await simulateFailover(9602764, shape);
    expect(result.violations, summary(result, shape)).toEqual([]);
    expect(result.stats.unheardSecondariesHeld).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9610932 (the same shape): a volume re-created late in the load, as a legacy one
// from before disk ids, had its coordinator upgrade drawn at tick 511, after the 500
// loaded ticks. The upgrade replaced head-3's disk and crashed it to come back under its
// old id, but crashed nodes were restarted only by the fault injection of loaded ticks:
// head-3 stayed down for good, and every 3-replica partition settled at two members with
// no live node to rebuild on. A simulator bug: a node the upgrade takes down once faults
// are off is now restarted at its restart tick while settling.
// Since failovers of flush-stalled primaries wait for evidence (session 30), seed 9610932
// runs otherwise, and the case is rare in this shape; a shorter load of re-created legacy
// volumes meets it often (seeds 1, 23 and 37 of the shape below; since stand-ins and the
// model's disk-loss rule of seed 9741540 (session 31), 1, 37, 42 and 45 of 1 to 60;
// `upgradeCrashesSettling` counts the nodes the upgrade takes down once the load is over).
const lateUpgradeShape: Overrides = {
  ...unheardShape,
  loadTicks: 200,
  recreateChance: 1,
  legacyRecordChance: 1,
  diskLossChance: 0.5,
};

test(
  "a node whose disk the coordinator upgrade replaces after the load is restarted (seed 9610932)",
  async () => {
    for (const seed of [1, 37, 42]) {
      const result = await simulateFailover(seed, lateUpgradeShape);
      expect(result.violations, summary(result, lateUpgradeShape)).toEqual([]);
      expect(result.stats.upgradeCrashesSettling).toBeGreaterThan(0);
    }
  },
  testBoundMs,
);

// Seed 9510057 (the options of silentLearnerShape): head-4's replica of 1-sim/1 failed in
// epoch 3 and, the failed marker refusing its reopen in that boot, stayed closed with its
// files kept; the re-created volume's learner of partition 1 then took that partition's
// place in the simulated node, which forgot the old incarnation's files (epochs, failed
// marker). A frozen leader's epoch-3 voter configure of 1-sim, delivered late, opened it
// empty in session 1 again. A head node keeps each incarnation's directory apart and
// finds them there (refused by the marker); the simulated node now keeps such a
// displaced replica too.
test(
  "a replica displaced by another incarnation's keeps its files for a late configure (seed 9510057)",
  async () => {
    const result = await simulateFailover(9510057, silentLearnerShape);
    expect(result.violations, summary(result, silentLearnerShape)).toEqual([]);
    expect(result.stats.recreates).toBeGreaterThan(0);
    expect(result.stats.opensRefusedFailedBoot).toBeGreaterThan(1);
  },
  testBoundMs,
);

// Seed 9712321 (silentLearnerShape on three head nodes, as unheardShape's): the volume
// was re-created as a legacy one from before disk ids while head-2's disk hung, so its
// configures of partition 2 (a secondary) waited on the disk and it never answered one.
// After the coordinator upgrade, head-1's journal failed, and head-2, alive by its
// heartbeats, was promoted; once its disk answered it refused the epoch for holding
// nothing (`no-replica`), and with head-1, the copy that could reopen, out of the record
// the partition never served again. A secondary the record has no disk for is now
// promoted only once it has answered the record's epoch (`unproven`): the failed primary
// is reopened in place meanwhile, and head-2, refused, is dropped and rebuilt.
const unprovenShape: Overrides = {
  ...silentLearnerShape,
  nodes: 3,
  partitions: [3, 3, 2],
  lateLearnerConfigureChance: 0.1,
};

test(
  "a secondary placed before disk ids is promoted only once it has answered the record's epoch (seed 9712321)",
  async () => {
    const result = await simulateFailover(9712321, unprovenShape);
    expect(result.violations, summary(result, unprovenShape)).toEqual([]);
    expect(result.stats.legacyVolumes).toBeGreaterThan(0);
    expect(result.stats.longDiskHangs).toBeGreaterThan(0);
    expect(result.stats.noReplicaRefusals).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that promotes a secondary placed before disk ids before it has answered",
  async () => {
    const caught = await firstCaught(
      "promote-unproven-secondary",
      ["settle"],
      unprovenShape,
      1,
      9712321,
    );
    expect(caught).toBe(9712321);
  },
  testBoundMs,
);

// Seed 9713115 (three head nodes, every fault kind): head-3, primary of the re-created
// volume's partition 0, crashed and came back on damaged files; its open refused, the
// replica stayed closed. A frozen leader's learner configure of the deleted incarnation,
// held for the node's start, then rebuilt that incarnation's replica in the partition's
// place, displacing the new one's files. The new incarnation's primary configure that
// followed removed the old replica and, not looking among the displaced, opened an empty
// primary: it gave out op numbers from 1 again, and writes acknowledged at those ops
// disagreed with the ones committed before. A head node reads the incarnation's own
// directory and is refused by the damage; the simulated node now opens the displaced
// files too. A simulator modelling bug, not a head-node defect. Seed 9713440 of the same
// hunt is the same bug with the old incarnation's learner still open when the new one's
// configure came: an empty primary beside a secondary holding 27 committed ops, and the
// partition never settled (found again by a helper on its own; the fix above covers it).
// The hunt's flags, as the seed 9712321 above.
const displacedShape = unprovenShape;

test(
  "a voter displaced by a deleted incarnation's late learner opens from its own files (seeds 9713115, 9713440)",
  async () => {
    // Since a learner of a primary with no checkpoint gets the partition's newest (seed
    // 9760592, session 31), seed 9713115 runs otherwise and opens no displaced replica;
    // 9713440 still does (alone of 9713000 to 9713999), so the case is met by one of them.
    let displacedOpened = 0;
    for (const seed of [9713115, 9713440]) {
      const result = await simulateFailover(seed, displacedShape);
      expect(result.violations, summary(result, displacedShape)).toEqual([]);
      expect(result.stats.recreates).toBeGreaterThan(0);
      expect(result.stats.lateConfiguresDelivered).toBeGreaterThan(0);
      displacedOpened += result.stats.displacedOpened;
    }
    expect(displacedOpened).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9714544 (displacedShape): head-1, a learner of partition 2 (two replicas), was
// reported matched through op 83 and joined in epoch 12. Its node restarted just then, and
// a frozen leader's late learner configure of epoch 11, delivered as it started, rebuilt
// the replica afresh (a restarted learner is not kept); every copy of the checkpoint it
// fetched was damaged, so it hosted nothing and refused each configure naming it a voter
// (`no-state`). With no write to stall on it, the joiner stayed for good, the record a
// copy short with no learner added. A joiner that has not matched the commit point within
// learnerCatchUpMsMax of joining is now dropped, and a learner added afresh.
test(
  "a joiner that never matches in its joining epoch is dropped, not kept for good (seed 9714544)",
  async () => {
    const result = await simulateFailover(9714544, displacedShape);
    expect(result.violations, summary(result, displacedShape)).toEqual([]);
    expect(result.stats.lateConfiguresDelivered).toBeGreaterThan(0);
    expect(result.stats.reboots + result.stats.crashes).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that keeps a joiner that never matches",
  async () => {
    const caught = await firstCaught("keep-silent-joiner", ["settle"], displacedShape, 1, 9714544);
    expect(caught).toBe(9714544);
  },
  testBoundMs,
);

// Seed 9713028 (displacedShape): head-1, primary of every partition of a volume placed
// by the coordinator from before disk ids, had its disk hung from tick 25 (a long hang).
// Its stall of partition 0 reached the bound at tick 84, its report said so at 88, and the
// coordinator waited for its lease (to tick 121). The coordinator upgrade came at tick 120:
// the new tenure had not yet heard head-2 and head-3 answer (`unproven`), decided the
// partition `unavailable`, so head-1's next report, at 124, was granted a fresh lease, and
// the failover waited that out: promoted at 160, 76 ticks after 84 (bound 73). A simulator
// bound error, not a coordinator defect: a real leader's new tenure waits a lease from its
// start whatever it grants (leases.ts `leaderSinceMs`), so the upgrade now restarts the
// stalled-primary count, as a fault does (40 ticks after it here). Of seeds 9713000 to
// 9713099, this is the one run with an upgrade while a primary's stall is counted.
test(
  "a coordinator upgrade restarts the stalled-primary count, as a new tenure waits a lease anew (seed 9713028)",
  async () => {
    const result = await simulateFailover(9713028, displacedShape);
    expect(result.violations, summary(result, displacedShape)).toEqual([]);
    expect(result.stats.upgradesDuringStalls).toBeGreaterThan(0);
    expect(result.stats.stallFailovers).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9740001 (the default shape): a learner's ack of epoch 5 reached head-2, partition
// 0's primary in epoch 4, before its configure of epoch 5 did, and made it idle; that
// configure kept it primary but dropped its read lease, so reads of a partition whose
// primary never changed failed until the next grant (found first in CI, the integration
// test failover-faults' kill -9 run; the lease-kept check then found it in 20 of 60 seeds
// from 9740000). A primary named primary by the configuration it held keeps its lease.
test(
  "a primary made idle by a follower's ack of the new epoch keeps its read lease (seed 9740001)",
  async () => {
    const result = await simulateFailover(9740001, {});
    expect(result.violations, summary(result, {})).toEqual([]);
    expect(result.stats.leasesKeptThroughIdle).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9741540 (displacedShape): head-1, primary of partitions 0 and 1, had its disk
// hung until tick 417 and reported a 9.2 s stall of its own journal. At tick 420 the
// model crashed head-2, their one other voter, taking its disk: it counted head-1 as
// another copy, its hang over. The coordinator, on the stall report it still held,
// promoted head-2 (still counted alive) that very tick and dropped head-1; head-2 came
// back on an empty disk, and with no voter of the record holding the acknowledged
// writes both partitions stayed `unavailable` for good, as they should: two faults at
// once. A simulator modelling bug, not a coordinator defect: a primary the coordinator
// fails over on its own report (stalled, flush-stalled or failed) no longer counts as
// another copy when a disk is lost, as a follower being dropped does not (seed 229).
test(
  "a disk is not lost beside a primary the coordinator fails over on its stall report (seed 649)",
  async () => {
    // Since a learner gets the incarnation's newest checkpoint when the primary's own is
    // older (seed 9761092), seed 9741540 runs otherwise and no longer meets the case; with
    // disk losses four times as likely, seed 649 (the first of 1 to 649) does.
    const lossy: Overrides = { ...displacedShape, diskLossChance: 0.8 };
    const met = await simulateFailover(649, lossy);
    expect(met.violations, summary(met, lossy)).toEqual([]);
    expect(met.stats.disksKeptBesideFailingPrimary).toBeGreaterThan(0);
    expect(met.stats.stallFailovers).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "seed 9741540 (a disk lost beside a primary failed over on its stall report) runs clean",
  async () => {
    const result = await simulateFailover(9741540, displacedShape);
    expect(result.violations, summary(result, displacedShape)).toEqual([]);
  },
  testBoundMs,
);

// Seed 9781027 (displacedShape): head-1 crashed at tick 117 and head-2 at 129, losing its
// disk; at 135 the volume was re-created while both were down but not yet counted dead,
// partition 2 placed on head-1 (primary) and head-2, recorded on head-2-disk-0, the disk
// its last heartbeat named. head-2 came back on head-2-disk-1 at 138, unheard; at 140
// head-1 was counted dead and head-2, which had answered nothing, was promoted; at 142 its
// heartbeat named the new disk, and the record was left with one voter whose replica was
// lost: `unavailable` for good, though nothing had been opened or acknowledged and head-1
// came back at 170 on the disk it was placed on. A coordinator defect: a member this
// leader has heard answer no configure of the partition is `unproven`, disk recorded or
// not (configurer.ts `unprovenMembers`), so head-2 is not promoted, refuses the epoch for
// being on another disk, is counted lost, and head-1 goes on without it on its return.
test(
  "a secondary never heard answering the partition is not promoted on a disk from a heartbeat (seed 9781027)",
  async () => {
    const result = await simulateFailover(9781027, displacedShape);
    expect(result.violations, summary(result, displacedShape)).toEqual([]);
    expect(result.stats.recreates).toBeGreaterThan(0);
    expect(result.stats.unheardSecondariesHeld).toBeGreaterThan(0);
  },
  testBoundMs,
);

test(
  "the checkers catch a coordinator that promotes a secondary never heard answering the partition",
  async () => {
    const caught = await firstCaught(
      "promote-unheard-secondary",
      ["settle"],
      displacedShape,
      1,
      9781027,
    );
    expect(caught).toBe(9781027);
  },
  testBoundMs,
);

// The shape of seeds 9760592 and 9761092: two faulty nodes, frozen clocks, sled cuts,
// corruption and journal failures.
const cutLearnerShape: Overrides = {
  faultyNodesMax: 2,
  frozenClockChance: 0.2,
  sledCutRate: 0.01,
  corruptChance: 0.05,
  journalFailRate: 0.003,
  loadTicks: 1200,
};

// Seed 9760592 (cutLearnerShape): head-2's replica of partition 0 had started from another replica's
// checkpoint (a rebuild: notes through op 98 released) and had recorded none of its own
// when it was cut from every sled, from tick 459 to 1028. Promoted at tick 645 (head-1 cut off), it lost its
// last secondary at 690 (head-5's journal failing) and, its journal full, acknowledged
// nothing more. A learner was sent the primary's own checkpoint, and it had none: each
// started from nothing, needed the notes through op 98 that head-2 had released, and was
// dropped and added again every 15 to 20 ticks, while head-1's and head-5's checkpoints
// through op 147 sat on the sleds. No write was acknowledged for 314 ticks (from 699).
// A coordinator defect: a learner of a primary with no checkpoint recorded rebuilds from
// the partition's newest of any replica (configurer.ts), catches up, and the partition
// fails over to it.
test(
  "a learner of a primary with no checkpoint of its own rebuilds from another's (seed 9760592)",
  async () => {
    const result = await simulateFailover(9760592, cutLearnerShape);
    expect(result.violations, summary(result, cutLearnerShape)).toEqual([]);
    expect(result.stats.flushStallFailovers).toBeGreaterThan(0);
    expect(result.stats.learnersFromNewerCheckpoint).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9761092 (cutLearnerShape): head-1 recorded a checkpoint of partition 0 at op 12
// (flushed through op 3) at tick 45, crashed at 50, was rebuilt at 145 as a learner from
// head-3's checkpoint (notes through op 15 released) and promoted, recording none newer
// before it was cut from every sled (to tick 797). With no secondary left, each learner
// was sent head-1's pointer from its earlier life, resumed at op 3, needed the released
// notes and was dropped and added again every 15 to 20 ticks, while head-3's checkpoint
// at op 18 sat on the sleds. No write was acknowledged for 314 ticks (from 420). A
// coordinator defect: a learner is sent the partition's newest checkpoint when the
// primary's own is older (configurer.ts).
test(
  "a learner of a primary whose checkpoint is from an earlier life rebuilds from a newer one (seed 9761092)",
  async () => {
    const result = await simulateFailover(9761092, cutLearnerShape);
    expect(result.violations, summary(result, cutLearnerShape)).toEqual([]);
    expect(result.stats.learnersFromNewerCheckpoint).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9772507 (cutLearnerShape): head-5 stored partition 1's checkpoint at op 11 at tick 43
// with both copies damaged (checkpointCopyLossRate), was cut from every sled from tick
// 126 to 621, and lost its one secondary, head-4, to a 74 s disk hang. Each learner added
// was sent that checkpoint, the newest recorded, and failed to fetch it; head-5, cut,
// could store no fresh one (its tries at ops 21 and 27 failed), so its journal filled and
// no write was acknowledged for 314 ticks (from 252, when a sled came back). A simulator
// bound error, not a coordinator defect: no replica but head-5's held the partition and
// none could be rebuilt until the cut ended (an older sound checkpoint needs notes the
// primary may have released through the newer). The availability check now restarts its
// count while the primary is cut, no other member is open and reaching the sleds, and no
// checkpoint as new as the one a learner is given has a sound copy on a live sled.
test(
  "a cut primary whose newest checkpoint has no sound copy waits for its cut, no rebuild possible (seed 9772507)",
  async () => {
    const result = await simulateFailover(9772507, cutLearnerShape);
    expect(result.violations, summary(result, cutLearnerShape)).toEqual([]);
    expect(result.stats.sledCuts).toBeGreaterThan(0);
    expect(result.stats.longDiskHangs).toBeGreaterThan(0);
    expect(result.stats.rebuildBlockedWaitTicks).toBeGreaterThan(0);
  },
  testBoundMs,
);

// A hunt on three nodes with two faulty, sled cuts, frozen clocks, corruption, disk
// losses and journal failures (seeds 9790000 to 9790799: nine `available` violations,
// seven of them on 0dc3af7 too, before session 32).
const threeNodeCutsShape: Overrides = {
  nodes: 3,
  partitions: [2, 2],
  faultyNodesMax: 2,
  diskLossChance: 0.2,
  frozenClockChance: 0.2,
  sledCutRate: 0.01,
  corruptChance: 0.05,
  journalFailRate: 0.003,
  loadTicks: 1500,
};

// Seed 9790238: head-2, the lone primary of partition 0 (short a voter), was cut from
// the sleds from tick 786 to 1232, and head-3 from 741 to 1396; head-1, partition 1's
// primary, reached them. Both spares were avoided (each dropped lately for not catching
// up), so the rebuild's learner went to the least loaded, head-3, which could fetch no
// checkpoint: dropped after learnerCatchUpMsMax and added again, five times, while no
// stand-in goes beside a learner under way. No write was acknowledged for 314 ticks
// (from 889). All nine seeds of the hunt showed it. A coordinator defect: while the
// primary's flushes fail, a rebuild's learner goes first on a spare with evidence that
// it reaches the sleds (decisions.ts `decideRebuild`).
test(
  "a rebuild's learner for a primary cut from the sleds goes on a spare that reaches them (seed 9790238)",
  async () => {
    const result = await simulateFailover(9790238, threeNodeCutsShape);
    expect(result.violations, summary(result, threeNodeCutsShape)).toEqual([]);
    expect(result.stats.rebuildsPastCutSpare).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9790455, with that fixed: the learner of partition 1, on a spare reaching the
// sleds, was sent the partition's newest checkpoint, head-1's at op 18, damaged on every
// sled, while the primary, head-3, cut from them, held its own at op 14 with two sound
// copies. Each learner failed the fetch and was dropped in turn. A coordinator defect:
// the learner's refusal names the blob (`checkpoint-unusable`, only when every sled
// answered), and the next learner is sent the primary's own (learnerCheckpoint). The
// old coordinator no longer fails this seed once decideRebuild's fix above puts the
// learner on the spare that reaches the sleds, and a sabotage of it was caught by none of
// 1,200 seeds tried (this shape, and with checkpoint copies lost at 0.4): the configurer
// unit test is its regression test; this seed shows the mechanism at work.
test(
  "a learner that finds the newest checkpoint unusable is followed by one sent the primary's own (seed 9790455)",
  async () => {
    const result = await simulateFailover(9790455, threeNodeCutsShape);
    expect(result.violations, summary(result, threeNodeCutsShape)).toEqual([]);
    expect(result.stats.learnersPastUnusableCheckpoint).toBeGreaterThan(0);
  },
  testBoundMs,
);

// Seed 9790555: head-1, the lone primary of partition 1, recorded a checkpoint at tick
// 215 whose copies were all damaged, and was cut from the sleds from 222 to 678. Every
// learner (head-2 among them, which reached the sleds) was sent that checkpoint, the
// partition's one pointer, and failed the fetch; no write was acknowledged for 314 ticks
// (from 344). Nothing could do better until the primary could store a checkpoint again:
// the availability check counts afresh then (`rebuildBlocked`, seed 9772507).
test(
  "a primary cut from the sleds whose checkpoints have no sound copy waits for its cut to end (seed 9790555)",
  async () => {
    const result = await simulateFailover(9790555, threeNodeCutsShape);
    expect(result.violations, summary(result, threeNodeCutsShape)).toEqual([]);
    expect(result.stats.rebuildBlockedWaitTicks).toBeGreaterThan(0);
  },
  testBoundMs,
);
