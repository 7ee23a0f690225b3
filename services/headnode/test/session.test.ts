// The head node's session numbers (session.ts): one more than the stored one, and from
// the wall clock for a directory with none, so that a node back on an empty disk never
// gives out a session its lost disk used.

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { freshSession, nextSession, sessionEpochMs } from "../src/session.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ballast-session-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const day = 24 * 3600 * 1000;

test("a directory with no session file starts from the wall clock, and later starts count up", async () => {
  const nowMs = sessionEpochMs + 2000 * day;
  const first = await nextSession(dir, 0, nowMs);
  expect(first).toBe(2000 * 24 * 3600);
  expect(await nextSession(dir, 0, nowMs)).toBe(first + 1);
  expect(await nextSession(dir, first + 10, nowMs)).toBe(first + 11);
  expect((await readFile(join(dir, "session"), "utf8")).trim()).toBe(String(first + 11));
});

test("a node back on an empty disk starts above every session its lost disk gave out", async () => {
  // The lost disk: created a year earlier and restarted 5,000 times since.
  const lost = await nextSession(dir, 0, sessionEpochMs + 1000 * day);
  let last = lost;
  for (let start = 0; start < 5; start++)
    last = await nextSession(dir, 0, sessionEpochMs + 1000 * day);
  await writeFile(join(dir, "session"), `${last + 5000}\n`);
  const stored = Number((await readFile(join(dir, "session"), "utf8")).trim());
  await rm(join(dir, "session"));
  const fresh = await nextSession(dir, 0, sessionEpochMs + 1365 * day);
  expect(fresh).toBeGreaterThan(stored);
});

test("sessions of a fresh directory fit the protocol's 32 bits for over a century", () => {
  expect(freshSession(sessionEpochMs)).toBe(1);
  expect(freshSession(sessionEpochMs - day)).toBe(1);
  expect(freshSession(Date.UTC(2150, 0, 1))).toBeLessThan(0xffff_ffff);
});

test("sessions taken at once in one process are each stored and each new", async () => {
  // Two failed replicas reopened by configures of two partitions, which run concurrently
  // (headnode.ts): both used to read the file before either wrote it, and the second
  // write's rename found the shared temporary file gone (ENOENT).
  const nowMs = sessionEpochMs + 2000 * day;
  const node = await nextSession(dir, 0, nowMs);
  const taken = await Promise.allSettled([
    nextSession(dir, node, nowMs),
    nextSession(dir, node, nowMs),
    nextSession(dir, node, nowMs),
  ]);
  const sessions = taken.map((outcome) => {
    if (outcome.status === "rejected") throw outcome.reason;
    return outcome.value;
  });
  expect([...sessions].sort((a, b) => a - b)).toEqual([node + 1, node + 2, node + 3]);
  expect((await readFile(join(dir, "session"), "utf8")).trim()).toBe(String(node + 3));
});
