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
import { startTestCluster, type TestCluster } from "../support/cluster.ts";
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
    // A flush now writes this round's bytes as a chunk of their own.
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
  const hits = await logLinesContaining(cluster.dataDir, ["AlreadyExists", "chunk write failed"]);
  expect(
    hits.map((hit) => `${hit.file}: ${hit.line.slice(0, 300)}`),
    "log lines about colliding or failed chunk writes",
  ).toEqual([]);

  // (c) Each sled holds chunks of both volumes, under ids of their own volume, with
  // owners that match; a chunk id on two sleds is two copies of one chunk.
  const ownerOf = new Map<string, string>();
  for (const sled of cluster.cluster.ids("sled")) {
    const chunks = (await listSledChunks(cluster.bus, sled)).filter((chunk) =>
      (volumes as readonly string[]).includes(chunk.owner.volume),
    );
    expect(new Set(chunks.map((chunk) => chunk.chunkId)).size, `${sled}: distinct ids`).toBe(
      chunks.length,
    );
    for (const [volume, name] of volumes.entries()) {
      const mine = chunks.filter((chunk: SledChunk) => chunk.owner.volume === name);
      for (let partition = 0; partition < partitions; partition++) {
        const ofPartition = mine.filter((chunk) => chunk.owner.partition === partition);
        // Two sleds and two copies per chunk: every chunk of every partition is here.
        expect(ofPartition.length, `${sled}: chunks of ${name} partition ${partition}`).toBe(
          rounds,
        );
        for (const chunk of ofPartition) {
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
      cluster.bus.request(subjects.coordinator.build(), { type: "volume.delete.v1", name }),
    ),
  );
});
