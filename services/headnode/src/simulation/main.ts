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
// `--end-changes P` changes one partition's served bytes (the volume's end within it,
// as a resize does) in a coordinator round with chance P while loaded (endChangeRate, 0
// by default), for the `end` check.

import { parseArgs } from "node:util";
import { type Sabotage, simulateFailover } from "./failover.ts";
import { simulate } from "./simulation.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string", default: "1" },
    from: { type: "string", default: "1" },
    replicas: { type: "string", default: "3" },
    ticks: { type: "string" },
    failover: { type: "boolean", default: false },
    sabotage: { type: "string" },
    "disk-loss": { type: "string" },
    "faulty-nodes": { type: "string" },
    nodes: { type: "string" },
    partitions: { type: "string" },
    // On by default now (session 9); the flag is kept so older replay lines still run.
    "configures-wait-on-disk": { type: "boolean", default: false },
    "configures-ignore-hung-disk": { type: "boolean", default: false },
    "late-learner-configures": { type: "string" },
    "stale-requests": { type: "string" },
    "end-changes": { type: "string" },
    "frozen-clocks": { type: "string" },
    replicate: { type: "string" },
    corrupt: { type: "string" },
    "keep-going": { type: "boolean", default: false },
    quiet: { type: "boolean", default: false },
  },
});

const replicas = Number(values.replicas) === 2 ? 2 : 3;
const first = values.seed === undefined ? Number(values.from) : Number(values.seed);
const count = values.seed === undefined ? Number(values.seeds) : 1;
const ticks = values.ticks ? { loadTicks: Number(values.ticks) } : {};

async function runOne(seed: number) {
  if (values.failover) {
    return simulateFailover(seed, {
      ...ticks,
      ...(values.sabotage ? { sabotage: values.sabotage as Sabotage } : {}),
      ...(values["disk-loss"] ? { diskLossChance: Number(values["disk-loss"]) } : {}),
      ...(values["faulty-nodes"] ? { faultyNodesMax: Number(values["faulty-nodes"]) } : {}),
      ...(values.nodes ? { nodes: Number(values.nodes) } : {}),
      ...(values["configures-ignore-hung-disk"] ? { configuresWaitOnHungDisk: false } : {}),
      ...(values["late-learner-configures"]
        ? { lateLearnerConfigureChance: Number(values["late-learner-configures"]) }
        : {}),
      ...(values["stale-requests"] ? { staleRequestChance: Number(values["stale-requests"]) } : {}),
      ...(values["end-changes"] ? { endChangeRate: Number(values["end-changes"]) } : {}),
      ...(values["frozen-clocks"] ? { frozenClockChance: Number(values["frozen-clocks"]) } : {}),
      ...(values.replicate ? { replicateChance: Number(values.replicate) } : {}),
      ...(values.corrupt ? { corruptChance: Number(values.corrupt) } : {}),
      ...(values.partitions
        ? { partitions: values.partitions.split(",").map((count) => (Number(count) === 2 ? 2 : 3)) }
        : {}),
    });
  }
  return simulate(seed, { replicas: replicas as 2 | 3, ...ticks });
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
  if (!ok || !values.quiet || count === 1) {
    process.stdout.write(
      `seed ${seed}: ${ok ? "ok" : "VIOLATION"} ${JSON.stringify(result.stats)}\n`,
    );
  }
  if (values.quiet && (seed - first + 1) % 1000 === 0) {
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(`… ${seed - first + 1} seeds, ${failed} with violations, ${seconds} s\n`);
  }
  if (ok) continue;
  for (const violation of result.violations) {
    process.stdout.write(`  [${violation.check}] ${violation.message}\n`);
  }
  process.stdout.write(
    `replay: npm run simulate -- --seed ${seed} ${values.failover ? "--failover" : `--replicas ${replicas}`}${values.sabotage ? ` --sabotage ${values.sabotage}` : ""}${values["disk-loss"] ? ` --disk-loss ${values["disk-loss"]}` : ""}${values["faulty-nodes"] ? ` --faulty-nodes ${values["faulty-nodes"]}` : ""}${values.nodes ? ` --nodes ${values.nodes}` : ""}${values.partitions ? ` --partitions ${values.partitions}` : ""}${values.ticks ? ` --ticks ${values.ticks}` : ""}${values["configures-ignore-hung-disk"] ? " --configures-ignore-hung-disk" : ""}${values["late-learner-configures"] ? ` --late-learner-configures ${values["late-learner-configures"]}` : ""}${values["stale-requests"] ? ` --stale-requests ${values["stale-requests"]}` : ""}${values["frozen-clocks"] ? ` --frozen-clocks ${values["frozen-clocks"]}` : ""}${values.replicate ? ` --replicate ${values.replicate}` : ""}${values.corrupt ? ` --corrupt ${values.corrupt}` : ""}${values["end-changes"] ? ` --end-changes ${values["end-changes"]}` : ""}\n`,
  );
  failed++;
  if (!values["keep-going"]) break;
}
const seconds = ((performance.now() - started) / 1000).toFixed(1);
if (count > 1) process.stdout.write(`totals ${JSON.stringify(totals)}\n`);
process.stdout.write(`${count} seeds from ${first}: ${failed} with violations, ${seconds} s\n`);
process.exit(failed === 0 ? 0 : 1);
