// A sled lost for good (issue 12), on real processes: three sleds, a volume whose data
// is flushed to chunks (two copies each), one sled killed with kill -9 and left dead.
// Once the coordinator declares it out (sledOutAfterMs, 3 s here) every primary makes a
// new copy of each chunk that had one there, on the third sled; `ballast status` shows
// the chunks short of copies go to 0. Then a second sled is killed: every byte still
// reads back, from the last sled. Without re-replication the chunks that had copies on
// both dead sleds are lost.

import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { type ClusterStatus, formatStatus } from "../../apps/cli/src/status.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { describeVolume, readBytes, writeBlocks } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const partitionBytes = 4 * mebibyte;
const partitions = 4;
const blocksPerWrite = 64;
const writesPerPartition = 8;
const sledOutAfterMs = 3000;
/** Generous bound for a loaded machine: out after 3 s, then a few MiB to copy. */
const replicatedWithinMs = 30_000;
/** How long a read is retried: a lost chunk fails each read in this long. */
const readRetryMs = 3000;
const volume = "lose";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 3,
    env: { BALLAST_SLED_OUT_AFTER_MS: String(sledOutAfterMs) },
  });
});
afterAll(() => cluster?.stop());

function fillOf(partition: number, write: number): number {
  return 1 + partition * writesPerPartition + write;
}

async function status(): Promise<ClusterStatus> {
  const result = await cluster.bus.request(
    subjects.coordinator.build(),
    { type: "cluster.status.v1" },
    { deadlineMs: 5000 },
  );
  return { nats: cluster.cluster.natsUrl, ...result };
}

interface Reported {
  partitions: number;
  partitionsReported: number;
  chunksShortOfCopies?: number;
}

function reportedOf(cluster: ClusterStatus): Reported | undefined {
  const entry = cluster.volumes.find((one) => one.name === volume);
  return entry?.reported as Reported | undefined;
}

async function chunksOn(sled: string): Promise<number> {
  const stat = await cluster.bus.request(subjects.node.build("sled", sled), {
    type: "sled.stat.v1",
  });
  return stat.chunks;
}

