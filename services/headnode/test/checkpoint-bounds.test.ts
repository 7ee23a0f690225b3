// Checkpoints that no sled could store or no reader could take back are refused before
// anything is written: the metadata's snapshot throws a CheckpointTooLargeError past its
// bounds, and the replica core then writes nothing, releases nothing, says why (status,
// an effect the shell logs) and waits checkpointRefusedRetryTicks before the next try.
// Before, a header over the readers' limit was written, stored, recorded and released
// the journal: the next restart of every replica failed on it.

import {
  checkpointBytesMax,
  checkpointHeaderBytesMax,
  ErrorCode,
  limits,
  readCheckpointHeader,
} from "@ballast/protocol";
import { expect, test } from "vitest";
import { checkpointExtentBytesMax, type ReplicaLimits } from "../src/constants.ts";
import type { Effect } from "../src/replica/effects.ts";
import { CheckpointTooLargeError, PartitionMetadata } from "../src/replica/metadata.ts";
import { Replica } from "../src/replica/replica.ts";
import { publishCheckpoint } from "../src/testing/checkpoint.ts";
import { only, syncJournal } from "./effects-helpers.ts";

const flushedThrough = { epoch: 1, session: 1 };

/** A sled chunk id of the usual length (36 characters) for chunk `number`. */
function chunkId(number: number): string {
  return `vol-0123456789abcdef-p0-e1-s1-c${number}`.padEnd(36, "x").slice(0, 36);
}

/** Metadata whose table holds `count` chunks of two copies each, and no extents. */
function withChunks(count: number): PartitionMetadata {
  const metadata = new PartitionMetadata();
  for (let number = 0; number < count; number++) {
    metadata.chunks.set(number, {
      sledChunkId: chunkId(number),
      copies: ["sled-1", "sled-2"],
      bytes: 4096,
      checksum: 0xffff_ffff,
    });
  }
  metadata.nextChunkNumber = count;
  return metadata;
}

test("a chunk table over the readers' header limit is refused, never written", async () => {
  // About 67 bytes a chunk (measured): 1.05M chunks is a header of about 70 MB, past
  // checkpointHeaderBytesMax (64 MiB); every step from the write to the record took it.
  const metadata = withChunks(1_050_000);
  let bytes: Uint8Array | undefined;
  let refused: unknown;
  try {
    bytes = metadata.snapshot(7, flushedThrough);
  } catch (error) {
    refused = error;
  }
  // Whatever is written must load back: before, this one was written and never loaded.
  if (bytes !== undefined) await PartitionMetadata.restore(bytes);
  expect(refused).toBeInstanceOf(CheckpointTooLargeError);
  const error = refused as CheckpointTooLargeError;
  expect(error.part).toBe("header");
  expect(error.bytesMax).toBe(checkpointHeaderBytesMax);
  expect(error.bytes).toBeGreaterThan(checkpointHeaderBytesMax);
  expect(error.message).toMatch(/1050000 chunks/);
});

test("a checkpoint is refused past each bound, and taken within them", async () => {
  const metadata = withChunks(3);
  for (let index = 0; index < 2000; index++) {
    metadata.apply({
      opNum: index + 1,
      epoch: 1,
      session: 1,
      kind: "trim",
      offset: index * 1024,
      length: 512,
      checksum: 0,
    });
  }
  const whole = metadata.snapshot(2000, flushedThrough);
  const { headerEnd } = readCheckpointHeader(whole);
  const exact = { headerBytesMax: headerEnd - 4, bytesMax: whole.byteLength };
  const restored = await PartitionMetadata.restore(metadata.snapshot(2000, flushedThrough, exact));
  expect(restored.metadata.fingerprint()).toBe(metadata.fingerprint());

  const header = () =>
    metadata.snapshot(2000, flushedThrough, { ...exact, headerBytesMax: headerEnd - 5 });
  expect(header).toThrow(CheckpointTooLargeError);
  expect(header).toThrow(/header of \d+ bytes \(3 chunks\)/);
  // The header fits, the whole does not: refused once it is known.
  const total = () =>
    metadata.snapshot(2000, flushedThrough, { ...exact, bytesMax: whole.byteLength - 1 });
  expect(total).toThrow(expect.objectContaining({ part: "checkpoint" }));
  // The trees alone pass the bound: refused while they serialize.
  const trees = () =>
    metadata.snapshot(2000, flushedThrough, { ...exact, bytesMax: whole.byteLength - headerEnd });
  expect(trees).toThrow(expect.objectContaining({ part: "trees" }));
});

