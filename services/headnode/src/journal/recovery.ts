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
import { segmentFileBytesMax, segmentHeaderBytes } from "./constants.ts";
import { JournalCorruptError, JournalFailedError } from "./errors.ts";
import { makeDirectory, syncDirectory } from "./files.ts";
import { parseSegmentFileName } from "./format.ts";
import type { JournalRecord, LayoutSegment } from "./layout.ts";
import {
  findIntactRecordAfter,
  runwayBytesOf,
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
    checkSegment(file, scan, bytes, isLast, lastOpNum === undefined ? undefined : lastOpNum + 1);
    if (scan.records.length > 0) {
      const recordOffsets = scan.records.map((record) => record.offset);
      segments.push({ firstOpNum: file.firstOpNum, recordOffsets, bytes: scan.intactBytes });
    }
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
  isLast: boolean,
  opNumNext: number | undefined,
): void {
  const { damage, header } = scan;
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
    const intactOffset = findIntactRecordAfter(bytes, damage, unsynced);
    if (intactOffset !== undefined) {
      throw new JournalCorruptError(
        file.path,
        damage.offset,
        `${damage.reason}, yet an intact record written after a later sync follows at offset ${intactOffset}, so this is damage, not a torn write`,
      );
    }
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
      segmentHeaderBytes,
      "the segment holds no records, yet it is not the last",
    );
  }
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
