// The journal when the file system fails. node:fs/promises is wrapped so that a test can
// make the next fdatasync, writev or readdir fail the way a dying disk does (EIO). After
// any such failure the journal must reject every affected append, take no more work, and
// leave files from which a reopen recovers every record acknowledged before the failure.
// Segment files are opened O_DSYNC, so an append's sync is its writev: a failed sync of
// an append shows as a failed writev, and fdatasync is left to truncation. The wrapper
// also counts calls, for the test that a group commit is one file call. A runway
// extension is a writev of zeros only: "writevOfZeros" fails just those. A failure
// reports EIO unless a test sets another errno (ENOSPC, EDQUOT: a full disk or quota),
// and a failing writev of zeros may first write part of its zeros, as a short write.
//
// A journal that failed refuses to open again in the same boot of the machine: the page
// cache may serve bytes of the failed writes that never reached the disk (failed-
// marker.ts). The tests give boot ids: `thisBoot` for the process that failed and a
// reopen without a reboot, `nextBoot` for one after a reboot, when the disk is what
// recovery reads.

import type * as FileSystem from "node:fs";
import { constants, existsSync } from "node:fs";
import type * as FilePromises from "node:fs/promises";
import { stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import {
  recordHeaderBytes,
  runwayRetryAfterBytes,
  runwayStepFirstBytes,
} from "../src/journal/constants.ts";
import { removeDirectory as removeJournalDirectory } from "../src/journal/files.ts";
import {
  Journal,
  JournalFailedError,
  type JournalRecord,
  JournalUntrustedError,
} from "../src/journal/index.ts";
import {
  expectSameRecords,
  recordsEndOf,
  recordsFrom,
  segmentBytesOnDisk,
  segmentNames,
  temporaryDirectory,
} from "./fixtures/journal-files.ts";

type FaultyOperation = "datasync" | "writev" | "readdir";

/** The journal's record of a failure (failed-marker.ts), by its name on disk. */
const failedMarkerName = "failed-on-boot";
const thisBoot = "boot-before";
const mebibyte = 1024 * 1024;
const nextBoot = "boot-after";

const faults = vi.hoisted(() => ({
  failing: new Set<string>(),
  /** Calls on file handles, by method name. */
  calls: new Map<string, number>(),
  /** The flags of every open, in order. */
  openFlags: [] as unknown[],
  /** The errno a failing call reports. */
  errno: "EIO",
  /** Bytes a failing writev of zeros writes first, as a short write; then it fails. */
  zerosWrittenFirst: 0,
  /** Writev calls of zeros only (runway extensions), failed or not. */
  zeroWrites: 0,
  /** While set, a writev of zeros waits for it before writing: an extension held up. */
  holdZeros: undefined as Promise<void> | undefined,
  /** While set, opening the failure's record waits for it: the record held up. */
  holdMarker: undefined as Promise<void> | undefined,
  /** Writes to segment files in order: "zeros", "records" and "records written". */
  writes: [] as string[],
  /** The file handles zeros and records were written through (writev on a handle). */
  zeroHandles: new Set<unknown>(),
  recordHandles: new Set<unknown>(),
}));

const errnoMessages: Record<string, string> = {
  EIO: "i/o error",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EMFILE: "too many open files",
};

function ioError(operation: string): Error {
  const code = faults.errno;
  return Object.assign(new Error(`${code}: ${errnoMessages[code]}, ${operation}`), { code });
}

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FilePromises>();
  const wrapHandle = (handle: FilePromises.FileHandle): FilePromises.FileHandle =>
    new Proxy(handle, {
      get(target, property) {
        if (typeof property === "string" && faults.failing.has(property)) {
          return async () => {
            throw ioError(property);
          };
        }
        if (typeof property === "string")
          faults.calls.set(property, (faults.calls.get(property) ?? 0) + 1);
        if (property === "writev") {
          return async (buffers: Uint8Array[], position: number) => {
            if (buffers.every((buffer) => buffer.every((byte) => byte === 0))) {
              faults.zeroWrites++;
              faults.writes.push("zeros");
              faults.zeroHandles.add(target);
              if (faults.holdZeros !== undefined) await faults.holdZeros;
              if (faults.failing.has("writevOfZeros")) {
                const first = faults.zerosWrittenFirst;
                faults.zerosWrittenFirst = 0;
                if (first === 0) throw ioError("writev");
                return target.writev([buffers[0]!.subarray(0, first)], position);
              }
            }
            const zeros = buffers.every((buffer) => buffer.every((byte) => byte === 0));
            if (zeros) return target.writev(buffers, position);
            faults.recordHandles.add(target);
            faults.writes.push("records");
            const written = await target.writev(buffers, position);
            faults.writes.push("records written");
            return written;
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const open = async (...parameters: Parameters<typeof actual.open>) => {
    // "openMarker": the journal's record of a failure cannot be created.
    if (faults.failing.has("openMarker") && String(parameters[0]).endsWith("failed-on-boot")) {
      throw ioError("open");
    }
    // "reopenSegment": a segment file cannot be opened again (EMFILE, say), as the zeros
    // of a runway extension are written through a descriptor of their own.
    const reopen = typeof parameters[1] === "number" && !(parameters[1] & constants.O_CREAT);
    if (
      faults.failing.has("reopenSegment") &&
      reopen &&
      String(parameters[0]).includes("segment-")
    ) {
      throw ioError("open");
    }
    if (faults.holdMarker !== undefined && String(parameters[0]).endsWith("failed-on-boot")) {
      await faults.holdMarker;
    }
    faults.openFlags.push(parameters[1]);
    return wrapHandle(await actual.open(...parameters));
  };
  const readdir = async (...parameters: Parameters<typeof actual.readdir>) => {
    if (faults.failing.has("readdir")) throw ioError("readdir");
    return actual.readdir(...parameters);
  };
  return { ...actual, open, readdir, default: { ...actual, open, readdir } };
});

// A small commit's blocking writev (journal.ts, "Blocking writes") fails and is counted
// as the handle's writev is: "writev" stands for both, "writevSync" counts the blocking ones.
vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof FileSystem>();
  const writevSync = (...parameters: Parameters<typeof actual.writevSync>) => {
    if (faults.failing.has("writev")) throw ioError("writevSync");
    for (const name of ["writev", "writevSync"]) {
      faults.calls.set(name, (faults.calls.get(name) ?? 0) + 1);
    }
    faults.writes.push("records");
    const written = actual.writevSync(...parameters);
    faults.writes.push("records written");
    return written;
  };
  return { ...actual, writevSync, default: { ...actual, writevSync } };
});

/** Records of `payloadBytes`-byte payloads, none of them zero. */
function recordsOfBytes(firstOpNum: number, count: number, payloadBytes: number): JournalRecord[] {
  return Array.from({ length: count }, (_, index) => ({
    opNum: firstOpNum + index,
    payload: new Uint8Array(payloadBytes).fill(((firstOpNum + index) % 255) + 1),
  }));
}

let directory: string;
let removeDirectory: () => Promise<void>;

beforeEach(async () => {
  faults.failing.clear();
  faults.calls.clear();
  faults.openFlags.length = 0;
  faults.errno = "EIO";
  faults.zerosWrittenFirst = 0;
  faults.zeroWrites = 0;
  faults.holdZeros = undefined;
  faults.holdMarker = undefined;
  faults.writes.length = 0;
  faults.zeroHandles.clear();
  faults.recordHandles.clear();
  ({ path: directory, remove: removeDirectory } = await temporaryDirectory());
});

afterEach(async () => {
  faults.failing.clear();
  await removeDirectory();
});

/**
 * After a failure: the journal is refused in the boot it failed in, and recovers from
 * the disk after a reboot.
 */
async function reopenAfterReboot() {
  const refused = Journal.open({ directory, bootId: thisBoot });
  await expect(refused).rejects.toThrow(JournalUntrustedError);
  await expect(refused).rejects.toThrow("it opens again only after a reboot");
  return Journal.open({ directory, bootId: nextBoot });
}

test("a group commit is one writev on a segment opened O_DSYNC, and no separate fdatasync", async () => {
  const { journal } = await Journal.open({ directory });
  await journal.append(recordsFrom(1, 1));
  faults.calls.clear();
  faults.openFlags.length = 0;
  // Opens the segment again (a truncation closes and reopens it), then one batch.
  await journal.truncateAfter(1);
  faults.calls.clear();
  const zeroWritesBefore = faults.zeroWrites;
  await Promise.all(recordsFrom(2, 20).map((record) => journal.append([record])));
  await journal.settled();
  // One writev of records (on the threadpool: 80 KiB is no small commit), beside the
  // zeros of the runway extension the batch started.
  const zeroWrites = faults.zeroWrites - zeroWritesBefore;
  expect(faults.calls.get("writev")! - zeroWrites).toBe(1);
  expect(faults.calls.get("writevSync") ?? 0).toBe(0);
  expect(faults.calls.get("datasync") ?? 0).toBe(0);
  expect(faults.calls.get("sync") ?? 0).toBe(0);
  for (const flags of faults.openFlags.filter((flags) => typeof flags === "number")) {
    expect((flags as number) & constants.O_DSYNC).toBe(constants.O_DSYNC);
  }
  await journal.close();
  expectSameRecords((await Journal.open({ directory })).records, recordsFrom(1, 21));
});

test("a small commit is one blocking writev when no record write is on the threadpool; not with blockingWriteBytesMax 0", async () => {
  const { journal } = await Journal.open({ directory });
  await journal.append(recordsFrom(1, 1, 1000));
  await journal.settled();
  faults.calls.clear();
  for (let opNum = 2; opNum <= 4; opNum++) await journal.append(recordsFrom(opNum, 1, 1000));
  await journal.settled();
  expect(faults.calls.get("writevSync")).toBe(3);
  await journal.close();
  const reopened = await Journal.open({ directory, blockingWriteBytesMax: 0 });
  expectSameRecords(reopened.records, recordsFrom(1, 4, 1000));
  faults.calls.clear();
  await reopened.journal.append(recordsFrom(5, 1, 1000));
  expect(faults.calls.get("writevSync") ?? 0).toBe(0);
  expect(faults.calls.get("writev")).toBeGreaterThanOrEqual(1);
  await reopened.journal.close();
  expectSameRecords((await Journal.open({ directory })).records, recordsFrom(1, 5, 1000));
});

/**
 * Opens a journal with one record and its first runway, then appends records of 1000
 * bytes until a batch finds the zeros left below the low-water mark (a quarter of the
 * next, 128 KiB, step) and its extension starts, held up until `release`. About 31 KiB
 * of zeros are then left before the extension's. `opNum` is the next op to append.
 */
async function journalWithExtensionHeld() {
  const { journal } = await Journal.open({ directory });
  await journal.append(recordsOfBytes(1, 1, 1000));
  await journal.settled();
  let release = () => {};
  faults.holdZeros = new Promise<void>((resolve) => {
    release = resolve;
  });
  const zeroWritesBefore = faults.zeroWrites;
  let opNum = 2;
  while (faults.zeroWrites === zeroWritesBefore) {
    await journal.append(recordsOfBytes(opNum++, 1, 1000));
  }
  return { journal, release, opNum };
}

/** What `promise` did within 500 ms: settled one way or the other, or still waiting. */
function outcomeOf(promise: Promise<unknown>): Promise<string> {
  return Promise.race([
    promise.then(
      () => "durable",
      () => "rejected",
    ),
    new Promise<string>((resolve) => setTimeout(resolve, 500, "waiting")),
  ]);
}

test("a commit inside the runway does not wait for an extension being written; one past its start does", async () => {
  const held = await journalWithExtensionHeld();
  const { journal, release } = held;
  let { opNum } = held;
  // About 31 KiB of zeros are left before the extension's: this one lands in them.
  expect(await outcomeOf(journal.append(recordsOfBytes(opNum++, 1, 1000)))).toBe("durable");
  // 64 KiB reach past the extension's start: it waits for the zeros.
  const past = journal.append(recordsOfBytes(opNum++, 1, 64 * 1024));
  expect(await outcomeOf(past)).toBe("waiting");
  release();
  await past;
  await journal.settled();
  expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
  await journal.close();
  const reopened = await Journal.open({ directory });
  expect(reopened.records.map((record) => record.opNum)).toEqual(
    Array.from({ length: opNum - 1 }, (_, index) => index + 1),
  );
  expect(reopened.tornTailBytes).toBe(0);
  await reopened.journal.close();
});

test("an extension starts once the batch that planned it is written: where the batch grows the file, its records take the space first", async () => {
  const { journal } = await Journal.open({ directory });
  // A new segment: its header, then the record, grow the file; the zeros come after.
  await journal.append(recordsFrom(1, 1));
  await journal.settled();
  expect(faults.writes.filter((write) => write === "zeros")).toHaveLength(1);
  expect(faults.writes.indexOf("zeros")).toBeGreaterThan(
    faults.writes.lastIndexOf("records written"),
  );
  await journal.close();
});

test("an extension's zeros go through a file description of its own, not the one records go through", async () => {
  // On the threadpool, so that the records' writes show on their handle too.
  const { journal } = await Journal.open({ directory, blockingWriteBytesMax: 0 });
  for (let opNum = 1; opNum <= 60; opNum++) await journal.append(recordsOfBytes(opNum, 1, 1000));
  await journal.settled();
  // The first runway and the one the low-water mark called for.
  expect(faults.zeroHandles.size).toBe(2);
  expect(faults.recordHandles.size).toBe(1);
  for (const handle of faults.zeroHandles) expect(faults.recordHandles.has(handle)).toBe(false);
  await journal.close();
});

test("a small commit is not written blocking beside an extension: it goes to the threadpool", async () => {
  const { journal, release, opNum } = await journalWithExtensionHeld();
  const blockingBefore = faults.calls.get("writevSync") ?? 0;
  await journal.append(recordsOfBytes(opNum, 1, 1000));
  expect(faults.calls.get("writevSync") ?? 0).toBe(blockingBefore);
  release();
  await journal.settled();
  await journal.close();
});

test("a runway extension whose segment cannot be opened again is given up for a while, and fails nothing", async () => {
  const { journal } = await Journal.open({ directory, bootId: thisBoot });
  await journal.append(recordsOfBytes(1, 1, 1000));
  await journal.settled();
  faults.failing.add("reopenSegment");
  faults.errno = "EMFILE";
  // Past the low-water mark of the first runway: an extension is due and cannot open.
  for (let opNum = 2; opNum <= 60; opNum++) await journal.append(recordsOfBytes(opNum, 1, 1000));
  await journal.settled();
  expect(journal.runwayRefusals).toBe(1);
  expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
  faults.failing.clear();
  await journal.append(recordsOfBytes(61, 1, 1000));
  await journal.close();
  expect(existsSync(join(directory, failedMarkerName))).toBe(false);
  const reopened = await Journal.open({ directory, bootId: thisBoot });
  expect(reopened.records.map((record) => record.opNum)).toEqual(
    Array.from({ length: 61 }, (_, index) => index + 1),
  );
  await reopened.journal.close();
});

test("a failure met by an extension is recorded before any call hears of it", async () => {
  const { journal } = await Journal.open({ directory, bootId: thisBoot });
  let release = () => {};
  faults.holdMarker = new Promise<void>((resolve) => {
    release = resolve;
  });
  faults.failing.add("writevOfZeros");
  // Written before its extension starts, so acknowledged; the extension then fails.
  await journal.append(recordsFrom(1, 1));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const next = journal.append(recordsFrom(2, 1));
  expect(await outcomeOf(next)).toBe("waiting");
  expect(existsSync(join(directory, failedMarkerName))).toBe(false);
  release();
  await expect(next).rejects.toThrow("an earlier file operation failed");
  expect(existsSync(join(directory, failedMarkerName))).toBe(true);
  faults.failing.clear();
  await journal.close();
  const recovered = await reopenAfterReboot();
  expectSameRecords(recovered.records, recordsFrom(1, 1));
  await recovered.journal.close();
});

test("a failed fdatasync of a truncation fails the journal, and loses no acknowledged record", async () => {
  const { journal } = await Journal.open({ directory, bootId: thisBoot });
  await journal.append(recordsFrom(1, 10));
  faults.failing.add("datasync");
  const truncation = journal.truncateAfter(8);
  await expect(truncation).rejects.toThrow(JournalFailedError);
  await expect(truncation).rejects.toThrow("cannot truncate: EIO: i/o error, datasync");
  faults.failing.clear();
  await expect(journal.append(recordsFrom(9, 1))).rejects.toThrow(
    "an earlier file operation failed",
  );
  await journal.close();
  const recovered = await reopenAfterReboot();
  // Whether the cut reached the disk or not, the records through op 8 are there.
  expectSameRecords(recovered.records.slice(0, 8), recordsFrom(1, 8));
  expectSameRecords(recovered.records, recordsFrom(1, recovered.records.length));
  await recovered.journal.close();
});

// Blocking, every commit (up to 1 MiB) is written by writevSync; on the threadpool, by the
// handle's writev. "writev" fails both, each naming its own call.
describe.each<[FaultyOperation, string, number]>([
  ["writev", "writevSync", mebibyte],
  ["writev", "writev", 0],
])("a failed %s (%s)", (operation, call, blockingWriteBytesMax) => {
  test("rejects its whole batch, fails the journal, and loses no acknowledged record", async () => {
    const { journal } = await Journal.open({
      directory,
      bootId: thisBoot,
      blockingWriteBytesMax,
    });
    await journal.append(recordsFrom(1, 10));
    // The runway extension that append started, so that the fault hits the batch.
    await journal.settled();
    faults.failing.add(operation);
    const batch = recordsFrom(11, 5).map((record) => journal.append([record]));
    const results = await Promise.allSettled(batch);
    for (const result of results) {
      expect(result.status).toBe("rejected");
      const error = (result as PromiseRejectedResult).reason as JournalFailedError;
      expect(error).toBeInstanceOf(JournalFailedError);
      expect(error.message).toContain(`cannot append: EIO: i/o error, ${call}`);
      expect((error.cause as NodeJS.ErrnoException).code).toBe("EIO");
    }
    // Even with the disk healthy again, the journal takes no more work: a retried sync
    // cannot prove that pages dropped after the failed one were written.
    faults.failing.clear();
    for (const call of [
      journal.append(recordsFrom(16, 1)),
      journal.truncateAfter(5),
      journal.releaseThrough(5),
    ]) {
      await expect(call).rejects.toThrow(JournalFailedError);
      await expect(call).rejects.toThrow("an earlier file operation failed");
    }
    await journal.close();

    // After a reboot: in the same boot the page cache may still serve the failed batch.
    const recovered = await reopenAfterReboot();
    // The first ten were acknowledged. The failed batch may or may not be on disk (its
    // bytes reached the page cache, or not), but never only in part out of order.
    expectSameRecords(recovered.records.slice(0, 10), recordsFrom(1, 10));
    expectSameRecords(recovered.records, recordsFrom(1, recovered.records.length));
    await recovered.journal.close();
  });
});

test("operations queued behind a failed batch are rejected without running", async () => {
  const { journal } = await Journal.open({ directory, bootId: thisBoot });
  await journal.append(recordsFrom(1, 2));
  await journal.settled();
  faults.failing.add("writev");
  const failing = journal.append(recordsFrom(3, 1));
  // The release ends the batch, so the last append waits in a batch of its own.
  const release = journal.releaseThrough(0);
  const queued = journal.append(recordsFrom(4, 1));
  await expect(failing).rejects.toThrow("cannot append: EIO");
  faults.failing.clear();
  await expect(release).rejects.toThrow("cannot release: an earlier file operation failed");
  await expect(queued).rejects.toThrow("cannot append: an earlier file operation failed");
  await journal.close();
  const recovered = await reopenAfterReboot();
  expect(recovered.records.map((record) => record.opNum)).not.toContain(4);
  await recovered.journal.close();
});

test("a failed runway extension fails the journal; the append that started it stays acknowledged", async () => {
  const { journal } = await Journal.open({ directory, bootId: thisBoot });
  faults.failing.add("writevOfZeros");
  // The batch is written; the extension queued behind it fails, and nothing awaits it.
  await journal.append(recordsFrom(1, 3));
  await journal.settled();
  const next = journal.append(recordsFrom(4, 1));
  await expect(next).rejects.toThrow(JournalFailedError);
  await expect(next).rejects.toThrow("cannot append: an earlier file operation failed");
  const error = (await next.catch((caught: unknown) => caught)) as JournalFailedError;
  expect((error.cause as NodeJS.ErrnoException).code).toBe("EIO");
  faults.failing.clear();
  await journal.close();
  const recovered = await reopenAfterReboot();
  expectSameRecords(recovered.records, recordsFrom(1, 3));
  await recovered.journal.close();
});

describe.each(["ENOSPC", "EDQUOT"])("a runway extension refused with %s", (errno) => {
  test("is cut back and stops extending, and fails nothing: appends go on, the journal reopens in the same boot", async () => {
    const { journal } = await Journal.open({ directory, bootId: thisBoot });
    faults.failing.add("writevOfZeros");
    faults.errno = errno;
    // The extension writes 4 KiB of its zeros, then the disk is full.
    faults.zerosWrittenFirst = 4096;
    await journal.append(recordsFrom(1, 3));
    await journal.settled();
    expect(faults.zeroWrites).toBe(2);
    expect(journal.runwayRefusals).toBe(1);
    // The zeros written were cut off again: the file ends at its last record, as the
    // journal says.
    const [segment] = await segmentNames(directory);
    const path = join(directory, segment!);
    expect((await stat(path)).size).toBe(await recordsEndOf(path));
    expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
    expect(existsSync(join(directory, failedMarkerName))).toBe(false);
    // The disk has room for records: they are written, and no extension is tried yet.
    await journal.append(recordsFrom(4, 5));
    await journal.settled();
    expect(faults.zeroWrites).toBe(2);
    expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
    await journal.close();
    faults.failing.clear();
    // Nothing to distrust: it opens again in the same boot, every record there.
    const recovered = await Journal.open({ directory, bootId: thisBoot });
    expectSameRecords(recovered.records, recordsFrom(1, 8));
    expect(recovered.tornTailBytes).toBe(0);
    await recovered.journal.close();
  });
});

test("after a refused runway extension, the next is tried once runwayRetryAfterBytes of records follow", async () => {
  const { journal } = await Journal.open({ directory, bootId: thisBoot });
  faults.failing.add("writevOfZeros");
  faults.errno = "ENOSPC";
  await journal.append(recordsOfBytes(1, 1, 1000));
  await journal.settled();
  expect(faults.zeroWrites).toBe(1);
  expect(journal.runwayRefusals).toBe(1);
  // Space again, but too few records since: still no extension.
  faults.failing.clear();
  const payloadBytes = 64 * 1024;
  const below = Math.floor(runwayRetryAfterBytes / (payloadBytes + recordHeaderBytes));
  for (let opNum = 2; opNum < 2 + below; opNum++) {
    await journal.append(recordsOfBytes(opNum, 1, payloadBytes));
  }
  await journal.settled();
  expect(faults.zeroWrites).toBe(1);
  // This one passes the mark: its batch extends the runway again, from the first step.
  await journal.append(recordsOfBytes(2 + below, 1, payloadBytes));
  await journal.settled();
  expect(faults.zeroWrites).toBe(2);
  const [segment] = await segmentNames(directory);
  const path = join(directory, segment!);
  expect((await stat(path)).size).toBe((await recordsEndOf(path)) + runwayStepFirstBytes);
  expect(journal.bytes).toBe(await segmentBytesOnDisk(directory));
  await journal.close();
});

test("a record write refused for want of space fails the journal, as any failed write does", async () => {
  const { journal } = await Journal.open({ directory, bootId: thisBoot });
  await journal.append(recordsFrom(1, 2));
  await journal.settled();
  faults.failing.add("writev");
  faults.errno = "ENOSPC";
  const failing = journal.append(recordsFrom(3, 1));
  await expect(failing).rejects.toThrow("cannot append: ENOSPC: no space left on device");
  faults.failing.clear();
  await expect(journal.append(recordsFrom(4, 1))).rejects.toThrow(
    "an earlier file operation failed",
  );
  await journal.close();
  const recovered = await reopenAfterReboot();
  expectSameRecords(recovered.records.slice(0, 2), recordsFrom(1, 2));
  await recovered.journal.close();
});

test("a failure while opening is a JournalFailedError, and the directory can be opened later", async () => {
  faults.failing.add("readdir");
  const opening = Journal.open({ directory });
  await expect(opening).rejects.toThrow(JournalFailedError);
  await expect(opening).rejects.toThrow("cannot open the journal: EIO: i/o error, readdir");
  faults.failing.clear();
  const { journal } = await Journal.open({ directory });
  await journal.close();
});

describe("a journal that failed", () => {
  /** A journal of ten records whose next append failed in `thisBoot`; closed. */
  async function failedJournal(failing: string[] = ["writev"]) {
    const { journal } = await Journal.open({ directory, bootId: thisBoot });
    await journal.append(recordsFrom(1, 10));
    await journal.settled();
    for (const operation of failing) faults.failing.add(operation);
    await expect(journal.append(recordsFrom(11, 2))).rejects.toThrow(JournalFailedError);
    faults.failing.clear();
    await journal.close();
  }

  test("is refused in the same boot, as its files may show the failed writes, and recovers after a reboot", async () => {
    // The defect: the failed batch reached the page cache, which serves it in this boot
    // whether or not it reached the disk; a reopen took ops 11 and 12 as durable.
    await failedJournal();
    for (let attempt = 0; attempt < 2; attempt++) {
      const refused = await Journal.open({ directory, bootId: thisBoot }).catch(
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(JournalUntrustedError);
      expect((refused as JournalUntrustedError).failedBootId).toBe(thisBoot);
      expect((refused as Error).message).toContain("EIO");
    }
    expect(existsSync(join(directory, failedMarkerName))).toBe(true);
    // It carries the error, which names paths: its owner's alone, like the segments.
    expect(((await stat(join(directory, failedMarkerName))).mode & 0o777).toString(8)).toBe("600");
    // After a reboot, the disk is what recovery reads; the record goes.
    const { journal, records } = await Journal.open({ directory, bootId: nextBoot });
    expectSameRecords(records.slice(0, 10), recordsFrom(1, 10));
    expect(existsSync(join(directory, failedMarkerName))).toBe(false);
    await journal.append(recordsFrom(records.length + 1, 1));
    await journal.close();
    const again = await Journal.open({ directory, bootId: nextBoot });
    expect(again.records.length).toBe(records.length + 1);
    await again.journal.close();
  });

  test("is refused by a restarted process that finds only the record on disk", async () => {
    await failedJournal();
    // What a restarted process knows: the file. Read by a fresh module instance.
    vi.resetModules();
    const fresh = await import("../src/journal/index.ts");
    const refused = fresh.Journal.open({ directory, bootId: thisBoot });
    await expect(refused).rejects.toThrow(fresh.JournalUntrustedError);
    const { journal } = await fresh.Journal.open({ directory, bootId: nextBoot });
    await journal.close();
  });

  test("is refused in this process even where its record could not be written", async () => {
    // A disk that just failed may take no new file either (remounted read-only, full).
    await failedJournal(["writev", "openMarker"]);
    expect(existsSync(join(directory, failedMarkerName))).toBe(false);
    await expect(Journal.open({ directory, bootId: thisBoot })).rejects.toThrow(
      JournalUntrustedError,
    );
  });

  test("with a record that cannot be read, is refused whatever the boot", async () => {
    await failedJournal();
    vi.resetModules();
    const fresh = await import("../src/journal/index.ts");
    await writeFile(join(directory, failedMarkerName), '{"format":1,"bo');
    await expect(fresh.Journal.open({ directory, bootId: nextBoot })).rejects.toThrow(
      fresh.JournalUntrustedError,
    );
  });

  test("is gone with its directory: a replica rebuilt there opens a new journal", async () => {
    await failedJournal();
    await removeJournalDirectory(directory);
    const { journal, records } = await Journal.open({ directory, bootId: thisBoot });
    expect(records).toEqual([]);
    await journal.append(recordsFrom(1, 1));
    await journal.close();
  });

  test("while cutting a torn tail at open, is refused in the same boot", async () => {
    const { journal } = await Journal.open({ directory, bootId: thisBoot });
    await journal.append(recordsFrom(1, 3));
    await journal.close();
    // A torn tail: bytes after the last record that are neither zeros nor a record.
    const [segment] = (await import("node:fs")).readdirSync(directory);
    await writeFile(join(directory, segment!), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), {
      flag: "a",
    });
    faults.failing.add("datasync");
    await expect(Journal.open({ directory, bootId: thisBoot })).rejects.toThrow(
      "cannot cut the torn tail",
    );
    faults.failing.clear();
    await expect(Journal.open({ directory, bootId: thisBoot })).rejects.toThrow(
      JournalUntrustedError,
    );
    const recovered = await Journal.open({ directory, bootId: nextBoot });
    expectSameRecords(recovered.records, recordsFrom(1, 3));
    await recovered.journal.close();
  });
});
