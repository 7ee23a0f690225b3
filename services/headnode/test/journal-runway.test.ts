// The runway: zeros written and synced past the last segment's last record, so that
// appends overwrite allocated blocks instead of extending the file (journal.ts). Recovery
// keeps a runway as it is; damage inside it keeps today's rules; zeros after the last
// record of any other segment are still corruption; a roll cuts the old segment's
// runway off; the zeros are written and synced by an operation of their own, counted as
// a sync, never run after close.

import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { runwayStepFirstBytes, segmentHeaderBytes } from "../src/journal/constants.ts";
import { encodeRecord, segmentFileName } from "../src/journal/format.ts";
import { Journal, JournalCorruptError, type JournalRecord } from "../src/journal/index.ts";
import {
  expectSameRecords,
  recordSeedOfFile,
  recordsEndOf,
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

async function open(segmentBytesMax?: number) {
  const recovered = await Journal.open({ directory, segmentBytesMax });
  openJournals.add(recovered.journal);
  return recovered;
}

async function close(journal: Journal): Promise<void> {
  await journal.close();
  openJournals.delete(journal);
}

async function sizeOf(path: string): Promise<number> {
  return (await stat(path)).size;
}

/** Records of `payloadBytes`-byte payloads (1,028 bytes on disk by default), op-patterned. */
const kibRecords = (firstOpNum: number, count: number, payloadBytes = 1000): JournalRecord[] =>
  Array.from({ length: count }, (_, index) => {
    const opNum = firstOpNum + index;
    const payload = new Uint8Array(payloadBytes);
    for (let byte = 0; byte < payloadBytes; byte++) payload[byte] = (opNum * 31 + byte * 7) & 0xff;
    return { opNum, payload };
  });

const firstSegment = () => join(directory, segmentFileName(1));

describe("a runway", () => {
  test("is written after the first append, counted as a sync, and later appends land in it", async () => {
    const { journal } = await open();
    await journal.append(kibRecords(1, 1));
    await journal.settled();
    const path = firstSegment();
    const recordsEnd = await recordsEndOf(path);
    // The directory sync of the new segment, its header's write (synced before any record),
    // the record's write, the runway's write.
    expect(journal.syncCount).toBe(4);
    expect(await sizeOf(path)).toBe(recordsEnd + runwayStepFirstBytes);
    expect(journal.bytes).toBe(recordsEnd + runwayStepFirstBytes);
    // Appends inside the runway leave the file's length as it is: no extension per write.
    for (let opNum = 2; opNum <= 10; opNum++) await journal.append(kibRecords(opNum, 1));
    await journal.settled();
    expect(journal.syncCount).toBe(4 + 9);
    expect(await sizeOf(path)).toBe(recordsEnd + runwayStepFirstBytes);
    expect(await recordsEndOf(path)).toBeGreaterThan(recordsEnd + 8000);
    const bytes = await readFile(path);
    const zerosFrom = await recordsEndOf(path);
    expect(bytes.subarray(zerosFrom).every((byte) => byte === 0)).toBe(true);
  });

  test("grows in steps that double, once the zeros left run low", async () => {
    const { journal } = await open();
    const path = firstSegment();
    const sizes: number[] = [];
    for (let opNum = 1; opNum <= 200; opNum++) {
      await journal.append(kibRecords(opNum, 1));
      await journal.settled();
      const size = await sizeOf(path);
      if (sizes.at(-1) !== size) sizes.push(size);
    }
    // 64 KiB, then 128 KiB once less than a quarter of that is left, and so on: each
    // extension starts at the old end, so the differences are the steps.
    const steps = sizes.slice(1).map((size, index) => size - sizes[index]!);
    expect(steps).toEqual([2 * runwayStepFirstBytes, 4 * runwayStepFirstBytes]);
    // The records never caught up with the zeros: every append landed in the runway.
    expect(sizes[0]).toBe(segmentHeaderBytes + 1028 + runwayStepFirstBytes);
    expect(await recordsEndOf(path)).toBeLessThan(sizes.at(-1)!);
  });

  test("is read back as it is: records intact, nothing cut, appends go on inside it", async () => {
    const { journal } = await open();
    await journal.append(kibRecords(1, 5));
    await close(journal);
    const path = firstSegment();
    const size = await sizeOf(path);
    const recordsEnd = await recordsEndOf(path);
    expect(size).toBeGreaterThan(recordsEnd);

    const recovered = await open();
    expectSameRecords(recovered.records, kibRecords(1, 5));
    expect(recovered.tornTailBytes).toBe(0);
    expect(await sizeOf(path)).toBe(size);
    expect(recovered.journal.bytes).toBe(size);
    await recovered.journal.append(kibRecords(6, 3));
    await recovered.journal.settled();
    // Written into the zeros: the records moved on, the file did not grow.
    expect(await sizeOf(path)).toBe(size);
    expect(await recordsEndOf(path)).toBe(recordsEnd + (3 * (recordsEnd - segmentHeaderBytes)) / 5);
    await close(recovered.journal);

    const reopened = await open();
    expectSameRecords(reopened.records, kibRecords(1, 8));
    expect(reopened.tornTailBytes).toBe(0);
  });

  test("a commit torn inside it is cut as a torn tail, the runway with it", async () => {
    const { journal } = await open();
    await journal.append(kibRecords(1, 3));
    await close(journal);
    const path = firstSegment();
    const bytes = await readFile(path);
    const recordsEnd = await recordsEndOf(path);
    // Op 4's write reached the disk only in part: its header and half its payload.
    const torn = encodeRecord(await recordSeedOfFile(path), 4, kibRecords(4, 1)[0]!.payload);
    bytes.set(torn.subarray(0, torn.length / 2), recordsEnd);
    await writeFile(path, bytes);

    const recovered = await open();
    expectSameRecords(recovered.records, kibRecords(1, 3));
    expect(recovered.tornTailBytes).toBe(bytes.length - recordsEnd);
    expect(await sizeOf(path)).toBe(recordsEnd);
    await recovered.journal.append(kibRecords(4, 2));
    await close(recovered.journal);
    const reopened = await open();
    expectSameRecords(reopened.records, kibRecords(1, 5));
    expect(reopened.tornTailBytes).toBe(0);
  });

  test("garbage inside it keeps today's rules: cut as torn, unless a later sync's record follows", async () => {
    const { journal } = await open();
    await journal.append(kibRecords(1, 3));
    await close(journal);
    const path = firstSegment();
    const original = await readFile(path);
    const recordsEnd = await recordsEndOf(path);

    // Bytes that are neither zeros nor a record, some way into the runway: torn.
    const garbled = Buffer.from(original);
    garbled.fill(0xa5, recordsEnd + 100, recordsEnd + 300);
    await writeFile(path, garbled);
    const recovered = await open();
    expectSameRecords(recovered.records, kibRecords(1, 3));
    expect(recovered.tornTailBytes).toBe(garbled.length - recordsEnd);
    await close(recovered.journal);

    // The same garbage with an intact record after it that began a later sync region
    // (its sync start is its own op, past the damaged one): the damage had been synced.
    const proven = Buffer.from(original);
    proven.fill(0xa5, recordsEnd, recordsEnd + 300);
    proven.set(encodeRecord(await recordSeedOfFile(path), 5, new Uint8Array(8)), recordsEnd + 2000);
    await writeFile(path, proven);
    const before = await snapshotFiles(directory);
    await expect(Journal.open({ directory })).rejects.toThrow(JournalCorruptError);
    expect(await snapshotFiles(directory)).toEqual(before);
  });

  test("zeros after the last record of a segment that is not the last are corruption", async () => {
    const { journal } = await open(512);
    await journal.append(kibRecords(1, 6, 100)); // four records of 128 bytes a segment
    await close(journal);
    const names = await segmentNames(directory);
    expect(names.length).toBeGreaterThan(1);
    const path = join(directory, names[0]!);
    const bytes = await readFile(path);
    expect(bytes.length).toBe(await recordsEndOf(path));
    await writeFile(path, Buffer.concat([bytes, Buffer.alloc(300)]));
    const opening = Journal.open({ directory, segmentBytesMax: 512 });
    await expect(opening).rejects.toThrow(JournalCorruptError);
    await expect(opening).rejects.toThrow(/not the last/);
  });

  test("is cut off the old segment before the next one is created", async () => {
    const segmentBytesMax = 256 * 1024;
    const { journal } = await open(segmentBytesMax);
    for (let opNum = 1; opNum <= 300; opNum += 10) await journal.append(kibRecords(opNum, 10));
    await journal.settled();
    const names = await segmentNames(directory);
    expect(names.length).toBeGreaterThan(1);
    for (const name of names.slice(0, -1)) {
      const path = join(directory, name);
      expect(await sizeOf(path), name).toBe(await recordsEndOf(path));
    }
    const last = join(directory, names.at(-1)!);
    expect(await sizeOf(last)).toBeGreaterThan(await recordsEndOf(last));
    expect(await sizeOf(last)).toBeLessThanOrEqual(segmentBytesMax);
    await close(journal);
    expectSameRecords((await open(segmentBytesMax)).records, kibRecords(1, 300));
  });

  test("a truncation inside the last segment cuts it, and the next append extends it again", async () => {
    const { journal } = await open();
    await journal.append(kibRecords(1, 5));
    await journal.truncateAfter(3);
    const path = firstSegment();
    const cut = await recordsEndOf(path);
    expect(await sizeOf(path)).toBe(cut);
    expect(journal.bytes).toBe(cut);
    await journal.append(kibRecords(4, 1));
    await journal.settled();
    expect(await sizeOf(path)).toBeGreaterThan(await recordsEndOf(path));
    expect(journal.bytes).toBe(await sizeOf(path));
    await close(journal);
    expectSameRecords((await open()).records, kibRecords(1, 4));
  });

  test("is not written once close is called: close waits only for the appends", async () => {
    const { journal } = await open();
    const appended = journal.append(kibRecords(1, 3));
    await close(journal);
    await appended;
    // Anything queued behind close would have run by now.
    await journal.settled();
    const path = firstSegment();
    expect(await sizeOf(path)).toBe(await recordsEndOf(path));
  });
});
