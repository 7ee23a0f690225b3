// The head node's link options: where it listens, what it tells senders, and off.

import { ConfigError, parseConfig } from "@ballast/runtime";
import { expect, test } from "vitest";
import { headnodeOptions, linkListenOf } from "../src/headnode-service.ts";

function parse(env: Record<string, string>) {
  return parseConfig(headnodeOptions, { argv: [], env });
}

test("by default links listen on loopback, on a port the system picks", () => {
  expect(linkListenOf(parse({}))).toEqual({ host: "127.0.0.1", port: 0, advertise: "127.0.0.1" });
});

test("off turns them off; every address needs a host to advertise", () => {
  expect(linkListenOf(parse({ BALLAST_LINK_LISTEN: "off" }))).toBeUndefined();
  expect(() => linkListenOf(parse({ BALLAST_LINK_LISTEN: "0.0.0.0:7400" }))).toThrow(ConfigError);
  expect(
    linkListenOf(parse({ BALLAST_LINK_LISTEN: "0.0.0.0:7400", BALLAST_LINK_ADVERTISE: "head-1" })),
  ).toEqual({ host: "0.0.0.0", port: 7400, advertise: "head-1" });
});

test("a listen address that is not host:port is refused at parse", () => {
  expect(() => parse({ BALLAST_LINK_LISTEN: "7400" })).toThrow(/host:port/);
  expect(() => parse({ BALLAST_LINK_LISTEN: "a:99999" })).toThrow(/host:port/);
  expect(() => parse({ BALLAST_LINK_ADVERTISE: "a b" })).toThrow(/host name/);
});
