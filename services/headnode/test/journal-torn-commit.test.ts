// A group commit torn by a crash: its pages reach the disk in any order until its
// fdatasync returns, so a crash can leave a middle page missing and a later one written.
// None of its records was acknowledged, so recovery must take that for a torn tail; the
// same damage in a commit that a later sync covered is corruption and still refused.

import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { recordHeaderBytes, segmentHeaderBytes } from "../src/journal/constants.ts";
import { segmentFileName } from "../src/journal/format.ts";
import { Journal, JournalCorruptError, type JournalRecord } from "../src/journal/index.ts";
import {
  expectSameRecords,
  recordWithoutNonce,
  snapshotFiles,
  temporaryDirectory,
} from "./fixtures/journal-files.ts";

const pageBytes = 4096;
/** Records of about two pages each, so a page lost in the middle of one is plausible. */
const payloadBytes = 2 * pageBytes;
const recordOnDiskBytes = recordHeaderBytes + payloadBytes;

let directory: string;
let removeDirectory: () => Promise<void>;

beforeEach(async () => {
  const temporary = await temporaryDirectory();
  directory = temporary.path;
  removeDirectory = temporary.remove;
});

afterEach(async () => {
  await removeDirectory();
});

function records(firstOpNum: number, count: number): JournalRecord[] {
  return Array.from({ length: count }, (_, index) => ({
    opNum: firstOpNum + index,
    payload: new Uint8Array(payloadBytes).fill((firstOpNum + index) & 0xff),
  }));
}

/** Writes the given commits (each one append call, awaited: one group commit each). */
async function writeCommits(commits: JournalRecord[][]): Promise<void> {
  const { journal } = await Journal.open({ directory });
  for (const commit of commits) await journal.append(commit);
  await journal.close();
}

/**
 * The page-aligned page that holds `offset` as a write-back that never happened: what the
 * last commit wrote there reads as zeros (the file grew, its new bytes never came), what
 * earlier, synced commits wrote (below `lastCommitOffset`) stays. Without that offset the
 * whole page is lost, as bit rot would lose it.
 */
async function losePageAt(offset: number, lastCommitOffset = 0): Promise<void> {
  const path = join(directory, segmentFileName(1));
  const bytes = await readFile(path);
  const start = Math.floor(offset / pageBytes) * pageBytes;
  bytes.fill(0, Math.max(start, lastCommitOffset), start + pageBytes);
  await writeFile(path, bytes);
}

function offsetOfOp(opNum: number): number {
  return segmentHeaderBytes + (opNum - 1) * recordOnDiskBytes;
}

describe("a group commit torn by a crash", () => {
  test("a missing middle page with later pages written is a torn tail, dropped", async () => {
    // Ops 1–3 synced in one commit; ops 4–9 the last commit, never acknowledged.
    await writeCommits([records(1, 3), records(4, 6)]);
    // A page inside op 6 never reached the disk; ops 7–9 after it did.
    await losePageAt(offsetOfOp(6) + pageBytes, offsetOfOp(4));
    const fileBytes = (await readFile(join(directory, segmentFileName(1)))).length;
    const { journal, records: recovered, tornTailBytes } = await Journal.open({ directory });
    try {
      // Everything from the damage on is dropped, the runway's zeros after it included;
      // what is before it stays.
      expectSameRecords(recovered, records(1, 5));
      expect(fileBytes).toBeGreaterThanOrEqual(offsetOfOp(10));
      expect(tornTailBytes).toBe(fileBytes - offsetOfOp(6));
      expect(journal.lastOpNum).toBe(5);
      // The journal goes on from there, and a reopen reads it back whole.
      await journal.append(records(6, 2));
    } finally {
      await journal.close();
    }
    const reopened = await Journal.open({ directory });
    expectSameRecords(reopened.records, records(1, 7));
    expect(reopened.tornTailBytes).toBe(0);
    await reopened.journal.close();
  });

  test("a missing page at the very start of the last commit is a torn tail too", async () => {
    await writeCommits([records(1, 3), records(4, 6)]);
    // That page also holds the end of op 3, synced before: only op 4's part is lost.
    await losePageAt(offsetOfOp(4) + 10, offsetOfOp(4));
    const { journal, records: recovered } = await Journal.open({ directory });
    await journal.close();
    expectSameRecords(recovered, records(1, 3));
  });

  test("a missing page in a commit a later sync covered is corruption, refused", async () => {
    await writeCommits([records(1, 3), records(4, 3), records(7, 3)]);
    // Op 5 belongs to a commit synced before ops 7–9 were written.
    await losePageAt(offsetOfOp(5) + pageBytes);
    const before = await snapshotFiles(directory);
    const opening = Journal.open({ directory });
    await expect(opening).rejects.toThrow(JournalCorruptError);
    await expect(opening).rejects.toThrow(/written after a later sync/);
    expect(await snapshotFiles(directory)).toEqual(before);
  });

  test("damage that reaches back into the synced commit before the last is refused", async () => {
    await writeCommits([records(1, 3), records(4, 3)]);
    // The last page of op 3 (synced) and the first of op 4 (unsynced) lost together:
    // the intact records after it began their sync region at op 4, after op 3.
    const path = join(directory, segmentFileName(1));
    const bytes = await readFile(path);
    bytes.fill(0, offsetOfOp(4) - 100, offsetOfOp(4) + 100);
    await writeFile(path, bytes);
    await expect(Journal.open({ directory })).rejects.toThrow(JournalCorruptError);
  });

  test("a torn large note whose payload holds a record-shaped copy is a torn tail, not corruption", async () => {
    // Op 5, the last record, is a large note whose data holds what the format before
    // segment nonces takes for an intact record of op 6 that began a sync region of its
    // own: proof, to that format, that op 5's damage had been synced. Tenant bytes can say
    // anything, so they must not be able to say that.
    const large = new Uint8Array(16 * pageBytes).fill(0xa5);
    const fake = recordWithoutNonce(6, new Uint8Array(100).fill(6));
    large.set(fake, 12 * pageBytes);
    await writeCommits([records(1, 3), [...records(4, 1), { opNum: 5, payload: large }]]);
    // A page near the start of op 5 never reached the disk; the pages holding the copy did.
    await losePageAt(offsetOfOp(5) + 2 * pageBytes, offsetOfOp(4));
    const path = join(directory, segmentFileName(1));
    const bytes = await readFile(path);
    const copyAt = offsetOfOp(5) + recordHeaderBytes + 12 * pageBytes;
    expect(Buffer.from(bytes.subarray(copyAt, copyAt + fake.length)).equals(fake)).toBe(true);
    const { journal, records: recovered, tornTailBytes } = await Journal.open({ directory });
    try {
      expectSameRecords(recovered, records(1, 4));
      expect(tornTailBytes).toBe(bytes.length - offsetOfOp(5));
    } finally {
      await journal.close();
    }
  });
});
