import { createLogger } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import type { ChunkEntry } from "../src/replica/metadata.ts";
import { Replica } from "../src/replica/replica.ts";
import {
  checkpointCheckIntervalMs,
  checkpointChecksPerStepMax,
  chunksShortOfCopies,
  damagedCheckIntervalMs,
  nextChunks,
  planCopies,
  type ReplicatedPartition,
  Replicator,
  scrubChunksPerStepMax,
  scrubDue,
  scrubIntervalMs,
  sledAuditRepairsPerStepMax,
} from "../src/replicator.ts";
import { storedPointer } from "../src/testing/checkpoint.ts";
import { only, syncJournal } from "./effects-helpers.ts";

const logger = createLogger({ service: "headnode", nodeId: "head-1", level: "silent" });

function entry(n: number, copies: string[]): ChunkEntry {
  return { sledChunkId: `v/0/${n}`, copies, bytes: 4096, checksum: 1000 + n };
}

function table(entries: [number, string[]][]): Map<number, ChunkEntry> {
  return new Map(entries.map(([n, copies]) => [n, entry(n, copies)]));
}

const sleds = ["sled-1", "sled-2", "sled-3", "sled-4"];

/** Fake blob calls for tests about chunks: every recorded checkpoint copy is in place. */
const checkpointsInPlace = {
  statBlob: async () => ({ bytes: 9, checksum: 0 }),
  copyBlob: async (): Promise<string> => {
    throw new Error("no checkpoint copy is lost in this test");
  },
  statChunk: async () => ({ bytes: 4096, checksum: 0 }),
  getBlob: async (_key: string, bytes: number, from: readonly string[]) => ({
    data: new Uint8Array(bytes),
    sled: from[0]!,
  }),
};

describe("re-replication choice", () => {
  test("copies only chunks with fewer than 2 copies on sleds in service, to a live sled without one", () => {
    const chunks = table([
      [0, ["sled-1", "sled-2"]], // both live
      [1, ["sled-1", "sled-3"]], // sled-3 out
      [2, ["sled-3", "sled-2"]], // sled-3 out
      [3, ["sled-3", "sled-4"]], // sled-3 out
    ]);
    const out = new Set(["sled-3"]);
    expect(chunksShortOfCopies(chunks, out)).toBe(3);
    expect(chunksShortOfCopies(chunks, new Set())).toBe(0);
    const { jobs, lost, stuck } = planCopies(chunks, out, sleds);
    expect(lost).toEqual([]);
    expect(stuck).toEqual([]);
    expect(jobs.map((job) => job.chunkNumber)).toEqual([1, 2, 3]);
    for (const job of jobs) {
      const copies = chunks.get(job.chunkNumber)!.copies;
      expect(job.sources).toEqual(copies.filter((sled) => sled !== "sled-3"));
      expect(out.has(job.target)).toBe(false);
      expect(copies).not.toContain(job.target);
    }
  });

  test("a chunk with no live copy is lost, one with no live sled left is stuck, skipped ones wait", () => {
    const chunks = table([
      [0, ["sled-3", "sled-4"]],
      [1, ["sled-1", "sled-3"]],
      [2, ["sled-2", "sled-3"]],
    ]);
    const out = new Set(["sled-3", "sled-4"]);
    const plan = planCopies(chunks, out, ["sled-1", "sled-2", "sled-3", "sled-4"], (n) => n === 2);
    expect(plan.lost).toEqual([0]);
    expect(plan.jobs.map((job) => [job.chunkNumber, job.target])).toEqual([[1, "sled-2"]]);
    const narrow = planCopies(table([[1, ["sled-1", "sled-3"]]]), out, ["sled-1", "sled-3"]);
    expect(narrow.stuck).toEqual([1]);
    expect(narrow.jobs).toEqual([]);
  });
});

