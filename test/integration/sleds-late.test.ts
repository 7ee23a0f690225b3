// Sleds that come up after a volume was created, on real processes. A volume created
// while one sled of three was up is configured with that sled alone; a chunk needs two
// copies, so its primary can flush nothing. The coordinator pushed a member's
// configuration again only when its epoch changed, or at the refresh (configureRefreshMs:
// minutes), so the other sleds stayed unknown to it that long: its log filled and every
// write then waited past its deadline (found by `npm run bench`, whose cluster was still
// starting its sleds when it created its volume: fio saw EIO). Now a member that lacks a
// live sled is configured again at once, and the writes flush.

import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { describeVolume, readBytes, writeBlocks } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const volume = "late-sleds";
const blocksPerWrite = 64;
const writes = 8;
/** Far below the refresh's 150–300 s, above a loaded machine's heartbeat and configure. */
const flushedWithinMs = 30_000;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 3 });
});
afterAll(() => cluster?.stop());

async function liveSleds(): Promise<string[]> {
  const status = await cluster.bus.request(
    subjects.coordinator.build(),
    { type: "cluster.status.v1" },
    { deadlineMs: 5000 },
  );
  return status.services
    .filter((service) => service.kind === "sled" && service.healthy)
    .map((service) => service.id)
    .sort();
}

async function primaryStatus() {
  const state = await describeVolume(cluster.bus, volume);
  const partition = state.partitions[0]!;
  return cluster.bus.request(subjects.node.build("headnode", partition.primary), {
    type: "headnode.replica.status.v1",
    volume,
    partition: partition.partition,
  });
}

test("a volume created with one sled up flushes once the others come up, without waiting for the refresh", async () => {
  const others = cluster.cluster.ids("sled").slice(1);
  for (const sled of others) await cluster.cluster.kill(sled);
  await waitFor("the coordinator to see one sled", async () =>
    (await liveSleds()).length === 1 ? true : undefined,
  );
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: volume,
    sizeBytes: 4 * mebibyte,
    partitionBytes: 4 * mebibyte,
    replicaCount: 2,
  });
  let lastOpNum = 0;
  for (let write = 0; write < writes; write++) {
    const written = await writeBlocks(
      cluster.bus,
      volume,
      0,
      write * blocksPerWrite * 4096,
      blocksPerWrite,
      write + 1,
    );
    lastOpNum = (written as { opNumLast: number }).opNumLast;
  }
  // With one sled nothing can be flushed (two copies per chunk).
  expect((await primaryStatus()).flushedThroughOpNum).toBeLessThan(lastOpNum);

  for (const sled of others) cluster.cluster.restart(sled);
  await waitFor("the coordinator to see every sled", async () =>
    (await liveSleds()).length === 3 ? true : undefined,
  );
  const flushed = await waitFor(
    "the primary to flush every write to chunks",
    async () => {
      const replica = await primaryStatus();
      return replica.chunks > 0 && replica.flushedThroughOpNum >= lastOpNum ? replica : undefined;
    },
    flushedWithinMs,
  );
  expect(flushed.chunks).toBeGreaterThan(0);
  // Every write reads back, from wherever it now lives.
  for (let write = 0; write < writes; write++) {
    const bytes = await readBytes(cluster.bus, volume, 0, write * blocksPerWrite * 4096, 4096);
    expect(bytes.every((byte) => byte === write + 1)).toBe(true);
  }
});
