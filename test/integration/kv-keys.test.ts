// Key listing of the control bucket on a real nats-server (kv-keys.ts), connected with
// the coordinator's own NATS permissions: a listing returns exactly the live keys of its
// filter (deleted and purged keys excluded, more keys than one fetch asks for, keys
// updated many times), the same keys as nats.js KV keys() over a store with history,
// keys written meanwhile do not hide the ones that were there, a listing whose consumer
// goes away fails rather than return what it read, and no listing leaves a consumer on
// the stream. nats.js KV keys(), which the coordinator used before, left one per call:
// 2,650 after a 30-minute chaos run, each recovered from disk by every nats-server
// restart.

import { buckets, subjects } from "@ballast/protocol";
import { Bucket, Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, expect, test } from "vitest";
import { Catalogue, type ControlStore } from "../../services/coordinator/src/catalogue.ts";
import { keyListingBatchMax } from "../../services/coordinator/src/constants.ts";
import { listKeys } from "../../services/coordinator/src/kv-keys.ts";
import { startTestCluster } from "../support/cluster.ts";
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
  bucket = await startControlBucket("ballast-kv-keys-", logger);
  ({ kv, store } = bucket);
});
afterAll(async () => {
  await bucket?.close();
});

async function consumerCount(): Promise<number> {
  return (await kv.jsm.streams.info(kv.stream)).state.consumer_count;
}

async function storeKeys(filter: string): Promise<string[]> {
  const found: string[] = [];
  for await (const key of await store.keys(filter)) found.push(key);
  return found;
}

const sorted = (keys: Iterable<string>) => [...keys].sort();

test("lists exactly the live keys of a filter, many more than one fetch", async () => {
  const live = new Set<string>();
  const writes: Promise<unknown>[] = [];
  const put = (key: string) => {
    live.add(key);
    writes.push(kv.put(key, "{}"));
  };
  const partitions = keyListingBatchMax * 2 + 17;
  for (let index = 0; index < partitions; index++) put(`partition.big.${index}`);
  for (let index = 0; index < 40; index++) put(`partition.small.${index}`);
  for (let index = 0; index < 30; index++) put(`checkpoint.big.${index}.head-1`);
  for (const name of ["big", "small", "gone"]) put(`volume.${name}`);
  put("purge.big-1");
  await Promise.all(writes);
  // Updated many times (more than the bucket's history of 8): still one key.
  for (let revision = 0; revision < 12; revision++) await kv.put("partition.big.3", "{}");
  // Deleted, purged, and deleted then created again.
  for (let index = 0; index < 50; index += 5) {
    await kv.delete(`partition.big.${index}`);
    live.delete(`partition.big.${index}`);
  }
  for (let index = 1; index < 40; index += 7) {
    await kv.purge(`partition.small.${index}`);
    live.delete(`partition.small.${index}`);
  }
  await kv.delete("volume.gone");
  live.delete("volume.gone");
  await kv.delete("partition.big.10");
  await kv.put("partition.big.10", "{}");
  live.add("partition.big.10");

  const expected = (prefix: string) => sorted([...live].filter((key) => key.startsWith(prefix)));
  for (const [filter, prefix] of [
    ["partition.>", "partition."],
    ["partition.big.>", "partition.big."],
    ["partition.small.>", "partition.small."],
    ["checkpoint.big.>", "checkpoint.big."],
    ["volume.>", "volume."],
    ["purge.>", "purge."],
    ["sled.>", "sled."],
    [">", ""],
  ] as const) {
    const found = await listKeys(kv, filter, logger);
    expect(found.length, filter).toBe(new Set(found).size);
    expect(sorted(found), filter).toEqual(expected(prefix));
    expect(sorted(await storeKeys(filter)), filter).toEqual(expected(prefix));
  }
  expect(expected("partition.big.").length).toBeGreaterThan(keyListingBatchMax);

  // The catalogue reads through the store as the coordinator does (the listing's "{}"
  // records are no volumes: left out).
  await kv.put(
    "volume.shown",
    JSON.stringify({
      name: "shown",
      sizeBytes: 1,
      replicaCount: 2,
      partitionBytes: 1,
      createdAtMs: 1,
    }),
  );
  expect((await new Catalogue(store).volumes("skip")).map((volume) => volume.name)).toContain(
    "shown",
  );

  expect(await consumerCount()).toBe(0);
  expect(warnings).toEqual([]);
});

/** The KV's own listing, each key once. */
async function kvKeys(filter: string): Promise<string[]> {
  const found = new Set<string>();
  for await (const key of await kv.keys(filter)) found.add(key);
  return sorted(found);
}