describe("replicator", () => {
  function partition(chunks: Map<number, ChunkEntry>, checkpointSleds?: string[]) {
    const recorded: [number, string[]][] = [];
    let checkpointsRequested = 0;
    const replicated: ReplicatedPartition = {
      address: { volume: "v", volumeId: "1-v", partition: 0 },
      roleName: "primary",
      sleds,
      replica: {
        metadata: { chunks } as ReplicatedPartition["replica"]["metadata"],
        recordCopies: (n: number, copies: readonly string[]) => {
          recorded.push([n, [...copies]]);
        },
        requestCheckpoint: () => {
          checkpointsRequested++;
        },
        recordedCheckpoint:
          checkpointSleds === undefined
            ? undefined
            : {
                opNum: 5,
                blobKey: "checkpoints/x",
                sleds: checkpointSleds,
                bytes: 9,
                createdAtMs: 1,
              },
      },
    };
    return { replicated, recorded, requests: () => checkpointsRequested };
  }

  test("copies each short chunk at most 2 at once, then records the live copies plus the new one", async () => {
    const chunks = table([
      [0, ["sled-1", "sled-2"]],
      [1, ["sled-1", "sled-3"]],
      [2, ["sled-3", "sled-2"]],
      [3, ["sled-3", "sled-4"]],
      [5, ["sled-4", "sled-3"]],
    ]);
    const { replicated, recorded, requests } = partition(chunks, ["sled-3", "sled-1"]);
    let inflight = 0;
    let inflightMax = 0;
    const copied: string[] = [];
    const replicator = new Replicator({
      logger,
      partitions: () => [replicated],
      sleds: {
        copyChunk: async (_owner, chunkId, from, to) => {
          inflight++;
          inflightMax = Math.max(inflightMax, inflight);
          await new Promise((resolve) => setTimeout(resolve, 5));
          inflight--;
          if (chunkId === "v/0/5") throw new Error("sled-4 answers nothing");
          copied.push(`${chunkId}->${to}`);
          return from[0]!;
        },
        checkChunk: async () => [],
        ...checkpointsInPlace,
      },
    });
    replicator.setOut(["sled-3"]);
    await replicator.pass();
    expect(inflightMax).toBe(2);
    expect(copied).toHaveLength(3);
    expect(recorded.map(([n]) => n).sort()).toEqual([1, 2, 3]);
    for (const [n, copies] of recorded) {
      expect(copies).toHaveLength(2);
      expect(copies).not.toContain("sled-3");
      expect(copies).toContain(chunks.get(n)!.copies.find((sled) => sled !== "sled-3"));
    }
    expect(requests()).toBe(1); // the checkpoint blob had one live copy
    // Recorded chunks are not copied again while their flush record commits; the failed
    // one is tried again on the next pass, and the checkpoint is not asked for twice.
    copied.length = 0;
    await replicator.pass();
    expect(copied).toEqual([]);
    expect(requests()).toBe(1);
    await replicator.close();
  });

  test("nothing is copied while no sled is out, and a secondary copies nothing", async () => {
    const chunks = table([[1, ["sled-1", "sled-3"]]]);
    const { replicated, recorded } = partition(chunks);
    let copies = 0;
    const replicator = new Replicator({
      logger,
      partitions: () => [replicated],
      sleds: {
        copyChunk: async () => {
          copies++;
          return "sled-1";
        },
        checkChunk: async () => [],
        ...checkpointsInPlace,
      },
    });
    await replicator.pass();
    expect(copies).toBe(0);
    const secondary = { ...replicated, roleName: "secondary" as const };
    const other = new Replicator({
      logger,
      partitions: () => [secondary],
      sleds: { copyChunk: async () => "sled-1", checkChunk: async () => [], ...checkpointsInPlace },
    });
    other.setOut(["sled-3"]);
    await other.pass();
    expect(recorded).toEqual([]);
  });

  /**
   * A replicator that has state for partition `1-v/0`: a recorded copy, a replaced
   * checkpoint and a scrub cursor. `hosted` is what the node hosts; empty it to drop.
   */
  async function replicatorWithState() {
    const chunks = table([[1, ["sled-1", "sled-3"]]]);
    const { replicated, recorded, requests } = partition(chunks, ["sled-3", "sled-1"]);
    const hosted: ReplicatedPartition[] = [replicated];
    const replicator = new Replicator({
      logger,
      partitions: () => hosted,
      sleds: { copyChunk: async () => "sled-1", checkChunk: async () => [], ...checkpointsInPlace },
      scrubIntervalMs: 1,
      clock: () => 0,
    });
    replicator.setOut(["sled-3"]);
    await replicator.pass();
    await replicator.scrubStep();
    expect(recorded.map(([n]) => n)).toEqual([1]);
    expect(requests()).toBe(1);
    expect(replicator.trackedPartitions()).toEqual(["1-v/0"]);
    return { replicator, hosted };
  }

  test("a partition dropped from this node leaves nothing behind once forgotten", async () => {
    const { replicator, hosted } = await replicatorWithState();
    hosted.length = 0;
    replicator.forgetPartition("1-v", 0);
    expect(replicator.trackedPartitions()).toEqual([]);
    await replicator.close();
  });

  test("a pass and a scrub step forget partitions no longer hosted, even unannounced", async () => {
    const first = await replicatorWithState();
    first.hosted.length = 0;
    await first.replicator.pass();
    expect(first.replicator.trackedPartitions()).toEqual([]);
    await first.replicator.close();
    const second = await replicatorWithState();
    second.hosted.length = 0;
    await second.replicator.scrubStep();
    expect(second.replicator.trackedPartitions()).toEqual([]);
    await second.replicator.close();
  });

  test("forgetting one partition keeps another's state", async () => {
    const { replicator } = await replicatorWithState();
    replicator.forgetPartition("1-v", 1);
    replicator.forgetPartition("1-v0", 0);
    expect(replicator.trackedPartitions()).toEqual(["1-v/0"]);
    await replicator.close();
  });

  test("a replacement checkpoint that fails is taken again by the core, without a second ask", async () => {
    // A real core, idle once its checkpoint is recorded on sled-1 and sled-3; its effects
    // are carried out by hand (no shell). sled-3 goes out.
    const retryTicks = 5;
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
      { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9, checkpointRetryTicks: retryTicks },
    );
    core.configure({ epoch: 1, primary: "head-1", secondaries: [] });
    core.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 1,
      writes: [{ offset: 0, data: new Uint8Array(4096).fill(1) }],
    });
    syncJournal(core, core.drainEffects());
    core.tick();
    const [chunk] = only(core.drainEffects(), "chunk.write");
    core.onChunkWritten(chunk!.chunkNumber, ["sled-1", "sled-2"]);
    syncJournal(core, core.drainEffects());
    core.requestCheckpoint();
    for (let tick = 0; tick < retryTicks; tick++) core.tick();
    const [first] = only(core.drainEffects(), "checkpoint.write");
    core.onCheckpointDurable(first!.opNum);
    const [firstStore] = only(core.drainEffects(), "checkpoint.store");
    core.onCheckpointStored(first!.opNum, storedPointer(firstStore!, ["sled-1", "sled-3"]));
    core.drainEffects();
    core.onCheckpointRecorded(first!.opNum);
    core.drainEffects();
    const old = core.recordedCheckpoint!;

    let asks = 0;
    const replicated: ReplicatedPartition = {
      address: { volume: "v", volumeId: "v", partition: 0 },
      roleName: "primary",
      sleds,
      replica: {
        get metadata() {
          return core.metadata;
        },
        recordCopies: (n, copies) => core.recordCopies(n, copies),
        requestCheckpoint: () => {
          asks++;
          core.requestCheckpoint();
        },
        get recordedCheckpoint() {
          return core.recordedCheckpoint;
        },
      },
    };
    const replicator = new Replicator({
      logger,
      partitions: () => [replicated],
      sleds: { copyChunk: async () => "sled-1", checkChunk: async () => [], ...checkpointsInPlace },
    });
    replicator.setOut(["sled-3"]);
    await replicator.pass();
    expect(asks).toBe(1);

    // The replacement's store fails (one live sled answered in time).
    const checkpointWrites = () => only(core.drainEffects(), "checkpoint.write");
    for (let tick = 0; tick < retryTicks; tick++) core.tick();
    const [asked] = checkpointWrites();
    expect(asked).toBeDefined();
    core.onCheckpointDurable(asked!.opNum);
    core.drainEffects();
    core.onCheckpointFailed(asked!.opNum);
    // The replicator's next pass finds the same blob short and does not ask again ...
    await replicator.pass();
    expect(asks).toBe(1);
    // ... and need not: the core takes it again of its own accord.
    for (let tick = 0; tick < retryTicks; tick++) core.tick();
    const [again] = checkpointWrites();
    expect(again).toBeDefined();
    core.onCheckpointDurable(again!.opNum);
    const [store] = only(core.drainEffects(), "checkpoint.store");
    core.onCheckpointStored(again!.opNum, storedPointer(store!, ["sled-1", "sled-2"]));
    core.drainEffects();
    core.onCheckpointRecorded(again!.opNum, old);
    expect(only(core.drainEffects(), "blob.delete")).toEqual([
      { type: "blob.delete", blobKey: old.blobKey, sleds: old.sleds },
    ]);
    expect(core.recordedCheckpoint?.sleds).toEqual(["sled-1", "sled-2"]);
    await replicator.pass();
    expect(asks).toBe(1);
    for (let tick = 0; tick < 10 * retryTicks; tick++) core.tick();
    expect(checkpointWrites()).toEqual([]);
    await replicator.close();
  });
});

