import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

// Two tiers, one after the other (`sequence.groupOrder`): unit, property and simulation
// tests first, in parallel (they never touch the network); then integration tests, which
// start real nats-server and service processes on loopback, one file at a time and with
// nothing else running, to keep a 2-core machine from timing itself out.
//
// Workers: vitest's default is one fewer than the cores, so on a 2-core machine the unit
// tier ran one file at a time (about 165 s); two workers take about 90 s there. Without
// the group order, the first integration file would run beside the unit tier's last.
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
          testTimeout: 30_000,
          maxWorkers: Math.max(2, availableParallelism() - 1),
          sequence: { groupOrder: 0 },
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
