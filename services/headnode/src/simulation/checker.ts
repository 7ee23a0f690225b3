// The simulation's checkers. The committed history (op → note) is learned from every
// replica's commits and must agree across replicas; the model of the partition's bytes is
// that history replayed in op order, and every read must equal the model at the op the
// read says it reflects. One Checker watches one incarnation of one partition, across
// every epoch; checkers of a run may share one list of violations.
//
// Space reclamation (`space`): on every replica, every chunk an extent of any tree refers
// to is in its chunk table, the incrementally kept referenced bytes equal a recount, and
// no drop of a referenced chunk was ever refused (a refused drop means a primary listed a
// chunk still in use: on a replica that applied it, reads would find no chunk).
//
// Chunk copies (`copies`, in runs that re-replicate): the first time any replica's table
// lists a sled for a chunk, that sled must have held the chunk's bytes at some point (a
// write or a copy reached it; it may have lost its store since, after the list was
// recorded or while a lagging replica caught up): a list naming a sled the bytes never
// reached is a `copy-list` violation, whatever else holds them. And the table of the
// record's primary, its inherited tail committed, must never list a chunk that no listed
// sled holds any more (`chunk-lost`): its data is gone. (A deposed primary's table may
// still list chunks dropped since, whose copies went with a lost sled.) Liveness (every chunk back at chunkCopies live copies once settled) is the
// simulation's (failover.ts, `re-replication`).
//
// AcknowledgedModel is the client's own model, independent of what replicas report: per
// sector, the value of the acknowledged mutation with the highest op, plus the values of
// every attempt whose outcome the client never learned (it may or may not have
// committed). Once settled, a full read must show, in every sector, one of those.

import { limits } from "@ballast/protocol";
import { decodeFlushRecord } from "../replica/flush-record.ts";
import type { PartitionMetadata } from "../replica/metadata.ts";
import type { Note } from "../replica/note.ts";
import { noteChecksum, sameNote } from "../replica/note.ts";
import type { ClientRequest } from "../replica/replica.ts";

/** Which sleds hold which chunks (testing/fakes.ts FakeSleds), for `copies`. */
export interface CopyStore {
  everHeldBy(sled: string, sledChunkId: string): boolean;
  holdersOf(sledChunkId: string): ReadonlySet<string>;
}

export interface Violation {
  check: string;
  message: string;
}

const violationsMax = 20;

export class Checker {
  readonly violations: Violation[];
  /** Prefixes every message (which partition incarnation this checker watches). */
  private readonly label: string;
  /** The committed history: the note each op committed as. */
  private readonly history = new Map<number, Note>();
  /** What clients were told each op is: at most one content per op, across epochs. */
  private readonly acknowledgedOps = new Map<number, Note>();
  /** The model at `modelOpNum`: per sector, the byte value pattern's op and data. */
  private model = new Map<number, Uint8Array>();
  private modelOpNum = 0;

  constructor(violations: Violation[] = [], label = "") {
    this.violations = violations;
    this.label = label;
  }

  fail(check: string, message: string): void {
    if (this.violations.length < violationsMax)
      this.violations.push({ check, message: this.label ? `${this.label}: ${message}` : message });
  }

  /** The highest op acknowledged to any client so far. */
  highestAcknowledgedOpNum = 0;
  /** Chunks dropped by committed flush records (each record counted once). */
  chunksDropped = 0;
  /** Copy lists replaced by committed flush records (re-replication). */
  copiesRecorded = 0;
  /** Copy lists already checked (a table's entry gets a new array when its list changes). */
  private readonly listsSeen = new WeakSet<readonly string[]>();
  /** `sled/chunk id` pairs some table has listed, and chunks found lost. */
  private readonly copiesSeen = new Set<string>();
  private readonly chunksLost = new Set<string>();

  committed(nodeId: string, note: Note): void {
    if (noteChecksum(note.data) !== note.checksum) {
      // Damage a replica took for sound (a note's data or its checksum changed in flight).
      this.fail(
        "damage",
        `${nodeId} committed op ${note.opNum}, a ${note.kind} note whose data fails its checksum`,
      );
      return;
    }
    const known = this.history.get(note.opNum);
    if (known === undefined) {
      this.history.set(note.opNum, { ...note });
      if (note.kind === "flush" && note.data !== undefined) {
        const record = decodeFlushRecord(note.data);
        this.chunksDropped += record.drop?.length ?? 0;
        this.copiesRecorded += record.copies?.length ?? 0;
      }
      return;
    }
    if (!sameNote(known, note)) {
      this.fail(
        "agreement",
        `${nodeId} committed op ${note.opNum} as a different note than another replica`,
      );
    }
  }

