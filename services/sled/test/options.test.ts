// The sled's options refuse, at start, a device size that is not whole blocks: it was
// taken, and the sled failed only once connected, with a device error that named no
// option. A device larger than the size tested is refused too.

import { ConfigError, commonOptions, parseConfig } from "@ballast/runtime";
import { expect, test } from "vitest";
import { blockBytes, deviceBytesMax } from "../src/constants.ts";
import { sledOptions } from "../src/sled.ts";

const common = ["--id", "sled-1", "--data-dir", "/tmp/unused", "--nats", "nats://127.0.0.1:4222"];
const specs = { ...commonOptions, ...sledOptions };

test("BALLAST_SLED_DEVICE_BYTES must be whole blocks", () => {
  const bytes = 256 * blockBytes + 1;
  expect(() =>
    parseConfig(specs, { argv: common, env: { BALLAST_SLED_DEVICE_BYTES: String(bytes) } }),
  ).toThrow(
    new ConfigError([
      `--device-bytes (or BALLAST_SLED_DEVICE_BYTES) must be a multiple of ${blockBytes}, got ${bytes}`,
    ]),
  );
  const whole = 256 * blockBytes;
  expect(
    parseConfig(specs, { argv: common, env: { BALLAST_SLED_DEVICE_BYTES: String(whole) } })
      .deviceBytes,
  ).toBe(whole);
});

test("BALLAST_SLED_DEVICE_BYTES is at most the size tested (1 TiB), refused at start above it", () => {
  expect(deviceBytesMax).toBe(2 ** 40);
  const over = deviceBytesMax + blockBytes;
  expect(() =>
    parseConfig(specs, { argv: common, env: { BALLAST_SLED_DEVICE_BYTES: String(over) } }),
  ).toThrow(
    new ConfigError([
      `--device-bytes (or BALLAST_SLED_DEVICE_BYTES) must be between ${1024 * 1024} and ${deviceBytesMax}, got ${over}`,
    ]),
  );
  expect(
    parseConfig(specs, {
      argv: common,
      env: { BALLAST_SLED_DEVICE_BYTES: String(deviceBytesMax) },
    }).deviceBytes,
  ).toBe(deviceBytesMax);
});