/** The effects of `count` ticks of `core`, with journal appends made durable at once. */
function ticks(core: Replica, count: number): Effect[] {
  const effects: Effect[] = [];
  for (let tick = 0; tick < count; tick++) {
    core.tick();
    const drained = core.drainEffects();
    effects.push(...drained, ...syncJournal(core, drained));
  }
  return effects;
}

/** A solo primary under `limits` that has written and flushed `count` blocks, one chunk each. */
function flushedChunks(count: number, limits: Partial<ReplicaLimits>): Replica {
  const primary = new Replica(
    {
      nodeId: "head-1",
      volume: "vol",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 1 << 20,
      session: 1,
    },
    { notes: [] },
    limits,
  );
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  for (let index = 0; index < count; index++) {
    primary.onClientRequest({
      kind: "write",
      requestId: index + 1,
      epoch: 1,
      writes: [{ offset: index * 4096, data: new Uint8Array(512).fill(index + 1) }],
    });
    syncJournal(primary, primary.drainEffects());
    primary.tick();
    const [chunk] = only(primary.drainEffects(), "chunk.write");
    primary.onChunkWritten(chunk!.chunkNumber, ["sled-1", "sled-2"]);
    syncJournal(primary, primary.drainEffects());
  }
  return primary;
}

test("a replica refuses a checkpoint over its header bound: nothing written or released, it backs off, then takes one that fits", () => {
  const limits: Partial<ReplicaLimits> = {
    flushBytesThreshold: 1,
    // No checkpoint of its own accord: the test asks for one, and the request stands.
    checkpointIntervalTicks: 1e9,
    checkpointIntervalOps: 1e9,
    checkpointReleasableBytes: 1e9,
    checkpointRetryTicks: 0,
    dropIntervalTicks: 1,
    compactionIntervalTicks: 1e9,
    // Between the header of an empty chunk table and one of three chunks (checked below).
    checkpointHeaderBytesMax: 200,
    checkpointRefusedRetryTicks: 40,
  };
  const primary = flushedChunks(3, limits);
  expect(primary.metadata.chunks.size).toBe(3);
  const headerOf = (metadata: PartitionMetadata) =>
    readCheckpointHeader(metadata.snapshot(primary.commitOpNum, flushedThrough)).headerEnd - 4;
  expect(headerOf(primary.metadata)).toBeGreaterThan(200);
  expect(headerOf(new PartitionMetadata())).toBeLessThan(200);

  primary.requestCheckpoint();
  const first = ticks(primary, 1);
  expect(only(first, "checkpoint.write")).toEqual([]);
  const [refusal] = only(first, "checkpoint.refused");
  expect(refusal?.error.part).toBe("header");
  expect(primary.checkpointRefused?.error.message).toMatch(/more than the 200 a reader accepts/);
  // Backs off: no other try, written or refused, until the pause is over.
  const pause = ticks(primary, 38);
  expect(only(pause, "checkpoint.write")).toEqual([]);
  expect(only(pause, "checkpoint.refused")).toEqual([]);
  expect(only([...first, ...pause], "journal.release")).toEqual([]);

  // Trimming every block lets the next flush record drop the three chunks.
  primary.onClientRequest({
    kind: "trim",
    requestId: 100,
    epoch: 1,
    ranges: [{ offset: 0, length: 3 * 4096 }],
  });
  syncJournal(primary, primary.drainEffects());
  const later = ticks(primary, 3);
  expect(primary.metadata.chunks.size).toBe(0);
  const [write] = only(later, "checkpoint.write");
  expect(write).toBeDefined();
  expect(primary.checkpointRefused).toBeUndefined();
  publishCheckpoint(primary, write!.opNum);
  expect(only(primary.drainEffects(), "journal.release").length).toBe(1);
});

test("the largest partition's tree at its worst fits one checkpoint, with room for snapshots", () => {
  // One 512-byte extent per sector, each at its most bytes: no write can make the current
  // tree alone too large for a sled blob (at 64 GiB it was 2.6 GiB).
  const worst = (limits.partitionBytesMax / limits.sectorBytes) * checkpointExtentBytesMax;
  expect(worst).toBeLessThanOrEqual(checkpointBytesMax * 0.75);
});

