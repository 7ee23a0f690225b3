// Properties of the journal on real files, over random inputs:
// - a torn tail, made by cutting the last segment anywhere, by overwriting its end (past
//   its header, which is synced before any record) with garbage, or by losing any pages of
//   the last group commit while its later pages reach the disk (a crash before its
//   fdatasync returned), with or without its runway of zeros, is recovered to exactly the
//   records wholly before the damage, with the dropped bytes reported (none for a cut
//   inside the runway), and the journal then takes appends that survive a reopen. Some
//   payloads hold a record-shaped copy, as a tenant could write, of a record for an op
//   just ahead that began a sync region of its own: were it taken for a record, a torn
//   tail would read as corruption;
// - random sequences of appends, truncations, releases and reopens agree with a model
//   of the records, and the journal's size and segment count agree with the files; no
//   segment but the last has bytes after its last record, and a runway never reaches
//   past segmentBytesMax. Run with tiny segments (many rolls, runways capped by the
//   segment) and with segments large enough for runways that grow over several steps.

import { readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { recordHeaderBytes, segmentHeaderBytes } from "../src/journal/constants.ts";
import { parseSegmentFileName } from "../src/journal/format.ts";
import { Journal, type JournalRecord } from "../src/journal/index.ts";
import {
  cutRunway,
  expectSameRecords,
  recordsEndOf,
  recordWithoutNonce,
  segmentBytesOnDisk,
  segmentNames,
  temporaryDirectory,
} from "./fixtures/journal-files.ts";

const segmentBytesMax = 512;

function recordsOfSizes(firstOpNum: number, sizes: readonly number[]): JournalRecord[] {
  return sizes.map((size, index) => {
    const opNum = firstOpNum + index;
    const payload = new Uint8Array(size);
    for (let byte = 0; byte < size; byte++) payload[byte] = (opNum * 31 + byte * 7) & 0xff;
    return { opNum, payload };
  });
}

/**
 * A record-shaped copy to plant in a payload: in which record (counted back from the last,
 * where the torn commit is), where in it, and how many ops ahead of its own.
 */
interface PlantedCopy {
  fromLast: number;
  at: number;
  ahead: number;
}

/**
 * Plants in the payload of record `copy.fromLast` before the last (modulo the count) a record framed
 * without any segment's nonce, as a tenant could write it, for the op `ahead` past the
 * record's own, beginning a sync region of its own. Payloads too small to hold one keep
 * their bytes.
 */
function plantCopies(records: JournalRecord[], copies: readonly PlantedCopy[]): void {
  for (const copy of copies) {
    const record = records[records.length - 1 - (copy.fromLast % records.length)]!;
    const opNum = record.opNum + copy.ahead;
    const planted = recordWithoutNonce(opNum, new Uint8Array(copy.ahead).fill(opNum & 0xff));
    const room = record.payload.length - planted.length;
    if (room < 0) continue;
    record.payload.set(planted, Math.floor(copy.at * room));
  }
}

async function withDirectory(run: (directory: string) => Promise<void>): Promise<void> {
  const { path, remove } = await temporaryDirectory();
  try {
    await run(path);
  } finally {
    await remove();
  }
}

describe("a torn tail", () => {
  const damageArbitrary = fc.record({
    sizes: fc.array(fc.integer({ min: 0, max: 120 }), { minLength: 1, maxLength: 40 }),
    batchSize: fc.integer({ min: 1, max: 8 }),
    /** Where the damage starts, as a fraction of the last segment's length. */
    position: fc.double({ min: 0, max: 1, noNaN: true }),
    mode: fc.constantFrom("cut", "garbage", "pages"),
    /** XOR mask for garbage mode; every byte is made odd, so every byte changes. */
    mask: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    /** Garbage mode also appends these bytes past the old end. */
    extra: fc.uint8Array({ maxLength: 64 }),
    /** Keep the runway of zeros past the last record (else cut it first, as an old file). */
    runway: fc.boolean(),
    /** Pages mode: the page size, and which pages of the last commit are lost (cycled). */
    pageBytes: fc.constantFrom(16, 64, 256),
    lostPages: fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
    /** Pages mode: a page lost for sure, as a fraction of the last commit's pages. */
    lostPage: fc.double({ min: 0, max: 1, noNaN: true }),
    copies: fc.array(
      fc.record({
        fromLast: fc.nat({ max: 7 }),
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        ahead: fc.integer({ min: 1, max: 3 }),
      }),
      { minLength: 1, maxLength: 8 },
    ),
  });

  test("recovers exactly the records wholly before the damage, then takes appends", async () => {
    await fc.assert(
      fc.asyncProperty(damageArbitrary, (damage) =>
        withDirectory(async (directory) => {
          const written = recordsOfSizes(1, damage.sizes);
          plantCopies(written, damage.copies);
          const { journal } = await Journal.open({ directory, segmentBytesMax });
          let lastCommitFirstOpNum = 1;
          for (let start = 0; start < written.length; start += damage.batchSize) {
            lastCommitFirstOpNum = written[start]!.opNum;
            await journal.append(written.slice(start, start + damage.batchSize));
          }
          await journal.close();

          const names = await segmentNames(directory);
          const lastName = names.at(-1)!;
          const lastFirstOpNum = parseSegmentFileName(lastName)!;
          const path = join(directory, lastName);
          if (!damage.runway) await cutRunway(path);
          const original = await readFile(path);
          const recordsEnd = await recordsEndOf(path);
          // The end offset of each record of the last segment, from the format alone.
          const recordEnds: number[] = [];
          let end = segmentHeaderBytes;
          for (const record of written.slice(lastFirstOpNum - 1)) {
            end += recordHeaderBytes + record.payload.length;
            recordEnds.push(end);
          }
          expect(end).toBe(recordsEnd);
          if (!damage.runway) expect(original.length).toBe(recordsEnd);

          let position = Math.floor(damage.position * original.length);
          let fileBytes: number;
          /** Pages mode: the file as the crash left it. */
          let torn: Buffer | undefined;
          if (damage.mode === "cut") {
            await truncate(path, position);
            fileBytes = position;
          } else if (damage.mode === "garbage") {
            // The header was synced before the records (format.ts): a crash leaves it.
            position = Math.max(position, segmentHeaderBytes);
            const damaged = Buffer.concat([original, damage.extra]);
            for (let offset = position; offset < original.length; offset++) {
              const maskByte = damage.mask[(offset - position) % damage.mask.length]!;
              damaged[offset] = damaged[offset]! ^ (maskByte | 1);
            }
            await writeFile(path, damaged);
            fileBytes = damaged.length;
          } else {
            // The last commit's part in this segment: commits before it were synced, and
            // so was the header, and its part in an earlier segment (before the roll).
            const commitFirstOpNum = Math.max(lastCommitFirstOpNum, lastFirstOpNum);
            const commitStart =
              commitFirstOpNum === lastFirstOpNum
                ? segmentHeaderBytes
                : recordEnds[commitFirstOpNum - lastFirstOpNum - 1]!;
            const { pageBytes } = damage;
            const firstPage = Math.floor(commitStart / pageBytes);
            const pages = Math.ceil(recordsEnd / pageBytes) - firstPage;
            const lostForSure = firstPage + Math.floor(damage.lostPage * pages);
            const damaged = Buffer.from(original);
            for (let page = firstPage; page < firstPage + pages; page++) {
              const lost = page === lostForSure || damage.lostPages[page % damage.lostPages.length];
              if (!lost) continue;
              const end = Math.min((page + 1) * pageBytes, damaged.length);
              damaged.fill(0, Math.max(commitStart, page * pageBytes), end);
            }
            // The damage starts at the first byte that changed (a lost page can hold zeros).
            const changed = damaged.findIndex((byte, offset) => byte !== original[offset]);
            position = changed === -1 ? original.length : changed;
            await writeFile(path, damaged);
            fileBytes = damaged.length;
            torn = damaged;
          }

          const keptInLast = recordEnds.filter((recordEnd) => recordEnd <= position).length;
          const keptBytes = keptInLast === 0 ? 0 : recordEnds[keptInLast - 1]!;
          const kept = written.slice(0, lastFirstOpNum - 1 + keptInLast);
          const recovered = await Journal.open({ directory, segmentBytesMax });
          expectSameRecords(recovered.records, kept);
          // A cut inside the runway leaves every record and zeros after them: no damage.
          const cutInRunway = damage.mode === "cut" && position >= recordsEnd;
          // Garbage from the very end with nothing appended changes no byte (position 1
          // exactly): the runway's zeros stay, and they are no damage either.
          const unchanged =
            damage.mode === "garbage" && position >= original.length && damage.extra.length === 0;
          // Lost pages that changed no record byte, or that left zeros from the start of the
          // first damaged record to the end after a record that stays: the runway, kept.
          const keptAsRunway =
            torn !== undefined &&
            (position >= recordsEnd ||
              (keptInLast > 0 && torn.subarray(keptBytes).every((byte) => byte === 0)));
          const nothingDropped = cutInRunway || unchanged || keptAsRunway;
          expect(recovered.tornTailBytes).toBe(nothingDropped ? 0 : fileBytes - keptBytes);
          if (cutInRunway) expect((await readFile(path)).length).toBe(position);
          // Damage that starts inside a record (or garbage anywhere) always drops bytes; a
          // cut exactly at a record boundary drops none.
          const damagedInsideRecord =
            damage.mode === "cut"
              ? position > keptBytes && position < recordsEnd
              : damage.mode === "garbage"
                ? position < original.length || damage.extra.length > 0
                : !keptAsRunway;
          if (damagedInsideRecord) expect(recovered.tornTailBytes).toBeGreaterThan(0);
          expect(recovered.journal.bytes).toBe(await segmentBytesOnDisk(directory));
          expect(await segmentNames(directory)).toEqual(
            keptInLast === 0 ? names.slice(0, -1) : names,
          );

          const more = recordsOfSizes(kept.length + 1, [5, 300, 0]);
          await recovered.journal.append(more);
          await recovered.journal.close();
          const reopened = await Journal.open({ directory, segmentBytesMax });
          expectSameRecords(reopened.records, [...kept, ...more]);
          expect(reopened.tornTailBytes).toBe(0);
          await reopened.journal.close();
        }),
      ),
      { numRuns: 120 },
    );
  });
});

type Step =
  | { kind: "append"; sizes: number[] }
  | { kind: "concurrentAppends"; sizes: number[] }
  | { kind: "truncate"; position: number }
  | { kind: "release"; position: number }
  | { kind: "reopen" };

const stepArbitrary = (sizeMax: number): fc.Arbitrary<Step> => {
  const sizesArbitrary = fc.array(fc.integer({ min: 0, max: sizeMax }), {
    minLength: 1,
    maxLength: 6,
  });
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ kind: fc.constant("append" as const), sizes: sizesArbitrary }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("concurrentAppends" as const),
        sizes: sizesArbitrary,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("truncate" as const),
        position: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("release" as const),
        position: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: "reopen" as const }) },
  );
};

