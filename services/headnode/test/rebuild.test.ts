// A replacement replica rebuilt from a checkpoint: it joins as a learner, receives only
// the notes after the checkpoint's flushed point, never holds up commits, and ends with
// metadata identical to the primary's; then a new epoch makes it a secondary.

import { expect, test } from "vitest";
import type { Effect } from "../src/replica/effects.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import type { Note } from "../src/replica/note.ts";
import { type Configuration, Replica } from "../src/replica/replica.ts";
import { publishCheckpoint, storedPointer } from "../src/testing/checkpoint.ts";

const partitionBytes = 1024 * 1024;
const identity = (nodeId: string, session: number) => ({
  nodeId,
  volume: "vol",
  partition: 0,
  partitionStart: 0,
  partitionBytes,
  session,
});

/** Delivers every effect between the cores until nothing moves; journals sync at once. */
function pump(cores: Map<string, Replica>, chunks: Map<number, true>): Effect[] {
  const leftovers: Effect[] = [];
  for (let round = 0; round < 1000; round++) {
    let moved = false;
    for (const [, core] of cores) {
      for (const effect of core.drainEffects()) {
        moved = true;
        if (effect.type === "send") cores.get(effect.to)?.onReplicationMessage(effect.message);
        else if (effect.type === "journal.append") {
          core.onJournalDurable(effect.notes[effect.notes.length - 1]!.opNum, effect.generation);
        } else if (effect.type === "chunk.write") {
          chunks.set(effect.chunkNumber, true);
          core.onChunkWritten(effect.chunkNumber, ["sled-1", "sled-2"]);
        } else leftovers.push(effect);
      }
    }
    if (!moved) return leftovers;
  }
  throw new Error("the cores did not settle");
}

function write(core: Replica, requestId: number, epoch: number, offset: number, fill: number) {
  core.onClientRequest({
    kind: "write",
    requestId,
    epoch,
    writes: [{ offset, data: new Uint8Array(4096).fill(fill) }],
  });
}