describe("recorded checkpoint copies", () => {
  /**
   * Partitions whose recorded checkpoint (9 bytes) names `checkpointSleds`; a fake sled
   * client that holds the blob copies `held` lists (key → sleds) and logs each call.
   */
  function checkpointed(
    count: number,
    checkpointSleds: string[],
    held: Map<string, Set<string>>,
    /** Copies (`key@sled`) that read back damaged; copies read whole are logged. */
    damaged = new Set<string>(),
  ) {
    const reads: string[] = [];
    let nowMs = 0;
    const asked: string[] = [];
    const looks: string[] = [];
    const restores: [string, string[], string][] = [];
    let restoreFails = false;
    const hosted: ReplicatedPartition[] = Array.from({ length: count }, (_, index) => ({
      address: { volume: "v", volumeId: "1-v", partition: index },
      roleName: "primary" as const,
      sleds,
      replica: {
        metadata: { chunks: new Map() } as unknown as ReplicatedPartition["replica"]["metadata"],
        recordCopies: () => undefined,
        requestCheckpoint: () => {
          asked.push(`checkpoints/${index}`);
        },
        recordedCheckpoint: {
          opNum: 5,
          blobKey: `checkpoints/${index}`,
          sleds: checkpointSleds,
          bytes: 9,
          createdAtMs: 1,
        },
      },
    }));
    const replicator = new Replicator({
      logger,
      partitions: () => hosted,
      clock: () => nowMs,
      sleds: {
        copyChunk: async () => "sled-1",
        checkChunk: async () => [],
        statBlob: async (key, sled) => {
          looks.push(`${key}@${sled}`);
          return held.get(key)?.has(sled) ? { bytes: 9, checksum: 7 } : undefined;
        },
        copyBlob: async (key, bytes, from, to) => {
          expect(bytes).toBe(9);
          restores.push([key, [...from], to]);
          if (restoreFails) throw new Error(`${to} refused the blob`);
          held.get(key)?.add(to);
          return from[0]!;
        },
        statChunk: async () => ({ bytes: 4096, checksum: 0 }),
        getBlob: async (key, bytes, from) => {
          reads.push(`${key}@${from.join(",")}`);
          if (damaged.has(`${key}@${from[0]}`)) throw new Error("CRC32C mismatch");
          return { data: new Uint8Array(bytes), sled: from[0]! };
        },
      },
    });
    return {
      reads,
      replicator,
      asked,
      looks,
      restores,
      advance: (ms: number) => {
        nowMs += ms;
      },
      failRestores: () => {
        restoreFails = true;
      },
    };
  }

  test("a copy lost on a sled still in service (back empty under its old id) is stored there again", async () => {
    // sled-1 came back empty before it was declared out: nothing is out.
    const held = new Map([["checkpoints/0", new Set(["sled-2"])]]);
    const { replicator, asked, looks, restores, advance } = checkpointed(
      1,
      ["sled-1", "sled-2"],
      held,
    );
    await replicator.pass();
    expect(asked).toEqual([]); // nothing out: the pass sees no shortage
    await replicator.scrubStep();
    expect(restores).toEqual([["checkpoints/0", ["sled-2"], "sled-1"]]);
    expect(held.get("checkpoints/0")).toEqual(new Set(["sled-2", "sled-1"]));
    expect(asked).toEqual([]);
    // Cheap when all is well: one look per named sled per interval, no data read.
    looks.length = 0;
    await replicator.scrubStep();
    expect(looks).toEqual([]);
    advance(checkpointCheckIntervalMs);
    await replicator.scrubStep();
    expect(looks).toEqual(["checkpoints/0@sled-1", "checkpoints/0@sled-2"]);
    expect(restores).toHaveLength(1);
    await replicator.close();
  });

  test("with no sound copy left, or a store that fails, a new checkpoint is asked for once", async () => {
    const lost = checkpointed(1, ["sled-1", "sled-2"], new Map());
    await lost.replicator.scrubStep();
    expect(lost.restores).toEqual([]);
    expect(lost.asked).toEqual(["checkpoints/0"]);
    lost.advance(checkpointCheckIntervalMs);
    await lost.replicator.scrubStep();
    expect(lost.asked).toEqual(["checkpoints/0"]); // the core keeps the request
    await lost.replicator.close();

    const refused = checkpointed(
      1,
      ["sled-1", "sled-2"],
      new Map([["checkpoints/0", new Set(["sled-1"])]]),
    );
    refused.failRestores();
    await refused.replicator.scrubStep();
    expect(refused.restores).toEqual([["checkpoints/0", ["sled-1"], "sled-2"]]);
    expect(refused.asked).toEqual(["checkpoints/0"]);
    await refused.replicator.close();
  });

  test("once a scrub pass each copy is read whole; a damaged one is replaced by a new checkpoint", async () => {
    const held = new Map([["checkpoints/0", new Set(["sled-1", "sled-2"])]]);
    const { replicator, asked, reads, advance } = checkpointed(
      1,
      ["sled-1", "sled-2"],
      held,
      new Set(["checkpoints/0@sled-2"]),
    );
    await replicator.scrubStep();
    advance(checkpointCheckIntervalMs);
    await replicator.scrubStep();
    expect(reads).toEqual([]); // looks only, within the scrub's pass
    advance(scrubIntervalMs);
    await replicator.scrubStep();
    expect(reads).toEqual(["checkpoints/0@sled-1", "checkpoints/0@sled-2"]);
    expect(asked).toEqual(["checkpoints/0"]);
    await replicator.close();
  });

  test("a step looks at a bounded number of checkpoints; the rest are looked at in later steps", async () => {
    const count = checkpointChecksPerStepMax * 2 + 1;
    const held = new Map(
      Array.from({ length: count }, (_, index) => [`checkpoints/${index}`, new Set(["sled-2"])]),
    );
    const { replicator, looks, restores } = checkpointed(count, ["sled-1", "sled-2"], held);
    await replicator.scrubStep();
    expect(looks).toHaveLength(checkpointChecksPerStepMax * 2);
    await replicator.scrubStep();
    await replicator.scrubStep();
    expect(new Set(restores.map(([key]) => key)).size).toBe(count);
    await replicator.close();
  });
});

