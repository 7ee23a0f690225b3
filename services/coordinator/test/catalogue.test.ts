// The catalogue on an in-memory KV store: listings de-duplicated, writes fenced by the
// leader's term, incarnations kept apart.

import { BallastError, ErrorCode, formatVolumeId, incarnationOf } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import {
  Catalogue,
  createWritesInflightMax,
  keyMatches,
  keys,
  mapLimited,
  mayOverwrite,
  partitionReadsInflightMax,
  uniqueKeys,
} from "../src/catalogue.ts";
import type { PartitionRecord } from "../src/decisions.ts";
import { FakeStore } from "./fake-store.ts";

const mebibyte = 1024 * 1024;

function partition(index: number, overrides: Partial<PartitionRecord> = {}): PartitionRecord {
  return {
    volume: "v",
    volumeId: "v-1",
    partition: index,
    partitionStart: index * mebibyte,
    partitionBytes: mebibyte,
    epoch: 1,
    primary: "head-1",
    secondaries: ["head-2"],
    ...overrides,
  };
}

function volumeWithTwoPartitions(store: FakeStore): void {
  store.put(keys.partition("v", 0), partition(0));
  store.put(keys.partition("v", 1), partition(1));
  store.put(keys.volume("v"), {
    name: "v",
    id: "v-1",
    sizeBytes: 2 * mebibyte,
    replicaCount: 2,
    partitionBytes: mebibyte,
    createdAtMs: 1,
  });
}

describe("a key listed twice (updated while it was listed)", () => {
  test("keyMatches reads a KV filter as NATS does: '*' one token, '>' one or more", () => {
    expect(keyMatches("partition.>", "partition.vol.1")).toBe(true);
    expect(keyMatches("partition.vol.>", "partition.vol.1")).toBe(true);
    expect(keyMatches("partition.vol.>", "partition.volume.1")).toBe(false);
    expect(keyMatches("partition.vol.>", "partition.vol")).toBe(false);
    expect(keyMatches("volume.*", "volume.a")).toBe(true);
    expect(keyMatches("volume.*", "volume.a.b")).toBe(false);
    expect(keyMatches("volume.a", "volume.a")).toBe(true);
    expect(keyMatches("volume.a", "volume.ab")).toBe(false);
  });

  test("uniqueKeys keeps each key once", () => {
    expect(uniqueKeys(["b", "a", "b", "c", "a"])).toEqual(["a", "b", "c"]);
  });

  test("a volume's partitions, every partition, volumes and checkpoints are each listed once", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    store.put(keys.checkpoint("v", 0, "head-1"), {
      opNum: 5,
      blobKey: "b",
      sleds: ["sled-1"],
      bytes: 10,
      createdAtMs: 1,
    });
    store.listTwice.add(keys.partition("v", 1));
    store.listTwice.add(keys.volume("v"));
    store.listTwice.add(keys.checkpoint("v", 0, "head-1"));
    const catalogue = new Catalogue(store);
    expect((await catalogue.partitions("v")).map((entry) => entry.value.partition)).toEqual([0, 1]);
    expect((await catalogue.allPartitions()).map((entry) => entry.value.partition)).toEqual([0, 1]);
    expect((await catalogue.volumes()).map((volume) => volume.name)).toEqual(["v"]);
    expect([...(await catalogue.checkpoints("v")).get(0)!.keys()]).toEqual(["head-1"]);
  });
});

