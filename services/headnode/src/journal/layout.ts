// The journal's segment layout: which segment files exist, which ops each holds and
// where each record starts. The pure core of the journal: it validates every call,
// applies it at once, and returns the file effects (writes, deletions, a cut) that make
// the files match. It never awaits, so the journal's op numbers, segment count and size
// answer for every call made so far, and two calls can never plan against the same state.
//
// The last segment may have a runway: zero bytes past its last record, written ahead so
// that appends overwrite allocated, synced blocks instead of extending the file
// (journal.ts says why). The layout tracks the runway's length and plans its extensions
// (planRunway), and cuts it off a segment before the next one is created, so that only
// the last segment ever has bytes past its last record. An extension the file system
// refused for want of space is withdrawn (withdrawRunway) once the journal has cut the
// file back, and extensions pause for a while (runwayRetryAfterBytes).
//
// Each segment the layout creates gets a nonce, drawn by the caller's nonce source (the
// journal passes a random one; the layout itself draws nothing), written in its header
// and seeding every record's checksum in it (format.ts). Segments recovery found of an
// older format version are kept and read, and never appended to: the first append after
// one starts a new segment, so every record this build writes is of its own version.
//
// Invariants (asserted in full when a layout is built and after a release, and at the
// tail after an append or truncation, where those can break them):
// - every segment holds at least one record; records are contiguous within a segment and
//   across segments (segment n+1 starts at the op after segment n's last);
// - a new segment starts only when the last one would grow past segmentBytesMax or is of
//   an older format version, so a segment is larger than that only when its single
//   record alone is;
// - versions never go down: no segment of an older version follows one of this version;
// - the released op, when known, lies between firstOpNum - 1 and lastOpNum;
// - only the last segment has a runway.

import {
  appendPayloadBytesMax,
  appendRecordsMax,
  formatVersion,
  formatVersionWithoutNonce,
  payloadBytesMax,
  recordHeaderBytes,
  runwayLowWaterDivisor,
  runwayRetryAfterBytes,
  runwayStepFirstBytes,
  runwayStepMaxBytes,
  segmentHeaderBytes,
  segmentHeaderBytesWithoutNonce,
} from "./constants.ts";
import { assert, JournalUsageError } from "./errors.ts";
import {
  bytesOf,
  encodeRecord,
  encodeSegmentHeader,
  frameRecord,
  recordBytes,
  recordSeedOf,
} from "./format.ts";

export interface JournalRecord {
  opNum: number;
  payload: Uint8Array;
  /**
   * The same payload with `recordHeaderBytes` of room in front of it, in one buffer:
   * `payload` must be `framed.subarray(recordHeaderBytes)`. When given, the journal
   * writes the record header into that room and writes the buffer as it is, instead of
   * copying the payload into a record of its own: the caller encodes once, into the
   * record. The caller gives the buffer up: it must not change it until the append
   * settles. Recovery returns records without it.
   */
  framed?: Uint8Array;
  /**
   * More of the payload, by reference (only with `framed`): the record's payload is
   * `payload` followed by each of these, in order. The journal checksums them with the
   * rest and writes them as they are, right after `framed` in the same writev, so a
   * note's data (512 bytes or more: adapters.ts, `encodeNoteRecord`) reaches the disk
   * without a copy. The caller must leave them unchanged until the append settles.
   * Recovery returns the whole payload in one piece.
   */
  tail?: readonly Uint8Array[];
  /**
   * The CRC32C of each part of `tail` the caller knows already (undefined for one it
   * does not), so that the journal combines it into the record's checksum instead of
   * reading those bytes again (a note's data, whose checksum the note carries). A wrong
   * value makes a record that recovery refuses, never one that reads back wrong.
   */
  tailChecksums?: readonly (number | undefined)[];
}

/** The bytes of a record's payload: `payload` and its `tail`. */
export function payloadBytesOf(record: JournalRecord): number {
  return record.payload.length + (record.tail === undefined ? 0 : bytesOf(record.tail));
}

