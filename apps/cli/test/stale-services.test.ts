// `ballast up` after a launcher that died (up.ts, stopStaleServices): what the old
// cluster file says ran is stopped only while its command line still names that
// service's id and data directory. The "services" here are real processes with those
// arguments, signalled for real; none is a child the test waits on through its handle.

import { type ChildProcess, spawn } from "node:child_process";
import { afterEach, expect, test } from "vitest";
import type { ServiceRecord } from "../src/cluster-file.ts";
import { isAlive } from "../src/processes.ts";
import { stopStaleServices } from "../src/up.ts";

const started: ChildProcess[] = [];
afterEach(() => {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

/** A process whose command line looks like a service's; `stubborn` ignores SIGTERM. */
async function fakeService(id: string, dataDir: string, stubborn = false): Promise<ChildProcess> {
  const script = `${stubborn ? "process.on('SIGTERM', () => undefined);" : ""}
    setInterval(() => undefined, 60_000); process.stdout.write("ready\\n");`;
  const child = spawn(
    process.execPath,
    ["-e", script, "--", "--id", id, "--data-dir", dataDir, "--nats", "nats://127.0.0.1:1"],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  started.push(child);
  await new Promise<void>((resolve) => child.stdout?.once("data", () => resolve()));
  return child;
}

function recordOf(id: string, dataDir: string, pid: number): ServiceRecord {
  return { kind: "sled", id, pid, dataDir, log: `/tmp/${id}.log` };
}

function exitOf(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode ?? child.signalCode ?? "unknown");
  }
  return new Promise((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
}

test("a service the dead launcher left is stopped, and is gone when the call returns", async () => {
  const child = await fakeService("sled-1", "/data/sled-1");
  const record = recordOf("sled-1", "/data/sled-1", child.pid!);
  const exit = exitOf(child);
  expect(await stopStaleServices([record])).toEqual([record]);
  expect(await exit).toBe("SIGTERM");
  expect(isAlive(child.pid)).toBe(false);
});

test("a pid that now runs something else is never signalled", async () => {
  const other = await fakeService("sled-2", "/data/sled-2");
  const elsewhere = await fakeService("sled-1", "/elsewhere/sled-1");
  const stopped = await stopStaleServices([
    recordOf("sled-1", "/data/sled-1", other.pid!),
    recordOf("sled-1", "/data/sled-1", elsewhere.pid!),
  ]);
  expect(stopped).toEqual([]);
  expect(isAlive(other.pid)).toBe(true);
  expect(isAlive(elsewhere.pid)).toBe(true);
});

test("one that ignores SIGTERM is killed after the grace period", async () => {
  const child = await fakeService("head-1", "/data/head-1", true);
  const exit = exitOf(child);
  const record = recordOf("head-1", "/data/head-1", child.pid!);
  expect(await stopStaleServices([record], 200)).toEqual([record]);
  expect(await exit).toBe("SIGKILL");
});

test("one that is already gone is skipped", async () => {
  const child = await fakeService("sled-3", "/data/sled-3");
  child.kill("SIGKILL");
  await exitOf(child);
  expect(await stopStaleServices([recordOf("sled-3", "/data/sled-3", child.pid!)])).toEqual([]);
});