test("a sled lost for good: its chunks get new copies, and a second loss loses no byte", async () => {
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: volume,
    sizeBytes: partitions * partitionBytes,
    partitionBytes,
    replicaCount: 2,
  });
  const lastOpNum: number[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    for (let write = 0; write < writesPerPartition; write++) {
      const offset = partition * partitionBytes + write * blocksPerWrite * 4096;
      const written = await writeBlocks(
        cluster.bus,
        volume,
        partition,
        offset,
        blocksPerWrite,
        fillOf(partition, write),
      );
      lastOpNum[partition] = (written as { opNumLast: number }).opNumLast;
    }
  }
  // Every write flushed to chunks on sleds (two copies each), on every primary.
  await waitFor(
    "every primary to flush its writes to chunks",
    async () => {
      const state = await describeVolume(cluster.bus, volume);
      for (const partition of state.partitions) {
        const replica = await cluster.bus.request(
          subjects.node.build("headnode", partition.primary),
          {
            type: "headnode.replica.status.v1",
            volume,
            partition: partition.partition,
          },
        );
        if (replica.chunks === 0 || replica.flushedThroughOpNum < lastOpNum[partition.partition]!) {
          return undefined;
        }
      }
      return true;
    },
    30_000,
  );
  const sleds = cluster.cluster.ids("sled");
  const held = await Promise.all(sleds.map(chunksOn));
  // The sleds holding the most copies die: with two copies of each chunk on three
  // sleds, some chunk surely had both its copies on them.
  const byHeld = sleds
    .map((sled, at) => ({ sled, held: held[at]! }))
    .sort((a, b) => b.held - a.held);
  const first = byHeld[0]!.sled;
  const second = byHeld[1]!.sled;
  const live = sleds.filter((sled) => sled !== first);
  process.stdout.write(`sled-loss: chunks per sled before ${JSON.stringify(byHeld)}\n`);

  const killedAtMs = performance.now();
  await cluster.cluster.kill(first);
  let sawShort = 0;
  let outAtMs: number | undefined;
  let lastView = "";
  const replicated = await waitFor(
    "every chunk of every primary's table to have a copy on both live sleds",
    async () => {
      const now = await status();
      lastView = formatStatus(now, Date.now());
      if (now.sleds?.find((sled) => sled.id === first)?.state !== "out") return undefined;
      outAtMs ??= performance.now();
      const reported = reportedOf(now);
      if (reported === undefined || reported.partitionsReported < partitions) return undefined;
      const short = reported.chunksShortOfCopies;
      if (short === undefined) return undefined;
      sawShort = Math.max(sawShort, short);
      if (short > 0) return undefined;
      // Status says so; the sleds agree: with two live sleds, each holds every chunk
      // the tables list (at least as many of each partition's as its table has).
      const tables = await tableChunks();
      for (const sled of live) {
        const listed = await listedPerPartition(sled);
        if (tables.some((chunks, partition) => (listed[partition] ?? 0) < chunks)) {
          return undefined;
        }
      }
      return { atMs: performance.now(), chunks: tables.reduce((sum, n) => sum + n, 0) };
    },
    replicatedWithinMs,
    100,
  ).catch((error: Error) => error);
  if (replicated instanceof Error) {
    process.stdout.write(`sled-loss: not re-replicated; last status:\n${lastView}\n`);
  } else {
    process.stdout.write(
      `sled-loss: ${first} killed; seen out after ${Math.round((outAtMs ?? 0) - killedAtMs)} ms ` +
        `(sledOutAfterMs ${sledOutAfterMs}); ${replicated.chunks} chunks; status showed at most ` +
        `${sawShort} short of copies; every chunk had 2 live copies ` +
        `${Math.round(replicated.atMs - killedAtMs)} ms after the kill, ` +
        `${Math.round(replicated.atMs - (outAtMs ?? killedAtMs))} ms after it was seen out\n`,
    );
    process.stdout.write(`sled-loss: status after re-replication:\n${lastView}\n`);
  }

  // A second sled dies: with the copies made again, the last one holds every chunk.
  await cluster.cluster.kill(second);
  const wrong: string[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    for (let write = 0; write < writesPerPartition; write++) {
      const offset = partition * partitionBytes + write * blocksPerWrite * 4096;
      try {
        const data = await readBytes(
          cluster.bus,
          volume,
          partition,
          offset,
          blocksPerWrite * 4096,
          readRetryMs,
        );
        const expected = fillOf(partition, write);
        if (!data.every((byte) => byte === expected)) {
          wrong.push(`${partition}/${write}: other bytes`);
        }
      } catch (error) {
        wrong.push(`${partition}/${write}: ${(error as Error).message.slice(0, 200)}`);
      }
    }
  }
  process.stdout.write(
    `sled-loss: after ${second} died too, ranges wrong: ${JSON.stringify(wrong)}\n`,
  );
  expect(replicated).not.toBeInstanceOf(Error);
  expect(wrong).toEqual([]);

  // Once the second is out too, one live sled is left and no chunk can have two copies:
  // status shows every chunk short of copies.
  const chunks = (replicated as { chunks: number }).chunks;
  const stuck = await waitFor("status to show every chunk short of copies", async () => {
    const now = await status();
    lastView = formatStatus(now, Date.now());
    const short = reportedOf(now)?.chunksShortOfCopies;
    return now.sleds?.find((sled) => sled.id === second)?.state === "out" && short === chunks
      ? short
      : undefined;
  });
  process.stdout.write(`sled-loss: with ${second} out too:\n${lastView}\n`);
  expect(stuck).toBeGreaterThan(0);
  expect(lastView).toContain(`${stuck} chunks SHORT OF COPIES`);
}, 180_000);

/** Each partition's chunk-table size, as its primary reports it. */
async function tableChunks(): Promise<number[]> {
  const state = await describeVolume(cluster.bus, volume);
  return Promise.all(
    state.partitions.map(async (partition) => {
      const replica = await cluster.bus.request(
        subjects.node.build("headnode", partition.primary),
        {
          type: "headnode.replica.status.v1",
          volume,
          partition: partition.partition,
        },
      );
      return replica.chunks;
    }),
  );
}

/** How many of the volume's chunks a sled holds, per partition. */
async function listedPerPartition(sled: string): Promise<number[]> {
  const listed = await cluster.bus.request(subjects.node.build("sled", sled), {
    type: "sled.chunk.list.v1",
    volume,
  });
  const counts: number[] = [];
  for (const chunk of listed.chunks) {
    counts[chunk.owner.partition] = (counts[chunk.owner.partition] ?? 0) + 1;
  }
  return counts;
}