export interface LayoutSegment {
  firstOpNum: number;
  /** The segment's format version: this build's, or an older one recovery read. */
  formatVersion: number;
  /** The seed of its records' checksums (format.ts): its nonce's CRC32C, or 0 in version 2. */
  recordSeed: number;
  /**
   * Where each record's header starts: op firstOpNum + i at recordOffsets[i]. Kept so a
   * truncation knows where to cut without reading the file; 8 bytes per record, small
   * beside the payloads a replica holds in memory anyway.
   */
  recordOffsets: number[];
  /**
   * The end of the segment's last record once every planned write is done: the file's
   * length, except for the last segment's runway of zeros past it.
   */
  bytes: number;
}

/**
 * Bytes to write at `position` of a segment file, creating the file first when `create`
 * (then the bytes are the new segment's header alone).
 */
export interface SegmentWrite {
  firstOpNum: number;
  create: boolean;
  position: number;
  buffers: Uint8Array[];
  /**
   * With `create`: the segment before it has a runway, to be cut off (the file cut to
   * `bytes`, durably) before this segment is created, as no segment but the last may
   * have bytes past its last record.
   */
  cutRunway?: { firstOpNum: number; bytes: number };
}

/** Zeros to write at `position` of the last segment, extending its runway by `bytes`. */
export interface RunwayExtension {
  firstOpNum: number;
  position: number;
  bytes: number;
  /**
   * The runway this extends: a roll or a truncation that drops the runway starts a new
   * one, and an extension withdrawn after that has nothing left to take back.
   */
  runwayGeneration: number;
}

export interface TruncatePlan {
  /** Segments to delete, newest first, so that a crash part way leaves a prefix of ops. */
  deletions: number[];
  /** The segment that keeps the new last op, and the length to cut it to. */
  cut: { firstOpNum: number; bytes: number } | undefined;
}

export interface ReleasePlan {
  /** Segments to delete, oldest first, so that a crash part way leaves a suffix of ops. */
  deletions: number[];
}

/** Draws the nonce of a new segment: `segmentNonceBytes` random bytes (format.ts). */
export type NonceSource = () => Uint8Array;

export class SegmentLayout {
  readonly #segmentBytesMax: number;
  readonly #segments: LayoutSegment[];
  readonly #nonceSource: NonceSource;
  /** Bytes of the segments up to their last records (every runway excluded). */
  #bytes: number;
  /** Zero bytes in the last segment's file past its last record, planned writes done. */
  #runwayBytes: number;
  /** The next runway extension's length: it doubles with each, up to a limit. */
  #runwayStepBytes = runwayStepFirstBytes;
  /** Counts the rolls and truncations that dropped the runway (RunwayExtension). */
  #runwayGeneration = 0;
  /** Record bytes still to append before an extension is planned again, after a refusal. */
  #runwayPauseBytes = 0;
  /** The highest op released so far and still inside the stored range, if any. */
  #releasedThroughOpNum: number | undefined;

  /**
   * `runwayBytes`: the zeros recovery found past the last segment's last record;
   * `nonceSource`: draws each new segment's nonce.
   */
  constructor(
    segmentBytesMax: number,
    segments: LayoutSegment[],
    runwayBytes: number,
    nonceSource: NonceSource,
  ) {
    this.#segmentBytesMax = segmentBytesMax;
    this.#segments = segments;
    this.#nonceSource = nonceSource;
    this.#bytes = segments.reduce((sum, segment) => sum + segment.bytes, 0);
    this.#runwayBytes = runwayBytes;
    this.#releasedThroughOpNum = undefined;
    this.checkInvariants();
  }

  get firstOpNum(): number | undefined {
    return this.#segments[0]?.firstOpNum;
  }

  get lastOpNum(): number | undefined {
    const last = this.#segments.at(-1);
    return last === undefined ? undefined : lastOpNumOf(last);
  }

  /** Bytes of all segment files: headers, records and the last segment's runway. */
  get bytes(): number {
    return this.#bytes + this.#runwayBytes;
  }

  get segmentCount(): number {
    return this.#segments.length;
  }

