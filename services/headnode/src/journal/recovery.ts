// Recovery: reading a journal's segments back after a restart or a crash, and deciding
// for each flaw whether a crash explains it.
//
// The journal writes so that only the last group commit of the last segment can be torn:
// each commit ends with an fdatasync before the next operation starts, it syncs a
// segment's data before it creates the next one, and truncation and release delete
// segments from the ends inward. Until that last fdatasync returns, the commit's pages
// reach the disk in any order, so a crash can leave a middle page of it missing and a
// later one written; none of its records was acknowledged. Every record names the op its
// sync region began at (format.ts), which tells recovery where that last commit began.
// So recovery reads:
// - zero bytes from the end of the last segment's intact records to the end of its file
//   as its runway (journal.ts): zeros the journal wrote ahead for records to land in.
//   Kept as they are, not reported: no record is lost there, since zeros never decode as
//   a record (the record marker is not zero), and every acknowledged record before them
//   is intact. A commit torn so that nothing of it reached the disk reads the same, and
//   none of its records was acknowledged. Zeros after the last record of any other
//   segment are damage, as before: the journal cuts a segment's runway off, durably,
//   before it creates the next segment;
// - damage in the last segment after which every intact record belongs to the damaged
//   op's own sync region as a torn tail: a commit that never finished and so was never
//   acknowledged. It is cut off at the damage (durably; the intact records before the
//   damage stay, acknowledged or not) and its length reported. A last segment left with
//   no intact record before the damage (its header torn, or the process killed between
//   creating it and writing its first record) is deleted.
// - anything else as corruption: damage in any other segment, an intact record after
//   damage that was written after a later sync (so the damage had been synced), a gap or
//   overlap in op numbers, a header that does not match its file name. Recovery throws
//   JournalCorruptError and changes nothing, because dropping records could drop
//   acknowledged ones.
//
// Each segment is read by the rules of its own format version (format.ts): a record is
// checked with its segment's nonce (version 3), so that no payload bytes and no copy from
// another segment are taken for one of its records, in the scan or in the search for an
// intact record after damage; a segment of version 2 is read as that version was. A
// journal written by an older build goes on in segments of version 3 after its segments
// of version 2 (layout.ts); versions never go down along a journal, and one that does
// (a segment of version 2 after one of version 3, which no build writes) is corruption.
//
// A damaged header of the last segment hides its nonce, so no record of a version 3
// segment can be checked there. Version 3 writes and syncs a header before any record
// of its segment, so a crash can tear a header only while nothing follows it: nothing but
// zeros past the header's 32 bytes is a torn creation (the segment is deleted), and
// anything else is corruption, except where the segment may be of version 2, whose
// header shared a write with the first records. That is, when no earlier segment is of
// version 3 and a record of version 2's rules lies there: then version 2's rules decide,
// as that build's recovery did (a record of a later sync is corruption; records of the
// damaged commit alone are its torn tail). Bytes that version 2's rules read as records
// are what a tenant can write, so they count for a torn tail only there, where the
// header is damaged, which in version 3 takes damage to synced bytes. A version 2 segment
// whose header tore along with every record header of its first commit (its intact pages
// payload alone) is refused, where version 2's recovery would have cut it: refusing loses
// nothing, and cutting could lose a version 3 segment's acknowledged records.
//
// What recovery cannot tell: whether the last commit's fdatasync had returned. Damage
// inside it is taken for a torn commit even if it was bit rot after an acknowledgement;
// the replica protocol covers that case, as a replica acknowledged by a quorum of peers
// holds the note elsewhere. The rule is the same one a journal without sync starts must
// apply to its last record, widened to the last commit.
//
// Every segment is checked before any byte changes, so a journal found corrupt is left
// exactly as it was, for an operator or a repair to examine. Segments are read one at a
// time, each into one buffer, so recovery needs memory for the records it returns plus
// one segment.

