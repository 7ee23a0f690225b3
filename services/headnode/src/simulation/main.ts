// Runs the simulations. `npm run simulate -- --seed 42` replays one seed of the
// single-partition simulation exactly; `--seeds 1000 --from 1` runs a range and stops at
// the first violation. `--failover` runs the cluster simulation (several head nodes,
// partitions of 3 and 2 replicas, the model coordinator, failover, rebuild and faults)
// instead: `npm run simulate -- --failover --seeds 20000` for a long run, `--failover
// --seed N` to replay one; `--sabotage NAME` breaks one thing on purpose, `--keep-going`
// runs every seed and counts the failures; `--disk-loss P` sets the chance that a crash
// takes the node's disk with it (diskLossChance, 0.1 by default); `--faulty-nodes N` lets N nodes be
// crashed, paused or cut off at once (faultyNodesMax); `--nodes 4 --partitions 2,3,2
// --ticks 350` runs CI's second cluster shape; `--configures-ignore-hung-disk` lets a
// configure open a replica on a hung disk at once (configuresWaitOnHungDisk off);
// `--late-learner-configures P` holds a learner configure with chance P for the node's
// next start, as a coordinator leader frozen inside its checkpoint read would send it
// (lateLearnerConfigureChance, 0 by default).
// `--stale-requests P` holds that share of client mutation attempts in a socket past
// their client's timeout (staleRequestChance, 0 by default; CI's shapes use 0.05).
// `--frozen-clocks P` makes that share of pauses a frozen VM whose clocks stand still,
// its wall clock set right on resume, and lets wall clocks step alone
// (frozenClockChance, 0 by default).
// `--replicate P` makes that share of runs re-replicate (replicateChance, 0 by default):
// sleds' stores lost, sleds declared out, and every head node's Replicator running.
// `--corrupt P` damages that share of replication messages (a note's data or checksum)
// and of whole-chunk reads while faults are on (corruptChance, 0 by default).
// `--help` prints every flag and sabotage (arguments.ts); a bad flag is refused with
// exit code 2 before any seed runs.
// `--end-changes P` changes one partition's served bytes (the volume's end within it,
// as a resize does) in a coordinator round with chance P while loaded (endChangeRate, 0
// by default), for the `end` check.
// `--slow-disks P` turns a healthy node's disk slow but working with chance P per loaded
// tick (slowDiskRate, 0 by default), for the `slow-disk` check.

import { parseSimulateArguments, SimulateUsageError, simulateUsage } from "./arguments.ts";
import { simulateFailover } from "./failover.ts";
import { simulate } from "./simulation.ts";

/** The exit code of a command line refused: usage errors, as getopt-style tools use. */
const usageErrorExitCode = 2;

let command: ReturnType<typeof parseSimulateArguments>;
try {
  command = parseSimulateArguments(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof SimulateUsageError)) throw error;
  process.stderr.write(
    `simulate: ${error.message}\n(npm run simulate -- --help lists the flags)\n`,
  );
  process.exit(usageErrorExitCode);
}
if (command.kind === "help") {
  process.stdout.write(simulateUsage());
  process.exit(0);
}
const { run } = command;
const first = run.firstSeed;
const count = run.seedCount;

async function runOne(seed: number) {
  if (run.failover) return simulateFailover(seed, run.failoverOverrides);
  return simulate(seed, run.simulationOverrides);
}

const started = performance.now();
let failed = 0;
/** Every numeric stat summed over the seeds run (the largest, for a `…Max`), printed at the end. */
const totals: Record<string, number> = {};
for (let seed = first; seed < first + count; seed++) {
  const result = await runOne(seed);
  const ok = result.violations.length === 0;
  for (const [name, value] of Object.entries(result.stats))
    totals[name] = name.endsWith("Max")
      ? Math.max(totals[name] ?? 0, value)
      : (totals[name] ?? 0) + value;
  if (!ok || !run.quiet || count === 1) {
    process.stdout.write(
      `seed ${seed}: ${ok ? "ok" : "VIOLATION"} ${JSON.stringify(result.stats)}\n`,
    );
  }
  if (run.quiet && (seed - first + 1) % 1000 === 0) {
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(`… ${seed - first + 1} seeds, ${failed} with violations, ${seconds} s\n`);
  }
  if (ok) continue;
  for (const violation of result.violations) {
    process.stdout.write(`  [${violation.check}] ${violation.message}\n`);
  }
  process.stdout.write(`replay: npm run simulate -- --seed ${seed} ${run.replayFlags}\n`);
  failed++;
  if (!run.keepGoing) break;
}
const seconds = ((performance.now() - started) / 1000).toFixed(1);
if (count > 1) process.stdout.write(`totals ${JSON.stringify(totals)}\n`);
process.stdout.write(`${count} seeds from ${first}: ${failed} with violations, ${seconds} s\n`);
process.exit(failed === 0 ? 0 : 1);