describe("writes fenced by the leader's term", () => {
  test("a writer never overwrites a record of a higher term", () => {
    expect(mayOverwrite(partition(0, { term: 3 }), 3)).toBe(true);
    expect(mayOverwrite(partition(0, { term: 3 }), 4)).toBe(true);
    expect(mayOverwrite(partition(0, { term: 4 }), 3)).toBe(false);
    expect(mayOverwrite(partition(0), 1)).toBe(true); // written before terms
  });

  test("an ex-leader's compare-and-set prepared before a takeover fails after the new leader fences", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    const exLeader = new Catalogue(store);
    const newLeader = new Catalogue(store);
    // The ex-leader (term 1) reads the record and decides, then is paused.
    const read = (await exLeader.partition("v", 0))!;
    const decided = { ...read.value, epoch: 2, primary: "head-2", secondaries: [] };
    // Meanwhile another coordinator takes over with term 2 and fences.
    const fenced = await newLeader.fence(2);
    expect(fenced.deposed).toBe(false);
    expect(store.value<PartitionRecord>(keys.partition("v", 0))?.term).toBe(2);
    // The ex-leader wakes and applies what it decided: refused.
    expect(await exLeader.updatePartition(decided, read, 1)).toEqual({
      applied: false,
      reason: "conflict",
    });
    // Reading again does not help it: the record is of a later term.
    const fresh = (await exLeader.partition("v", 0))!;
    expect(await exLeader.updatePartition(decided, fresh, 1)).toEqual({
      applied: false,
      reason: "deposed",
    });
    expect(store.value<PartitionRecord>(keys.partition("v", 0))).toMatchObject({
      epoch: 1,
      primary: "head-1",
      term: 2,
    });
    // The new leader's own writes go through, stamped with its term.
    const outcome = await newLeader.updatePartition({ ...fresh.value, epoch: 2 }, fresh, 2);
    expect(outcome.applied).toBe(true);
    expect(store.value<PartitionRecord>(keys.partition("v", 0))).toMatchObject({
      epoch: 2,
      term: 2,
    });
  });

  test("a leader that finds a later term while fencing is told it is deposed", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    store.put(keys.partition("v", 1), partition(1, { term: 7 }));
    expect((await new Catalogue(store).fence(6)).deposed).toBe(true);
  });
});

describe("volume incarnations", () => {
  test("a create over what a dead delete left takes every partition record for the new id", async () => {
    const store = new FakeStore();
    // A delete that died halfway: the volume record is gone, a partition record (at a
    // high epoch) and a checkpoint pointer of the old incarnation are left.
    store.put(keys.partition("v", 0), partition(0, { volumeId: "old", epoch: 9 }));
    store.put(keys.checkpoint("v", 0, "head-1"), {
      opNum: 5,
      blobKey: "b",
      sleds: ["sled-1"],
      bytes: 10,
      createdAtMs: 1,
    });
    const catalogue = new Catalogue(store);
    const stored = await catalogue.createVolume(
      {
        name: "v",
        id: "new",
        sizeBytes: mebibyte,
        replicaCount: 2,
        partitionBytes: mebibyte,
        createdAtMs: 2,
      },
      [partition(0, { volumeId: "new" })],
      3,
    );
    expect(stored.map((entry) => entry.value)).toEqual([
      expect.objectContaining({ volumeId: "new", epoch: 1, term: 3 }),
    ]);
    expect(store.value(keys.partition("v", 0))).toMatchObject({ volumeId: "new", epoch: 1 });
    expect((await catalogue.checkpoints("v")).size).toBe(0);
    expect((await catalogue.volume("v"))?.value.id).toBe("new");
  });

  test("delete returns the deleted incarnation and removes its records", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    const catalogue = new Catalogue(store);
    expect((await catalogue.deleteVolume("v"))?.id).toBe("v-1");
    expect(await catalogue.partitions("v")).toEqual([]);
    expect(await catalogue.deleteVolume("v")).toBeUndefined();
  });

  test("a delete of the record it read never removes a re-creation made since", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    const catalogue = new Catalogue(store);
    const read = await catalogue.volume("v");
    // Deleted and created again (as another incarnation) by someone else meanwhile.
    await catalogue.deleteVolume("v");
    store.put(keys.volume("v"), { ...read!.value, id: "v-2" });
    expect(await catalogue.deleteVolume("v", read)).toBeUndefined();
    expect((await catalogue.volume("v"))?.value.id).toBe("v-2");
  });
});

