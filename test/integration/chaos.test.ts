// CI's short chaos run (issue 13): the chaos runner on real processes for about 100 s,
// with the fault kinds in round-robin order so that each is injected at least once,
// must find 0 violations in the history, bring the cluster back to full strength, and
// leave every service running, with malformed messages to every subject and random
// bytes to the NBD port all along. A failing run keeps its data directory and saves the
// history there (the report names it); replay with `npm run chaos -- --seed N`.

import { expect, test } from "vitest";
import { faultKinds } from "../../packages/cli/src/chaos/nemesis.ts";
import { formatReport, runChaos } from "../../packages/cli/src/chaos/runner.ts";

/** Long enough for every fault kind once (each is held a few seconds, then healed). */
const seconds = 100;
const seed = Number(process.env.BALLAST_CHAOS_SEED ?? 13);

test("a short chaos run injects every fault kind and finds no violation", async () => {
  const report = await runChaos({
    seed,
    seconds,
    opsMax: seconds * 2000,
    keep: false,
    roundRobin: true,
    fuzz: true,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stderr.write(formatReport(report));
  expect(report.violations).toEqual([]);
  for (const kind of faultKinds) {
    expect(report.faultsByKind[kind]?.count ?? 0, `${kind} injected`).toBeGreaterThan(0);
  }
  expect(report.servicesRunning).toBe(true);
  expect(report.backToFullStrengthMs).toBeDefined();
  expect(report.operations.write.ok).toBeGreaterThan(0);
  expect(report.operations.read.ok).toBeGreaterThan(0);
}, 420_000);