/** A solo primary of a 1 MiB partition (2048 sectors) under `limits`. */
function soloPrimary(limits: Partial<ReplicaLimits>) {
  const primary = new Replica(
    {
      nodeId: "head-1",
      volume: "vol",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 1 << 20,
      session: 1,
    },
    { notes: [] },
    limits,
  );
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  let requestId = 0;
  const replies = (effects: Effect[]) => [
    ...only(effects, "reply"),
    ...only(effects, "reply.error"),
  ];
  return {
    primary,
    write(sector: number, fill: number) {
      primary.onClientRequest({
        kind: "write",
        requestId: ++requestId,
        epoch: 1,
        writes: [{ offset: sector * 512, data: new Uint8Array(512).fill(fill) }],
      });
      syncJournal(primary, primary.drainEffects());
    },
    take(id: string) {
      primary.takeSnapshot(++requestId, 1, id);
      const effects = primary.drainEffects();
      return replies([...effects, ...syncJournal(primary, effects)]);
    },
    drop(id: string) {
      primary.dropSnapshot(++requestId, 1, id);
      const effects = primary.drainEffects();
      return replies([...effects, ...syncJournal(primary, effects)]);
    },
  };
}

test("a snapshot take past the checkpoint budget is refused; the trees it allows fit a checkpoint even once writes fragment the live tree", () => {
  const sectors = 2048;
  // 100 extents, every other sector of the first 200.
  const extents = 100;
  // Two snapshots of 100 extents, the live tree's reserve (a 512-byte extent per sector),
  // and no chunks (nothing flushes here): the third take is over.
  const budget = (2 * extents + sectors) * checkpointExtentBytesMax + 64;
  const partition = soloPrimary({
    flushBytesThreshold: 1e12,
    flushIntervalTicks: 1e9,
    checkpointBytesMax: budget,
  });
  for (let index = 0; index < extents; index++) partition.write(index * 2, 1);
  expect(partition.primary.metadata.tree.extentCount).toBe(extents);
  expect(partition.take("s1")).toEqual([expect.objectContaining({ type: "reply" })]);
  expect(partition.take("s2")).toEqual([expect.objectContaining({ type: "reply" })]);
  const commitBefore = partition.primary.commitOpNum;
  const [refusal] = partition.take("s3");
  expect(refusal?.type).toBe("reply.error");
  const error = (refusal as Extract<Effect, { type: "reply.error" }>).error;
  expect(error.code).toBe(ErrorCode.NoSpace);
  expect(error.message).toMatch(/snapshot s3 refused on vol\/0: .*delete snapshots/);
  // Nothing was proposed for it.
  expect(partition.primary.commitOpNum).toBe(commitBefore);
  expect([...partition.primary.metadata.snapshots.keys()]).toEqual(["s1", "s2"]);
  // A take of one already taken is answered as before.
  expect(partition.take("s2")).toEqual([expect.objectContaining({ type: "reply" })]);

  // Once a snapshot is deleted, there is room again.
  expect(partition.drop("s1")).toEqual([expect.objectContaining({ type: "reply" })]);
  expect(partition.take("s3")).toEqual([expect.objectContaining({ type: "reply" })]);

  // Writes fragment the live tree to its worst, one extent per sector: the checkpoint
  // still fits the bound the takes were budgeted against, so it is taken, not refused.
  for (let sector = 0; sector < sectors; sector++) partition.write(sector, (sector % 200) + 2);
  expect(partition.primary.metadata.tree.extentCount).toBe(sectors);
  const bytes = partition.primary.metadata.snapshot(partition.primary.commitOpNum, flushedThrough, {
    headerBytesMax: checkpointHeaderBytesMax,
    bytesMax: budget,
  });
  expect(bytes.byteLength).toBeLessThanOrEqual(budget);
  // The fragmented tree itself is too large to freeze now.
  expect(partition.take("s4")).toEqual([expect.objectContaining({ type: "reply.error" })]);
});

