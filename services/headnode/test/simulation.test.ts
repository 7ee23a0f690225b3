// The seeded simulation of a partition, as CI runs it. Any failing seed replays exactly
// with `npm run simulate -- --seed N --replicas R`.

import { describe, expect, test } from "vitest";
import { simulate } from "../src/simulation/simulation.ts";

const seedsPerShape = Number(process.env.BALLAST_SIMULATION_SEEDS ?? 500);

describe.each([3, 2] as const)("simulation with %i replicas", (replicas) => {
  test(`${seedsPerShape} seeds keep every invariant`, async () => {
    let acknowledged = 0;
    let reads = 0;
    let crashes = 0;
    let chunks = 0;
    for (let seed = 1; seed <= seedsPerShape; seed++) {
      const result = await simulate(seed, { replicas });
      const summary = result.violations.map((v) => `[${v.check}] ${v.message}`).join("\n");
      expect(
        result.violations,
        `seed ${seed} failed; replay: npm run simulate -- --seed ${seed} --replicas ${replicas}\n${summary}`,
      ).toEqual([]);
      acknowledged += result.stats.acknowledgedMutations;
      reads += result.stats.reads;
      crashes += result.stats.crashes;
      chunks += result.stats.chunks;
    }
    // The runs did real work: writes were acknowledged, reads checked, replicas crashed
    // and restarted, and data went through flushes to chunks.
    expect(acknowledged).toBeGreaterThan(seedsPerShape * 10);
    expect(reads).toBeGreaterThan(seedsPerShape * 5);
    expect(crashes).toBeGreaterThan(seedsPerShape);
    expect(chunks).toBeGreaterThan(seedsPerShape * 3);
  }, 300_000);
});

test("the same seed replays to the same result", async () => {
  const first = await simulate(7, { replicas: 3 });
  const second = await simulate(7, { replicas: 3 });
  expect(second).toEqual(first);
});

test("the checkers catch a disk that loses acknowledged writes", async () => {
  let caught = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const result = await simulate(seed, { replicas: 2, diskLosesAcknowledgedWrites: true });
    if (result.violations.length > 0) caught++;
  }
  expect(caught).toBeGreaterThan(0);
}, 120_000);
