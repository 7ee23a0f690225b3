// Two volumes written at once, on real processes (issue 12: chunk names collided across
// volumes). Before issue 11 put the volume id into chunk ids, partition p of every
// volume named its chunks `p<p>-e<epoch>-s<session>-c<n>`: the second volume's flushes
// met AlreadyExists on the sleds, left partial copies behind and retried under the next
// name, which collided again. Here two volumes of several partitions each flush several
// chunks per partition at the same time; then every byte reads back as written, no
// process logged AlreadyExists or a failed chunk write, and each sled's chunk listing
// holds chunks of both volumes under distinct ids whose owners match.

import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { onPartition, readBytes, writeBlocks } from "../support/faults.ts";
import { logFiles, logLinesContaining } from "../support/logs.ts";
import { listSledChunks, type SledChunk } from "../support/sled-chunks.ts";

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const blockBytes = 4096;
const partitionBytes = 4 * mebibyte;
const partitions = 3;
const volumes = ["alpha", "beta"] as const;
/** Rounds of writes per partition, each followed by a flush: one chunk per round. */
const rounds = 3;
/** Blocks per round and partition: 128 KiB, at the round's own offset. */
const blocksPerRound = 32;
const roundBytes = blocksPerRound * blockBytes;
/** Reads back a partition in pieces of this size (a request carries at most 4 MiB). */
const readPieceBytes = mebibyte;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2 });
});
afterAll(() => cluster?.stop());

/** A fill byte of its own for every volume, partition and round; never zero. */
function fillOf(volume: number, partition: number, round: number): number {
  return 1 + volume * partitions * rounds + partition * rounds + round;
}

/** What partition `partition` of volume `volume` holds after every round. */
function expectedPartition(volume: number, partition: number): Uint8Array {
  const bytes = new Uint8Array(partitionBytes);
  for (let round = 0; round < rounds; round++) {
    bytes.fill(fillOf(volume, partition, round), round * roundBytes, (round + 1) * roundBytes);
  }
  return bytes;
}

function firstDifference(actual: Uint8Array, expected: Uint8Array): string | undefined {
  if (actual.length !== expected.length) return `length ${actual.length} ≠ ${expected.length}`;
  const at = actual.findIndex((byte, index) => byte !== expected[index]);
  return at < 0 ? undefined : `at byte ${at}: ${actual[at]} ≠ ${expected[at]}`;
}

async function writeAndFlush(volume: number, partition: number): Promise<number[]> {
  const name = volumes[volume]!;
  const flushed: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const offset = partition * partitionBytes + round * roundBytes;
    await writeBlocks(
      cluster.bus,
      name,
      partition,
      offset,
      blocksPerRound,
      fillOf(volume, partition, round),
    );
    // A flush now: it answers once the round is committed; its bytes reach the sleds
    // after, in a chunk of their own or (if the round before is still on its way) one
    // shared with the next round.
    const result = await onPartition(cluster.bus, name, partition, (epoch) =>
      cluster.bus.request(
        subjects.volume.build(name, partition),
        { type: "volume.flush.v1", volume: name, partition, epoch },
        { deadlineMs: 20_000 },
      ),
    );
    flushed.push(result.flushedOpNum);
  }
  return flushed;
}

