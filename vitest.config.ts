import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

// Three tiers. Unit and property tests, in parallel (they never touch the network);
// integration tests, which start real nats-server and service processes on loopback,
// one file at a time, to keep a 2-core machine from timing itself out; and the seeded
// simulator's file (pure CPU, about a minute and a half of it, blind to wall time) at the
// lowest scheduling priority (test/support/lowest-priority.ts). `npm test`
// (scripts/test.mjs) runs them at once as vitest processes, the unit tier in a session
// of its own, so that the unit and simulation tiers use the CPU the integration tier's
// processes leave idle while they wait on leases, heartbeats and disks. In one
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

/** Where unit test files live (the unit projects' `include`). */
const unitFiles = [
  "packages/*/test/**/*.test.ts",
  "services/*/test/**/*.test.ts",
  "apps/*/test/**/*.test.ts",
  "test/*.test.ts",
];
/** A unit test file that replaces a module or a global (vi.mock and its kin). */
const replacesModules = /\bvi\.(mock|doMock|unmock|hoisted|stubGlobal|stubEnv)\(/;
/**
 * The unit files that replace a module or a global: the "unit-mocks" project, each file
 * with a module registry of its own. Every other unit file shares one registry per
 * worker (`isolate: false`, the "unit" project): importing the services' module graphs
 * afresh for each of some 230 files was two thirds of the unit tier's time (about 460 s
 * of import against 580 s of tests, one worker beside the integration tier; 9 s of
 * import without). A file that mocks `node:fs/promises` cannot share a registry: the
 * modules other files loaded first hold the real one (journal-faults.test.ts failed
 * that way), and a mock it loaded first would reach the files after it. Found by
 * reading each file when the configuration loads, so a new file that mocks goes to the
 * right project by itself.
 */
const root = dirname(fileURLToPath(import.meta.url));
const unitMockFiles = ["packages", "services", "apps"]
  .flatMap((top) =>
    readdirSync(join(root, top), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .flatMap((entry) => {
        const testDirectory = join(top, entry.name, "test");
        try {
          return readdirSync(join(root, testDirectory), {
            recursive: true,
            encoding: "utf8",
          }).map((file) => join(testDirectory, file));
        } catch {
          return [];
        }
      }),
  )
  .concat(readdirSync(join(root, "test")).map((file) => join("test", file)))
  .filter((file) => file.endsWith(".test.ts") && !file.includes("node_modules"))
  .filter((file) => file !== simulationFile)
  .filter((file) => replacesModules.test(readFileSync(join(root, file), "utf8")))
  .sort();

/**
 * Integration files that run first, in this order: while the unit and simulation tiers
 * run beside it (about the first five minutes of `npm test`), the integration tier gets
 * less CPU, and these files lose the least to that. Each waits mostly on fixed bounds
 * (a journal's stall bound, sweep graces, leases and leader takeovers, token lives, a
 * chaos run's fault kinds), not on its processes' CPU. Measured in session 22, each file
 * alone (with about 2.3 s of cluster start and stop added) and in a whole `npm test`:
 * these took 0.8 to 1.2 times as long beside the other tiers; files that start clusters
 * and drive I/O through them (snapshot, attached, coordinator, clone) took 1.5 to 2.2
 * times as long. The rest keep vitest's order (larger files first on a clean clone).
 */
const integrationFirst = [
  "journal-failure",
  "sweep",
  "chaos",
  "restored-store",
  "restored-store-late-volume",
  "link-tokens",
  "cold-start",
  "disk-loss-legacy",
  "nats-silent-server",
  "nats-restart",
].map((name) => join("test", "integration", `${name}.test.ts`));

/** vitest's order, with the integration tier's files of `integrationFirst` moved first. */
class TierSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification) => {
      const index = integrationFirst.indexOf(relative(root, spec.moduleId));
      return index === -1 ? integrationFirst.length : index;
    };
    const integration = sorted.filter((spec) => spec.project.name === "integration");
    // A stable sort: files not named keep vitest's order after the named ones.
    const reordered = [...integration].sort((a, b) => rank(a) - rank(b));
    let next = 0;
    return sorted.map((spec) => (spec.project.name === "integration" ? reordered[next++]! : spec));
  }
}

export default defineConfig({
  test: {
    sequence: { sequencer: TierSequencer },
    reporters: ["default", "./test/support/summary-reporter.ts"],
    projects: [
      {
        test: {
          name: "unit",
          include: unitFiles,
          exclude: ["**/node_modules/**", simulationFile, ...unitMockFiles],
          isolate: false,
          testTimeout: unitTimeoutMs,
          hookTimeout: unitTimeoutMs,
          maxWorkers: unitWorkers,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "unit-mocks",
          include: unitMockFiles,
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
