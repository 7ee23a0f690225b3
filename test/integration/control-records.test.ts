// Damaged control records read by the real Catalogue over the control bucket on a real
// nats-server (connected with the coordinator's permissions). For every kind of record:
// one that is not JSON, of the wrong types, missing fields, or with numbers no field can
// hold is refused as an UnreadableRecordError naming its key and what is wrong, never
// quoting the stored text; a listing that may do without it skips it, one that may not
// refuses; it is reported once per revision; and nothing is written on its account
// (before, such a record was read as whatever JSON.parse made of it: a volume of size
// "huge" was deleted like any other, with its partitions, and msgpack failed every
// listing with V8's message quoting the value).

import { buckets, encodeValue, isUnreadableRecord, UnreadableRecordError } from "@ballast/protocol";
import type { Bucket } from "@nats-io/kv";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  Catalogue,
  keys,
  UnreadableRecords,
  type VolumeRecord,
} from "../../services/coordinator/src/catalogue.ts";
import type { PartitionRecord } from "../../services/coordinator/src/decisions.ts";
import { Leadership, leaderKey } from "../../services/coordinator/src/leadership.ts";
import { type ControlBucket, startControlBucket } from "../support/control-bucket.ts";

const mebibyte = 1024 * 1024;
/** Stored in every damaged record: no error message may carry it. */
const marker = "stored-text-marker";

const logger = { warn: () => undefined, error: () => undefined };
let bucket: ControlBucket;
let kv: Bucket;

beforeAll(async () => {
  bucket = await startControlBucket("ballast-control-records-", logger);
  kv = bucket.kv;
  expect(kv.bucket).toBe(buckets.control);
});
afterAll(async () => {
  await bucket?.close();
});

function json(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

function volumeOf(name: string, id: string): VolumeRecord {
  return {
    name,
    id,
    sizeBytes: 2 * mebibyte,
    replicaCount: 2,
    partitionBytes: mebibyte,
    createdAtMs: 1,
  };
}

function partitionsOf(volume: VolumeRecord): PartitionRecord[] {
  return [0, 1].map((index) => ({
    volume: volume.name,
    volumeId: volume.id!,
    partition: index,
    partitionStart: index * mebibyte,
    partitionBytes: mebibyte,
    epoch: 1,
    primary: "head-1",
    secondaries: ["head-2"],
  }));
}

/** Records a catalogue's reports: warnings (unreadable) and infos (decodes again). */
function recordingReports() {
  const warned: { key: string; revision: number }[] = [];
  const cleared: string[] = [];
  const reports = new UnreadableRecords({
    warn: (fields: unknown) => warned.push(fields as { key: string; revision: number }),
    info: (fields: unknown) => cleared.push((fields as { key: string }).key),
  } as never);
  return { reports, warned, cleared };
}

async function refusal(work: Promise<unknown>): Promise<UnreadableRecordError> {
  const error = await work.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UnreadableRecordError);
  return error as UnreadableRecordError;
}

