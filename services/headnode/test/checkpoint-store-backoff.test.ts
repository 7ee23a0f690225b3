// A primary whose checkpoint cannot reach limits.chunkCopies sleds (one of two dead, no
// spare) used to take and store a new checkpoint every checkpointRetryTicks (2 s) for as
// long as the sled stayed down: the replicator's request stands after a failed store,
// and each try left an orphan blob on the live sled. Here a real core and a real
// replicator, with the shell's part played by hand on a fake clock (ticks) and fake
// sleds: stores back off up to checkpointStoreRetryTicksMax, and a sled back
// (retryCheckpointSoon, as PartitionHost calls it) has a checkpoint stored at the usual
// pace; one that fails again backs off from where it was.

import { createLogger } from "@ballast/runtime";
import { expect, test } from "vitest";
import { replicaLimitsDefault } from "../src/constants.ts";
import type { Effect } from "../src/replica/effects.ts";
import { Replica } from "../src/replica/replica.ts";
import { type ReplicatedPartition, Replicator } from "../src/replicator.ts";
import { storedPointer } from "../src/testing/checkpoint.ts";

const logger = createLogger({ service: "headnode", nodeId: "head-1", level: "silent" });
const ticksPerMinute = 3000; // tickMs 20
const { checkpointRetryTicks } = replicaLimitsDefault;

/** Fake sleds: a store reaches both only while sled-2 is alive. */
function fakeShell(core: Replica) {
  const counts = { takes: 0, stores: 0, orphans: 0 };
  const state = { sled2Alive: true };
  const run = () => {
    for (let effects = core.drainEffects(); effects.length > 0; effects = core.drainEffects()) {
      for (const effect of effects) carryOut(effect);
    }
  };
  const carryOut = (effect: Effect) => {
    switch (effect.type) {
      case "journal.append": {
        const last = effect.notes[effect.notes.length - 1];
        if (last !== undefined) core.onJournalDurable(last.opNum, effect.generation);
        return;
      }
      case "chunk.write":
        core.onChunkWritten(effect.chunkNumber, ["sled-1", "sled-2"]);
        return;
      case "checkpoint.write":
        counts.takes++;
        core.onCheckpointDurable(effect.opNum);
        return;
      case "checkpoint.store":
        counts.stores++;
        if (state.sled2Alive) {
          core.onCheckpointStored(effect.opNum, storedPointer(effect, ["sled-1", "sled-2"]));
        } else {
          counts.orphans++; // written to sled-1, refused as short: the sweep's to delete
          core.onCheckpointFailed(effect.opNum);
        }
        return;
      case "checkpoint.record":
        core.onCheckpointRecorded(effect.opNum);
        return;
      default:
        return;
    }
  };
  return { counts, state, run };
}

test("stores short of sleds back off, bounded, and a sled back gets a checkpoint stored at once", async () => {
  const core = new Replica(
    {
      nodeId: "head-1",
      volume: "v",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 1 << 20,
      session: 1,
    },
    { notes: [] },
    { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9 },
  );
  const shell = fakeShell(core);
  core.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  core.onClientRequest({
    kind: "write",
    requestId: 1,
    epoch: 1,
    writes: [{ offset: 0, data: new Uint8Array(4096).fill(1) }],
  });
  shell.run();
  core.requestCheckpoint();
  for (let tick = 0; tick < 2 * checkpointRetryTicks; tick++) {
    core.tick();
    shell.run();
  }
  const first = core.recordedCheckpoint;
  expect(first?.sleds).toEqual(["sled-1", "sled-2"]);
  Object.assign(shell.counts, { takes: 0, stores: 0, orphans: 0 });

  // sled-2 dies and is declared out: the replicator asks for a new checkpoint.
  shell.state.sled2Alive = false;
  const replicated: ReplicatedPartition = {
    address: { volume: "v", volumeId: "v", partition: 0 },
    roleName: "primary",
    sleds: ["sled-1", "sled-2"],
    replica: core,
  };
  const replicator = new Replicator({
    logger,
    partitions: () => [replicated],
    sleds: {
      copyChunk: async () => "sled-1",
      checkChunk: async () => [],
      statBlob: async () => ({ bytes: 9, checksum: 0 }),
      copyBlob: async () => "sled-1",
      statChunk: async () => ({ bytes: 4096, checksum: 0 }),
      getBlob: async (_key: string, bytes: number) => ({ data: new Uint8Array(bytes), sled: "" }),
    },
  });
  replicator.setOut(["sled-2"]);
  await replicator.pass();
  shell.run();

  // Five simulated minutes with sled-2 down, a replicator pass every 30 s.
  const minutes = 5;
  const storesByMinute: number[] = [];
  for (let minute = 0; minute < minutes; minute++) {
    const before = shell.counts.stores;
    for (let tick = 0; tick < ticksPerMinute; tick++) {
      core.tick();
      shell.run();
      if (tick % (ticksPerMinute / 2) === 0) {
        await replicator.pass();
        shell.run();
      }
    }
    storesByMinute.push(shell.counts.stores - before);
  }
  // The old pace was one every checkpointRetryTicks: 30 a minute, 150 in all. Now the
  // pause doubles from 2 s to checkpointStoreRetryTicksMax (60 s): a few in the first
  // minute, then one a minute.
  expect(shell.counts.orphans).toBe(shell.counts.stores);
  expect(shell.counts.stores).toBeGreaterThan(0);
  expect(shell.counts.stores).toBeLessThanOrEqual(5 + minutes);
  expect(shell.counts.takes).toBe(shell.counts.stores);
  expect(storesByMinute[minutes - 1]).toBeLessThanOrEqual(1);
  expect(core.recordedCheckpoint?.blobKey).toBe(first?.blobKey);

  // A sled answering again while sled-2 is still down (one slow, going silent and
  // answering in turn): the next store comes soon, and when it fails the back-off goes
  // on from where it was. Before, each answer reset it, and the stores went at 2 s,
  // 4 s, 8 s again every time (review-diff19 D2).
  core.retryCheckpointSoon();
  const flapBefore = shell.counts.stores;
  for (let tick = 0; tick < checkpointRetryTicks + 1; tick++) {
    core.tick();
    shell.run();
  }
  expect(shell.counts.stores).toBe(flapBefore + 1);
  for (let tick = 0; tick < 10 * checkpointRetryTicks; tick++) {
    core.tick();
    shell.run();
  }
  expect(shell.counts.stores).toBe(flapBefore + 1);

  // Just after a failed store (the next is checkpointStoreRetryTicksMax away), sled-2 is
  // back (PartitionHost sees it leave the out set): the next store comes at the usual
  // pace after the last, not at the end of the back-off, and is recorded.
  const failed = shell.counts.stores;
  for (let tick = 0; tick < ticksPerMinute && shell.counts.stores === failed; tick++) {
    core.tick();
    shell.run();
  }
  expect(shell.counts.stores).toBe(failed + 1);
  shell.state.sled2Alive = true;
  core.retryCheckpointSoon();
  const storesBefore = shell.counts.stores;
  for (let tick = 0; tick < checkpointRetryTicks + 1; tick++) {
    core.tick();
    shell.run();
  }
  expect(shell.counts.stores).toBe(storesBefore + 1);
  expect(core.recordedCheckpoint?.blobKey).not.toBe(first?.blobKey);
  expect(core.recordedCheckpoint?.sleds).toEqual(["sled-1", "sled-2"]);
  await replicator.close();
});
