// `ballast up` refuses a data directory only while a launcher really runs from it
// (up.ts, claimLauncher). The cluster file's pid alone was the test before: a pid the
// kernel had since given to another program, or a dead launcher its parent had not yet
// reaped, kept every later `up` out until someone edited the file. Real processes and
// the real abstract-socket lock; each test has a directory of its own.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { lockDataDir } from "@ballast/runtime";
import { afterEach, expect, test } from "vitest";
import { claimLauncher } from "../src/up.ts";

const started: ChildProcess[] = [];
const directories: string[] = [];
afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true });
});

async function directory(): Promise<string> {
  const made = await mkdtemp(join(tmpdir(), "ballast-launcher-claim-"));
  directories.push(made);
  return made;
}

/** A live process with these arguments, once it has started. */
async function processWith(args: readonly string[]): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ["-e", 'setInterval(() => undefined, 60_000); process.stdout.write("ready\\n");', ...args],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  started.push(child);
  await new Promise<void>((resolve) => child.stdout?.once("data", () => resolve()));
  return child;
}

test("a pid now held by another program does not keep the directory", async () => {
  const dataDir = await directory();
  const other = await processWith(["--", "serve", "--port", "8080"]);
  const lock = await claimLauncher(dataDir, other.pid);
  expect(lock.held).toBe(true);
  await lock.release();
});

test("a dead launcher its parent has not reaped (a zombie) does not keep the directory", async () => {
  const dataDir = await directory();
  // The zombie's parent is a shell that sleeps without waiting for its child.
  const shell = spawn(
    "sh",
    ["-c", `${JSON.stringify(process.execPath)} -e 0 -- up & echo $!; exec sleep 60`],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  started.push(shell);
  const pid = await new Promise<number>((resolve) =>
    shell.stdout?.once("data", (chunk: Buffer) => resolve(Number(String(chunk).trim()))),
  );
  // Once it has exited it is a zombie: alive to `kill -0`, which the old check used.
  const state = async () => {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  };
  while ((await state()) !== "Z") await new Promise((resolve) => setTimeout(resolve, 20));
  const lock = await claimLauncher(dataDir, pid);
  expect(lock.held).toBe(true);
  await lock.release();
  expect(await state()).toBe("Z");
});

test("a launcher holding the directory's lock is named in the refusal", async () => {
  const dataDir = await directory();
  const held = await lockDataDir(dataDir, { kind: "launcher", nodeId: "ballast-up" });
  try {
    await expect(claimLauncher(dataDir, undefined)).rejects.toThrow(
      new RegExp(`a cluster is already running from .* \\(launcher pid ${process.pid}\\)`),
    );
  } finally {
    await held.release();
  }
  const lock = await claimLauncher(dataDir, undefined);
  await lock.release();
});

test("a live launcher of a build without the lock still counts, by its command line", async () => {
  const dataDir = await directory();
  const launcher = await processWith(["--", "up", "--data-dir", dataDir]);
  await expect(claimLauncher(dataDir, launcher.pid)).rejects.toThrow(
    `a cluster is already running from ${dataDir} (launcher pid ${launcher.pid})`,
  );
  // The refusal gave the lock back: once that launcher is gone, the directory is free.
  launcher.kill("SIGKILL");
  await new Promise((resolve) => launcher.once("exit", resolve));
  const lock = await claimLauncher(dataDir, launcher.pid);
  await lock.release();
});
