// The journal when the file system fails. node:fs/promises is wrapped so that a test can
// make the next fdatasync, writev or readdir fail the way a dying disk does (EIO). After
// any such failure the journal must reject every affected append, take no more work, and
// leave files from which a reopen recovers every record acknowledged before the failure.

import type * as FilePromises from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Journal, JournalFailedError } from "../src/journal/index.ts";
import { expectSameRecords, recordsFrom, temporaryDirectory } from "./fixtures/journal-files.ts";

type FaultyOperation = "datasync" | "writev" | "readdir";

const faults = vi.hoisted(() => ({ failing: new Set<string>() }));

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
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const open = async (...parameters: Parameters<typeof actual.open>) =>
    wrapHandle(await actual.open(...parameters));
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
  ({ path: directory, remove: removeDirectory } = await temporaryDirectory());
});

afterEach(async () => {
  faults.failing.clear();
  await removeDirectory();
});

describe.each<FaultyOperation>(["datasync", "writev"])("a failed %s", (operation) => {
  test("rejects its whole batch, fails the journal, and loses no acknowledged record", async () => {
    const { journal } = await Journal.open({ directory });
    await journal.append(recordsFrom(1, 10));
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
  faults.failing.add("datasync");
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

test("a failure while opening is a JournalFailedError, and the directory can be opened later", async () => {
  faults.failing.add("readdir");
  const opening = Journal.open({ directory });
  await expect(opening).rejects.toThrow(JournalFailedError);
  await expect(opening).rejects.toThrow("cannot open the journal: EIO: i/o error, readdir");
  faults.failing.clear();
  const { journal } = await Journal.open({ directory });
  await journal.close();
});
