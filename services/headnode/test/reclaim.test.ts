// Space reclamation inside a partition, on three replica cores wired by the head node's
// effect runner over the shared fakes (testing/cluster.ts): a chunk no tree refers to any
// more (overwritten or trimmed) is dropped from every replica's table at one op; mostly
// dead chunks are read whole, their live bytes relocated into the next flush's chunk and
// the victims dropped, and a read of the whole range still returns what was written; a
// failed read of a victim gives the compaction up and leaves everything readable.

import { expect, test } from "vitest";
import type { ReplicaLimits } from "../src/constants.ts";
import { type Configuration, Replica } from "../src/replica/replica.ts";
import { resolveRead } from "../src/testing/client.ts";
import { InstantCluster } from "../src/testing/cluster.ts";

const partitionBytes = 1024 * 1024;
const nodes = ["head-1", "head-2", "head-3"];
const epoch1: Configuration = { epoch: 1, primary: "head-1", secondaries: ["head-2", "head-3"] };

function start(limits: Partial<ReplicaLimits>) {
  const cluster = new InstantCluster();
  const cores = nodes.map((nodeId) => {
    const core = new Replica(
      { nodeId, volume: "vol", partition: 0, partitionStart: 0, partitionBytes, session: 1 },
      { notes: [] },
      // Flush whatever is committed at every tick, and tell secondaries the commit point at
      // every tick; no compaction unless a test asks.
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
  const model = new Uint8Array(64 * 1024);
  let requestId = 0;
  const api = {
    cluster,
    cores,
    primary,
    write(offset: number, length: number, fill: number) {
      const data = new Uint8Array(length).fill(fill);
      primary.onClientRequest({
        kind: "write",
        requestId: ++requestId,
        epoch: 1,
        writes: [{ offset, data }],
      });
      model.set(data, offset);
      cluster.settle();
    },
    trim(offset: number, length: number) {
      primary.onClientRequest({
        kind: "trim",
        requestId: ++requestId,
        epoch: 1,
        ranges: [{ offset, length }],
      });
      model.fill(0, offset, offset + length);
      cluster.settle();
    },
    /** Ticks every core `count` times, settling after each. */
    ticks(count: number) {
      for (let tick = 0; tick < count; tick++) {
        for (const core of cores) core.tick();
        cluster.settle();
      }
    },
    /** Every replica agrees, accounts exactly, and the primary reads back the model. */
    check() {
      for (const core of cores) {
        expect(core.commitOpNum).toBe(primary.commitOpNum);
        expect(core.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
        expect(core.metadata.checkRefs()).toEqual([]);
        expect(core.metadata.dropsRefused).toBe(0);
      }
      const read = primary.read(1, [{ offset: 0, length: model.length }]);
      const bytes = resolveRead(read, cluster.sleds.chunks, (check, message) => {
        throw new Error(`[${check}] ${message}`);
      });
      expect(Buffer.from(bytes).equals(Buffer.from(model))).toBe(true);
    },
    chunkNumbers(core: Replica) {
      return [...core.metadata.chunks.keys()].sort((a, b) => a - b);
    },
  };
  return api;
}

test("a chunk overwritten entirely is dropped from every replica's table", () => {
  const partition = start({});
  partition.write(0, 8192, 1);
  partition.ticks(3);
  expect(partition.chunkNumbers(partition.primary)).toEqual([0]);
  partition.write(0, 8192, 2);
  partition.ticks(3);
  for (const core of partition.cores) {
    expect(core.metadata.chunks.has(0)).toBe(false);
    expect(core.metadata.chunks.size).toBe(1);
    expect(core.spaceUsage()).toEqual({ chunkBytes: 8192, liveBytes: 8192 });
  }
  partition.check();
});

test("trimmed bytes free their chunk", () => {
  const partition = start({});
  partition.write(0, 8192, 1);
  partition.ticks(3);
  partition.trim(0, 4096);
  partition.ticks(3);
  expect(partition.chunkNumbers(partition.primary)).toEqual([0]);
  expect(partition.primary.spaceUsage()).toEqual({ chunkBytes: 8192, liveBytes: 4096 });
  partition.trim(4096, 4096);
  partition.ticks(3);
  for (const core of partition.cores) {
    expect(core.metadata.chunks.size).toBe(0);
    expect(core.spaceUsage()).toEqual({ chunkBytes: 0, liveBytes: 0 });
  }
  partition.check();
});

/** Four chunks of 8 KiB, each with its first half overwritten (by one more chunk). */
function halfDead(limits: Partial<ReplicaLimits>) {
  const partition = start(limits);
  for (let index = 0; index < 4; index++) {
    partition.write(index * 8192, 8192, index + 1);
    partition.ticks(2);
  }
  for (let index = 0; index < 4; index++) partition.write(index * 8192, 4096, 0x80 + index);
  partition.ticks(2);
  expect(partition.chunkNumbers(partition.primary)).toEqual([0, 1, 2, 3, 4]);
  for (let chunk = 0; chunk < 4; chunk++)
    expect(partition.primary.metadata.refBytes(chunk)).toBe(4096);
  partition.check();
  return partition;
}

test("compaction relocates the live bytes of half-dead chunks and drops them", () => {
  const partition = halfDead({ compactionIntervalTicks: 20 });
  partition.ticks(25);
  expect(partition.cluster.sleds.chunkReads).toBe(4);
  for (const core of partition.cores) {
    expect(partition.chunkNumbers(core)).toEqual([4, 5]);
    // Everything left is live: 16 KiB overwritten, 16 KiB relocated.
    expect(core.spaceUsage()).toEqual({ chunkBytes: 32768, liveBytes: 32768 });
  }
  partition.check();
});

test("a failed read of a victim leaves everything readable; a later compaction succeeds", () => {
  const partition = halfDead({ compactionIntervalTicks: 20 });
  const sleds = partition.cluster.sleds;
  const victim = partition.primary.metadata.chunks.get(2)!.sledChunkId;
  const bytes = sleds.chunks.get(victim)!;
  sleds.chunks.delete(victim); // every copy lost, for now
  partition.ticks(25);
  expect(sleds.chunkReads).toBe(3);
  for (const core of partition.cores) expect(partition.chunkNumbers(core)).toEqual([0, 1, 2, 3, 4]);
  sleds.chunks.set(victim, bytes);
  partition.check();
  partition.ticks(25);
  for (const core of partition.cores) expect(partition.chunkNumbers(core)).toEqual([4, 5]);
  partition.check();
});

test("a write over relocated bytes between packing and apply wins", () => {
  const partition = halfDead({ compactionIntervalTicks: 20 });
  // Tick until the victims are read (the reads complete as the cluster settles) …
  while (partition.cluster.sleds.chunkReads < 4) partition.ticks(1);
  // … then the flush packs their live bytes, and a write lands before its record.
  for (const core of partition.cores) core.tick();
  partition.write(4096, 2048, 0xee);
  partition.ticks(3);
  for (const core of partition.cores) expect(partition.chunkNumbers(core)).toEqual([4, 5, 6]);
  // The relocated chunk holds 2 KiB the write made dead at once.
  expect(partition.primary.metadata.refBytes(5)).toBe(16384 - 2048);
  partition.check();
});
