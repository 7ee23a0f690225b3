import { hashedChunkIdPrefixOf } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
// The head node's own naming, so that these tests break if the two ever drift apart.
import { sledChunkIdOf } from "../../headnode/src/replica/replica.ts";
import {
  type ChunkEntry,
  isChunkOf,
  type PurgeRecord,
  PurgeSchedule,
  purgeDeletes,
  sledsAwaited,
} from "../src/purge.ts";

const dead: PurgeRecord = { volume: "vol", volumeId: "1-aaaaaaaaaaaa", deletedAtMs: 1 };
const liveId = "2-bbbbbbbbbbbb";

function chunkOf(volume: string, volumeId: string, partition: number, chunkNumber = 0): ChunkEntry {
  const chunkId = sledChunkIdOf({ volume, volumeId, partition, session: 7 }, 3, chunkNumber);
  return { chunkId, owner: { volume, partition }, bytes: 4096 };
}

describe("which chunks belong to a deleted incarnation", () => {
  test("the incarnation's own chunks, in every partition, are matched", () => {
    for (const partition of [0, 9, 10, 123]) {
      expect(isChunkOf(chunkOf("vol", dead.volumeId, partition, 5), dead, new Set())).toBe(true);
    }
  });

  test("another incarnation of the same name is never matched", () => {
    expect(isChunkOf(chunkOf("vol", liveId, 0), dead, new Set([liveId]))).toBe(false);
  });

  test("another volume whose id or name extends this one's is never matched", () => {
    // Same id text under another owner, and a name that merely starts with ours.
    expect(isChunkOf(chunkOf("vol2", dead.volumeId, 0), dead, new Set())).toBe(false);
    const record: PurgeRecord = { volume: "vol", volumeId: "vol", deletedAtMs: 1 };
    expect(isChunkOf(chunkOf("vol", "vol-p0", 0), record, new Set())).toBe(false);
    expect(isChunkOf(chunkOf("vol", "vol", 0), record, new Set())).toBe(true);
  });

  test("a chunk whose id and owner disagree on the partition is kept", () => {
    const chunk = chunkOf("vol", dead.volumeId, 1);
    expect(isChunkOf({ ...chunk, owner: { volume: "vol", partition: 2 } }, dead, new Set())).toBe(
      false,
    );
  });

  test("ids too long for a chunk id are recognised by their hash", () => {
    const longName = `v${"x".repeat(60)}`;
    const record: PurgeRecord = { volume: longName, volumeId: longName, deletedAtMs: 1 };
    const chunk = chunkOf(longName, longName, 35, 40);
    expect(chunk.chunkId.startsWith(hashedChunkIdPrefixOf(longName))).toBe(true);
    expect(isChunkOf(chunk, record, new Set())).toBe(true);
  });

  test("a hashed prefix that a live incarnation shares is ambiguous, and kept", () => {
    const longName = `v${"x".repeat(60)}`;
    const record: PurgeRecord = { volume: longName, volumeId: longName, deletedAtMs: 1 };
    const chunk = chunkOf(longName, longName, 0);
    // Stand-in for a CRC collision: the live id is the dead one's twin.
    expect(isChunkOf(chunk, record, new Set([longName]))).toBe(false);
  });
});

describe("the deletes of a purge pass", () => {
  const inventory = {
    chunks: [
      chunkOf("vol", dead.volumeId, 0, 0),
      chunkOf("vol", dead.volumeId, 1, 4),
      chunkOf("vol", liveId, 0, 0),
      chunkOf("other", "1-cccccccccccc", 0, 0),
    ],
    blobKeys: [
      `checkpoints/${dead.volumeId}/0/h1/10-1-1`,
      `checkpoints/${dead.volumeId}x/0/h1/10-1-1`,
      `checkpoints/${liveId}/0/h1/10-1-1`,
    ],
  };

  test("every chunk and checkpoint blob of the incarnation, and nothing else", () => {
    const deletes = purgeDeletes(inventory, [dead], new Set([liveId]));
    expect(deletes).toEqual([
      {
        kind: "chunk",
        volumeId: dead.volumeId,
        chunkId: inventory.chunks[0]!.chunkId,
        owner: { volume: "vol", partition: 0 },
      },
      {
        kind: "chunk",
        volumeId: dead.volumeId,
        chunkId: inventory.chunks[1]!.chunkId,
        owner: { volume: "vol", partition: 1 },
      },
      { kind: "blob", volumeId: dead.volumeId, key: `checkpoints/${dead.volumeId}/0/h1/10-1-1` },
    ]);
  });

  test("an incarnation that is live again is not purged at all", () => {
    expect(purgeDeletes(inventory, [dead], new Set([dead.volumeId]))).toEqual([]);
  });
});

