#!/usr/bin/env node
// `npm test`: the three tiers of vitest.config.ts, scheduled for a 2-core machine. The
// unit tier runs first, alone (two workers, pure CPU). Then the integration tier (real
// nats-server and service processes, one file at a time) and the simulation tier (the
// seeded simulator: pure CPU, blind to wall time, at the lowest scheduling priority: see
// test/support/lowest-priority.ts) run at once, as two vitest processes: vitest gives one
// worker pool to projects of one group order, so in one process the simulation waited
// for the integration tier's last file though the real processes leave a core mostly idle.
//
// The integration tier's output is shown as it comes; the simulation tier's is held and
// shown once it ends, so the two never interleave. Each run's summary reporter writes its
// counts to a file (BALLAST_TEST_SUMMARY_FILE), and the last line is their sum, as one
// vitest run prints it. Arguments after `npm test --` go to every tier (a tier they leave
// without a file passes). The exit code is the first failing tier's, else 0.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vitest = join(root, "node_modules", "vitest", "vitest.mjs");
const extra = process.argv.slice(2);
const summaries = mkdtempSync(join(tmpdir(), "ballast-test-"));

/** Runs one tier; with `hold`, its output is kept and written when it ends. */
function tier(project, { hold = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [vitest, "run", "--project", project, "--passWithNoTests", ...extra],
      {
        cwd: root,
        env: { ...process.env, BALLAST_TEST_SUMMARY_FILE: join(summaries, `${project}.json`) },
        stdio: hold ? ["ignore", "pipe", "pipe"] : "inherit",
      },
    );
    const held = [];
    if (hold) {
      child.stdout.on("data", (chunk) => held.push(chunk));
      child.stderr.on("data", (chunk) => held.push(chunk));
    }
    child.on("close", (code, signal) => {
      if (hold) process.stdout.write(Buffer.concat(held));
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

function counts(project) {
  try {
    return JSON.parse(readFileSync(join(summaries, `${project}.json`), "utf8"));
  } catch {
    // A tier that ended before its reporter ran (it did not start): it ran nothing.
    return { passed: 0, failed: 0, skipped: 0, missing: true };
  }
}

let codes;
try {
  const unit = await tier("unit");
  const [integration, simulation] = await Promise.all([
    tier("integration"),
    tier("simulation", { hold: true }),
  ]);
  codes = [unit, integration, simulation];
  const total = { passed: 0, failed: 0, skipped: 0 };
  for (const project of ["unit", "integration", "simulation"]) {
    const tierCounts = counts(project);
    total.passed += tierCounts.passed;
    total.failed += tierCounts.failed + (tierCounts.missing ? 1 : 0);
    total.skipped += tierCounts.skipped;
  }
  process.stdout.write(
    `\ntests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`,
  );
} finally {
  rmSync(summaries, { recursive: true, force: true });
}
process.exit(codes.find((code) => code !== 0) ?? 0);
