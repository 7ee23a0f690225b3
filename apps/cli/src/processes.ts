// Child processes of the launcher. Each child runs in its own process group, so that a
// Ctrl-C at the terminal reaches only the launcher, which then stops the children in
// order: services first (they drain and close files while NATS is still up), NATS last.

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { constants as runtimeConstants } from "@ballast/runtime";
import { childStopGraceMs, staleProcessPollIntervalMs } from "./constants.ts";

export interface ChildOptions {
  command: string;
  args: readonly string[];
  /** Appended to, so that restarts keep earlier history; created its owner's alone. */
  logPath: string;
  env?: Record<string, string>;
  cwd?: string;
}

export function spawnChild(options: ChildOptions): ChildProcess {
  const log = openSync(options.logPath, "a", runtimeConstants.dataFileMode);
  try {
    return spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", log, log],
      detached: true,
    });
  } finally {
    closeSync(log);
  }
}

/** Resolves with the exit code (or signal name) once the child has exited. */
export function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
  });
}

/** SIGTERM, then SIGKILL after the grace period; resolves once the child is gone. */
export async function stopChild(child: ChildProcess, graceMs = childStopGraceMs): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), graceMs);
  });
  if ((await Promise.race([gone, late])) === "late") {
    child.kill("SIGKILL");
    await gone;
  }
  clearTimeout(timer);
}

/** SIGKILL at once (a stopped child too); resolves once the child is gone. */
export async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill("SIGKILL");
  await gone;
}

/** Whether `child` has neither exited nor been killed (it may be stopped by SIGSTOP). */
export function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

export function isAlive(pid: number | undefined): boolean {
  if (pid === undefined || !Number.isSafeInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Stops process `pid`, which a launcher that died left running, if it is still the
 * process that launcher started: `isOurs` judges its arguments (/proc/<pid>/cmdline), so
 * that a pid the kernel has since handed to another program is never signalled. SIGTERM,
 * then SIGKILL after `graceMs`; resolves once it is gone, with whether it was ours.
 */
export async function stopStaleProcess(
  pid: number,
  isOurs: (argv: readonly string[]) => boolean,
  graceMs: number,
): Promise<boolean> {
  const argv = await commandLineOf(pid);
  if (argv === undefined || !isOurs(argv)) return false;
  signalUnlessGone(pid, "SIGTERM");
  if (!(await waitUntilGone(pid, graceMs))) {
    signalUnlessGone(pid, "SIGKILL");
    // SIGKILL cannot be caught; only a process stuck in the kernel outlives it a while.
    await waitUntilGone(pid, Number.POSITIVE_INFINITY);
  }
  return true;
}

/**
 * Whether process `pid` is running (not gone, not a zombie) with a command line that
 * `isOurs` accepts: never true of a pid the kernel has handed to another program.
 */
export async function isRunningWith(
  pid: number,
  isOurs: (argv: readonly string[]) => boolean,
): Promise<boolean> {
  const argv = await commandLineOf(pid);
  return argv !== undefined && isOurs(argv) && !(await isGone(pid));
}

/** Signals `pid`; one that has ended since it was looked at is no error. */
function signalUnlessGone(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/** The arguments process `pid` was started with; undefined when it is gone. */
async function commandLineOf(pid: number): Promise<string[] | undefined> {
  if (!isAlive(pid)) return undefined;
  try {
    const text = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return text.split("\0").filter((argument, index, all) => index < all.length - 1 || argument);
  } catch {
    return undefined;
  }
}

/**
 * Whether process `pid` has ended: it is gone, or a zombie (exited; its parent, not us,
 * has yet to reap it). A zombie holds no file and no socket any more.
 */
async function isGone(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return true;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // "pid (name) state ...": the name may hold spaces and parentheses; the state is
    // the field after the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

/** Polls until `pid` has ended or `timeoutMs` has passed; whether it ended. */
async function waitUntilGone(pid: number, timeoutMs: number): Promise<boolean> {
  for (let waited = 0; waited <= timeoutMs; waited += staleProcessPollIntervalMs) {
    if (await isGone(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, staleProcessPollIntervalMs));
  }
  return isGone(pid);
}