describe("the purge schedule", () => {
  const times = { graceMs: 1000, retainMs: 5000, ageMsMax: 60_000 };
  const clean = { found: 0, complete: true };

  test("an incarnation is due only after its grace", () => {
    const schedule = new PurgeSchedule(times);
    schedule.observe([dead], 100);
    expect(schedule.due(1099)).toEqual([]);
    expect(schedule.due(1100)).toEqual([dead]);
  });

  test("it is forgotten once passes have found nothing for the retention time", () => {
    const schedule = new PurgeSchedule(times);
    schedule.observe([dead], 0);
    expect(schedule.passed(dead.volumeId, { found: 3, complete: true }, 1000)).toBe("keep");
    expect(schedule.passed(dead.volumeId, clean, 2000)).toBe("keep");
    expect(schedule.passed(dead.volumeId, clean, 6999)).toBe("keep");
    expect(schedule.passed(dead.volumeId, clean, 7000)).toBe("forget");
  });

  test("a pass that finds objects again (a late flush) restarts the retention", () => {
    const schedule = new PurgeSchedule(times);
    schedule.observe([dead], 0);
    schedule.passed(dead.volumeId, clean, 1000);
    expect(schedule.passed(dead.volumeId, { found: 1, complete: true }, 5000)).toBe("keep");
    expect(schedule.passed(dead.volumeId, clean, 6000)).toBe("keep");
    expect(schedule.passed(dead.volumeId, clean, 10_999)).toBe("keep");
    expect(schedule.passed(dead.volumeId, clean, 11_000)).toBe("forget");
  });

  test("a sled that is down keeps the record until the age limit", () => {
    const schedule = new PurgeSchedule(times);
    schedule.observe([dead], 0);
    const missed = { found: 0, complete: false };
    expect(schedule.passed(dead.volumeId, missed, 10_000)).toBe("keep");
    expect(schedule.passed(dead.volumeId, missed, 59_999)).toBe("keep");
    expect(schedule.passed(dead.volumeId, missed, 60_000)).toBe("forget");
    // Objects that will not delete keep it past the age limit.
    expect(schedule.passed(dead.volumeId, { found: 1, complete: false }, 70_000)).toBe("keep");
  });

  test("drops owed keep the record past clean sleds, which are not listed again", () => {
    const schedule = new PurgeSchedule(times);
    const owing = { ...dead, headNodes: ["head-2", "head-1"] };
    schedule.observe([owing], 0);
    expect(schedule.dropsOwed(dead.volumeId, ["head-3", "head-1"], new Set())).toEqual([
      "head-1",
      "head-2",
      "head-3",
    ]);
    schedule.dropped(dead.volumeId, "head-1");
    schedule.dropped(dead.volumeId, "head-3");
    expect(schedule.dropsOwed(dead.volumeId, ["head-3"], new Set())).toEqual(["head-2"]);
    expect(schedule.passed(dead.volumeId, { ...clean, dropsOwed: 1 }, 1000)).toBe("keep");
    expect(schedule.sledsClean(dead.volumeId)).toBe(false);
    expect(schedule.passed(dead.volumeId, { ...clean, dropsOwed: 1 }, 6000)).toBe("keep");
    expect(schedule.sledsClean(dead.volumeId)).toBe(true);
    expect(schedule.passed(dead.volumeId, { ...clean, dropsOwed: 1 }, 30_000)).toBe("keep");
    schedule.dropped(dead.volumeId, "head-2");
    expect(schedule.dropsOwed(dead.volumeId, [], new Set())).toEqual([]);
    expect(schedule.passed(dead.volumeId, clean, 31_000)).toBe("forget");
  });

  test("a head node that never acknowledges keeps the record only until the age limit", () => {
    const schedule = new PurgeSchedule(times);
    schedule.observe([{ ...dead, headNodes: ["head-1"] }], 0);
    expect(schedule.passed(dead.volumeId, { ...clean, dropsOwed: 1 }, 59_999)).toBe("keep");
    expect(schedule.passed(dead.volumeId, { ...clean, dropsOwed: 1 }, 60_000)).toBe("forget");
  });

  test("an incarnation that is live again is owed no drop", () => {
    const schedule = new PurgeSchedule(times);
    schedule.observe([{ ...dead, headNodes: ["head-1"] }], 0);
    expect(schedule.dropsOwed(dead.volumeId, ["head-2"], new Set([dead.volumeId]))).toEqual([]);
  });

  test("a record that left the catalogue is dropped; one seen anew starts its grace again", () => {
    const schedule = new PurgeSchedule(times);
    schedule.observe([dead], 0);
    schedule.observe([], 500);
    expect(schedule.due(5000)).toEqual([]);
    schedule.observe([dead], 5000);
    expect(schedule.due(5999)).toEqual([]);
    expect(schedule.pending(6000)).toEqual([
      { volume: "vol", volumeId: dead.volumeId, deletedAtMs: 1, cleanForMs: 0 },
    ]);
  });
});

describe("the sleds a purge pass awaits", () => {
  const sleds = [
    { id: "sled-3", alive: false },
    { id: "sled-1", alive: true },
    { id: "sled-2", alive: false },
  ];

  test("a dead sled is awaited until it is declared out; a live one never is", () => {
    expect(sledsAwaited(sleds, new Set())).toEqual(["sled-2", "sled-3"]);
    expect(sledsAwaited(sleds, new Set(["sled-3"]))).toEqual(["sled-2"]);
    expect(sledsAwaited(sleds, new Set(["sled-2", "sled-3"]))).toEqual([]);
    // Out but heard again: it is listed, so not awaited either way.
    expect(sledsAwaited([{ id: "sled-1", alive: true }], new Set(["sled-1"]))).toEqual([]);
  });

  test("while the out set is unknown every dead sled is awaited", () => {
    expect(sledsAwaited(sleds, undefined)).toEqual(["sled-2", "sled-3"]);
  });

  test("a sled membership has forgotten is not awaited", () => {
    expect(sledsAwaited([{ id: "sled-1", alive: true }], undefined)).toEqual([]);
  });
});
