import { chmod, mkdir, readdir, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { createZeroedFile, FileBlockFile } from "../src/block-file.ts";
import { openDeviceSet } from "../src/device-set.ts";
import { DeviceError } from "../src/errors.ts";
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

test("a device set's files are their owner's alone, preallocated or sparse: they hold every volume's chunks", async () => {
  const dataDir = join(directory.path, "sled");
  await mkdir(dataDir);
  for (const device of await openDeviceSet({
    dataDir,
    sledId: "sled-1",
    deviceCount: 2,
    deviceBytes: 4 * mebibyte,
    log: () => undefined,
  })) {
    await device.close();
  }
  const names = (await readdir(dataDir)).sort();
  expect(names).toEqual(["device-0.dev", "device-1.dev"]);
  for (const name of names) {
    expect(((await stat(join(dataDir, name))).mode & 0o777).toString(8)).toBe("600");
  }
  const savedPath = process.env.PATH;
  process.env.PATH = join(directory.path, "no-tools-here");
  try {
    await createZeroedFile(join(directory.path, "sparse"), 4 * mebibyte);
  } finally {
    process.env.PATH = savedPath;
  }
  expect(((await stat(join(directory.path, "sparse"))).mode & 0o777).toString(8)).toBe("600");
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

/**
 * Runs `body` with PATH holding only a fake `fallocate` (a unit-test fake, never a real full
 * disk: the host's disk is shared) that prints `message` and exits with status 1, as
 * util-linux's does when fallocate(2) fails.
 */
async function withFakeFallocate<T>(message: string, body: () => Promise<T>): Promise<T> {
  const bin = join(directory.path, "fake-bin");
  await mkdir(bin, { recursive: true });
  const script = join(bin, "fallocate");
  await writeFile(
    script,
    `#!/bin/sh\necho "fallocate: fallocate failed: ${message}" >&2\nexit 1\n`,
  );
  await chmod(script, 0o755);
  const savedPath = process.env.PATH;
  process.env.PATH = bin;
  try {
    return await body();
  } finally {
    process.env.PATH = savedPath;
  }
}

test("a full file system fails the preallocation: the file is deleted, the error names size and free space", async () => {
  const path = join(directory.path, "full");
  const failure = await withFakeFallocate("No space left on device", () =>
    createZeroedFile(path, 4 * mebibyte).then(
      () => undefined,
      (error: unknown) => error,
    ),
  );
  expect(failure).toBeInstanceOf(DeviceError);
  expect((failure as Error).message).toMatch(path);
  expect((failure as Error).message).toMatch(/No space left on device/);
  expect((failure as Error).message).toMatch(String(4 * mebibyte));
  expect((failure as Error).message).toMatch(/\d+ bytes free/);
  expect(await readdir(directory.path)).toEqual(["fake-bin"]);
});

test("a file system that cannot preallocate still gets a sparse file, and the note says so", async () => {
  const path = join(directory.path, "unsupported");
  const result = await withFakeFallocate("Operation not supported", () =>
    createZeroedFile(path, 4 * mebibyte),
  );
  expect(result).toMatchObject({ preallocated: false, note: expect.stringMatching(/sparse/) });
  expect((await stat(path)).size).toBe(4 * mebibyte);
});

test("a sled refuses to format devices it cannot preallocate, and leaves no device file", async () => {
  const dataDir = join(directory.path, "sled");
  await mkdir(dataDir);
  const opening = withFakeFallocate("No space left on device", () =>
    openDeviceSet({
      dataDir,
      sledId: "sled-1",
      deviceCount: 2,
      deviceBytes: 4 * mebibyte,
      log: () => undefined,
    }),
  );
  await expect(opening).rejects.toThrow(/device-0\.dev\.tmp.*No space left on device/);
  expect(await readdir(dataDir)).toEqual([]);
});

test("a later start reserves an existing device's blocks again: a sparse device is filled in", async () => {
  const dataDir = join(directory.path, "sled");
  await mkdir(dataDir);
  const options = {
    dataDir,
    sledId: "sled-1",
    deviceCount: 1,
    deviceBytes: 4 * mebibyte,
    log: () => undefined,
  };
  for (const device of await openDeviceSet(options)) await device.close();
  // Make the device sparse past its superblocks, as a sparse fallback would have left it.
  const path = join(dataDir, "device-0.dev");
  await truncate(path, mebibyte);
  await truncate(path, 4 * mebibyte);
  expect((await stat(path)).blocks * 512).toBeLessThan(4 * mebibyte);
  for (const device of await openDeviceSet(options)) await device.close();
  expect((await stat(path)).blocks * 512).toBeGreaterThanOrEqual(4 * mebibyte);
});

test("a later start on a full file system stops with a DeviceError instead of accepting the device", async () => {
  const dataDir = join(directory.path, "sled");
  await mkdir(dataDir);
  const options = {
    dataDir,
    sledId: "sled-1",
    deviceCount: 2,
    deviceBytes: 4 * mebibyte,
    log: () => undefined,
  };
  for (const device of await openDeviceSet(options)) await device.close();
  const opening = withFakeFallocate("No space left on device", () => openDeviceSet(options));
  await expect(opening).rejects.toThrow(DeviceError);
  await expect(opening).rejects.toThrow(/device-0\.dev.*could not reserve/);
  expect((await readdir(dataDir)).sort()).toEqual(["device-0.dev", "device-1.dev"]);
});