/**
 * Asserts the files' shape: no segment but the last has a byte after its last record,
 * and the last one's runway stops at segmentBytesMax (or at its records, if past it).
 */
async function expectRunwayOnlyInLast(directory: string, segmentBytesMax: number) {
  const names = await segmentNames(directory);
  for (const [index, name] of names.entries()) {
    const path = join(directory, name);
    const size = (await readFile(path)).length;
    const recordsEnd = await recordsEndOf(path);
    if (index < names.length - 1) expect(size, name).toBe(recordsEnd);
    else expect(size, name).toBeLessThanOrEqual(Math.max(segmentBytesMax, recordsEnd));
  }
}

describe.each([
  { segmentBytesMax, sizeMax: 150, numRuns: 60 },
  // Runways of 64, 128 and 256 KiB steps, cut at rolls and truncations.
  { segmentBytesMax: 384 * 1024, sizeMax: 40 * 1024, numRuns: 15 },
])(
  "random operations against a model, segmentBytesMax $segmentBytesMax",
  ({ segmentBytesMax, sizeMax, numRuns }) => {
    test("agree on the records, the first and last op, the size and the segments", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(stepArbitrary(sizeMax), { minLength: 1, maxLength: 30 }),
          fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 0, max: 2 ** 40 })),
          (steps, firstOpNum) =>
            withDirectory(async (directory) => {
              let { journal } = await Journal.open({ directory, segmentBytesMax });
              /** The records the journal must hold: a suffix of all appended, after truncations. */
              let model: JournalRecord[] = [];
              let releasedThrough: number | undefined;
              const nextOpNum = () => (model.at(-1)?.opNum ?? firstOpNum - 1) + 1;

              for (const step of steps) {
                const modelFirst = model[0]?.opNum;
                const modelLast = model.at(-1)?.opNum;
                switch (step.kind) {
                  case "append": {
                    const records = recordsOfSizes(nextOpNum(), step.sizes);
                    await journal.append(records);
                    model.push(...records);
                    break;
                  }
                  case "concurrentAppends": {
                    const records = recordsOfSizes(nextOpNum(), step.sizes);
                    await Promise.all(records.map((record) => journal.append([record])));
                    model.push(...records);
                    break;
                  }
                  case "truncate": {
                    if (modelFirst === undefined || modelLast === undefined) break;
                    // Op numbers are never negative, so a journal starting at op 0 cannot be
                    // emptied by truncateAfter(-1).
                    const low = Math.max(modelFirst - 1, releasedThrough ?? 0, 0);
                    const opNum = low + Math.floor(step.position * (modelLast - low + 1));
                    await journal.truncateAfter(opNum);
                    model = model.filter((record) => record.opNum <= opNum);
                    if (model.length === 0) releasedThrough = undefined;
                    break;
                  }
                  case "release": {
                    if (modelFirst === undefined || modelLast === undefined) break;
                    const span = modelLast - modelFirst + 3;
                    const opNum = Math.max(0, modelFirst - 1 + Math.floor(step.position * span));
                    await journal.releaseThrough(opNum);
                    const first = journal.firstOpNum!;
                    // Every record above the op stays; the last segment stays whatever the op.
                    expect(first).toBeGreaterThanOrEqual(modelFirst);
                    expect(first).toBeLessThanOrEqual(
                      Math.max(modelFirst, Math.min(opNum + 1, modelLast)),
                    );
                    // And no segment that could have gone stayed: the first one left either
                    // is the last one or holds an op above the released one.
                    const starts = (await segmentNames(directory)).map(
                      (name) => parseSegmentFileName(name)!,
                    );
                    if (starts.length >= 2) expect(starts[1]! - 1).toBeGreaterThan(opNum);
                    model = model.filter((record) => record.opNum >= first);
                    releasedThrough = Math.max(releasedThrough ?? -1, Math.min(opNum, modelLast));
                    break;
                  }
                  case "reopen": {
                    await journal.close();
                    const recovered = await Journal.open({ directory, segmentBytesMax });
                    expect(recovered.tornTailBytes).toBe(0);
                    expectSameRecords(recovered.records, model);
                    journal = recovered.journal;
                    // Recovery forgets releases; the files still hold what the model holds.
                    releasedThrough = undefined;
                    break;
                  }
                }
                expect(journal.firstOpNum).toBe(model[0]?.opNum);
                expect(journal.lastOpNum).toBe(model.at(-1)?.opNum);
                // The runway extension an append started may still be running.
                await journal.settled();
                expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
                await expectRunwayOnlyInLast(directory, segmentBytesMax);
                expect(journal.segmentCount).toBe((await segmentNames(directory)).length);
              }
              await journal.close();
              const { journal: reopened, records } = await Journal.open({
                directory,
                segmentBytesMax,
              });
              expectSameRecords(records, model);
              await reopened.close();
            }),
        ),
        { numRuns },
      );
    });
  },
);
