// What a leader that stalls past its lease (a GC pause, SIGSTOP, a paused VM) can do to
// the catalogue once it resumes beside the leader that took over: clones against
// snapshot and volume deletes, two creates of one name, and a volume delete or grow
// against a create of the name again. Both leaders run the real
// Volumes, Snapshots and Catalogue over one in-memory store (fake-store.ts), each through
// its own gated view (two-leaders.ts): the scripted tests stall one leader between its
// checks and its first write (or in the middle of its writes) while the other acts; the
// property interleaves the ex-leader's one request with the next leader's requests, store
// call by store call, in every order fast-check draws. Whatever the order, no listed
// clone may name a snapshot being deleted or a volume deleted, and every partition
// record of a listed volume must be there, of its incarnation. A snapshot create stalled between its
// takes and its record while the next leader's real sweep (sweeper.ts) passes over
// checkpoints that hold its trees: no listed snapshot may name trees the sweep dropped.

import { BallastError, ErrorCode, type Message } from "@ballast/protocol";
import fc from "fast-check";
import { Packr } from "msgpackr";
import { describe, expect, test, vi } from "vitest";
import { type Catalogue, keys, type SnapshotRecord, type VolumeRecord } from "../src/catalogue.ts";
import {
  snapshotCreatingGraceMs,
  snapshotRollbackMarkMs,
  sweepGraceMsDefault,
  volumeCreatingGraceMs,
} from "../src/constants.ts";
import { partitionKey } from "../src/leases.ts";
import type { Member } from "../src/membership.ts";
import { Sweeper } from "../src/sweeper.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";
import {
  expectSafe,
  holdBefore,
  interleave,
  isWrite,
  leaderOver,
  listed,
  open,
  partitionBytes,
  SkewedWallClocks,
  type StoreCall,
  seed,
  type WallSkew,
  wallSkewArbitrary,
} from "./two-leaders.ts";

const clone = { type: "volume.clone.v1", volume: "v", snapshot: "s1", name: "c" } as const;
const createC = {
  type: "volume.create.v1",
  name: "c",
  sizeBytes: 2 * partitionBytes,
  replicaCount: 2,
  partitionBytes,
} as const;
const deleteSnapshot = { type: "snapshot.delete.v1", volume: "v", name: "s1" } as const;
/** `v` again, once deleted: three partitions, one more than the seeded one. */
const createV = { ...createC, name: "v", sizeBytes: 3 * partitionBytes } as const;
/** The seeded `v` grown by one partition. */
const growV = { type: "volume.resize.v1", name: "v", sizeBytes: 3 * partitionBytes } as const;

/** A replica's checkpoint pointer of incarnation `volumeId`, as head nodes record them. */
const pointerOf = (volumeId: string, partition: number) => ({
  opNum: 7,
  blobKey: `checkpoints/${volumeId}/${partition}/head-1/7-1-1`,
  sleds: ["sled-1"],
  bytes: 10,
  createdAtMs: 0,
});

/** Runs `first` (leader 1) until it is about to make a store call `when` matches, holds it there while `second` (leader 2, the next term) runs to the end, then lets it finish. */
async function stalled<T>(
  when: (call: StoreCall) => boolean,
  first: (leader: ReturnType<typeof leaderOver>) => Promise<unknown>,
  second: (leader: ReturnType<typeof leaderOver>) => Promise<T>,
) {
  const store = new FakeStore();
  seed(store);
  const hold = holdBefore(when);
  const exLeader = leaderOver(store, 1, hold.gate);
  const leader = leaderOver(store, 2, open);
  const resumed = first(exLeader).then(
    (value) => ({ ok: true as const, value }),
    (error: BallastError) => ({ ok: false as const, error }),
  );
  await hold.reached;
  const secondOutcome = await second(leader);
  hold.release();
  return { store, first: await resumed, second: secondOutcome };
}

