// The note journal on real files: round trips through close and reopen, group commit,
// segment rolling, release, truncation, recovery from torn tails and refusal of
// corruption, and bad usage that must leave the files as they were.

import { readdir, readFile, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { recordHeaderBytes, segmentHeaderBytes } from "../src/journal/constants.ts";
import { encodeRecord, segmentFileName } from "../src/journal/format.ts";
import {
  Journal,
  JournalCorruptError,
  type JournalOptions,
  type JournalRecord,
  JournalUsageError,
  journalLimits,
} from "../src/journal/index.ts";
import { type ScannedRecord, scanSegment } from "../src/journal/segment-scan.ts";
import {
  cutRunway,
  expectSameRecords,
  flipByte,
  payloadForOpNum,
  recordSeedOfFile,
  recordsEndOf,
  recordsFrom,
  segmentBytesOnDisk,
  segmentNames,
  snapshotFiles,
  temporaryDirectory,
} from "./fixtures/journal-files.ts";

let directory: string;
let removeDirectory: () => Promise<void>;
const openJournals = new Set<Journal>();

beforeEach(async () => {
  const temporary = await temporaryDirectory();
  directory = temporary.path;
  removeDirectory = temporary.remove;
});

afterEach(async () => {
  for (const journal of openJournals) await journal.close();
  openJournals.clear();
  await removeDirectory();
});

async function open(options: Partial<JournalOptions> = {}) {
  const recovered = await Journal.open({ directory, ...options });
  openJournals.add(recovered.journal);
  return recovered;
}

async function reopen(journal: Journal, options: Partial<JournalOptions> = {}) {
  await journal.close();
  openJournals.delete(journal);
  return open(options);
}

/** 92-byte payloads make 120-byte records; 512-byte segments then hold four each. */
const smallSegments = { segmentBytesMax: 512 };
const smallRecords = (firstOpNum: number, count: number): JournalRecord[] =>
  Array.from({ length: count }, (_, index) => ({
    opNum: firstOpNum + index,
    payload: new Uint8Array(120 - recordHeaderBytes).fill((firstOpNum + index) & 0xff),
  }));

/** Appends op 11, a framed record with one 8-byte tail part, given these tail checksums. */
function appendWithTailChecksums(journal: Journal, tailChecksums: number[]): Promise<void> {
  const framed = new Uint8Array(recordHeaderBytes + 8);
  return journal.append([
    {
      opNum: 11,
      payload: framed.subarray(recordHeaderBytes),
      framed,
      tail: [new Uint8Array(8)],
      tailChecksums,
    },
  ]);
}

describe("opening", () => {
  test("a missing directory, parents included, gives an empty journal", async () => {
    const nested = join(directory, "volume-a", "partition-7");
    const { journal, records, tornTailBytes } = await Journal.open({ directory: nested });
    openJournals.add(journal);
    expectSameRecords(records, []);
    expect(tornTailBytes).toBe(0);
    expect(journal.firstOpNum).toBeUndefined();
    expect(journal.lastOpNum).toBeUndefined();
    expect(journal.bytes).toBe(0);
    expect(journal.segmentCount).toBe(0);
    expect(await readdir(nested)).toEqual([]);
  });

  test("its directories, parents included, are 0700 and its segments 0600: they hold volume data", async () => {
    const nested = join(directory, "volume-a", "partition-7");
    const { journal } = await Journal.open({ directory: nested, segmentBytesMax: 512 });
    openJournals.add(journal);
    await journal.append(smallRecords(1, 9));
    const modeOf = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);
    expect(await modeOf(join(directory, "volume-a"))).toBe("700");
    expect(await modeOf(nested)).toBe("700");
    const segments = await segmentNames(nested);
    expect(segments.length).toBeGreaterThan(1);
    for (const name of segments) expect(await modeOf(join(nested, name))).toBe("600");
  });

  test("ignores files that are not segments", async () => {
    await writeFile(join(directory, "README"), "operator notes");
    await writeFile(join(directory, "segment-1.log"), "not a segment name");
    const { journal, records } = await open();
    expectSameRecords(records, []);
    await journal.append(recordsFrom(1, 3));
    const reopened = await reopen(journal);
    expectSameRecords(reopened.records, recordsFrom(1, 3));
  });

  test("refuses a second journal on the same directory in one process", async () => {
    await open();
    await expect(Journal.open({ directory: join(directory, ".") })).rejects.toThrow(
      /cannot open the journal in .*: this process has it open already/,
    );
  });

  test.each([
    [{ segmentBytesMax: 100 }, "segmentBytesMax 100"],
    [{ segmentBytesMax: 2 ** 31 }, `segmentBytesMax ${2 ** 31}`],
    [{ segmentBytesMax: 4096.5 }, "segmentBytesMax 4096.5"],
    [{ blockingWriteBytesMax: -1 }, "blockingWriteBytesMax -1"],
    [{ blockingWriteBytesMax: 2 ** 31 }, `blockingWriteBytesMax ${2 ** 31}`],
    [{ directory: "" }, 'the directory "" is not a path'],
  ])("refuses options %j", async (options, message) => {
    const opening = Journal.open({ directory, ...options });
    await expect(opening).rejects.toThrow(JournalUsageError);
    await expect(opening).rejects.toThrow(message);
  });
});

