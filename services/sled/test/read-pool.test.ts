import { randomBytes } from "node:crypto";
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { FileBlockFile } from "../src/block-file.ts";
import { readTripBytesMax, readTripRangesMax } from "../src/constants.ts";
import { ReadPool } from "../src/read-pool.ts";
import { mebibyte, temporaryDirectory } from "./support.ts";

let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
let pool: ReadPool;
let contents: Buffer;
let path: string;
beforeEach(async () => {
  directory = await temporaryDirectory();
  pool = new ReadPool({ workersMax: 2 });
  contents = randomBytes(2 * mebibyte);
  path = join(directory.path, "device");
  await writeFile(path, contents);
});
afterEach(async () => {
  await pool.close();
  await directory.remove();
});

/** Ranges of the file: some 4 KiB pages, some odd sizes and positions. */
function someRanges(count: number): { position: number; length: number }[] {
  return Array.from({ length: count }, (_, index) => {
    const length = index % 3 === 0 ? 4096 : 1 + ((index * 7919) % 20_000);
    const position = (index * 104_729) % (contents.length - length);
    return { position, length };
  });
}

test("reads asked for together come back right, each its own bytes, in fewer trips", async () => {
  const handle = await open(path, "r");
  try {
    const ranges = someRanges(300);
    const answers = await Promise.all(
      ranges.map(({ position, length }) => pool.read(handle.fd, position, length)),
    );
    answers.forEach((bytes, index) => {
      const { position, length } = ranges[index]!;
      expect(bytes.equals(contents.subarray(position, position + length))).toBe(true);
      expect(bytes.byteLength).toBe(length);
    });
    // Each trip is bounded, and a turn's reads share trips.
    const bytes = ranges.reduce((sum, range) => sum + range.length, 0);
    const tripsAtLeast = Math.max(
      Math.ceil(ranges.length / readTripRangesMax),
      Math.ceil(bytes / readTripBytesMax),
    );
    expect(pool.trips).toBeGreaterThanOrEqual(tripsAtLeast);
    expect(pool.trips).toBeLessThan(ranges.length / 2);
    expect(pool.workerCount).toBeLessThanOrEqual(2);
    // An answer is a copy: changing it changes no other answer.
    answers[0]!.fill(0);
    const { position, length } = ranges[3]!;
    expect(answers[3]!.equals(contents.subarray(position, position + length))).toBe(true);
  } finally {
    await handle.close();
  }
});

test("a read that fails fails alone, with the system's error; the others are answered", async () => {
  const handle = await open(path, "r");
  const folder = await open(directory.path, "r");
  try {
    const good = pool.read(handle.fd, 4096, 4096);
    const notAFile = pool.read(folder.fd, 0, 4096);
    const pastTheEnd = pool.read(handle.fd, contents.length - 10, 4096);
    const alsoGood = pool.read(handle.fd, 0, 100);
    await expect(notAFile).rejects.toMatchObject({
      code: "EISDIR",
      syscall: "read",
      message: expect.stringMatching(/EISDIR/),
    });
    await expect(pastTheEnd).rejects.toThrow(
      `short read: 10 of 4096 bytes at ${contents.length - 10} (end of file)`,
    );
    expect((await good).equals(contents.subarray(4096, 8192))).toBe(true);
    expect((await alsoGood).equals(contents.subarray(0, 100))).toBe(true);
    expect(pool.trips).toBe(1);
    // The pool goes on after failures.
    expect((await pool.read(handle.fd, 10, 10)).equals(contents.subarray(10, 20))).toBe(true);
  } finally {
    await folder.close();
    await handle.close();
  }
});

test("bad reads are refused before they go anywhere", async () => {
  await expect(pool.read(0, 0, readTripBytesMax + 1)).rejects.toThrow(/up to/);
  await expect(pool.read(0, 0, -1)).rejects.toThrow(/up to/);
  expect((await pool.read(0, 0, 0)).byteLength).toBe(0);
  expect(pool.trips).toBe(0);
  expect(() => new ReadPool({ workersMax: 0 })).toThrow(/workersMax/);
});

test("an owner is told of each of its reads settled, answered, failed or refused, before the read settles", async () => {
  const handle = await open(path, "r");
  const folder = await open(directory.path, "r");
  let settled = 0;
  const owner = { readSettled: () => settled++ };
  // What the owner had been told when each read settled: never less than its own.
  const seen = (read: Promise<Buffer>) =>
    read.then(
      () => settled,
      () => settled,
    );
  try {
    const answered = [
      seen(pool.read(handle.fd, 0, 4096, owner)),
      seen(pool.read(folder.fd, 0, 4096, owner)), // fails: EISDIR
      seen(pool.read(handle.fd, 0, readTripBytesMax + 1, owner)), // refused
      seen(pool.read(handle.fd, 0, 0, owner)), // empty
    ];
    for (const told of await Promise.all(answered)) expect(told).toBeGreaterThan(0);
    expect(settled).toBe(4);
    await pool.close();
    await pool.read(handle.fd, 0, 10, owner).catch(() => undefined); // refused: closed
    expect(settled).toBe(5);
  } finally {
    await folder.close();
    await handle.close();
  }
});

