import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

// Two tiers. Unit, property and simulation tests run in parallel and never touch the
// network. Integration tests start real nats-server and service processes on loopback,
// so they run one file at a time to keep a 2-core machine from timing itself out.
//
// Workers: vitest's default is one fewer than the cores, so on a 2-core machine the
// unit tier ran one file at a time (about 165 s); two workers take about 90 s there.
// The integration tier stays at one file at a time whatever this says.
export default defineConfig({
  test: {
    maxWorkers: Math.max(2, availableParallelism() - 1),
    reporters: ["default", "./test/support/summary-reporter.ts"],
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "packages/*/test/**/*.test.ts",
            "services/*/test/**/*.test.ts",
            "test/*.test.ts",
          ],
          testTimeout: 30_000,
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
        },
      },
    ],
  },
});