describe("audit of a sled that lost copies", () => {
  test("a sled found without the checkpoint has every chunk copy listed there looked for, the missing repaired", async () => {
    // 40 chunks on sled-1 and sled-2 (and 10 on sled-3 and sled-4); sled-1 came back
    // empty under its old id, nothing is out, and the scrub's pace is a day.
    const chunks = table([
      ...Array.from({ length: 40 }, (_, n): [number, string[]] => [n, ["sled-1", "sled-2"]]),
      ...Array.from({ length: 10 }, (_, n): [number, string[]] => [40 + n, ["sled-3", "sled-4"]]),
    ]);
    const held = new Set([...chunks.values()].map((entry) => `sled-2/${entry.sledChunkId}`));
    for (const entry of chunks.values()) {
      if (entry.copies.includes("sled-3")) held.add(`sled-3/${entry.sledChunkId}`);
    }
    const looked: string[] = [];
    const checked: string[] = [];
    const replicated: ReplicatedPartition = {
      address: { volume: "v", volumeId: "1-v", partition: 0 },
      roleName: "primary",
      sleds,
      replica: {
        metadata: { chunks } as ReplicatedPartition["replica"]["metadata"],
        recordCopies: () => undefined,
        requestCheckpoint: () => undefined,
        recordedCheckpoint: {
          opNum: 5,
          blobKey: "checkpoints/x",
          sleds: ["sled-1", "sled-2"],
          bytes: 9,
          createdAtMs: 1,
        },
      },
    };
    const replicator = new Replicator({
      logger,
      partitions: () => [replicated],
      clock: () => 0,
      sleds: {
        copyChunk: async () => "sled-2",
        checkChunk: async (_owner, chunkId, copies) => {
          checked.push(chunkId);
          expect(copies).toEqual(["sled-1", "sled-2"]);
          held.add(`sled-1/${chunkId}`);
          return [{ sled: "sled-1", found: "missing" as const, repaired: true }];
        },
        statBlob: async (_key, sled) => (sled === "sled-2" ? { bytes: 9, checksum: 0 } : undefined),
        copyBlob: async () => "sled-2",
        getBlob: async () => {
          throw new Error("no whole read within the scrub's pass");
        },
        statChunk: async (_owner, chunkId, sled) => {
          looked.push(`${sled}/${chunkId}`);
          return held.has(`${sled}/${chunkId}`) ? { bytes: 4096, checksum: 0 } : undefined;
        },
      },
    });
    await replicator.scrubStep();
    // The checkpoint look found sled-1 empty: the audit began in the same step, bounded.
    expect(checked).toHaveLength(sledAuditRepairsPerStepMax);
    for (let step = 0; step < 5; step++) await replicator.scrubStep();
    expect(checked).toEqual([...chunks.values()].slice(0, 40).map((entry) => entry.sledChunkId));
    // Only copies listed on sled-1 were looked for, each once; then the audit ended.
    expect(looked.every((copy) => copy.startsWith("sled-1/"))).toBe(true);
    expect(new Set(looked).size).toBe(40);
    looked.length = 0;
    await replicator.scrubStep();
    expect(looked).toEqual([]);
    expect(replicator.trackedPartitions()).toEqual(["1-v/0"]);
    await replicator.close();
  });
});

