// The server's close is bounded by `closeGraceMs`: a client that stays connected but
// stops reading (a paused VM, a stopped nbd-client), or a request the backend does not
// finish, must not keep the gateway from stopping. At the grace what is in flight is
// aborted and the connections left are destroyed; the client sees its connection drop.
// (Before the grace, close lets requests in flight finish: nbd-server.test.ts.)

import { settlesWithin } from "@ballast/runtime";
import { afterEach, describe, expect, test } from "vitest";
import { Command } from "../src/wire.ts";
import { MemoryBlockDevice, type OperationRecord } from "./memory-block-device.ts";
import { TestNbdClient } from "./nbd-test-client.ts";
import { startTestServer, type TestServer, waitUntil } from "./nbd-test-server.ts";

const mebibyte = 1024 * 1024;
const closeGraceMs = 300;
/** Far past the grace: a close that has not resolved by then would never have. */
const closeWaitMs = closeGraceMs + 2000;

let running: TestServer | undefined;
const clients: TestNbdClient[] = [];

afterEach(async () => {
  // Destroying the clients first lets even a close that ignores its grace finish.
  for (const client of clients.splice(0)) client.destroy();
  await running?.server.close();
  running = undefined;
});

describe("NBD server close", () => {
  test("a client that stops reading cannot hold close past the grace: its connection is destroyed", async () => {
    // Replies far larger than what loopback socket buffers hold (a few MiB), so that the
    // server's writes back up and wait for a drain that never comes.
    const readBytes = 8 * mebibyte;
    const reads = 8;
    const device = new MemoryBlockDevice("vol", readBytes);
    running = await startTestServer({
      devices: [device],
      limits: {
        closeGraceMs,
        payloadBytesMax: readBytes,
        payloadBytesInflightPerConnectionMax: reads * readBytes,
      },
    });
    const { server, address } = running;
    const { client } = await TestNbdClient.open(address, "vol");
    clients.push(client);
    client.pause();
    for (let handle = 1; handle <= reads; handle++) {
      client.sendRequest({ command: Command.Read, handle: BigInt(handle), length: readBytes });
    }
    await waitUntil(() => device.completed.length === reads, "every read is done");

    const closing = server.close();
    expect(await settlesWithin(closing, closeWaitMs)).toBe(true);
    expect(server.connectionCount).toBe(0);
    // The server's side is gone: once the client reads again, it finds the stream cut
    // short (the replies still queued in the server were dropped, not all delivered).
    client.resume();
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
    expect(client.unreadBytes).toBeLessThan(reads * readBytes);
  });

  test("a request still running at the grace is aborted, and the client sees its connection drop", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held: OperationRecord[] = [];
    const failHeld: (() => void)[] = [];
    // Like the Ballast client: an operation rejects as soon as its signal fires, and not
    // before (here the backend never answers on its own).
    device.gate = (operation) =>
      new Promise((_, reject) => {
        held.push(operation);
        failHeld.push(() => reject(new Error("the test is over")));
        operation.signal?.addEventListener("abort", () => reject(operation.signal?.reason), {
          once: true,
        });
      });
    running = await startTestServer({ devices: [device], limits: { closeGraceMs } });
    const { server, address } = running;
    const { client } = await TestNbdClient.open(address, "vol");
    clients.push(client);
    client.sendRequest({ command: Command.Write, handle: 1n, data: Buffer.alloc(4096, 7) });
    await waitUntil(() => held.length === 1, "the write is held");

    try {
      const closing = server.close();
      expect(await settlesWithin(closing, closeWaitMs)).toBe(true);
      expect(held[0]?.signal?.aborted).toBe(true);
      expect(server.connectionCount).toBe(0);
      expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
      // Dropped, not answered: a real client then retries it on its next connection (or
      // fails it), rather than taking an error reply as the write's outcome.
      expect(client.unreadBytes).toBe(0);
    } finally {
      // Lets a close that never aborts (the old code) end, so that the failure is clean.
      for (const fail of failHeld) fail();
    }
  });
});
