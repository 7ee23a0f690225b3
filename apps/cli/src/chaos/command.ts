// `ballast chaos` (and `npm run chaos`): runs the chaos test (runner.ts) and prints its
// report, as text or JSON. Exits 1 on any violation, or if the cluster did not come
// back to full strength with every service running.

import { type ParseArgsConfig, parseArgs } from "node:util";
import { CliError, exitCodes } from "../errors.ts";
import { type FaultKind, faultKinds } from "./nemesis.ts";
import { formatReport, runChaos } from "./runner.ts";

export const chaosSecondsDefault = 60;
/**
 * The default cap on client operations, per second of `--seconds`: about three times
 * what this machine's clients manage (a 30-minute run made 1,000,000 in 25 minutes), so
 * that time, not the cap, ends a run unless `--ops-max` is given.
 */
export const chaosOpsPerSecondDefault = 2000;

export const chaosHelp = `Usage: ballast chaos [options]

Starts a throwaway cluster of real processes (2 coordinators, 3 head nodes, 3 sleds,
an NBD gateway, nats-server), runs concurrent clients through the client library and
NBD while crashing, freezing and hanging its processes, then heals it, reads every
block back and checks the history for lost writes, stale reads and torn blocks.

Options:
  --seed <n>          fixes the workload and the fault schedule (default: random, printed)
  --seconds <n>       how long the workload and faults run (default ${chaosSecondsDefault})
  --ops-max <n>       stop after this many client operations
                      (default ${chaosOpsPerSecondDefault} per second of --seconds)
  --dir <dir>         the cluster's data directory (default: a new temporary one)
  --keep              keep the data directory (always kept when the check fails)
  --no-fuzz           no malformed messages to the subjects, no random bytes to NBD
  --round-robin       inject the fault kinds in a fixed order (each at least once)
  --faults <k,k,...>  inject only these fault kinds (default: all of them; see
                      docs/testing.md)
  --json              print the report as JSON

Exit code ${exitCodes.failed} on any violation; the failing history is saved in the data directory.
`;

const options: ParseArgsConfig["options"] = {
  seed: { type: "string" },
  seconds: { type: "string" },
  "ops-max": { type: "string" },
  dir: { type: "string" },
  keep: { type: "boolean" },
  "round-robin": { type: "boolean" },
  "no-fuzz": { type: "boolean" },
  faults: { type: "string" },
  json: { type: "boolean" },
};

function count(value: string | boolean | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 0) {
    throw new CliError(exitCodes.usage, `${flag} takes a whole number, not ${String(value)}`);
  }
  return parsed;
}

/** `--faults a,b`: the named kinds, each known; a clear usage error otherwise. */
export function faultKindsOf(text: string): FaultKind[] {
  const names = text.split(",").map((name) => name.trim());
  const known = new Set<string>(faultKinds);
  const unknown = names.filter((name) => !known.has(name));
  if (names.length === 0 || unknown.length > 0) {
    throw new CliError(
      exitCodes.usage,
      `--faults takes fault kinds separated by commas; unknown: ${unknown.join(", ") || "(none given)"} (kinds: ${faultKinds.join(", ")})`,
    );
  }
  return [...new Set(names as FaultKind[])];
}

export async function chaosCommand(argv: string[]): Promise<number> {
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: argv, options, strict: true, allowPositionals: false })
      .values as typeof flags;
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help chaos)`);
  }
  const seed = count(flags.seed, "--seed", Math.floor(Math.random() * 2 ** 31));
  const json = flags.json === true;
  const seconds = count(flags.seconds, "--seconds", chaosSecondsDefault);
  const report = await runChaos({
    seed,
    seconds,
    opsMax: count(flags["ops-max"], "--ops-max", seconds * chaosOpsPerSecondDefault),
    ...(typeof flags.dir === "string" ? { dataDir: flags.dir } : {}),
    keep: flags.keep === true,
    roundRobin: flags["round-robin"] === true,
    fuzz: flags["no-fuzz"] !== true,
    ...(typeof flags.faults === "string" ? { faults: faultKindsOf(flags.faults) } : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  const passed =
    report.violations.length === 0 &&
    report.servicesRunning &&
    report.backToFullStrengthMs !== undefined;
  return passed ? exitCodes.ok : exitCodes.failed;
}
