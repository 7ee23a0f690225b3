#!/usr/bin/env node
// `npm test`: the tiers of vitest.config.ts, scheduled for a 2-core machine, as vitest
// processes of their own:
// - the unit tier (the "unit" and "unit-mocks" projects: pure CPU; one worker fewer
//   than the cores), in a session of its own;
// - the integration tier (real nats-server and service processes), in two lanes, each
//   one file at a time: the first lane from the start, the second (the files
//   vitest.config.ts names in `integrationSecondLane`) once the unit tier has ended or
//   the first lane has, whichever comes first;
// - the simulation tier (the seeded simulator: pure CPU, blind to wall time) at the
//   lowest scheduling priority (test/support/lowest-priority.ts).
// Run first and alone, the unit tier added its whole length to the total, while the
// integration tier, which mostly waits on leases, heartbeats and disks, leaves about a
// core idle. vitest gives one worker pool to projects of one group order, so within one
// vitest process they could only run one after another. With the integration tier in
// one lane, its length was the whole run's (about 1,150 s of 1,200 on a 2-vCPU machine
// whose synced writes are slow), the unit tier ending some 500 s before it; a second
// lane in those 500 s takes a third of the integration files. It waits for the unit
// tier so that the machine never runs two integration files beside a CPU-bound tier:
// the integration files' bounds (leases, heartbeats, deadlines) were set for one
// integration file and one other busy program. The second lane's files start nothing
// on a fixed port (no `ballast up`, gateways on port 0), so the lanes cannot collide.
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
// The first integration lane's output is shown as it comes; each other run's is held
// and shown once it ends, so that they never interleave. Each run's summary reporter
// writes its counts to a file (BALLAST_TEST_SUMMARY_FILE), and the last line is their
// sum, as one vitest run prints it. Arguments after `npm test --` go to every run (a run
// they leave without a file passes). The exit code is the first failing run's (unit,
// integration lanes, simulation), else 0. In a session of its own the unit tier does
// not get the terminal's Ctrl-C: a signal that stops this script is passed on to it,
// and a second lane not yet started never starts.

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
/** Set by a signal: a run not yet started (the second lane) never starts. */
let stopping = false;

/**
 * Runs vitest on `projects` as the run `name` (its summary file's name). With `hold`,
 * its output is kept and written when it ends; with `session`, it runs in a session
 * (and so a scheduling group) of its own, with its tests' bounds for a shared CPU.
 * `env` is added to this script's environment.
 */
function run(name, projects, { hold = false, session = false, env = {} } = {}) {
  if (stopping) return Promise.resolve(1);
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
          ...env,
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
    stopping = true;
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
const names = ["unit", "integration-first", "integration-second", "simulation"];
let codes;
try {
  const unit = run("unit", ["unit", "unit-mocks"], { hold: true, session: true });
  const firstLane = run("integration-first", ["integration"], {
    env: { BALLAST_INTEGRATION_LANE: "first" },
  });
  const secondLane = Promise.race([unit, firstLane]).then(() =>
    run("integration-second", ["integration"], {
      hold: true,
      env: { BALLAST_INTEGRATION_LANE: "second" },
    }),
  );
  const simulation = run("simulation", ["simulation"], { hold: true });
  codes = await Promise.all([unit, firstLane, secondLane, simulation]);
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