test("answers of one trip share no bytes: writing one leaves the others as read", async () => {
  const handle = await open(path, "r");
  try {
    const ranges = someRanges(20).filter((range) => range.length === 4096);
    const answers = await Promise.all(
      ranges.map(({ position, length }) => pool.read(handle.fd, position, length)),
    );
    expect(pool.trips).toBe(1);
    for (const answer of answers) answer.fill(0xa5);
    for (const [index, answer] of answers.entries()) {
      expect(answer.byteLength).toBe(4096);
      expect(answer.every((byte) => byte === 0xa5)).toBe(true);
      // And the next trip's answers are the file's bytes, not what was written here.
      const { position, length } = ranges[index]!;
      const again = await pool.read(handle.fd, position, length);
      expect(again.equals(contents.subarray(position, position + length))).toBe(true);
    }
  } finally {
    await handle.close();
  }
});

test("a file closed while its reads are out closes after they are answered, never under them", async () => {
  const file = await FileBlockFile.open(path, pool);
  const ranges = someRanges(400);
  const events: string[] = [];
  const reads = ranges.map(({ position, length }) =>
    file.read(position, length).then((bytes) => {
      events.push("read");
      return bytes;
    }),
  );
  const closed = file.close().then(() => events.push("closed"));
  // Another file opened now may get a descriptor the closed one had: the reads must not
  // see it. Its contents differ, so a read of it would be caught below.
  await closed;
  const other = join(directory.path, "other");
  await writeFile(other, Buffer.alloc(contents.length, 0xee));
  const reused = await open(other, "r");
  try {
    const answers = await Promise.all(reads);
    answers.forEach((bytes, index) => {
      const { position, length } = ranges[index]!;
      expect(bytes.equals(contents.subarray(position, position + length))).toBe(true);
    });
    expect(events.indexOf("closed")).toBe(ranges.length);
    await expect(file.read(0, 4096)).rejects.toThrow(/closed/);
  } finally {
    await reused.close();
  }
});

test("a file reads more than a trip holds through its handle", async () => {
  const file = await FileBlockFile.open(path, pool);
  try {
    const bytes = await file.read(12_345, mebibyte);
    expect(bytes.equals(contents.subarray(12_345, 12_345 + mebibyte))).toBe(true);
    expect(pool.trips).toBe(0);
  } finally {
    await file.close();
  }
});

test("closing the pool answers the reads it has, refuses new ones and stops its workers", async () => {
  const handle = await open(path, "r");
  try {
    const ranges = someRanges(200);
    const reads = ranges.map(({ position, length }) => pool.read(handle.fd, position, length));
    await pool.close();
    const answers = await Promise.all(reads);
    answers.forEach((bytes, index) => {
      const { position, length } = ranges[index]!;
      expect(bytes.equals(contents.subarray(position, position + length))).toBe(true);
    });
    expect(pool.workerCount).toBe(0);
    await expect(pool.read(handle.fd, 0, 10)).rejects.toThrow(/closed/);
  } finally {
    await handle.close();
  }
});

test("a worker that stops under a trip fails that trip's reads; the pool goes on", async () => {
  const handle = await open(path, "r");
  try {
    const ranges = someRanges(100);
    const reads = ranges.map(({ position, length }) =>
      pool.read(handle.fd, position, length).then(
        (bytes) => ({ bytes }),
        (error: Error) => ({ error }),
      ),
    );
    await new Promise((resolve) => setImmediate(resolve)); // the trip is sent
    // Reaching in (a test only): stop the worker as a crash would.
    const { workers } = pool as unknown as { workers: { worker: { terminate(): unknown } }[] };
    expect(workers.length).toBeGreaterThan(0);
    for (const { worker } of workers) void worker.terminate();
    const outcomes = await Promise.all(reads);
    outcomes.forEach((outcome, index) => {
      const { position, length } = ranges[index]!;
      if ("error" in outcome) {
        expect(outcome.error.message).toMatch(/the read worker stopped/);
      } else {
        expect(outcome.bytes.equals(contents.subarray(position, position + length))).toBe(true);
      }
    });
    expect((await pool.read(handle.fd, 5, 5)).equals(contents.subarray(5, 10))).toBe(true);
  } finally {
    await handle.close();
  }
});

test("two closes while reads are in flight both end once the reads have settled", async () => {
  const handle = await open(path, "r");
  try {
    const reads = someRanges(64).map(({ position, length }) =>
      pool.read(handle.fd, position, length),
    );
    const first = pool.close();
    const second = pool.close();
    const answers = await Promise.all(reads);
    expect(answers.every((bytes) => bytes.byteLength > 0)).toBe(true);
    // The first close waited for a wake-up the second had replaced, and never ended.
    const ended = await Promise.race([
      Promise.all([first, second]).then(() => "both"),
      new Promise((resolve) => setTimeout(() => resolve("first still waiting"), 2000)),
    ]);
    expect(ended).toBe("both");
  } finally {
    await handle.close();
  }
});
