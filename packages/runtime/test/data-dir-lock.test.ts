// One process per data directory (data-dir-lock.ts): a claim holds the directory until
// it is released or its process ends however it ends, and a second claim meanwhile is
// refused with the holder named, before it reads or writes anything in the directory.
// The holder in the process tests is a real child process, killed for real.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, test } from "vitest";
import {
  claimDataDir,
  constants,
  createLogger,
  DataDirError,
  type DataDirLock,
  dataDirLockName,
  identityFileName,
  lockDataDir,
  releaseDataDir,
} from "../src/index.ts";

const dataDirModule = fileURLToPath(new URL("../src/data-dir.ts", import.meta.url));
const tsx = import.meta.resolve("tsx");
let root: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "ballast-datadir-lock-"));
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited(child);
    }
  }
  await rm(root, { recursive: true, force: true });
});

function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
  });
}

/**
 * A child process that claims `dataDir` as sled `nodeId` and says "held" on stdout. With
 * `linger` it then runs until killed; without, it has nothing left to do.
 */
async function holdInChild(dataDir: string, nodeId: string, linger: boolean) {
  const script = `
    const { claimDataDir } = await import(${JSON.stringify(dataDirModule)});
    await claimDataDir(${JSON.stringify(dataDir)}, "sled", ${JSON.stringify(nodeId)});
    process.stdout.write("held\\n");
    ${linger ? "setInterval(() => undefined, 60_000);" : ""}
  `;
  const child = spawn(process.execPath, ["--import", tsx, "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk) => {
      if (String(chunk).includes("held")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`holder exited with ${code}: ${stderr}`)));
  });
  return child;
}

test("a second claim of a held directory is refused with the holder named, and changes nothing", async () => {
  const dir = join(root, "sled-1");
  const first = await claimDataDir(dir, "sled", "sled-1");
  expect(first.lock.held).toBe(true);
  const identityBefore = await stat(join(dir, identityFileName));
  const second = claimDataDir(dir, "sled", "sled-1");
  await expect(second).rejects.toThrow(DataDirError);
  await expect(second).rejects.toThrow(
    `data directory ${dir} is in use by sled sled-1 (pid ${process.pid}); one process per data directory: stop that one first, or give this one another directory`,
  );
  // Refused on the lock, before the identity is read: even another node's claim is told
  // who holds the directory, not that it belongs to someone else.
  await expect(claimDataDir(dir, "headnode", "head-9")).rejects.toThrow(/in use by sled sled-1/);
  const identityAfter = await stat(join(dir, identityFileName));
  expect(identityAfter.mtimeMs).toBe(identityBefore.mtimeMs);
  await first.lock.release();
  await first.lock.release();
  const again = await claimDataDir(dir, "sled", "sled-1");
  expect(again.identity).toEqual(first.identity);
  await again.lock.release();
});

test("the lock is the directory's, whatever path names it", async () => {
  const dir = join(root, "head-1");
  const first = await claimDataDir(dir, "headnode", "head-1");
  await symlink(dir, join(root, "alias"));
  await expect(claimDataDir(join(root, "alias"), "headnode", "head-1")).rejects.toThrow(
    /is in use by headnode head-1/,
  );
  await expect(claimDataDir(`${root}/./head-1/`, "headnode", "head-1")).rejects.toThrow(
    /is in use by headnode head-1/,
  );
  await first.lock.release();
});

test("a claim refused for another node's identity holds no lock", async () => {
  const dir = join(root, "sled-2");
  await (await claimDataDir(dir, "sled", "sled-2")).lock.release();
  await expect(claimDataDir(dir, "sled", "sled-3")).rejects.toThrow(/belongs to sled sled-2/);
  const claim = await claimDataDir(dir, "sled", "sled-2");
  await claim.lock.release();
});

test("a holder killed with SIGKILL leaves no lock behind", async () => {
  const dir = join(root, "sled-1");
  const holder = await holdInChild(dir, "sled-1", true);
  await expect(claimDataDir(dir, "sled", "sled-1")).rejects.toThrow(
    `is in use by sled sled-1 (pid ${holder.pid})`,
  );
  holder.kill("SIGKILL");
  expect(await exited(holder)).toBe("SIGKILL");
  // Nothing to clean up and no time to wait: the kernel let the name go with the process.
  const claim = await claimDataDir(dir, "sled", "sled-1");
  expect(claim.lock.held).toBe(true);
  expect(JSON.parse(await readFile(join(dir, identityFileName), "utf8")).nodeId).toBe("sled-1");
  await claim.lock.release();
});

test("a holder that cannot answer still holds the directory, named as another process", async () => {
  const dir = join(root, "sled-1");
  const holder = await holdInChild(dir, "sled-1", true);
  holder.kill("SIGSTOP");
  try {
    await expect(claimDataDir(dir, "sled", "sled-1")).rejects.toThrow(
      `is in use by another process (it did not say which within ${constants.dataDirHolderQueryTimeoutMs} ms;`,
    );
  } finally {
    holder.kill("SIGCONT");
  }
});

test("the lock does not keep its process running", async () => {
  const holder = await holdInChild(join(root, "sled-1"), "sled-1", false);
  expect(await exited(holder)).toBe(0);
  await (await claimDataDir(join(root, "sled-1"), "sled", "sled-1")).lock.release();
});

test("where there are no abstract sockets, no lock is taken and the caller is told", async () => {
  const locks: DataDirLock[] = [
    await lockDataDir(root, { kind: "sled", nodeId: "sled-1" }, "darwin"),
    await lockDataDir(root, { kind: "sled", nodeId: "sled-1" }, "darwin"),
  ];
  expect(locks.map((lock) => lock.held)).toEqual([false, false]);
  for (const lock of locks) await lock.release();
});

test("a lock's name fills the whole socket address, so every Node build binds the same one", () => {
  const name = dataDirLockName(0xfe00n, 2n ** 63n + 5n);
  expect(name).toHaveLength(108);
  expect(name.startsWith(`\0${constants.dataDirLockNamePrefix}fe00-8000000000000005\0`)).toBe(true);
});

test("a stop that left work running (a write hung on the disk) keeps the directory locked; a clean one frees it", async () => {
  const logger = createLogger({ service: "sled", nodeId: "sled-1", level: "silent" });
  const lock = await lockDataDir(root, { kind: "sled", nodeId: "sled-1" });
  await releaseDataDir(lock, true, logger);
  await expect(lockDataDir(root, { kind: "sled", nodeId: "sled-1" })).rejects.toThrow(DataDirError);
  await releaseDataDir(lock, false, logger);
  const again = await lockDataDir(root, { kind: "sled", nodeId: "sled-1" });
  await again.release();
});
