// The volume metadata of one partition replica: the extent tree (byte range → newest
// location), the table of chunks flushed to sleds, and what is flushed so far. Every
// replica applies the same committed notes in the same op order to its own copy, so the
// copies stay identical; nothing here reads a clock or depends on which role it plays.
//
// A write's bytes are first located in the journal as {segment: opNum, position}: the
// "segment" of a journal location is the op number of the note holding the bytes, and
// the position is the byte within that note's data. A flush record later moves live
// pieces to {chunkId: chunkNumber, offset}.
//
// Snapshot format (what a checkpoint stores): a 4-byte little-endian length, a msgpack
// header {format, opNum, flushedThrough op/epoch/session, nextChunkNumber, chunks (each
// with its CRC32C when its flush record had one)}, then the extent
// tree in @ballast/btree's checkpoint format, which carries its own checksums.

import { createHash } from "node:crypto";
import {
  type ChunkLocation,
  ExtentTree,
  type Location,
  loadCheckpoint,
  type Piece,
  serializeCheckpoint,
} from "@ballast/btree";
import { checkpointHeaderFormat, readCheckpointHeader } from "@ballast/protocol";
import { Packr } from "msgpackr";
import { decodeFlushRecord, flushPieces } from "./flush-record.ts";
import type { Note } from "./note.ts";

export interface ChunkEntry {
  sledChunkId: string;
  copies: string[];
  bytes: number;
  /** CRC32C of the whole chunk, from its flush record; absent for chunks flushed before
   * records carried it. Reads of the whole chunk and repairs check copies against it. */
  checksum?: number;
}

const snapshotFormat = checkpointHeaderFormat;

const packr = new Packr({ useRecords: false, moreTypes: false });

export type ReadPart =
  | { kind: "zero"; offset: number; length: number }
  | { kind: "memory"; offset: number; length: number; data: Uint8Array }
  | {
      kind: "chunk";
      offset: number;
      length: number;
      chunkNumber: number;
      chunkOffset: number;
      chunk: ChunkEntry;
    };

export class PartitionMetadata {
  readonly tree: ExtentTree;
  readonly chunks = new Map<number, ChunkEntry>();
  /** Committed writes not yet covered by a flush record: op → its range. In op order. */
  readonly unflushed = new Map<number, { offset: number; length: number }>();
  flushedThroughOpNum = 0;
  /** Which note the flushed point is (epoch and session): kept so that a replica
   * recovered from a checkpoint can still prove its log matches at that point. */
  flushedThroughEpoch = 0;
  flushedThroughSession = 0;
  nextChunkNumber = 0;
  /** Bytes of committed write data not yet flushed (an upper bound: overwrites count). */
  unflushedBytes = 0;

  constructor(tree: ExtentTree = new ExtentTree()) {
    this.tree = tree;
  }

  /** Applies one committed note. Notes arrive strictly in op order. */
  apply(note: Note): void {
    switch (note.kind) {
      case "write":
        this.tree.insert({
          offset: note.offset,
          length: note.length,
          opNum: note.opNum,
          location: { kind: "journal", segment: note.opNum, position: 0 },
        });
        this.unflushed.set(note.opNum, { offset: note.offset, length: note.length });
        this.unflushedBytes += note.length;
        break;
      case "trim":
      case "zeroes":
        this.tree.insert({
          offset: note.offset,
          length: note.length,
          opNum: note.opNum,
          location: { kind: "zero" },
        });
        break;
      case "flush":
        this.applyFlush(note);
        break;
      default: {
        const unreachable: never = note.kind;
        throw new Error(`unknown note kind ${unreachable}`);
      }
    }
  }

  private applyFlush(note: Note): void {
    if (note.data === undefined) throw new Error(`flush note ${note.opNum} has no record`);
    const record = decodeFlushRecord(note.data);
    if (record.chunk !== null) {
      const { chunkNumber, sledChunkId, copies, bytes, checksum } = record.chunk;
      const known = this.chunks.get(chunkNumber);
      if (known !== undefined && known.sledChunkId !== sledChunkId) {
        throw new Error(`flush record at op ${note.opNum} reuses chunk number ${chunkNumber}`);
      }
      // The same record again (a rebuilt replica re-receives notes its snapshot already
      // reflects): applying it once more changes nothing.
      this.chunks.set(chunkNumber, chunkEntry(sledChunkId, [...copies], bytes, checksum));
      this.nextChunkNumber = Math.max(this.nextChunkNumber, chunkNumber + 1);
      for (const piece of flushPieces(record)) {
        const location: ChunkLocation = {
          kind: "chunk",
          chunkId: chunkNumber,
          offset: piece.chunkOffset,
        };
        this.tree.updateLocation(piece.offset, piece.length, piece.opNum, location);
      }
    }
    for (const [chunkNumber, copies] of record.copies ?? []) {
      const known = this.chunks.get(chunkNumber);
      // A chunk dropped by an earlier record is not brought back by a late copy list.
      if (known !== undefined) known.copies = [...copies];
    }
    for (const chunkNumber of record.drop ?? []) this.chunks.delete(chunkNumber);
    for (const [opNum, range] of this.unflushed) {
      if (opNum > record.throughOpNum) break;
      this.unflushed.delete(opNum);
      this.unflushedBytes -= range.length;
    }
    this.flushedThroughOpNum = Math.max(this.flushedThroughOpNum, record.throughOpNum);
  }

