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
// Snapshots are frozen extent trees (`snapshots`), each a copy of the current tree taken
// when a `control` note (control-record.ts) commits, so every replica has the same ones at
// the same op. Writes, trims and write-zeroes change the current tree only; flush pieces
// and compaction relocations move an op's bytes in every tree (they match on op number),
// so a snapshot's journal-located extents move to chunks with the live ones and the
// journal can still be released, and a chunk lives while any tree refers to it.
//
// Space accounting: for every chunk, how many bytes some extent of some tree (`trees()`:
// the current one and every snapshot) still refers to. Each extent tree keeps live bytes
// per chunk as its extents are inserted, split, trimmed and relocated (the B-tree's own
// invariant check verifies them), so the partition's figure is a sum over its trees,
// with no lookup on the write path; `checkRefs` compares it with a recount by a scan
// (tests, simulators). A chunk no tree refers to is
// dropped from the table by a later flush record (`drop`); a drop of a chunk still
// referenced is refused and counted (`dropsRefused`), never applied: apply never throws
// on it, and a replica that refused one is visibly wrong rather than reading a hole.
//
// Snapshot format (what a checkpoint stores): a 4-byte little-endian length, a msgpack
// header {format, opNum, flushedThrough op/epoch/session, nextChunkNumber, chunks (each
// with its CRC32C when its flush record had one), treeBytes, snapshots ([id, op, bytes])},
// then the current extent tree and each snapshot tree in @ballast/btree's checkpoint
// format, which carries its own checksums (see @ballast/protocol's checkpoint-header.ts;
// format 1, with no snapshots, is still read).

import { createHash } from "node:crypto";
import {
  type ChunkLocation,
  type Extent,
  ExtentTree,
  type Location,
  loadCheckpoint,
  type Piece,
  serializeCheckpoint,
} from "@ballast/btree";
import {
  BallastError,
  checkpointBytesMax,
  checkpointHeaderBytesMax,
  checkpointHeaderFormat,
  checkpointHeaderLengthBytes,
  ErrorCode,
  readCheckpointHeader,
} from "@ballast/protocol";
import { Packr } from "msgpackr";
import { decodeControlRecord } from "./control-record.ts";
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

/** The sizes a checkpoint must keep to be stored and read back (tests set smaller ones). */
export interface CheckpointBounds {
  /** The msgpack header (the chunk table, mostly): what every reader accepts. */
  headerBytesMax: number;
  /** The whole checkpoint: what one sled blob holds. */
  bytesMax: number;
}

export const checkpointBoundsDefault: CheckpointBounds = {
  headerBytesMax: checkpointHeaderBytesMax,
  bytesMax: checkpointBytesMax,
};

/**
 * A checkpoint that could not be stored or read back was refused: nothing was written,
 * so nothing is released. `part` says which bound it passed: the header (too many
 * chunks), the trees alone (too many extents, counted over the current tree and every
 * snapshot's; serialization stopped there), or the whole.
 */
export class CheckpointTooLargeError extends Error {
  override readonly name = "CheckpointTooLargeError";
  constructor(
    readonly part: "header" | "trees" | "checkpoint",
    readonly bytes: number,
    readonly bytesMax: number,
    chunks?: number,
  ) {
    super(
      part === "header"
        ? `a checkpoint header of ${bytes} bytes (${chunks} chunks) is more than the ${bytesMax} a reader accepts`
        : part === "trees"
          ? `a checkpoint's extent trees pass ${bytesMax} bytes, the most one sled blob holds: too many extents over the current tree and the snapshots (drop snapshots to shrink it)`
          : `a checkpoint of ${bytes} bytes is more than the ${bytesMax} one sled blob holds (drop snapshots to shrink it)`,
    );
  }
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export type ReadPart =
  /** Zeros; `unmapped` when no extent covers them at all (never written, trimmed or
   * zeroed: a trim leaves a zero extent), which a clone's reader fills from its parent. */
  | { kind: "zero"; offset: number; length: number; unmapped?: true }
  | { kind: "memory"; offset: number; length: number; data: Uint8Array }
  | {
      kind: "chunk";
      offset: number;
      length: number;
      chunkNumber: number;
      chunkOffset: number;
      chunk: ChunkEntry;
    };

/** A snapshot of the partition: the current tree as it was when op `opNum` applied. */
export interface FrozenTree {
  opNum: number;
  tree: ExtentTree;
}

/** A journal-resident range of one op that some tree still refers to (what a flush packs). */
export interface JournalRange {
  offset: number;
  length: number;
  /** Where `offset` is in the op's data. */
  position: number;
}

export class PartitionMetadata {
  /** The current tree; replaced whole only by a rollback (applyControl). */
  tree: ExtentTree;
  /** Snapshots by id, each frozen when its control note applied. */
  readonly snapshots = new Map<string, FrozenTree>();
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
  /** Drops refused because the chunk was still referenced: a bug if ever above 0. */
  dropsRefused = 0;

