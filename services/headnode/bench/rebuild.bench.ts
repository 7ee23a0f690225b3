// What rebuilding a replica from a checkpoint costs, against what copying the volume's
// data would cost. Runs the real replica cores in one process: a primary takes N GiB of
// 4 MiB writes (chunks go to a sink: only metadata matters to a rebuild), checkpoints,
// then takes K more small writes; a learner then restores the checkpoint and catches up
// by replication. The claim to check: rebuild time follows the metadata and K, not N.
// Beside it, the time to copy N GiB at this machine's measured sequential write speed.
//
//   node --import tsx services/headnode/bench/rebuild.bench.ts

import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Effect } from "../src/replica/effects.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import { Replica } from "../src/replica/replica.ts";
import { storedPointer } from "../src/testing/checkpoint.ts";

const mebibyte = 1024 * 1024;
const gibibyte = 1024 * mebibyte;
const writeBytes = 4 * mebibyte;

function identity(nodeId: string, partitionBytes: number, session: number) {
  return { nodeId, volume: "bench", partition: 0, partitionStart: 0, partitionBytes, session };
}

/** Carries out effects: journals are durable at once, chunks go nowhere, checkpoints are kept. */
function run(
  cores: Map<string, Replica>,
  checkpoint: { bytes?: Uint8Array; opNum?: number },
): void {
  for (let moved = true; moved; ) {
    moved = false;
    for (const core of cores.values()) {
      for (const effect of core.drainEffects() as Effect[]) {
        moved = true;
        switch (effect.type) {
          case "journal.append":
            core.onJournalDurable(effect.notes[effect.notes.length - 1]!.opNum, effect.generation);
            break;
          case "send":
            cores.get(effect.to)?.onReplicationMessage(effect.message);
            break;
          case "chunk.write":
            core.onChunkWritten(effect.chunkNumber, ["sled-1", "sled-2"]);
            break;
          case "checkpoint.write":
            checkpoint.bytes = effect.snapshot;
            checkpoint.opNum = effect.opNum;
            core.onCheckpointDurable(effect.opNum);
            break;
          case "checkpoint.store":
            core.onCheckpointStored(effect.opNum, storedPointer(effect));
            break;
          case "checkpoint.record":
            core.onCheckpointRecorded(effect.opNum);
            break;
          default:
            break;
        }
      }
    }
  }
}

interface Result {
  dataBytes: number;
  notesSinceCheckpoint: number;
  extents: number;
  checkpointBytes: number;
  restoreMs: number;
  catchUpMs: number;
}