describe("a partition's newest checkpoint (a learner's when the primary has none)", () => {
  test("the highest op of any replica's pointer of that partition, none of another's", async () => {
    const store = new FakeStore();
    const pointer = (node: string, partition: number, opNum: number) => ({
      opNum,
      blobKey: `checkpoints/v-1/${partition}/${node}/${opNum}-1-1`,
      sleds: ["sled-1"],
      bytes: 10,
      createdAtMs: 1,
    });
    const catalogue = new Catalogue(store);
    expect(await catalogue.newestCheckpoint("v", 0, "v-1")).toBeUndefined();
    store.put(keys.checkpoint("v", 0, "head-1"), pointer("head-1", 0, 147));
    store.put(keys.checkpoint("v", 0, "head-4"), pointer("head-4", 0, 41));
    store.put(keys.checkpoint("v", 1, "head-2"), pointer("head-2", 1, 300));
    store.put(keys.checkpoint("vv", 0, "head-2"), pointer("head-2", 0, 500));
    // Recorded under this name by a replica of a deleted incarnation (v-0): never seeds one.
    store.put(keys.checkpoint("v", 0, "head-5"), {
      ...pointer("head-5", 0, 900),
      blobKey: "checkpoints/v-0/0/head-5/900-1-1",
    });
    expect(await catalogue.newestCheckpoint("v", 0, "v-1")).toEqual(pointer("head-1", 0, 147));
    expect(await catalogue.newestCheckpoint("v", 1, "v-1")).toEqual(pointer("head-2", 1, 300));
    expect(await catalogue.newestCheckpoint("v", 2, "v-1")).toBeUndefined();
  });
});

describe("recording a replica's checkpoint", () => {
  const pointer = (volumeId: string, opNum: number) => ({
    opNum,
    blobKey: `checkpoints/${volumeId}/0/head-1/${opNum}-1-1`,
    sleds: ["sled-1"],
    bytes: 10,
    createdAtMs: 1,
  });

  test("an older one of the same incarnation is ignored; one of another is replaced whatever its op", async () => {
    const store = new FakeStore();
    const catalogue = new Catalogue(store);
    expect(await catalogue.recordCheckpoint("v", 0, "head-1", pointer("v-1", 50))).toEqual({
      recorded: true,
    });
    expect(await catalogue.recordCheckpoint("v", 0, "head-1", pointer("v-1", 40))).toEqual({
      recorded: false,
    });
    // Review 32: recorded under this name by a replica of a deleted incarnation (v-1)
    // after the re-create; before, it refused every record of v-2's replica.
    expect(await catalogue.recordCheckpoint("v", 0, "head-1", pointer("v-2", 7))).toEqual({
      replaced: pointer("v-1", 50),
      recorded: true,
    });
    expect(await catalogue.checkpoint("v", 0, "head-1")).toEqual(pointer("v-2", 7));
  });

  test("a key that changes under every attempt is refused as Unavailable, not answered as recorded", async () => {
    const store = new FakeStore();
    const catalogue = new Catalogue(store);
    await catalogue.recordCheckpoint("v", 0, "head-1", pointer("v-1", 5));
    // Another writer moves the key on between each read and its compare-and-set.
    store.update = async () => {
      throw new Error("wrong last sequence: moved on");
    };
    const refused = await catalogue
      .recordCheckpoint("v", 0, "head-1", pointer("v-1", 9))
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
  });
});

describe("a volume's delete removes only what no live volume uses", () => {
  const pointer = (volumeId: string) => ({
    opNum: 5,
    blobKey: `checkpoints/${volumeId}/0/head-1/5-1-1`,
    sleds: ["sled-1"],
    bytes: 10,
    createdAtMs: 1,
  });

  test("its own records, and those a create or delete that died halfway left", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    store.put(keys.checkpoint("v", 0, "head-1"), pointer("v-1"));
    // Left by a delete of an earlier incarnation cut off halfway.
    store.put(keys.partition("v", 5), partition(5, { volumeId: "0-old" }));
    store.put(keys.checkpoint("v", 5, "head-2"), pointer("0-old"));
    expect((await new Catalogue(store).deleteVolume("v"))?.id).toBe("v-1");
    expect(await new Catalogue(store).partitions("v")).toEqual([]);
    expect((await new Catalogue(store).checkpoints("v")).size).toBe(0);
  });

  test("not the records of an incarnation another leader created meanwhile", async () => {
    // The name is created again (incarnation 2) right after the delete removed the
    // volume record: as when the deleting leader stalls there past its lease.
    const created = {
      name: "v",
      id: "2-bbbb",
      sizeBytes: 2 * mebibyte,
      replicaCount: 2,
      partitionBytes: mebibyte,
      createdAtMs: 2,
    };
    class RecreatedAfterDelete extends FakeStore {
      override async delete(key: string, options?: { previousSeq?: number }): Promise<void> {
        await super.delete(key, options);
        if (key !== keys.volume("v")) return;
        this.put(keys.volume("v"), created);
        this.put(keys.partition("v", 0), partition(0, { volumeId: "2-bbbb", term: 2 }));
        this.put(keys.checkpoint("v", 0, "head-1"), pointer("2-bbbb"));
      }
    }
    const store = new RecreatedAfterDelete();
    volumeWithTwoPartitions(store);
    store.put(keys.checkpoint("v", 1, "head-1"), pointer("v-1"));
    expect((await new Catalogue(store).deleteVolume("v"))?.id).toBe("v-1");
    // Incarnation 1's partition 1 and pointer went; incarnation 2's records stayed.
    expect(store.value(keys.partition("v", 1))).toBeUndefined();
    expect(store.value(keys.checkpoint("v", 1, "head-1"))).toBeUndefined();
    expect(store.value<PartitionRecord>(keys.partition("v", 0))?.volumeId).toBe("2-bbbb");
    expect(store.value(keys.checkpoint("v", 0, "head-1"))).toEqual(pointer("2-bbbb"));
    expect(store.value(keys.volume("v"))).toEqual(created);
  });
});