import type { Dirent } from "node:fs";
import { open, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { formatVersion, segmentFileBytesMax, segmentHeaderBytes } from "./constants.ts";
import { JournalCorruptError, JournalFailedError } from "./errors.ts";
import { makeDirectory, syncDirectory } from "./files.ts";
import { parseSegmentFileName } from "./format.ts";
import type { JournalRecord, LayoutSegment } from "./layout.ts";
import {
  findIntactRecordAfter,
  intactRecordsAfter,
  runwayBytesOf,
  type ScannedRecord,
  type SegmentDamage,
  type SegmentScan,
  scanSegment,
} from "./segment-scan.ts";

export interface Recovery {
  /** The segments that remain, each with at least one record. */
  segments: LayoutSegment[];
  /** The zero bytes past the last segment's last record: its runway, kept. */
  runwayBytes: number;
  /** Every intact record, in op order. */
  records: JournalRecord[];
  /** Bytes cut from (or deleted with) the last segment as a torn tail, runway included. */
  tornTailBytes: number;
}

interface SegmentFile {
  firstOpNum: number;
  path: string;
}

/** The cut that removes a torn tail: keep `keepBytes` of the file, or delete it at 0. */
interface TailRepair {
  path: string;
  fileBytes: number;
  keepBytes: number;
}

export async function recoverJournal(directory: string): Promise<Recovery> {
  await makeDirectory(directory);
  const files = await listSegmentFiles(directory);
  const segments: LayoutSegment[] = [];
  const records: JournalRecord[] = [];
  let repair: TailRepair | undefined;
  let runwayBytes = 0;
  /** Whether an earlier segment is of this build's version (then every later one is). */
  let currentVersionSeen = false;
  for (const [index, file] of files.entries()) {
    const isLast = index === files.length - 1;
    const bytes = await readSegmentFile(file.path);
    let scan = scanSegment(bytes);
    if (isLast) {
      runwayBytes = runwayBytesOf(bytes, scan);
      // The last segment's runway is not damage (see the module header).
      if (runwayBytes > 0) scan = { ...scan, damage: undefined };
    }
    const lastOpNum = records.at(-1)?.opNum;
    const opNumNext = lastOpNum === undefined ? undefined : lastOpNum + 1;
    checkSegment(file, scan, bytes, { isLast, opNumNext, currentVersionSeen });
    const { header } = scan;
    if (header !== undefined && scan.records.length > 0) {
      const recordOffsets = scan.records.map((record) => record.offset);
      segments.push({
        firstOpNum: file.firstOpNum,
        formatVersion: header.formatVersion,
        recordSeed: header.recordSeed,
        recordOffsets,
        bytes: scan.intactBytes,
      });
    }
    if (header?.formatVersion === formatVersion) currentVersionSeen = true;
    for (const { opNum, payload } of scan.records) records.push({ opNum, payload });
    if (isLast && (scan.damage !== undefined || scan.records.length === 0)) {
      const keepBytes = scan.records.length === 0 ? 0 : scan.intactBytes;
      repair = { path: file.path, fileBytes: bytes.length, keepBytes };
    }
  }
  if (repair === undefined) return { segments, records, runwayBytes, tornTailBytes: 0 };
  try {
    await repairTail(directory, repair);
  } catch (error) {
    // A write or sync of the journal failed: the open records it (failed-marker.ts).
    throw new JournalFailedError(directory, "cannot cut the torn tail", { cause: error });
  }
  return {
    segments,
    records,
    runwayBytes: 0,
    tornTailBytes: repair.fileBytes - repair.keepBytes,
  };
}

/** Throws JournalCorruptError unless every flaw of the segment is one a crash explains. */
function checkSegment(
  file: SegmentFile,
  scan: SegmentScan,
  bytes: Uint8Array,
  place: { isLast: boolean; opNumNext: number | undefined; currentVersionSeen: boolean },
): void {
  const { isLast, opNumNext, currentVersionSeen } = place;
  const { damage, header } = scan;
  if (header !== undefined && currentVersionSeen && header.formatVersion !== formatVersion) {
    throw new JournalCorruptError(
      file.path,
      0,
      `the segment has format version ${header.formatVersion} after a segment of version ${formatVersion}, and no build writes an older version after a newer one`,
    );
  }
  if (damage !== undefined) {
    if (!isLast) {
      throw new JournalCorruptError(
        file.path,
        damage.offset,
        `${damage.reason}, in a segment that is not the last, which no torn write can reach (a segment is durable before the next one is created)`,
      );
    }
    if (damage.kind === "inconsistent") {
      throw new JournalCorruptError(file.path, damage.offset, damage.reason);
    }
    // The damaged op: the one expected after the intact prefix, or, with the segment
    // header itself damaged, the segment's first (its name says which).
    const unsynced = {
      opNumDamaged: damage.opNumExpected ?? file.firstOpNum,
      syncStartBefore: scan.records.at(-1)?.syncStartOpNum,
    };
    // With the header damaged, version 2's rules (record seed 0) are all there are.
    const intactOffset = findIntactRecordAfter(bytes, damage, header?.recordSeed ?? 0, unsynced);
    if (intactOffset !== undefined) {
      throw new JournalCorruptError(
        file.path,
        damage.offset,
        `${damage.reason}, yet an intact record written after a later sync follows at offset ${intactOffset}, so this is damage, not a torn write`,
      );
    }
    if (header === undefined) checkDamagedHeader(file, bytes, damage, currentVersionSeen);
  }
  if (header !== undefined && header.firstOpNum !== file.firstOpNum) {
    throw new JournalCorruptError(
      file.path,
      0,
      `the segment header gives first op ${header.firstOpNum}, but the file name gives ${file.firstOpNum}`,
    );
  }
  if (header !== undefined && opNumNext !== undefined && header.firstOpNum !== opNumNext) {
    throw new JournalCorruptError(
      file.path,
      0,
      `the segment starts at op ${header.firstOpNum}, but the segment before it ends at op ${opNumNext - 1}`,
    );
  }
  if (!isLast && scan.records.length === 0) {
    throw new JournalCorruptError(
      file.path,
      scan.intactBytes,
      "the segment holds no records, yet it is not the last",
    );
  }
}

/**
 * Throws JournalCorruptError unless the last segment's damaged header is a torn creation
 * (nothing but zeros after it) or the torn first commit of a segment of version 2 (see
 * the module header). The search for a record of a later sync has run already.
 */
function checkDamagedHeader(
  file: SegmentFile,
  bytes: Uint8Array,
  damage: SegmentDamage,
  currentVersionSeen: boolean,
): void {
  if (bytes.subarray(segmentHeaderBytes).every((byte) => byte === 0)) return;
  if (!currentVersionSeen) {
    const records = intactRecordsAfter(bytes, damage.offset, 0, file.firstOpNum);
    if (records.next().done !== true) return;
  }
  throw new JournalCorruptError(
    file.path,
    damage.offset,
    `${damage.reason}, with bytes after it that are no record of a segment of version 2; a segment of version ${formatVersion} has its header synced before any record is written, so this is damage, not a torn write`,
  );
}

/**
 * The intact records of the newest segment that has any, read without changing a byte
 * (no repair, no directory made): what the journal's newest notes say, for a caller that
 * must decide before anything opens it (a configure about to remove the replica's
 * directory, headnode.ts). Records after damage are not read; a journal with no intact
 * record, or no directory, has none. Unlike `recoverJournal`, damage is no error here.
 */
export async function readNewestRecords(directory: string): Promise<ScannedRecord[]> {
  let files: SegmentFile[];
  try {
    files = await listSegmentFiles(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  for (const file of files.reverse()) {
    let bytes: Buffer;
    try {
      bytes = await readSegmentFile(file.path);
    } catch (error) {
      // Too long to be a segment: damage, which tells nothing.
      if (error instanceof JournalCorruptError) continue;
      throw error;
    }
    const { records } = scanSegment(bytes);
    if (records.length > 0) return records;
  }
  return [];
}

async function listSegmentFiles(directory: string): Promise<SegmentFile[]> {
  const entries: Dirent[] = await readdir(directory, { withFileTypes: true });
  const files: SegmentFile[] = [];
  for (const entry of entries) {
    const firstOpNum = parseSegmentFileName(entry.name);
    // Other files (an operator's notes, a copy being made) are not the journal's.
    if (firstOpNum === undefined || !entry.isFile()) continue;
    files.push({ firstOpNum, path: join(directory, entry.name) });
  }
  return files.sort((left, right) => left.firstOpNum - right.firstOpNum);
}

async function readSegmentFile(path: string): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    if (size > segmentFileBytesMax) {
      throw new JournalCorruptError(
        path,
        segmentFileBytesMax,
        `the file is ${size} bytes, longer than any segment the journal writes (${segmentFileBytesMax})`,
      );
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Cuts the torn tail off (durably), or deletes a segment left with nothing. */
async function repairTail(directory: string, repair: TailRepair): Promise<void> {
  if (repair.keepBytes === 0) {
    await unlink(repair.path);
    await syncDirectory(directory);
    return;
  }
  const handle = await open(repair.path, "r+");
  try {
    await handle.truncate(repair.keepBytes);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}
