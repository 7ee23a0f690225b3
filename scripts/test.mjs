#!/usr/bin/env node
// `npm test`: the tiers of vitest.config.ts, scheduled for a 2-core machine, as three
// vitest processes started at once:
// - the integration tier (real nats-server and service processes, one file at a time);
// - the unit tier (the "unit" and "unit-mocks" projects: pure CPU; one worker fewer
//   than the cores), in a session of its own;
// - the simulation tier (the seeded simulator: pure CPU, blind to wall time) at the
//   lowest scheduling priority (test/support/lowest-priority.ts).
// Run first and alone, the unit tier added its whole length (about two minutes) to the
// total, while the integration tier, which mostly waits on leases, heartbeats and disks,
// leaves about a core idle. vitest gives one worker pool to projects of one group order,
// so within one vitest process they could only run one after another.
//
// Not two integration lanes (tried in session 21): on a 2-vCPU machine, a second lane
// of 21 files started once the unit tier ended took the run from about 1,150 s to
// 1,107 and 1,123 s, each file slower beside another (the two lanes' files took 1,566 s
// between them), and failed three tests that wait on the cluster under load (the chaos
// run's fault kinds, a checkpoint within 15 s, a coordinator's lead kept).
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

/** The runs going on, each with whether it leads a session of its own. */
const running = new Map();

/**
 * Runs vitest on `projects` as the run `name` (its summary file's name). With `hold`,
 * its output is kept and written when it ends; with `session`, it runs in a session
 * (and so a scheduling group) of its own, with its tests' bounds for a shared CPU.
 */
function run(name, projects, { hold = false, session = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        vitest,
        "run",
        ...projects.flatMap((project) => ["--project", project]),
        "--passWithNoTests",
        ...extra,
      ],
      {
        cwd: root,
        env: {
          ...process.env,
          BALLAST_TEST_SUMMARY_FILE: join(summaries, `${name}.json`),
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

function counts(name) {
  try {
    return JSON.parse(readFileSync(join(summaries, `${name}.json`), "utf8"));
  } catch {
    // A run that ended before its reporter ran (it did not start): it ran nothing.
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

/** The runs, in the order their exit codes count. */
const names = ["unit", "integration", "simulation"];
let codes;
try {
  codes = await Promise.all([
    run("unit", ["unit", "unit-mocks"], { hold: true, session: true }),
    run("integration", ["integration"]),
    run("simulation", ["simulation"], { hold: true }),
  ]);
  const total = { passed: 0, failed: 0, skipped: 0 };
  for (const name of names) {
    const runCounts = counts(name);
    total.passed += runCounts.passed;
    total.failed += runCounts.failed + (runCounts.missing ? 1 : 0);
    total.skipped += runCounts.skipped;
  }
  process.stdout.write(
    `\ntests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`,
  );
} finally {
  rmSync(summaries, { recursive: true, force: true });
}
process.exit(codes.find((code) => code !== 0) ?? 0);
