// Segment format versions on real files: a journal written before segment nonces
// (version 2) still opens, goes on in segments of version 3, and recovers as a mix; a
// record copied from another segment is no record of this one; and a damaged header of
// the last segment, which hides its nonce, is judged by what the write order allows.

import { readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  formatVersion,
  formatVersionWithoutNonce,
  recordHeaderBytes,
  segmentHeaderBytes,
  segmentHeaderBytesWithoutNonce,
} from "../src/journal/constants.ts";
import { decodeSegmentHeader, encodeRecord, segmentFileName } from "../src/journal/format.ts";
import { Journal, JournalCorruptError, type JournalRecord } from "../src/journal/index.ts";
import {
  cutRunway,
  expectSameRecords,
  recordSeedOfFile,
  recordWithoutNonce,
  segmentHeaderWithoutNonce,
  segmentNames,
  snapshotFiles,
  temporaryDirectory,
} from "./fixtures/journal-files.ts";

let directory: string;
let removeDirectory: () => Promise<void>;
const openJournals = new Set<Journal>();

beforeEach(async () => {
  ({ path: directory, remove: removeDirectory } = await temporaryDirectory());
});

afterEach(async () => {
  for (const journal of openJournals) await journal.close();
  openJournals.clear();
  await removeDirectory();
});

/** 92-byte payloads: 120-byte records, four to a 512-byte segment of either version. */
const segmentBytesMax = 512;

function records(firstOpNum: number, count: number, payloadBytes = 92): JournalRecord[] {
  return Array.from({ length: count }, (_, index) => ({
    opNum: firstOpNum + index,
    payload: new Uint8Array(payloadBytes).fill((firstOpNum + index) & 0xff),
  }));
}

async function open() {
  const recovered = await Journal.open({ directory, segmentBytesMax });
  openJournals.add(recovered.journal);
  return recovered;
}

async function close(journal: Journal): Promise<void> {
  await journal.close();
  openJournals.delete(journal);
}

const pathOf = (firstOpNum: number) => join(directory, segmentFileName(firstOpNum));

/**
 * Writes a segment as the build before nonces did: its header and the records, each
 * commit given as its number of records (their sync start is the commit's first op).
 */
async function writeOldSegment(firstOpNum: number, commits: number[]): Promise<Buffer> {
  const parts = [segmentHeaderWithoutNonce(firstOpNum)];
  let opNum = firstOpNum;
  for (const count of commits) {
    const syncStart = opNum;
    for (const record of records(opNum, count)) {
      parts.push(recordWithoutNonce(record.opNum, record.payload, syncStart));
    }
    opNum += count;
  }
  const bytes = Buffer.concat(parts);
  await writeFile(pathOf(firstOpNum), bytes);
  return bytes;
}

async function versionOf(firstOpNum: number): Promise<number | undefined> {
  const header = decodeSegmentHeader(await readFile(pathOf(firstOpNum)));
  return header.kind === "valid" ? header.value.formatVersion : undefined;
}

async function expectCorrupt(reason: RegExp): Promise<void> {
  const before = await snapshotFiles(directory);
  const opening = Journal.open({ directory, segmentBytesMax });
  await expect(opening).rejects.toThrow(JournalCorruptError);
  await expect(opening).rejects.toThrow(reason);
  expect(await snapshotFiles(directory)).toEqual(before);
}

describe("a journal written before segment nonces (version 2)", () => {
  test("opens with every record, by version 2's rules", async () => {
    await writeOldSegment(1, [2, 2]);
    await writeOldSegment(5, [1, 1]);
    const { records: recovered, tornTailBytes } = await open();
    expectSameRecords(recovered, records(1, 6));
    expect(tornTailBytes).toBe(0);
  });

  test("goes on in a new segment of version 3, though the old last one has room, and reopens as a mix", async () => {
    await writeOldSegment(1, [4]);
    const old = await writeOldSegment(5, [1]);
    const { journal } = await open();
    await journal.append(records(6, 2));
    await journal.append(records(8, 3)); // fills segment 6, rolls into segment 10
    await close(journal);
    expect(await segmentNames(directory)).toEqual([1, 5, 6, 10].map(segmentFileName));
    // The old segments are as they were, and every new one is of version 3.
    expect(await readFile(pathOf(5))).toEqual(old);
    expect(await versionOf(1)).toBe(formatVersionWithoutNonce);
    expect(await versionOf(5)).toBe(formatVersionWithoutNonce);
    expect(await versionOf(6)).toBe(formatVersion);
    expect(await versionOf(10)).toBe(formatVersion);
    const reopened = await open();
    expectSameRecords(reopened.records, records(1, 10));
    // Releasing the old segments leaves a journal of version 3 alone.
    await reopened.journal.releaseThrough(5);
    expect(await segmentNames(directory)).toEqual([6, 10].map(segmentFileName));
    await close(reopened.journal);
    expectSameRecords((await open()).records, records(6, 5));
  });

  test("a truncation back into an old segment leaves it the last; the next append starts a new one", async () => {
    await writeOldSegment(1, [3]);
    const { journal } = await open();
    await journal.append(records(4, 2));
    await journal.truncateAfter(2);
    await journal.append(records(3, 1));
    await close(journal);
    expect(await segmentNames(directory)).toEqual([1, 3].map(segmentFileName));
    // The old segment was cut to ops 1 and 2, and op 3 went to a new segment.
    expect((await readFile(pathOf(1))).length).toBe(segmentHeaderBytesWithoutNonce + 2 * 120);
    expect(await versionOf(3)).toBe(formatVersion);
    expectSameRecords((await open()).records, records(1, 3));
  });

  test("a torn tail of an old last segment is cut by version 2's rules", async () => {
    const bytes = await writeOldSegment(1, [2, 3]);
    // The last commit (ops 3-5) lost a piece of op 4; op 5 reached the disk.
    const op4 = segmentHeaderBytesWithoutNonce + 3 * 120;
    bytes.fill(0, op4 + 40, op4 + 80);
    await writeFile(pathOf(1), bytes);
    const { journal, records: recovered, tornTailBytes } = await open();
    expectSameRecords(recovered, records(1, 3));
    expect(tornTailBytes).toBe(bytes.length - op4);
    await journal.append(records(4, 1));
    await close(journal);
    expect(await versionOf(4)).toBe(formatVersion);
    expectSameRecords((await open()).records, records(1, 4));
  });

  test("a segment of version 2 after one of version 3 is refused: no build writes that", async () => {
    await writeOldSegment(1, [1]);
    const { journal } = await open();
    await journal.append(records(2, 1));
    await close(journal);
    await cutRunway(pathOf(2)); // as a roll would have
    await writeOldSegment(3, [1]);
    await expectCorrupt(/format version 2 after a segment of version 3/);
  });
});

