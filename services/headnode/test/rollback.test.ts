// Rollback in the partition core, on three replica cores wired by the head node's effect
// runner over the shared fakes (testing/cluster.ts): a `snapshot.rollback` control note
// replaces the current tree with a copy of the snapshot's on every replica at the same
// op; the snapshot stays; references are recounted, so chunks only the overwritten data
// held are dropped; a checkpoint restore after it keeps it; a second rollback to the same
// snapshot leaves the same state; a rollback to an unknown snapshot is NotFound, also
// when a drop proposed before it commits first.

import type { BallastError } from "@ballast/protocol";
import { expect, test } from "vitest";
import type { ReplicaLimits } from "../src/constants.ts";
import type { Reply } from "../src/replica/effects.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import { type Configuration, Replica } from "../src/replica/replica.ts";
import { resolveRead } from "../src/testing/client.ts";
import { InstantCluster } from "../src/testing/cluster.ts";

const partitionBytes = 1024 * 1024;
const modelBytes = 64 * 1024;
const nodes = ["head-1", "head-2", "head-3"];
const epoch1: Configuration = { epoch: 1, primary: "head-1", secondaries: ["head-2", "head-3"] };

function start(limits: Partial<ReplicaLimits> = {}) {
  const cluster = new InstantCluster();
  const cores = nodes.map((nodeId) => {
    const core = new Replica(
      { nodeId, volume: "vol", partition: 0, partitionStart: 0, partitionBytes, session: 1 },
      { notes: [] },
      {
        flushBytesThreshold: 1,
        heartbeatTicks: 1,
        dropIntervalTicks: 1,
        compactionIntervalTicks: 1e9,
        ...limits,
      },
    );
    cluster.add(nodeId, core);
    core.configure(epoch1);
    return core;
  });
  const primary = cores[0]!;
  const model = new Uint8Array(modelBytes);
  let requestId = 0;
  const control = (action: (request: number) => void): Reply | BallastError | undefined => {
    const request = ++requestId;
    action(request);
    cluster.settle();
    return cluster.replies.get(request);
  };
  return {
    cluster,
    cores,
    primary,
    model,
    write(offset: number, length: number, fill: number) {
      const data = new Uint8Array(length).fill(fill);
      const id = ++requestId;
      primary.onClientRequest({
        kind: "write",
        requestId: id,
        epoch: 1,
        writes: [{ offset, data }],
      });
      model.set(data, offset);
      cluster.settle();
    },
    take: (id: string) => control((request) => primary.takeSnapshot(request, 1, id)),
    rollback: (id: string) => control((request) => primary.rollbackSnapshot(request, 1, id)),
    ticks(count: number) {
      for (let tick = 0; tick < count; tick++) {
        for (const core of cores) core.tick();
        cluster.settle();
      }
    },
    read(on: Replica = primary, snapshot?: string): Uint8Array {
      const read = on.read(1, [{ offset: 0, length: modelBytes }], undefined, snapshot);
      return resolveRead(read, cluster.sleds.chunks, (check, message) => {
        throw new Error(`[${check}] ${message}`);
      });
    },
    /** Every replica agrees and accounts exactly, once the commit point has spread. */
    check() {
      for (let tick = 0; tick < 10; tick++) {
        if (cores.every((core) => core.commitOpNum === primary.commitOpNum)) break;
        for (const core of cores) core.tick();
        cluster.settle();
      }
      for (const core of cores) {
        expect(core.commitOpNum).toBe(primary.commitOpNum);
        expect(core.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
        expect(core.metadata.checkRefs()).toEqual([]);
        expect(core.metadata.dropsRefused).toBe(0);
      }
    },
  };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

test("a rollback makes every replica read the snapshot again and drops what only overwritten data held", async () => {
  const partition = start();
  partition.write(0, 8192, 1);
  partition.ticks(3); // flushed to chunk 0
  partition.write(16384, 4096, 2); // still in the journal when frozen
  expect(partition.take("s1")).toMatchObject({ kind: "control" });
  const snapshotModel = partition.model.slice();
  partition.ticks(3); // the snapshot's journal bytes go to a chunk of their own
  partition.write(0, 8192, 3); // overwrites chunk 0 in the current tree
  partition.write(32768, 4096, 4); // a range the snapshot never had
  partition.ticks(3); // the overwrites go to chunks of their own
  const overwriteChunks = [...partition.primary.metadata.chunks.keys()].filter((chunk) =>
    [...partition.primary.metadata.snapshotTree("s1").extents()].every(
      (extent) => extent.location.kind !== "chunk" || extent.location.chunkId !== chunk,
    ),
  );
  expect(overwriteChunks.length).toBeGreaterThan(0);
  expect(same(partition.read(), partition.model)).toBe(true);

  const reply = partition.rollback("s1") as { kind: "control"; opNum: number };
  expect(reply).toMatchObject({ kind: "control" });
  // Only the primary serves reads; check() shows every replica has the same trees.
  expect(same(partition.read(), snapshotModel)).toBe(true);
  expect(same(partition.read(partition.primary, "s1"), snapshotModel)).toBe(true); // it stays
  partition.check();
  partition.ticks(5); // the next flush records drop the chunks only the overwrites held
  for (const core of partition.cores) {
    for (const chunk of overwriteChunks) expect(core.metadata.chunks.has(chunk)).toBe(false);
  }
  expect(same(partition.read(), snapshotModel)).toBe(true);
  partition.check();

  // Writes after it land on the rolled-back tree; a checkpoint restore keeps both.
  partition.model.set(snapshotModel);
  partition.write(4096, 4096, 5);
  partition.ticks(3);
  const primary = partition.primary;
  const bytes = primary.metadata.snapshot(primary.commitOpNum, { epoch: 1, session: 1 });
  const restored = await PartitionMetadata.restore(bytes);
  expect(restored.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
  expect(restored.metadata.checkRefs()).toEqual([]);
  expect(same(partition.read(), partition.model)).toBe(true);
  expect(same(partition.read(primary, "s1"), snapshotModel)).toBe(true);
  partition.check();
});

test("a second rollback to the same snapshot leaves the same state; an unknown one is NotFound", () => {
  const partition = start();
  partition.write(0, 8192, 1);
  partition.ticks(3);
  partition.take("s1");
  partition.write(0, 4096, 2);
  partition.rollback("s1");
  const treeOf = () => JSON.stringify([...partition.primary.metadata.tree.extents()]);
  const once = treeOf();
  expect(partition.rollback("s1")).toMatchObject({ kind: "control" });
  partition.ticks(3);
  expect(treeOf()).toBe(once);
  expect(partition.read()[0]).toBe(1);
  const missing = partition.rollback("nope") as BallastError;
  expect(missing.code).toBe("NotFound");
  expect(missing.message).toMatch(/no snapshot nope/);
  partition.check();
});

test("a rollback whose snapshot a drop proposed before it removed is NotFound when it commits, and changes nothing", () => {
  // A delete racing the rollback: both proposed while the snapshot exists, the drop
  // first. The rollback note then commits on no snapshot; answering it as done would
  // tell the coordinator this partition rolled back when it did not.
  const partition = start();
  partition.write(0, 4096, 1);
  partition.take("s1");
  partition.write(0, 4096, 2);
  const { primary, cluster } = partition;
  const opBefore = primary.commitOpNum;
  primary.dropSnapshot(101, 1, "s1");
  primary.rollbackSnapshot(102, 1, "s1");
  cluster.settle();
  expect(cluster.replies.get(101)).toMatchObject({ kind: "control", opNum: opBefore + 1 });
  const answer = cluster.replies.get(102) as BallastError;
  expect(answer.code).toBe("NotFound");
  expect(answer.message).toMatch(/no snapshot s1/);
  expect(primary.commitOpNum).toBe(opBefore + 2); // the rollback note did commit, as a no-op
  expect(primary.metadata.snapshots.has("s1")).toBe(false);
  expect(partition.read()[0]).toBe(2);
  partition.check();
  // A rollback proposed after the drop committed is refused before any note, as before.
  expect((partition.rollback("s1") as BallastError).code).toBe("NotFound");
  expect(partition.read()[0]).toBe(2);
});

test("a replica rebuilt from a checkpoint past a rollback re-applies it and ends with the same tree", async () => {
  // The checkpoint's flushed point is before the rollback, so the rebuilt replica
  // receives the rollback note again, then the writes after it.
  const partition = start({ flushBytesThreshold: 1e9, flushIntervalTicks: 1e9 });
  partition.write(0, 4096, 1);
  partition.take("s1");
  partition.write(0, 4096, 2);
  partition.rollback("s1");
  partition.write(4096, 4096, 3);
  const primary = partition.primary;
  const bytes = primary.metadata.snapshot(primary.commitOpNum, { epoch: 1, session: 1 });
  const restored = await PartitionMetadata.restore(bytes);
  expect(restored.metadata.flushedThroughOpNum).toBe(0);
  const rebuilt = new Replica(
    {
      nodeId: "head-4",
      volume: "vol",
      partition: 0,
      partitionStart: 0,
      partitionBytes,
      session: 1,
    },
    { checkpoint: restored, notes: [], rebuilt: true },
  );
  partition.cluster.add("head-4", rebuilt);
  const epoch2: Configuration = {
    epoch: 2,
    primary: "head-1",
    secondaries: ["head-2", "head-3"],
    learners: ["head-4"],
  };
  for (const core of [...partition.cores, rebuilt]) core.configure(epoch2);
  partition.cluster.settle();
  for (let tick = 0; tick < 40; tick++) {
    rebuilt.tick();
    partition.ticks(1);
  }
  expect(rebuilt.commitOpNum).toBe(primary.commitOpNum);
  expect(rebuilt.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
  expect(rebuilt.metadata.checkRefs()).toEqual([]);
  expect(rebuilt.metadata.tree.lookup(0, 8192)).toMatchObject([{ opNum: 1 }, { opNum: 5 }]);
});