describe("a leader that stalls between its checks and its writes", () => {
  test("a clone that found its snapshot is refused once another leader deleted it", async () => {
    const { store, first } = await stalled(
      isWrite,
      (exLeader) => exLeader.volumes.clone(exLeader.tenure, clone),
      (leader) => leader.snapshots.delete(deleteSnapshot),
    );
    expect(store.value("snapshot.v.s1")).toBeUndefined();
    expect(first).toMatchObject({ ok: false, error: { code: ErrorCode.NotFound } });
    expect(listed(store, "c")).toBe(false);
    await expectSafe(store);
  });

  test("a volume delete that found no clone is refused once another leader cloned it", async () => {
    const { store, first } = await stalled(
      isWrite,
      (exLeader) => exLeader.volumes.delete(exLeader.tenure, "v"),
      (leader) => leader.volumes.clone(leader.tenure, clone),
    );
    expect(listed(store, "c")).toBe(true);
    expect(first).toMatchObject({ ok: false });
    await expectSafe(store);
  });

  test("a snapshot delete that found no clone is refused once another leader cloned it", async () => {
    const { store, first } = await stalled(
      isWrite,
      (exLeader) => exLeader.snapshots.delete(deleteSnapshot),
      (leader) => leader.volumes.clone(leader.tenure, clone),
    );
    expect(listed(store, "c")).toBe(true);
    expect(first).toMatchObject({ ok: false });
    await expectSafe(store);
  });

  test("a create that found the name free does not overwrite another leader's create of it", async () => {
    const { store, first, second } = await stalled(
      (call) => isWrite(call) && call.key.startsWith("partition.c."),
      (exLeader) => exLeader.volumes.create(exLeader.tenure, createC),
      async (leader) => {
        // Within the stalled create's grace the name is refused; past it, taken.
        const refused = await leader.volumes
          .create(leader.tenure, createC)
          .catch((error: BallastError) => error);
        const clock = vi.spyOn(Date, "now").mockReturnValue(Date.now() + volumeCreatingGraceMs + 1);
        try {
          return { refused, created: await leader.volumes.create(leader.tenure, createC) };
        } finally {
          clock.mockRestore();
        }
      },
    );
    expect(first).toMatchObject({ ok: false, error: { code: ErrorCode.Unavailable } });
    expect(second.refused).toMatchObject({ code: ErrorCode.Unavailable });
    expect(store.value<VolumeRecord>(keys.volume("c"))?.id).toBe(second.created.id);
    await expectSafe(store);
  });
});

describe("a leader that stalls in the middle of a volume's delete or grow", () => {
  test("a delete that resumes after another leader created the name again leaves the new volume's records", async () => {
    // L1 deletes v's record, then stalls before it removes v's other records.
    let recordDeleted = false;
    const { store, first, second } = await stalled(
      (call) => {
        if (recordDeleted) return true;
        recordDeleted = call.method === "delete" && call.key === keys.volume("v");
        return false;
      },
      (exLeader) => exLeader.volumes.delete(exLeader.tenure, "v"),
      async (leader) => {
        const created = await leader.volumes.create(leader.tenure, createV);
        await leader.catalogue.recordCheckpoint("v", 2, "head-1", pointerOf(created.id!, 2));
        return created;
      },
    );
    expect(first).toMatchObject({ ok: true, value: { deleted: true } });
    expect(store.value<VolumeRecord>(keys.volume("v"))?.id).toBe(second.id);
    // v's partitions are all there, of its incarnation, and so is its checkpoint pointer.
    await expectSafe(store);
    expect(store.value(keys.checkpoint("v", 2, "head-1"))).toEqual(pointerOf(second.id!, 2));
  });

  test("a grow that resumes after another leader deleted and created the name again leaves the new volume's partitions", async () => {
    // L1 has read v and its partitions, and stalls before it adds partition 2.
    const { store, first, second } = await stalled(
      (call) => call.key === keys.partition("v", 2),
      (exLeader) => exLeader.volumes.resize(exLeader.tenure, growV),
      async (leader) => {
        await leader.volumes.delete(leader.tenure, "v");
        return leader.volumes.create(leader.tenure, createV);
      },
    );
    expect(first).toMatchObject({ ok: false, error: { code: ErrorCode.Unavailable } });
    expect(store.value<VolumeRecord>(keys.volume("v"))?.id).toBe(second.id);
    await expectSafe(store);
  });
});