async function scenario(dataBytes: number, notesSinceCheckpoint: number): Promise<Result> {
  const partitionBytes = Math.max(dataBytes, gibibyte);
  const primary = new Replica(
    identity("head-1", partitionBytes, 1),
    { notes: [] },
    { checkpointIntervalTicks: 1 },
  );
  const cores = new Map([["head-1", primary]]);
  const checkpoint: { bytes?: Uint8Array; opNum?: number } = {};
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  const data = new Uint8Array(writeBytes).fill(0x5a);
  let requestId = 0;
  for (let offset = 0; offset < dataBytes; offset += writeBytes) {
    const before = primary.commitOpNum;
    primary.onClientRequest({
      kind: "write",
      requestId: requestId++,
      epoch: 1,
      writes: [{ offset, data }],
    });
    run(cores, checkpoint);
    // A write past the journal's bound waits for flushes and a checkpoint: tick until
    // it has committed, so that every byte counted here is really written.
    while (primary.commitOpNum === before) {
      primary.tick();
      run(cores, checkpoint);
    }
  }
  // Flush and checkpoint everything, so that only the K writes below are after it.
  primary.onClientRequest({ kind: "flush", requestId: requestId++, epoch: 1 });
  for (let tick = 0; tick < 20; tick++) {
    primary.tick();
    run(cores, checkpoint);
  }
  const checkpointOpNum = checkpoint.opNum;
  const small = new Uint8Array(4096).fill(0xa5);
  for (let index = 0; index < notesSinceCheckpoint; index++) {
    const offset = ((index * 7919) % (partitionBytes / 4096)) * 4096;
    primary.onClientRequest({
      kind: "write",
      requestId: requestId++,
      epoch: 1,
      writes: [{ offset, data: small }],
    });
    run(cores, checkpoint);
  }
  if (checkpoint.opNum !== checkpointOpNum)
    throw new Error("a checkpoint was taken after the small writes");
  if (checkpoint.bytes === undefined) throw new Error("no checkpoint was taken");

  const checkpointBytes = checkpoint.bytes.byteLength;
  const restoreStart = performance.now();
  const restored = await PartitionMetadata.restore(checkpoint.bytes);
  const restoreMs = performance.now() - restoreStart;
  const catchUpStart = performance.now();
  const learner = new Replica(identity("head-2", partitionBytes, 1), {
    checkpoint: restored,
    notes: [],
    rebuilt: true,
  });
  cores.set("head-2", learner);
  const configuration = { epoch: 2, primary: "head-1", secondaries: [], learners: ["head-2"] };
  primary.configure(configuration);
  learner.configure(configuration);
  for (let round = 0; learner.commitOpNum < primary.commitOpNum && round < 100_000; round++) {
    primary.tick();
    run(cores, checkpoint);
  }
  const catchUpMs = performance.now() - catchUpStart;
  if (learner.metadata.fingerprint() !== primary.metadata.fingerprint()) {
    throw new Error("the rebuilt replica's metadata differs from the primary's");
  }
  if (primary.metadata.tree.mappedBytes < dataBytes) {
    throw new Error(`only ${primary.metadata.tree.mappedBytes} of ${dataBytes} bytes are mapped`);
  }
  return {
    dataBytes,
    notesSinceCheckpoint,
    extents: primary.metadata.tree.extentCount,
    checkpointBytes,
    restoreMs,
    catchUpMs,
  };
}

/** Sequential write speed with fsync at the end, in bytes per second. */
async function measureCopySpeed(): Promise<number> {
  const directory = await mkdtemp(join(tmpdir(), "ballast-copy-"));
  const file = await open(join(directory, "copy"), "w");
  const block = new Uint8Array(8 * mebibyte).fill(1);
  const bytes = 512 * mebibyte;
  const start = performance.now();
  for (let written = 0; written < bytes; written += block.byteLength) await file.write(block);
  await file.sync();
  const seconds = (performance.now() - start) / 1000;
  await file.close();
  await rm(directory, { recursive: true, force: true });
  return bytes / seconds;
}

const copyBytesPerSecond = await measureCopySpeed();
const rows: Result[] = [];
for (const [dataBytes, notes] of [
  [gibibyte, 1000],
  [8 * gibibyte, 1000],
  [gibibyte, 0],
  [gibibyte, 10_000],
  [gibibyte, 50_000],
] as const) {
  rows.push(await scenario(dataBytes, notes));
}

const format = (ms: number) => `${ms.toFixed(0)} ms`;
process.stdout.write(
  `copy speed measured here: ${(copyBytesPerSecond / mebibyte).toFixed(0)} MiB/s sequential with fsync\n\n`,
);
process.stdout.write(
  "data written | notes since checkpoint | extents | checkpoint | restore | catch-up | rebuild total | copy the data instead\n",
);
for (const row of rows) {
  process.stdout.write(
    `${(row.dataBytes / gibibyte).toFixed(0)} GiB | ${row.notesSinceCheckpoint} | ${row.extents} | ${(row.checkpointBytes / 1024).toFixed(1)} KiB | ${format(row.restoreMs)} | ${format(row.catchUpMs)} | ${format(row.restoreMs + row.catchUpMs)} | ${format((row.dataBytes / copyBytesPerSecond) * 1000)}\n`,
  );
}
