// Compaction of small chunks, on three replica cores wired by the head node's effect
// runner over the shared fakes (testing/cluster.ts): a trickle of small writes makes a
// chunk per flush, all of them fully live, which compaction by dead bytes never touches,
// so the chunk table (and the checkpoint header that lists it) grew without bound. Small
// chunks (at most compactionSmallChunkBytes referenced) are now merged once there are
// compactionSmallChunksMin of one size class; snapshot trees keep reading what they froze, since a
// merge relocates an op's bytes in every tree like any compaction.

import fc from "fast-check";
import { expect, test } from "vitest";
import type { ReplicaLimits } from "../src/constants.ts";
import { type Configuration, Replica } from "../src/replica/replica.ts";
import { resolveRead } from "../src/testing/client.ts";
import { InstantCluster } from "../src/testing/cluster.ts";

const partitionBytes = 1024 * 1024;
const modelBytes = 64 * 1024;
const sectorsInModel = modelBytes / 512;
const nodes = ["head-1", "head-2", "head-3"];
const epoch1: Configuration = { epoch: 1, primary: "head-1", secondaries: ["head-2", "head-3"] };

/**
 * Small chunks: at most 8 KiB referenced; merged four at a time or more, within a size
 * class (powers of four over a sector).
 */
const smallLimits: Partial<ReplicaLimits> = {
  compactionIntervalTicks: 2,
  compactionSmallChunkBytes: 8 * 1024,
  compactionSmallChunksMin: 4,
};

const smallChunkBytes = smallLimits.compactionSmallChunkBytes!;

