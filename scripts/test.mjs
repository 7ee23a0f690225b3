#!/usr/bin/env node
// `npm test`: the three tiers of vitest.config.ts, scheduled for a 2-core machine, as
// three vitest processes started at once:
// - the integration tier (real nats-server and service processes, one file at a time);
// - the unit tier (pure CPU; one worker fewer than the cores), in a session of its own;
// - the simulation tier (the seeded simulator: pure CPU, blind to wall time) at the
//   lowest scheduling priority (test/support/lowest-priority.ts).
// Run first and alone, the unit tier added its whole length (about two minutes) to the
// total, while the integration tier, which mostly waits on leases, heartbeats and disks,
// leaves about a core idle. vitest gives one worker pool to projects of one group order,
// so within one vitest process they could only run one after another.
//
// Why a session of its own, at the usual priority. Linux with autogroup scheduling
// (sched_autogroup_enabled, on in most distributions' kernels) shares the CPU evenly
// between sessions, then within each by nice value; the launcher starts each service in
// a session of its own. In this script's session, the unit workers would have shared
// one share with the integration tier's own test process (its clients, writers and
// deadlines) and taken most of it. In a session of their own they are one more group
// beside the services, as on a machine with one other busy program. At the lowest
// priority they were starved whenever the services were busy, and the unit tests that
// run real timers failed (token renewals of 300 ms, report races, a 60 s bound on a
// loaded machine): so a fair share, not the lowest. They may still run slower than
// alone: their bound is `sharedCpuTestTimeoutMs` (BALLAST_TEST_SHARED_CPU, read by
// vitest.config.ts), not the unit tier's usual 30 s.
//
// The integration tier's output is shown as it comes; each other tier's is held and
// shown once it ends, so that they never interleave. Each run's summary reporter writes
// its counts to a file (BALLAST_TEST_SUMMARY_FILE), and the last line is their sum, as
// one vitest run prints it. Arguments after `npm test --` go to every tier (a tier they
// leave without a file passes). The exit code is the first failing tier's (unit,
// integration, simulation), else 0. In a session of its own the unit tier does not get
// the terminal's Ctrl-C: a signal that stops this script is passed on to it.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vitest = join(root, "node_modules", "vitest", "vitest.mjs");
const extra = process.argv.slice(2);
const summaries = mkdtempSync(join(tmpdir(), "ballast-test-"));

/** The tiers running, each with whether it leads a session of its own. */
const running = new Map();

/**
 * Runs one tier. With `hold`, its output is kept and written when it ends; with
 * `session`, it runs in a session (and so a scheduling group) of its own, with its
 * tests' bounds for a shared CPU.
 */
function tier(project, { hold = false, session = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [vitest, "run", "--project", project, "--passWithNoTests", ...extra],
      {
        cwd: root,
        env: {
          ...process.env,
          BALLAST_TEST_SUMMARY_FILE: join(summaries, `${project}.json`),
          ...(session ? { BALLAST_TEST_SHARED_CPU: "1" } : {}),
        },
        stdio: hold ? ["ignore", "pipe", "pipe"] : "inherit",
        detached: session,
      },
    );
    running.set(child, session);
    child.on("exit", () => running.delete(child));
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

// Ctrl-C reaches this script and the tiers in its session (the terminal's process
// group), not the unit tier's session: it is passed on to that whole session. A SIGTERM
// or SIGHUP sent to this script alone goes to every tier. The tiers then end, and so
// does this script, with their codes; a second Ctrl-C ends it at once.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    for (const [child, session] of running) {
      try {
        if (session) process.kill(-child.pid, signal);
        else if (signal !== "SIGINT") child.kill(signal);
      } catch {
        // already gone
      }
    }
  });
}

let codes;
try {
  codes = await Promise.all([
    tier("unit", { hold: true, session: true }),
    tier("integration"),
    tier("simulation", { hold: true }),
  ]);
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
