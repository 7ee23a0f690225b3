// The journal under kill -9, with a real process: a writer (fixtures/journal-writer.ts)
// appends with concurrent loops and prints each op once its append has resolved; the
// test kills it with SIGKILL about 300 ms into its run and reopens the journal. Every op
// the writer printed must be there with the payload it wrote, and the records must be
// contiguous. Three rounds on the same directory: each writer recovers what the last one
// left, torn tail included, and carries on.

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, test } from "vitest";
import { Journal } from "../src/journal/index.ts";
import { payloadForOpNum, temporaryDirectory } from "./fixtures/journal-files.ts";

const writerPath = fileURLToPath(new URL("./fixtures/journal-writer.ts", import.meta.url));
const repositoryRoot = fileURLToPath(new URL("../../..", import.meta.url));
const runMs = 300;
const startTimeoutMs = 15_000;

let directory: string;
let removeDirectory: () => Promise<void>;
let writer: ChildProcess | undefined;

beforeEach(async () => {
  ({ path: directory, remove: removeDirectory } = await temporaryDirectory());
});

afterEach(async () => {
  writer?.kill("SIGKILL");
  await removeDirectory();
});

/** Runs the writer until ~runMs after it is ready, kills it, returns the ops it printed. */
async function runWriterAndKill(): Promise<{ acknowledged: number[]; ready: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", writerPath, directory], {
    cwd: repositoryRoot,
    stdio: ["ignore", "pipe", "pipe"],
  });
  writer = child;
  const exited = new Promise<NodeJS.Signals | null>((resolve) => {
    child.once("exit", (_code, signal) => resolve(signal));
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const startedMs = Date.now();
  while (!stdout.includes("\n")) {
    if (child.exitCode !== null || Date.now() - startedMs > startTimeoutMs) {
      throw new Error(`the writer did not start: exit ${child.exitCode}, stderr: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await new Promise((resolve) => setTimeout(resolve, runMs));
  child.kill("SIGKILL");
  expect(await exited).toBe("SIGKILL");
  writer = undefined;
  // Only whole lines count: a line cut by the kill was never fully reported.
  const lines = stdout.split("\n").slice(0, -1);
  const [ready = "", ...acknowledgedLines] = lines;
  return { ready, acknowledged: acknowledgedLines.map(Number) };
}

test("every append acknowledged before kill -9 survives, over three kills", async () => {
  let acknowledgedTotal = 0;
  for (let round = 0; round < 3; round++) {
    const { acknowledged, ready } = await runWriterAndKill();
    expect(ready).toMatch(/^ready (none|\d+) \d+$/);
    expect(acknowledged.length, "the writer acknowledged appends before the kill").toBeGreaterThan(
      10,
    );
    acknowledgedTotal += acknowledged.length;

    const { journal, records } = await Journal.open({ directory });
    try {
      expect(records[0]?.opNum).toBe(1);
      for (const [index, record] of records.entries()) {
        expect(record.opNum).toBe(index + 1);
        const payloadExpected = Buffer.from(payloadForOpNum(record.opNum));
        expect(Buffer.from(record.payload).equals(payloadExpected), `op ${record.opNum}`).toBe(
          true,
        );
      }
      const lastOpNum = records.at(-1)?.opNum ?? 0;
      const lost = acknowledged.filter((opNum) => opNum > lastOpNum);
      expect(lost, "acknowledged ops missing after the crash").toEqual([]);
    } finally {
      await journal.close();
    }
  }
  expect(acknowledgedTotal).toBeGreaterThan(30);
}, 60_000);