describe("a grow's partition writes", () => {
  const grown = (overrides: Partial<PartitionRecord> = {}) => partition(2, overrides);

  test("add a partition over a dead incarnation's leftover, stamped with the term", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    store.put(keys.partition("v", 2), grown({ volumeId: "0-old", term: 1 }));
    const catalogue = new Catalogue(store);
    const stored = await catalogue.addPartitions((await catalogue.volume("v"))!, [grown()], 2);
    expect(stored.map((entry) => entry.value)).toEqual([grown({ term: 2 })]);
    expect(store.value(keys.partition("v", 2))).toEqual(grown({ term: 2 }));
  });

  test.each([
    ["a later leader wrote", grown({ volumeId: "0-old", term: 3 }), /later leader wrote/],
    ["of a later incarnation", grown({ volumeId: "w-2", term: 1 }), /later incarnation/],
  ])("never write over a leftover %s", async (_why, leftover, message) => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    store.put(keys.partition("v", 2), leftover);
    const catalogue = new Catalogue(store);
    const read = (await catalogue.volume("v"))!;
    expect(await catalogue.addPartitions(read, [grown()], 2).catch((error) => error)).toMatchObject(
      { code: ErrorCode.Unavailable, message: expect.stringMatching(message) },
    );
    expect(store.value(keys.partition("v", 2))).toEqual(leftover);
  });

  test("write nothing once the volume record moved from the one the resize read", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    const catalogue = new Catalogue(store);
    const read = (await catalogue.volume("v"))!;
    // Deleted and created again meanwhile, by another leader.
    store.put(keys.volume("v"), { ...read.value, id: "v-2" });
    expect(await catalogue.addPartitions(read, [grown()], 2).catch((error) => error)).toMatchObject(
      { code: ErrorCode.Unavailable, message: expect.stringContaining("changed while") },
    );
    expect(store.value(keys.partition("v", 2))).toBeUndefined();
  });
});

describe("incarnation numbers", () => {
  test("grow by one per create of a name, survive its delete, and order the ids", async () => {
    const store = new FakeStore();
    const catalogue = new Catalogue(store);
    expect(await catalogue.nextIncarnation("v")).toBe(1);
    expect(await catalogue.nextIncarnation("w")).toBe(1);
    volumeWithTwoPartitions(store);
    expect(await catalogue.deleteVolume("v")).toBeTruthy();
    expect(await catalogue.nextIncarnation("v")).toBe(2);
    const older = formatVolumeId(9, "aa");
    const newer = formatVolumeId(10, "00");
    expect(incarnationOf(newer)).toBeGreaterThan(incarnationOf(older));
    expect(incarnationOf("volumename")).toBe(0); // a static assignment's plain name
  });
});

