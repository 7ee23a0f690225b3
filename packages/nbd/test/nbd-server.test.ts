// The server as a whole: listening on TCP and Unix sockets, many connections at once on
// one export, the connection limit, refusing limits that cannot work, and a close that
// lets requests in flight finish; the writable devices with connections open (what the
// gateway reports as attached).

import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { type NbdLimits, NbdLimitsError, NbdServer } from "../src/index.ts";
import { Command, Option } from "../src/wire.ts";
import { MemoryBlockDevice, type OperationRecord } from "./memory-block-device.ts";
import { TestNbdClient } from "./nbd-test-client.ts";
import {
  patterned,
  sleep,
  startTestServer,
  type TestServer,
  waitUntil,
} from "./nbd-test-server.ts";

const mebibyte = 1024 * 1024;
const closeWaitMs = 2000;

let running: TestServer | undefined;
const clients: TestNbdClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await running?.server.close();
  running = undefined;
});

async function open(address: { port: number } | { path: string }, name: string) {
  const { client } = await TestNbdClient.open(address, name);
  clients.push(client);
  return client;
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

describe("NBD server", () => {
  test("serves a Unix socket, and removes it on close", async () => {
    const directory = await mkdtemp(join(tmpdir(), "ballast-nbd-"));
    const path = join(directory, "nbd.sock");
    const device = new MemoryBlockDevice("vol", mebibyte);
    const server = new NbdServer({
      openExport: async (name) => (name === "vol" ? device : undefined),
      listExports: async () => ["vol"],
    });
    try {
      expect(await server.listen({ path })).toEqual({ path });
      const client = await open({ path }, "vol");
      const data = patterned(4096, 5);
      expect((await client.roundTrip({ command: Command.Write, handle: 1n, data })).error).toBe(0);
      expect(Buffer.from(device.bytes.subarray(0, 4096)).equals(data)).toBe(true);
    } finally {
      await server.close();
      expect(existsSync(path)).toBe(false);
      await rm(directory, { recursive: true, force: true });
    }
  });

  test("many connections share one export, and each sees the others' acknowledged writes", async () => {
    const device = new MemoryBlockDevice("vol", 4 * mebibyte);
    running = await startTestServer({ devices: [device] });
    const connections = await Promise.all(
      Array.from({ length: 8 }, () => open(running!.address, "vol")),
    );
    expect(running.server.connectionCount).toBe(8);
    await Promise.all(
      connections.map((client, index) =>
        client.roundTrip({
          command: Command.Write,
          handle: BigInt(index),
          offset: index * 65536,
          data: patterned(65536, index),
        }),
      ),
    );
    for (const [index, client] of connections.entries()) {
      const neighbour = (index + 1) % connections.length;
      const read = await client.roundTrip({
        command: Command.Read,
        handle: 100n,
        offset: neighbour * 65536,
        length: 65536,
      });
      expect(read.data.equals(patterned(65536, neighbour))).toBe(true);
    }
  });

  test("attached devices count open connections to writable exports only, until they close", async () => {
    const volume = new MemoryBlockDevice("vol", mebibyte);
    const snapshot = Object.assign(new MemoryBlockDevice("vol@s", mebibyte), { readOnly: true });
    running = await startTestServer({ devices: [volume, snapshot] });
    expect(running.server.attachedDevices()).toEqual({});
    const first = await open(running.address, "vol");
    await open(running.address, "vol");
    await open(running.address, "vol@s");
    expect(running.server.attachedDevices()).toEqual({ vol: 2 });
    first.destroy();
    await waitUntil(() => running!.server.attachedDevices().vol === 1, "the closed one is gone");
    expect(running.server.attachedDevices()).toEqual({ vol: 1 });
  });

  test("a connection past connectionsMax is closed at once; the others keep working", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    running = await startTestServer({ devices: [device], limits: { connectionsMax: 2 } });
    const first = await open(running.address, "vol");
    await open(running.address, "vol");
    const third = await TestNbdClient.connect(running.address);
    clients.push(third);
    expect(await third.isClosedWithin(closeWaitMs)).toBe(true);
    expect(third.unreadBytes).toBe(0);
    expect((await first.roundTrip({ command: Command.Read, handle: 1n, length: 512 })).error).toBe(
      0,
    );
  });

  test("close waits for requests in flight to be answered, then closes every connection", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held: (() => void)[] = [];
    device.gate = (operation: OperationRecord) =>
      operation.kind === "read" ? new Promise((release) => held.push(release)) : Promise.resolve();
    running = await startTestServer({ devices: [device] });
    const { server, address } = running;
    const client = await open(address, "vol");
    const negotiating = await TestNbdClient.connect(address);
    clients.push(negotiating);
    await negotiating.readGreeting();

    try {
      client.sendRequest({ command: Command.Read, handle: 1n, length: 512 });
      await waitUntil(() => held.length === 1, "the read is held");
      let closed = false;
      const closing = server.close().then(() => {
        closed = true;
      });
      expect(await negotiating.isClosedWithin(closeWaitMs)).toBe(true);
      await sleep(100);
      expect(closed).toBe(false);
      expect(await refusesConnections(address.port)).toBe(true);

      held[0]?.();
      expect(await client.readReply()).toMatchObject({ error: 0, handle: 1n });
      await closing;
      expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
      expect(server.connectionCount).toBe(0);
    } finally {
      for (const release of held) release();
    }
    running = undefined;
  });

  test("close does not wait for an export lookup that never settles", async () => {
    running = await startTestServer({
      devices: [],
      openExport: () => new Promise(() => {}),
    });
    const client = await TestNbdClient.connect(running.address);
    clients.push(client);
    await client.readGreeting();
    client.sendClientFlags(1);
    client.sendOption(Option.Go, TestNbdClient.exportRequestData("vol", []));
    await sleep(50);
    await running.server.close();
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
    expect(running.server.connectionCount).toBe(0);
    running = undefined;
  });

  test("gives back every device it opened: after NBD_OPT_INFO at once, after NBD_OPT_GO when the connection ends", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    let opened = 0;
    const released: unknown[] = [];
    running = await startTestServer({
      devices: [],
      openExport: async (name) => {
        if (name !== "vol") return undefined;
        opened += 1;
        return device;
      },
      releaseExport: (given) => released.push(given),
    });
    const client = await TestNbdClient.connect(running.address);
    clients.push(client);
    await client.readGreeting();
    client.sendClientFlags(1);
    expect((await client.information(Option.Info, "vol", []))?.sizeBytes).toBe(mebibyte);
    expect(released).toEqual([device]);
    expect(await client.information(Option.Go, "vol", [])).toBeDefined();
    expect((await client.roundTrip({ command: Command.Read, handle: 1n, length: 512 })).error).toBe(
      0,
    );
    expect(released).toHaveLength(1);
    client.destroy();
    await waitUntil(() => released.length === 2, "the served device is given back");
    expect(opened).toBe(2);
    expect(released).toEqual([device, device]);
  });

  test("gives back a device whose lookup settles after its connection closed", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    let answer!: (found: MemoryBlockDevice) => void;
    const released: unknown[] = [];
    running = await startTestServer({
      devices: [],
      openExport: () =>
        new Promise((resolve) => {
          answer = resolve;
        }),
      releaseExport: (given) => released.push(given),
    });
    const client = await TestNbdClient.connect(running.address);
    clients.push(client);
    await client.readGreeting();
    client.sendClientFlags(1);
    client.sendOption(Option.Go, TestNbdClient.exportRequestData("vol", []));
    await waitUntil(() => answer !== undefined, "the lookup is under way");
    // The server's close ends the connection in its handshake, the lookup unanswered.
    await running.server.close();
    expect(running.server.connectionCount).toBe(0);
    running = undefined;
    answer(device);
    await waitUntil(() => released.length === 1, "the late device is given back");
    expect(released).toEqual([device]);
  });

  test("listening on a port in use fails, and the server can listen elsewhere after", async () => {
    running = await startTestServer({ devices: [] });
    const server = new NbdServer({
      openExport: async () => undefined,
      listExports: async () => [],
    });
    try {
      await expect(
        server.listen({ host: "127.0.0.1", port: running.address.port }),
      ).rejects.toThrow(/EADDRINUSE/);
      const bound = await server.listen({ host: "localhost", port: 0 });
      expect(bound.port).toBeGreaterThan(0);
      // The address bound, the name resolved: what the gateway judges exposure by.
      expect(["127.0.0.1", "::1"]).toContain(bound.host);
    } finally {
      await server.close();
    }
  });

  test("close on a server that never listened resolves", async () => {
    const server = new NbdServer({
      openExport: async () => undefined,
      listExports: async () => [],
    });
    await expect(server.close()).resolves.toBeUndefined();
  });

  test("time limits past what timers and TCP keep-alive accept are refused, each named", () => {
    const build = (limits: Partial<NbdLimits>) => () =>
      new NbdServer({ openExport: async () => undefined, listExports: async () => [], limits });
    const timerMax = 2 ** 31 - 1;
    // setTimeout fires a longer delay after 1 ms: a handshake cut at once, no close grace,
    // a client that pauses for a moment taken for stalled.
    for (const name of ["handshakeDeadlineMs", "closeGraceMs", "clientStallMs"] as const) {
      expect(build({ [name]: timerMax + 1 })).toThrow(
        expect.objectContaining({
          problems: [`${name} must be at most ${timerMax}, got ${timerMax + 1}`],
        }),
      );
      expect(build({ [name]: timerMax })).not.toThrow();
    }
    // TCP_KEEPIDLE is whole seconds, at most 32,767 on Linux.
    expect(build({ keepAliveInitialDelayMs: 32_767_001 })).toThrow(NbdLimitsError);
    expect(build({ keepAliveInitialDelayMs: 32_767_000 })).not.toThrow();
  });

  test("limits that cannot work are refused, every problem named", () => {
    const build = () =>
      new NbdServer({
        openExport: async () => undefined,
        listExports: async () => [],
        limits: { payloadBytesMax: 1000, requestsInflightPerConnectionMax: 0, optionBytesMax: 16 },
      });
    expect(build).toThrow(NbdLimitsError);
    try {
      build();
    } catch (error) {
      const problems = (error as NbdLimitsError).problems;
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain("requestsInflightPerConnectionMax");
    }
    const afterFix = () =>
      new NbdServer({
        openExport: async () => undefined,
        listExports: async () => [],
        limits: { payloadBytesMax: 1000, optionBytesMax: 16 },
      });
    expect(afterFix).toThrow(/optionBytesMax[\s\S]*multiple of the 512-byte/);
  });

  test("an export that reports an invalid size is refused, not advertised", async () => {
    const broken = new MemoryBlockDevice("vol", mebibyte);
    Object.defineProperty(broken, "sizeBytes", { value: -1 });
    running = await startTestServer({ devices: [broken] });
    const client = await TestNbdClient.connect(running.address);
    clients.push(client);
    await client.readGreeting();
    client.sendClientFlags(1);
    expect(await client.information(Option.Info, "vol", [])).toBeUndefined();
    expect(client.lastReplies[0]?.data.toString()).toContain("invalid size");
  });
});
