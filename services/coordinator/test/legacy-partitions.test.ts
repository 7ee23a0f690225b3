// Partitions larger than today's bound (`partitionBytesMax`, 64 GiB before it was 4 GiB)
// are still served; a clone of such a volume keeps its parent's partition size, and a
// create is bounded by what today's partitions can make. Unit test on the catalogue's
// fake store (named as such in fake-store.ts) and the two-leader harness's leader.

import { ErrorCode, limits } from "@ballast/protocol";
import { expect, test } from "vitest";
import { keys, type SnapshotRecord, type VolumeRecord } from "../src/catalogue.ts";
import type { PartitionRecord } from "../src/decisions.ts";
import { volumeBytesCreatableMax } from "../src/volumes.ts";
import { FakeStore } from "./fake-store.ts";
import { leaderOver, listed, open, seed } from "./two-leaders.ts";

const gibibyte = 1024 ** 3;

test("a volume whose partitions are larger than today's bound can still be cloned", async () => {
  const store = new FakeStore();
  seed(store);
  // Volume v made when partitions could be 8 GiB: two of them, and its snapshot s1.
  const legacyBytes = 8 * gibibyte;
  expect(legacyBytes).toBeGreaterThan(limits.partitionBytesMax);
  const volume = store.value<VolumeRecord>(keys.volume("v"))!;
  store.put(keys.volume("v"), {
    ...volume,
    sizeBytes: 2 * legacyBytes,
    partitionBytes: legacyBytes,
  });
  for (const partition of [0, 1]) {
    const record = store.value<PartitionRecord>(keys.partition("v", partition))!;
    store.put(keys.partition("v", partition), {
      ...record,
      partitionStart: partition * legacyBytes,
      partitionBytes: legacyBytes,
    });
  }
  const snapshot = store.value<SnapshotRecord>("snapshot.v.s1")!;
  store.put("snapshot.v.s1", { ...snapshot, sizeBytes: 2 * legacyBytes });

  const leader = leaderOver(store, 1, open);
  await leader.volumes.clone(leader.tenure, {
    type: "volume.clone.v1",
    volume: "v",
    snapshot: "s1",
    name: "c",
  });
  expect(listed(store, "c")).toBe(true);
  expect(store.value<VolumeRecord>(keys.volume("c"))?.partitionBytes).toBe(legacyBytes);
});

test("a create larger than today's partitions can make is refused, naming that bound", async () => {
  const store = new FakeStore();
  seed(store);
  const leader = leaderOver(store, 1, open);
  expect(volumeBytesCreatableMax).toBe(limits.partitionsPerVolumeMax * limits.partitionBytesMax);
  const create = (sizeBytes: number, partitionBytes: number) =>
    leader.volumes.create(leader.tenure, {
      type: "volume.create.v1",
      name: "big",
      sizeBytes,
      partitionBytes,
    });
  // Over it: no partition size would do, so none is suggested.
  const over = create(2 * volumeBytesCreatableMax, limits.partitionBytesMax);
  await expect(over).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
  await expect(over).rejects.toThrow(`size must be at most ${volumeBytesCreatableMax} bytes`);
  await expect(over).rejects.not.toThrow("use partitions of at least");
  // Under it, too many small partitions: the size suggested is one a create accepts.
  const many = create(volumeBytesCreatableMax, gibibyte);
  await expect(many).rejects.toThrow(
    `use partitions of at least ${limits.partitionBytesMax} bytes`,
  );
  expect(store.value(keys.volume("big"))).toBeUndefined();
});
