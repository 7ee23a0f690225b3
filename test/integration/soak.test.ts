// The bounded soak (issue 12, "Done when", the CI version of `npm run soak`): tiny sleds,
// a tiny volume, and random 4 KiB–1 MiB writes and trims through NBD until 1.3 times
// the sleds' capacity is written (about 31 s at the pace below). Then the whole volume
// reads back equal to the model.
//
// Writes are paced (4 MiB/s; the cluster answered each within 41 ms here, so the pace
// decides), no write may fail, usage must end below 60 % of capacity once reclamation
// has caught up (it peaked at 72 % here), and the whole volume reads back equal to the
// model. On code without reclamation the sleds filled within seconds and writes got
// ENOSPC (or, before that, hung until EIO). Until session 24 it wrote for 45 s at
// 2.75 MiB/s, for the same 1.3 times capacity.

import { expect, test } from "vitest";
import { runSoak, usageLimitFraction } from "../../bench/soak.ts";

const mebibyte = 1024 * 1024;

test("a bounded soak: random writes and trims through NBD, read back equal to the model", async () => {
  const result = await runSoak({
    minutes: 0.25,
    capacityMultiple: 1.3,
    maxMinutes: 1.5,
    sleds: 3,
    headNodes: 2,
    devicesPerSled: 1,
    deviceBytes: 32 * mebibyte,
    volumeBytes: 4 * mebibyte,
    bytesPerSecond: 4 * mebibyte,
    sampleIntervalMs: 5000,
    checkUsage: true,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const { samples, ...figures } = result;
  process.stderr.write(`soak figures: ${JSON.stringify(figures)}\n`);

  expect(result.mismatchedBytes).toBe(0);
  expect(result.stalledRequests).toBe(0);
  // Well past 1x capacity: the soak overwrote its sleds' worth of space, and more.
  expect(result.capacityMultiple).toBeGreaterThan(1.2);
  expect(result.failures).toEqual([]);
  expect(result.finalUsedFraction).toBeLessThan(usageLimitFraction);
}, 300_000);
