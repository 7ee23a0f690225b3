// The command line of `npm run simulate` (main.ts): its flags, their checks, the usage
// text `--help` prints, and the flags that replay one seed of a run. One table of flags
// drives the parser and the usage text, so that a flag cannot be accepted and left out
// of the help, or the other way round.
//
// Bad input is refused before any seed runs, with a message that names the flag
// (SimulateUsageError; main.ts prints it and exits 2): an unknown flag, a value that is
// not a number in its range, a sabotage that does not exist, or a flag of the cluster
// simulation given without --failover (it would change nothing, silently).

import { parseArgs } from "node:util";
import {
  type FailoverOptions,
  failoverDefaults,
  type Sabotage,
  sabotageNames,
} from "./failover.ts";
import { type SimulationOptions, simulationDefaults } from "./simulation.ts";

export class SimulateUsageError extends Error {
  override name = "SimulateUsageError";
}

/** What a flag's value must be; "switch": a flag with no value. */
type FlagKind =
  | "switch"
  | "seed"
  | "count"
  | "countOrNone"
  | "chance"
  | "replicas"
  | "partitions"
  | "sabotage";

interface Flag {
  name: string;
  kind: FlagKind;
  /** Only the cluster simulation (--failover) reads it. */
  failover?: boolean;
  help: string;
}

const f = failoverDefaults;

