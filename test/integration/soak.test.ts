// The bounded soak (issue 12, "Done when", the CI version of `npm run soak`): tiny sleds,
// a tiny volume, and about 45 s of random 4 KiB–1 MiB writes and trims through NBD,
// many times the sleds' capacity. Then the whole volume reads back equal to the model.
//
// Writes are paced (2.75 MiB/s, 1.3 times the sleds' capacity in all), no write may fail,
// usage must end below 60 % of capacity once reclamation has caught up, and the whole
// volume reads back equal to the model. On code without reclamation the sleds filled
// within seconds and writes got ENOSPC (or, before that, hung until EIO).

import { expect, test } from "vitest";
import { runSoak, usageLimitFraction } from "../../bench/soak.ts";

const mebibyte = 1024 * 1024;

test("a bounded soak: random writes and trims through NBD, read back equal to the model", async () => {
  const result = await runSoak({
    minutes: 0.75,
    timeOnly: true,
    sleds: 3,
    headNodes: 2,
    devicesPerSled: 1,
    deviceBytes: 32 * mebibyte,
    volumeBytes: 4 * mebibyte,
    bytesPerSecond: 2.75 * mebibyte,
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
