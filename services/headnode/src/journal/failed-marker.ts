// The record that a journal's file operation failed, and in which boot of the machine.
//
// Why: after a failed write or fsync, Linux may mark the pages it could not write clean
// and forget the error (the "fsyncgate" lesson). Until the machine restarts, a read of
// the segment files can then return records that never reached the disk, or, once
// those clean pages are evicted, the older bytes that are on it. Recovery reads the
// files, so a journal reopened in the same boot after a failure could come back holding
// ops it does not durably hold: a replica that then claims them may commit or be
// promoted on a log it does not have, and the first crash takes them away (with an
// intact record acknowledged later behind the hole, which recovery refuses as
// corruption). So the journal that fails records the boot id (@ballast/runtime
// boot-id.ts), and `Journal.open` refuses it for the rest of that boot
// (JournalUntrustedError): the replica is then rebuilt from its peers, which removes
// the directory and this record with it. After a reboot the page cache is gone, the
// disk is what recovery reads, and ordinary recovery applies; the record is then
// deleted.
//
// Two places, because the file may not be writable on a disk that has just failed
// (errors=remount-ro, no space): the file in the journal's directory, `failed-on-boot`,
// which a restarted process finds, and a table in this process, which holds whatever
// became of the file. The file need not be durable: it matters only within the boot it
// names, where the page cache serves it. It is synced anyway, at no cost to anyone, in
// case the kernel evicts its pages. Its content is one JSON line; a file that cannot be
// parsed (a write cut short) is taken as written in the current boot: refusing costs a
// rebuild, trusting could cost acknowledged writes.

import { open, readFile, unlink } from "node:fs/promises";
import { join, sep } from "node:path";
import { constants as runtimeConstants, sameBoot } from "@ballast/runtime";

/** The marker's file name in the journal directory (never taken for a segment). */
export const failedMarkerName = "failed-on-boot";
const markerFormat = 1;

export interface FailedMarker {
  /** The boot the failure happened in; undefined when the file could not be parsed. */
  bootId: string | undefined;
  /** Wall-clock time of the failure, for an operator; 0 when unknown. */
  failedAtMs: number;
  /** What failed, for an operator. */
  error: string;
}

/** Journals that failed in this process: directory → boot id of the failure. */
const failedInProcess = new Map<string, FailedMarker>();

/**
 * Records that the journal in `directory` failed in boot `bootId`: at once in this
 * process, then in the file, as far as the disk lets it. Never throws; returns the
 * error that kept the file from being written, if any.
 */
export async function recordFailure(
  directory: string,
  bootId: string,
  cause: unknown,
): Promise<unknown> {
  const marker: FailedMarker = {
    bootId,
    failedAtMs: Date.now(),
    error: (cause as Error)?.message ?? String(cause),
  };
  failedInProcess.set(directory, marker);
  const path = join(directory, failedMarkerName);
  try {
    const handle = await open(path, "w", runtimeConstants.dataFileMode);
    try {
      await handle.writeFile(`${JSON.stringify({ format: markerFormat, ...marker })}\n`);
      await handle.datasync().catch(() => undefined);
    } finally {
      await handle.close();
    }
    await syncEntries(directory).catch(() => undefined);
    return undefined;
  } catch (error) {
    return error;
  }
}

/** The failure recorded for the journal in `directory`, from this process or its file. */
export async function readFailure(directory: string): Promise<FailedMarker | undefined> {
  const remembered = failedInProcess.get(directory);
  let text: string;
  try {
    text = await readFile(join(directory, failedMarkerName), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return remembered;
    throw error;
  }
  const fromFile = parseMarker(text);
  // The process's own record names this boot for sure: it wins over a file of any boot.
  return remembered ?? fromFile;
}

/** Whether a recorded failure forbids opening the journal in boot `bootId`. */
export function failedInBoot(marker: FailedMarker, bootId: string): boolean {
  return marker.bootId === undefined || sameBoot(marker.bootId, bootId);
}

/** Deletes the record of a failure from an earlier boot, durably. */
export async function clearFailure(directory: string): Promise<void> {
  failedInProcess.delete(directory);
  try {
    await unlink(join(directory, failedMarkerName));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  await syncEntries(directory);
}

/**
 * Forgets this process's records of failed journals in or under `directory`: it was
 * removed (a replica rebuilt, a volume dropped), and a journal made there is new.
 */
export function forgetFailuresUnder(directory: string): void {
  for (const failed of failedInProcess.keys()) {
    if (failed === directory || failed.startsWith(directory + sep)) {
      failedInProcess.delete(failed);
    }
  }
}

/**
 * fsync of the directory (files.ts has the same; not imported, because its
 * removeDirectory calls forgetFailuresUnder here).
 */
async function syncEntries(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function parseMarker(text: string): FailedMarker {
  try {
    const parsed = JSON.parse(text) as Partial<FailedMarker> & { format?: unknown };
    if (parsed.format === markerFormat && typeof parsed.bootId === "string") {
      return {
        bootId: parsed.bootId,
        failedAtMs: typeof parsed.failedAtMs === "number" ? parsed.failedAtMs : 0,
        error: typeof parsed.error === "string" ? parsed.error : "",
      };
    }
  } catch {
    // fall through: unreadable
  }
  return { bootId: undefined, failedAtMs: 0, error: `an unreadable ${failedMarkerName} file` };
}