describe("a clone whose leader died before it was listed", () => {
  /** Leaves what a leader that died right after pinning leaves: a creating record and pins. */
  async function cutOffClone(store: FakeStore) {
    const hold = holdBefore((call) => isWrite(call) && call.key.startsWith("partition.c."));
    const dead = leaderOver(store, 1, hold.gate);
    const outcome = dead.volumes.clone(dead.tenure, clone).catch((error: BallastError) => error);
    await hold.reached;
    const pending = store.value<VolumeRecord>(keys.volume("c"));
    expect(pending?.creatingSinceMs).toBeDefined();
    expect(
      store.value<SnapshotRecord>("snapshot.v.s1")?.clonePins?.map((pin) => pin.volume),
    ).toEqual(["c"]);
    expect(
      store.value<VolumeRecord>(keys.volume("v"))?.clonePins?.map((pin) => pin.volume),
    ).toEqual(["c"]);
    return { ...hold, outcome };
  }

  test("holds its snapshot and volume while it may still be created", async () => {
    const store = new FakeStore();
    seed(store);
    await cutOffClone(store);
    const leader = leaderOver(store, 2, open);
    for (const attempt of [
      leader.snapshots.delete(deleteSnapshot),
      leader.volumes.delete(leader.tenure, "v"),
    ]) {
      expect(await attempt.catch((error: BallastError) => error)).toMatchObject({
        code: ErrorCode.Unavailable,
        message: expect.stringContaining("is being cloned as c"),
      });
    }
    expect(store.value("snapshot.v.s1")).toBeDefined();
    // Not listed, not described: it is no volume yet.
    expect(await leader.catalogue.volume("c")).toBeUndefined();
    expect((await leader.catalogue.volumes()).map((volume) => volume.name)).toEqual(["v"]);
  });

  test("is undone after its grace, and its leader, should it resume, cannot list it", async () => {
    const store = new FakeStore();
    seed(store);
    const hold = await cutOffClone(store);
    const later = Date.now() + volumeCreatingGraceMs + 1;
    const clock = vi.spyOn(Date, "now").mockReturnValue(later);
    try {
      const leader = leaderOver(store, 2, open);
      await leader.snapshots.delete(deleteSnapshot);
      expect(store.value("snapshot.v.s1")).toBeUndefined();
      expect(store.value(keys.volume("c"))).toBeUndefined();
      hold.release();
      expect(await hold.outcome).toMatchObject({ code: ErrorCode.Unavailable });
      expect(store.value(keys.volume("c"))).toBeUndefined();
      await expectSafe(store);
      // The volume is free of the pin too.
      await leader.volumes.delete(leader.tenure, "v");
      expect(store.value(keys.volume("v"))).toBeUndefined();
    } finally {
      clock.mockRestore();
    }
  });
});

/** One leader's request, against the seeded catalogue. */
const operations = {
  clone: (leader: ReturnType<typeof leaderOver>) => leader.volumes.clone(leader.tenure, clone),
  "create c": (leader: ReturnType<typeof leaderOver>) =>
    leader.volumes.create(leader.tenure, createC),
  "create v": (leader: ReturnType<typeof leaderOver>) =>
    leader.volumes.create(leader.tenure, createV),
  "resize v": (leader: ReturnType<typeof leaderOver>) =>
    leader.volumes.resize(leader.tenure, growV),
  "delete snapshot": (leader: ReturnType<typeof leaderOver>) =>
    leader.snapshots.delete(deleteSnapshot),
  "delete volume": (leader: ReturnType<typeof leaderOver>) =>
    leader.volumes.delete(leader.tenure, "v"),
  "delete c": (leader: ReturnType<typeof leaderOver>) => leader.volumes.delete(leader.tenure, "c"),
  "remove markers": (leader: ReturnType<typeof leaderOver>) => leader.removeMarkers(),
} as const;
type Operation = keyof typeof operations;

