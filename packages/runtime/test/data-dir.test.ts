import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceKind } from "@ballast/protocol";
import { afterEach, beforeEach, expect, test } from "vitest";
import {
  claimDataDir,
  DataDirError,
  type Identity,
  identityFileName,
  openToOthersMode,
  writeFileDurably,
} from "../src/index.ts";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "ballast-datadir-"));
});
afterEach(() => rm(root, { recursive: true, force: true }));

/** Claims the directory as a start would, and lets it go again as a stop would. */
async function claimed(dataDir: string, kind: ServiceKind, nodeId: string): Promise<Identity> {
  const claim = await claimDataDir(dataDir, kind, nodeId);
  await claim.lock.release();
  return claim.identity;
}

test("the first claim writes an identity that later claims keep", async () => {
  const dir = join(root, "sled-1");
  const first = await claimed(dir, "sled", "sled-1");
  const again = await claimed(dir, "sled", "sled-1");
  expect(again).toEqual(first);
  expect(JSON.parse(await readFile(join(dir, identityFileName), "utf8"))).toEqual(first);
});

test("a directory of another node or kind is refused", async () => {
  const dir = join(root, "x");
  await claimed(dir, "sled", "sled-1");
  await expect(claimed(dir, "sled", "sled-2")).rejects.toThrow(DataDirError);
  await expect(claimed(dir, "headnode", "sled-1")).rejects.toThrow(/belongs to sled sled-1/);
});

test("a damaged identity file is refused, not overwritten", async () => {
  const dir = join(root, "y");
  await claimed(dir, "sled", "sled-1");
  await writeFile(join(dir, identityFileName), "{not json");
  await expect(claimed(dir, "sled", "sled-1")).rejects.toThrow(/not valid JSON/);
  expect(await readFile(join(dir, identityFileName), "utf8")).toBe("{not json");
});

test("a directory gets a random disk id when created, and keeps it", async () => {
  const first = await claimed(join(root, "a"), "headnode", "head-1");
  expect(first.diskId).toMatch(/^[0-9a-f]{32}$/);
  expect((await claimed(join(root, "a"), "headnode", "head-1")).diskId).toBe(first.diskId);
  // The same node id on a new, empty directory: another disk, which is how the
  // coordinator learns that the replicas on the old one are gone.
  await rm(join(root, "a"), { recursive: true });
  const replaced = await claimed(join(root, "a"), "headnode", "head-1");
  expect(replaced.diskId).not.toBe(first.diskId);
});

test("a directory from before disk ids gets one on its first claim, kept from then on", async () => {
  const dir = join(root, "old");
  await claimed(dir, "headnode", "head-1");
  const path = join(dir, identityFileName);
  const { diskId: _dropped, ...old } = JSON.parse(await readFile(path, "utf8"));
  await writeFile(path, JSON.stringify(old));
  const upgraded = await claimed(dir, "headnode", "head-1");
  expect(upgraded).toMatchObject(old);
  expect(upgraded.diskId).toMatch(/^[0-9a-f]{32}$/);
  expect((await claimed(dir, "headnode", "head-1")).diskId).toBe(upgraded.diskId);
});

test("a disk id that is not 32 hex digits is refused, not replaced", async () => {
  const dir = join(root, "bad");
  await claimed(dir, "headnode", "head-1");
  const path = join(dir, identityFileName);
  const identity = JSON.parse(await readFile(path, "utf8"));
  await writeFile(path, JSON.stringify({ ...identity, diskId: "nope" }));
  await expect(claimed(dir, "headnode", "head-1")).rejects.toThrow(/not 32 hex digits/);
  expect(JSON.parse(await readFile(path, "utf8")).diskId).toBe("nope");
});

test("a path that cannot be a directory is a DataDirError naming it, not a crash", async () => {
  const file = join(root, "a-file");
  await writeFile(file, "not a directory");
  await expect(claimed(file, "sled", "sled-1")).rejects.toThrow(DataDirError);
  await expect(claimed(file, "sled", "sled-1")).rejects.toThrow(
    `cannot use ${file}: EEXIST: file already exists, mkdir '${file}'`,
  );
  const below = join(file, "sled-1");
  await expect(claimed(below, "sled", "sled-1")).rejects.toThrow(
    new RegExp(`^cannot use ${below}: ENOTDIR`),
  );
});

test("a durable write with a mode gives the file that mode, also over a stale temporary of another", async () => {
  const path = join(root, "secret.json");
  await writeFile(`${path}.tmp`, "left by an earlier attempt");
  await chmod(`${path}.tmp`, 0o644);
  await writeFileDurably(path, "secret", { mode: 0o600 });
  expect(await readFile(path, "utf8")).toBe("secret");
  expect(((await stat(path)).mode & 0o777).toString(8)).toBe("600");
});

/** The permission bits of `path`, in octal as `ls -l` would show them. */
async function modeOf(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o777).toString(8);
}

test("a durable write without a mode is its owner's alone, also over a file of an older build", async () => {
  // Identity, counters, checkpoints and cluster.json are all written so; the old ones
  // were made under the umask (0644 with the usual 022).
  const path = join(root, "checkpoint.bin");
  await writeFile(path, "older");
  await chmod(path, 0o644);
  await writeFileDurably(path, "newer");
  expect(await readFile(path, "utf8")).toBe("newer");
  expect(await modeOf(path)).toBe("600");
  await writeFileDurably(join(root, "fresh.bin"), "first");
  expect(await modeOf(join(root, "fresh.bin"))).toBe("600");
});

test("a claim makes the directory and its missing parents 0700 and the identity 0600", async () => {
  const dir = join(root, "cluster", "sled-1");
  const claim = await claimDataDir(dir, "sled", "sled-1");
  await claim.lock.release();
  expect(await modeOf(join(root, "cluster"))).toBe("700");
  expect(await modeOf(dir)).toBe("700");
  expect(await modeOf(join(dir, identityFileName))).toBe("600");
  expect(claim.openToOthersMode).toBeUndefined();
});

test("a claim leaves an existing directory's mode alone and says when others can read it", async () => {
  // Made by an older build (0755), or opened to a group on purpose (0750): neither is
  // changed, the first is reported for the start's warning.
  const older = join(root, "head-1");
  await mkdir(older);
  await chmod(older, 0o755);
  const claim = await claimDataDir(older, "headnode", "head-1");
  await claim.lock.release();
  expect(claim.openToOthersMode).toBe(0o755);
  expect(await modeOf(older)).toBe("755");
  expect(await openToOthersMode(older)).toBe(0o755);

  const grouped = join(root, "head-2");
  await mkdir(grouped);
  await chmod(grouped, 0o750);
  const groupClaim = await claimDataDir(grouped, "headnode", "head-2");
  await groupClaim.lock.release();
  expect(groupClaim.openToOthersMode).toBeUndefined();
  expect(await modeOf(grouped)).toBe("750");
  await chmod(grouped, 0o701);
  expect(await openToOthersMode(grouped)).toBe(0o701);
});
