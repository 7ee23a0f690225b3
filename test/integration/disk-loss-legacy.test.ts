// Partition records from before disk ids, on real processes (the limit session 7 left:
// closing note 7, defect 1). Such a record names no disk for its members, so a member
// back on an empty disk under its old id was not checked: it was sent a configure
// without a disk and opened its replica empty as a voter, and the volume lost its
// acknowledged writes exactly as before disk ids (block 0 read zeros here on that code).
//
// The test writes a volume, then rewrites its partition record without `disks` while the
// coordinator is down (a record as an older coordinator wrote it; a new leader starts
// with nothing cached of it). First the primary is restarted with its disk intact: it
// reopens its replica from its disk, its answer to the configure names that disk, and
// the disks are recorded in the same epoch.
// Then the record is stripped again, the primary killed with -9, its data directory
// deleted, and it is started again at once under the same id: it refuses to open an
// empty primary (`no-replica`), the coordinator promotes the secondary and rebuilds the
// node as a learner on its new disk, and every acknowledged write reads back.

import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { buckets, subjects } from "@ballast/protocol";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { VolumeModel } from "../support/volume-io.ts";

let cluster: TestCluster;
let io: VolumeModel;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2 });
  io = new VolumeModel(cluster.bus, "legacy");
});
afterAll(async () => {
  await cluster?.stop();
});

/** Bounds on the cluster getting somewhere (liveness, not speed). */
const recordedBoundMs = 15_000;
const fullStrengthBoundMs = 30_000;
const coordinator = "coordinator-1";
const recordKey = "partition.legacy.0";

interface Record {
  primary: string;
  secondaries: string[];
  learners?: string[];
  joining?: string[];
  epoch: number;
  disks?: { [node: string]: string };
}

async function control() {
  return new Kvm(cluster.bus.connection).open(buckets.control);
}

async function record(): Promise<Record> {
  const entry = await (await control()).get(recordKey);
  return entry!.json<Record>();
}

/** Rewrites the partition record as one written before disk ids (no `disks`). */
async function stripDisks(): Promise<void> {
  const kv = await control();
  const entry = (await kv.get(recordKey))!;
  const { disks: _disks, ...legacy } = entry.json<Record>();
  await kv.update(recordKey, JSON.stringify(legacy), entry.revision);
  expect((await record()).disks).toBeUndefined();
}

/** A head node's data directory id, as its heartbeats carry it. */
async function diskOf(node: string): Promise<string> {
  const identity = await readFile(join(cluster.dataDir, node, "identity.json"), "utf8");
  return (JSON.parse(identity) as { diskId: string }).diskId;
}

test("a member placed before disk ids gets its disk recorded from its answer, and one back on an empty disk loses no write", async () => {
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "legacy",
    sizeBytes: 8 * 1024 * 1024,
    partitionBytes: 8 * 1024 * 1024,
    replicaCount: 2,
  });
  for (let block = 0; block < 30; block++) await io.writeBlock(block, 1 + block);
  const placed = await record();
  const primary = placed.primary;
  const secondary = placed.secondaries[0]!;
  expect(placed.disks).toEqual({
    [primary]: await diskOf(primary),
    [secondary]: await diskOf(secondary),
  });

  // 1. A record from before disk ids; its primary restarted with its disk intact (kill
  // -9), so that it opens its replica from what its disk stores.
  await cluster.cluster.kill(coordinator);
  await stripDisks();
  await cluster.cluster.kill(primary);
  cluster.cluster.restart(primary);
  cluster.cluster.restart(coordinator);
  // Recorded from the configure answers (heartbeats alone fill nothing in).
  const filled = await waitFor(
    "both members' disks recorded from their configure answers",
    async () => {
      const now = await record();
      return Object.keys(now.disks ?? {}).length === 2 ? now : undefined;
    },
    recordedBoundMs,
    250,
  );
  expect(filled.disks).toEqual({
    [primary]: await diskOf(primary),
    [secondary]: await diskOf(secondary),
  });
  // Recorded in place: nobody was dropped or re-added to get there.
  expect(filled).toMatchObject({ epoch: placed.epoch, primary, secondaries: [secondary] });
  for (let block = 30; block < 40; block++) await io.writeBlock(block, 1 + block);
  await io.expectAllWritten();

  // 2. Stripped again; the primary back on an empty disk under its old id.
  await cluster.cluster.kill(coordinator);
  await stripDisks();
  await cluster.cluster.kill(primary);
  await rm(join(cluster.dataDir, primary), { recursive: true, force: true });
  cluster.cluster.restart(primary);
  cluster.cluster.restart(coordinator);
  await waitFor("the coordinator answering again", () => io.describe(), recordedBoundMs, 100);
  // Writes go on through the failover; none may be lost, and none may land on an empty
  // primary (on the old code block 0 read zeros).
  for (let block = 40; block < 50; block++) await io.writeBlock(block, 1 + block);
  await io.expectAllWritten();

  let last: unknown;
  const full = await waitFor(
    `the partition back at two voters with ${primary} rebuilt`,
    async () => {
      const now = await record();
      last = now;
      return now.secondaries.length === 1 &&
        (now.learners ?? []).length === 0 &&
        (now.joining ?? []).length === 0
        ? now
        : undefined;
    },
    fullStrengthBoundMs,
    250,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last seen: ${JSON.stringify(last)}`);
  });
  // The secondary held every acknowledged write and was promoted; the node on the new
  // disk came back only through a rebuild, recorded on that disk.
  expect(full.primary).toBe(secondary);
  expect(full.secondaries).toEqual([primary]);
  expect(full.disks).toEqual({
    [secondary]: await diskOf(secondary),
    [primary]: await diskOf(primary),
  });
  for (let block = 50; block < 60; block++) await io.writeBlock(block, 1 + block);
  await io.expectAllWritten();
});
