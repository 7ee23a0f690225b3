import { stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { createZeroedFile, FileBlockFile } from "../src/block-file.ts";
import { mebibyte, temporaryDirectory } from "./support.ts";

let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
beforeEach(async () => {
  directory = await temporaryDirectory();
});
afterEach(() => directory.remove());

test("a device file is preallocated with fallocate: its blocks are reserved", async () => {
  const path = join(directory.path, "preallocated");
  expect(await createZeroedFile(path, 4 * mebibyte)).toEqual({ preallocated: true });
  const info = await stat(path);
  expect(info.size).toBe(4 * mebibyte);
  expect(info.blocks * 512).toBeGreaterThanOrEqual(4 * mebibyte);
});

test("without fallocate the file is extended sparse, and the note says so", async () => {
  const path = join(directory.path, "sparse");
  const savedPath = process.env.PATH;
  process.env.PATH = join(directory.path, "no-tools-here");
  let result: Awaited<ReturnType<typeof createZeroedFile>>;
  try {
    result = await createZeroedFile(path, 4 * mebibyte);
  } finally {
    process.env.PATH = savedPath;
  }
  expect(result).toMatchObject({ preallocated: false, note: expect.stringMatching(/sparse/) });
  const file = await FileBlockFile.open(path);
  try {
    expect(await file.size()).toBe(4 * mebibyte);
    expect((await file.read(mebibyte, 4096)).every((byte) => byte === 0)).toBe(true);
  } finally {
    await file.close();
  }
});

test("reads and writes at positions, many buffers at once; a read past the end fails", async () => {
  const path = join(directory.path, "file");
  await createZeroedFile(path, mebibyte);
  const file = await FileBlockFile.open(path);
  try {
    await file.write(1000, [Buffer.from("abc"), Buffer.alloc(0), Buffer.from("def")]);
    await file.sync();
    expect((await file.read(999, 8)).toString("latin1")).toBe("\0abcdef\0");
    await expect(file.read(mebibyte - 2, 4)).rejects.toThrow(/short read/);
  } finally {
    await file.close();
  }
});
