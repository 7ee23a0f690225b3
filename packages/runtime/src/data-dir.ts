// A service's data directory belongs to one node: the first start writes an identity
// file, and every later start checks it, so that two nodes can never share a directory
// and a directory is never adopted by a node of another kind.
//
// The identity also names the directory itself: `diskId`, drawn at random when the
// directory is created (or when a directory from before disk ids is first claimed) and
// never changed. A node that comes back under its old id on an empty disk (an operator
// replaced a failed one) therefore says so in its heartbeats, and the coordinator counts
// every replica it held on the old disk as lost instead of trusting an empty one.
//
// A claim also locks the directory for the life of the process (data-dir-lock.ts),
// before anything in it is read: a second process of the same node on the same
// directory is refused, where the identity alone would let it in.
//
// Failure model: the identity is written to a temporary file, synced, renamed and the
// directory synced, so a crash leaves the old identity or the new one. One lost anyway
// (a crash before the directory sync) gives the directory a new id on the next start,
// which costs a rebuild of its replicas, never an acknowledged write.

import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ServiceKind } from "@ballast/protocol";
import { dataDirectoryMode, dataFileMode, otherUsersModeMask } from "./constants.ts";
import { type DataDirLock, lockDataDir } from "./data-dir-lock.ts";
import { DataDirError } from "./errors.ts";

export const identityFileName = "identity.json";
const identityFormat = 1;

export interface Identity {
  format: number;
  kind: ServiceKind;
  nodeId: string;
  createdAtMs: number;
  /** 32 hex digits, random: which directory this is (see the module header). */
  diskId: string;
}

const diskIdPattern = /^[0-9a-f]{32}$/;

function newDiskId(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Replaces the file at `path` with `data` so that a crash leaves the old file or the new
 * one, never a mix: written to a temporary file, synced, renamed over it, and its
 * directory synced. The temporary file has `mode` (dataFileMode unless told: every
 * caller writes under a data directory) before any byte is written to it (also one left
 * behind by an earlier attempt), so what it holds is never readable by others on the way,
 * and a file of an older build with a wider mode is replaced by one with this mode.
 */
export async function writeFileDurably(
  path: string,
  data: string | Uint8Array,
  options: { mode?: number } = {},
): Promise<void> {
  const mode = options.mode ?? dataFileMode;
  const temporary = `${path}.tmp`;
  const file = await open(temporary, "w", mode);
  try {
    await file.chmod(mode);
    await file.writeFile(data);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  const directory = await open(dirname(path), "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

function writeIdentity(dataDir: string, identity: Identity): Promise<void> {
  return writeFileDurably(
    join(dataDir, identityFileName),
    `${JSON.stringify(identity, null, 2)}\n`,
  );
}

/** A data directory this process holds: its identity, and the lock to give back at stop. */
export interface DataDirClaim {
  identity: Identity;
  lock: DataDirLock;
  /**
   * The directory's mode when users other than its owner and group may read or enter it
   * (one made by an older build, 0755 under the usual umask): the start warns.
   */
  openToOthersMode: number | undefined;
}

/**
 * The permission bits of `directory` when others (not the owner, not the group) have
 * any; undefined when they have none. A directory is made dataDirectoryMode, but one
 * that exists keeps its mode: an operator may have opened it to a group on purpose (a
 * backup user), and a start that narrowed it would undo that each time. Others, though,
 * are never meant to read volume data, so they are worth a warning.
 */
export async function openToOthersMode(directory: string): Promise<number | undefined> {
  const mode = (await stat(directory)).mode & 0o777;
  return (mode & otherUsersModeMask) === 0 ? undefined : mode;
}

/** What a start says of a directory `openToOthersMode` found open: the risk and the fix. */
export function openToOthersWarning(directory: string, mode: number): string {
  return `${directory} is open to other users (mode ${mode.toString(8)}), who can read volume data from its files: chmod 700 ${directory}`;
}

/**
 * Locks the directory for this process (making it on first use), then creates its
 * identity on first use or checks it; refuses a directory another process holds, and
 * one of another node. Every failure is a DataDirError that names the directory: one
 * that cannot be made or read (a file of that name, no permission) too, which the start
 * reports as a configuration problem rather than a crash with a stack. A refused claim
 * holds no lock; a granted one holds it until `lock.release()` or the process ends.
 * A directory made here, and each missing parent, is dataDirectoryMode.
 */
export async function claimDataDir(
  dataDir: string,
  kind: ServiceKind,
  nodeId: string,
): Promise<DataDirClaim> {
  let lock: DataDirLock | undefined;
  try {
    // Making the directory first is the one step before the lock: the lock is named
    // after the directory, and making one that exists changes nothing in it.
    await mkdir(dataDir, { recursive: true, mode: dataDirectoryMode });
    lock = await lockDataDir(dataDir, { kind, nodeId });
    const identity = await claim(dataDir, kind, nodeId);
    return { identity, lock, openToOthersMode: await openToOthersMode(dataDir) };
  } catch (error) {
    await lock?.release();
    if (error instanceof DataDirError) throw error;
    throw new DataDirError(`cannot use ${dataDir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

async function claim(dataDir: string, kind: ServiceKind, nodeId: string): Promise<Identity> {
  const path = join(dataDir, identityFileName);
  let text: string | undefined;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  if (text === undefined) {
    const identity: Identity = {
      format: identityFormat,
      kind,
      nodeId,
      createdAtMs: Date.now(),
      diskId: newDiskId(),
    };
    await writeIdentity(dataDir, identity);
    return identity;
  }
  let identity: Omit<Identity, "diskId"> & { diskId?: unknown };
  try {
    identity = JSON.parse(text) as typeof identity;
  } catch {
    throw new DataDirError(`cannot use ${dataDir}: ${path} is not valid JSON`);
  }
  if (identity.format !== identityFormat) {
    throw new DataDirError(
      `cannot use ${dataDir}: its identity format is ${identity.format}, this build reads ${identityFormat}`,
    );
  }
  if (identity.kind !== kind || identity.nodeId !== nodeId) {
    throw new DataDirError(
      `cannot use ${dataDir} for ${kind} ${nodeId}: it belongs to ${identity.kind} ${identity.nodeId}`,
    );
  }
  if (identity.diskId === undefined) {
    // Written before disk ids: this directory gets one now, kept from here on.
    const named = { ...identity, diskId: newDiskId() };
    await writeIdentity(dataDir, named);
    return named;
  }
  if (typeof identity.diskId !== "string" || !diskIdPattern.test(identity.diskId)) {
    throw new DataDirError(
      `cannot use ${dataDir}: its identity's diskId ${JSON.stringify(identity.diskId)} is not 32 hex digits`,
    );
  }
  return identity as Identity;
}
