// A client that reconnects at once while the server is at connectionsMax: each refused
// connection used to be a warning, as fast as the client could connect. Real sockets on
// loopback; a fake clock and a captured logger (fakes standing in for time and pino).

import { BallastError, ErrorCode } from "@ballast/protocol";
import type { Logger } from "@ballast/runtime";
import { afterEach, expect, test } from "vitest";
import { ClientFlag, Command, Option } from "../src/wire.ts";
import { MemoryBlockDevice } from "./memory-block-device.ts";
import { TestNbdClient } from "./nbd-test-client.ts";
import { startTestServer, type TestServer, waitUntil } from "./nbd-test-server.ts";

const closeWaitMs = 2000;
const repeatMs = 5 * 60_000;

let running: TestServer | undefined;
const clients: TestNbdClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await running?.server.close();
  running = undefined;
});

test("connections refused at connectionsMax: a warning when they begin, one per interval, a line when one is taken again", async () => {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const logger = {
    child: () => logger,
    debug: () => undefined,
    info: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "info", fields, message }),
    warn: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "warn", fields, message }),
    error: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "error", fields, message }),
  };
  let nowMs = 0;
  running = await startTestServer({
    devices: [new MemoryBlockDevice("vol", 1024 * 1024)],
    limits: { connectionsMax: 1 },
    logger: logger as unknown as Logger,
    clock: () => nowMs,
  });
  const { client: held } = await TestNbdClient.open(running.address, "vol");
  clients.push(held);
  // 40 reconnects, a second apart on the fake clock: all within one interval.
  for (let attempt = 0; attempt < 40; attempt++, nowMs += 1000) {
    const refused = await TestNbdClient.connect(running.address);
    clients.push(refused);
    expect(await refused.isClosedWithin(closeWaitMs)).toBe(true);
  }
  const warned = () => lines.filter((line) => line.message === "connection refused");
  // Old: a warning each (40).
  expect(warned()).toHaveLength(1);
  nowMs += repeatMs;
  const late = await TestNbdClient.connect(running.address);
  clients.push(late);
  expect(await late.isClosedWithin(closeWaitMs)).toBe(true);
  expect(warned()).toHaveLength(2);
  expect(warned()[1]!.fields.repeatsSuppressed).toBe(39);
  held.destroy();
  await waitUntil(() => running!.server.connectionCount === 0, "the held connection ended");
  const { client: again } = await TestNbdClient.open(running.address, "vol");
  clients.push(again);
  const back = lines.filter((line) => line.message.startsWith("a connection is taken again"));
  expect(back).toHaveLength(1);
  expect(back[0]!.fields.repeatsSuppressed).toBe(0);
});

test("a client that reconnects while its export cannot open: one warning per interval, and a line when it opens again", async () => {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const logger = {
    child: () => logger,
    debug: () => undefined,
    info: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "info", fields, message }),
    warn: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "warn", fields, message }),
    error: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "error", fields, message }),
  };
  let nowMs = 0;
  let opens = false;
  const device = new MemoryBlockDevice("vol", 1024 * 1024);
  running = await startTestServer({
    devices: [device],
    openExport: async (name) => {
      if (!opens) throw new Error("no live voter in partition 0");
      return name === "vol" ? device : undefined;
    },
    logger: logger as unknown as Logger,
    clock: () => nowMs,
  });
  for (let attempt = 0; attempt < 30; attempt++, nowMs += 1000) {
    await expect(TestNbdClient.open(running.address, "vol")).rejects.toThrow(/failed/);
  }
  const failed = lines.filter((line) => line.message === "opening an export failed");
  // Old: one warning an attempt (30), and an info line each for the refusal.
  expect(failed).toHaveLength(1);
  expect(failed[0]!.level).toBe("warn");
  expect(
    lines.filter((line) => line.message.startsWith("export refused")).length,
  ).toBeLessThanOrEqual(1);
  opens = true;
  const { client } = await TestNbdClient.open(running.address, "vol");
  clients.push(client);
  const again = lines.filter((line) => line.message.includes("opens again"));
  expect(again).toHaveLength(1);
  expect(again[0]!.fields.repeatsSuppressed).toBe(29);
});

