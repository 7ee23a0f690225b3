// The chunk's CRC32C from end to end in the core: the primary computes it from the bytes
// it packs, the flush record carries it to every replica, the chunk table and its
// checkpoints keep it, and records and snapshots written before it existed still load.

import { crc32c } from "@ballast/protocol";
import { Packr } from "msgpackr";
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

/** A primary alone, with one write flushed: the chunk write and the committed record. */
function flushedPrimary() {
  const primary = new Replica(identity("head-1", 1), { notes: [] }, { flushBytesThreshold: 1 });
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  const data = new Uint8Array(4096).map((_, index) => (index * 7) & 0xff);
  primary.onClientRequest({ kind: "write", requestId: 1, epoch: 1, writes: [{ offset: 0, data }] });
  syncJournal(primary, primary.drainEffects());
  primary.tick();
  const [write] = only(primary.drainEffects(), "chunk.write");
  primary.onChunkWritten(write!.chunkNumber, ["sled-1", "sled-2"]);
  const recorded = primary.drainEffects();
  const [append] = only(recorded, "journal.append");
  syncJournal(primary, recorded);
  return { primary, data, write: write!, flushNote: append!.notes[0]! };
}

describe("chunk checksums in the core", () => {
  test("a chunk of whole writes and parts of overwritten ones has the CRC32C of its bytes", () => {
    // Whole writes' checksums are combined from their notes', parts are read again
    // (replica.ts, maybeStartFlush): either way the chunk's checksum is its bytes'.
    const primary = new Replica(identity("head-1", 1), { notes: [] }, { flushBytesThreshold: 1 });
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
    const writes = [
      { offset: 0, bytes: 128 * 1024 },
      { offset: 256 * 1024, bytes: 4096 },
      { offset: 64 * 1024, bytes: 12_288 },
      { offset: 300 * 1024, bytes: 200 * 1024 },
      { offset: 350 * 1024, bytes: 512 },
    ];
    for (const [index, { offset, bytes }] of writes.entries()) {
      const data = new Uint8Array(bytes).map((_, at) => (at * 13 + index * 101) & 0xff);
      primary.onClientRequest({
        kind: "write",
        requestId: index + 1,
        epoch: 1,
        writes: [{ offset, data }],
      });
      syncJournal(primary, primary.drainEffects());
    }
    primary.tick();
    const [write] = only(primary.drainEffects(), "chunk.write");
    // Two writes were cut by later ones, so the chunk holds parts as well as wholes.
    expect(write!.data.byteLength).toBe(128 * 1024 + 4096 + 200 * 1024);
    expect(write!.checksum).toBe(crc32c(write!.data));
  });

  test("the primary computes the chunk's CRC32C and the flush record carries it", () => {
    const { primary, data, write, flushNote } = flushedPrimary();
    expect(write.checksum).toBe(crc32c(data));
    const record = decodeFlushRecord(flushNote.data!);
    expect(record.chunk?.checksum).toBe(crc32c(data));
    expect(primary.metadata.chunks.get(write.chunkNumber)?.checksum).toBe(crc32c(data));
  });

  test("a replica applying the record keeps the checksum, and so does its checkpoint", async () => {
    const { primary, data, write, flushNote } = flushedPrimary();
    const other = new PartitionMetadata();
    // The write note first, as the op stream delivers it, then the flush record.
    other.apply({ ...flushNote, kind: "write", opNum: 1, offset: 0, length: 4096, data });
    other.apply(flushNote);
    expect(other.chunks.get(write.chunkNumber)).toMatchObject({
      copies: ["sled-1", "sled-2"],
      bytes: 4096,
      checksum: crc32c(data),
    });
    const snapshot = primary.metadata.snapshot(primary.commitOpNum, { epoch: 1, session: 1 });
    const { metadata } = await PartitionMetadata.restore(snapshot);
    expect(metadata.chunks.get(write.chunkNumber)?.checksum).toBe(crc32c(data));
    expect(metadata.fingerprint()).toBe(primary.metadata.fingerprint());
    // A read of the chunk hands the recorded checksum to the shell that fetches it.
    const [part] = metadata.planRead(0, 4096, () => undefined);
    expect(part).toMatchObject({ kind: "chunk", chunk: { bytes: 4096, checksum: crc32c(data) } });
  });

  test("a flush record written before records kept checksums still decodes and applies", () => {
    const old = new Packr({ useRecords: false, moreTypes: false }).pack({
      throughOpNum: 1,
      chunk: { chunkNumber: 0, sledChunkId: "vol-p0-e1-s1-c0", copies: ["sled-1"], bytes: 512 },
      pieces: [0, 512, 1, 0],
    });
    const record = decodeFlushRecord(old);
    expect(record.chunk?.checksum).toBeUndefined();
    const metadata = new PartitionMetadata();
    metadata.apply({ opNum: 2, epoch: 1, session: 1, kind: "flush", data: old } as never);
    expect(metadata.chunks.get(0)).toEqual({
      sledChunkId: "vol-p0-e1-s1-c0",
      copies: ["sled-1"],
      bytes: 512,
    });
    // And it encodes back without inventing one.
    expect(decodeFlushRecord(encodeFlushRecord(record)).chunk).not.toHaveProperty("checksum");
  });

  test("a snapshot whose chunk table has no checksums still restores", async () => {
    const metadata = new PartitionMetadata();
    metadata.chunks.set(0, { sledChunkId: "c0", copies: ["sled-1", "sled-2"], bytes: 512 });
    metadata.nextChunkNumber = 1;
    const { metadata: restored } = await PartitionMetadata.restore(
      metadata.snapshot(0, { epoch: 0, session: 0 }),
    );
    expect(restored.chunks.get(0)).toEqual({
      sledChunkId: "c0",
      copies: ["sled-1", "sled-2"],
      bytes: 512,
    });
  });
});
