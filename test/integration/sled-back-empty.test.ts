// A sled back empty under its old id, on real processes: two head nodes, two sleds (so
// every chunk and every checkpoint has a copy on each), a volume flushed to chunks with a
// checkpoint recorded for each partition. One sled is killed, its data directory deleted,
// and it is started again at once under the same id: it comes back long before the
// coordinator could declare it out (sledOutAfterMs is left far above the test's length),
// so nothing tells the head nodes that its copies are gone but the copies themselves.
// The primaries' replicators look for each recorded checkpoint on the sleds its pointer
// names (every BALLAST_CHECKPOINT_CHECK_MS) and store the lost copy there again, under
// the same key; having found the sled without a copy it held, they look for every chunk
// copy their tables list there and write the missing ones again (an audit), where the
// scrub, at its default pace of a pass a day, would take hours. Before, the recorded
// checkpoint stayed on one sled until the next checkpoint, which an idle partition never
// takes, and each chunk stayed at one copy until the scrub or a read came to it.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { type ResultOf, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  startTestCluster,
  type TestCluster,
  waitFor,
  waitUntilHealthy,
} from "../support/cluster.ts";
import { describeVolume, writeBlocks } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const partitionBytes = 4 * mebibyte;
const partitions = 2;
const blocksPerWrite = 32;
const writesPerPartition = 6;
const rounds = 3;
/** How long the recorded checkpoints must stay the same before the sled is wiped. */
const stableForMs = 5000;
const volume = "back-empty";
/** Liveness bound on a loaded machine: a look every 2 s on a scrub step every 10 s. */
const restoredWithinMs = 90_000;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    env: {
      // Never out while the test runs: the sled is back long before.
      BALLAST_SLED_OUT_AFTER_MS: String(3_600_000),
      // A checkpoint after the writes, then none while idle (no new ops to cover).
      BALLAST_CHECKPOINT_INTERVAL_OPS: String(writesPerPartition),
      BALLAST_CHECKPOINT_INTERVAL_MS: String(3_600_000),
      BALLAST_CHECKPOINT_CHECK_MS: "2000",
    },
  });
});
afterAll(() => cluster?.stop());

interface PrimaryView {
  partition: number;
  chunks: number;
  checkpoint: ResultOf<"headnode.replica.status.v1">["checkpoint"];
}

/** Each partition's primary's table size and recorded checkpoint. */
async function primaries(): Promise<PrimaryView[]> {
  const state = await describeVolume(cluster.bus, volume);
  return Promise.all(
    state.partitions.map(async ({ partition, primary }) => {
      const replica = await cluster.bus.request(subjects.node.build("headnode", primary), {
        type: "headnode.replica.status.v1",
        volume,
        partition,
      });
      return { partition, chunks: replica.chunks, checkpoint: replica.checkpoint };
    }),
  );
}

/** The blob keys `sled` holds under the volume's checkpoint prefix. */
async function blobsOn(sled: string): Promise<Set<string>> {
  const listed = await cluster.bus.request(subjects.node.build("sled", sled), {
    type: "sled.blob.list.v1",
    prefix: "checkpoints/",
  });
  return new Set(listed.blobs.map((blob) => blob.key));
}

/** How many of the volume's chunks `sled` holds, per partition. */
async function chunksOn(sled: string): Promise<number[]> {
  const listed = await cluster.bus.request(subjects.node.build("sled", sled), {
    type: "sled.chunk.list.v1",
    volume,
  });
  const counts = Array.from({ length: partitions }, () => 0);
  for (const chunk of listed.chunks) counts[chunk.owner.partition]!++;
  return counts;
}