  /**
   * Validates the records, adds them, and returns the writes that store them.
   * `commitFirstOpNum` is the first op of the group commit these records join (undefined:
   * they start one); each record carries the op its sync region began at (format.ts):
   * the commit's first op, or its segment's first op when the commit rolled into it.
   */
  planAppend(records: readonly JournalRecord[], commitFirstOpNum?: number): SegmentWrite[] {
    this.#checkAppend(records);
    const commitStart = commitFirstOpNum ?? records[0]!.opNum;
    const writes: SegmentWrite[] = [];
    for (const record of records) {
      let segment = this.#segments.at(-1);
      const encodedBytes = recordBytes(payloadBytesOf(record));
      if (
        segment === undefined ||
        segment.formatVersion !== formatVersion ||
        segment.bytes + encodedBytes > this.#segmentBytesMax
      ) {
        const nonce = this.#nonceSource();
        // The header alone: the journal writes and syncs it before the records (format.ts).
        const create: SegmentWrite = {
          firstOpNum: record.opNum,
          create: true,
          position: 0,
          buffers: [encodeSegmentHeader(record.opNum, nonce)],
        };
        if (segment !== undefined && this.#runwayBytes > 0) {
          create.cutRunway = { firstOpNum: segment.firstOpNum, bytes: segment.bytes };
        }
        this.#runwayBytes = 0;
        this.#runwayGeneration++;
        // A new segment is a new file: its runway may find space the old one did not.
        this.#runwayPauseBytes = 0;
        segment = {
          firstOpNum: record.opNum,
          formatVersion,
          recordSeed: recordSeedOf(nonce),
          recordOffsets: [],
          bytes: segmentHeaderBytes,
        };
        this.#segments.push(segment);
        this.#bytes += segmentHeaderBytes;
        writes.push(create);
      }
      // The segment before a roll is synced before this one is created (journal.ts).
      const syncStartOpNum = Math.max(commitStart, segment.firstOpNum);
      const encoded =
        record.framed === undefined
          ? encodeRecord(segment.recordSeed, record.opNum, record.payload, syncStartOpNum)
          : frameRecord(
              segment.recordSeed,
              record.framed,
              record.opNum,
              syncStartOpNum,
              record.tail,
              record.tailChecksums,
            );
      let write = writes.at(-1);
      if (write === undefined || write.create || write.firstOpNum !== segment.firstOpNum) {
        write = {
          firstOpNum: segment.firstOpNum,
          create: false,
          position: segment.bytes,
          buffers: [],
        };
        writes.push(write);
      }
      write.buffers.push(encoded);
      if (record.framed !== undefined && record.tail !== undefined) {
        for (const part of record.tail) write.buffers.push(part);
      }
      segment.recordOffsets.push(segment.bytes);
      segment.bytes += encodedBytes;
      this.#bytes += encodedBytes;
      // The record lands in the runway's zeros, and past them it extends the file.
      this.#runwayBytes = Math.max(0, this.#runwayBytes - encodedBytes);
      this.#runwayPauseBytes = Math.max(0, this.#runwayPauseBytes - encodedBytes);
    }
    this.#checkTail();
    return writes;
  }

