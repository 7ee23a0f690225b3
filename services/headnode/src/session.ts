// The head node's session number: one more than the last start's, kept in the data
// directory and made durable before the node serves. Secondaries ignore replication
// messages from a primary session older than one they have seen, which is what stops a
// delayed message from a primary's previous life from rewriting their logs.
//
// A data directory with no session file (a new node, or one back under its old id on an
// empty disk) starts from the wall clock in seconds since sessionEpochMs, not from 1:
// the node's sessions on a lost disk named chunks on sleds, checkpoint blobs and log
// entries that other replicas still hold, and a session given out again would name
// different data the same way (a sled refuses a chunk written twice with different
// data). That holds while the node has averaged fewer than one start a second; sessions
// fit 32 bits (the replication protocol's field) until the year 2156.
//
// Concurrency: one process takes sessions one at a time per file. A head node takes one
// at its start and one for each failed replica it reopens, and configures of different
// partitions run concurrently: two reopens that both read the file before either wrote
// it computed the same number, and their writes, through the one temporary file, raced
// so that the second rename found the temporary gone (ENOENT) and failed its configure
// after the failed replica had been closed.
//
// The file is a counter file (runtime counter-file.ts): two checksummed copies, made
// whole once, and from then on each take overwrites the copy holding the lower session in
// place and syncs it before the session is used. A take needs no free block, so a head
// node starts on a full data disk (its journals are preallocated): before, each take
// replaced the file through a temporary file and a rename, which failed with ENOSPC, and
// the node exited at every start. A crash or a torn write during a take leaves the other
// copy, the previous session, which is the one read next (the torn one was never used).
// A file of the first layout (the number as text) is read, and replaced by the two-copy
// file at its next take. A file that cannot be read, or whose copies both fail their
// checksums, refuses the take: a session below one already given out must never follow.

import { resolve } from "node:path";
import { counterFile, KeyedLock } from "@ballast/runtime";

const sessionFileName = "session";
const sessionMax = 0xffff_ffff;
/** 2020-01-01T00:00:00Z: sessions of a fresh directory count seconds from it. */
export const sessionEpochMs = Date.UTC(2020, 0, 1);

/** The first session of a directory with no session file, at wall-clock `nowMs`. */
export function freshSession(nowMs: number): number {
  return Math.max(1, Math.floor((nowMs - sessionEpochMs) / 1000));
}

/** Session files being read and written in this process, one taker at a time each. */
const sessionFiles = new KeyedLock();

/**
 * `above`: a session the result must exceed besides the stored one (the node's own);
 * `nowMs`: the wall clock, for a directory with no session file.
 */
export function nextSession(dataDir: string, above = 0, nowMs = Date.now()): Promise<number> {
  const path = resolve(dataDir, sessionFileName);
  return sessionFiles.run(path, () => takeSession(path, above, nowMs));
}

/** The session stored in `dataDir` (undefined without a session file); throws on damage. */
export async function storedSession(dataDir: string): Promise<number | undefined> {
  const path = resolve(dataDir, sessionFileName);
  const stored = await counterFile(path, (bytes) => readTextSession(path, bytes)).read();
  if ("damaged" in stored) throw new Error(stored.damaged);
  return "value" in stored ? stored.value : undefined;
}

/** Reads the stored session and stores the next; only under `sessionFiles` for `path`. */
async function takeSession(path: string, above: number, nowMs: number): Promise<number> {
  const file = counterFile(path, (bytes) => readTextSession(path, bytes));
  const stored = await file.read();
  if ("damaged" in stored) throw new Error(`cannot take a session: ${stored.damaged}`);
  const previous = "value" in stored ? stored.value : freshSession(nowMs) - 1;
  if (previous >= sessionMax) {
    throw new Error(`${path} holds session ${previous}: no session is left below ${sessionMax}`);
  }
  const session = Math.max(previous, above) + 1;
  await file.raise(session);
  return session;
}

/** The session in a file of the first layout: the number as text. */
function readTextSession(path: string, bytes: Buffer): number | { damaged: string } {
  const text = bytes.toString("utf8").trim();
  const session = Number(text);
  if (text === "" || !Number.isSafeInteger(session) || session < 0 || session >= sessionMax) {
    return {
      damaged: `${path} holds ${JSON.stringify(text)}, not a session number below ${sessionMax}`,
    };
  }
  return session;
}