  /** The copy lists of one replica's chunk table (see the module header). */
  copies(nodeId: string, metadata: PartitionMetadata, store: CopyStore, primary: boolean): void {
    for (const [chunkNumber, entry] of metadata.chunks) {
      const id = entry.sledChunkId;
      if (!this.listsSeen.has(entry.copies)) {
        this.listsSeen.add(entry.copies);
        for (const sled of entry.copies) {
          const key = `${sled}/${id}`;
          if (this.copiesSeen.has(key)) continue;
          this.copiesSeen.add(key);
          if (store.everHeldBy(sled, id)) continue;
          this.fail(
            "copy-list",
            `${nodeId}'s table lists chunk ${chunkNumber} (${id}) on [${entry.copies.join(", ")}], but ${sled} never held it (held by [${[...store.holdersOf(id)].join(", ")}])`,
          );
        }
      }
      if (!primary || this.chunksLost.has(id)) continue;
      const holders = store.holdersOf(id);
      if (entry.copies.some((sled) => holders.has(sled))) continue;
      this.chunksLost.add(id);
      this.fail(
        "chunk-lost",
        `${nodeId}, primary, lists chunk ${chunkNumber} (${id}) on [${entry.copies.join(", ")}], none of which holds it now (held by [${[...holders].join(", ")}])`,
      );
    }
  }

  /** The space accounting of one replica's metadata (see the module header). */
  space(nodeId: string, metadata: PartitionMetadata): void {
    for (const problem of metadata.checkRefs()) this.fail("space", `${nodeId}: ${problem}`);
    if (metadata.dropsRefused > 0) {
      this.fail("space", `${nodeId} refused ${metadata.dropsRefused} drops of referenced chunks`);
    }
  }

  /** A client was told ops [first, last] committed for this request. */
  acknowledged(
    request: Exclude<ClientRequest, { kind: "flush" }>,
    opNumFirst: number,
    opNumLast: number,
  ): void {
    const expected: Note[] =
      request.kind === "write"
        ? request.writes.map((write, index) => ({
            opNum: opNumFirst + index,
            epoch: 0,
            session: 0,
            kind: "write" as const,
            offset: write.offset,
            length: write.data.byteLength,
            checksum: noteChecksum(write.data),
          }))
        : request.ranges.map((range, index) => ({
            opNum: opNumFirst + index,
            epoch: 0,
            session: 0,
            kind: request.kind,
            offset: range.offset,
            length: range.length,
            checksum: 0,
          }));
    if (opNumLast - opNumFirst + 1 !== expected.length) {
      this.fail(
        "acknowledged",
        `request acknowledged ops ${opNumFirst}-${opNumLast} for ${expected.length} entries`,
      );
    }
    for (const note of expected) {
      const earlier = this.acknowledgedOps.get(note.opNum);
      if (earlier !== undefined && !sameContent(earlier, note)) {
        this.fail(
          "acknowledged-twice",
          `two different notes were acknowledged at op ${note.opNum} (a ${earlier.kind} and a ${note.kind})`,
        );
      }
      this.acknowledgedOps.set(note.opNum, note);
      this.highestAcknowledgedOpNum = Math.max(this.highestAcknowledgedOpNum, note.opNum);
      const committed = this.history.get(note.opNum);
      if (committed === undefined) {
        this.fail(
          "acknowledged",
          `op ${note.opNum} was acknowledged before any replica committed it`,
        );
      } else if (!sameContent(committed, note)) {
        this.fail(
          "acknowledged",
          `op ${note.opNum} was acknowledged but committed with other content`,
        );
      }
    }
  }

  allAcknowledgedCommitted(commitOpNum: number): void {
    for (const opNum of this.acknowledgedOps.keys()) {
      if (opNum > commitOpNum) {
        this.fail(
          "durability",
          `acknowledged op ${opNum} is past the settled commit point ${commitOpNum}`,
        );
      }
    }
  }

  /** A read of [offset, offset + bytes.length) returned `bytes` as of op `asOfOpNum`. */
  read(offset: number, bytes: Uint8Array, asOfOpNum: number, acknowledgedBefore: number): void {
    if (asOfOpNum < acknowledgedBefore) {
      this.fail(
        "read",
        `read reflects op ${asOfOpNum}, older than op ${acknowledgedBefore} acknowledged before it`,
      );
    }
    const model = this.modelAt(asOfOpNum);
    if (model === undefined) return;
    for (let at = 0; at < bytes.length; at += limits.sectorBytes) {
      const sector = (offset + at) / limits.sectorBytes;
      const expected = model.get(sector);
      const actual = bytes.subarray(at, at + limits.sectorBytes);
      const matches =
        expected === undefined
          ? actual.every((byte) => byte === 0)
          : Buffer.compare(expected, actual) === 0;
      if (!matches) {
        this.fail("read", `sector ${sector} read as of op ${asOfOpNum} differs from the model`);
        return;
      }
    }
  }