describe("audit the coordinator asks of a sled back on a new data directory", () => {
  const disk = "b".repeat(32);
  /** A primary with no recorded checkpoint: nothing of its own would audit sled-1. */
  function primary(
    partition: number,
    chunks: Map<number, ChunkEntry>,
  ): ReplicatedPartition & {
    roleName: "primary" | "secondary";
  } {
    return {
      address: { volume: "v", volumeId: "1-v", partition },
      roleName: "primary",
      sleds,
      replica: {
        metadata: { chunks } as ReplicatedPartition["replica"]["metadata"],
        recordCopies: () => undefined,
        requestCheckpoint: () => undefined,
        recordedCheckpoint: undefined,
      },
    };
  }

  test("every primary's copies there are looked for at once and the missing repaired; each covered table says the disk", async () => {
    const chunks = table(
      Array.from({ length: 20 }, (_, n): [number, string[]] => [n, ["sled-1", "sled-2"]]),
    );
    const elsewhere = table([[0, ["sled-3", "sled-4"]]]);
    const held = new Set<string>();
    const checked: string[] = [];
    const hosted = [primary(0, chunks), primary(1, elsewhere)];
    const later = primary(2, table([[0, ["sled-1", "sled-3"]]]));
    later.roleName = "secondary";
    hosted.push(later);
    const replicator = new Replicator({
      logger,
      partitions: () => hosted,
      clock: () => 0,
      sleds: {
        ...checkpointsInPlace,
        copyChunk: async () => "sled-2",
        checkChunk: async (owner, chunkId) => {
          checked.push(`${owner.partition}:${chunkId}`);
          held.add(`sled-1/${owner.partition}/${chunkId}`);
          return [{ sled: "sled-1", found: "missing" as const, repaired: true }];
        },
        statChunk: async (owner, chunkId, sled) =>
          held.has(`${sled}/${owner.partition}/${chunkId}`)
            ? { bytes: 4096, checksum: 0 }
            : undefined,
      },
    });
    // Nothing asked: the scrub's daily pace finds nothing due, and nothing is audited.
    await replicator.scrubStep();
    expect(checked).toEqual([]);
    expect(replicator.auditedDisks("1-v", 0)).toEqual([]);

    replicator.askAudits([{ sled: "sled-1", disk }]);
    await replicator.scrubStep();
    // Begun at the ask, bounded per step: not yet covered.
    expect(checked).toHaveLength(sledAuditRepairsPerStepMax);
    expect(replicator.auditedDisks("1-v", 0)).toEqual([]);
    for (let step = 0; step < 3; step++) await replicator.scrubStep();
    expect(checked).toEqual([...chunks.values()].map((entry) => `0:${entry.sledChunkId}`));
    expect(replicator.auditedDisks("1-v", 0)).toEqual([disk]);
    // A table with no copy listed there is covered without a look.
    expect(replicator.auditedDisks("1-v", 1)).toEqual([disk]);

    // A primary gained since is audited on a later step; the covered tables not again.
    later.roleName = "primary";
    checked.length = 0;
    await replicator.scrubStep();
    expect(checked).toEqual(["2:v/0/0"]);
    expect(replicator.auditedDisks("1-v", 2)).toEqual([disk]);

    // Asked again for yet another directory: audited afresh, the old disk no longer said.
    const again = "c".repeat(32);
    held.clear();
    checked.length = 0;
    replicator.askAudits([{ sled: "sled-1", disk: again }]);
    expect(replicator.auditedDisks("1-v", 0)).toEqual([]);
    for (let step = 0; step < 4; step++) await replicator.scrubStep();
    expect(checked).toHaveLength(21);
    expect(replicator.auditedDisks("1-v", 0)).toEqual([again]);
    // No longer asked (verified): nothing said, nothing kept.
    replicator.askAudits([]);
    expect(replicator.auditedDisks("1-v", 0)).toEqual([]);
    await replicator.close();
  });
});