test("a snapshot record marked deleting is hidden from readers; one without the mark reads as before", async () => {
  const store = new FakeStore();
  const catalogue = new Catalogue(store);
  const record = (name: string) => ({
    volume: "v",
    name,
    id: `id-${name}`,
    volumeId: "v-1",
    createdAtMs: 1,
    partitions: [{ index: 0, opNum: 3 }],
  });
  // Both as older coordinators wrote them: no mark.
  store.put("snapshot.v.kept", record("kept"));
  const revision = store.put("snapshot.v.going", record("going"));
  const marked = await catalogue.markSnapshotDeleting({ value: record("going"), revision }, 7);
  expect(marked?.value.deletingSinceMs).toBe(7);
  expect((await catalogue.snapshots("v")).map((entry) => entry.name)).toEqual(["kept"]);
  expect(await catalogue.snapshot("v", "going")).toBeUndefined();
  expect((await catalogue.snapshot("v", "kept"))?.value).toEqual(record("kept"));
  expect((await catalogue.snapshotIncludingDeleting("v", "going"))?.revision).toBe(
    marked?.revision,
  );
  expect(
    (await catalogue.snapshotsIncludingDeleting("v")).map((entry) => entry.value.name),
  ).toEqual(["going", "kept"]);
  // A mark on a revision that moved on writes nothing.
  expect(await catalogue.markSnapshotDeleting({ value: record("kept"), revision: 0 }, 8)).toBe(
    undefined,
  );
  expect((await catalogue.snapshot("v", "kept"))?.value).toEqual(record("kept"));
});

describe("snapshot records go with their incarnation", () => {
  const snapshot = (name: string, volumeId: string) => ({
    volume: "v",
    name,
    id: `id-${name}-${volumeId}`,
    volumeId,
    createdAtMs: 1,
    partitions: [{ index: 0, opNum: 3 }],
  });
  const recordedIds = async (catalogue: Catalogue) =>
    (await catalogue.snapshotsIncludingDeleting("v")).map((entry) => entry.value.id).sort();

  test("a volume's delete removes its snapshot records, and a re-creation's are its own", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    const catalogue = new Catalogue(store);
    await catalogue.recordSnapshot(snapshot("daily", "v-1"));
    await catalogue.recordSnapshot(snapshot("weekly", "v-1"));
    const marked = (await catalogue.snapshotIncludingDeleting("v", "weekly"))!;
    await catalogue.markSnapshotDeleting(marked, 5);
    expect((await catalogue.deleteVolume("v"))?.id).toBe("v-1");
    expect(await recordedIds(catalogue)).toEqual([]);
    // The name created again: its snapshots are recorded afresh, and another delete of
    // an incarnation long gone (a retried purge) leaves them.
    store.put(keys.volume("v"), {
      name: "v",
      id: "v-2",
      sizeBytes: mebibyte,
      replicaCount: 2,
      partitionBytes: mebibyte,
      createdAtMs: 2,
    });
    await catalogue.recordSnapshot(snapshot("daily", "v-2"));
    expect(await catalogue.forgetSnapshotsOf("v", "v-1")).toBe(0);
    expect(await recordedIds(catalogue)).toEqual(["id-daily-v-2"]);
  });

  test("a delete cut off before its snapshot records ends with none once the purge is forgotten", async () => {
    const store = new FakeStore();
    const catalogue = new Catalogue(store);
    // Incarnation v-1's delete: purge record written, volume record deleted, then the
    // leader died; its two snapshot records are left.
    store.put(keys.purge("v-1"), { volume: "v", volumeId: "v-1", deletedAtMs: 1 });
    store.put("snapshot.v.daily", snapshot("daily", "v-1"));
    store.put("snapshot.v.weekly", snapshot("weekly", "v-1"));
    // The name created again as v-2, whose first snapshot takes the name "daily" over
    // the stale record, and whose second is named anew.
    store.put(keys.volume("v"), {
      name: "v",
      id: "v-2",
      sizeBytes: mebibyte,
      replicaCount: 2,
      partitionBytes: mebibyte,
      createdAtMs: 2,
    });
    const stale = await catalogue.snapshotIncludingDeleting("v", "daily");
    await catalogue.recordSnapshot(snapshot("daily", "v-2"), stale);
    await catalogue.recordSnapshot(snapshot("hourly", "v-2"));
    await catalogue.forgetPurge("v-1");
    expect(await recordedIds(catalogue)).toEqual(["id-daily-v-2", "id-hourly-v-2"]);
    expect(await catalogue.purges()).toEqual([]);
  });

  test("a purge record dropped while its incarnation is live leaves its snapshots", async () => {
    const store = new FakeStore();
    volumeWithTwoPartitions(store);
    const catalogue = new Catalogue(store);
    await catalogue.recordPurge({ volume: "v", volumeId: "v-1", deletedAtMs: 1 });
    await catalogue.recordSnapshot(snapshot("daily", "v-1"));
    // The delete lost a race and the volume is still there: its purge record goes.
    await catalogue.forgetPurge("v-1");
    expect(await catalogue.purges()).toEqual([]);
    expect(await recordedIds(catalogue)).toEqual(["id-daily-v-1"]);
  });

  test("a create over a stale record removed meanwhile is recorded, not refused", async () => {
    const store = new FakeStore();
    const catalogue = new Catalogue(store);
    store.put("snapshot.v.daily", snapshot("daily", "v-1"));
    const stale = await catalogue.snapshotIncludingDeleting("v", "daily");
    // Removed by the purger (forgetPurge) between the create's read and its write.
    await store.delete("snapshot.v.daily");
    await catalogue.recordSnapshot(snapshot("daily", "v-2"), stale);
    expect(await recordedIds(catalogue)).toEqual(["id-daily-v-2"]);
    // A record of the same incarnation still refuses it.
    await expect(catalogue.recordSnapshot(snapshot("daily", "v-2"))).rejects.toMatchObject({
      code: ErrorCode.AlreadyExists,
    });
  });
});

