// A replacement replica rebuilt from a checkpoint: it joins as a learner, receives only
// the notes after the checkpoint's flushed point, never holds up commits, and ends with
// metadata identical to the primary's; then a new epoch makes it a secondary. The cores
// run on the head node's effect runner over the shared fakes (testing/cluster.ts), and
// learners fetch their checkpoint from the fake sleds as the head node does.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { expect, test } from "vitest";
import { fetchCheckpoint } from "../src/checkpoint-fetch.ts";
import { silentLog } from "../src/effect-runner.ts";
import type { CheckpointPointer } from "../src/replica/effects.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import { type Configuration, type Recovered, Replica } from "../src/replica/replica.ts";
import { InstantCluster } from "../src/testing/cluster.ts";

const partitionBytes = 1024 * 1024;
const identity = (nodeId: string, session: number) => ({
  nodeId,
  volume: "vol",
  partition: 0,
  partitionStart: 0,
  partitionBytes,
  session,
});

function write(core: Replica, requestId: number, epoch: number, offset: number, fill: number) {
  core.onClientRequest({
    kind: "write",
    requestId,
    epoch,
    writes: [{ offset, data: new Uint8Array(4096).fill(fill) }],
  });
}

/** The checkpoint `pointer` names, fetched from the sleds as a replacement would. */
/** Rebuilds head-2 from `checkpoint` and makes it the learner of head-1 in epoch 2. */
function addLearner(
  cluster: InstantCluster,
  primary: Replica,
  checkpoint: NonNullable<Recovered["checkpoint"]>,
): Replica {
  const learner = new Replica(identity("head-2", 1), { checkpoint, notes: [], rebuilt: true });
  cluster.add("head-2", learner);
  const epoch2: Configuration = {
    epoch: 2,
    primary: "head-1",
    secondaries: [],
    learners: ["head-2"],
  };
  primary.configure(epoch2);
  learner.configure(epoch2);
  return learner;
}

async function fetched(cluster: InstantCluster, pointer: CheckpointPointer | undefined) {
  if (pointer === undefined) throw new Error("no checkpoint is recorded");
  return (await fetchCheckpoint(cluster.sleds.port("head-2"), pointer, silentLog)).restored;
}