/** Every flag, in the order the usage text lists them. */
const flags: readonly Flag[] = [
  { name: "help", kind: "switch", help: "print this and exit" },
  { name: "seed", kind: "seed", help: "run this one seed (a replay: the same seed runs the same)" },
  { name: "seeds", kind: "count", help: "run this many seeds (default 1)" },
  { name: "from", kind: "seed", help: "the first seed of --seeds (default 1)" },
  {
    name: "ticks",
    kind: "count",
    help: `ticks of load (default ${simulationDefaults.loadTicks}, with --failover ${f.loadTicks})`,
  },
  {
    name: "keep-going",
    kind: "switch",
    help: "run every seed and count the failures, instead of stopping at the first",
  },
  {
    name: "quiet",
    kind: "switch",
    help: "print only the seeds with violations, and a line per 1000 seeds",
  },
  {
    name: "replicas",
    kind: "replicas",
    help: `replicas of the one partition, 2 or 3 (default ${simulationDefaults.replicas}); not with --failover`,
  },
  {
    name: "failover",
    kind: "switch",
    help: "run the cluster simulation instead: several head nodes, the model coordinator, failover, rebuild and faults",
  },
  {
    name: "sabotage",
    kind: "sabotage",
    failover: true,
    help: "break one thing on purpose, to prove a check catches it (names below)",
  },
  {
    name: "nodes",
    kind: "count",
    failover: true,
    help: `head nodes (default ${f.nodes})`,
  },
  {
    name: "partitions",
    kind: "partitions",
    failover: true,
    help: `the replicas of each partition, 2 or 3, comma-separated (default ${f.partitions.join(",")})`,
  },
  {
    name: "faulty-nodes",
    kind: "countOrNone",
    failover: true,
    help: `nodes crashed, paused or cut off at once, at most (faultyNodesMax, default ${f.faultyNodesMax})`,
  },
  {
    name: "disk-loss",
    kind: "chance",
    failover: true,
    help: `the chance that a crash takes the node's disk with it (diskLossChance, default ${f.diskLossChance})`,
  },
  {
    name: "configures-ignore-hung-disk",
    kind: "switch",
    failover: true,
    help: "a configure opens a replica on a hung disk at once (configuresWaitOnHungDisk off)",
  },
  {
    name: "configures-wait-on-disk",
    kind: "switch",
    failover: true,
    help: "the default since session 9; accepted so that older replay lines still run",
  },
  {
    name: "late-learner-configures",
    kind: "chance",
    failover: true,
    help: `the chance a learner configure is held for the node's next start, as a leader frozen in its checkpoint read sends it (lateLearnerConfigureChance, default ${f.lateLearnerConfigureChance})`,
  },
  {
    name: "late-voter-configures",
    kind: "chance",
    failover: true,
    help: `the chance a voter configure is held and delivered once the node closed that replica out, as a leader frozen past its tenure sends it (lateVoterConfigureChance, default ${f.lateVoterConfigureChance})`,
  },
  {
    name: "stale-requests",
    kind: "chance",
    failover: true,
    help: `the share of client mutation attempts held in a socket past their client's timeout (staleRequestChance, default ${f.staleRequestChance})`,
  },
  {
    name: "frozen-clocks",
    kind: "chance",
    failover: true,
    help: `the share of pauses that freeze a VM's clocks, and wall clocks step alone (frozenClockChance, default ${f.frozenClockChance})`,
  },
  {
    name: "replicate",
    kind: "chance",
    failover: true,
    help: `the share of runs that re-replicate: sleds' stores lost, sleds out, every Replicator running (replicateChance, default ${f.replicateChance})`,
  },
  {
    name: "sled-cuts",
    kind: "chance",
    failover: true,
    help: `per loaded tick and head node, the chance it is cut from every sled while they stay up for the rest (journals bounded at 64 KiB then) (sledCutRate, default ${f.sledCutRate})`,
  },
  {
    name: "one-way-cuts",
    kind: "chance",
    failover: true,
    help: `per loaded tick, the chance a head node and one other end (a head node, the coordinator, the clients) stop hearing each other one way or both, every other path working (oneWayCutRate, default ${f.oneWayCutRate})`,
  },
  {
    name: "corrupt",
    kind: "chance",
    failover: true,
    help: `the share of replication messages and whole-chunk reads damaged while faults are on (corruptChance, default ${f.corruptChance})`,
  },
  {
    name: "slow-disks",
    kind: "chance",
    failover: true,
    help: `the chance per loaded tick and healthy node that its disk turns slow, not hung: work made durable only every few ticks for a while (slowDiskRate, default ${f.slowDiskRate})`,
  },
  {
    name: "journal-failures",
    kind: "chance",
    failover: true,
    help: `per loaded tick and healthy node, the chance one of its replicas' journals fails at its next write (journalFailRate, default ${f.journalFailRate})`,
  },
  {
    name: "failed-marker",
    kind: "switch",
    failover: true,
    help: "model the failed marker: a failed journal's append stays readable until its machine reboots, and is not reopened in that boot (failedMarker)",
  },
  {
    name: "reboots",
    kind: "chance",
    failover: true,
    help: `with --failed-marker, the chance a crash reboots the machine (rebootChance, default ${f.rebootChance})`,
  },
  {
    name: "end-changes",
    kind: "chance",
    failover: true,
    help: `the chance per coordinator round while loaded that one partition's end within the volume moves, as a resize does (endChangeRate, default ${f.endChangeRate})`,
  },
];

/** The usage text --help prints: every flag, and every sabotage by name. */
export function simulateUsage(): string {
  const width = Math.max(...flags.map((flag) => flagLabel(flag).length)) + 2;
  const lines = (failover: boolean) =>
    flags
      .filter((flag) => (flag.failover ?? false) === failover)
      .map((flag) => `  ${flagLabel(flag).padEnd(width)}${flag.help}`);
  return [
    "usage: npm run simulate -- [flags]",
    "",
    "Runs seeded simulations: by default of one partition, with --failover of a cluster.",
    "A seed with a violation prints its checks and a replay line, and the run stops",
    "(exit 1) unless --keep-going. Examples:",
    "  npm run simulate -- --seeds 1000",
    "  npm run simulate -- --seed 42 --replicas 2",
    "  npm run simulate -- --failover --seeds 200 --quiet",
    "  npm run simulate -- --failover --seed 7 --sabotage no-lease-check",
    "",
    "flags:",
    ...lines(false),
    "",
    "flags of the cluster simulation (with --failover only):",
    ...lines(true),
    "",
    "sabotages (--sabotage NAME):",
    ...sabotageNames.map((name) => `  ${name}`),
    "",
  ].join("\n");
}