  /**
   * Where each byte of [offset, offset+length) lives, in order. `noteData` returns the
   * data of a journal-resident op; the caller guarantees it holds every unflushed op.
   */
  planRead(
    offset: number,
    length: number,
    noteData: (opNum: number) => Uint8Array | undefined,
  ): ReadPart[] {
    const parts: ReadPart[] = [];
    for (const piece of this.tree.lookup(offset, length)) {
      parts.push(this.part(piece, noteData));
    }
    return parts;
  }

  private part(piece: Piece, noteData: (opNum: number) => Uint8Array | undefined): ReadPart {
    const { offset, length } = piece;
    const location: Location | null | undefined = "location" in piece ? piece.location : undefined;
    if (location === undefined || location === null || location.kind === "zero")
      return { kind: "zero", offset, length };
    if (location.kind === "journal") {
      const data = noteData(location.segment);
      if (data === undefined) {
        throw new Error(`op ${location.segment} is referenced by the tree but not held`);
      }
      return {
        kind: "memory",
        offset,
        length,
        data: data.subarray(location.position, location.position + length),
      };
    }
    const chunk = this.chunks.get(location.chunkId);
    if (chunk === undefined) {
      throw new Error(`chunk ${location.chunkId} is referenced by the tree but not known`);
    }
    return {
      kind: "chunk",
      offset,
      length,
      chunkNumber: location.chunkId,
      chunkOffset: location.offset,
      chunk,
    };
  }

  /** The whole metadata at `opNum`, as bytes. Synchronous, so it is a consistent cut. */
  snapshot(opNum: number, flushedThrough: { epoch: number; session: number }): Uint8Array {
    const header = packr.pack({
      format: snapshotFormat,
      opNum,
      flushedThroughOpNum: this.flushedThroughOpNum,
      flushedThroughEpoch: flushedThrough.epoch,
      flushedThroughSession: flushedThrough.session,
      nextChunkNumber: this.nextChunkNumber,
      chunks: [...this.chunks].map(([number, entry]) =>
        entry.checksum === undefined
          ? [number, entry.sledChunkId, entry.copies, entry.bytes]
          : [number, entry.sledChunkId, entry.copies, entry.bytes, entry.checksum],
      ),
    });
    const parts: Uint8Array[] = [new Uint8Array(4), header];
    new DataView(parts[0]!.buffer).setUint32(0, header.byteLength, true);
    for (const block of serializeCheckpoint(this.tree, { opNum })) parts.push(block.slice());
    return Buffer.concat(parts);
  }

  /** Loads a snapshot; throws (a CheckpointError or a header error) if it is not sound. */
  static async restore(bytes: Uint8Array): Promise<{ metadata: PartitionMetadata; opNum: number }> {
    const { header, headerEnd } = readCheckpointHeader(bytes);
    const loaded = await loadCheckpoint([bytes.subarray(headerEnd)]);
    if (loaded.meta.opNum !== header.opNum) {
      throw new Error(`snapshot header says op ${header.opNum}, tree says ${loaded.meta.opNum}`);
    }
    const metadata = new PartitionMetadata(loaded.tree);
    metadata.flushedThroughOpNum = header.flushedThroughOpNum;
    metadata.flushedThroughEpoch = header.flushedThroughEpoch;
    metadata.flushedThroughSession = header.flushedThroughSession;
    metadata.nextChunkNumber = header.nextChunkNumber;
    for (const [number, sledChunkId, copies, chunkBytes, checksum] of header.chunks) {
      metadata.chunks.set(number, chunkEntry(sledChunkId, copies, chunkBytes, checksum));
    }
    return { metadata, opNum: header.opNum };
  }

  /** A canonical description for comparing replicas in tests. */
  fingerprint(): string {
    return [...this.describe()].join("");
  }

  /** A SHA-256 of the fingerprint, computed piece by piece: no string of the whole tree. */
  digest(): string {
    const hash = createHash("sha256");
    for (const piece of this.describe()) hash.update(piece);
    return hash.digest("hex");
  }

  /** The canonical description, in pieces: extents, chunks, flushed point, next chunk. */
  private *describe(): Generator<string> {
    for (const extent of this.tree.extents()) {
      const location = extent.location;
      const where =
        location.kind === "zero"
          ? "z"
          : location.kind === "journal"
            ? `j${location.segment}+${location.position}`
            : `c${location.chunkId}+${location.offset}`;
      yield `${extent.offset}:${extent.length}@${extent.opNum}=${where},`;
    }
    yield "|";
    for (const [number, entry] of [...this.chunks].sort(([a], [b]) => a - b)) {
      yield `${number}:${entry.sledChunkId}:${entry.bytes}${entry.checksum === undefined ? "" : `:${entry.checksum}`},`;
    }
    yield `|f${this.flushedThroughOpNum}|n${this.nextChunkNumber}`;
  }
}

/** A chunk table entry; the checksum is left out, not undefined, when it is unknown. */
function chunkEntry(
  sledChunkId: string,
  copies: string[],
  bytes: number,
  checksum: number | undefined,
): ChunkEntry {
  return checksum === undefined
    ? { sledChunkId, copies, bytes }
    : { sledChunkId, copies, bytes, checksum };
}
