// The head node's link options: where it listens, what it tells senders, and off.

import { ConfigError, linkListenOf, natsUsesTls, parseConfig } from "@ballast/runtime";
import { expect, test } from "vitest";
import { headnodeOptions } from "../src/headnode-service.ts";

function parse(env: Record<string, string>) {
  return { nats: "nats://127.0.0.1:4222", ...parseConfig(headnodeOptions, { argv: [], env }) };
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

test("with NATS over TLS links are off unless --link-listen asks for them", () => {
  const tls = (env: Record<string, string>, nats = "tls://nats-1:4222,tls://nats-2:4222") => ({
    ...parse(env),
    nats,
  });
  expect(linkListenOf(tls({}))).toBeUndefined();
  expect(linkListenOf(tls({ BALLAST_LINK_LISTEN: "127.0.0.1:7400" }))).toEqual({
    host: "127.0.0.1",
    port: 7400,
    advertise: "127.0.0.1",
  });
  // A CA turns TLS on too; a plain URL leaves the default on.
  expect(linkListenOf({ ...parse({}), natsCa: "/etc/ca.pem" })).toBeUndefined();
  expect(natsUsesTls({ nats: "nats://a:4222,TLS://b:4222" })).toBe(true);
  expect(natsUsesTls({ nats: "nats://a:4222" })).toBe(false);
});