/** Both leaders' wall clocks the real one, for the examples. */
const unskewed: WallSkew = { offsetsMs: [0, 0], steps: [] };

/** Requests the leader that took over answers one after another, while the ex-leader runs its one. */
const leaderRequestsMax = 2;

test("whatever the interleaving of two leaders' requests, the catalogue stays consistent", async () => {
  const names = Object.keys(operations) as Operation[];
  await fc.assert(
    fc.asyncProperty(
      // The ex-leader's one request, begun before it stalled.
      fc.constantFrom(...names),
      // The leader's requests, in turn: a volume deleted and created again is two.
      fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: leaderRequestsMax }),
      fc.array(fc.nat({ max: 7 }), { minLength: 1, maxLength: 80 }),
      // Every reading of the clock a grace after the last: every create another request
      // finds is past its grace, and is undone wherever it can be.
      fc.boolean(),
      // Each leader's wall clock off the other's, and stepping while they run.
      wallSkewArbitrary(2),
      async (firstName, secondNames, choices, leaping, skew) => {
        const store = new FakeStore();
        seed(store);
        const realNow = Date.now.bind(Date);
        let leapedMs = realNow();
        const clocks = new SkewedWallClocks(
          skew,
          leaping
            ? () => {
                leapedMs += volumeCreatingGraceMs + 1;
                return leapedMs;
              }
            : realNow,
        );
        const clock = vi.spyOn(Date, "now").mockImplementation(clocks.now);
        try {
          await interleave(
            [
              (gate) => operations[firstName](leaderOver(store, 1, gate)),
              async (gate) => {
                const leader = leaderOver(store, 2, gate);
                // Each request is answered on its own: one that fails does not stop the next.
                for (const name of secondNames)
                  await operations[name](leader).catch(() => undefined);
              },
            ],
            choices,
            clocks.running,
          );
        } finally {
          clock.mockRestore();
        }
        await expectSafe(store);
        await expectParentsFree(store);
      },
    ),
    {
      numRuns: Number(process.env.LEADER_STALL_RUNS ?? 300),
      // A clone listed, deleted, and its key's marker removed: its pins read "still
      // being created" for ever, and the snapshot and volume could not be deleted.
      // Found by this property (1 run in about 2,000): a create of `c` stalls with the
      // lower incarnation while the other leader removes its creating record, creates
      // and lists `c`; resumed, the first wrote its partitions over the listed volume's,
      // its term being higher. Partition writes now refuse a later incarnation's record.
      // And (about 1 run in 17,000): the other way round, the create of the later
      // incarnation stalled, its creating record removed; resumed, it wrote its
      // partitions over those of the volume listed meanwhile. Partition writes now check,
      // between their read and their compare-and-set, that their creating record is there.
      // With "create v" and "resize v" (seeds 1 to 10, runs until the first failure): a
      // volume delete resumed after the name was created again removed the new
      // incarnation's partition records (found after 377 to 4,680 runs, half within
      // 1,000); a grow resumed likewise wrote its partitions over the new incarnation's
      // (794 to 17,355 runs, half within 8,600). Deletes now remove only a dead
      // incarnation's records, and grows refuse a later one's and require the volume
      // record they read.
      examples: [
        ["clone", ["delete c", "remove markers"], [0], false, unskewed],
        ["create c", ["clone"], [1, 3, 3, 0, 2], true, unskewed],
        ["create c", ["clone"], [3, 7, 7, 3, 0, 0, 0, 0, 0, 1, 1, 1], true, unskewed],
        ["delete volume", ["create v"], [6, 3], false, unskewed],
        ["resize v", ["delete volume", "create v"], [2], false, unskewed],
      ],
    },
  );
});

