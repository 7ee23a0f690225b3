// Test-only fault switches for the chaos runner (apps/cli/src/chaos) and the
// integration tests, on real processes. Each acts only when a process runs with
// BALLAST_TEST_FAULTS=1:
//
// - hanging writes, the gray failure: each SIGUSR2 toggles "writes hang", and the few
//   write paths that call `testWritesHang()` (a head node's journal commit, a sled's
//   device writes) then wait, without failing, until the next SIGUSR2. The process stays
//   alive, heartbeats and answers everything that does not write: a node that looks
//   healthy but makes no progress.
// - failing writes, a disk error: each SIGURG arms one failure, and the next call to
//   `testWritesFail()` (a head node's journal commit) throws an Error with code EIO, as
//   a failed write or sync would, and uses it up. One signal fails one commit, so one
//   journal (the journal fails for good, and the replica reopened after it writes
//   again): which one, on a node hosting several, is whichever commits next. The kernel
//   does not queue a standard signal, so signals sent faster than the process handles
//   them may count as one.
// - a head node cut from the sleds, a network fault of one machine: while a file named
//   for the node exists in BALLAST_TEST_SLEDS_CUT_DIR, `testSledsCut(node)` says so, and
//   the node's sled client (headnode sled-client.ts `sledBusOf`) fails every request to
//   a sled as unanswered, as a link that drops them does. Other nodes, the coordinator
//   and the node's own journal are untouched. A file, not a signal: a test cuts and
//   mends two nodes apart, and no signal is left whose default action is harmless.
//
// Why SIGURG: its default action is to be ignored, so a process without the variable
// shrugs it off (no way to trigger the fault by mistake, nor to kill the process); Node
// uses SIGUSR1 for its inspector, and the benchmarks use SIGWINCH for their profilers;
// SIGURG is sent by the kernel only to a socket's owner set with F_SETOWN, which
// neither Node nor libuv sets.
//
// Inert unless the variable is set: no signal handler is installed, and each hook is
// one test of a module variable (with the switch on, `testSledsCut` also checks for its
// file, once per sled request).

import { existsSync } from "node:fs";
import { join } from "node:path";

export const testFaultsEnvVar = "BALLAST_TEST_FAULTS";
/** The directory where a file named for a head node cuts it from the sleds (above). */
export const testSledsCutDirEnvVar = "BALLAST_TEST_SLEDS_CUT_DIR";
/** The signal that toggles hanging writes. */
export const testHangSignal = "SIGUSR2";
/** The signal that arms one failed write. */
export const testFailSignal = "SIGURG";

let writesHang = false;
let released: (() => void)[] = [];
let failuresArmed = 0;

if (process.env[testFaultsEnvVar] === "1") {
  process.on(testHangSignal, () => {
    writesHang = !writesHang;
    process.stderr.write(`${testFaultsEnvVar}: writes ${writesHang ? "hang" : "resume"}\n`);
    if (!writesHang) {
      const waiting = released;
      released = [];
      for (const resume of waiting) resume();
    }
  });
  process.on(testFailSignal, () => {
    failuresArmed += 1;
    process.stderr.write(`${testFaultsEnvVar}: the next write fails (${failuresArmed} armed)\n`);
  });
}

/** While the test switch is on, a promise that resolves when it is turned off. */
export function testWritesHang(): Promise<void> | undefined {
  if (!writesHang) return undefined;
  return new Promise((resolve) => released.push(resolve));
}

/** Throws an EIO error, once per armed failure; returns at once when none is armed. */
export function testWritesFail(): void {
  if (failuresArmed === 0) return;
  failuresArmed -= 1;
  process.stderr.write(`${testFaultsEnvVar}: failing a write with EIO\n`);
  throw Object.assign(new Error(`EIO: i/o error, write (injected by ${testFaultsEnvVar})`), {
    code: "EIO",
    errno: -5,
    syscall: "write",
  });
}

const sledsCutDir =
  process.env[testFaultsEnvVar] === "1"
    ? process.env[testSledsCutDirEnvVar] || undefined
    : undefined;

/** Whether the sleds cut switch is on in this process at all (checked once, at load). */
export function testSledsCutEnabled(): boolean {
  return sledsCutDir !== undefined;
}

/** Whether `node` is cut from the sleds now: its file exists in the cut directory. */
export function testSledsCut(node: string): boolean {
  return sledsCutDir !== undefined && existsSync(join(sledsCutDir, node));
}
