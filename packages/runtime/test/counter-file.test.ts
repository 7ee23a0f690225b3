// The in-place counter file (counter-file.ts): two checksummed copies, the lower one
// overwritten at each raise, on real files; a failed sync is injected by a spy on the
// file handle's datasync (the only fake here).

import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import {
  counterCopyBytes,
  counterCopyStride,
  counterFile,
  counterFileBytes,
  decodeCounterCopy,
  encodeCounterCopy,
} from "../src/index.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ballast-counter-"));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

/** The values of copies A and B as on the file now (undefined for an invalid copy). */
async function copies(path: string): Promise<[number | undefined, number | undefined]> {
  const bytes = await readFile(path);
  return [
    decodeCounterCopy(bytes.subarray(0, counterCopyBytes)),
    decodeCounterCopy(bytes.subarray(counterCopyStride, counterCopyStride + counterCopyBytes)),
  ];
}

test("a raise overwrites the lower copy in place, and a read takes the higher valid one", async () => {
  const path = join(dir, "count");
  const file = counterFile(path);
  expect(await file.read()).toEqual({ absent: true });
  await file.raise(0);
  expect(await file.read()).toEqual({ value: 0 });
  expect(await copies(path)).toEqual([0, undefined]);
  const made = await stat(path);
  await file.raise(1);
  expect(await copies(path)).toEqual([0, 1]);
  await file.raise(2 ** 40);
  expect(await copies(path)).toEqual([2 ** 40, 1]);
  expect(await file.read()).toEqual({ value: 2 ** 40 });
  expect((await stat(path)).ino).toBe(made.ino);
  expect((await stat(path)).size).toBe(counterFileBytes);
});

test("a file in neither layout, or with no valid copy, reads as damaged", async () => {
  const path = join(dir, "count");
  await writeFile(path, "7\n");
  expect(await counterFile(path).read()).toMatchObject({ damaged: expect.stringMatching(/bytes/) });
  expect(await counterFile(path, (bytes) => Number(bytes.toString())).read()).toEqual({ value: 7 });
  await writeFile(path, Buffer.alloc(counterFileBytes));
  expect(await counterFile(path).read()).toMatchObject({
    damaged: expect.stringMatching(/neither copy/),
  });
  expect(() => encodeCounterCopy(-1)).toThrow(RangeError);
});

test("after a failed sync, the next raise keeps the copy last synced, though it reads lower", async () => {
  // The failed copy may show its new value from the page cache while the disk lost it:
  // overwriting the other copy, the one durable value, would leave a crash during that
  // write with neither.
  const path = join(dir, "count");
  const file = counterFile(path);
  await file.raise(1);
  await file.raise(2); // copy B, synced
  const handle = await open(path, "r");
  const prototype = Object.getPrototypeOf(handle) as { datasync(): Promise<void> };
  await handle.close();
  const eio = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
  vi.spyOn(prototype, "datasync").mockRejectedValueOnce(eio);
  await expect(file.raise(3)).rejects.toThrow(/EIO/); // copy A written, its sync failed
  expect(await copies(path)).toEqual([3, 2]);
  await file.raise(4);
  expect(await copies(path)).toEqual([4, 2]);
  // Once synced, the ordinary rule resumes: the lower copy is overwritten.
  await file.raise(5);
  expect(await copies(path)).toEqual([4, 5]);
});