  /**
   * The runway extension due now, if any, applied at once: when the zeros left past the
   * last record are below the low-water mark, the next step of zeros, never past
   * segmentBytesMax. The caller must run it after every effect planned before it and
   * before every effect planned after it: zeros written past records written later would
   * destroy them.
   */
  planRunway(): RunwayExtension | undefined {
    const last = this.#segments.at(-1);
    // A segment of an older version takes no more records, so it needs no more zeros.
    if (last === undefined || last.formatVersion !== formatVersion) return undefined;
    if (this.#runwayPauseBytes > 0) return undefined;
    if (this.#runwayBytes >= this.#runwayStepBytes / runwayLowWaterDivisor) return undefined;
    const position = last.bytes + this.#runwayBytes;
    const end = Math.min(position + this.#runwayStepBytes, this.#segmentBytesMax);
    if (end <= position) return undefined;
    this.#runwayBytes += end - position;
    this.#runwayStepBytes = Math.min(2 * this.#runwayStepBytes, runwayStepMaxBytes);
    this.#checkTail();
    return {
      firstOpNum: last.firstOpNum,
      position,
      bytes: end - position,
      runwayGeneration: this.#runwayGeneration,
    };
  }

  /**
   * Takes back an extension the file system refused for want of space, once the journal
   * has cut the file back to `extension.position` (its length before the extension):
   * the runway is what it would have been without it, and no extension is planned again
   * until records of `runwayRetryAfterBytes` have been appended or a new segment starts;
   * the next step is the first one again. Records planned after the extension land from
   * the old last record on, so the runway left is the bytes between `position` and the
   * last record's end, if any. A roll or truncation planned since has dropped the runway
   * (and cuts or deletes the file), so the runway stays as they left it.
   */
  withdrawRunway(extension: RunwayExtension): void {
    this.#runwayPauseBytes = runwayRetryAfterBytes;
    this.#runwayStepBytes = runwayStepFirstBytes;
    if (extension.runwayGeneration !== this.#runwayGeneration) return;
    this.#runwayBytes = Math.max(0, this.#runwayBytes - extension.bytes);
    this.#checkTail();
  }

  /** Validates the op, drops every record above it, and returns the deletions and cut. */
  planTruncateAfter(opNum: number): TruncatePlan {
    const plan: TruncatePlan = { deletions: [], cut: undefined };
    if (!isOpNum(opNum)) {
      throw new JournalUsageError(
        `cannot truncate after op ${String(opNum)}: it is not a non-negative safe integer`,
      );
    }
    const firstOpNum = this.firstOpNum;
    const lastOpNum = this.lastOpNum;
    if (firstOpNum === undefined || lastOpNum === undefined || opNum >= lastOpNum) return plan;
    if (opNum < firstOpNum - 1) {
      throw new JournalUsageError(
        `cannot truncate after op ${opNum}: the journal's first op is ${firstOpNum}, so ops ${opNum + 1} to ${firstOpNum - 1} are not stored here to be replaced`,
      );
    }
    const released = this.#releasedThroughOpNum;
    if (released !== undefined && opNum < released) {
      throw new JournalUsageError(
        `cannot truncate after op ${opNum}: ops through ${released} are released (flushed and checkpointed), so they must not be dropped`,
      );
    }
    // Every deletion takes the runway with its file, and a cut takes it with the bytes cut.
    this.#runwayBytes = 0;
    this.#runwayGeneration++;
    for (let last = this.#segments.at(-1); last !== undefined && last.firstOpNum > opNum; ) {
      this.#segments.pop();
      this.#bytes -= last.bytes;
      plan.deletions.push(last.firstOpNum);
      last = this.#segments.at(-1);
    }
    const keeper = this.#segments.at(-1);
    if (keeper !== undefined && lastOpNumOf(keeper) > opNum) {
      const recordsKept = opNum - keeper.firstOpNum + 1;
      const bytes = keeper.recordOffsets[recordsKept];
      assert(bytes !== undefined, `no offset for op ${opNum + 1} in segment ${keeper.firstOpNum}`);
      this.#bytes -= keeper.bytes - bytes;
      keeper.bytes = bytes;
      keeper.recordOffsets.length = recordsKept;
      plan.cut = { firstOpNum: keeper.firstOpNum, bytes };
    }
    if (this.#segments.length === 0) this.#releasedThroughOpNum = undefined;
    this.#checkTail();
    return plan;
  }

  /**
   * Validates the op and drops every segment all of whose records are at or below it,
   * except the last: like Kafka's active segment, the last segment stays, so that the
   * journal, even across restarts, always knows the op the next append must carry.
   */
  planReleaseThrough(opNum: number): ReleasePlan {
    if (!isOpNum(opNum)) {
      throw new JournalUsageError(
        `cannot release through op ${String(opNum)}: it is not a non-negative safe integer`,
      );
    }
    const plan: ReleasePlan = { deletions: [] };
    for (let first = this.#segments[0]; first !== undefined && this.#segments.length > 1; ) {
      if (lastOpNumOf(first) > opNum) break;
      this.#segments.shift();
      this.#bytes -= first.bytes;
      plan.deletions.push(first.firstOpNum);
      first = this.#segments[0];
    }
    const lastOpNum = this.lastOpNum;
    if (lastOpNum !== undefined) {
      const released = Math.min(opNum, lastOpNum);
      this.#releasedThroughOpNum = Math.max(released, this.#releasedThroughOpNum ?? released);
    }
    this.checkInvariants();
    return plan;
  }

  /** Asserts every invariant in the module header. Costs time in the number of segments. */
  checkInvariants(): void {
    let bytes = 0;
    let opNumNext: number | undefined;
    let versionBefore = formatVersionWithoutNonce;
    for (const segment of this.#segments) {
      assert(segment.recordOffsets.length > 0, `segment ${segment.firstOpNum} holds no records`);
      assert(
        opNumNext === undefined || segment.firstOpNum === opNumNext,
        `segment ${segment.firstOpNum} does not follow op ${String(opNumNext)}`,
      );
      const headerBytes = headerBytesOfVersion.get(segment.formatVersion);
      assert(
        headerBytes !== undefined && segment.formatVersion >= versionBefore,
        `segment ${segment.firstOpNum} has format version ${segment.formatVersion} after ${versionBefore}`,
      );
      assert(
        segment.recordOffsets[0] === headerBytes,
        `segment ${segment.firstOpNum} does not start its records after its header`,
      );
      versionBefore = segment.formatVersion;
      opNumNext = lastOpNumOf(segment) + 1;
      bytes += segment.bytes;
    }
    assert(bytes === this.#bytes, `the layout counts ${this.#bytes} bytes, its segments ${bytes}`);
    this.#checkTail();
  }

  /** The invariants an append or truncation can break, checked in constant time. */
  #checkTail(): void {
    const last = this.#segments.at(-1);
    if (last !== undefined) {
      assert(last.recordOffsets.length > 0, `segment ${last.firstOpNum} holds no records`);
      const lastRecordOffset = last.recordOffsets.at(-1) ?? 0;
      assert(lastRecordOffset < last.bytes, `segment ${last.firstOpNum} ends inside a record`);
    }
    const runway = this.#runwayBytes;
    // Not bounded by segmentBytesMax: a journal reopened with a smaller one keeps the
    // runway recovery found (planRunway never extends one past it).
    assert(
      Number.isSafeInteger(runway) && runway >= 0 && (runway === 0 || last !== undefined),
      `a runway of ${runway} bytes past the last segment's ${last?.bytes ?? "(none)"} bytes`,
    );
    this.#checkReleased();
  }

  #checkReleased(): void {
    const released = this.#releasedThroughOpNum;
    if (released === undefined) return;
    const firstOpNum = this.firstOpNum;
    const lastOpNum = this.lastOpNum;
    assert(
      firstOpNum !== undefined && lastOpNum !== undefined,
      `op ${released} is released, yet the journal is empty`,
    );
    assert(
      firstOpNum - 1 <= released && released <= lastOpNum,
      `op ${released} is released, outside the stored ops ${firstOpNum} to ${lastOpNum}`,
    );
  }

  #checkAppend(records: readonly JournalRecord[]): void {
    if (!Array.isArray(records)) {
      throw new JournalUsageError(
        `cannot append: the records are a ${typeof records}, not an array`,
      );
    }
    if (records.length === 0) throw new JournalUsageError("cannot append: no records were given");
    if (records.length > appendRecordsMax) {
      throw new JournalUsageError(
        `cannot append ${records.length} records in one call: the limit is ${appendRecordsMax}`,
      );
    }
    const lastOpNum = this.lastOpNum;
    let opNumExpected = lastOpNum === undefined ? undefined : lastOpNum + 1;
    let payloadBytes = 0;
    // Indexed, not entries(): a pair per record was garbage on every append.
    for (let index = 0; index < records.length; index++) {
      const record = records[index]!;
      const opNum: unknown = record?.opNum;
      const payload: unknown = record?.payload;
      if (!isOpNum(opNum)) {
        throw new JournalUsageError(
          `cannot append record ${index} of the call: its op number ${String(opNum)} is not a non-negative safe integer`,
        );
      }
      if (!(payload instanceof Uint8Array)) {
        throw new JournalUsageError(`cannot append op ${opNum}: its payload is not a Uint8Array`);
      }
      const tail: unknown = record.tail;
      if (
        tail !== undefined &&
        !(
          record.framed !== undefined &&
          Array.isArray(tail) &&
          tail.every((part) => part instanceof Uint8Array)
        )
      ) {
        throw new JournalUsageError(
          `cannot append op ${opNum}: its tail is not a list of byte arrays after a framed payload`,
        );
      }
      const tailChecksums: unknown = record.tailChecksums;
      if (
        tailChecksums !== undefined &&
        !(
          Array.isArray(tailChecksums) &&
          Array.isArray(tail) &&
          tailChecksums.length === tail.length &&
          tailChecksums.every(
            (checksum) =>
              checksum === undefined ||
              (Number.isInteger(checksum) && checksum >= 0 && checksum <= 0xffff_ffff),
          )
        )
      ) {
        throw new JournalUsageError(
          `cannot append op ${opNum}: its tail checksums are not one 32-bit CRC (or undefined) per tail part`,
        );
      }
      const bytes = payloadBytesOf(record);
      if (bytes > payloadBytesMax) {
        throw new JournalUsageError(
          `cannot append op ${opNum}: its payload of ${bytes} bytes is over the limit of ${payloadBytesMax}`,
        );
      }
      const framed: unknown = record.framed;
      if (
        framed !== undefined &&
        !(
          framed instanceof Uint8Array &&
          framed.buffer === payload.buffer &&
          framed.byteOffset + recordHeaderBytes === payload.byteOffset &&
          framed.length === recordHeaderBytes + payload.length
        )
      ) {
        throw new JournalUsageError(
          `cannot append op ${opNum}: its framed buffer is not its payload with ${recordHeaderBytes} bytes of room in front`,
        );
      }
      if (opNumExpected !== undefined && opNum !== opNumExpected) {
        const after =
          index === 0
            ? `the journal's last op is ${String(lastOpNum)}`
            : `it follows op ${opNumExpected - 1} in the same call`;
        throw new JournalUsageError(
          `cannot append op ${opNum}: ${after}, so the next op must be ${opNumExpected}`,
        );
      }
      opNumExpected = opNum + 1;
      payloadBytes += bytes;
    }
    if (payloadBytes > appendPayloadBytesMax) {
      throw new JournalUsageError(
        `cannot append ${payloadBytes} payload bytes in one call: the limit is ${appendPayloadBytesMax}`,
      );
    }
  }
}

/**
 * Joins writes that continue one another in the same segment, so that a group commit of
 * many small appends issues one writev per segment rather than one write per append. A
 * new segment's header is never joined with its records: it is written, and synced, first
 * (format.ts says why), one more sync per segment created.
 */
export function coalesceWrites(writes: readonly SegmentWrite[]): SegmentWrite[] {
  const coalesced: SegmentWrite[] = [];
  let previousEnd = 0;
  for (const write of writes) {
    const previous = coalesced.at(-1);
    // A new segment's header stays a write of its own, synced before its records.
    const continues =
      previous !== undefined &&
      !previous.create &&
      !write.create &&
      previous.firstOpNum === write.firstOpNum &&
      previousEnd === write.position;
    if (continues) {
      previous.buffers.push(...write.buffers);
    } else {
      coalesced.push({ ...write, buffers: [...write.buffers] });
    }
    previousEnd = write.position + bytesOf(write.buffers);
  }
  return coalesced;
}

/** The header's length in each version the layout may hold: where its records start. */
const headerBytesOfVersion = new Map([
  [formatVersion, segmentHeaderBytes],
  [formatVersionWithoutNonce, segmentHeaderBytesWithoutNonce],
]);

export function isOpNum(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function lastOpNumOf(segment: LayoutSegment): number {
  return segment.firstOpNum + segment.recordOffsets.length - 1;
}