  constructor(tree: ExtentTree = new ExtentTree(), snapshots: [string, FrozenTree][] = []) {
    this.tree = tree;
    for (const [id, frozen] of snapshots) this.snapshots.set(id, frozen);
  }

  /** Every extent tree of the partition: references are counted over all of them. */
  trees(): readonly ExtentTree[] {
    if (this.snapshots.size === 0) return [this.tree];
    return [this.tree, ...[...this.snapshots.values()].map((frozen) => frozen.tree)];
  }

  /**
   * Bytes of `chunkNumber` that some extent of some tree refers to, counted once per
   * tree. Each tree keeps its own live bytes per chunk as extents come and go (the
   * B-tree's `check()` verifies them), so this is a sum, not a scan; `checkRefs`
   * compares it with a recount.
   */
  refBytes(chunkNumber: number): number {
    let total = this.tree.liveBytes(chunkNumber);
    for (const frozen of this.snapshots.values()) total += frozen.tree.liveBytes(chunkNumber);
    return total;
  }

  /** Bytes of every chunk in the table (what the partition holds on sleds, per copy). */
  get chunkBytes(): number {
    let total = 0;
    for (const entry of this.chunks.values()) total += entry.bytes;
    return total;
  }

  /** Bytes of chunks in the table that some tree still refers to (each byte once). */
  get liveBytes(): number {
    const distinct = this.snapshots.size === 0 ? undefined : this.distinctLiveBytes();
    let total = 0;
    for (const chunkNumber of this.chunks.keys()) {
      total +=
        distinct === undefined ? this.refBytes(chunkNumber) : (distinct.get(chunkNumber) ?? 0);
    }
    return total;
  }

  /**
   * Bytes of each chunk some tree refers to, each byte once however many trees share it
   * (`refBytes` counts a byte once per tree: with snapshots it may exceed the chunk's
   * size). A scan of every tree: for compaction's choice and for status, not per write.
   */
  distinctLiveBytes(): Map<number, number> {
    if (this.snapshots.size === 0) return this.tree.liveBytesByChunk();
    const ranges = new Map<number, [number, number][]>();
    for (const tree of this.trees()) {
      for (const extent of tree.extents()) {
        if (extent.location.kind !== "chunk") continue;
        const start = extent.location.offset;
        const list = ranges.get(extent.location.chunkId) ?? [];
        if (list.length === 0) ranges.set(extent.location.chunkId, list);
        list.push([start, start + extent.length]);
      }
    }
    const live = new Map<number, number>();
    for (const [chunkNumber, list] of ranges) {
      list.sort((a, b) => a[0] - b[0]);
      let total = 0;
      let end = -1;
      for (const [start, stop] of list) {
        if (stop <= end) continue;
        total += stop - Math.max(start, end);
        end = stop;
      }
      live.set(chunkNumber, total);
    }
    return live;
  }