test("a sled back empty under its old id gets its checkpoint and chunk copies back, long before a scrub pass", async () => {
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: volume,
    sizeBytes: partitions * partitionBytes,
    partitionBytes,
    replicaCount: 2,
  });
  // In rounds, each flushed before the next, so that each partition has a few chunks.
  for (let round = 0; round < rounds; round++) {
    const lastOpNum: number[] = [];
    for (let partition = 0; partition < partitions; partition++) {
      for (let write = round; write < writesPerPartition; write += rounds) {
        const offset = partition * partitionBytes + write * blocksPerWrite * 4096;
        const written = await writeBlocks(
          cluster.bus,
          volume,
          partition,
          offset,
          blocksPerWrite,
          1 + write,
        );
        lastOpNum[partition] = (written as { opNumLast: number }).opNumLast;
      }
    }
    await waitFor(`round ${round} flushed`, async () => {
      const state = await describeVolume(cluster.bus, volume);
      for (const { partition, primary } of state.partitions) {
        const replica = await cluster.bus.request(subjects.node.build("headnode", primary), {
          type: "headnode.replica.status.v1",
          volume,
          partition,
        });
        if (replica.flushedThroughOpNum < lastOpNum[partition]!) return undefined;
      }
      return true;
    });
  }
  // Flushed to chunks and checkpointed on both sleds, and idle from then on: the same
  // recorded checkpoints for stableForMs (the last flush may still bring one more).
  let seen: { keys: string; sinceMs: number } | undefined;
  const before = await waitFor(
    "every primary to keep one recorded checkpoint naming both sleds",
    async () => {
      const views = await primaries();
      if (!views.every((view) => view.chunks > 0 && view.checkpoint?.sleds.length === 2)) {
        return undefined;
      }
      const keys = JSON.stringify(views.map((view) => view.checkpoint?.blobKey));
      if (seen?.keys !== keys) seen = { keys, sinceMs: performance.now() };
      return performance.now() - seen.sinceMs >= stableForMs ? views : undefined;
    },
    60_000,
    500,
  );
  const [victim, survivor] = cluster.cluster.ids("sled") as [string, string];
  const held = await blobsOn(victim);
  for (const view of before) expect(held.has(view.checkpoint!.blobKey)).toBe(true);
  const heldChunks = await chunksOn(victim);
  for (const [at, view] of before.entries()) {
    expect(heldChunks[at]).toBeGreaterThanOrEqual(view.chunks);
  }

  await cluster.cluster.kill(victim);
  await rm(join(cluster.dataDir, victim), { recursive: true, force: true });
  cluster.cluster.restart(victim);
  await waitUntilHealthy(cluster.bus, [victim]);
  // Back and empty (asked until the new process answers on its inbox).
  const empty = await waitFor(`${victim} to answer`, async () => {
    try {
      return { blobs: (await blobsOn(victim)).size, chunks: await chunksOn(victim) };
    } catch {
      return undefined;
    }
  });
  expect(empty).toEqual({ blobs: 0, chunks: before.map(() => 0) });

  let last = "";
  const restored = await waitFor(
    `every recorded checkpoint and chunk back on ${victim}`,
    async () => {
      const views = await primaries();
      const blobs = await blobsOn(victim);
      const chunks = await chunksOn(victim);
      last = JSON.stringify({ blobs: [...blobs], chunks, views });
      const back = views.every((view, at) => {
        const pointer = view.checkpoint;
        if (pointer === undefined) return false;
        const named = pointer.sleds.every((sled: string) => sled === victim || sled === survivor);
        return named && blobs.has(pointer.blobKey) && chunks[at]! >= view.chunks;
      });
      return back ? views : undefined;
    },
    restoredWithinMs,
    500,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; last seen: ${last}`);
  });
  // The same checkpoints, stored again where their pointers say (no new one was taken),
  // and on the survivor still.
  expect(restored.map((view) => view.checkpoint?.blobKey)).toEqual(
    before.map((view) => view.checkpoint?.blobKey),
  );
  const kept = await blobsOn(survivor);
  for (const view of restored) expect(kept.has(view.checkpoint!.blobKey)).toBe(true);
  process.stdout.write(
    `sled-back-empty: chunks per partition ${JSON.stringify(before.map((view) => view.chunks))}; restored ${last}\n`,
  );
}, 180_000);