/**
 * Once both leaders are done, with no record of `c` (no clone listed or being created),
 * nothing of `c` may hold `v` or its snapshot: a delete of either is not refused for it.
 */
async function expectParentsFree(store: FakeStore): Promise<void> {
  if (store.value(keys.volume("c")) !== undefined) return;
  const leader = leaderOver(store, 3, open);
  for (const attempt of [
    () => leader.snapshots.delete(deleteSnapshot),
    () => leader.volumes.delete(leader.tenure, "v"),
  ]) {
    const outcome = await attempt().catch((error: BallastError) => error);
    expect(String((outcome as Error).message ?? ""), "a delete of c's parent").not.toMatch(/clone/);
  }
}

/**
 * Volume `v`'s two partitions as their primaries hold them, for rollbacks against
 * deletes: the snapshot ids each has, and each rollback that found its id missing.
 * Every partition request takes a turn of the interleaving, as a store call does. A
 * rollback is answered done whether it found the snapshot or not, as a head node that
 * did not say so would: the leader must not count on the answer.
 */
function rollbackCluster() {
  const trees = [new Set(["sid-1"]), new Set(["sid-1"])];
  const missed: number[] = [];
  let opNum = 10;
  const answerOf = (message: Message): unknown => {
    switch (message.type) {
      case "partition.snapshot.rollback.v1":
        if (!trees[message.partition]!.has(message.snapshot)) missed.push(message.partition);
        return { epoch: 1, opNum: ++opNum };
      case "partition.snapshot.drop.v1":
        trees[message.partition]!.delete(message.snapshot);
        return { epoch: 1, opNum: ++opNum };
      default:
        return undefined;
    }
  };
  const leader = (
    store: FakeStore,
    term: number,
    gate: Parameters<typeof leaderOver>[2],
    markClock?: () => number,
  ) =>
    leaderOver(
      store,
      term,
      gate,
      (subject, message) =>
        answerOf(message) === undefined
          ? undefined
          : gate({ method: "get", key: subject }).then(() => answerOf(message)),
      markClock,
    );
  return { trees, missed, leader };
}

/** Runs of the rollback property unless LEADER_STALL_RUNS says otherwise (see there). */
const rollbackRunsDefault = 1500;