  /**
   * For each snapshot, the chunk bytes that its tree refers to and no other tree does
   * (the current one or another snapshot): what deleting it would let reclamation free.
   * A scan of every tree, like `distinctLiveBytes`: for status, not per write.
   */
  snapshotUniqueBytes(): Map<string, number> {
    const unique = new Map<string, number>();
    if (this.snapshots.size === 0) return unique;
    const ids = [...this.snapshots.keys()];
    const trees = [this.tree, ...ids.map((id) => this.snapshots.get(id)!.tree)];
    // chunk → per tree, its [start, end) ranges in the chunk.
    const ranges = new Map<number, [number, number][][]>();
    trees.forEach((tree, index) => {
      for (const extent of tree.extents()) {
        if (extent.location.kind !== "chunk") continue;
        let perTree = ranges.get(extent.location.chunkId);
        if (perTree === undefined) {
          perTree = trees.map(() => []);
          ranges.set(extent.location.chunkId, perTree);
        }
        const start = extent.location.offset;
        perTree[index]!.push([start, start + extent.length]);
      }
    });
    for (const id of ids) unique.set(id, 0);
    for (const perTree of ranges.values()) {
      ids.forEach((id, at) => {
        const own = perTree[at + 1]!;
        if (own.length === 0) return;
        const others = mergeRanges(perTree.filter((_, index) => index !== at + 1).flat());
        unique.set(id, unique.get(id)! + uncoveredBytes(mergeRanges(own), others));
      });
    }
    return unique;
  }

  /** Chunks in the table no tree refers to, in number order: what a record may drop. */
  unreferencedChunks(): number[] {
    const numbers: number[] = [];
    for (const chunkNumber of this.chunks.keys()) {
      if (this.refBytes(chunkNumber) === 0) numbers.push(chunkNumber);
    }
    return numbers.sort((a, b) => a - b);
  }

  /** Referenced bytes per chunk, recomputed by a scan of every tree. */
  recountRefs(): Map<number, number> {
    const refs = new Map<number, number>();
    for (const tree of this.trees()) {
      for (const extent of tree.extents()) {
        if (extent.location.kind !== "chunk") continue;
        const chunkNumber = extent.location.chunkId;
        refs.set(chunkNumber, (refs.get(chunkNumber) ?? 0) + extent.length);
      }
    }
    return refs;
  }

  /**
   * What is wrong with the accounting, if anything: incremental counts that differ from
   * a recount, and chunks an extent refers to that the table does not have.
   */
  checkRefs(): string[] {
    const problems: string[] = [];
    const recounted = this.recountRefs();
    const kept = new Set<number>(this.chunks.keys());
    for (const tree of this.trees())
      for (const chunkNumber of tree.liveBytesByChunk().keys()) kept.add(chunkNumber);
    for (const chunkNumber of new Set([...recounted.keys(), ...kept])) {
      const kept = this.refBytes(chunkNumber);
      const counted = recounted.get(chunkNumber) ?? 0;
      if (kept !== counted) {
        problems.push(`chunk ${chunkNumber}: ${kept} referenced bytes kept, ${counted} counted`);
      }
      if (counted > 0 && !this.chunks.has(chunkNumber)) {
        problems.push(`chunk ${chunkNumber} is referenced (${counted} bytes) but not in the table`);
      }
    }
    return problems;
  }

  /**
   * Every extent of every tree located in one of `chunkNumbers` (what compaction
   * relocates), each once: the same op's bytes in two trees are one piece.
   */
  extentsIn(chunkNumbers: ReadonlySet<number>): Extent[] {
    const found: Extent[] = [];
    const seen = new Set<string>();
    for (const tree of this.trees()) {
      for (const extent of tree.extents()) {
        if (extent.location.kind !== "chunk" || !chunkNumbers.has(extent.location.chunkId))
          continue;
        const key = `${extent.offset}:${extent.length}:${extent.opNum}`;
        if (seen.has(key)) continue;
        seen.add(key);
        found.push(extent);
      }
    }
    return found;
  }

  /** Inserts into the current tree (snapshots are frozen); the tree counts its bytes. */
  private insert(extent: Extent): void {
    this.tree.insert(extent);
  }

