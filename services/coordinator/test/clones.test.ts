// Clones in the catalogue (clones.ts): which volumes are clones of a snapshot, the
// refusal to delete a parent snapshot (or volume) while clones exist, a snapshot listing
// naming its clones, the overlap following a shrink down and never back up, and the
// size of a snapshot recorded before clones. Against the real catalogue on an in-memory
// KV store and partition primaries that answer drops.

import { type BallastError, ErrorCode, type Message } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue, keys, type VolumeRecord } from "../src/catalogue.ts";
import {
  clonesOf,
  depthOf,
  parentAfterResize,
  refuseSnapshotDelete,
  snapshotSizeOf,
} from "../src/clones.ts";
import { Snapshots } from "../src/snapshots.ts";
import { FakeStore } from "./fake-store.ts";

const partitionBytes = 1024 * 1024;

function volume(name: string, parent?: VolumeRecord["parent"]): VolumeRecord {
  return {
    name,
    id: `1-${name}`,
    sizeBytes: 2 * partitionBytes,
    replicaCount: 2,
    partitionBytes,
    createdAtMs: 0,
    ...(parent === undefined ? {} : { parent }),
  };
}

const parentOf = (snapshot: string, snapshotId: string) => ({
  volume: "v",
  volumeId: "1-v",
  snapshot,
  snapshotId,
  overlap: 2 * partitionBytes,
});

function start() {
  const store = new FakeStore();
  const catalogue = new Catalogue(store);
  store.put(keys.volume("v"), volume("v"));
  for (const [name, id] of [
    ["s1", "sid-1"],
    ["s2", "sid-2"],
  ] as const) {
    store.put(`snapshot.v.${name}`, {
      volume: "v",
      name,
      id,
      volumeId: "1-v",
      createdAtMs: 0,
      partitions: [
        { index: 0, opNum: 3 },
        { index: 1, opNum: 3 },
      ],
    });
  }
  const drops: string[] = [];
  const snapshots = new Snapshots({
    // A fake of the store marks: one control store throughout, every create witnessed.
    storeMarks: { witnessCreate: async () => undefined },
    service: {
      bus: {
        request: async (_subject: string, message: Message) => {
          if (message.type !== "partition.snapshot.drop.v1") throw new Error(message.type);
          drops.push(message.snapshot);
          return { epoch: 1, opNum: 9 };
        },
      },
      logger: { info: () => undefined, warn: () => undefined },
    } as never,
    catalogue,
  });
  return { store, catalogue, snapshots, drops };
}

describe("clones in the catalogue", () => {
  test("a snapshot with clones is not deleted, and says which; without them it is", async () => {
    const { store, snapshots, drops } = start();
    store.put(keys.volume("c2"), volume("c2", parentOf("s1", "sid-1")));
    store.put(keys.volume("c1"), volume("c1", parentOf("s1", "sid-1")));
    store.put(keys.volume("other"), volume("other", parentOf("s2", "sid-2")));
    const refused = await snapshots
      .delete({ type: "snapshot.delete.v1", volume: "v", name: "s1" })
      .catch((error: BallastError) => error);
    expect(refused).toMatchObject({
      code: ErrorCode.InvalidArgument,
      message: "snapshot s1 of v has clones: c1, c2; delete them first",
    });
    // Refused before anything was dropped on any partition.
    expect(drops).toEqual([]);
    const listed = await snapshots.list("v");
    expect(listed.snapshots.map((entry) => [entry.name, entry.clones])).toEqual([
      ["s1", ["c1", "c2"]],
      ["s2", ["other"]],
    ]);
    store.delete(keys.volume("c1"));
    store.delete(keys.volume("c2"));
    await snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s1" });
    expect(drops).toEqual(["sid-1", "sid-1"]);
    expect((await snapshots.list("v")).snapshots.map((entry) => entry.name)).toEqual(["s2"]);
  });

  test("a shrink lowers a clone's overlap in its record; a grow leaves it", async () => {
    const { store, catalogue } = start();
    store.put(keys.volume("c"), volume("c", parentOf("s1", "sid-1")));
    const shrunk = await catalogue.resizeVolume(
      (await catalogue.volume("c"))!,
      partitionBytes + 4096,
      1,
    );
    expect(shrunk.record?.parent?.overlap).toBe(partitionBytes + 4096);
    const grown = await catalogue.resizeVolume(
      (await catalogue.volume("c"))!,
      4 * partitionBytes,
      1,
    );
    expect(grown.record?.parent?.overlap).toBe(partitionBytes + 4096);
    expect((await catalogue.volume("c"))?.value.parent?.overlap).toBe(partitionBytes + 4096);
    // A volume that is no clone gets no parent.
    const plain = await catalogue.resizeVolume((await catalogue.volume("v"))!, partitionBytes, 1);
    expect(plain.record).not.toHaveProperty("parent");
  });

  test("the pure rules", () => {
    const parent = parentOf("s1", "sid-1");
    expect(parentAfterResize(undefined, 10)).toBeUndefined();
    expect(parentAfterResize(parent, 4 * partitionBytes)).toBe(parent);
    expect(parentAfterResize(parent, 512)?.overlap).toBe(512);
    const volumes = [volume("v"), volume("b", parent), volume("a", parentOf("s2", "sid-2"))];
    expect(clonesOf(volumes, "1-v")).toEqual(["a", "b"]);
    expect(clonesOf(volumes, "1-v", "sid-1")).toEqual(["b"]);
    expect(clonesOf(volumes, "1-other")).toEqual([]);
    expect(() => refuseSnapshotDelete("v", "s1", [])).not.toThrow();
    // A snapshot recorded before clones covers its partitions, within the volume's size.
    const record = { partitions: [{}, {}] };
    expect(snapshotSizeOf(record, { sizeBytes: 3 * partitionBytes, partitionBytes })).toBe(
      2 * partitionBytes,
    );
    expect(snapshotSizeOf(record, { sizeBytes: partitionBytes + 512, partitionBytes })).toBe(
      partitionBytes + 512,
    );
    expect(snapshotSizeOf({ ...record, sizeBytes: 4096 }, volume("v"))).toBe(4096);
    const byName = new Map(volumes.map((entry) => [entry.name, entry]));
    byName.set("g", volume("g", { ...parent, volume: "b", volumeId: "1-b" }));
    expect(depthOf(byName.get("v")!, byName)).toBe(0);
    expect(depthOf(byName.get("g")!, byName)).toBe(2);
  });
});
