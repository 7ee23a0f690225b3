// Runs the partition simulation: `npm run simulate -- --seed 42` replays one seed
// exactly; `--seeds 1000 --from 1` runs a range and stops at the first violation.

import { parseArgs } from "node:util";
import { simulate } from "./simulation.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string", default: "1" },
    from: { type: "string", default: "1" },
    replicas: { type: "string", default: "3" },
    ticks: { type: "string" },
  },
});

const replicas = Number(values.replicas) === 2 ? 2 : 3;
const first = values.seed === undefined ? Number(values.from) : Number(values.seed);
const count = values.seed === undefined ? Number(values.seeds) : 1;
const overrides = {
  replicas: replicas as 2 | 3,
  ...(values.ticks ? { loadTicks: Number(values.ticks) } : {}),
};

let failed = 0;
for (let seed = first; seed < first + count; seed++) {
  const result = await simulate(seed, overrides);
  const line = `seed ${seed}: ${result.violations.length === 0 ? "ok" : "VIOLATION"} ${JSON.stringify(result.stats)}`;
  process.stdout.write(`${line}\n`);
  if (result.violations.length > 0) {
    for (const violation of result.violations) {
      process.stdout.write(`  [${violation.check}] ${violation.message}\n`);
    }
    process.stdout.write(`replay: npm run simulate -- --seed ${seed} --replicas ${replicas}\n`);
    failed++;
    break;
  }
}
process.exit(failed === 0 ? 0 : 1);
