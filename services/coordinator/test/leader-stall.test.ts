// What a leader that stalls past its lease (a GC pause, SIGSTOP, a paused VM) can do to
// the catalogue once it resumes beside the leader that took over: clones against
// snapshot and volume deletes, and two creates of one name. Both leaders run the real
// Volumes, Snapshots and Catalogue over one in-memory store (fake-store.ts), each through
// its own gated view (two-leaders.ts): the scripted tests stall one leader between its
// checks and its first write while the other acts; the property interleaves the two
// leaders' store calls in every order fast-check draws. Whatever the order, no listed
// clone may name a snapshot being deleted or a volume deleted, and no listed volume may
// have another incarnation's partition records.

import { type BallastError, ErrorCode } from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, test, vi } from "vitest";
import { keys, type SnapshotRecord, type VolumeRecord } from "../src/catalogue.ts";
import { volumeCreatingGraceMs } from "../src/constants.ts";
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
  type StoreCall,
  seed,
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
  "delete snapshot": (leader: ReturnType<typeof leaderOver>) =>
    leader.snapshots.delete(deleteSnapshot),
  "delete volume": (leader: ReturnType<typeof leaderOver>) =>
    leader.volumes.delete(leader.tenure, "v"),
} as const;

test("whatever the interleaving of two leaders' requests, the catalogue stays consistent", async () => {
  const names = Object.keys(operations) as (keyof typeof operations)[];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...names),
      fc.constantFrom(...names),
      fc.array(fc.nat({ max: 7 }), { minLength: 1, maxLength: 80 }),
      // Every reading of the clock a grace after the last: every create another request
      // finds is past its grace, and is undone wherever it can be.
      fc.boolean(),
      async (firstName, secondName, choices, leaping) => {
        const store = new FakeStore();
        seed(store);
        let leapedMs = Date.now();
        const clock = leaping
          ? vi.spyOn(Date, "now").mockImplementation(() => {
              leapedMs += volumeCreatingGraceMs + 1;
              return leapedMs;
            })
          : undefined;
        try {
          await interleave(
            [
              (gate) => operations[firstName](leaderOver(store, 1, gate)),
              (gate) => operations[secondName](leaderOver(store, 2, gate)),
            ],
            choices,
          );
        } finally {
          clock?.mockRestore();
        }
        await expectSafe(store);
      },
    ),
    { numRuns: Number(process.env.LEADER_STALL_RUNS ?? 300) },
  );
});
