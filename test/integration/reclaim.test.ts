// Space reclaimed when a volume is deleted (issue 12), on real processes: the sleds'
// usage goes back to where it was before the volume was created — every chunk its
// flushes wrote and every checkpoint blob its replicas uploaded is deleted by the
// leader's purger — and the name created again reads as zeros.

import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  removeSequenceMarks,
  removeStoreMarks,
  startTestCluster,
  type TestCluster,
  waitFor,
} from "../support/cluster.ts";
import { bytesIn, describeVolume, readBytes, writeBlocks } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const partitionBytes = 4 * mebibyte;
const partitions = 2;
/** Blocks written per request, and requests per partition: 1 MiB of data each. */
const blocksPerWrite = 64;
const writesPerPartition = 4;
/** The bound on the purge: its grace, a pass or two, and slack for a loaded machine. */
const purgedWithinMs = 45_000;

let cluster: TestCluster;

beforeAll(async () => {
  // Checkpoints every second, not every 10 s (the default): the test waits for every
  // replica's first one before it deletes the volume.
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    env: { BALLAST_CHECKPOINT_INTERVAL_MS: "1000" },
  });
});
afterAll(() => cluster?.stop());

interface Usage {
  usedBytes: number;
  chunks: number;
  blobs: number;
}

/** The sum over every sled of what `sled.stat.v1` reports. */
async function usage(): Promise<Usage> {
  const stats = await Promise.all(
    cluster.cluster
      .ids("sled")
      .map((sled) =>
        cluster.bus.request(subjects.node.build("sled", sled), { type: "sled.stat.v1" }),
      ),
  );
  return {
    usedBytes: stats.reduce((sum, stat) => sum + stat.usedBytes, 0),
    chunks: stats.reduce((sum, stat) => sum + stat.chunks, 0),
    blobs: stats.reduce((sum, stat) => sum + stat.blobs, 0),
  };
}

function create(name: string) {
  return cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name,
    sizeBytes: partitions * partitionBytes,
    partitionBytes,
    replicaCount: 2,
  });
}

test("deleting a volume returns the sleds' usage to where it was; created again, it reads zeros", async () => {
  // The coordinator's mark on each sled (store-marks.ts) is left at start; measured
  // before it was, it would count as a leak.
  await removeStoreMarks(cluster);
  const before = await usage();
  const created = await create("reclaim");
  // The create's catalogue-sequence mark outlives the volume by design (store-marks.ts).
  await removeSequenceMarks(cluster);
  for (let partition = 0; partition < partitions; partition++) {
    for (let write = 0; write < writesPerPartition; write++) {
      const offset = partition * partitionBytes + write * blocksPerWrite * 4096;
      await writeBlocks(cluster.bus, "reclaim", partition, offset, blocksPerWrite, 0xc3);
    }
  }
  // Flushed to chunks, and checkpointed to blobs, on both replicas of both partitions.
  await waitFor(
    "every replica to checkpoint",
    async () => {
      const state = await describeVolume(cluster.bus, "reclaim");
      return state.partitions.every((partition) => partition.checkpoints.length === 2)
        ? state
        : undefined;
    },
    30_000,
  );
  const written = await waitFor("chunks and blobs on the sleds", async () => {
    const now = await usage();
    return now.chunks > before.chunks && now.blobs > before.blobs ? now : undefined;
  });
  process.stdout.write(
    `reclaim: ${created.id} holds ${written.usedBytes - before.usedBytes} bytes in ${written.chunks - before.chunks} chunks and ${written.blobs - before.blobs} blobs\n`,
  );
  expect(written.usedBytes).toBeGreaterThan(before.usedBytes + partitions * mebibyte);

  const deleted = await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "volume.delete.v1",
    name: "reclaim",
  });
  expect(deleted).toEqual({ name: "reclaim", deleted: true });
  // Before the purge, every chunk and blob of the deleted volume stayed for good.
  const after = await waitFor(
    "the sleds' usage to return to where it was",
    async () => {
      const now = await usage();
      return now.usedBytes === before.usedBytes ? now : undefined;
    },
    purgedWithinMs,
    250,
  ).catch(async (error) => {
    throw new Error(`${(error as Error).message}: ${JSON.stringify(await usage())}`);
  });
  expect(after).toEqual(before);

  const again = await create("reclaim");
  expect(again.id).not.toBe(created.id);
  for (let partition = 0; partition < partitions; partition++) {
    const read = await readBytes(
      cluster.bus,
      "reclaim",
      partition,
      partition * partitionBytes,
      blocksPerWrite * 4096,
    );
    expect(bytesIn(read), `partition ${partition} of the new incarnation`).toEqual([0]);
  }
  await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "volume.delete.v1",
    name: "reclaim",
  });
});
