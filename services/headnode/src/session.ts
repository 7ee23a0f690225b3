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

import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { KeyedLock, writeFileDurably } from "@ballast/runtime";

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

/** Reads the stored session and stores the next; only under `sessionFiles` for `path`. */
async function takeSession(path: string, above: number, nowMs: number): Promise<number> {
  let previous = freshSession(nowMs) - 1;
  try {
    const text = (await readFile(path, "utf8")).trim();
    previous = Number(text);
    if (!Number.isSafeInteger(previous) || previous < 0 || previous >= sessionMax) {
      throw new Error(
        `${path} holds ${JSON.stringify(text)}, not a session number below ${sessionMax}`,
      );
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const session = Math.max(previous, above) + 1;
  await writeFileDurably(path, `${session}\n`);
  return session;
}
