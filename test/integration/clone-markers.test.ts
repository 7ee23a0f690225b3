// A deleted clone against the leader's cleanup of old delete markers, on a real
// nats-server through the coordinator's control store, Catalogue, Volumes and Snapshots
// (the head nodes' answers are scripted: none is involved in what is checked). A clone
// pins its parent snapshot and volume; once the clone is deleted and the marker of its
// key is removed (here at age 0, as the cleanup does an hour later), its key holds no
// message at all. That must read as "gone": the parent snapshot and volume can be
// deleted. It read as "still being created", and both deletes answered Unavailable for
// ever. Both ways a clone goes: deleted after it was listed, and a create that failed
// after pinning (its creating record removed).

import { type BallastError, ErrorCode, type Message } from "@ballast/protocol";
import type { Bucket } from "@nats-io/kv";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  Catalogue,
  type ControlStore,
  keys,
  type SnapshotRecord,
  type VolumeRecord,
} from "../../services/coordinator/src/catalogue.ts";
import { Snapshots } from "../../services/coordinator/src/snapshots.ts";
import type { Tenure } from "../../services/coordinator/src/tenure.ts";
import { Volumes } from "../../services/coordinator/src/volumes.ts";
import { type ControlBucket, startControlBucket } from "../support/control-bucket.ts";

let kv: Bucket;
let store: ControlStore;
const warnings: unknown[] = [];
const logger = {
  info: () => undefined,
  warn: (...args: unknown[]) => warnings.push(args),
  error: (...args: unknown[]) => warnings.push(args),
};
const partitionBytes = 1024 * 1024;

let bucket: ControlBucket;

beforeAll(async () => {
  bucket = await startControlBucket("ballast-clone-markers-", logger);
  ({ kv, store } = bucket);
});
afterAll(async () => {
  await bucket?.close();
});

/** The leader's catalogue parts over the real store; head nodes answer every request. */
function leader(over: ControlStore = store) {
  const catalogue = new Catalogue(over);
  const service = {
    bus: {
      request: async (subject: string, message: Message) => {
        if (message.type === "headnode.drop.v1") return { dropped: 0 };
        if (message.type === "partition.snapshot.drop.v1") return { epoch: 1, opNum: 9 };
        throw new Error(`unexpected ${message.type} on ${subject}`);
      },
    },
    logger,
  };
  const volumes = new Volumes({
    service: service as never,
    catalogue,
    heartbeats: {
      aliveHeadNodes: () => new Set(["head-1", "head-2", "head-3"]),
      aliveSleds: () => [],
      headNodeDisks: () => new Map(),
      list: () => [],
    },
    configurer: { configure: async () => undefined },
    // A fake: no sled to witness creates on (store-marks.ts).
    marks: { witnessCreate: async () => undefined },
    tenures: { held: () => undefined, current: () => undefined },
    partitionBytesDefault: partitionBytes,
    // A fake: every head node enforces volume ends.
    features: { enforcesServedBytes: () => true },
  });
  const snapshots = new Snapshots({
    service: service as never,
    catalogue,
    storeMarks: { witnessCreate: async () => undefined },
  });
  return { catalogue, volumes, snapshots, tenure: { term: 1 } as Tenure };
}

/** Volume `parent` with a snapshot `s1` (its record written as a finished create leaves it), cloned as `clone`. */
async function cloned(parent: string, clone: string, parts = leader()) {
  await parts.volumes.create(parts.tenure, {
    type: "volume.create.v1",
    name: parent,
    sizeBytes: 2 * partitionBytes,
    replicaCount: 2,
    partitionBytes,
  });
  const volumeId = (await parts.catalogue.volume(parent))!.value.id!;
  await kv.put(
    `snapshot.${parent}.s1`,
    JSON.stringify({
      volume: parent,
      name: "s1",
      id: `sid-${parent}`,
      volumeId,
      createdAtMs: Date.now(),
      partitions: [
        { index: 0, opNum: 3 },
        { index: 1, opNum: 3 },
      ],
      sizeBytes: 2 * partitionBytes,
    } satisfies SnapshotRecord),
  );
  await parts.volumes.clone(parts.tenure, {
    type: "volume.clone.v1",
    volume: parent,
    snapshot: "s1",
    name: clone,
  });
  return parts;
}