test("a learner rebuilt from a checkpoint catches up without holding up writes", async () => {
  const limits = { flushBytesThreshold: 1, checkpointIntervalTicks: 1 };
  const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
  const cores = new Map([["head-1", primary]]);
  const chunks = new Map<number, true>();
  const epoch1: Configuration = { epoch: 1, primary: "head-1", secondaries: [] };
  primary.configure(epoch1);
  for (let index = 0; index < 20; index++) write(primary, index, 1, (index % 7) * 4096, index + 1);
  pump(cores, chunks);
  primary.tick(); // flush what is committed
  pump(cores, chunks);
  for (let index = 20; index < 30; index++) write(primary, index, 1, (index % 5) * 8192, index + 1);
  pump(cores, chunks);
  primary.tick(); // checkpoint: its op is past the flushed point (ops 21+ are unflushed)
  const [checkpoint] = pump(cores, chunks).filter((effect) => effect.type === "checkpoint.write");
  expect(checkpoint?.type).toBe("checkpoint.write");
  if (checkpoint?.type !== "checkpoint.write") return;
  publishCheckpoint(primary, checkpoint.opNum);
  pump(cores, chunks);
  const restored = await PartitionMetadata.restore(checkpoint.snapshot);
  expect(restored.metadata.flushedThroughOpNum).toBeLessThan(checkpoint.opNum);

  // The replacement: no journal of its own, the primary's checkpoint, as a learner.
  const learner = new Replica(identity("head-2", 1), {
    checkpoint: restored,
    notes: [],
    rebuilt: true,
  });
  cores.set("head-2", learner);
  const epoch2: Configuration = {
    epoch: 2,
    primary: "head-1",
    secondaries: [],
    learners: ["head-2"],
  };
  primary.configure(epoch2);
  learner.configure(epoch2);
  // Writes commit while the learner catches up: it does not count for commit.
  write(primary, 100, 2, 0, 0xee);
  primary.drainEffects().forEach((effect) => {
    if (effect.type === "journal.append")
      primary.onJournalDurable(effect.notes.at(-1)!.opNum, effect.generation);
  });
  expect(primary.commitOpNum).toBe(primary.lastOpNum);
  for (let tick = 0; tick < 60; tick++) {
    primary.tick();
    learner.tick();
    pump(cores, chunks);
  }
  expect(learner.commitOpNum).toBe(primary.commitOpNum);
  expect(learner.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
  // It holds the bytes of every unflushed op: a read plan on it needs no missing note.
  const plan = learner.metadata.planRead(
    0,
    64 * 1024,
    (opNum) =>
      (learner as unknown as { log: Map<number, { data?: Uint8Array }> }).log.get(opNum)?.data,
  );
  expect(plan.length).toBeGreaterThan(0);
  expect(primary.followers()).toEqual([
    { node: "head-2", matchOpNum: primary.lastOpNum, learner: true },
  ]);

  // Promoted: a secondary now, and writes need it.
  const epoch3: Configuration = { epoch: 3, primary: "head-1", secondaries: ["head-2"] };
  primary.configure(epoch3);
  learner.configure(epoch3);
  pump(cores, chunks);
  write(primary, 200, 3, 4096, 0x42);
  pump(cores, chunks);
  // The commit point reaches a secondary with the next message (a heartbeat at the latest).
  for (let tick = 0; tick < 12; tick++) {
    primary.tick();
    pump(cores, chunks);
  }
  expect(learner.commitOpNum).toBe(primary.commitOpNum);
  expect(learner.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
});

/** A replica's disk, as far as recovery goes: its journal and its local checkpoint file. */
interface Disk {
  journal: Note[];
  checkpoint?: Uint8Array;
}

/**
 * Delivers effects between the cores until nothing moves, keeping each core's disk:
 * appends and releases reach its journal, checkpoints its local file. A checkpoint is
 * reported stored and recorded only if `record` says so.
 */
function pumpWithDisks(
  cores: Map<string, Replica>,
  disks: Map<string, Disk>,
  record: (node: string, opNum: number) => boolean,
): void {
  for (let round = 0; round < 1000; round++) {
    let moved = false;
    for (const [node, core] of cores) {
      const disk = disks.get(node)!;
      for (const effect of core.drainEffects()) {
        moved = true;
        switch (effect.type) {
          case "send":
            cores.get(effect.to)?.onReplicationMessage(effect.message);
            break;
          case "journal.append":
            disk.journal.push(...effect.notes.map((note) => ({ ...note })));
            core.onJournalDurable(effect.notes.at(-1)!.opNum, effect.generation);
            break;
          case "journal.truncate":
            disk.journal = disk.journal.filter((note) => note.opNum <= effect.afterOpNum);
            break;
          case "journal.release":
            disk.journal = disk.journal.filter((note) => note.opNum > effect.throughOpNum);
            break;
          case "chunk.write":
            core.onChunkWritten(effect.chunkNumber, ["sled-1", "sled-2"]);
            break;
          case "checkpoint.write":
            disk.checkpoint = effect.snapshot;
            core.onCheckpointDurable(effect.opNum);
            break;
          case "checkpoint.store":
            core.onCheckpointStored(effect.opNum, storedPointer(effect));
            break;
          case "checkpoint.record":
            if (record(node, effect.opNum)) core.onCheckpointRecorded(effect.opNum);
            break;
          default:
            break;
        }
      }
    }
    if (!moved) return;
  }
  throw new Error("the cores did not settle");
}

test("after a crash between the local checkpoint and its record, a learner from the recorded one still catches up", async () => {
  const limits = { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9, checkpointRetryTicks: 0 };
  const disks = new Map<string, Disk>([["head-1", { journal: [] }]]);
  const first = new Replica(identity("head-1", 1), { notes: [] }, limits);
  const cores = new Map([["head-1", first]]);
  first.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  const recorded: Uint8Array[] = [];
  let recording = true;
  const record = (_node: string, _opNum: number) => {
    if (recording) recorded.push(disks.get("head-1")!.checkpoint!);
    return recording;
  };
  const flushAndCheckpoint = () => {
    first.tick(); // flush what is committed
    pumpWithDisks(cores, disks, record);
    first.requestCheckpoint();
    first.tick();
    pumpWithDisks(cores, disks, record);
  };
  for (let index = 0; index < 10; index++) write(first, index, 1, index * 4096, index + 1);
  pumpWithDisks(cores, disks, record);
  flushAndCheckpoint(); // checkpoint A: stored, recorded; the journal is released up to it
  expect(recorded.length).toBe(1);
  const releasedAtA = first.releasedThroughOpNum;
  expect(releasedAtA).toBeGreaterThan(0);
  for (let index = 10; index < 20; index++) write(first, index, 1, index * 4096, index + 1);
  pumpWithDisks(cores, disks, record);
  recording = false; // checkpoint B reaches the local file; kill -9 before it is recorded
  flushAndCheckpoint();
  const local = await PartitionMetadata.restore(disks.get("head-1")!.checkpoint!);
  const atA = await PartitionMetadata.restore(recorded[0]!);
  expect(local.metadata.flushedThroughOpNum).toBeGreaterThan(atA.metadata.flushedThroughOpNum);

  // The restart: its local checkpoint is B, its journal what was never released.
  const primary = new Replica(
    identity("head-1", 2),
    { checkpoint: local, notes: disks.get("head-1")!.journal.map((note) => ({ ...note })) },
    limits,
  );
  expect(primary.releasedThroughOpNum).toBeLessThanOrEqual(atA.metadata.flushedThroughOpNum);
  // The learner is rebuilt from the recorded pointer, A.
  const learner = new Replica(identity("head-2", 1), {
    checkpoint: atA,
    notes: [],
    rebuilt: true,
  });
  cores.set("head-1", primary);
  cores.set("head-2", learner);
  disks.set("head-2", { journal: [] });
  const epoch2: Configuration = {
    epoch: 2,
    primary: "head-1",
    secondaries: [],
    learners: ["head-2"],
  };
  primary.configure(epoch2);
  learner.configure(epoch2);
  write(primary, 100, 2, 0, 0xee);
  for (let tick = 0; tick < 60; tick++) {
    primary.tick();
    learner.tick();
    pumpWithDisks(cores, disks, () => true);
  }
  expect(primary.followers()).toEqual([
    { node: "head-2", matchOpNum: primary.lastOpNum, learner: true },
  ]);
  expect(learner.commitOpNum).toBe(primary.commitOpNum);
  expect(learner.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
});

test("a rebuilt replica takes no checkpoint until it has re-committed what its snapshot reflects", async () => {
  // Found by the failover simulator: a learner's own checkpoint, due before the primary
  // had resent the notes after the snapshot's flushed point, snapshotted its tree at a
  // commit point below ops the tree already held, and tripped the B-tree's assertion.
  const limits = { flushBytesThreshold: 1, checkpointIntervalTicks: 1 };
  const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
  const cores = new Map([["head-1", primary]]);
  const chunks = new Map<number, true>();
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  for (let index = 0; index < 10; index++) write(primary, index, 1, index * 4096, index + 1);
  pump(cores, chunks);
  primary.tick();
  pump(cores, chunks);
  for (let index = 10; index < 20; index++) write(primary, index, 1, index * 4096, index + 1);
  pump(cores, chunks);
  primary.tick();
  const [checkpoint] = pump(cores, chunks).filter((effect) => effect.type === "checkpoint.write");
  if (checkpoint?.type !== "checkpoint.write") throw new Error("no checkpoint was taken");
  const restored = await PartitionMetadata.restore(checkpoint.snapshot);
  expect(restored.metadata.flushedThroughOpNum).toBeLessThan(checkpoint.opNum);

  // Rebuilt, with its own checkpoints due at every tick and one asked for (as after a
  // restart, or as a primary whose learner needs one), and no primary reachable yet.
  const learner = new Replica(
    identity("head-2", 1),
    { checkpoint: restored, notes: [], rebuilt: true },
    { ...limits, checkpointRetryTicks: 1 },
  );
  learner.configure({ epoch: 2, primary: "head-1", secondaries: [], learners: ["head-2"] });
  learner.requestCheckpoint();
  for (let tick = 0; tick < 5; tick++) learner.tick();
  expect(learner.drainEffects().filter((effect) => effect.type === "checkpoint.write")).toEqual([]);

  // Once the primary has resent what it lacks, it checkpoints as any replica does.
  cores.set("head-2", learner);
  primary.configure({ epoch: 2, primary: "head-1", secondaries: [], learners: ["head-2"] });
  for (let tick = 0; tick < 40 && learner.commitOpNum < primary.commitOpNum; tick++) {
    primary.tick();
    pump(cores, chunks);
  }
  expect(learner.commitOpNum).toBe(primary.commitOpNum);
  expect(learner.commitOpNum).toBeGreaterThanOrEqual(checkpoint.opNum);
  learner.requestCheckpoint();
  learner.tick();
  const own = learner.drainEffects().filter((effect) => effect.type === "checkpoint.write");
  expect(own.map((effect) => effect.opNum)).toEqual([learner.commitOpNum]);
});