test("while checkpoints are refused, writes that would wait for journal room are answered NoSpace with the reason; trims still go", () => {
  const primary = flushedChunks(3, {
    flushBytesThreshold: 1,
    checkpointIntervalTicks: 1e9,
    checkpointIntervalOps: 1e9,
    checkpointReleasableBytes: 1e9,
    checkpointRetryTicks: 0,
    compactionIntervalTicks: 1e9,
    checkpointHeaderBytesMax: 200,
    logBytesMax: 16 * 1024,
  });
  primary.requestCheckpoint();
  expect(only(ticks(primary, 1), "checkpoint.refused")).toHaveLength(1);
  let requestId = 100;
  const write = (sector: number) => {
    primary.onClientRequest({
      kind: "write",
      requestId: ++requestId,
      epoch: 1,
      writes: [{ offset: sector * 512, data: new Uint8Array(512).fill(7) }],
    });
    const effects = primary.drainEffects();
    return [...effects, ...syncJournal(primary, effects)];
  };
  // The journal fills (nothing releases it); below half of logBytesMax writes go on.
  let refused: Effect | undefined;
  for (let sector = 0; sector < 64 && refused === undefined; sector++) {
    const effects = write(sector);
    refused = only(effects, "reply.error")[0];
    if (refused === undefined) expect(only(effects, "reply")).toHaveLength(1);
  }
  expect(refused).toBeDefined();
  const error = (refused as Extract<Effect, { type: "reply.error" }>).error;
  expect(error.code).toBe(ErrorCode.NoSpace);
  expect(error.message).toMatch(
    /cannot release its journal .*its checkpoint was refused \(a checkpoint header of \d+ bytes \(3 chunks\)/,
  );
  // A trim is still taken: it is how a partition gets smaller.
  primary.onClientRequest({
    kind: "trim",
    requestId: ++requestId,
    epoch: 1,
    ranges: [{ offset: 0, length: 4096 }],
  });
  const trimmed = primary.drainEffects();
  expect(only([...trimmed, ...syncJournal(primary, trimmed)], "reply")).toHaveLength(1);
});

test("a refused checkpoint is tried again soon once a snapshot is dropped and its chunks go, not after the long pause", () => {
  const primary = flushedChunks(3, {
    flushBytesThreshold: 1,
    checkpointIntervalTicks: 1e9,
    checkpointIntervalOps: 1e9,
    checkpointReleasableBytes: 1e9,
    checkpointRetryTicks: 5,
    dropIntervalTicks: 1,
    compactionIntervalTicks: 1e9,
    // Between the header of an empty chunk table and one of three chunks.
    checkpointHeaderBytesMax: 200,
    // The pause after a refusal, longer than this test: only a drop brings a try sooner.
    checkpointRefusedRetryTicks: 1e6,
  });
  let requestId = 100;
  const committed = (effects: Effect[]) => [...effects, ...syncJournal(primary, effects)];
  // Snapshot s1 holds the three chunks; trimming every block leaves them to it alone.
  primary.takeSnapshot(++requestId, 1, "s1");
  expect(only(committed(primary.drainEffects()), "reply")).toHaveLength(1);
  primary.onClientRequest({
    kind: "trim",
    requestId: ++requestId,
    epoch: 1,
    ranges: [{ offset: 0, length: 3 * 4096 }],
  });
  committed(primary.drainEffects());
  ticks(primary, 10);
  expect(primary.metadata.chunks.size).toBe(3);

  primary.requestCheckpoint();
  const refused = ticks(primary, 10);
  expect(only(refused, "checkpoint.refused")).toHaveLength(1);
  expect(only(refused, "checkpoint.write")).toEqual([]);
  expect(only(ticks(primary, 50), "checkpoint.write")).toEqual([]);

  // The user deletes the snapshot: its chunks are dropped by the next flush record, and
  // the checkpoint that now fits is taken within a few ticks.
  primary.dropSnapshot(++requestId, 1, "s1");
  expect(only(committed(primary.drainEffects()), "reply")).toHaveLength(1);
  const later = ticks(primary, 30);
  expect(primary.metadata.chunks.size).toBe(0);
  const [write] = only(later, "checkpoint.write");
  expect(write).toBeDefined();
  expect(primary.checkpointRefused).toBeUndefined();
  publishCheckpoint(primary, write!.opNum);
  expect(only(primary.drainEffects(), "journal.release").length).toBe(1);
});