function flagLabel(flag: Flag): string {
  const values: Record<FlagKind, string> = {
    switch: "",
    seed: " N",
    count: " N",
    countOrNone: " N",
    chance: " P",
    replicas: " 2|3",
    partitions: " R,R,...",
    sabotage: " NAME",
  };
  return `--${flag.name}${values[flag.kind]}`;
}

/** A run as the command line asks for it. */
export interface SimulateRun {
  firstSeed: number;
  seedCount: number;
  failover: boolean;
  keepGoing: boolean;
  quiet: boolean;
  /** For the one-partition simulation. */
  simulationOverrides: Partial<Omit<SimulationOptions, "seed">>;
  /** For the cluster simulation (--failover). */
  failoverOverrides: Partial<Omit<FailoverOptions, "seed">>;
  /** The flags after `--seed N` that replay one seed of this run exactly. */
  replayFlags: string;
}

export type SimulateCommand = { kind: "help" } | { kind: "run"; run: SimulateRun };

/** Parses the arguments after the script's name; throws SimulateUsageError on bad input. */
export function parseSimulateArguments(args: readonly string[]): SimulateCommand {
  const values = parseFlags(args);
  if (values.help === true) return { kind: "help" };
  const failover = values.failover === true;
  for (const flag of flags) {
    const value = values[flag.name];
    if (value === undefined) continue;
    if (flag.failover === true && !failover) {
      throw new SimulateUsageError(
        `--${flag.name} is a flag of the cluster simulation: give --failover with it`,
      );
    }
    if (flag.kind !== "switch") checkValue(flag, value as string);
  }
  if (failover && values.replicas !== undefined) {
    throw new SimulateUsageError(
      "--replicas is for the one-partition simulation: with --failover, give --partitions",
    );
  }
  if (values.seed !== undefined && (values.seeds !== undefined || values.from !== undefined)) {
    throw new SimulateUsageError("--seed runs one seed: give it, or --seeds and --from, not both");
  }
  const number = (name: string): number | undefined =>
    values[name] === undefined ? undefined : Number(values[name]);
  const given = <T>(value: T | undefined, build: (value: T) => object): object =>
    value === undefined ? {} : build(value);
  const ticks = number("ticks");
  const replicas = (number("replicas") ?? simulationDefaults.replicas) as 2 | 3;
  const partitions = values.partitions as string | undefined;
  const sabotage = values.sabotage as Sabotage | undefined;
  const nodes = number("nodes") ?? failoverDefaults.nodes;
  const widest = Math.max(...(partitions?.split(",").map(Number) ?? failoverDefaults.partitions));
  if (failover && nodes < widest) {
    throw new SimulateUsageError(
      `--nodes ${nodes}: a partition of ${widest} replicas needs ${widest} nodes or more`,
    );
  }
  const failoverOverrides: Partial<Omit<FailoverOptions, "seed">> = {
    ...given(ticks, (loadTicks) => ({ loadTicks })),
    ...given(sabotage, (sabotage) => ({ sabotage })),
    ...given(number("disk-loss"), (diskLossChance) => ({ diskLossChance })),
    ...given(number("faulty-nodes"), (faultyNodesMax) => ({ faultyNodesMax })),
    ...given(number("nodes"), (nodes) => ({ nodes })),
    ...(values["configures-ignore-hung-disk"] === true ? { configuresWaitOnHungDisk: false } : {}),
    ...given(number("late-learner-configures"), (lateLearnerConfigureChance) => ({
      lateLearnerConfigureChance,
    })),
    ...given(number("late-voter-configures"), (lateVoterConfigureChance) => ({
      lateVoterConfigureChance,
    })),
    ...given(number("stale-requests"), (staleRequestChance) => ({ staleRequestChance })),
    ...given(number("frozen-clocks"), (frozenClockChance) => ({ frozenClockChance })),
    ...given(number("replicate"), (replicateChance) => ({ replicateChance })),
    ...given(number("sled-cuts"), (sledCutRate) => ({ sledCutRate })),
    ...given(number("one-way-cuts"), (oneWayCutRate) => ({ oneWayCutRate })),
    ...given(number("corrupt"), (corruptChance) => ({ corruptChance })),
    ...given(number("end-changes"), (endChangeRate) => ({ endChangeRate })),
    ...given(number("slow-disks"), (slowDiskRate) => ({ slowDiskRate })),
    ...given(number("journal-failures"), (journalFailRate) => ({ journalFailRate })),
    ...(values["failed-marker"] === true ? { failedMarker: true } : {}),
    ...given(number("reboots"), (rebootChance) => ({ rebootChance })),
    ...given(partitions, (list) => ({
      partitions: list.split(",").map((count) => Number(count) as 2 | 3),
    })),
  };
  return {
    kind: "run",
    run: {
      firstSeed: number("seed") ?? number("from") ?? 1,
      seedCount: values.seed === undefined ? (number("seeds") ?? 1) : 1,
      failover,
      keepGoing: values["keep-going"] === true,
      quiet: values.quiet === true,
      simulationOverrides: { replicas, ...given(ticks, (loadTicks) => ({ loadTicks })) },
      failoverOverrides,
      replayFlags: replayFlagsOf(values, failover, replicas),
    },
  };
}

