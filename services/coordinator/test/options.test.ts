// The coordinator's options refuse, at start, values that would only fail later: a
// default partition size that is not whole sectors made every create without an
// explicit partition size fail, for a size its caller never gave.

import { ConfigError, commonOptions, parseConfig } from "@ballast/runtime";
import { expect, test } from "vitest";
import { coordinatorOptions } from "../src/coordinator.ts";

const common = [
  "--id",
  "coordinator-1",
  "--data-dir",
  "/tmp/unused",
  "--nats",
  "nats://127.0.0.1:4222",
];
const specs = { ...commonOptions, ...coordinatorOptions };

test("BALLAST_PARTITION_BYTES must be whole sectors", () => {
  expect(() =>
    parseConfig(specs, { argv: common, env: { BALLAST_PARTITION_BYTES: "1048577" } }),
  ).toThrow(
    new ConfigError([
      "--partition-bytes (or BALLAST_PARTITION_BYTES) must be a multiple of 512, got 1048577",
    ]),
  );
  const config = parseConfig(specs, { argv: common, env: { BALLAST_PARTITION_BYTES: "1049088" } });
  expect(config.partitionBytes).toBe(1_049_088);
});
