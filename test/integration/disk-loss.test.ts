// A head node back on an empty disk under its old node id, on real processes (session 7:
// the defect the simulator's disk losses found). The primary of a two-replica volume is
// killed, its data directory deleted, and it is started again at once under the same id,
// before the coordinator could count it dead. Before disk ids, the coordinator pushed it
// its old configuration again and it opened an empty primary in the same epoch: it gave
// out op numbers from 1 again and the volume lost its acknowledged writes (or never served
// again). Now its heartbeats name a new data directory: the node refuses the configure
// recorded on its old disk, the coordinator promotes the secondary and rebuilds the node
// as a learner, and every acknowledged write reads back, before and after it votes again.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { VolumeModel } from "../support/volume-io.ts";

let cluster: TestCluster;
let io: VolumeModel;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2 });
  io = new VolumeModel(cluster.bus, "lost");
});
afterAll(async () => {
  await cluster?.stop();
});

/** Bound on getting back to two voters once the node is back: a liveness bound. */
const fullStrengthBoundMs = 30_000;

test("a primary back on an empty disk under its old id is counted out, rebuilt, and loses no write", async () => {
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "lost",
    sizeBytes: 8 * 1024 * 1024,
    partitionBytes: 8 * 1024 * 1024,
    replicaCount: 2,
  });
  for (let block = 0; block < 40; block++) await io.writeBlock(block, 1 + block);
  const before = (await io.describe()).partitions[0]!;
  const victim = before.primary;
  const survivor = before.secondaries[0]!;

  await cluster.cluster.kill(victim);
  await rm(join(cluster.dataDir, victim), { recursive: true, force: true });
  cluster.cluster.restart(victim);

  // Writes go on through the failover; none may be lost, and none may land on an empty
  // primary.
  for (let block = 40; block < 60; block++) await io.writeBlock(block, 1 + block);
  await io.expectAllWritten();

  let last: unknown;
  const full = await waitFor(
    `the partition back at two voters with ${victim} rebuilt`,
    async () => {
      const state = (await io.describe()).partitions[0]!;
      last = state;
      return state.secondaries.length === 1 &&
        state.learners.length === 0 &&
        (state.joining ?? []).length === 0
        ? state
        : undefined;
    },
    fullStrengthBoundMs,
    250,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last seen: ${JSON.stringify(last)}`);
  });
  // The survivor holds every acknowledged write: it was promoted; the node on the new
  // disk came back only through a rebuild.
  expect(full.primary).toBe(survivor);
  expect(full.secondaries).toEqual([victim]);
  expect(full.epoch).toBeGreaterThan(before.epoch);
  for (let block = 60; block < 70; block++) await io.writeBlock(block, 1 + block);
  await io.expectAllWritten();
});
