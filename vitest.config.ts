import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

// Three tiers. Unit and property tests, in parallel (they never touch the network);
// integration tests, which start real nats-server and service processes on loopback,
// one file at a time, to keep a 2-core machine from timing itself out; and the seeded
// simulator's file (pure CPU, about a minute and a half of it, blind to wall time) at the
// lowest scheduling priority (test/support/lowest-priority.ts). `npm test`
// (scripts/test.mjs) runs the three at once as three vitest processes, the unit tier in
// a session of its own, so that the unit and simulation tiers use the CPU the integration
// tier's processes leave idle while they wait on leases, heartbeats and disks. In one
// vitest process (`vitest run`) the unit tier runs first (group order 0), then the other
// two, which share one worker pool (projects of one group order do), sized here by the
// integration tier's one worker, so the simulation tier runs after it.
//
// Workers: vitest's default is one fewer than the cores, so on a 2-core machine the unit
// tier ran one file at a time (about 165 s); two workers take about 90 s there. Without
// the group order, the first integration file would run beside the unit tier's last.
/** The seeded simulator's CI runs: a tier of their own (above). */
const simulationFile = "services/headnode/test/simulation.test.ts";
/** The unit tier's bound on one test or hook, run alone … */
const unitTestTimeoutMs = 30_000;
/**
 * … and run beside the integration tier (BALLAST_TEST_SHARED_CPU, set by scripts/test.mjs),
 * which may keep the cores busy for a while: four times as long. Tests that name their
 * own bound keep it.
 */
const sharedCpuTestTimeoutMs = 120_000;
const unitTimeoutMs = process.env.BALLAST_TEST_SHARED_CPU
  ? sharedCpuTestTimeoutMs
  : unitTestTimeoutMs;
/**
 * The unit tier's workers: alone, two or one fewer than the cores (above); beside the
 * integration tier, one fewer than the cores, so that it always leaves the integration
 * tier's processes a core (on two cores: one worker, about four minutes, still well
 * inside the integration tier's run).
 */
const unitWorkers = process.env.BALLAST_TEST_SHARED_CPU
  ? Math.max(1, availableParallelism() - 1)
  : Math.max(2, availableParallelism() - 1);

export default defineConfig({
  test: {
    reporters: ["default", "./test/support/summary-reporter.ts"],
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "packages/*/test/**/*.test.ts",
            "services/*/test/**/*.test.ts",
            "apps/*/test/**/*.test.ts",
            "test/*.test.ts",
          ],
          exclude: ["**/node_modules/**", simulationFile],
          testTimeout: unitTimeoutMs,
          hookTimeout: unitTimeoutMs,
          maxWorkers: unitWorkers,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "simulation",
          include: [simulationFile],
          // Its tests name their own bounds (two to ten minutes): CPU-bound at nice 19,
          // each may take a few times its quiet length while integration files run.
          testTimeout: 600_000,
          pool: "forks",
          maxWorkers: 1,
          setupFiles: ["./test/support/lowest-priority.ts"],
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
          pool: "forks",
          // One fork for the whole tier, its modules loaded once: the files run one after
          // another anyway, and each loaded the client, the launcher and the services'
          // packages afresh (about a second a file). Every file stops what it started.
          isolate: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