test("two volumes written at once flush without a single AlreadyExists", async () => {
  const created = await Promise.all(
    volumes.map((name) =>
      cluster.bus.request(subjects.coordinator.build(), {
        type: "volume.create.v1",
        name,
        sizeBytes: partitions * partitionBytes,
        partitionBytes,
        replicaCount: 2,
      }),
    ),
  );
  const ids = created.map((volume) => volume.id);
  expect(new Set(ids).size).toBe(volumes.length);

  // Every partition of both volumes at once: their flushes race each other.
  const tasks = volumes.flatMap((_, volume) =>
    Array.from({ length: partitions }, (_, partition) => writeAndFlush(volume, partition)),
  );
  const flushed = await Promise.all(tasks);
  for (const opNums of flushed) expect(opNums).toHaveLength(rounds);

  // (a) Every byte of both volumes reads back as written, and the rest as zeros.
  for (const [volume, name] of volumes.entries()) {
    for (let partition = 0; partition < partitions; partition++) {
      const expected = expectedPartition(volume, partition);
      const actual = new Uint8Array(partitionBytes);
      for (let piece = 0; piece < partitionBytes; piece += readPieceBytes) {
        const offset = partition * partitionBytes + piece;
        actual.set(await readBytes(cluster.bus, name, partition, offset, readPieceBytes), piece);
      }
      expect(firstDifference(actual, expected), `${name} partition ${partition}`).toBeUndefined();
    }
  }

  // (b) No process met a name taken by another volume's chunk.
  const files = await logFiles(cluster.dataDir);
  for (const id of [...cluster.cluster.ids("headnode"), ...cluster.cluster.ids("sled")]) {
    expect(files, "the cluster's log files").toContain(`${id}.log`);
  }
  // Blobs are not chunks: the coordinator leaves its catalogue-sequence mark on every
  // sled once per create, and two creates at once may put the same mark on a sled twice
  // (written once, the second answered AlreadyExists, which the coordinator takes as
  // done: store-marks.ts). Only chunk requests and chunk write failures count here.
  const hits = (
    await logLinesContaining(cluster.dataDir, ["AlreadyExists", "chunk write failed"])
  ).filter((hit) => !hit.line.includes('"type":"sled.blob.'));
  expect(
    hits.map((hit) => `${hit.file}: ${hit.line.slice(0, 300)}`),
    "log lines about colliding or failed chunk writes",
  ).toEqual([]);

  // (c) Each sled holds chunks of both volumes, under ids of their own volume, with
  // owners that match; a chunk id on two sleds is two copies of one chunk. How many
  // chunks a partition has is timing: a flush answers once its writes are committed
  // and moves them to sleds in the background, one chunk at a time per partition, so a
  // round flushed while the round before is still on its way shares a chunk with the
  // next (1 to `rounds` chunks, every round's bytes once). The last may still be on its
  // way when the reads end: wait until both sleds hold every round's bytes.
  const sleds = cluster.cluster.ids("sled");
  const chunksOf = async (sled: string) =>
    (await listSledChunks(cluster.bus, sled)).filter((chunk) =>
      (volumes as readonly string[]).includes(chunk.owner.volume),
    );
  const bytesOf = (chunks: SledChunk[], name: string, partition: number) =>
    chunks
      .filter((chunk) => chunk.owner.volume === name && chunk.owner.partition === partition)
      .reduce((sum, chunk) => sum + chunk.bytes, 0);
  const everyRoundOn = (chunks: SledChunk[]) =>
    volumes.every((name) =>
      Array.from({ length: partitions }, (_, partition) => partition).every(
        (partition) => bytesOf(chunks, name, partition) >= rounds * roundBytes,
      ),
    );
  const listed = await waitFor("every round's bytes in chunks on both sleds", async () => {
    const all = await Promise.all(sleds.map(chunksOf));
    return all.every(everyRoundOn) ? all : undefined;
  });
  const ownerOf = new Map<string, string>();
  for (const [index, sled] of sleds.entries()) {
    const chunks = listed[index]!;
    expect(new Set(chunks.map((chunk) => chunk.chunkId)).size, `${sled}: distinct ids`).toBe(
      chunks.length,
    );
    // Two sleds and two copies per chunk: every chunk of every partition is on each.
    expect(chunks.map((chunk) => chunk.chunkId).sort(), `${sled}: the chunks`).toEqual(
      listed[0]!.map((chunk) => chunk.chunkId).sort(),
    );
    for (const [volume, name] of volumes.entries()) {
      const mine = chunks.filter((chunk: SledChunk) => chunk.owner.volume === name);
      for (let partition = 0; partition < partitions; partition++) {
        // Every round's bytes once: no chunk flushed twice, none missing.
        expect(bytesOf(chunks, name, partition), `${sled}: ${name} partition ${partition}`).toBe(
          rounds * roundBytes,
        );
        for (const chunk of mine.filter((chunk) => chunk.owner.partition === partition)) {
          expect(chunk.chunkId, `${sled}: a chunk of ${name}`).toMatch(
            new RegExp(`^${ids[volume]}-p${partition}-`),
          );
        }
      }
    }
    for (const chunk of chunks) {
      const owner = `${chunk.owner.volume}/${chunk.owner.partition}`;
      expect(ownerOf.get(chunk.chunkId) ?? owner, `owner of ${chunk.chunkId}`).toBe(owner);
      ownerOf.set(chunk.chunkId, owner);
    }
  }
  process.stdout.write(
    `two volumes: ${ids.join(" and ")} flushed ${ownerOf.size} chunks, none colliding\n`,
  );

  await Promise.all(
    volumes.map((name) =>
      cluster.bus.request(subjects.coordinatorAdmin.build(), { type: "volume.delete.v1", name }),
    ),
  );
});
