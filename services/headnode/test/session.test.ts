// The head node's session numbers (session.ts): one more than the stored one, and from
// the wall clock for a directory with none, so that a node back on an empty disk never
// gives out a session its lost disk used.

import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { counterCopyStride, counterFileBytes } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test } from "vitest";
import { freshSession, nextSession, sessionEpochMs, storedSession } from "../src/session.ts";

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
  expect(await storedSession(dir)).toBe(first + 11);
});

test("a node back on an empty disk starts above every session its lost disk gave out", async () => {
  // The lost disk: created a year earlier and restarted 5,000 times since.
  const lost = await nextSession(dir, 0, sessionEpochMs + 1000 * day);
  let last = lost;
  for (let start = 0; start < 5; start++)
    last = await nextSession(dir, 0, sessionEpochMs + 1000 * day);
  await writeFile(join(dir, "session"), `${last + 5000}\n`);
  const stored = await storedSession(dir);
  if (stored === undefined) throw new Error("no session stored");
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
  expect(await storedSession(dir)).toBe(node + 3);
});

const session = () => join(dir, "session");

test("a take needs no new file: with no temporary file possible (a full disk) it succeeds in place", async () => {
  // The first take makes the file whole; later ones overwrite it in place. A directory at
  // the temporary path makes any write through a temporary file and a rename fail, as a
  // full file system does (before, every take went that way, and a head node on a full
  // data disk exited at every start).
  const nowMs = sessionEpochMs + 2000 * day;
  const first = await nextSession(dir, 0, nowMs);
  const made = await stat(session());
  await mkdir(`${session()}.tmp`);
  let last = first;
  for (let take = 0; take < 5; take++) {
    const next = await nextSession(dir, 0, nowMs);
    expect(next).toBe(last + 1);
    last = next;
  }
  expect((await stat(session())).ino).toBe(made.ino);
  expect((await stat(session())).size).toBe(counterFileBytes);
  expect(await storedSession(dir)).toBe(last);
  expect((await readdir(dir)).sort()).toEqual(["session", "session.tmp"]);
});

test("a torn copy falls back to the other: the session read is never below one given out", async () => {
  const nowMs = sessionEpochMs + 2000 * day;
  const first = await nextSession(dir, 0, nowMs);
  const second = await nextSession(dir, 0, nowMs);
  expect(second).toBe(first + 1);
  // `second` went to copy B (copy A held `first`): tear copy B, as a crash during the
  // write of a third take would tear copy A.
  const handle = await open(session(), "r+");
  try {
    await handle.write(Buffer.from([0xde, 0xad]), 0, 2, counterCopyStride + 1);
  } finally {
    await handle.close();
  }
  expect(await storedSession(dir)).toBe(first);
  // The next take overwrites the torn copy and counts from the valid one.
  expect(await nextSession(dir, second, nowMs)).toBe(second + 1);
  // A crash during a take tears the copy it was writing (the lower one), and the take
  // never returned, so its session was never used: the other copy still holds the session
  // given out last. (A finished take's copy, torn afterwards, stands in for it here.)
  const before = await readFile(session());
  const interrupted = await nextSession(dir, 0, nowMs);
  const after = await readFile(session());
  const written = before.subarray(0, 12).equals(after.subarray(0, 12)) ? counterCopyStride : 0;
  const torn = Buffer.from(after);
  torn[written + 3] = (torn[written + 3] ?? 0) ^ 0xff;
  await writeFile(session(), torn);
  expect(await storedSession(dir)).toBe(interrupted - 1);
  expect(await nextSession(dir, 0, nowMs)).toBe(interrupted);
});

test("a file with neither copy valid refuses the take, not counting from the wall clock", async () => {
  const nowMs = sessionEpochMs + 2000 * day;
  await nextSession(dir, 0, nowMs);
  await writeFile(session(), Buffer.alloc(counterFileBytes, 0x5a));
  await expect(nextSession(dir, 0, nowMs)).rejects.toThrow(/neither copy/);
  await writeFile(session(), "\n");
  await expect(nextSession(dir, 0, nowMs)).rejects.toThrow(/not a session number/);
});

test("a session file of the first layout (text) is read, and converted at the next take", async () => {
  const nowMs = sessionEpochMs + 2000 * day;
  await writeFile(session(), "123456789\n");
  expect(await storedSession(dir)).toBe(123456789);
  expect(await nextSession(dir, 0, nowMs)).toBe(123456790);
  expect((await stat(session())).size).toBe(counterFileBytes);
  const converted = await stat(session());
  expect(await nextSession(dir, 0, nowMs)).toBe(123456791);
  expect((await stat(session())).ino).toBe(converted.ino);
  expect(await storedSession(dir)).toBe(123456791);
});

test("sessions strictly increase across takes and restarts (a fresh read of the file each time)", async () => {
  const nowMs = sessionEpochMs + 2000 * day;
  const given: number[] = [];
  for (let take = 0; take < 20; take++) {
    // A later wall clock never lowers a stored session's successor, nor a node's own.
    const above = take % 3 === 0 ? (given.at(-1) ?? 0) : 0;
    given.push(await nextSession(dir, above, nowMs + take * day));
  }
  for (let i = 1; i < given.length; i++) expect(given[i]).toBe((given[i - 1] ?? 0) + 1);
  expect(await storedSession(dir)).toBe(given.at(-1));
});
