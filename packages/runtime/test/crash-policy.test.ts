// The crash policy of a service process (run.ts, installCrashPolicy): a rejection
// nothing handled, or an exception nothing caught, stops the process with exit code 1
// after a fatal line in its JSON log (with the stack) and a line on stderr, rather than
// a bare stack on stderr alone; a rejection that is handled changes nothing. Checked in
// small child processes, since the policy ends the process it is installed in.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, test } from "vitest";

const runModule = fileURLToPath(new URL("../src/run.ts", import.meta.url));
const loggerModule = fileURLToPath(new URL("../src/logger.ts", import.meta.url));
const tsx = import.meta.resolve("tsx");
let directory: string;

beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), "ballast-crash-policy-"));
});

afterEach(() => {
  rmSync(directory, { recursive: true, force: true });
});

/** Runs `body` in a child process with the policy installed; its exit, stderr and log. */
function runChild(body: string) {
  const logPath = join(directory, "sled.log");
  const script = `
    const { installCrashPolicy } = await import(${JSON.stringify(runModule)});
    const { createLogger } = await import(${JSON.stringify(loggerModule)});
    const logger = createLogger({ service: "sled", nodeId: "sled-1", destination: ${JSON.stringify(logPath)} });
    installCrashPolicy("sled", logger);
    ${body}
  `;
  const child = spawnSync(
    process.execPath,
    ["--import", tsx, "--input-type=module", "-e", script],
    { encoding: "utf8" },
  );
  let log: Record<string, unknown>[] = [];
  try {
    log = readFileSync(logPath, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  } catch {
    // No log written.
  }
  return { status: child.status, stderr: child.stderr, log };
}

test("an unhandled rejection stops the process with a fatal log line and exit code 1", () => {
  const { status, stderr, log } = runChild(`
    Promise.reject(new Error("a stray failure"));
    setTimeout(() => process.stdout.write("still running\\n"), 200);
  `);
  expect(status).toBe(1);
  expect(stderr).toContain("ballast sled: unhandled rejection: a stray failure");
  const fatal = log.find((line) => line.level === 60);
  expect(fatal).toMatchObject({ event: "unhandled rejection", error: "a stray failure" });
  expect(String(fatal?.stack)).toContain("a stray failure");
});

test("an uncaught exception stops the process the same way", () => {
  const { status, stderr, log } = runChild(`
    setTimeout(() => { throw new Error("thrown from a timer"); }, 0);
  `);
  expect(status).toBe(1);
  expect(stderr).toContain("ballast sled: uncaught exception: thrown from a timer");
  expect(log.find((line) => line.level === 60)).toMatchObject({ event: "uncaught exception" });
});

test("a rejection that is handled changes nothing", () => {
  const { status, stderr, log } = runChild(`
    const failed = Promise.reject(new Error("seen"));
    failed.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 10));
    process.stdout.write("done\\n");
  `);
  expect(status).toBe(0);
  expect(stderr).toBe("");
  expect(log.filter((line) => line.level === 60)).toEqual([]);
});