  /**
   * The ranges of op `opNum` (a write of `range`) still in the journal in some tree,
   * merged where trees overlap, in offset order: what a flush must pack so that no tree
   * is left referring to a note the journal may release.
   */
  journalRangesOf(opNum: number, range: { offset: number; length: number }): JournalRange[] {
    // A flush asks this of every op it packs. With no snapshot there is one tree, whose
    // pieces come in offset order without overlaps: they merge as they come, with no
    // list to gather and sort (the same ranges; a property test holds the two ways to it).
    if (this.snapshots.size === 0) {
      const merged: JournalRange[] = [];
      for (const piece of this.tree.lookup(range.offset, range.length)) {
        const location = piece.location;
        if (location?.kind !== "journal" || location.segment !== opNum) continue;
        mergeJournalRange(merged, piece.offset, piece.offset + piece.length, range.offset);
      }
      return merged;
    }
    const found: { start: number; end: number }[] = [];
    for (const tree of this.trees()) {
      for (const piece of tree.lookup(range.offset, range.length)) {
        if (piece.location?.kind === "journal" && piece.location.segment === opNum) {
          found.push({ start: piece.offset, end: piece.offset + piece.length });
        }
      }
    }
    found.sort((a, b) => a.start - b.start);
    const merged: JournalRange[] = [];
    for (const { start, end } of found) mergeJournalRange(merged, start, end, range.offset);
    return merged;
  }