/** A FakeStore that counts its requests in flight: the most at once since `reset`. */
class CountingStore extends FakeStore {
  inflight = 0;
  peak = 0;
  requests = 0;

  private async counted<T>(work: () => Promise<T>): Promise<T> {
    this.inflight++;
    this.requests++;
    this.peak = Math.max(this.peak, this.inflight);
    try {
      // A turn of the event loop, as a request over the bus takes at least.
      await new Promise((resolve) => setImmediate(resolve));
      return await work();
    } finally {
      this.inflight--;
    }
  }

  reset(): void {
    this.peak = 0;
    this.requests = 0;
  }

  override get(key: string) {
    return this.counted(() => super.get(key));
  }

  override create(key: string, value: Uint8Array) {
    return this.counted(() => super.create(key, value));
  }

  override update(key: string, value: Uint8Array, revision: number) {
    return this.counted(() => super.update(key, value, revision));
  }
}

describe("a create of many partitions (16,384 knocked the leader out)", () => {
  const count = 16_384;
  const volume = {
    name: "big",
    id: "1-abc",
    sizeBytes: count * mebibyte,
    replicaCount: 2,
    partitionBytes: mebibyte,
    createdAtMs: 2,
  };
  const records = Array.from({ length: count }, (_, index) =>
    partition(index, { volume: "big", volumeId: "1-abc" }),
  );

  test("writes a bounded number of records at once, and reads them back so", async () => {
    const store = new CountingStore();
    const catalogue = new Catalogue(store);
    const stored = await catalogue.createVolume(volume, records, 3);
    expect(stored.map((entry) => entry.value.partition)).toEqual(records.map((r) => r.partition));
    // Three requests a partition (its leftover, the creating record, the write), so a
    // create of n partitions began 3n at once; now at most the bound run together.
    expect(store.peak).toBeLessThanOrEqual(createWritesInflightMax);
    expect(store.requests).toBeGreaterThanOrEqual(3 * count);
    store.reset();
    const listed = await catalogue.partitions("big");
    expect(listed).toHaveLength(count);
    expect(store.peak).toBeLessThanOrEqual(partitionReadsInflightMax);
  });

  test("a write that fails fails the create, and no more writes begin", async () => {
    const store = new CountingStore();
    // A leftover of a later leader at partition 100: the create must stop.
    store.put(keys.partition("big", 100), partition(100, { volume: "big", term: 9 }));
    const catalogue = new Catalogue(store);
    await expect(catalogue.createVolume(volume, records, 3)).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
    });
    expect(store.requests).toBeLessThan(count);
    expect(await catalogue.volume("big")).toBeUndefined();
  });
});

describe("mapLimited", () => {
  test("keeps the items' order, and runs at most the limit at once", async () => {
    let running = 0;
    let peak = 0;
    const results = await mapLimited([5, 1, 4, 2, 3], 2, async (item) => {
      running++;
      peak = Math.max(peak, running);
      for (let turn = 0; turn < item; turn++) await new Promise((r) => setImmediate(r));
      running--;
      return item * 10;
    });
    expect(results).toEqual([50, 10, 40, 20, 30]);
    expect(peak).toBe(2);
    expect(await mapLimited([], 4, async () => 1)).toEqual([]);
  });
});
