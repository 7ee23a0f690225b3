// The command line of `npm run simulate` (simulation/arguments.ts, main.ts): --help
// prints every flag and sabotage and exits 0 (it crashed on an unknown option before);
// bad input is refused with a message naming the flag, and exit code 2, before any seed
// runs; a parsed run replays with the flags that change what a seed does.

import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import {
  parseSimulateArguments,
  SimulateUsageError,
  simulateUsage,
} from "../src/simulation/arguments.ts";
import { sabotageNames } from "../src/simulation/failover.ts";

const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const main = join(repositoryRoot, "services/headnode/src/simulation/main.ts");

/** Runs the simulate command itself, as `npm run simulate --` does. */
function runSimulate(args: string[]) {
  return spawnSync(process.execPath, ["--import", "tsx", main, ...args], {
    cwd: repositoryRoot,
    encoding: "utf8",
  });
}

test("--help prints every flag and sabotage and exits 0; an unknown flag exits 2 naming it", () => {
  const help = runSimulate(["--help"]);
  expect(help.stderr).toBe("");
  expect(help.status).toBe(0);
  expect(help.stdout).toBe(simulateUsage());
  const unknown = runSimulate(["--failover", "--no-such-flag"]);
  expect(unknown.status).toBe(2);
  expect(unknown.stdout).toBe("");
  expect(unknown.stderr).toContain("simulate: unknown flag --no-such-flag");
  expect(unknown.stderr).toContain("--help");
});

describe("the usage text", () => {
  const usage = simulateUsage();
  test.each([
    "--help",
    "--seed N",
    "--seeds N",
    "--from N",
    "--ticks N",
    "--replicas 2|3",
    "--keep-going",
    "--quiet",
    "--failover",
    "--sabotage NAME",
    "--nodes N",
    "--partitions R,R,...",
    "--faulty-nodes N",
    "--disk-loss P",
    "--configures-ignore-hung-disk",
    "--configures-wait-on-disk",
    "--late-learner-configures P",
    "--late-voter-configures P",
    "--stale-requests P",
    "--frozen-clocks P",
    "--replicate P",
    "--corrupt P",
    "--end-changes P",
  ])("lists %s", (flag) => {
    expect(usage).toContain(`  ${flag} `);
  });

  test("lists every sabotage", () => {
    expect(sabotageNames.length).toBeGreaterThan(20);
    for (const name of sabotageNames) expect(usage).toContain(`\n  ${name}\n`);
  });
});

describe("parsing", () => {
  test("--help and -h ask for the usage, whatever else is given", () => {
    expect(parseSimulateArguments(["--help"])).toEqual({ kind: "help" });
    expect(parseSimulateArguments(["--failover", "-h"])).toEqual({ kind: "help" });
  });

  test("a failover run takes its flags, and replays with those that change a seed", () => {
    const command = parseSimulateArguments(
      "--failover --seed 7 --sabotage no-lease-check --nodes 4 --partitions 2,3,2 --ticks 350 --disk-loss 0.2 --faulty-nodes 2 --stale-requests 0.05 --frozen-clocks 0.1 --replicate 0.5 --corrupt 0.01 --end-changes 0.1 --late-learner-configures 0.3 --late-voter-configures 0.4 --configures-ignore-hung-disk --quiet".split(
        " ",
      ),
    );
    expect(command.kind).toBe("run");
    if (command.kind !== "run") return;
    expect(command.run).toMatchObject({ firstSeed: 7, seedCount: 1, failover: true, quiet: true });
    expect(command.run.failoverOverrides).toEqual({
      loadTicks: 350,
      sabotage: "no-lease-check",
      diskLossChance: 0.2,
      faultyNodesMax: 2,
      nodes: 4,
      configuresWaitOnHungDisk: false,
      lateLearnerConfigureChance: 0.3,
      lateVoterConfigureChance: 0.4,
      staleRequestChance: 0.05,
      frozenClockChance: 0.1,
      replicateChance: 0.5,
      corruptChance: 0.01,
      endChangeRate: 0.1,
      partitions: [2, 3, 2],
    });
    expect(command.run.replayFlags).toBe(
      "--failover --ticks 350 --sabotage no-lease-check --nodes 4 --partitions 2,3,2 --faulty-nodes 2 --disk-loss 0.2 --configures-ignore-hung-disk --late-learner-configures 0.3 --late-voter-configures 0.4 --stale-requests 0.05 --frozen-clocks 0.1 --replicate 0.5 --corrupt 0.01 --end-changes 0.1",
    );
  });

  test("a one-partition run: seeds from 1 by default, replicas 3", () => {
    const command = parseSimulateArguments(["--seeds", "5", "--replicas", "2"]);
    expect(command).toMatchObject({
      kind: "run",
      run: {
        firstSeed: 1,
        seedCount: 5,
        failover: false,
        simulationOverrides: { replicas: 2 },
        replayFlags: "--replicas 2",
      },
    });
    expect(parseSimulateArguments([])).toMatchObject({
      run: { firstSeed: 1, seedCount: 1, simulationOverrides: { replicas: 3 } },
    });
  });

  test.each([
    [["--bogus"], "unknown flag --bogus"],
    [["--seed"], "--seed"],
    [["7"], 'unexpected argument "7"'],
    [["--seeds", "many"], '--seeds "many": not a whole number, 1 or more'],
    [["--seeds", "0"], '--seeds "0": not a whole number, 1 or more'],
    [["--seed=-1"], '--seed "-1": a seed is a whole number, 0 or more'],
    [["--seed", "3", "--seeds", "4"], "--seed runs one seed"],
    [["--replicas", "4"], '--replicas "4": a partition has 2 or 3 replicas'],
    [["--sabotage", "no-lease-check"], "--sabotage is a flag of the cluster simulation"],
    [["--corrupt", "0.1"], "--corrupt is a flag of the cluster simulation"],
    [["--failover", "--sabotage", "nope"], '--sabotage "nope": no such sabotage'],
    [["--failover", "--corrupt", "1.5"], '--corrupt "1.5": a chance is from 0 to 1'],
    [["--failover", "--disk-loss", ""], '--disk-loss "": a chance is from 0 to 1'],
    [["--failover", "--partitions", "3,4"], "each partition has 2 or 3 replicas"],
    [["--failover", "--replicas", "2"], "--replicas is for the one-partition simulation"],
    [["--failover", "--nodes", "2"], "a partition of 3 replicas needs 3 nodes or more"],
  ])("refuses %j: %s", (args, message) => {
    expect(() => parseSimulateArguments(args)).toThrow(SimulateUsageError);
    expect(() => parseSimulateArguments(args)).toThrow(message);
  });
});