test("an ask to audit makes every recorded checkpoint due a look at the next step", async () => {
  const looked: string[] = [];
  const replicated: ReplicatedPartition = {
    address: { volume: "v", volumeId: "1-v", partition: 0 },
    roleName: "primary",
    sleds,
    replica: {
      metadata: { chunks: table([]) } as ReplicatedPartition["replica"]["metadata"],
      recordCopies: () => undefined,
      requestCheckpoint: () => undefined,
      recordedCheckpoint: {
        opNum: 5,
        blobKey: "checkpoints/x",
        sleds: ["sled-1", "sled-2"],
        bytes: 9,
        createdAtMs: 1,
      },
    },
  };
  const replicator = new Replicator({
    logger,
    partitions: () => [replicated],
    clock: () => 0,
    sleds: {
      ...checkpointsInPlace,
      copyChunk: async () => "sled-2",
      checkChunk: async () => [],
      statBlob: async (_key, sled) => {
        looked.push(sled);
        return { bytes: 9, checksum: 0 };
      },
    },
  });
  await replicator.scrubStep();
  expect(looked).toEqual(["sled-1", "sled-2"]);
  // Looked at a moment ago: not again within checkpointCheckIntervalMs...
  await replicator.scrubStep();
  expect(looked).toHaveLength(2);
  // ...but at once when a sled is back on a new disk.
  replicator.askAudits([{ sled: "sled-1", disk: "b".repeat(32) }]);
  await replicator.scrubStep();
  expect(looked).toEqual(["sled-1", "sled-2", "sled-1", "sled-2"]);
  await replicator.close();
});

