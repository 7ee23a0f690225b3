// Prints one plain closing line, `tests: N passed, N failed, N skipped`, after vitest's
// own report, so that tools that read only the last line know what ran. With
// BALLAST_TEST_SUMMARY_FILE set (scripts/test.mjs, which runs the tiers as separate
// vitest processes and prints their sum last), it also writes the counts there as JSON.

import { writeFileSync } from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const testModule of testModules) {
      let failedHere = 0;
      for (const testCase of testModule.children.allTests()) {
        const state = testCase.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failedHere++;
        else skipped++;
      }
      // A file that failed with no test failing (it did not load, or a beforeAll or
      // afterAll hook failed and its tests were skipped) must still count as a failure.
      if (testModule.state() === "failed" && failedHere === 0) failedHere = 1;
      failed += failedHere;
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    const summaryFile = process.env.BALLAST_TEST_SUMMARY_FILE;
    if (summaryFile) writeFileSync(summaryFile, JSON.stringify({ passed, failed, skipped }));
  }
}
