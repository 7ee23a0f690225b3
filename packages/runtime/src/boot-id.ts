// Which boot of the machine this process runs in: the kernel's boot id, a random UUID
// Linux draws at every boot (/proc/sys/kernel/random/boot_id; a container sees its
// host's, which is the one that matters here: the page cache is the host kernel's).
//
// Why it matters: after a failed write or fsync, Linux may mark the pages it could not
// write clean and drop the error, so for the rest of that boot a read of the file can
// return bytes that never reached the disk ("fsyncgate"). Storage that saw such a
// failure records the boot it happened in and refuses to trust its files again until
// the boot id changes (the head node's journal: journal/failed-marker.ts); after a
// reboot the page cache is gone and the disk is what a read returns.
//
// Where the id cannot be read (not Linux, /proc not mounted), `unknownBootId` is
// returned: the caller cannot tell a reboot from none, and must take it as the same
// boot. Tests of real processes may set the id with BALLAST_TEST_BOOT_ID, honoured only
// with BALLAST_TEST_FAULTS=1 (test-faults.ts), to stand for a reboot.

import { readFile } from "node:fs/promises";
import { testFaultsEnvVar } from "./test-faults.ts";

/** Where Linux publishes the id of the current boot. */
export const bootIdPath = "/proc/sys/kernel/random/boot_id";
/** The boot id where none can be read: never taken for another boot than the current one. */
export const unknownBootId = "unknown";
/** With BALLAST_TEST_FAULTS=1, the boot id this process takes as its own (a test's reboot). */
export const testBootIdEnvVar = "BALLAST_TEST_BOOT_ID";

let cached: Promise<string> | undefined;

/** The current boot's id, read once per process; `unknownBootId` when it cannot be read. */
export function currentBootId(): Promise<string> {
  cached ??= readBootId();
  return cached;
}

async function readBootId(): Promise<string> {
  const override = process.env[testBootIdEnvVar];
  if (process.env[testFaultsEnvVar] === "1" && override !== undefined && override !== "") {
    return override;
  }
  try {
    const id = (await readFile(bootIdPath, "utf8")).trim();
    return id === "" ? unknownBootId : id;
  } catch {
    return unknownBootId;
  }
}

/**
 * Whether a failure recorded in boot `recorded` happened in the current boot `current`,
 * as far as can be told: an unknown id on either side counts as the same boot.
 */
export function sameBoot(recorded: string, current: string): boolean {
  return recorded === current || recorded === unknownBootId || current === unknownBootId;
}