test("a client whose requests fail again and again (its volume unavailable): one warning per command and error an interval", async () => {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const logger = {
    child: () => logger,
    debug: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "debug", fields, message }),
    info: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "info", fields, message }),
    warn: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "warn", fields, message }),
    error: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "error", fields, message }),
  };
  let nowMs = 0;
  const device = new MemoryBlockDevice("vol", 1024 * 1024);
  running = await startTestServer({
    devices: [device],
    logger: logger as unknown as Logger,
    clock: () => nowMs,
  });
  const { client } = await TestNbdClient.open(running.address, "vol");
  clients.push(client);
  for (let handle = 1n; handle <= 30n; handle++, nowMs += 1000) {
    device.failNext(new BallastError(ErrorCode.Unavailable, "no live voter in partition 0"));
    const reply = await client.roundTrip({ command: Command.Read, handle, length: 512 });
    expect(reply.error).not.toBe(0);
  }
  const warned = () =>
    lines.filter((line) => line.message === "request failed" && line.level === "warn");
  // Old: a warning per request (30).
  expect(warned()).toHaveLength(1);
  expect(lines.filter((line) => line.message === "request failed")).toHaveLength(30);
  // Another command failing is said at once; the same one again after the interval.
  device.failNext(new BallastError(ErrorCode.Unavailable, "no live voter in partition 0"));
  await client.roundTrip({ command: Command.Write, handle: 31n, data: new Uint8Array(512) });
  expect(warned()).toHaveLength(2);
  nowMs += repeatMs;
  device.failNext(new BallastError(ErrorCode.Unavailable, "no live voter in partition 0"));
  await client.roundTrip({ command: Command.Read, handle: 32n, length: 512 });
  expect(warned()).toHaveLength(3);
  expect(warned()[2]!.fields.repeatsSuppressed).toBe(29);
});

test("a client that reconnects in a loop: 'export opened' once per export and interval, the rest at debug; protocol violations the same", async () => {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const logger = {
    child: () => logger,
    // Some debug lines are a message alone.
    debug: (fields: Record<string, unknown> | string, message?: string) =>
      typeof fields === "string"
        ? lines.push({ level: "debug", fields: {}, message: fields })
        : lines.push({ level: "debug", fields, message: message! }),
    info: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "info", fields, message }),
    warn: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "warn", fields, message }),
    error: (fields: Record<string, unknown>, message: string) =>
      lines.push({ level: "error", fields, message }),
  };
  let nowMs = 0;
  running = await startTestServer({
    devices: [
      new MemoryBlockDevice("vol", 1024 * 1024),
      new MemoryBlockDevice("other", 1024 * 1024),
    ],
    logger: logger as unknown as Logger,
    clock: () => nowMs,
  });
  const opened = (level: string) =>
    lines.filter((line) => line.message === "export opened" && line.level === level);
  for (let attempt = 0; attempt < 30; attempt++, nowMs += 1000) {
    const { client } = await TestNbdClient.open(running.address, "vol");
    client.destroy();
    await waitUntil(() => running!.server.connectionCount === 0, "the connection ended");
  }
  // Old: an info line per connection (30).
  expect(opened("info")).toHaveLength(1);
  expect(opened("debug")).toHaveLength(29);
  // Another export is said at once; the same one again after the interval, with the count.
  const { client: other } = await TestNbdClient.open(running.address, "other");
  clients.push(other);
  expect(opened("info").map((line) => line.fields.export)).toEqual(["vol", "other"]);
  nowMs += repeatMs;
  const { client: late } = await TestNbdClient.open(running.address, "vol");
  clients.push(late);
  expect(opened("info")).toHaveLength(3);
  expect(opened("info")[2]!.fields.repeatsSuppressed).toBe(29);

  // A client breaking the protocol connection after connection: one warning an interval.
  for (let attempt = 0; attempt < 20; attempt++, nowMs += 1000) {
    const client = await TestNbdClient.connect(running.address);
    clients.push(client);
    await client.readGreeting();
    client.sendClientFlags(ClientFlag.FixedNewstyle | ClientFlag.NoZeroes);
    client.sendOption(Option.Info, new Uint8Array(0), 1 << 30);
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
  }
  const violations = lines.filter((line) => line.message.startsWith("protocol violation"));
  // Old: a warning each (20).
  expect(violations.filter((line) => line.level === "warn")).toHaveLength(1);
  expect(violations).toHaveLength(20);
});