describe("a round trip through close and reopen", () => {
  test("returns every record in op order with byte-identical payloads", async () => {
    const { journal } = await open();
    const written = recordsFrom(1, 300);
    for (let start = 0; start < written.length; start += 37) {
      await journal.append(written.slice(start, start + 37));
    }
    expect(journal.lastOpNum).toBe(300);
    const { journal: reopened, records, tornTailBytes } = await reopen(journal);
    expect(tornTailBytes).toBe(0);
    expectSameRecords(records, written);
    for (const record of records) expect(record.payload).toBeInstanceOf(Uint8Array);
    expect(reopened.firstOpNum).toBe(1);
    expect(reopened.lastOpNum).toBe(300);
    expect(reopened.bytes).toBe(await segmentBytesOnDisk(directory));
  });

  test("keeps empty payloads and starts wherever the first append says", async () => {
    const { journal } = await open();
    const written = [
      { opNum: 5_000_000_000, payload: new Uint8Array(0) },
      { opNum: 5_000_000_001, payload: new Uint8Array([1]) },
    ];
    await journal.append(written);
    expectSameRecords((await reopen(journal)).records, written);
    expect(await segmentNames(directory)).toEqual([segmentFileName(5_000_000_000)]);
  });

  test("stores the payload as it was when append was called", async () => {
    const { journal } = await open();
    const payload = new Uint8Array([1, 2, 3]);
    const appended = journal.append([{ opNum: 1, payload }]);
    payload.fill(9);
    await appended;
    expect((await reopen(journal)).records[0]?.payload).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("a framed record is written in place: the header goes into its room, the payload is not copied", async () => {
    const { journal } = await open();
    const payloads = recordsFrom(1, 3).map((record) => record.payload);
    const framedRecords = payloads.map((payload, index) => {
      const framed = new Uint8Array(recordHeaderBytes + payload.length);
      framed.set(payload, recordHeaderBytes);
      return { opNum: index + 1, payload: framed.subarray(recordHeaderBytes), framed };
    });
    // Mixed with a plain record, which is copied as before.
    await journal.append([...framedRecords, ...recordsFrom(4, 1)]);
    const seed = await recordSeedOfFile(join(directory, segmentFileName(1)));
    for (const [index, record] of framedRecords.entries()) {
      // The same bytes a copying append would have written, in the caller's buffer.
      expect(record.framed).toEqual(encodeRecord(seed, index + 1, payloads[index]!, 1));
    }
    expectSameRecords((await reopen(journal)).records, recordsFrom(1, 4));
  });

  test("a framed record with a tail: the tail follows by reference, and the files hold what a copying append writes", async () => {
    // Payloads cut at every few bytes into a framed head and tail pieces (some empty),
    // mixed with plain records, across segments of four records each.
    const { journal } = await open(smallSegments);
    // Removed however the test ends: the afterEach hook removes only `directory`.
    const copyDirectory = `${directory}-copy`;
    try {
      const copying = await Journal.open({ directory: copyDirectory, ...smallSegments });
      openJournals.add(copying.journal);
      const plain = smallRecords(1, 24);
      const records = plain.map((record, index): JournalRecord => {
        if (index % 3 === 2) return record;
        const { payload } = record;
        const cuts = [index % 7, 10 + index, 40, 40 + (index % 5), payload.length];
        const head = payload.subarray(0, cuts[0]);
        const framed = new Uint8Array(recordHeaderBytes + head.length);
        framed.set(head, recordHeaderBytes);
        const tail = cuts.slice(1).map((end, at) => payload.subarray(cuts[at], end));
        return {
          opNum: record.opNum,
          payload: framed.subarray(recordHeaderBytes),
          framed,
          tail,
        };
      });
      for (let at = 0; at < records.length; at += 5) {
        await journal.append(records.slice(at, at + 5));
        await copying.journal.append(plain.slice(at, at + 5));
      }
      // The runway extensions the appends started, before comparing the files.
      await Promise.all([journal.settled(), copying.journal.settled()]);
      expect(journal.bytes).toBe(copying.journal.bytes);
      const ours = await snapshotFiles(directory);
      const theirs = await snapshotFiles(copyDirectory);
      expect([...ours.keys()]).toEqual([...theirs.keys()]);
      // Each segment has a nonce of its own, so the headers and checksums differ: the
      // records, where they start, their sync starts and the file lengths do not.
      for (const [name, bytes] of ours) {
        const other = theirs.get(name)!;
        expect(bytes.length, name).toBe(other.length);
        const scan = scanSegment(bytes);
        expect(scan.damage === undefined || scan.damage.offset === scan.intactBytes).toBe(true);
        const outline = (records: ScannedRecord[]) =>
          records.map(({ opNum, syncStartOpNum, offset, payload }) => ({
            opNum,
            syncStartOpNum,
            offset,
            payload: Buffer.from(payload).toString("hex"),
          }));
        expect(outline(scan.records), name).toEqual(outline(scanSegment(other).records));
      }
      expectSameRecords((await reopen(journal, smallSegments)).records, plain);
      await copying.journal.close();
      openJournals.delete(copying.journal);
    } finally {
      await rm(copyDirectory, { recursive: true, force: true });
    }
  });

  test("continues the last segment after a reopen", async () => {
    const { journal } = await open();
    await journal.append(recordsFrom(1, 5));
    const { journal: reopened } = await reopen(journal);
    await reopened.append(recordsFrom(6, 5));
    expect(await segmentNames(directory)).toHaveLength(1);
    expectSameRecords((await reopen(reopened)).records, recordsFrom(1, 10));
  });
});

describe("group commit", () => {
  test("200 concurrent appends all resolve, in call order, with few syncs", async () => {
    const { journal } = await open();
    const resolved: number[] = [];
    const appends = recordsFrom(1, 200).map((record) =>
      journal.append([record]).then(() => resolved.push(record.opNum)),
    );
    expect(journal.lastOpNum).toBe(200);
    await Promise.all(appends);
    expect(resolved).toEqual(recordsFrom(1, 200).map((record) => record.opNum));
    expect(journal.syncCount).toBeGreaterThan(0);
    expect(journal.syncCount).toBeLessThanOrEqual(5);
    expectSameRecords((await reopen(journal)).records, recordsFrom(1, 200));
  });

  test("appends that arrive after a batch has started share the next batch's sync", async () => {
    const { journal } = await open();
    const first = journal.append(recordsFrom(1, 1));
    // The first batch starts its operation at once; the others arrive after it sealed.
    await new Promise((resolve) => setImmediate(resolve));
    const later = recordsFrom(2, 100).map((record) => journal.append([record]));
    await Promise.all([first, ...later]);
    await journal.settled();
    // The segment's creation syncs the directory and its header once each; then one data
    // sync per batch, and one per runway extension, written alongside the batches: the
    // first batch's, and the second's (its 100 records outran the first's zeros) unless
    // the first was still being written when the second batch was sealed.
    expect(journal.syncCount).toBeGreaterThanOrEqual(5);
    expect(journal.syncCount).toBeLessThanOrEqual(6);
    expectSameRecords((await reopen(journal)).records, recordsFrom(1, 101));
  });

  test("concurrent appenders share syncs: far fewer syncs than records", async () => {
    const { journal } = await open();
    let opNumNext = 1;
    const appender = async () => {
      for (let round = 0; round < 25; round++) {
        const opNum = opNumNext++;
        await journal.append([{ opNum, payload: payloadForOpNum(opNum) }]);
      }
    };
    await Promise.all(Array.from({ length: 16 }, appender));
    expect(journal.lastOpNum).toBe(400);
    expect(journal.syncCount).toBeLessThan(100);
    expectSameRecords((await reopen(journal)).records, recordsFrom(1, 400));
  });
});

describe("segments", () => {
  test("roll past segmentBytesMax, and a reopen reads all of them", async () => {
    const { journal } = await open(smallSegments);
    for (let opNum = 1; opNum <= 40; opNum += 3) await journal.append(smallRecords(opNum, 3));
    expect(journal.segmentCount).toBe(11); // 42 records, four per segment
    const names = await segmentNames(directory);
    expect(names).toEqual([1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41].map(segmentFileName));
    await journal.settled();
    expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
    for (const name of names.slice(0, -1)) {
      expect((await readFile(join(directory, name))).length).toBeLessThanOrEqual(512);
    }
    const { records, journal: reopened } = await reopen(journal, smallSegments);
    expectSameRecords(records, smallRecords(1, 42));
    expect(reopened.segmentCount).toBe(11);
  });

  test("releaseThrough deletes exactly the segments whose every op is at or below it", async () => {
    const { journal } = await open(smallSegments);
    await journal.append(smallRecords(1, 18)); // segments 1, 5, 9, 13, 17
    await journal.releaseThrough(3);
    expect(journal.segmentCount).toBe(5);
    await journal.releaseThrough(10);
    expect(await segmentNames(directory)).toEqual([9, 13, 17].map(segmentFileName));
    expect(journal.firstOpNum).toBe(9);
    expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
    await journal.append(smallRecords(19, 2));
    const { records, journal: reopened } = await reopen(journal, smallSegments);
    expectSameRecords(records, smallRecords(9, 12));
    expect(reopened.firstOpNum).toBe(9);
  });

  test("releasing every op keeps the last segment and its place in the op sequence", async () => {
    const { journal } = await open(smallSegments);
    await journal.append(smallRecords(1, 6));
    await journal.releaseThrough(6);
    expect(await segmentNames(directory)).toEqual([segmentFileName(5)]);
    const { journal: reopened } = await reopen(journal, smallSegments);
    expect(reopened.lastOpNum).toBe(6);
    await expect(reopened.append(smallRecords(8, 1))).rejects.toThrow("the next op must be 7");
  });
});

describe("truncateAfter", () => {
  test("drops a tail that spans segments; appends continue from the new last op", async () => {
    const { journal } = await open(smallSegments);
    await journal.append(smallRecords(1, 14)); // segments 1, 5, 9, 13
    await journal.truncateAfter(6);
    expect(journal.lastOpNum).toBe(6);
    expect(await segmentNames(directory)).toEqual([1, 5].map(segmentFileName));
    expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
    const replacement = recordsFrom(7, 5, 50);
    await journal.append(replacement);
    const { records } = await reopen(journal, smallSegments);
    expectSameRecords(records, [...smallRecords(1, 6), ...replacement]);
  });

  test("of everything empties the journal, which then starts at any op", async () => {
    const { journal } = await open(smallSegments);
    await journal.append(smallRecords(10, 9));
    await journal.truncateAfter(9);
    expect(await segmentNames(directory)).toEqual([]);
    expect(journal.lastOpNum).toBeUndefined();
    await journal.append(smallRecords(3, 2));
    expectSameRecords((await reopen(journal, smallSegments)).records, smallRecords(3, 2));
  });

  test("is ordered with the appends called around it", async () => {
    const { journal } = await open(smallSegments);
    const calls = [
      journal.append(smallRecords(1, 6)),
      journal.truncateAfter(2),
      journal.append(recordsFrom(3, 3, 10)),
    ];
    expect(journal.lastOpNum).toBe(5);
    await Promise.all(calls);
    const { records } = await reopen(journal, smallSegments);
    expectSameRecords(records, [...smallRecords(1, 2), ...recordsFrom(3, 3, 10)]);
  });
});

describe("bad usage", () => {
  async function journalWithTenRecords() {
    const recovered = await open(smallSegments);
    await recovered.journal.append(smallRecords(1, 10));
    // An append does not wait for the runway extension its batch started: without this,
    // one still running when the test takes its "before" copy of the files changes them
    // after it (seen on a loaded machine), and "leaves the files as they were" fails.
    await recovered.journal.settled();
    return recovered.journal;
  }

  test.each<[string, (journal: Journal) => Promise<unknown>, string]>([
    ["a gap", (journal) => journal.append(smallRecords(12, 1)), "the next op must be 11"],
    ["a duplicate", (journal) => journal.append(smallRecords(10, 1)), "the next op must be 11"],
    ["a step back", (journal) => journal.append(smallRecords(3, 1)), "the next op must be 11"],
    [
      "an oversized payload",
      (journal) =>
        journal.append([{ opNum: 11, payload: new Uint8Array(journalLimits.payloadBytesMax + 1) }]),
      "is over the limit of 9437184",
    ],
    [
      "a framed buffer that is not its payload with room in front",
      (journal) => {
        const framed = new Uint8Array(recordHeaderBytes + 8);
        return journal.append([
          { opNum: 11, payload: framed.subarray(recordHeaderBytes - 1), framed },
        ]);
      },
      "its framed buffer is not its payload",
    ],
    [
      "a tail without a framed payload",
      (journal) =>
        journal.append([{ opNum: 11, payload: new Uint8Array(8), tail: [new Uint8Array(8)] }]),
      "its tail is not a list of byte arrays after a framed payload",
    ],
    [
      "tail checksums that are not one CRC per tail part",
      (journal) => appendWithTailChecksums(journal, [1, 2]),
      "its tail checksums are not one 32-bit CRC",
    ],
    [
      "a tail checksum that is no 32-bit CRC",
      (journal) => appendWithTailChecksums(journal, [2 ** 32]),
      "its tail checksums are not one 32-bit CRC",
    ],
    [
      "a tail that takes the payload over the limit",
      (journal) => {
        const framed = new Uint8Array(recordHeaderBytes + 8);
        return journal.append([
          {
            opNum: 11,
            payload: framed.subarray(recordHeaderBytes),
            framed,
            tail: [new Uint8Array(journalLimits.payloadBytesMax)],
          },
        ]);
      },
      "is over the limit of",
    ],
    ["a negative truncation", (journal) => journal.truncateAfter(-1), "not a non-negative"],
    ["a negative release", (journal) => journal.releaseThrough(-5), "not a non-negative"],
    [
      "a truncation of released ops",
      async (journal) => {
        await journal.releaseThrough(6);
        return journal.truncateAfter(5);
      },
      "ops through 6 are released",
    ],
  ])(
    "%s is refused with a JournalUsageError and leaves the files as they were",
    async (_, misuse, message) => {
      const journal = await journalWithTenRecords();
      const before = await snapshotFiles(directory);
      const attempt = misuse(journal);
      await expect(attempt).rejects.toThrow(JournalUsageError);
      await expect(attempt).rejects.toThrow(message);
      // Every file is as it was (a release called before the misuse may have deleted some).
      for (const [name, bytes] of await snapshotFiles(directory)) {
        expect(bytes.equals(before.get(name)!), name).toBe(true);
      }
      // The journal still works, and a reopen reads contiguous records through the new one.
      await journal.append(smallRecords(11, 1));
      const { records } = await reopen(journal, smallSegments);
      expect(records.at(-1)?.opNum).toBe(11);
      expectSameRecords(records, smallRecords(records[0]!.opNum, records.length));
    },
  );

  test("an append, truncation or release after close is refused; close is idempotent", async () => {
    const { journal } = await open();
    await journal.append(recordsFrom(1, 2));
    await journal.close();
    const before = await snapshotFiles(directory);
    await expect(journal.append(recordsFrom(3, 1))).rejects.toThrow(
      /cannot append: the journal in .* is closed/,
    );
    await expect(journal.truncateAfter(1)).rejects.toThrow(JournalUsageError);
    await expect(journal.releaseThrough(1)).rejects.toThrow(JournalUsageError);
    await journal.close();
    expect(await snapshotFiles(directory)).toEqual(before);
    expectSameRecords((await reopen(journal)).records, recordsFrom(1, 2));
  });

  test("close waits for the appends called before it", async () => {
    const { journal } = await open();
    const appended = journal.append(recordsFrom(1, 50));
    await journal.close();
    await appended;
    expectSameRecords((await reopen(journal)).records, recordsFrom(1, 50));
  });
});

describe("recovery from a torn tail", () => {
  test("cuts a half-written last record and reports the bytes dropped", async () => {
    const { journal } = await open();
    await journal.append(recordsFrom(1, 5, 100));
    await journal.close();
    const path = join(directory, segmentFileName(1));
    // The file as a crash inside the last record's append leaves it without a runway.
    const size = await cutRunway(path);
    await truncate(path, size - 7);
    const lastRecordBytes = recordHeaderBytes + payloadForOpNum(5, 100).length;
    const { journal: reopened, records, tornTailBytes } = await open();
    expectSameRecords(records, recordsFrom(1, 4, 100));
    expect(tornTailBytes).toBe(lastRecordBytes - 7);
    expect((await readFile(path)).length).toBe(size - lastRecordBytes);
    await reopened.append(recordsFrom(5, 1, 100));
    expectSameRecords((await reopen(reopened)).records, recordsFrom(1, 5, 100));
  });

  test("drops a damaged last record of the last segment as torn", async () => {
    const { journal } = await open(smallSegments);
    await journal.append(smallRecords(1, 6)); // segments 1 and 5
    await journal.close();
    const path = join(directory, segmentFileName(5));
    await flipByte(path, segmentHeaderBytes + 120 + 60);
    const size = (await readFile(path)).length;
    const { records, tornTailBytes } = await open(smallSegments);
    expectSameRecords(records, smallRecords(1, 5));
    // The damaged record and the runway of zeros after it are cut.
    expect(tornTailBytes).toBe(size - segmentHeaderBytes - 120);
    expect((await readFile(path)).length).toBe(segmentHeaderBytes + 120);
  });

  test.each([0, 1, segmentHeaderBytes - 1, segmentHeaderBytes])(
    "deletes a last segment of %i bytes, which holds no record",
    async (length) => {
      const { journal } = await open(smallSegments);
      await journal.append(smallRecords(1, 6));
      await journal.close();
      const path = join(directory, segmentFileName(5));
      await truncate(path, length);
      const { journal: reopened, records, tornTailBytes } = await open(smallSegments);
      expectSameRecords(records, smallRecords(1, 4));
      expect(tornTailBytes).toBe(length);
      expect(await segmentNames(directory)).toEqual([segmentFileName(1)]);
      // The next segment is created afresh when the first one is full again.
      await reopened.append(smallRecords(5, 2));
      expectSameRecords((await reopen(reopened, smallSegments)).records, smallRecords(1, 6));
    },
  );
});

describe("recovery refuses corruption", () => {
  async function threeSegments() {
    const { journal } = await open(smallSegments);
    await journal.append(smallRecords(1, 10)); // segments 1, 5, 9
    await journal.close();
    openJournals.delete(journal);
  }

  async function expectCorrupt(path: string, offset: number, reason: string | RegExp) {
    const before = await snapshotFiles(directory);
    const opening = Journal.open({ directory, ...smallSegments });
    await expect(opening).rejects.toThrow(JournalCorruptError);
    const error = (await opening.catch((caught: unknown) => caught)) as JournalCorruptError;
    expect(error.name).toBe("JournalCorruptError");
    expect(error.path).toBe(path);
    expect(error.offset).toBe(offset);
    expect(error.reason).toMatch(reason);
    expect(error.message).toContain(path);
    expect(error.message).toContain(`byte offset ${offset}`);
    // Nothing was changed, and the directory can be opened (and refused) again.
    expect(await snapshotFiles(directory)).toEqual(before);
  }

  test("a flipped byte in a record of a segment that is not the last", async () => {
    await threeSegments();
    const path = join(directory, segmentFileName(5));
    await flipByte(path, segmentHeaderBytes + 120 + 50);
    await expectCorrupt(
      path,
      segmentHeaderBytes + 120,
      /checksum .* in a segment that is not the last/,
    );
  });

  test("a flipped byte in the header of a segment that is not the last", async () => {
    await threeSegments();
    const path = join(directory, segmentFileName(1));
    await flipByte(path, 13);
    await expectCorrupt(path, 0, /segment header checksum/);
  });

  test("a segment that is not the last cut short", async () => {
    await threeSegments();
    const path = join(directory, segmentFileName(5));
    await truncate(path, segmentHeaderBytes + 120 + 10);
    await expectCorrupt(path, segmentHeaderBytes + 120, /record header is incomplete/);
  });

  test("a flipped byte in the last segment with an intact record of a later commit after it", async () => {
    const { journal } = await open();
    await journal.append(smallRecords(1, 2));
    await journal.append(smallRecords(3, 2)); // a later group commit, after a sync
    await journal.close();
    openJournals.delete(journal);
    const path = join(directory, segmentFileName(1));
    await flipByte(path, segmentHeaderBytes + 120 + 30);
    await expectCorrupt(
      path,
      segmentHeaderBytes + 120,
      `yet an intact record written after a later sync follows at offset ${segmentHeaderBytes + 240}, so this is damage, not a torn write`,
    );
  });

  test("a missing segment in the middle, which leaves a gap in the ops", async () => {
    await threeSegments();
    await rename(join(directory, segmentFileName(5)), join(directory, "segment-5.moved"));
    await expectCorrupt(
      join(directory, segmentFileName(9)),
      0,
      "the segment starts at op 9, but the segment before it ends at op 4",
    );
  });

  test("a segment whose name disagrees with its header", async () => {
    await threeSegments();
    const path = join(directory, segmentFileName(10));
    await rename(join(directory, segmentFileName(9)), path);
    await expectCorrupt(path, 0, "the segment header gives first op 9, but the file name gives 10");
  });

  test("an intact record with the wrong op at the end of the last segment", async () => {
    await threeSegments();
    const path = join(directory, segmentFileName(9));
    const end = await cutRunway(path);
    const bytes = await readFile(path);
    const record = encodeRecord(await recordSeedOfFile(path), 12, new Uint8Array(4));
    await writeFile(path, Buffer.concat([bytes, record]));
    await expectCorrupt(path, end, "the record holds op 12 where op 11 belongs");
  });

  test("an intact record with the wrong op in the last segment's runway", async () => {
    await threeSegments();
    const path = join(directory, segmentFileName(9));
    const bytes = await readFile(path);
    const end = await recordsEndOf(path);
    expect(bytes.length).toBeGreaterThan(end);
    bytes.set(encodeRecord(await recordSeedOfFile(path), 12, new Uint8Array(4)), end);
    await writeFile(path, bytes);
    await expectCorrupt(path, end, "the record holds op 12 where op 11 belongs");
  });
});
