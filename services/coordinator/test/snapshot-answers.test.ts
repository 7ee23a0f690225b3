// What the leader answers about snapshots fits one message whatever the volume's size:
// a snapshot of the largest volume (65,536 partitions) is created, listed with seven
// more and rolled back to against scripted partition primaries (a fake bus that answers
// every partition alike) and the real catalogue on an in-memory KV store. The records
// keep every partition's op; the answers name the first `snapshotPartitionsListedMax`
// and the count, the first `snapshotClonesListedMax` clones and their count, and none of
// the record's marks or pins. Before, a list of this volume's eight snapshots encoded to
// about 11 MiB (the service shell refused it as PayloadTooLarge).

import { encodeResult, limits, type Message, resultSchemas, subjects } from "@ballast/protocol";
import { expect, test, vi } from "vitest";
import { Catalogue, keys, type SnapshotRecord } from "../src/catalogue.ts";
import { Snapshots } from "../src/snapshots.ts";
import { FakeStore } from "./fake-store.ts";

const partitionBytes = 1024 * 1024;
const volumeId = "1-aaaaaaaaaaaa";

// The monotonic clock stands still here. The leader's snapshot steps have deadlines on
// it (10 s for a create's takes), and the scripted primaries answer at once, so only a
// starved CPU ran them out: a take of 65,536 partitions failed so on a loaded machine.
// What these tests check is what the answers hold, not how fast they come.
vi.mock("../src/clock.ts", async (importOriginal) => ({
  ...(await importOriginal<typeof import("../src/clock.ts")>()),
  now: () => 0,
}));

/**
 * The largest volume, `big`, with every partition's primary answering alike: ops past
 * 2^32 (msgpack's longest integers), one epoch, holds always held throughout.
 */
function start(partitionCount: number) {
  const store = new FakeStore();
  const catalogue = new Catalogue(store);
  store.put(keys.volume("big"), {
    name: "big",
    id: volumeId,
    sizeBytes: partitionCount * partitionBytes,
    replicaCount: 2,
    partitionBytes,
    createdAtMs: 0,
  });
  let opNum = 2 ** 40;
  const rolledBack = new Set<number>();
  const snapshots = new Snapshots({
    // A fake of the store marks: one control store throughout, every create witnessed.
    storeMarks: { witnessCreate: async () => undefined },
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
          if (!("partition" in message) || !subject.startsWith("ballast.v1.partition.big.")) {
            throw new Error(`unexpected ${subject}`);
          }
          expect(subject).toBe(subjects.partitionControl.build("big", message.partition));
          switch (message.type) {
            case "partition.snapshot.hold.v1":
              return { epoch: 1, lastOpNum: opNum };
            case "partition.snapshot.take.v1":
            case "partition.snapshot.drop.v1":
              return { epoch: 1, opNum: ++opNum };
            case "partition.snapshot.release.v1":
              return { held: true };
            case "partition.snapshot.rollback.v1":
              rolledBack.add(message.partition);
              return { epoch: 1, opNum: ++opNum };
            default:
              throw new Error(`unexpected ${message.type}`);
          }
        },
      },
      logger: { info: () => undefined, warn: () => undefined },
    } as never,
    catalogue,
    members: { list: () => [] },
  });
  return { catalogue, snapshots, store, rolledBack };
}

test("a snapshot of the largest volume: create, list and rollback answer within one message", async () => {
  const count = limits.partitionsPerVolumeMax;
  const { catalogue, snapshots, store, rolledBack } = start(count);
  const created = await snapshots.create({ type: "snapshot.create.v1", volume: "big", name: "s0" });
  // The record keeps every partition's op; the answer names the first ones and the count.
  const record = (await catalogue.snapshot("big", "s0"))!.value;
  expect(record.partitions).toHaveLength(count);
  expect(created.partitionCount).toBe(count);
  expect(created.partitions).toEqual(
    record.partitions.slice(0, limits.snapshotPartitionsListedMax),
  );
  expect(resultSchemas["snapshot.create.v1"].safeParse(created).success).toBe(true);
  expect(encodeResult(created).length).toBeLessThanOrEqual(limits.messageBytesMax);

  // Seven more of the same size, as records (taking each would only repeat the above),
  // carrying a rollback mark and a clone pin that no answer shows.
  const names = Array.from({ length: 7 }, (_, index) => `s${index + 1}`);
  for (const name of names) {
    const copy: SnapshotRecord = {
      ...record,
      name,
      id: `${record.id}-${name}`,
      rollbacks: [{ token: "t", sinceMs: 0 }],
      clonePins: [
        {
          volume: "gone",
          volumeId: "2-bbbbbbbbbbbb",
          revision: 1,
          snapshotId: record.id,
          sinceMs: 0,
        },
      ],
    };
    store.put(`snapshot.big.${name}`, copy);
  }
  const listed = await snapshots.list("big");
  expect(listed.snapshots.map((snapshot) => snapshot.name)).toEqual(["s0", ...names]);
  for (const snapshot of listed.snapshots) {
    expect(snapshot.partitionCount).toBe(count);
    expect(snapshot.partitions).toHaveLength(limits.snapshotPartitionsListedMax);
    expect(Object.keys(snapshot)).not.toContain("rollbacks");
    expect(Object.keys(snapshot)).not.toContain("clonePins");
  }
  expect(resultSchemas["snapshot.list.v1"].safeParse(listed).success).toBe(true);
  expect(encodeResult(listed).length).toBeLessThanOrEqual(limits.messageBytesMax);

  const answer = await snapshots.rollback({
    type: "volume.rollback.v1",
    volume: "big",
    snapshot: "s0",
    force: true,
  });
  expect(rolledBack.size).toBe(count);
  expect(answer.partitionCount).toBe(count);
  expect(answer.partitions).toHaveLength(limits.snapshotPartitionsListedMax);
  expect(answer.partitions.map((partition) => partition.index)).toEqual(
    Array.from({ length: limits.snapshotPartitionsListedMax }, (_, index) => index),
  );
  expect(resultSchemas["volume.rollback.v1"].safeParse(answer).success).toBe(true);
  expect(encodeResult(answer).length).toBeLessThanOrEqual(limits.messageBytesMax);
}, 120_000);

test("a snapshot with more clones than a listing names: the first ones by name, and the count", async () => {
  const { snapshots, store } = start(2);
  const created = await snapshots.create({ type: "snapshot.create.v1", volume: "big", name: "s" });
  const clones = limits.snapshotClonesListedMax + 3;
  const names = Array.from({ length: clones }, (_, index) => `c-${String(index).padStart(4, "0")}`);
  for (const [index, name] of names.entries()) {
    store.put(keys.volume(name), {
      name,
      id: `3-${String(index).padStart(12, "0")}`,
      sizeBytes: 2 * partitionBytes,
      replicaCount: 2,
      partitionBytes,
      createdAtMs: 0,
      parent: {
        volume: "big",
        volumeId,
        snapshot: "s",
        snapshotId: created.id,
        overlap: 2 * partitionBytes,
      },
    });
  }
  const [listed] = (await snapshots.list("big")).snapshots;
  expect(listed!.clones).toEqual(names.slice(0, limits.snapshotClonesListedMax));
  expect(listed!.cloneCount).toBe(clones);
  expect(resultSchemas["snapshot.list.v1"].safeParse({ snapshots: [listed] }).success).toBe(true);
  // A snapshot of a small volume is named whole, as before.
  expect(listed!.partitions.map((partition) => partition.index)).toEqual([0, 1]);
  expect(listed!.partitionCount).toBe(2);
});