describe("copies their sleds say a scrub found damaged", () => {
  test("count as none in the short count", () => {
    const chunks = table([
      [1, ["sled-1", "sled-2"]],
      [2, ["sled-2", "sled-3"]],
    ]);
    expect(chunksShortOfCopies(chunks, new Set())).toBe(0);
    const damaged = new Map([["sled-2", new Set(["v/0/1"])]]);
    expect(chunksShortOfCopies(chunks, new Set(), damaged)).toBe(1);
    expect(chunksShortOfCopies(chunks, new Set(["sled-3"]), damaged)).toBe(2);
  });

  test("are asked of each sled in use, repaired on the scrub's steps, and no longer counted once repaired", async () => {
    const chunks = table([
      [1, ["sled-1", "sled-2"]],
      [2, ["sled-1", "sled-2"]],
    ]);
    const asked: string[] = [];
    const checked: string[] = [];
    let listed = new Set(["v/0/2"]);
    let nowMs = 0;
    const replicated: ReplicatedPartition = {
      address: { volume: "v", volumeId: "1-v", partition: 0 },
      roleName: "primary",
      sleds: ["sled-1", "sled-2"],
      replica: {
        metadata: { chunks } as ReplicatedPartition["replica"]["metadata"],
        recordCopies: () => undefined,
        requestCheckpoint: () => undefined,
        recordedCheckpoint: undefined,
      },
    };
    const replicator = new Replicator({
      logger,
      partitions: () => [replicated],
      clock: () => nowMs,
      sleds: {
        ...checkpointsInPlace,
        copyChunk: async () => "sled-1",
        checkChunk: async (_owner, chunkId) => {
          checked.push(chunkId);
          listed = new Set();
          return [{ sled: "sled-2", found: "damaged" as const, repaired: true }];
        },
        damagedChunks: async (sled) => {
          asked.push(sled);
          return sled === "sled-2" ? new Set(listed) : new Set();
        },
      },
    });
    const short = () => chunksShortOfCopies(chunks, new Set(), replicator.damagedCopies);
    // Not yet asked: nothing known.
    expect(short()).toBe(0);
    await replicator.scrubStep();
    expect(asked.sort()).toEqual(["sled-1", "sled-2"]);
    // The damaged copy was repaired in the same step (a whole read of every copy).
    expect(checked).toEqual(["v/0/2"]);
    expect(short()).toBe(0);
    // The sled says it again (its repair failed, say) at the next look: counted short
    // until repaired, asked no sooner than damagedCheckIntervalMs.
    listed = new Set(["v/0/2"]);
    asked.length = 0;
    nowMs += 10_000;
    await replicator.scrubStep();
    expect(asked).toEqual([]);
    nowMs += damagedCheckIntervalMs;
    const failing = new Replicator({
      logger,
      partitions: () => [replicated],
      clock: () => nowMs,
      sleds: {
        ...checkpointsInPlace,
        copyChunk: async () => "sled-1",
        checkChunk: async () => [{ sled: "sled-2", found: "damaged" as const, repaired: false }],
        damagedChunks: async (sled) => (sled === "sled-2" ? new Set(["v/0/2"]) : new Set()),
      },
    });
    await failing.scrubStep();
    expect(chunksShortOfCopies(chunks, new Set(), failing.damagedCopies)).toBe(1);
    await replicator.close();
    await failing.close();
  });
});

