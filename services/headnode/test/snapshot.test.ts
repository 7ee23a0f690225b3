// Snapshots in the partition core, on three replica cores wired by the head node's effect
// runner over the shared fakes (testing/cluster.ts): a snapshot keeps its data through
// overwrites, flushes (its journal-located bytes move to chunks with the live ones, so
// the journal can still be released), compaction, a checkpoint restore and a failover to
// a secondary, and a rebuild that re-applies its take; a take is idempotent by id;
// dropping it frees the chunks only it held;
// held acknowledgements wait for the release (or the hold's deadline).

import type { BallastError } from "@ballast/protocol";
import fc from "fast-check";
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
  let primary = cores[0]!;
  let epoch = 1;
  const model = new Uint8Array(modelBytes);
  let requestId = 0;
  const api = {
    cluster,
    cores,
    get primary() {
      return primary;
    },
    model,
    write(offset: number, length: number, fill: number) {
      const data = new Uint8Array(length).fill(fill);
      const id = ++requestId;
      primary.onClientRequest({ kind: "write", requestId: id, epoch, writes: [{ offset, data }] });
      model.set(data, offset);
      cluster.settle();
      return id;
    },
    take(id: string): Reply | BallastError | undefined {
      const request = ++requestId;
      primary.takeSnapshot(request, epoch, id);
      cluster.settle();
      return cluster.replies.get(request);
    },
    drop(id: string): Reply | BallastError | undefined {
      const request = ++requestId;
      primary.dropSnapshot(request, epoch, id);
      cluster.settle();
      return cluster.replies.get(request);
    },
    ticks(count: number) {
      for (let tick = 0; tick < count; tick++) {
        for (const core of cores) core.tick();
        cluster.settle();
      }
    },
    failover(to: number) {
      epoch++;
      primary = cores[to]!;
      const configuration: Configuration = {
        epoch,
        primary: primary.identity.nodeId,
        secondaries: nodes.filter((node) => node !== primary.identity.nodeId),
      };
      for (const core of cores) core.configure(configuration);
      cluster.settle();
    },
    read(snapshot?: string, on: Replica = primary): Uint8Array {
      const read = on.read(epoch, [{ offset: 0, length: modelBytes }], undefined, snapshot);
      return resolveRead(read, cluster.sleds.chunks, (check, message) => {
        throw new Error(`[${check}] ${message}`);
      });
    },
    /** Every replica agrees and accounts exactly. */
    check() {
      for (const core of cores) {
        expect(core.commitOpNum).toBe(primary.commitOpNum);
        expect(core.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
        expect(core.metadata.checkRefs()).toEqual([]);
        expect(core.metadata.dropsRefused).toBe(0);
      }
    },
  };
  return api;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

test("a snapshot keeps its data through overwrites, flushes and journal releases", () => {
  const partition = start({ checkpointIntervalTicks: 2 });
  partition.write(0, 8192, 1); // flushed before the snapshot
  partition.ticks(3);
  // Written and snapshotted in the same breath: still in the journal when frozen.
  const p = partition.primary;
  p.onClientRequest({
    kind: "write",
    requestId: 900,
    epoch: 1,
    writes: [{ offset: 16384, data: new Uint8Array(4096).fill(2) }],
  });
  partition.model.fill(2, 16384, 16384 + 4096);
  const reply = partition.take("s1");
  expect(reply).toMatchObject({ kind: "control" });
  const snapshotModel = partition.model.slice();
  // Overwrite both before any flush of the second write.
  partition.write(0, 8192, 3);
  partition.write(16384, 4096, 4);
  expect(same(partition.read("s1"), snapshotModel)).toBe(true);
  expect(same(partition.read(), partition.model)).toBe(true);
  partition.ticks(10); // flushes, drops, checkpoints and releases
  for (const core of partition.cores) {
    expect(core.metadata.unflushed.size).toBe(0);
    for (const extent of core.metadata.snapshotTree("s1").extents()) {
      expect(extent.location.kind).not.toBe("journal");
    }
  }
  expect(partition.primary.releasedThroughOpNum).toBeGreaterThan(2);
  expect(same(partition.read("s1"), snapshotModel)).toBe(true);
  expect(same(partition.read(), partition.model)).toBe(true);
  partition.check();
});

test("a take is idempotent by id; a drop frees the chunks only the snapshot held", () => {
  const partition = start();
  partition.write(0, 8192, 1);
  partition.ticks(3);
  const first = partition.take("s1") as { opNum: number };
  partition.write(0, 8192, 2);
  const again = partition.take("s1") as { opNum: number };
  expect(again.opNum).toBe(first.opNum);
  partition.ticks(3);
  // Chunk 0 is overwritten in the current tree but the snapshot holds it.
  for (const core of partition.cores) {
    expect(core.metadata.chunks.has(0)).toBe(true);
    expect(core.metadata.refBytes(0)).toBe(8192);
  }
  partition.check();
  expect(partition.drop("s1")).toMatchObject({ kind: "control" });
  expect(partition.drop("s1")).toMatchObject({ kind: "control" }); // idempotent
  partition.ticks(3);
  for (const core of partition.cores) {
    expect(core.metadata.snapshots.size).toBe(0);
    expect(core.metadata.chunks.has(0)).toBe(false);
    expect(core.spaceUsage()).toEqual({ chunkBytes: 8192, liveBytes: 8192 });
  }
  expect(() => partition.read("s1")).toThrow(/no snapshot s1/);
  partition.check();
});

test("a snapshot survives compaction of the chunks it shares", () => {
  const partition = start({ compactionIntervalTicks: 20 });
  for (let index = 0; index < 4; index++) {
    partition.write(index * 8192, 8192, index + 1);
    partition.ticks(2);
  }
  partition.take("s1");
  const snapshotModel = partition.model.slice();
  partition.drop("s1");
  partition.take("s2");
  // Half of each chunk overwritten; s2 still holds those halves, so they stay live.
  for (let index = 0; index < 4; index++) partition.write(index * 8192, 4096, 0x80 + index);
  partition.ticks(2);
  partition.drop("s2");
  partition.take("s3"); // taken after the overwrites: shares the half-dead chunks
  partition.ticks(25);
  expect(partition.cluster.sleds.chunkReads).toBeGreaterThan(0);
  expect(same(partition.read("s3"), partition.model)).toBe(true);
  expect(same(partition.read(), partition.model)).toBe(true);
  expect(snapshotModel[0]).toBe(1);
  partition.check();
});

test("a snapshot survives a checkpoint restore and a failover to a secondary", async () => {
  const partition = start();
  partition.write(0, 8192, 1);
  partition.ticks(3);
  partition.write(8192, 4096, 2); // in the journal only
  partition.take("s1");
  const snapshotModel = partition.model.slice();
  partition.write(0, 12288, 3);
  const bytes = partition.primary.metadata.snapshot(partition.primary.commitOpNum, {
    epoch: 1,
    session: 1,
  });
  const restored = await PartitionMetadata.restore(bytes);
  expect(restored.metadata.fingerprint()).toBe(partition.primary.metadata.fingerprint());
  expect(restored.metadata.checkRefs()).toEqual([]);
  expect(restored.metadata.snapshots.get("s1")?.opNum).toBe(
    partition.primary.snapshotOps().get("s1"),
  );
  partition.failover(1);
  expect(same(partition.read("s1"), snapshotModel)).toBe(true);
  expect(same(partition.read(), partition.model)).toBe(true);
  partition.ticks(5);
  expect(same(partition.read("s1"), snapshotModel)).toBe(true);
  partition.check();
});

test("a format-1 checkpoint (no snapshots) is still read", async () => {
  const partition = start();
  partition.write(0, 8192, 1);
  partition.ticks(3);
  const metadata = partition.primary.metadata;
  const bytes = metadata.snapshot(partition.primary.commitOpNum, { epoch: 1, session: 1 });
  // Rewrite the header as format 1: no treeBytes, no snapshots; the tree runs to the end.
  const { Packr, Unpackr } = await import("msgpackr");
  const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  const header = new Unpackr({ mapsAsObjects: true }).unpack(
    Buffer.from(bytes.subarray(4, 4 + length)),
  ) as Record<string, unknown>;
  header.format = 1;
  delete header.treeBytes;
  delete header.snapshots;
  const packed = new Packr({ useRecords: false, moreTypes: false }).pack(header);
  const prefix = new Uint8Array(4);
  new DataView(prefix.buffer).setUint32(0, packed.byteLength, true);
  const old = Buffer.concat([prefix, packed, bytes.subarray(4 + length)]);
  const restored = await PartitionMetadata.restore(old);
  expect(restored.metadata.fingerprint()).toBe(metadata.fingerprint());
});

test("held acknowledgements wait for the release; the hold ends at its deadline", () => {
  const partition = start({ flushBytesThreshold: 1e9 });
  const { primary, cluster } = partition;
  const before = partition.write(0, 4096, 1);
  expect(cluster.replies.get(before)).toMatchObject({ kind: "mutation" });
  primary.holdAcks(1, "hold-1", 1e9);
  const during = partition.write(4096, 4096, 2);
  expect(primary.commitOpNum).toBeGreaterThan(1); // committed, not answered
  expect(cluster.replies.has(during)).toBe(false);
  const taken = partition.take("s1") as { opNum: number };
  expect(taken.opNum).toBeGreaterThan(2); // a take is answered while held
  expect(primary.releaseAcks("hold-1")).toEqual({ held: true });
  cluster.settle();
  expect(cluster.replies.get(during)).toMatchObject({ kind: "mutation" });
  // A hold that runs out is not "held" at its release.
  primary.holdAcks(1, "hold-2", 1);
  const late = partition.write(8192, 4096, 3);
  partition.ticks(1);
  expect(cluster.replies.get(late)).toMatchObject({ kind: "mutation" });
  expect(primary.releaseAcks("hold-2")).toEqual({ held: false });
});

test("a replica rebuilt from a checkpoint past a snapshot re-applies its take without refreezing it", async () => {
  // The checkpoint is taken after the snapshot's op but its flushed point is before it,
  // so a rebuilt replica receives the take note again, with the writes after it applied.
  const partition = start({ flushBytesThreshold: 1e9, flushIntervalTicks: 1e9 });
  partition.write(0, 4096, 1);
  partition.take("s1");
  partition.write(0, 4096, 2);
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
    partition.ticks(1); // resends reach the learner
  }
  expect(rebuilt.commitOpNum).toBe(primary.commitOpNum);
  expect(rebuilt.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
  expect(rebuilt.metadata.checkRefs()).toEqual([]);
  const frozen = rebuilt.metadata.snapshotTree("s1").lookup(0, 4096);
  expect(frozen).toMatchObject([{ opNum: 1 }]);
});

/** Bytes unique to each snapshot counted sector by sector: the reference answer. */
function uniqueBySector(metadata: PartitionMetadata): Map<string, number> {
  const sectorsOf = (tree: ReturnType<PartitionMetadata["trees"]>[number]) => {
    const sectors = new Set<string>();
    for (const extent of tree.extents()) {
      if (extent.location.kind !== "chunk") continue;
      for (let at = 0; at < extent.length; at += 512) {
        sectors.add(`${extent.location.chunkId}:${extent.location.offset + at}`);
      }
    }
    return sectors;
  };
  const current = sectorsOf(metadata.tree);
  const frozen = [...metadata.snapshots].map(([id, { tree }]) => [id, sectorsOf(tree)] as const);
  const unique = new Map<string, number>();
  for (const [id, sectors] of frozen) {
    let count = 0;
    for (const sector of sectors) {
      const elsewhere =
        current.has(sector) || frozen.some(([other, set]) => other !== id && set.has(sector));
      if (!elsewhere) count++;
    }
    unique.set(id, count * 512);
  }
  return unique;
}

test("bytes unique to each snapshot: what deleting it would free, as sectors counted one by one", () => {
  const partition = start();
  const uniqueOf = () => partition.primary.metadata.snapshotUniqueBytes();
  partition.write(0, 8192, 1);
  partition.ticks(3);
  partition.take("s1");
  // Everything it holds, the volume holds too.
  expect(uniqueOf()).toEqual(new Map([["s1", 0]]));
  partition.write(0, 4096, 2);
  partition.ticks(3);
  partition.take("s2");
  // s1 alone holds the first 4 KiB it saw; s2 shares all it holds with the volume.
  expect(uniqueOf()).toEqual(
    new Map([
      ["s1", 4096],
      ["s2", 0],
    ]),
  );
  partition.write(4096, 4096, 3);
  partition.write(2048, 1024, 4);
  partition.ticks(3);
  // The second 4 KiB of the first write is now held by both snapshots: unique to neither.
  // s2 alone holds 1 KiB of the second write.
  expect(uniqueOf()).toEqual(
    new Map([
      ["s1", 4096],
      ["s2", 1024],
    ]),
  );
  expect(uniqueOf()).toEqual(uniqueBySector(partition.primary.metadata));
  partition.drop("s1");
  partition.ticks(3);
  expect(uniqueOf()).toEqual(new Map([["s2", 4096 + 1024]]));
  expect(uniqueOf()).toEqual(uniqueBySector(partition.primary.metadata));
  // Every replica says the same.
  for (const core of partition.cores)
    expect(core.metadata.snapshotUniqueBytes()).toEqual(uniqueOf());
  partition.check();
});

test("bytes unique to each snapshot equal a sector count after random writes, flushes, takes and drops", () => {
  const step = fc.oneof(
    fc.record({
      kind: fc.constant("write" as const),
      sector: fc.integer({ min: 0, max: 127 }),
      sectors: fc.integer({ min: 1, max: 16 }),
    }),
    fc.record({ kind: fc.constant("take" as const), id: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ kind: fc.constant("drop" as const), id: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ kind: fc.constant("ticks" as const) }),
  );
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 25 }), (steps) => {
      const partition = start({ compactionIntervalTicks: 3 });
      let fill = 0;
      for (const each of steps) {
        if (each.kind === "write") {
          const length = Math.min(each.sectors, 128 - each.sector) * 512;
          partition.write(each.sector * 512, length, ++fill % 250);
        } else if (each.kind === "take") partition.take(`s${each.id}`);
        else if (each.kind === "drop") partition.drop(`s${each.id}`);
        else partition.ticks(3);
        const metadata = partition.primary.metadata;
        expect(metadata.snapshotUniqueBytes()).toEqual(uniqueBySector(metadata));
      }
    }),
    { numRuns: 60 },
  );
});