/** Flags that do not change what a seed does: left out of a replay line. */
const notReplayed = new Set(["help", "seed", "seeds", "from", "keep-going", "quiet", "replicas"]);

function replayFlagsOf(
  values: Record<string, string | boolean | undefined>,
  failover: boolean,
  replicas: number,
): string {
  const parts = [failover ? "--failover" : `--replicas ${replicas}`];
  for (const flag of flags) {
    const value = values[flag.name];
    if (value === undefined || notReplayed.has(flag.name) || flag.name === "failover") continue;
    // A switch that is off (the default) is as if not given.
    if (value === false) continue;
    parts.push(value === true ? `--${flag.name}` : `--${flag.name} ${value}`);
  }
  return parts.join(" ");
}

function parseFlags(args: readonly string[]): Record<string, string | boolean | undefined> {
  try {
    const { values } = parseArgs({
      args: [...args],
      options: Object.fromEntries(
        flags.map((flag) => [
          flag.name,
          {
            type: flag.kind === "switch" ? "boolean" : "string",
            ...(flag.name === "help" ? { short: "h" } : {}),
          } as const,
        ]),
      ),
      strict: true,
      allowPositionals: false,
    });
    return values as Record<string, string | boolean | undefined>;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const quoted = /'([^']*)'/.exec((error as Error).message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new SimulateUsageError(`unknown flag ${quoted ?? ""}`.trim());
    }
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw new SimulateUsageError(
        `unexpected argument ${JSON.stringify(quoted ?? "")}: every value follows its flag`,
      );
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new SimulateUsageError((error as Error).message);
    }
    throw error;
  }
}

function checkValue(flag: Flag, value: string): void {
  const number = value.trim() === "" ? Number.NaN : Number(value);
  const refuse = (what: string): never => {
    throw new SimulateUsageError(`--${flag.name} ${JSON.stringify(value)}: ${what}`);
  };
  switch (flag.kind) {
    case "seed":
      if (!Number.isSafeInteger(number) || number < 0)
        refuse("a seed is a whole number, 0 or more");
      return;
    case "count":
      if (!Number.isSafeInteger(number) || number < 1) refuse("not a whole number, 1 or more");
      return;
    case "countOrNone":
      if (!Number.isSafeInteger(number) || number < 0) refuse("not a whole number, 0 or more");
      return;
    case "chance":
      if (!Number.isFinite(number) || number < 0 || number > 1) refuse("a chance is from 0 to 1");
      return;
    case "replicas":
      if (number !== 2 && number !== 3) refuse("a partition has 2 or 3 replicas");
      return;
    case "partitions":
      for (const count of value.split(",")) {
        if (count !== "2" && count !== "3") refuse("each partition has 2 or 3 replicas");
      }
      return;
    case "sabotage":
      if (!(sabotageNames as readonly string[]).includes(value)) {
        refuse("no such sabotage; --help lists them");
      }
      return;
    case "switch":
      return;
  }
}
