import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { claimDataDir, DataDirError, identityFileName } from "../src/index.ts";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "ballast-datadir-"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

test("the first claim writes an identity that later claims keep", async () => {
  const dir = join(root, "sled-1");
  const first = await claimDataDir(dir, "sled", "sled-1");
  const again = await claimDataDir(dir, "sled", "sled-1");
  expect(again).toEqual(first);
  expect(JSON.parse(await readFile(join(dir, identityFileName), "utf8"))).toEqual(first);
});

test("a directory of another node or kind is refused", async () => {
  const dir = join(root, "x");
  await claimDataDir(dir, "sled", "sled-1");
  await expect(claimDataDir(dir, "sled", "sled-2")).rejects.toThrow(DataDirError);
  await expect(claimDataDir(dir, "headnode", "sled-1")).rejects.toThrow(/belongs to sled sled-1/);
});

test("a damaged identity file is refused, not overwritten", async () => {
  const dir = join(root, "y");
  await claimDataDir(dir, "sled", "sled-1");
  await writeFile(join(dir, identityFileName), "{not json");
  await expect(claimDataDir(dir, "sled", "sled-1")).rejects.toThrow(/not valid JSON/);
  expect(await readFile(join(dir, identityFileName), "utf8")).toBe("{not json");
});
