// Chunk-table maintenance through the op stream: a new copy list (re-replication) rides
// in a flush record, so every replica changes its table at the same op; a maintenance
// record is proposed even with nothing to flush; a failed flush hands its maintenance to
// the next record; `drop` removes chunks from every table.

import { describe, expect, test } from "vitest";
import { decodeFlushRecord, encodeFlushRecord } from "../src/replica/flush-record.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import { Replica } from "../src/replica/replica.ts";
import { only, syncJournal } from "./effects-helpers.ts";

function identity(nodeId: string, session: number) {
  return {
    nodeId,
    volume: "vol",
    partition: 0,
    partitionStart: 0,
    partitionBytes: 1024 * 1024,
    session,
  };
}

/** A primary alone with one chunk flushed to sled-1 and sled-2. */
function flushedPrimary() {
  const primary = new Replica(identity("head-1", 1), { notes: [] }, { flushBytesThreshold: 1 });
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  const data = new Uint8Array(4096).fill(9);
  primary.onClientRequest({ kind: "write", requestId: 1, epoch: 1, writes: [{ offset: 0, data }] });
  syncJournal(primary, primary.drainEffects());
  primary.tick();
  const [write] = only(primary.drainEffects(), "chunk.write");
  primary.onChunkWritten(write!.chunkNumber, ["sled-1", "sled-2"]);
  syncJournal(primary, primary.drainEffects());
  return { primary, chunkNumber: write!.chunkNumber };
}

describe("chunk-table maintenance records", () => {
  test("recordCopies is proposed with nothing to flush and applies at its op", () => {
    const { primary, chunkNumber } = flushedPrimary();
    expect(primary.metadata.chunks.get(chunkNumber)?.copies).toEqual(["sled-1", "sled-2"]);
    primary.recordCopies(chunkNumber, ["sled-1", "sled-3"]);
    primary.tick();
    const effects = primary.drainEffects();
    expect(only(effects, "chunk.write")).toHaveLength(0);
    const [append] = only(effects, "journal.append");
    const record = decodeFlushRecord(append!.notes[0]!.data!);
    expect(record.chunk).toBeNull();
    expect(record.copies).toEqual([[chunkNumber, ["sled-1", "sled-3"]]]);
    // Not applied before it commits.
    expect(primary.metadata.chunks.get(chunkNumber)?.copies).toEqual(["sled-1", "sled-2"]);
    syncJournal(primary, effects);
    expect(primary.metadata.chunks.get(chunkNumber)?.copies).toEqual(["sled-1", "sled-3"]);
  });

  test("a failed flush hands its copy lists to the next record", () => {
    const { primary, chunkNumber } = flushedPrimary();
    primary.onClientRequest({
      kind: "write",
      requestId: 2,
      epoch: 1,
      writes: [{ offset: 8192, data: new Uint8Array(4096).fill(3) }],
    });
    syncJournal(primary, primary.drainEffects());
    primary.recordCopies(chunkNumber, ["sled-2", "sled-4"]);
    primary.tick();
    const [write] = only(primary.drainEffects(), "chunk.write");
    primary.onChunkFailed(write!.chunkNumber);
    for (let tick = 0; tick < 200; tick++) primary.tick();
    const effects = primary.drainEffects();
    const [retry] = only(effects, "chunk.write");
    primary.onChunkWritten(retry!.chunkNumber, ["sled-1", "sled-2"]);
    const recorded = primary.drainEffects();
    const record = decodeFlushRecord(only(recorded, "journal.append")[0]!.notes[0]!.data!);
    expect(record.copies).toEqual([[chunkNumber, ["sled-2", "sled-4"]]]);
    syncJournal(primary, recorded);
    expect(primary.metadata.chunks.get(chunkNumber)?.copies).toEqual(["sled-2", "sled-4"]);
  });

  test("recordCopies off the primary, or for an unknown chunk, records nothing", () => {
    const { primary } = flushedPrimary();
    primary.recordCopies(99, ["sled-1", "sled-2"]);
    primary.tick();
    expect(only(primary.drainEffects(), "journal.append")).toHaveLength(0);
    const secondary = new Replica(identity("head-2", 1), { notes: [] });
    secondary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    secondary.recordCopies(0, ["sled-1", "sled-2"]);
    secondary.tick();
    expect(only(secondary.drainEffects(), "journal.append")).toHaveLength(0);
  });

  test("drop removes a chunk from the table; a late copy list does not bring it back", () => {
    const metadata = new PartitionMetadata();
    const chunk = { chunkNumber: 0, sledChunkId: "v-p0-e1-s1-c0", copies: ["a", "b"], bytes: 512 };
    const note = (opNum: number, record: object) => ({
      opNum,
      epoch: 1,
      session: 1,
      kind: "flush" as const,
      offset: 0,
      length: 0,
      data: encodeFlushRecord(record as never),
      checksum: 0,
    });
    metadata.apply(note(1, { throughOpNum: 0, chunk, pieces: [] }));
    expect(metadata.chunks.has(0)).toBe(true);
    metadata.apply(note(2, { throughOpNum: 0, chunk: null, pieces: [], drop: [0] }));
    expect(metadata.chunks.has(0)).toBe(false);
    metadata.apply(note(3, { throughOpNum: 0, chunk: null, pieces: [], copies: [[0, ["c"]]] }));
    expect(metadata.chunks.has(0)).toBe(false);
    // The next chunk number never goes back: a dropped number is not reused.
    expect(metadata.nextChunkNumber).toBe(1);
  });
});