describe("a record copied from another segment", () => {
  test("after damage in the last commit is no proof of corruption: the tail is cut as torn", async () => {
    const { journal } = await open();
    await journal.append(records(1, 4)); // segment 1
    await journal.append(records(5, 1)); // segment 5
    await journal.append(records(6, 2)); // the last commit, ops 6 and 7
    await close(journal);
    const last = await readFile(pathOf(5));
    const op6 = segmentHeaderBytes + 120;
    // Op 7 of the last commit lost; op 6 damaged; in op 7's place, a record of op 7 that
    // began a later sync region, framed as segment 1 frames its records.
    const copied = encodeRecord(await recordSeedOfFile(pathOf(1)), 7, records(7, 1)[0]!.payload);
    last.fill(0, op6 + 10, op6 + 20);
    last.set(copied, op6 + 120);
    await writeFile(pathOf(5), last);
    const { records: recovered, tornTailBytes } = await open();
    expectSameRecords(recovered, records(1, 5));
    expect(tornTailBytes).toBe(last.length - op6);
  });

  test("where the next record belongs is damage, not a record", async () => {
    const { journal } = await open();
    await journal.append(records(1, 4));
    await journal.append(records(5, 1));
    await close(journal);
    const end = segmentHeaderBytes + 120;
    await truncate(pathOf(5), end);
    const copied = encodeRecord(await recordSeedOfFile(pathOf(1)), 6, new Uint8Array(92));
    await writeFile(pathOf(5), Buffer.concat([await readFile(pathOf(5)), copied]));
    const { records: recovered, tornTailBytes } = await open();
    expectSameRecords(recovered, records(1, 5));
    expect(tornTailBytes).toBe(copied.length);
  });
});

describe("a damaged header of the last segment", () => {
  /** Segments 1 (ops 1-4) and 5 (op 5, then ops 6-7 in a later commit), of version 3. */
  async function twoSegments(): Promise<void> {
    const { journal } = await open();
    await journal.append(records(1, 5));
    await journal.append(records(6, 2));
    await close(journal);
  }

  test("with records after it is refused: version 3 syncs a header before its records", async () => {
    await twoSegments();
    const bytes = await readFile(pathOf(5));
    bytes.fill(0, 0, segmentHeaderBytes);
    await writeFile(pathOf(5), bytes);
    await expectCorrupt(/header synced before any record is written/);
  });

  test("with nothing but zeros after it is a torn creation: the segment is deleted", async () => {
    await twoSegments();
    const bytes = await readFile(pathOf(5));
    bytes.fill(0xee, 0, segmentHeaderBytes);
    bytes.fill(0, segmentHeaderBytes);
    await writeFile(pathOf(5), bytes);
    const { records: recovered, tornTailBytes } = await open();
    expectSameRecords(recovered, records(1, 4));
    expect(tornTailBytes).toBe(bytes.length);
    expect(await segmentNames(directory)).toEqual([segmentFileName(1)]);
  });

  test("of a version 2 segment whose first commit tore is cut by version 2's rules", async () => {
    await writeOldSegment(1, [4]);
    const bytes = await writeOldSegment(5, [3]);
    // The page holding the header and op 5's start never came; ops 6 and 7 did.
    bytes.fill(0, 0, segmentHeaderBytesWithoutNonce + 60);
    await writeFile(pathOf(5), bytes);
    const { records: recovered, tornTailBytes } = await open();
    expectSameRecords(recovered, records(1, 4));
    expect(tornTailBytes).toBe(bytes.length);
    expect(await segmentNames(directory)).toEqual([segmentFileName(1)]);
  });

  test("after a segment of version 3 is refused, though version 2's rules read records there", async () => {
    // The last segment must be of version 3, so what version 2's rules read in it are
    // copies (a tenant's bytes, say), and its header was synced before them.
    const { journal } = await open();
    await journal.append(records(1, 4));
    await close(journal);
    const bytes = await writeOldSegment(5, [3]);
    bytes.fill(0, 0, segmentHeaderBytesWithoutNonce + 60);
    await writeFile(pathOf(5), bytes);
    await expectCorrupt(/no record of a segment of version 2/);
  });

  test("of a version 2 segment is still refused when a record of a later sync follows", async () => {
    await writeOldSegment(1, [4]);
    const bytes = await writeOldSegment(5, [1, 2]);
    bytes.fill(0, 0, segmentHeaderBytesWithoutNonce + recordHeaderBytes);
    await writeFile(pathOf(5), bytes);
    await expectCorrupt(/written after a later sync/);
  });
});