test("a sled in use whose requests went unanswered is asked on every scrub step, so that its answering again is seen soon", async () => {
  const chunks = table([[1, ["sled-1", "sled-2"]]]);
  const asked: string[] = [];
  const silent = new Set<string>();
  let nowMs = 0;
  const replicated: ReplicatedPartition = {
    address: { volume: "v", volumeId: "1-v", partition: 0 },
    roleName: "primary",
    sleds: ["sled-1", "sled-2", "sled-3"],
    replica: {
      metadata: { chunks } as ReplicatedPartition["replica"]["metadata"],
      recordCopies: () => undefined,
      requestCheckpoint: () => undefined,
      recordedCheckpoint: undefined,
    },
  };
  const replicator = new Replicator({
    logger,
    partitions: () => [replicated],
    clock: () => nowMs,
    sleds: {
      ...checkpointsInPlace,
      copyChunk: async () => "sled-1",
      checkChunk: async () => [],
      damagedChunks: async (sled) => {
        asked.push(sled);
        return new Set();
      },
      silentSleds: () => silent,
    },
  });
  await replicator.scrubStep();
  expect(asked.sort()).toEqual(["sled-1", "sled-2", "sled-3"]);
  // sled-2 stops answering (the sled client saw it); sled-3 is declared out.
  silent.add("sled-2");
  silent.add("sled-3");
  replicator.setOut(["sled-3"]);
  for (let step = 0; step < 2; step++) {
    asked.length = 0;
    nowMs += 5000;
    await replicator.scrubStep();
    // Old: asked only every damagedCheckIntervalMs (30 s), so nothing on these steps.
    expect(asked).toEqual(["sled-2"]);
  }
  // It answered: asked at the usual pace again.
  silent.clear();
  asked.length = 0;
  nowMs += 5000;
  await replicator.scrubStep();
  expect(asked).toEqual([]);
  await replicator.close();
});

describe("scheduled scrub", () => {
  test("the pace spreads one pass over the interval, and a stall does not become a burst", () => {
    // 100 chunks a day: one every 864 s.
    const day = 86_400_000;
    let step = scrubDue(0, 432_000, 100, day);
    expect(step).toEqual({ due: 0, credit: 0.5 });
    step = scrubDue(step.credit, 432_000, 100, day);
    expect(step.due).toBe(1);
    expect(step.credit).toBeCloseTo(0);
    expect(scrubDue(0, day, 100, day).due).toBe(scrubChunksPerStepMax);
    expect(scrubDue(0, day, 3, day).due).toBe(3);
    expect(scrubDue(0, day, 0, day).due).toBe(0);
  });

  test("the cursor walks the table in order and wraps", () => {
    expect(nextChunks([7, 2, 9, 4], -1, 2)).toEqual([2, 4]);
    expect(nextChunks([7, 2, 9, 4], 4, 3)).toEqual([7, 9, 2]);
    expect(nextChunks([7, 2, 9, 4], 9, 9)).toEqual([2, 4, 7, 9]);
    expect(nextChunks([], 3, 2)).toEqual([]);
  });

  test("every chunk's live copies are checked once per pass, damage reported repaired", async () => {
    const chunks = table([
      [0, ["sled-1", "sled-2"]],
      [1, ["sled-1", "sled-3"]],
      [2, ["sled-2", "sled-4"]],
    ]);
    const checked: [string, string[]][] = [];
    let nowMs = 0;
    const replicated: ReplicatedPartition = {
      address: { volume: "v", volumeId: "1-v", partition: 0 },
      roleName: "primary",
      sleds,
      replica: {
        metadata: { chunks } as ReplicatedPartition["replica"]["metadata"],
        recordCopies: () => undefined,
        requestCheckpoint: () => undefined,
        recordedCheckpoint: undefined,
      },
    };
    const replicator = new Replicator({
      logger,
      partitions: () => [replicated],
      scrubIntervalMs: 3000,
      clock: () => nowMs,
      sleds: {
        copyChunk: async () => "sled-1",
        checkChunk: async (_owner, chunkId, copies) => {
          checked.push([chunkId, [...copies]]);
          return chunkId === "v/0/1"
            ? [{ sled: "sled-1", found: "damaged" as const, repaired: true }]
            : [];
        },
        ...checkpointsInPlace,
      },
    });
    replicator.setOut(["sled-3"]);
    await replicator.pass();
    await replicator.scrubStep(); // starts the clock for this partition
    for (let step = 0; step < 6; step++) {
      nowMs += 1000;
      await replicator.scrubStep();
    }
    // Two whole passes over three chunks in 6 s; copies on out sleds are not read.
    expect(checked).toEqual([
      ["v/0/0", ["sled-1", "sled-2"]],
      ["v/0/1", ["sled-1"]],
      ["v/0/2", ["sled-2", "sled-4"]],
      ["v/0/0", ["sled-1", "sled-2"]],
      ["v/0/1", ["sled-1"]],
      ["v/0/2", ["sled-2", "sled-4"]],
    ]);
    await replicator.close();
  });
});