/** The space figures counted afresh from a replica's metadata (what spaceUsage caches). */
function countedSpace(core: Replica) {
  const { metadata } = core;
  if (metadata.snapshots.size === 0) {
    return { chunkBytes: metadata.chunkBytes, liveBytes: metadata.liveBytes };
  }
  return {
    chunkBytes: metadata.chunkBytes,
    liveBytes: metadata.liveBytes,
    snapshotBytes: [...metadata.snapshotUniqueBytes()]
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([snapshot, uniqueBytes]) => ({ snapshot, uniqueBytes })),
  };
}

test("space figures follow a snapshot take, drop and rollback at once, not a refresh later", () => {
  // Each op is followed by one tick only: the secondaries learn the commit point from the
  // primary's next message. The refresh of figures under writes is 250 ticks.
  const partition = start();
  partition.write(0, 8192, 1);
  partition.ticks(3);
  partition.take("s1");
  partition.ticks(1);
  for (const core of partition.cores) {
    expect(core.spaceUsage().snapshotBytes).toEqual([{ snapshot: "s1", uniqueBytes: 0 }]);
  }
  partition.write(0, 8192, 2);
  partition.ticks(3);
  // Rotation within seconds (far fewer ticks than the refresh): a new one, the old dropped.
  partition.take("s2");
  partition.ticks(1);
  for (const core of partition.cores) {
    expect(core.spaceUsage()).toEqual(countedSpace(core));
    expect(core.spaceUsage().snapshotBytes).toEqual([
      { snapshot: "s1", uniqueBytes: 8192 },
      { snapshot: "s2", uniqueBytes: 0 },
    ]);
  }
  partition.drop("s1");
  partition.ticks(1);
  for (const core of partition.cores) {
    expect(core.spaceUsage()).toEqual(countedSpace(core));
    expect(core.spaceUsage()).toMatchObject({
      liveBytes: 8192, // the first write's chunk: no tree refers to it any more
      snapshotBytes: [{ snapshot: "s2", uniqueBytes: 0 }],
    });
  }
  partition.write(0, 8192, 3);
  partition.ticks(3);
  const request = 9_000;
  partition.primary.rollbackSnapshot(request, 1, "s2");
  partition.cluster.settle();
  expect(partition.cluster.replies.get(request)).toMatchObject({ kind: "control" });
  partition.ticks(1);
  for (const core of partition.cores) {
    expect(core.spaceUsage()).toEqual(countedSpace(core));
    expect(core.spaceUsage()).toMatchObject({
      liveBytes: 8192, // the third write's chunk went with the tree it was in
      snapshotBytes: [{ snapshot: "s2", uniqueBytes: 0 }],
    });
  }
  partition.ticks(3);
  partition.check();
});

