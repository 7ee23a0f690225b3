// How long a command waits for NATS: the default, BALLAST_NATS_CONNECT_TIMEOUT_MS within
// its bounds, and a usage error for anything else.

import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { cliConnectTimeoutOf, findCluster } from "../src/connect.ts";
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

test.each([
  ["http://127.0.0.1:4222", "must use nats:// or tls://"],
  ["not a url", "is not a URL"],
  ["nats://127.0.0.1:99999", "is not a URL"],
])(
  "a NATS URL %s that cannot work is a usage error naming where it came from",
  async (url, why) => {
    const nowhere = join(tmpdir(), "ballast-no-cluster-here");
    await expect(findCluster({ nats: url, dataDir: nowhere, env: {} })).rejects.toMatchObject({
      exitCode: exitCodes.usage,
      message: expect.stringMatching(new RegExp(`^--nats: .*${why}`)),
    });
    await expect(
      findCluster({ dataDir: nowhere, env: { BALLAST_NATS: url } }),
    ).rejects.toMatchObject({
      exitCode: exitCodes.usage,
      message: expect.stringMatching(new RegExp(`^BALLAST_NATS: .*${why}`)),
    });
  },
);

test("a NATS URL list is checked whole, and good URLs pass", async () => {
  const nowhere = join(tmpdir(), "ballast-no-cluster-here");
  const found = await findCluster({
    nats: "nats://127.0.0.1:4222,tls://10.0.0.2:4222",
    dataDir: nowhere,
    env: {},
  });
  expect(found).toMatchObject({
    natsUrl: "nats://127.0.0.1:4222,tls://10.0.0.2:4222",
    source: "--nats",
  });
});
