// Child processes of the launcher. Each child runs in its own process group, so that a
// Ctrl-C at the terminal reaches only the launcher, which then stops the children in
// order: services first (they drain and close files while NATS is still up), NATS last.

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { childStopGraceMs } from "./constants.ts";

export interface ChildOptions {
  command: string;
  args: readonly string[];
  /** Appended to, so that restarts keep earlier history. */
  logPath: string;
  env?: Record<string, string>;
  cwd?: string;
}

export function spawnChild(options: ChildOptions): ChildProcess {
  const log = openSync(options.logPath, "a");
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