  /** The model replayed to `opNum`, or undefined if the history has a gap before it. */
  private modelAt(opNum: number): Map<number, Uint8Array> | undefined {
    if (opNum < this.modelOpNum) {
      this.model = new Map();
      this.modelOpNum = 0;
    }
    while (this.modelOpNum < opNum) {
      const note = this.history.get(this.modelOpNum + 1);
      if (note === undefined) {
        this.fail(
          "history",
          `op ${this.modelOpNum + 1} is below a read's commit point but no replica reported committing it`,
        );
        return undefined;
      }
      this.modelOpNum++;
      const first = note.offset / limits.sectorBytes;
      const count = note.length / limits.sectorBytes;
      for (let index = 0; index < count; index++) {
        if (note.kind === "write") {
          const start = index * limits.sectorBytes;
          this.model.set(first + index, note.data!.slice(start, start + limits.sectorBytes));
        } else if (note.kind === "trim" || note.kind === "zeroes") {
          this.model.delete(first + index);
        }
      }
    }
    return this.model;
  }
}

function sameContent(committed: Note, expected: Note): boolean {
  return (
    committed.kind === expected.kind &&
    committed.offset === expected.offset &&
    committed.length === expected.length &&
    committed.checksum === expected.checksum
  );
}

/** The value every byte of a sector holds: writes fill each sector with one byte value. */
export type SectorValue = number;

/** One mutation attempt as the client sent it: per entry, its first sector and values. */
export interface Attempt {
  entries: { firstSector: number; values: SectorValue[] }[];
}

export class AcknowledgedModel {
  /** Per sector: the acknowledged mutation with the highest op. */
  private readonly acknowledged = new Map<number, { opNum: number; value: SectorValue }>();
  /** Attempts whose outcome is unknown (no acknowledgement yet, perhaps never). */
  private readonly unknown = new Map<number, Attempt>();

  issued(attemptId: number, attempt: Attempt): void {
    this.unknown.set(attemptId, attempt);
  }

  /** The attempt committed as ops opNumFirst, opNumFirst + 1, … one per entry. */
  acknowledgedAt(attemptId: number, opNumFirst: number): void {
    const attempt = this.unknown.get(attemptId);
    if (attempt === undefined) return;
    this.unknown.delete(attemptId);
    attempt.entries.forEach((entry, index) => {
      const opNum = opNumFirst + index;
      entry.values.forEach((value, at) => {
        const sector = entry.firstSector + at;
        const known = this.acknowledged.get(sector);
        if (known === undefined || known.opNum < opNum)
          this.acknowledged.set(sector, { opNum, value });
      });
    });
  }

  /**
   * Checks a settled full read starting at sector `firstSector`: every sector holds the
   * value of its newest acknowledged mutation or of an attempt with an unknown outcome.
   */
  checkSettled(checker: Checker, firstSector: number, bytes: Uint8Array): void {
    const possible = new Map<number, Set<SectorValue>>();
    for (const attempt of this.unknown.values()) {
      for (const entry of attempt.entries) {
        entry.values.forEach((value, at) => {
          const sector = entry.firstSector + at;
          let values = possible.get(sector);
          if (values === undefined) {
            values = new Set();
            possible.set(sector, values);
          }
          values.add(value);
        });
      }
    }
    for (let at = 0; at < bytes.length; at += limits.sectorBytes) {
      const sector = firstSector + at / limits.sectorBytes;
      const first = bytes[at]!;
      const uniform = bytes.subarray(at, at + limits.sectorBytes).every((byte) => byte === first);
      const expected = this.acknowledged.get(sector);
      const allowed = expected === undefined ? first === 0 : expected.value === first;
      if (uniform && (allowed || possible.get(sector)?.has(first) === true)) continue;
      checker.fail(
        "acknowledged-lost",
        `sector ${sector} settled as ${uniform ? first : "mixed bytes"}, but its newest acknowledged mutation ${
          expected === undefined
            ? "is none (zeroes)"
            : `is op ${expected.opNum} (${expected.value})`
        } and no unfinished attempt wrote that`,
      );
      return;
    }
  }
}