test("a learner rebuilt from a checkpoint catches up without holding up writes", async () => {
  const limits = { flushBytesThreshold: 1, checkpointIntervalTicks: 1 };
  const cluster = new InstantCluster();
  const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
  cluster.add("head-1", primary);
  const epoch1: Configuration = { epoch: 1, primary: "head-1", secondaries: [] };
  primary.configure(epoch1);
  for (let index = 0; index < 20; index++) write(primary, index, 1, (index % 7) * 4096, index + 1);
  cluster.settle();
  primary.tick(); // flush what is committed
  cluster.settle();
  for (let index = 20; index < 30; index++) write(primary, index, 1, (index % 5) * 8192, index + 1);
  cluster.settle();
  primary.tick(); // checkpoint: its op is past the flushed point (ops 21+ are unflushed)
  cluster.settle();
  const pointer = cluster.records.pointers.get("head-1");
  const restored = await fetched(cluster, pointer);
  expect(restored.metadata.flushedThroughOpNum).toBeLessThan(pointer!.opNum);

  // The replacement: no journal of its own, the primary's checkpoint, as a learner.
  const learner = addLearner(cluster, primary, restored);
  // Writes commit while the learner hears nothing: it does not count for commit.
  cluster.isolated.add("head-2");
  write(primary, 100, 2, 0, 0xee);
  cluster.settle();
  expect(primary.commitOpNum).toBe(primary.lastOpNum);
  cluster.isolated.delete("head-2");
  for (let tick = 0; tick < 60; tick++) {
    primary.tick();
    learner.tick();
    cluster.settle();
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
  cluster.settle();
  write(primary, 200, 3, 4096, 0x42);
  cluster.settle();
  // The commit point reaches a secondary with the next message (a heartbeat at the latest).
  for (let tick = 0; tick < 12; tick++) {
    primary.tick();
    cluster.settle();
  }
  expect(learner.commitOpNum).toBe(primary.commitOpNum);
  expect(learner.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
});

test("after a crash between the local checkpoint and its record, a learner from the recorded one still catches up", async () => {
  const limits = { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9, checkpointRetryTicks: 0 };
  const cluster = new InstantCluster();
  const first = new Replica(identity("head-1", 1), { notes: [] }, limits);
  const disk = cluster.add("head-1", first);
  first.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  const flushAndCheckpoint = () => {
    first.tick(); // flush what is committed
    cluster.settle();
    first.requestCheckpoint();
    first.tick();
    cluster.settle();
  };
  for (let index = 0; index < 10; index++) write(first, index, 1, index * 4096, index + 1);
  cluster.settle();
  flushAndCheckpoint(); // checkpoint A: stored, recorded; the journal is released up to it
  const pointerA = cluster.records.pointers.get("head-1");
  expect(pointerA).toBeDefined();
  expect(first.releasedThroughOpNum).toBeGreaterThan(0);
  for (let index = 10; index < 20; index++) write(first, index, 1, index * 4096, index + 1);
  cluster.settle();
  // Checkpoint B reaches the local file and the sleds; kill -9 before it is recorded.
  cluster.recordsHeld = true;
  flushAndCheckpoint();
  cluster.records.lose("head-1");
  cluster.recordsHeld = false;
  expect(cluster.records.pointers.get("head-1")).toEqual(pointerA);
  const local = await PartitionMetadata.restore(disk.checkpoints.checkpoint!);
  const atA = await fetched(cluster, pointerA);
  expect(local.metadata.flushedThroughOpNum).toBeGreaterThan(atA.metadata.flushedThroughOpNum);

  // The restart: its local checkpoint is B, its journal what was never released.
  const primary = new Replica(
    identity("head-1", 2),
    { checkpoint: local, notes: disk.journal.notes.map((note) => ({ ...note })) },
    limits,
  );
  cluster.restart("head-1", primary);
  expect(primary.releasedThroughOpNum).toBeLessThanOrEqual(atA.metadata.flushedThroughOpNum);
  // The learner is rebuilt from the recorded pointer, A.
  const learner = addLearner(cluster, primary, atA);
  write(primary, 100, 2, 0, 0xee);
  for (let tick = 0; tick < 60; tick++) {
    primary.tick();
    learner.tick();
    cluster.settle();
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
  const cluster = new InstantCluster();
  const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
  cluster.add("head-1", primary);
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  for (let index = 0; index < 10; index++) write(primary, index, 1, index * 4096, index + 1);
  cluster.settle();
  primary.tick();
  cluster.settle();
  for (let index = 10; index < 20; index++) write(primary, index, 1, index * 4096, index + 1);
  cluster.settle();
  primary.tick();
  cluster.settle();
  const pointer = cluster.records.pointers.get("head-1");
  const restored = await fetched(cluster, pointer);
  expect(restored.metadata.flushedThroughOpNum).toBeLessThan(pointer!.opNum);

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
  cluster.add("head-2", learner);
  primary.configure({ epoch: 2, primary: "head-1", secondaries: [], learners: ["head-2"] });
  for (let tick = 0; tick < 40 && learner.commitOpNum < primary.commitOpNum; tick++) {
    primary.tick();
    cluster.settle();
  }
  expect(learner.commitOpNum).toBe(primary.commitOpNum);
  expect(learner.commitOpNum).toBeGreaterThanOrEqual(pointer!.opNum);
  learner.requestCheckpoint();
  learner.tick();
  const own = learner.drainEffects().filter((effect) => effect.type === "checkpoint.write");
  expect(own.map((effect) => effect.opNum)).toEqual([learner.commitOpNum]);
});

test("a learner that stays silent across epochs gets a fresh checkpoint, however often the epoch changes", async () => {
  // Found by the failover simulator (seed 9502759): every copy of the recorded checkpoint
  // was damaged, so no learner could start, and the coordinator dropped each after
  // learnerCatchUpMsMax and added another. Two staggered learners changed the epoch
  // every half catch-up time, and each configure started every learner's silence count
  // again: the primary never found one silent for learnerSilentTicks, never stored
  // another checkpoint, and the partition stayed one replica for good.
  const limits = {
    flushBytesThreshold: 1,
    // Due at every tick once something new is flushed; nothing is after the first.
    checkpointIntervalTicks: 1,
    checkpointRetryTicks: 1,
    learnerSilentTicks: 60,
  };
  const cluster = new InstantCluster();
  const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
  cluster.add("head-1", primary);
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  for (let index = 0; index < 5; index++) write(primary, index, 1, index * 4096, index + 1);
  cluster.settle();
  for (let tick = 0; tick < 3; tick++) {
    primary.tick(); // flush, then checkpoint what is flushed
    cluster.settle();
  }
  const first = cluster.records.pointers.get("head-1");
  expect(first).toBeDefined();

  // Learners that never answer (nothing hosts them), replaced in turn every 40 ticks:
  // each change is a new epoch, and one learner is always in its second epoch.
  const spares = ["head-2", "head-3", "head-4"];
  let learners = ["head-2"];
  let epoch = 2;
  primary.configure({ epoch, primary: "head-1", secondaries: [], learners });
  for (let tick = 1; tick <= 200; tick++) {
    primary.tick();
    cluster.settle();
    if (tick % 40 === 0) {
      // The older learner is dropped and a spare added in one epoch, as two rounds would.
      const added = spares.find((node) => !learners.includes(node))!;
      learners = learners.length < 2 ? [...learners, added] : [learners[1]!, added];
      epoch++;
      primary.configure({ epoch, primary: "head-1", secondaries: [], learners });
    }
  }
  const next = cluster.records.pointers.get("head-1");
  expect(next?.opNum).toBe(first!.opNum);
  expect(next?.blobKey).not.toBe(first!.blobKey);
});

// The coordinator sends the next learner another checkpoint when this one could not be
// fetched (configurer.ts `unusableCheckpoint`, simulator seed 9790455): the refusal names
// the blob.
test("a checkpoint with no usable copy on any sled is refused as checkpoint-unusable, naming its blob", async () => {
  const cluster = new InstantCluster();
  const pointer: CheckpointPointer = {
    opNum: 3,
    blobKey: "checkpoints/vol/0/head-1/3-1-1",
    sleds: ["sled-1", "sled-2"],
    bytes: 10,
    createdAtMs: 0,
  };
  const refused = await fetchCheckpoint(cluster.sleds.port("head-2"), pointer, silentLog).catch(
    (error: unknown) => error,
  );
  expect((refused as { details?: unknown }).details).toEqual({
    refusal: "checkpoint-unusable",
    blobKey: pointer.blobKey,
  });
});

test("a checkpoint whose sleds did not answer is refused without naming it unusable (the learner may be the node cut)", async () => {
  const pointer: CheckpointPointer = {
    opNum: 3,
    blobKey: "checkpoints/vol/0/head-1/3-1-1",
    sleds: ["sled-1", "sled-2"],
    bytes: 10,
    createdAtMs: 0,
  };
  const unanswered = {
    getBlob: async () => {
      throw new BallastError(ErrorCode.Timeout, "request timed out");
    },
  } as unknown as Parameters<typeof fetchCheckpoint>[0];
  const refused = await fetchCheckpoint(unanswered, pointer, silentLog).catch(
    (error: unknown) => error,
  );
  expect(refused).toBeInstanceOf(BallastError);
  expect((refused as BallastError).details).toBeUndefined();
});