test("space figures with snapshots are counted again after writes at most once per refresh, and never while nothing commits", () => {
  const partition = start();
  partition.write(0, 8192, 1);
  partition.ticks(3);
  partition.take("s1");
  const primary = partition.primary;
  let scans = 0;
  const scan = primary.metadata.snapshotUniqueBytes.bind(primary.metadata);
  primary.metadata.snapshotUniqueBytes = () => {
    scans++;
    return scan();
  };
  expect(primary.spaceUsage()).toEqual(countedSpace(primary)); // countedSpace scans too
  const counted = scans;
  // Idle: however often reports and status ask, and however long, no scan.
  for (let round = 0; round < 20; round++) {
    partition.ticks(50);
    primary.spaceUsage();
  }
  expect(scans).toBe(counted);
  // Writes: the figures may lag them by up to the refresh (250 ticks) ...
  partition.write(0, 4096, 2);
  partition.ticks(3);
  const { liveBytes, snapshotBytes } = primary.spaceUsage();
  expect(snapshotBytes).toEqual([{ snapshot: "s1", uniqueBytes: 4096 }]);
  partition.write(4096, 4096, 3);
  partition.ticks(3);
  expect(primary.spaceUsage()).toMatchObject({ liveBytes, snapshotBytes });
  // ... and no longer (spaceUsageRefreshTicks, 250: the fifth round of 50 ticks after the
  // count), counted once however often asked, then left alone again.
  for (let round = 0; round < 20; round++) {
    partition.ticks(50);
    expect(primary.spaceUsage()).toMatchObject({
      snapshotBytes: [{ snapshot: "s1", uniqueBytes: round < 4 ? 4096 : 8192 }],
    });
  }
  expect(scans).toBe(counted + 2);
  expect(primary.spaceUsage()).toEqual(countedSpace(primary));
});