const pinsOn = async (parent: string) => ({
  snapshot: ((await kv.get(`snapshot.${parent}.s1`))?.json<SnapshotRecord>().clonePins ?? []).map(
    (pin) => pin.volume,
  ),
  volume: ((await kv.get(keys.volume(parent)))?.json<VolumeRecord>().clonePins ?? []).map(
    (pin) => pin.volume,
  ),
});

/** Deletes the parent's snapshot, then the parent: both must succeed. */
async function expectParentDeletable(parts: ReturnType<typeof leader>, parent: string) {
  const outcome = await parts.snapshots
    .delete({ type: "snapshot.delete.v1", volume: parent, name: "s1" })
    .catch((error: BallastError) => error);
  expect(outcome).toEqual({ deleted: true });
  expect(await kv.get(`snapshot.${parent}.s1`).then((entry) => entry?.operation)).not.toBe("PUT");
  expect(await parts.volumes.delete(parts.tenure, parent)).toEqual({ name: parent, deleted: true });
}

test("a deleted clone's pins leave its parents, which can then be deleted, its markers gone or not", async () => {
  const parts = await cloned("p1", "c1");
  expect(await pinsOn("p1")).toEqual({ snapshot: ["c1"], volume: ["c1"] });
  expect(await parts.volumes.delete(parts.tenure, "c1")).toEqual({ name: "c1", deleted: true });
  expect(await pinsOn("p1")).toEqual({ snapshot: [], volume: [] });
  expect(await store.removeDeleteMarkers!(0)).toBeGreaterThan(0);
  expect(await kv.get(keys.volume("c1"))).toBeNull();
  await expectParentDeletable(parts, "p1");
  expect(warnings).toEqual([]);
});

test("pins a clone's delete left behind (its leader died) are gone once its key's marker is removed", async () => {
  const parts = await cloned("p2", "c2");
  // A leader that died right after deleting the clone's record: its pins stay.
  await parts.catalogue.deleteVolume("c2");
  expect(await pinsOn("p2")).toEqual({ snapshot: ["c2"], volume: ["c2"] });
  expect(await store.removeDeleteMarkers!(0)).toBeGreaterThan(0);
  // The key holds no message at all now, not even the leader's copy.
  expect(await kv.get(keys.volume("c2"))).toBeNull();
  expect(await store.getLatest!(keys.volume("c2"))).toBeNull();
  await expectParentDeletable(parts, "p2");
  expect(warnings).toEqual([]);
});

test("a read of a live clone's key that comes back empty (a replica behind) is asked of the leader", async () => {
  const parts = await cloned("p3", "c3");
  // Every read of c3's key through `get` finds nothing, as a replica behind the write
  // would: neither the volume listing nor the pin's first read sees the clone.
  const behind: ControlStore = {
    ...store,
    get: async (key) => (key === keys.volume("c3") ? null : store.get(key)),
  };
  const lagging = { ...parts, catalogue: new Catalogue(behind) };
  const snapshots = new Snapshots({
    storeMarks: { witnessCreate: async () => undefined },
    service: { bus: { request: async () => ({}) }, logger } as never,
    catalogue: lagging.catalogue,
  });
  const refused = await snapshots
    .delete({ type: "snapshot.delete.v1", volume: "p3", name: "s1" })
    .catch((error: BallastError) => error);
  expect(refused).toMatchObject({
    code: ErrorCode.InvalidArgument,
    message: expect.stringContaining("has clones: c3"),
  });
  expect((await kv.get("snapshot.p3.s1"))?.json<SnapshotRecord>().deletingSinceMs).toBeUndefined();
});

test("a clone whose create failed after it pinned its parents, its marker removed, holds neither", async () => {
  // The clone's partition records cannot be written: its create removes its creating
  // record again (a delete marker), leaving its pins on both parents.
  const failing: ControlStore = {
    ...store,
    create: async (key, value) => {
      if (key.startsWith("partition.c4.")) throw new Error("the disk is on fire");
      return store.create(key, value);
    },
  };
  const parts = leader(failing);
  await expect(cloned("p4", "c4", parts)).rejects.toThrow(/on fire/);
  expect(await pinsOn("p4")).toEqual({ snapshot: ["c4"], volume: ["c4"] });
  expect((await kv.get(keys.volume("c4")))?.operation).toBe("DEL");
  expect(await store.removeDeleteMarkers!(0)).toBeGreaterThan(0);
  expect(await store.getLatest!(keys.volume("c4"))).toBeNull();
  await expectParentDeletable(leader(), "p4");
  expect(warnings).toEqual([]);
});