  /**
   * Applies one committed note. Notes arrive strictly in op order. Returns false only
   * for a rollback to a snapshot this partition does not have (dropped by an earlier
   * note, or never taken): it changes nothing, the same on every replica, and its
   * requester must not be told it rolled back.
   */
  apply(note: Note): boolean {
    switch (note.kind) {
      case "write":
        this.insert({
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
        this.insert({
          offset: note.offset,
          length: note.length,
          opNum: note.opNum,
          location: { kind: "zero" },
        });
        break;
      case "flush":
        this.applyFlush(note);
        break;
      case "control":
        return this.applyControl(note);
      default: {
        const unreachable: never = note.kind;
        throw new Error(`unknown note kind ${unreachable}`);
      }
    }
    return true;
  }

  /**
   * Takes, drops or rolls back to a snapshot; idempotent (see control-record.ts). False
   * for a rollback that found no such snapshot.
   */
  private applyControl(note: Note): boolean {
    if (note.data === undefined) throw new Error(`control note ${note.opNum} has no record`);
    const record = decodeControlRecord(note.data);
    switch (record.kind) {
      case "snapshot.take": {
        if (this.snapshots.has(record.id)) return true;
        this.snapshots.set(record.id, { opNum: note.opNum, tree: copyTree(this.tree) });
        return true;
      }
      case "snapshot.drop": {
        const frozen = this.snapshots.get(record.id);
        if (frozen === undefined) return true;
        this.snapshots.delete(record.id);
        return true;
      }
      case "snapshot.rollback": {
        const frozen = this.snapshots.get(record.id);
        if (frozen === undefined) return false;
        // The replaced tree's references go with it: chunks only overwritten data
        // referred to are then unreferenced and dropped by the next flush record.
        this.tree = copyTree(frozen.tree);
        return true;
      }
      default: {
        const unreachable: never = record;
        throw new Error(`unknown control record ${JSON.stringify(unreachable)}`);
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
        this.relocate(piece.offset, piece.length, piece.opNum, location);
      }
    }
    for (const [chunkNumber, copies] of record.copies ?? []) {
      const known = this.chunks.get(chunkNumber);
      // A chunk dropped by an earlier record is not brought back by a late copy list.
      if (known !== undefined) known.copies = [...copies];
    }
    for (const chunkNumber of record.drop ?? []) {
      // The primary lists only unreferenced chunks, and nothing adds a reference to an
      // existing chunk before the record applies; one still referenced is kept, counted.
      if (this.refBytes(chunkNumber) > 0) this.dropsRefused += 1;
      else this.chunks.delete(chunkNumber);
    }
    for (const [opNum, range] of this.unflushed) {
      if (opNum > record.throughOpNum) break;
      this.unflushed.delete(opNum);
      this.unflushedBytes -= range.length;
    }
    this.flushedThroughOpNum = Math.max(this.flushedThroughOpNum, record.throughOpNum);
  }

  /** Moves op `opNum`'s bytes in the range to `location` in every tree (each recounts). */
  private relocate(offset: number, length: number, opNum: number, location: ChunkLocation): void {
    for (const tree of this.trees()) tree.updateLocation(offset, length, opNum, location);
  }

  /**
   * Where each byte of [offset, offset+length) lives, in order. `noteData` returns the
   * data of a journal-resident op; the caller guarantees it holds every unflushed op.
   */
  planRead(
    offset: number,
    length: number,
    noteData: (opNum: number) => Uint8Array | undefined,
    snapshotId?: string,
  ): ReadPart[] {
    const tree = snapshotId === undefined ? this.tree : this.snapshotTree(snapshotId);
    const parts: ReadPart[] = [];
    for (const piece of tree.lookup(offset, length)) {
      parts.push(this.part(piece, noteData));
    }
    return parts;
  }

  /** The frozen tree of snapshot `id`; NotFound if this partition has none of that id. */
  snapshotTree(id: string): ExtentTree {
    const frozen = this.snapshots.get(id);
    if (frozen === undefined) {
      throw new BallastError(ErrorCode.NotFound, `this partition has no snapshot ${id}`, {
        details: { snapshot: id },
      });
    }
    return frozen.tree;
  }

  private part(piece: Piece, noteData: (opNum: number) => Uint8Array | undefined): ReadPart {
    const { offset, length } = piece;
    const location: Location | null | undefined = "location" in piece ? piece.location : undefined;
    if (location === undefined || location === null) {
      return { kind: "zero", offset, length, unmapped: true };
    }
    if (location.kind === "zero") return { kind: "zero", offset, length };
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

  /**
   * The whole metadata at `opNum`, as bytes. Synchronous, so it is a consistent cut.
   *
   * Throws a CheckpointTooLargeError, before anything is assembled, when the result
   * would be one no reader takes back (a header over `bounds.headerBytesMax`) or that
   * no sled stores (over `bounds.bytesMax`): a checkpoint written anyway would be
   * recorded and release the journal it covers, and the partition would then be lost
   * at the restart of its last replica. The trees are serialized only until they pass
   * the bound, so an oversized one costs no more memory than the bound.
   */
  snapshot(
    opNum: number,
    flushedThrough: { epoch: number; session: number },
    bounds: CheckpointBounds = checkpointBoundsDefault,
  ): Uint8Array {
    let treesBytes = 0;
    const serialize = (tree: ExtentTree): { blocks: Uint8Array[]; bytes: number } => {
      const blocks: Uint8Array[] = [];
      let bytes = 0;
      for (const block of serializeCheckpoint(tree, { opNum })) {
        bytes += block.byteLength;
        treesBytes += block.byteLength;
        if (checkpointHeaderLengthBytes + treesBytes > bounds.bytesMax) {
          throw new CheckpointTooLargeError(
            "trees",
            checkpointHeaderLengthBytes + treesBytes,
            bounds.bytesMax,
          );
        }
        blocks.push(block.slice());
      }
      return { blocks, bytes };
    };
    const current = serialize(this.tree);
    const frozen = [...this.snapshots].map(([id, { opNum: takenAt, tree }]) => ({
      id,
      takenAt,
      ...serialize(tree),
    }));
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
      treeBytes: current.bytes,
      snapshots: frozen.map(({ id, takenAt, bytes }) => [id, takenAt, bytes]),
    });
    if (header.byteLength > bounds.headerBytesMax) {
      throw new CheckpointTooLargeError(
        "header",
        header.byteLength,
        bounds.headerBytesMax,
        this.chunks.size,
      );
    }
    const total = checkpointHeaderLengthBytes + header.byteLength + treesBytes;
    if (total > bounds.bytesMax) {
      throw new CheckpointTooLargeError("checkpoint", total, bounds.bytesMax);
    }
    const parts: Uint8Array[] = [
      new Uint8Array(checkpointHeaderLengthBytes),
      header,
      ...current.blocks,
    ];
    new DataView(parts[0]!.buffer).setUint32(0, header.byteLength, true);
    for (const { blocks } of frozen) parts.push(...blocks);
    return Buffer.concat(parts, total);
  }

  /** Loads a snapshot; throws (a CheckpointError or a header error) if it is not sound. */
  static async restore(bytes: Uint8Array): Promise<{ metadata: PartitionMetadata; opNum: number }> {
    const { header, headerEnd } = readCheckpointHeader(bytes);
    // Format 1 has the current tree alone, to the end; format 2 says where each ends.
    let at = headerEnd;
    const load = async (length: number) => {
      if (at + length > bytes.byteLength) {
        throw new Error(
          `snapshot is truncated: a tree needs ${at + length} bytes, it has ${bytes.byteLength}`,
        );
      }
      const loaded = await loadCheckpoint([bytes.subarray(at, at + length)]);
      at += length;
      if (loaded.meta.opNum !== header.opNum) {
        throw new Error(`snapshot header says op ${header.opNum}, tree says ${loaded.meta.opNum}`);
      }
      return loaded.tree;
    };
    const tree = await load(header.treeBytes ?? bytes.byteLength - headerEnd);
    const snapshots: [string, FrozenTree][] = [];
    for (const [id, takenAt, treeBytes] of header.snapshots ?? []) {
      snapshots.push([id, { opNum: takenAt, tree: await load(treeBytes) }]);
    }
    const metadata = new PartitionMetadata(tree, snapshots);
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

  /**
   * The canonical description, in pieces: extents, snapshots (by id, each with its op and
   * extents), chunks, flushed point, next chunk.
   */
  private *describe(): Generator<string> {
    yield* describeTree(this.tree);
    for (const id of [...this.snapshots.keys()].sort()) {
      const frozen = this.snapshots.get(id)!;
      yield `|s${id}@${frozen.opNum}:`;
      yield* describeTree(frozen.tree);
    }
    yield "|";
    for (const [number, entry] of [...this.chunks].sort(([a], [b]) => a - b)) {
      yield `${number}:${entry.sledChunkId}:${entry.bytes}${entry.checksum === undefined ? "" : `:${entry.checksum}`},`;
    }
    yield `|f${this.flushedThroughOpNum}|n${this.nextChunkNumber}`;
  }
}

function* describeTree(tree: ExtentTree): Generator<string> {
  for (const extent of tree.extents()) {
    const location = extent.location;
    const where =
      location.kind === "zero"
        ? "z"
        : location.kind === "journal"
          ? `j${location.segment}+${location.position}`
          : `c${location.chunkId}+${location.offset}`;
    yield `${extent.offset}:${extent.length}@${extent.opNum}=${where},`;
  }
}

/**
 * A copy of `tree` that shares nothing with it: extents are inserted in offset order,
 * so it is metadata only (O(extents)), no data is copied.
 */
function copyTree(tree: ExtentTree): ExtentTree {
  const copy = new ExtentTree({ fanout: tree.fanout });
  for (const extent of tree.extents()) copy.insert(extent);
  return copy;
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

/** Sorted, disjoint ranges covering exactly the union of `ranges`. */
function mergeRanges(ranges: [number, number][]): [number, number][] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [start, end] of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged;
}

/** Bytes of the disjoint sorted `ranges` that the disjoint sorted `cover` leaves out. */
function uncoveredBytes(ranges: [number, number][], cover: [number, number][]): number {
  let total = 0;
  let at = 0;
  for (const [start, end] of ranges) {
    let position = start;
    while (at < cover.length && cover[at]![1] <= position) at++;
    for (let next = at; next < cover.length && cover[next]![0] < end; next++) {
      const [coverStart, coverEnd] = cover[next]!;
      if (coverStart > position) total += coverStart - position;
      position = Math.max(position, coverEnd);
      if (position >= end) break;
    }
    if (position < end) total += end - position;
  }
  return total;
}

/**
 * Adds [start, end) of a write at `writeOffset` to `merged` (ranges in offset order):
 * into the last range where it overlaps or touches it, else as a new range.
 */
function mergeJournalRange(
  merged: JournalRange[],
  start: number,
  end: number,
  writeOffset: number,
): void {
  const last = merged[merged.length - 1];
  if (last !== undefined && start <= last.offset + last.length) {
    last.length = Math.max(last.length, end - last.offset);
  } else {
    // A write's extents are at position 0 of its data at its offset.
    merged.push({ offset: start, length: end - start, position: start - writeOffset });
  }
}
