// How long a command waits for NATS: the default, BALLAST_NATS_CONNECT_TIMEOUT_MS within
// its bounds, and a usage error for anything else.

import { expect, test } from "vitest";
import { cliConnectTimeoutOf } from "../src/connect.ts";
import {
  cliConnectTimeoutMs,
  cliConnectTimeoutMsMax,
  cliConnectTimeoutMsMin,
} from "../src/constants.ts";
import { exitCodes } from "../src/errors.ts";

test("a command waits cliConnectTimeoutMs for NATS unless BALLAST_NATS_CONNECT_TIMEOUT_MS says", () => {
  expect(cliConnectTimeoutOf({})).toBe(cliConnectTimeoutMs);
  expect(cliConnectTimeoutOf({ BALLAST_NATS_CONNECT_TIMEOUT_MS: "" })).toBe(cliConnectTimeoutMs);
  expect(cliConnectTimeoutOf({ BALLAST_NATS_CONNECT_TIMEOUT_MS: " 1500 " })).toBe(1500);
  expect(
    cliConnectTimeoutOf({ BALLAST_NATS_CONNECT_TIMEOUT_MS: String(cliConnectTimeoutMsMin) }),
  ).toBe(cliConnectTimeoutMsMin);
  expect(
    cliConnectTimeoutOf({ BALLAST_NATS_CONNECT_TIMEOUT_MS: String(cliConnectTimeoutMsMax) }),
  ).toBe(cliConnectTimeoutMsMax);
});

test.each([
  "soon",
  "1.5",
  "-100",
  "1e3",
  String(cliConnectTimeoutMsMin - 1),
  String(cliConnectTimeoutMsMax + 1),
])("BALLAST_NATS_CONNECT_TIMEOUT_MS=%s is a usage error", (value) => {
  expect(() => cliConnectTimeoutOf({ BALLAST_NATS_CONNECT_TIMEOUT_MS: value })).toThrow(
    expect.objectContaining({
      exitCode: exitCodes.usage,
      message: expect.stringContaining("BALLAST_NATS_CONNECT_TIMEOUT_MS must be a whole number"),
    }),
  );
});