test("whatever the interleaving of a rollback and a delete of its snapshot, a rollback answered done found the snapshot everywhere", async () => {
  const rollback = {
    type: "volume.rollback.v1",
    volume: "v",
    snapshot: "s1",
    force: true,
  } as const;
  await fc.assert(
    fc.asyncProperty(
      fc.boolean(),
      fc.array(fc.nat({ max: 7 }), { minLength: 1, maxLength: 80 }),
      // Every reading of a leader's mark clock past a rollback mark's life after the
      // last, and a delete refused tried once more: the retry never sees a live mark (as
      // a leader that saw it a minute before), and only the read back after the
      // partitions stands between the rollback and a false success.
      fc.boolean(),
      // Each leader's wall clock off the other's (up to two mark lives), and stepping
      // while they run: what a mark's age is judged by must not be another machine's
      // wall clock.
      wallSkewArbitrary(2),
      async (rollbackFirst, choices, leaping, skew) => {
        const store = new FakeStore();
        seed(store);
        const cluster = rollbackCluster();
        let leapedMs = 0;
        const markClock = leaping
          ? () => {
              leapedMs += snapshotRollbackMarkMs + 1;
              return leapedMs;
            }
          : undefined;
        const rollingBack = (term: number) => (gate: Parameters<typeof leaderOver>[2]) =>
          cluster.leader(store, term, gate, markClock).snapshots.rollback(rollback);
        const deleting = (term: number) => (gate: Parameters<typeof leaderOver>[2]) => {
          const { snapshots } = cluster.leader(store, term, gate, markClock);
          const once = () => snapshots.delete(deleteSnapshot);
          return leaping ? once().catch(once) : once();
        };
        const clocks = new SkewedWallClocks(skew, Date.now.bind(Date));
        const clock = vi.spyOn(Date, "now").mockImplementation(clocks.now);
        let outcomes: PromiseSettledResult<unknown>[];
        try {
          outcomes = await interleave(
            rollbackFirst ? [rollingBack(1), deleting(2)] : [deleting(1), rollingBack(2)],
            choices,
            clocks.running,
          );
        } finally {
          clock.mockRestore();
        }
        const rolledBack = outcomes[rollbackFirst ? 0 : 1]!;
        const deleted = outcomes[rollbackFirst ? 1 : 0]!;
        if (rolledBack.status === "fulfilled") expect(cluster.missed).toEqual([]);
        // With no mark's life gone by (the mark clock not leaping: the run takes
        // milliseconds), a rollback's mark is live throughout, so no delete drops the
        // snapshot under it: no partition's rollback finds it gone, whatever the answer.
        // The check that rollback marks are aged on this leader's own clock (6771eb3):
        // judged by the marking leader's wall clock, a deleting leader a minute ahead
        // took a fresh mark for expired.
        if (!leaping) expect(cluster.missed, "a rollback cut short by a delete").toEqual([]);
        if (deleted.status === "fulfilled") {
          for (const tree of cluster.trees) expect(tree.has("sid-1")).toBe(false);
          expect(store.value("snapshot.v.s1")).toBeUndefined();
        }
        await expectSafe(store);
      },
    ),
    {
      // More than the other properties: with the wall-clock comparison of rollback marks
      // put back (before 6771eb3), 22 runs of this property each found a rollback cut
      // short, after 14 to 568 runs (half within about 250): 300 missed it now and then.
      numRuns: Number(process.env.LEADER_STALL_RUNS ?? rollbackRunsDefault),
      // The rollback checks the record and rolls partition 0 back; the delete marks the
      // record and drops the snapshot on both partitions; partition 1 then "rolls back".
      examples: [[true, [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0], false, unskewed]],
    },
  );
});

