// The journal when the file system fails. node:fs/promises is wrapped so that a test can
// make the next fdatasync, writev or readdir fail the way a dying disk does (EIO). After
// any such failure the journal must reject every affected append, take no more work, and
// leave files from which a reopen recovers every record acknowledged before the failure.
// Segment files are opened O_DSYNC, so an append's sync is its writev: a failed sync of
// an append shows as a failed writev, and fdatasync is left to truncation. The wrapper
// also counts calls, for the test that a group commit is one file call. A runway
// extension is a writev of zeros only: "writevOfZeros" fails just those.

import { constants } from "node:fs";
import type * as FilePromises from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Journal, JournalFailedError } from "../src/journal/index.ts";
import { expectSameRecords, recordsFrom, temporaryDirectory } from "./fixtures/journal-files.ts";

type FaultyOperation = "datasync" | "writev" | "readdir";

const faults = vi.hoisted(() => ({
  failing: new Set<string>(),
  /** Calls on file handles, by method name. */
  calls: new Map<string, number>(),
  /** The flags of every open, in order. */
  openFlags: [] as unknown[],
}));

function ioError(operation: string): Error {
  return Object.assign(new Error(`EIO: i/o error, ${operation}`), { code: "EIO" });
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
        if (property === "writev" && faults.failing.has("writevOfZeros")) {
          return async (buffers: Uint8Array[], position: number) => {
            if (buffers.every((buffer) => buffer.every((byte) => byte === 0))) {
              throw ioError("writev");
            }
            return target.writev(buffers, position);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const open = async (...parameters: Parameters<typeof actual.open>) => {
    faults.openFlags.push(parameters[1]);
    return wrapHandle(await actual.open(...parameters));
  };
  const readdir = async (...parameters: Parameters<typeof actual.readdir>) => {
    if (faults.failing.has("readdir")) throw ioError("readdir");
    return actual.readdir(...parameters);
  };
  return { ...actual, open, readdir, default: { ...actual, open, readdir } };
});

let directory: string;
let removeDirectory: () => Promise<void>;

beforeEach(async () => {
  faults.failing.clear();
  faults.calls.clear();
  faults.openFlags.length = 0;
  ({ path: directory, remove: removeDirectory } = await temporaryDirectory());
});

afterEach(async () => {
  faults.failing.clear();
  await removeDirectory();
});

test("a group commit is one writev on a segment opened O_DSYNC, and no separate fdatasync", async () => {
  const { journal } = await Journal.open({ directory });
  await journal.append(recordsFrom(1, 1));
  faults.calls.clear();
  faults.openFlags.length = 0;
  // Opens the segment again (a truncation closes and reopens it), then one batch.
  await journal.truncateAfter(1);
  faults.calls.clear();
  await Promise.all(recordsFrom(2, 20).map((record) => journal.append([record])));
  expect(faults.calls.get("writev")).toBe(1);
  expect(faults.calls.get("datasync") ?? 0).toBe(0);
  expect(faults.calls.get("sync") ?? 0).toBe(0);
  for (const flags of faults.openFlags.filter((flags) => typeof flags === "number")) {
    expect((flags as number) & constants.O_DSYNC).toBe(constants.O_DSYNC);
  }
  await journal.close();
  expectSameRecords((await Journal.open({ directory })).records, recordsFrom(1, 21));
});

test("a failed fdatasync of a truncation fails the journal, and loses no acknowledged record", async () => {
  const { journal } = await Journal.open({ directory });
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
  const recovered = await Journal.open({ directory });
  // Whether the cut reached the disk or not, the records through op 8 are there.
  expectSameRecords(recovered.records.slice(0, 8), recordsFrom(1, 8));
  expectSameRecords(recovered.records, recordsFrom(1, recovered.records.length));
  await recovered.journal.close();
});

describe.each<FaultyOperation>(["writev"])("a failed %s", (operation) => {
  test("rejects its whole batch, fails the journal, and loses no acknowledged record", async () => {
    const { journal } = await Journal.open({ directory });
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
      expect(error.message).toContain(`cannot append: EIO: i/o error, ${operation}`);
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

    const recovered = await Journal.open({ directory });
    // The first ten were acknowledged. The failed batch may or may not be on disk (its
    // bytes reached the page cache, or not), but never only in part out of order.
    expectSameRecords(recovered.records.slice(0, 10), recordsFrom(1, 10));
    expectSameRecords(recovered.records, recordsFrom(1, recovered.records.length));
    await recovered.journal.close();
  });
});

test("operations queued behind a failed batch are rejected without running", async () => {
  const { journal } = await Journal.open({ directory });
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
  const recovered = await Journal.open({ directory });
  expect(recovered.records.map((record) => record.opNum)).not.toContain(4);
  await recovered.journal.close();
});

test("a failed runway extension fails the journal; the append that started it stays acknowledged", async () => {
  const { journal } = await Journal.open({ directory });
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
  const recovered = await Journal.open({ directory });
  expectSameRecords(recovered.records, recordsFrom(1, 3));
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