test("lists what the KV's own keys() lists, over history, deletes and purges", async () => {
  // More keys than one fetch asks for, each with its own history: up to 11 revisions
  // (past the bucket's 8), deleted, purged, deleted or purged then written again, and
  // keys one token deeper, so that `*` and `>` differ.
  const count = keyListingBatchMax * 2;
  await Promise.all(
    Array.from({ length: count }, async (_, index) => {
      const key = `history.${index}`;
      for (let revision = 0; revision <= index % 11; revision++) await kv.put(key, "{}");
      if (index % 5 === 0) await kv.delete(key);
      if (index % 7 === 0) await kv.purge(key);
      if (index % 11 === 0) await kv.put(key, "{}");
      if (index % 3 === 0) await kv.put(`${key}.deeper`, "{}");
      if (index % 9 === 0) await kv.delete(`${key}.deeper`);
    }),
  );
  for (const filter of [
    "history.>",
    "history.*",
    "history.*.deeper",
    "history.33",
    "history.35",
    "history.7.>",
    ">",
  ]) {
    const found = await listKeys(kv, filter, logger);
    expect(found.length, filter).toBe(new Set(found).size);
    expect(sorted(found), filter).toEqual(await kvKeys(filter));
  }
  expect((await kvKeys("history.*")).length).toBeGreaterThan(keyListingBatchMax);
  // Fetched one message at a time, each fetch's pending count ends the listing.
  expect(sorted(await listKeys(kv, "history.>", logger, { batchMax: 1, fetchMs: 1000 }))).toEqual(
    await kvKeys("history.>"),
  );
  const names: string[] = [];
  for await (const info of kv.jsm.consumers.list(kv.stream)) names.push(info.name);
  await Promise.all(names.map((name) => kv.jsm.consumers.delete(kv.stream, name)));
  expect(await consumerCount()).toBe(0);
});

test("a listing whose consumer is deleted under it fails, never returns what it read", async () => {
  const quiet = { warn: () => {} };
  await Promise.all(Array.from({ length: 300 }, (_, index) => kv.put(`doomed.${index}`, "{}")));
  let listing = true;
  let deleted = 0;
  // Deletes every listing consumer it sees until the listing settles.
  const deleter = (async () => {
    while (listing) {
      for await (const info of kv.jsm.consumers.list(kv.stream)) {
        if (!info.name.startsWith("ballast_keys_")) continue;
        await kv.jsm.consumers.delete(kv.stream, info.name).catch(() => undefined);
        deleted++;
      }
    }
  })();
  const outcome = await listKeys(kv, "doomed.>", quiet, { batchMax: 1, fetchMs: 1000 })
    .then((keys) => ({ keys }))
    .catch((error: Error) => ({ error }))
    .finally(() => {
      listing = false;
    });
  await deleter;
  expect(deleted).toBeGreaterThan(0);
  // nats.js answers the fetch with "heartbeats missed"; the listing passes that on.
  expect(outcome).toHaveProperty("error");
  expect(await consumerCount()).toBe(0);
});

test("no listing leaves a consumer on the stream (KV keys() left one per call)", async () => {
  await kv.put("volume.counted", "{}");
  const catalogue = new Catalogue(store);
  for (let round = 0; round < 25; round++) {
    await catalogue.volumes("skip");
    await storeKeys("partition.>");
    await storeKeys("nothing.>");
  }
  expect(await consumerCount()).toBe(0);

  // What the coordinator did before: each listing left a consumer behind.
  for (let round = 0; round < 5; round++) for await (const _ of await kv.keys("volume.>"));
  expect(await consumerCount()).toBeGreaterThanOrEqual(5);
  const names: string[] = [];
  for await (const info of kv.jsm.consumers.list(kv.stream)) names.push(info.name);
  await Promise.all(names.map((name) => kv.jsm.consumers.delete(kv.stream, name)));
  expect(await consumerCount()).toBe(0);
});

test("keys written during a listing do not hide the keys that were there before", async () => {
  const before: string[] = [];
  for (let index = 0; index < 300; index++) before.push(`checkpoint.busy.${index}.head-1`);
  await Promise.all(before.map((key) => kv.put(key, "{}")));
  let writing = true;
  let written = 0;
  const writer = (async () => {
    while (writing) {
      // New keys and updates of the old ones, under the listed filter.
      await kv.put(`checkpoint.busy.${300 + written}.head-2`, "{}");
      await kv.put(before[written % before.length]!, "{}");
      written++;
      // Paced: a writer as fast as the listing's own round trips can keep something
      // pending after every fetch, and the listing then fails on its overrun limit (as
      // it should: it never stops short); the coordinator's writes are far slower.
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  try {
    for (let round = 0; round < 4; round++) {
      const found = await listKeys(kv, "checkpoint.busy.>", logger);
      expect(found.length).toBe(new Set(found).size);
      const set = new Set(found);
      expect(before.filter((key) => !set.has(key))).toEqual([]);
      for (const key of found) expect(key).toMatch(/^checkpoint\.busy\.\d+\.head-[12]$/);
    }
  } finally {
    writing = false;
    await writer;
  }
  expect(written).toBeGreaterThan(0);
  expect(await consumerCount()).toBe(0);
});

test("a coordinator answering volume lists leaves no consumer on the control stream", async () => {
  const cluster = await startTestCluster();
  try {
    const control = await new Kvm(cluster.bus.connection).open(buckets.control);
    if (!(control instanceof Bucket)) throw new Error("not a bucket");
    const consumers = async () =>
      (await control.jsm.streams.info(control.stream)).state.consumer_count;
    // Let the leader settle: it lists keys in its first passes too.
    await cluster.bus.request(subjects.coordinator.build(), { type: "volume.list.v1" });
    const before = await consumers();
    for (let round = 0; round < 30; round++) {
      await cluster.bus.request(subjects.coordinator.build(), { type: "volume.list.v1" });
    }
    // Its catalogue watches (a handful of consumers) remain; no listing adds one.
    expect(await consumers()).toBe(before);
  } finally {
    await cluster.stop();
  }
});