function start(limits: Partial<ReplicaLimits>) {
  const cluster = new InstantCluster();
  const cores = nodes.map((nodeId) => {
    const core = new Replica(
      { nodeId, volume: "vol", partition: 0, partitionStart: 0, partitionBytes, session: 1 },
      { notes: [] },
      // Flush whatever is committed at every tick (a chunk per write when written one
      // at a time), and tell secondaries the commit point at every tick.
      { flushBytesThreshold: 1, heartbeatTicks: 1, dropIntervalTicks: 1, ...limits },
    );
    cluster.add(nodeId, core);
    core.configure(epoch1);
    return core;
  });
  const primary = cores[0]!;
  const model = new Uint8Array(modelBytes);
  const snapshots = new Map<string, Uint8Array>();
  let requestId = 0;
  const read = (snapshot?: string) => {
    const result = primary.read(1, [{ offset: 0, length: modelBytes }], undefined, snapshot);
    return resolveRead(result, cluster.sleds.chunks, (check, message) => {
      throw new Error(`[${check}] ${message}`);
    });
  };
  return {
    cluster,
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
    take(id: string) {
      primary.takeSnapshot(++requestId, 1, id);
      cluster.settle();
      if (!snapshots.has(id)) snapshots.set(id, model.slice());
    },
    drop(id: string) {
      primary.dropSnapshot(++requestId, 1, id);
      cluster.settle();
      snapshots.delete(id);
    },
    ticks(count: number) {
      for (let tick = 0; tick < count; tick++) {
        for (const core of cores) core.tick();
        cluster.settle();
      }
    },
    /**
     * Every replica agrees (once the commit point has reached them) and accounts
     * exactly; every tree reads back its model.
     */
    check() {
      // Secondaries learn the commit point at the next tick's heartbeat.
      for (
        let tick = 0;
        tick < 50 && cores.some((core) => core.commitOpNum !== primary.commitOpNum);
        tick++
      ) {
        for (const core of cores) core.tick();
        cluster.settle();
      }
      for (const core of cores) {
        expect(core.commitOpNum).toBe(primary.commitOpNum);
        expect(core.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
        expect(core.metadata.checkRefs()).toEqual([]);
        expect(core.metadata.dropsRefused).toBe(0);
      }
      expect(Buffer.from(read()).equals(model)).toBe(true);
      for (const [id, frozen] of snapshots) {
        expect(Buffer.from(read(id)).equals(frozen)).toBe(true);
      }
    },
    /**
     * Chunks that are small and not mostly dead (what a merge would take), counted by
     * size class: 0 below 2 KiB referenced (four sectors), 1 below 8 KiB, 2 at 8 KiB.
     */
    smallChunksByClass(): number[] {
      const distinct = primary.metadata.distinctLiveBytes();
      const counts = [0, 0, 0];
      for (const [chunkNumber, entry] of primary.metadata.chunks) {
        const live = distinct.get(chunkNumber) ?? 0;
        if (live <= entry.bytes / 2 || live > smallChunkBytes) continue;
        counts[live < 2048 ? 0 : live < 8192 ? 1 : 2]! += 1;
      }
      return counts;
    },
  };
}

test("a trickle of small writes keeps the chunk table small: fully live small chunks are merged", () => {
  const partition = start(smallLimits);
  let most = 0;
  // 300 writes of one sector, each flushed into a chunk of its own, over 128 sectors in
  // a scattered order: most stay live, so compaction by dead bytes alone keeps them all.
  for (let index = 0; index < 300; index++) {
    const sector = (index * 37) % sectorsInModel;
    partition.write(sector * 512, 512, (index % 250) + 1);
    partition.ticks(1);
    partition.check();
    most = Math.max(most, partition.primary.metadata.chunks.size);
  }
  partition.ticks(20);
  partition.check();
  // Every chunk left over has more than 8 KiB referenced, or is one of fewer than four
  // small ones of its size class: 64 KiB of data is at most 8 + 3 × 3 chunks, besides
  // some mostly dead ones.
  for (const count of partition.smallChunksByClass()) expect(count).toBeLessThan(4);
  expect(partition.primary.metadata.chunks.size).toBeLessThanOrEqual(20);
  expect(most).toBeLessThanOrEqual(24);
  expect(partition.cluster.sleds.chunkReads).toBeGreaterThan(0);
});

test("a lone small chunk is left alone: a rewrite of it would free and merge nothing", () => {
  const partition = start({ ...smallLimits, compactionSmallChunksMin: 1 });
  partition.write(0, 4096, 1);
  partition.ticks(20);
  expect([...partition.primary.metadata.chunks.keys()]).toEqual([0]);
  expect(partition.cluster.sleds.chunkReads).toBe(0);
  partition.check();
});

test("random writes, trims, snapshot takes and drops: every tree reads back, and small chunks are merged", () => {
  const step = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant("write" as const),
        sector: fc.integer({ min: 0, max: sectorsInModel - 1 }),
        sectors: fc.integer({ min: 1, max: 8 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("trim" as const),
        sector: fc.integer({ min: 0, max: sectorsInModel - 1 }),
        sectors: fc.integer({ min: 1, max: 16 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("take" as const),
        id: fc.integer({ min: 1, max: 3 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("drop" as const),
        id: fc.integer({ min: 1, max: 3 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("ticks" as const),
        count: fc.integer({ min: 1, max: 4 }),
      }),
    },
  );
  let merges = 0;
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
      const partition = start(smallLimits);
      let fill = 0;
      for (const each of steps) {
        if (each.kind === "write" || each.kind === "trim") {
          const length = Math.min(each.sectors, sectorsInModel - each.sector) * 512;
          if (each.kind === "write") partition.write(each.sector * 512, length, (++fill % 250) + 1);
          else partition.trim(each.sector * 512, length);
          partition.ticks(1);
        } else if (each.kind === "take") partition.take(`s${each.id}`);
        else if (each.kind === "drop") partition.drop(`s${each.id}`);
        else partition.ticks(each.count);
        partition.check();
      }
      // Left alone, compaction merges small chunks until fewer than four are left in
      // each size class.
      partition.ticks(40);
      partition.check();
      for (const count of partition.smallChunksByClass()) expect(count).toBeLessThan(4);
      merges += partition.cluster.sleds.chunkReads > 0 ? 1 : 0;
    }),
    { numRuns: 60 },
  );
  // The runs did merge chunks (and read them), not just stay under the count. About a
  // quarter of random runs merge (7 to 19 of 60 in twelve sittings): at least one is
  // certain for any seed (0.75^60 is about 3e-8), a count near the mean was not (CI
  // once saw 10 where more than 10 was asked).
  expect(merges).toBeGreaterThan(0);
});
