// A client that stops in the middle of a transfer holds payload bytes of the server's
// shared budget: one that stops taking its replies (a stopped process, a paused VM's
// NBD client, a client that never reads) holds the read data of every request it has
// in flight; one that stops part way through a write's data holds the write's bytes,
// taken before the data is read. Past `clientStallMs` without a byte moved, the server
// disconnects it, so that it cannot hold the shared budget, and with it every other
// connection's reads and writes, for ever.

import { afterEach, describe, expect, test } from "vitest";
import { Command, requestHeaderBytes, requestMagic } from "../src/wire.ts";
import { MemoryBlockDevice } from "./memory-block-device.ts";
import { TestNbdClient } from "./nbd-test-client.ts";
import {
  patterned,
  sleep,
  startTestServer,
  type TestServer,
  waitUntil,
} from "./nbd-test-server.ts";

const mebibyte = 1024 * 1024;
const clientStallMs = 300;
/** Far past the stall limit: a connection still open by then would never have closed. */
const closeWaitMs = clientStallMs + 5000;

let running: TestServer | undefined;
const clients: TestNbdClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await running?.server.close();
  running = undefined;
});

async function open(name: string): Promise<TestNbdClient> {
  if (running === undefined) throw new Error("start the server first");
  const { client } = await TestNbdClient.open(running.address, name);
  clients.push(client);
  return client;
}

describe("NBD clients that stall part way through a transfer", () => {
  test("a client that takes none of its replies is disconnected, and gives the server's budget back to the others", async () => {
    // Replies far larger than what loopback socket buffers hold (a few MiB), so that the
    // stalled client's replies back up in the server and hold the whole shared budget.
    const readBytes = 8 * mebibyte;
    const reads = 4;
    const device = new MemoryBlockDevice("vol", readBytes);
    running = await startTestServer({
      devices: [device],
      limits: {
        clientStallMs,
        payloadBytesMax: readBytes,
        payloadBytesInflightPerConnectionMax: reads * readBytes,
        payloadBytesInflightMax: reads * readBytes,
      },
    });
    const stalled = await open("vol");
    stalled.pause();
    for (let handle = 1; handle <= reads; handle++) {
      stalled.sendRequest({ command: Command.Read, handle: BigInt(handle), length: readBytes });
    }
    await waitUntil(() => device.completed.length === reads, "the stalled client's reads are done");

    // This read needs a part of the budget the stalled client holds: it is served once
    // that client is disconnected, and never while it stays connected.
    const other = await open("vol");
    const reply = await other.roundTrip({ command: Command.Read, handle: 9n, length: 4096 });
    expect(reply).toMatchObject({ error: 0, handle: 9n });
    expect(reply.data.byteLength).toBe(4096);

    // The stalled client's connection is gone; what it finds once it reads again is cut
    // short (the replies still queued in the server were dropped).
    stalled.resume();
    expect(await stalled.isClosedWithin(closeWaitMs)).toBe(true);
    expect(stalled.unreadBytes).toBeLessThan(reads * readBytes);
    await waitUntil(() => running?.server.connectionCount === 1, "one connection is left");
  });

  test("a client that stops part way through a write's data is disconnected, and gives the write's bytes back", async () => {
    const writeBytes = 8 * mebibyte;
    const device = new MemoryBlockDevice("vol", writeBytes);
    running = await startTestServer({
      devices: [device],
      limits: {
        clientStallMs,
        payloadBytesMax: writeBytes,
        payloadBytesInflightMax: writeBytes,
      },
    });
    // A write's header and half its data, then nothing more: the server has taken the
    // write's 8 MiB from its budget, which is all of it.
    const stalled = await open("vol");
    const header = Buffer.alloc(requestHeaderBytes);
    header.writeUInt32BE(requestMagic, 0);
    header.writeUInt16BE(Command.Write, 6);
    header.writeBigUInt64BE(1n, 8);
    header.writeUInt32BE(writeBytes, 24);
    stalled.write(Buffer.concat([header, patterned(writeBytes / 2, 1)]));

    const other = await open("vol");
    const reply = await other.roundTrip({ command: Command.Read, handle: 9n, length: 4096 });
    expect(reply).toMatchObject({ error: 0, handle: 9n });
    expect(await stalled.isClosedWithin(closeWaitMs)).toBe(true);
    expect(device.count("write")).toBe(0);
  });

  test("an idle client, between requests, keeps its connection past the stall limit", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    running = await startTestServer({ devices: [device], limits: { clientStallMs } });
    const client = await open("vol");
    await sleep(3 * clientStallMs);
    const reply = await client.roundTrip({ command: Command.Read, handle: 1n, length: 4096 });
    expect(reply).toMatchObject({ error: 0, handle: 1n });
  });

  test("a client that takes its replies late, but within the limit, keeps its connection", async () => {
    const readBytes = 8 * mebibyte;
    const reads = 4;
    const device = new MemoryBlockDevice("vol", readBytes);
    running = await startTestServer({
      devices: [device],
      limits: {
        // Long enough that a loaded machine cannot make this client look stalled.
        clientStallMs: 60_000,
        payloadBytesMax: readBytes,
        payloadBytesInflightPerConnectionMax: reads * readBytes,
      },
    });
    const client = await open("vol");
    client.pause();
    for (let handle = 1; handle <= reads; handle++) {
      client.sendRequest({ command: Command.Read, handle: BigInt(handle), length: readBytes });
    }
    await waitUntil(() => device.completed.length === reads, "the reads are done");
    client.resume();
    for (let index = 0; index < reads; index++) {
      expect((await client.readReply()).error).toBe(0);
    }
  });
});