/** Damage of each sort, for a record of `fields` (a whole record of its kind). */
function damagesOf(fields: Record<string, unknown>): [string, Uint8Array][] {
  const [first, second = first] = Object.keys(fields);
  const { [first!]: _dropped, ...missing } = fields;
  const numeric = Object.keys(fields).find((key) => typeof fields[key] === "number")!;
  const infinite = JSON.stringify({ ...fields, [numeric]: "INFINITE", note: marker });
  return [
    ["msgpack", encodeValue({ ok: true, result: { marker } })],
    ["not JSON", new TextEncoder().encode(`{"${marker}": `)],
    ["not UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])],
    ["an array", json([marker])],
    ["a field missing", json({ ...missing, note: marker })],
    ["a field of the wrong type", json({ ...fields, [second!]: { marker } })],
    ["a number past a safe integer", json({ ...fields, [numeric]: 2 ** 60, note: marker })],
    [
      "a number JSON reads as Infinity",
      new TextEncoder().encode(infinite.replace('"INFINITE"', "1e400")),
    ],
  ];
}

test("every kind: a damaged record is refused, naming its key, never its text", async () => {
  const catalogue = new Catalogue(bucket.store);
  const kinds: {
    kind: string;
    key: string;
    fields: Record<string, unknown>;
    read: () => Promise<unknown>;
  }[] = [
    {
      kind: "volume",
      key: keys.volume("k"),
      fields: { ...volumeOf("k", "1-aaaa") },
      read: () => catalogue.volume("k"),
    },
    {
      kind: "partition",
      key: keys.partition("k", 0),
      fields: { ...partitionsOf(volumeOf("k", "1-aaaa"))[0]! },
      read: () => catalogue.partition("k", 0),
    },
    {
      kind: "checkpoint",
      key: keys.checkpoint("k", 0, "head-1"),
      fields: { opNum: 4, blobKey: "b/1-aaaa/0", sleds: ["sled-1"], bytes: 10, createdAtMs: 1 },
      read: () => catalogue.checkpoint("k", 0, "head-1"),
    },
    {
      kind: "snapshot",
      key: "snapshot.k.s",
      fields: {
        volume: "k",
        name: "s",
        id: "s-1",
        volumeId: "1-aaaa",
        createdAtMs: 1,
        partitions: [{ index: 0, opNum: 3 }],
      },
      read: () => catalogue.snapshot("k", "s"),
    },
    {
      kind: "purge",
      key: keys.purge("1-bbbb"),
      fields: { volume: "k", volumeId: "1-bbbb", deletedAtMs: 1 },
      read: () => catalogue.purges(),
    },
    {
      kind: "sled",
      key: keys.sled("sled-1"),
      fields: { id: "sled-1", firstSeenMs: 1, lastSeenMs: 2, state: "in", since: 1 },
      read: () => catalogue.sledRecords(),
    },
    {
      kind: "incarnation",
      key: keys.incarnation("k"),
      fields: { incarnation: 3 },
      read: () => catalogue.nextIncarnation("k"),
    },
  ];
  for (const { kind, key, fields, read } of kinds) {
    // The whole record reads; each damaged one is refused.
    await kv.put(key, json(fields));
    await read();
    for (const [damage, bytes] of damagesOf(fields)) {
      const revision = await kv.put(key, bytes);
      const error = await refusal(read());
      expect(error.key, `${kind}, ${damage}`).toBe(key);
      expect(error.kind, `${kind}, ${damage}`).toBe(kind);
      expect(error.message, `${kind}, ${damage}`).toContain(`control record ${key} is unreadable`);
      expect(error.message, `${kind}, ${damage}`).not.toContain(marker);
      // Nothing was written over it.
      expect((await kv.get(key))?.revision, `${kind}, ${damage}`).toBe(revision);
    }
    await kv.delete(key);
  }
});

test("a volume record of the wrong types is neither deleted nor taken for gone", async () => {
  const catalogue = new Catalogue(bucket.store);
  const kept = volumeOf("kept", "1-cccc");
  const mangled = volumeOf("mangled", "1-dddd");
  for (const volume of [kept, mangled]) {
    await catalogue.createVolume(volume, partitionsOf(volume), 1);
  }
  const revision = await kv.put(
    keys.volume("mangled"),
    json({ ...mangled, id: 7, sizeBytes: "huge", note: marker }),
  );

  // Refused by name: not "no such volume", and no delete.
  await refusal(catalogue.volume("mangled"));
  const refused = await refusal(catalogue.deleteVolume("mangled"));
  expect(refused.message).toContain(
    "control record volume.mangled is unreadable: not a volume record: id:",
  );
  expect((await kv.get(keys.volume("mangled")))?.revision).toBe(revision);
  for (const index of [0, 1]) {
    expect((await kv.get(keys.partition("mangled", index)))?.operation).toBe("PUT");
  }

  // A listing that may do without it leaves it out; one that may not refuses.
  expect((await catalogue.volumes("skip")).map((volume) => volume.name)).toEqual(["kept"]);
  expect((await refusal(catalogue.volumes())).key).toBe(keys.volume("mangled"));
  expect((await refusal(catalogue.volumesIncludingCreating())).key).toBe(keys.volume("mangled"));
  expect(catalogue.unreadable.has(keys.volume("mangled"))).toBe(true);

  // Reported once per revision, however often it is read.
  const { reports, warned, cleared } = recordingReports();
  const reporting = new Catalogue(bucket.store, reports);
  for (let read = 0; read < 3; read++) await reporting.volumes("skip");
  expect(warned.filter((fields) => fields.key === keys.volume("mangled"))).toHaveLength(1);
  await kv.put(keys.volume("mangled"), json({ ...mangled, replicaCount: -1 }));
  await reporting.volumes("skip");
  expect(warned.filter((fields) => fields.key === keys.volume("mangled"))).toHaveLength(2);

  // Repaired, it is a volume again, and may be deleted.
  await kv.put(keys.volume("mangled"), json(mangled));
  expect((await reporting.volumes()).map((volume) => volume.name)).toEqual(["kept", "mangled"]);
  expect(reporting.unreadable.has(keys.volume("mangled"))).toBe(false);
  expect(cleared).toEqual([keys.volume("mangled")]);
  expect((await catalogue.deleteVolume("mangled"))?.id).toBe("1-dddd");
  await catalogue.deleteVolume("kept");
});

test("partition records that do not decode are skipped by serving reads, kept by a delete", async () => {
  const catalogue = new Catalogue(bucket.store);
  const volume = volumeOf("parts", "1-eeee");
  await catalogue.createVolume(volume, partitionsOf(volume), 1);
  await kv.put(keys.partition("parts", 1), json({ volume: "parts", partition: "1", epoch: -1 }));

  expect(
    (await catalogue.partitions("parts", "skip")).map((entry) => entry.value.partition),
  ).toEqual([0]);
  expect((await refusal(catalogue.allPartitions())).key).toBe(keys.partition("parts", 1));
  // A new leader's fence rewrites the others and leaves it as it is.
  const fenced = await catalogue.fence(5);
  expect(fenced.deposed).toBe(false);
  expect((await kv.get(keys.partition("parts", 1)))?.json<{ partition: string }>().partition).toBe(
    "1",
  );
  // The volume's delete removes what it can tell is the volume's, and leaves the rest.
  expect((await catalogue.deleteVolume("parts"))?.id).toBe("1-eeee");
  expect((await kv.get(keys.partition("parts", 0)))?.operation).not.toBe("PUT");
  expect((await kv.get(keys.partition("parts", 1)))?.operation).toBe("PUT");
  await kv.delete(keys.partition("parts", 1));
});

test("the sweep's sightings that do not decode count for nothing and are claimed over", async () => {
  const catalogue = new Catalogue(bucket.store);
  await kv.put(keys.sweepSightings, json({ term: "9", objects: [[marker, 5]], snapshots: [] }));
  const claimed = await catalogue.claimSweepSightings(3, true);
  expect(claimed).toBeDefined();
  expect(claimed?.found).toEqual({ term: 3, objects: [], snapshots: [] });
  expect((await kv.get(keys.sweepSightings))?.json()).toEqual({
    term: 3,
    objects: [],
    snapshots: [],
  });
  await kv.delete(keys.sweepSightings);
});

test("a leader record that does not decode is held by no coordinator", async () => {
  const leadership = new Leadership({
    kv: bucket.store,
    nodeId: "coordinator-1",
    leaseMs: 1000,
    marginMs: 100,
    clock: () => 0,
    wallClock: () => 0,
  });
  await kv.put(leaderKey, json({ coordinator: 5, term: 2 ** 60 }));
  expect(await leadership.holder()).toBeUndefined();
  await kv.put(leaderKey, json({ coordinator: "coordinator-2", term: 4, extra: marker }));
  expect(await leadership.holder()).toBe("coordinator-2");
  await kv.delete(leaderKey);
});

test("keys a schema does not name are kept as stored, and survive a rewrite", async () => {
  const catalogue = new Catalogue(bucket.store);
  const volume = volumeOf("later", "1-ffff");
  await catalogue.createVolume(volume, partitionsOf(volume), 1);
  const read = await catalogue.volume("later");
  await kv.put(keys.volume("later"), json({ ...read!.value, fromLaterVersion: { a: 1 } }));
  const extended = await catalogue.volume("later");
  const pinned = await catalogue.pinVolume(extended!, []);
  expect(pinned).toBeDefined();
  expect(
    (await kv.get(keys.volume("later")))?.json<Record<string, unknown>>().fromLaterVersion,
  ).toEqual({
    a: 1,
  });
  expect(isUnreadableRecord(new Error("x"))).toBe(false);
  await catalogue.deleteVolume("later");
});