describe("a snapshot create that stalls between its takes and its record", () => {
  /**
   * Volume `v`'s two partitions as their primaries hold them (snapshot ids), a sled
   * with their checkpoints, and the clock both leaders read, which a test moves on.
   */
  function cluster() {
    const trees = [new Set(["sid-1"]), new Set(["sid-1"])];
    const blobs = new Map<string, Uint8Array>();
    let opNum = 10;
    let takes = 0;
    const answer = (subject: string, message: Message): unknown => {
      switch (message.type) {
        case "partition.snapshot.hold.v1":
          return { epoch: 1, lastOpNum: opNum };
        case "partition.snapshot.take.v1":
          takes++;
          trees[message.partition]!.add(message.snapshot);
          return { epoch: 1, opNum: ++opNum };
        case "partition.snapshot.release.v1":
          return { held: true };
        case "partition.snapshot.drop.v1":
          trees[message.partition]!.delete(message.snapshot);
          return { epoch: 1, opNum: ++opNum };
        case "sled.chunk.list.v1":
          return { chunks: [], truncated: false };
        case "sled.blob.list.v1":
          return {
            blobs: [...blobs]
              .filter(([key]) => key.startsWith(message.prefix ?? ""))
              .map(([key, bytes]) => ({ key, bytes: bytes.byteLength })),
            truncated: false,
          };
        case "sled.blob.get.v1": {
          const data = blobs.get(message.key);
          if (data === undefined) throw new BallastError(ErrorCode.NotFound, message.key);
          const end = message.offset + (message.length ?? data.byteLength);
          return { data: data.slice(message.offset, end), bytes: data.byteLength, checksum: 0 };
        }
        case "sled.blob.delete.v1":
          blobs.delete(message.key);
          return { freedBytes: 0 };
        default:
          throw new Error(`unexpected ${message.type} on ${subject}`);
      }
    };
    /** Each partition's primary checkpoints what it holds now, as head nodes do. */
    const checkpointNow = async (catalogue: Catalogue) => {
      for (const [partition, ids] of trees.entries()) {
        opNum++;
        const header = new Packr({ useRecords: false, moreTypes: false }).pack({
          format: 2,
          opNum,
          flushedThroughOpNum: opNum,
          flushedThroughEpoch: 1,
          flushedThroughSession: 1,
          nextChunkNumber: 0,
          chunks: [],
          treeBytes: 0,
          snapshots: [...ids].map((id) => [id, opNum, 0]),
        });
        const bytes = new Uint8Array(4 + header.byteLength);
        new DataView(bytes.buffer).setUint32(0, header.byteLength, true);
        bytes.set(header, 4);
        const blobKey = `checkpoints/1-aaaaaaaaaaaa/${partition}/head-1/${opNum}-1-1`;
        blobs.set(blobKey, bytes);
        await catalogue.recordCheckpoint("v", partition, "head-1", {
          opNum,
          blobKey,
          sleds: ["sled-1"],
          bytes: bytes.byteLength,
          createdAtMs: Date.now(),
        });
      }
    };
    // Both clocks the coordinator reads: the monotonic one (the sweep's grace) and the
    // wall clock (records' creatingSinceMs), moved on together.
    let skippedMs = 0;
    const monotonic = globalThis.performance.now.bind(globalThis.performance);
    const wall = Date.now.bind(Date);
    const clocks = [
      vi.spyOn(globalThis.performance, "now").mockImplementation(() => monotonic() + skippedMs),
      vi.spyOn(Date, "now").mockImplementation(() => wall() + skippedMs),
    ];
    return {
      trees,
      answer,
      checkpointNow,
      taken: () => takes > 0,
      skip: (ms: number) => {
        skippedMs += ms;
      },
      restore: () => {
        for (const clock of clocks) clock.mockRestore();
      },
    };
  }

  /** The next leader's orphan sweep, with its real grace, over its own catalogue. */
  function sweeperOf(
    leader: ReturnType<typeof leaderOver>,
    answer: (subject: string, message: Message) => unknown,
  ) {
    const partitions = [0, 1].map((partition) => ({
      volume: "v",
      volumeId: "1-aaaaaaaaaaaa",
      partition,
      partitionStart: partition * partitionBytes,
      partitionBytes,
      epoch: 1,
      primary: "head-1",
      secondaries: ["head-2"],
      term: 2,
    }));
    const tenure = {
      term: leader.tenure.term,
      ready: true,
      records: new Map(
        partitions.map((record) => [partitionKey(record), { value: record, revision: 1 }]),
      ),
      inflight: new Set<string>(),
      unsure: new Set<string>(),
    } as unknown as Tenure;
    return new Sweeper({
      service: {
        bus: { request: async (subject: string, message: Message) => answer(subject, message) },
        logger: { info: () => undefined, warn: () => undefined },
      } as never,
      catalogue: leader.catalogue,
      heartbeats: {
        list: () => [{ id: "sled-1", kind: "sled", alive: true } as Member],
        listening: () => false,
      },
      tenures: { held: () => tenure, current: () => tenure },
      // A fake of the store marks that never object: one control store throughout.
      marks: { mismatch: () => undefined },
      snapshots: leader.snapshots,
    });
  }

  test("the next leader's sweep never leaves a listed snapshot whose trees it dropped", async () => {
    const store = new FakeStore();
    seed(store);
    const world = cluster();
    try {
      // L1 stalls at its first write of the snapshot's key after a take: the record.
      const hold = holdBefore(
        (call) => isWrite(call) && call.key === "snapshot.v.s2" && world.taken(),
      );
      const exLeader = leaderOver(store, 1, hold.gate, world.answer);
      const outcome = exLeader.snapshots
        .create({ type: "snapshot.create.v1", volume: "v", name: "s2" })
        .then(
          (state) => ({ ok: true as const, state }),
          (error: BallastError) => ({ ok: false as const, error }),
        );
      await hold.reached;
      const takenId = [...world.trees[0]!].find((id) => id !== "sid-1")!;
      expect(world.trees[1]!.has(takenId)).toBe(true);

      // L2 leads; its sweep passes, a grace apart, while L1 is stalled.
      const leader = leaderOver(store, 2, open, world.answer);
      const sweeper = sweeperOf(leader, world.answer);
      // Each step is past the sweep's grace and the creating record's (60 s both): a
      // stall of five minutes in all.
      for (let pass = 0; pass < 5; pass++) {
        await world.checkpointNow(leader.catalogue);
        await sweeper.sweep();
        world.skip(sweepGraceMsDefault + 1);
      }
      hold.release();
      const resumed = await outcome;

      // Whatever L1's answer, every listed snapshot's trees are on every partition.
      const listedSnapshots = (await leader.snapshots.list("v")).snapshots;
      for (const snapshot of listedSnapshots) {
        for (const [partition, ids] of world.trees.entries()) {
          expect(ids.has(snapshot.id), `${snapshot.name} on partition ${partition}`).toBe(true);
        }
      }
      // Here: L1's record was removed as past its grace, so its listing failed.
      expect(resumed).toMatchObject({ ok: false, error: { code: ErrorCode.Unavailable } });
      expect(listedSnapshots.map((snapshot) => snapshot.name)).toEqual(["s1"]);
      expect(store.value("snapshot.v.s2")).toBeUndefined();
      for (const ids of world.trees) expect(ids.has(takenId)).toBe(false);
    } finally {
      world.restore();
    }
  });

  test("a stall within the grace loses nothing: the sweep keeps the trees and L1 lists them", async () => {
    const store = new FakeStore();
    seed(store);
    const world = cluster();
    try {
      const hold = holdBefore(
        (call) => isWrite(call) && call.key === "snapshot.v.s2" && world.taken(),
      );
      const exLeader = leaderOver(store, 1, hold.gate, world.answer);
      const outcome = exLeader.snapshots.create({
        type: "snapshot.create.v1",
        volume: "v",
        name: "s2",
      });
      await hold.reached;
      const leader = leaderOver(store, 2, open, world.answer);
      const sweeper = sweeperOf(leader, world.answer);
      // Passes while the creating record is within its grace: its id counts as recorded.
      for (let pass = 0; pass < 3; pass++) {
        await world.checkpointNow(leader.catalogue);
        await sweeper.sweep();
        world.skip(snapshotCreatingGraceMs / 4);
      }
      expect(sweeper.sweepStatus()).toMatchObject({ snapshotsDropped: 0, staleCreatesRemoved: 0 });
      // A user's create of the name on L2 waits for it; a delete finds no snapshot.
      const request = { type: "snapshot.create.v1", volume: "v", name: "s2" } as const;
      expect(await leader.snapshots.create(request).catch((error) => error)).toMatchObject({
        code: ErrorCode.Unavailable,
      });
      expect(
        await leader.snapshots
          .delete({ type: "snapshot.delete.v1", volume: "v", name: "s2" })
          .catch((error) => error),
      ).toMatchObject({ code: ErrorCode.NotFound });
      hold.release();
      const state = await outcome;
      const listedSnapshots = (await leader.snapshots.list("v")).snapshots;
      expect(listedSnapshots.map((snapshot) => snapshot.id)).toEqual(["sid-1", state.id]);
      for (const ids of world.trees) expect(ids.has(state.id)).toBe(true);
    } finally {
      world.restore();
    }
  });
});
