// The control bucket's delete-marker cleanup on a real nats-server (delete-markers.ts),
// connected with the coordinator's own NATS permissions: deleted keys leave markers that
// every listing reads; a cleanup removes those older than its age and no others, keeps
// every live key and a key written again after its marker, and a key whose marker is
// gone is created again through the control store as any absent key is.

import { randomBytes } from "node:crypto";
import type { Bucket } from "@nats-io/kv";
import { afterAll, beforeAll, expect, test } from "vitest";
import { Catalogue, type ControlStore, keys } from "../../services/coordinator/src/catalogue.ts";
import { removeDeleteMarkers } from "../../services/coordinator/src/delete-markers.ts";
import {
  keyListingConsumerConfig,
  listDeleteMarkers,
  listKeys,
} from "../../services/coordinator/src/kv-keys.ts";
import { type ControlBucket, startControlBucket } from "../support/control-bucket.ts";

let kv: Bucket;
let store: ControlStore;
const warnings: unknown[] = [];
const logger = {
  warn: (...args: unknown[]) => warnings.push(args),
  error: (...args: unknown[]) => warnings.push(args),
};

let bucket: ControlBucket;

beforeAll(async () => {
  bucket = await startControlBucket("ballast-delete-markers-", logger);
  ({ kv, store } = bucket);
});
afterAll(async () => {
  await bucket?.close();
});

/** How many messages a listing of `filter` is delivered: one per key, markers included. */
async function listedMessages(filter: string): Promise<number> {
  const name = `count_${randomBytes(6).toString("hex")}`;
  const info = await kv.jsm.consumers.add(
    kv.stream,
    keyListingConsumerConfig(name, kv.fullKeyName(kv.encodeKey(filter))),
  );
  await kv.jsm.consumers.delete(kv.stream, name);
  return info.num_pending;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("a cleanup removes the markers older than its age, and nothing live or younger", async () => {
  // Volumes created and deleted again and again, each with a few revisions first.
  for (let index = 0; index < 40; index++) {
    for (let revision = 0; revision < 3; revision++) await kv.put(`volume.old-${index}`, "{}");
    await kv.delete(`volume.old-${index}`);
    await kv.put(`purge.old-${index}`, "{}");
    await kv.purge(`purge.old-${index}`);
  }
  await kv.put("volume.live", "{}");
  // Deleted, then written again: live, with a marker below its value.
  await kv.put("volume.back", "{}");
  await kv.delete("volume.back");
  await kv.put("volume.back", "{}");
  expect(await listedMessages(">")).toBe(82);
  expect(await listedMessages("purge.>")).toBe(40);
  await sleep(1500);
  // Deleted just now: younger than the age, kept.
  await kv.put("volume.young", "{}");
  await kv.delete("volume.young");

  expect(await removeDeleteMarkers(kv, 1000, logger)).toBe(80);
  expect(await listedMessages(">")).toBe(3);
  expect(await listedMessages("purge.>")).toBe(0);
  expect((await listDeleteMarkers(kv, ">", logger)).map((marker) => marker.key)).toEqual([
    "volume.young",
  ]);
  expect((await listKeys(kv, ">", logger)).sort()).toEqual(["volume.back", "volume.live"]);
  expect((await kv.get("volume.back"))?.operation).toBe("PUT");
  // The removed keys hold nothing at all now: no marker, no older revision.
  expect(await kv.get("volume.old-3")).toBeNull();
  // What is left: volume.live's value, volume.back's history (live keys are left as they
  // are) and volume.young's value and marker.
  expect((await kv.jsm.streams.info(kv.stream)).state.messages).toBe(1 + 3 + 2);
  // The young marker goes once it is old enough.
  await sleep(1100);
  expect(await removeDeleteMarkers(kv, 1000, logger)).toBe(1);
  expect(await listedMessages(">")).toBe(2);
  expect((await kv.jsm.streams.info(kv.stream)).state.consumer_count).toBe(0);
  expect(warnings).toEqual([]);
});

test("the purge is bounded by the marker: a value written after it stays", async () => {
  await kv.put("partition.raced.0", "{}");
  await kv.delete("partition.raced.0");
  const [marker] = await listDeleteMarkers(kv, "partition.raced.>", logger);
  // Created again between a cleanup's listing and its purge.
  const revision = await kv.put("partition.raced.0", '{"again":true}');
  await kv.jsm.streams.purge(kv.stream, {
    filter: kv.fullKeyName(kv.encodeKey(marker!.key)),
    seq: marker!.sequence + 1,
  });
  const entry = await kv.get("partition.raced.0");
  expect(entry?.revision).toBe(revision);
  expect(entry?.json()).toEqual({ again: true });
});

test("a name whose markers are gone is created again, and compare-and-set on it holds", async () => {
  const catalogue = new Catalogue(store);
  const volume = {
    name: "again",
    id: "1-a",
    sizeBytes: 1,
    replicaCount: 1,
    partitionBytes: 1,
    createdAtMs: 1,
  };
  const partition = {
    volume: "again",
    volumeId: "1-a",
    partition: 0,
    partitionStart: 0,
    partitionBytes: 1,
    epoch: 1,
    primary: "head-1",
    secondaries: [],
  };
  await catalogue.createVolume(volume, [partition], 1);
  const read = await catalogue.volume("again");
  await catalogue.deleteVolume("again");
  expect(await store.removeDeleteMarkers!(0)).toBeGreaterThanOrEqual(2);
  expect(await kv.get(keys.volume("again"))).toBeNull();
  // A stale compare-and-set still fails on a key that holds nothing.
  await expect(
    store.update(keys.volume("again"), new TextEncoder().encode("{}"), read!.revision),
  ).rejects.toThrow(/wrong last sequence/i);
  await catalogue.createVolume({ ...volume, id: "2-b" }, [{ ...partition, volumeId: "2-b" }], 1);
  expect((await catalogue.volume("again"))?.value.id).toBe("2-b");
  expect((await catalogue.partitions("again")).map((entry) => entry.value.volumeId)).toEqual([
    "2-b",
  ]);
});
