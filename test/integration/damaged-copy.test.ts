// A chunk copy a sled's own scrub found damaged, on real processes: two head nodes, two
// sleds, a volume flushed to chunks (a copy on each sled). A byte of one copy is flipped
// on the sled's device file and the sled is scrubbed (`sled.scrub.v1`, as `ballast
// scrub` without --repair does): it now counts the object damaged (`damagedObjects`),
// status shows it DAMAGED and `status --check` fails.
//
// Before, nothing told the head nodes: their reports still counted that copy as one of
// the chunk's two, and the copy stayed damaged until a read met it or the primary's daily
// scrub came to it. Now each primary asks the sleds it uses which chunks their last
// scrub found damaged (every damagedCheckIntervalMs, on its scrub steps), counts such a
// copy as none in its reports, and repairs it from the sound copy at once: the sled's
// copy reads whole again, its damage count is back to 0 and `--check` passes.

import { open } from "node:fs/promises";
import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { exitCodes } from "../../apps/cli/src/errors.ts";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { describeVolume, writeBlocks } from "../support/faults.ts";
import { listSledChunks } from "../support/sled-chunks.ts";

const volume = "damaged-copy";
const mebibyte = 1024 * 1024;
const blocks = 64;
/** Liveness bound on a loaded machine: a look every 30 s, on a scrub step every 10 s. */
const repairedWithinMs = 90_000;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    // The head nodes' own checkpoint look stays out of the way.
    env: { BALLAST_CHECKPOINT_CHECK_MS: String(3_600_000) },
  });
});
afterAll(() => cluster?.stop());

async function flipByteOnDisk(sled: string, device: number, offset: number): Promise<void> {
  const handle = await open(join(cluster.dataDir, sled, `device-${device}.dev`), "r+");
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0]! ^= 0xff;
    await handle.write(byte, 0, 1, offset);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

const check = () => runCli(["status", "--check", "--nats", cluster.cluster.natsUrl]);

test("a copy a sled's scrub found damaged is repaired by its primary long before the daily scrub, and status is whole again", async () => {
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: volume,
    sizeBytes: 8 * mebibyte,
    partitionBytes: 8 * mebibyte,
    replicaCount: 2,
  });
  const written = await writeBlocks(cluster.bus, volume, 0, 0, blocks, 7);
  const opNum = (written as { opNumLast: number }).opNumLast;
  await cluster.bus.request(subjects.volume.build(volume, 0), {
    type: "volume.flush.v1",
    volume,
    partition: 0,
    epoch: (await describeVolume(cluster.bus, volume)).partitions[0]!.epoch,
  });
  const [victim, survivor] = cluster.cluster.ids("sled") as [string, string];
  const chunk = await waitFor("the flushed chunk on both sleds", async () => {
    const primary = (await describeVolume(cluster.bus, volume)).partitions[0]!.primary;
    const replica = await cluster.bus.request(subjects.node.build("headnode", primary), {
      type: "headnode.replica.status.v1",
      volume,
      partition: 0,
    });
    if (replica.flushedThroughOpNum < opNum) return undefined;
    const on = await listSledChunks(cluster.bus, victim, volume);
    const other = await listSledChunks(cluster.bus, survivor, volume);
    return on.length > 0 && other.some((c) => c.chunkId === on[0]!.chunkId) ? on[0] : undefined;
  });
  expect((await check()).code).toBe(exitCodes.ok);

  const sled = subjects.node.build("sled", victim);
  const stat = await cluster.bus.request(sled, {
    type: "sled.chunk.stat.v1",
    owner: chunk.owner,
    chunkId: chunk.chunkId,
  });
  await flipByteOnDisk(victim, stat.location.device, stat.location.dataOffset + 7);
  const scrubbed = await cluster.bus.request(
    sled,
    { type: "sled.scrub.v1" },
    { deadlineMs: 30_000 },
  );
  expect(scrubbed.damaged.map((damage) => damage.id)).toEqual([chunk.chunkId]);
  const damaged = await check();
  expect(damaged.code).toBe(exitCodes.notFullStrength);

  // The primary hears of it, repairs the copy from the sound one, and the sled no
  // longer counts it damaged: the old head nodes left it so until their daily scrub.
  await waitFor(
    `${victim}'s damaged copy repaired and status --check 0`,
    async () => {
      const now = await cluster.bus.request(sled, { type: "sled.stat.v1" });
      if ((now.damagedObjects ?? 0) !== 0) return undefined;
      return (await check()).code === exitCodes.ok ? true : undefined;
    },
    repairedWithinMs,
    1000,
  );
  const read = await cluster.bus.request(sled, {
    type: "sled.chunk.read.v1",
    owner: chunk.owner,
    chunkId: chunk.chunkId,
    offset: 0,
    length: chunk.bytes,
  });
  expect(read.data.byteLength).toBe(chunk.bytes);
}, 180_000);
