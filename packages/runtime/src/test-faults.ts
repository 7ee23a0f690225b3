// A test-only gray-failure switch for the chaos runner (packages/cli/src/chaos): when a
// process runs with BALLAST_TEST_FAULTS=1, each SIGUSR2 toggles "writes hang", and the
// few write paths that call `testWritesHang()` (a head node's journal commit, a sled's
// device writes) then wait, without failing, until the next SIGUSR2. The process stays
// alive, heartbeats and answers everything that does not write: a node that looks
// healthy but makes no progress.
//
// Inert unless the variable is set: no signal handler is installed, and the hook is one
// boolean test that returns undefined.

export const testFaultsEnvVar = "BALLAST_TEST_FAULTS";

let writesHang = false;
let released: (() => void)[] = [];

if (process.env[testFaultsEnvVar] === "1") {
  process.on("SIGUSR2", () => {
    writesHang = !writesHang;
    process.stderr.write(`${testFaultsEnvVar}: writes ${writesHang ? "hang" : "resume"}\n`);
    if (!writesHang) {
      const waiting = released;
      released = [];
      for (const resume of waiting) resume();
    }
  });
}

/** While the test switch is on, a promise that resolves when it is turned off. */
export function testWritesHang(): Promise<void> | undefined {
  if (!writesHang) return undefined;
  return new Promise((resolve) => released.push(resolve));
}
