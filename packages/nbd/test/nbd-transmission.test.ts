// The transmission phase over a real loopback socket: data round trips, out-of-order
// replies, FUA and flush, error mapping from the backend, every kind of bad request
// (each followed by proof that the connection, or another one, still works), DISC,
// and the in-flight limits with their backpressure.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { afterEach, describe, expect, test } from "vitest";
import { Command, CommandFlag, ReplyError } from "../src/wire.ts";
import { MemoryBlockDevice, type OperationRecord } from "./memory-block-device.ts";
import { TestNbdClient } from "./nbd-test-client.ts";
import {
  patterned,
  sleep,
  startTestServer,
  type TestServer,
  waitUntil,
} from "./nbd-test-server.ts";

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const closeWaitMs = 2000;

let running: TestServer | undefined;
const clients: TestNbdClient[] = [];
/** Every hold of every test, released after it so that a failed test cannot hang close. */
const holds: { device: MemoryBlockDevice; held: { release: () => void }[] }[] = [];

afterEach(async () => {
  for (const { device, held } of holds.splice(0)) {
    device.gate = undefined;
    for (const { release } of held) release();
  }
  for (const client of clients.splice(0)) client.destroy();
  await running?.server.close();
  running = undefined;
});

async function serve(
  device: MemoryBlockDevice,
  limits: Parameters<typeof startTestServer>[0]["limits"] = {},
) {
  running = await startTestServer({ devices: [device], limits });
  return running;
}

async function open(device: MemoryBlockDevice): Promise<TestNbdClient> {
  const { address } = running ?? (await serve(device));
  const { client } = await TestNbdClient.open(address, device.name);
  clients.push(client);
  return client;
}

/** A gate that holds every operation of `kinds` until the test releases it. */
function holdOperations(device: MemoryBlockDevice, kinds: string[]) {
  const held: { operation: OperationRecord; release: () => void }[] = [];
  holds.push({ device, held });
  device.gate = (operation) => {
    if (!kinds.includes(operation.kind)) return Promise.resolve();
    return new Promise((release) => held.push({ operation, release }));
  };
  return held;
}

/** Proves a connection still works: a small write and read back. */
async function expectHealthy(client: TestNbdClient, handle: bigint): Promise<void> {
  const data = patterned(4096, Number(handle));
  const written = await client.roundTrip({
    command: Command.Write,
    handle,
    offset: 0,
    data,
  });
  expect(written).toMatchObject({ error: 0, handle });
  const read = await client.roundTrip({
    command: Command.Read,
    handle: handle + 1n,
    offset: 0,
    length: 4096,
  });
  expect(read.error).toBe(0);
  expect(read.data.equals(data)).toBe(true);
}

describe("NBD transmission", () => {
  test("writes read back; write zeroes and trim read back as zeroes", async () => {
    const device = new MemoryBlockDevice("vol", 4 * mebibyte);
    const client = await open(device);
    const data = patterned(64 * kibibyte, 3);
    expect(
      await client.roundTrip({ command: Command.Write, handle: 1n, offset: mebibyte, data }),
    ).toMatchObject({ error: 0, handle: 1n });
    expect(Buffer.from(device.bytes.subarray(mebibyte, mebibyte + data.byteLength))).toEqual(data);

    const read = await client.roundTrip({
      command: Command.Read,
      handle: 2n,
      offset: mebibyte,
      length: data.byteLength,
    });
    expect(read.data.equals(data)).toBe(true);

    await client.roundTrip({
      command: Command.WriteZeroes,
      handle: 3n,
      flags: CommandFlag.NoHole,
      offset: mebibyte,
      length: 4096,
    });
    await client.roundTrip({
      command: Command.Trim,
      handle: 4n,
      offset: mebibyte + 8192,
      length: 4096,
    });
    const after = await client.roundTrip({
      command: Command.Read,
      handle: 5n,
      offset: mebibyte,
      length: 16384,
    });
    expect(after.data.subarray(0, 4096).every((byte) => byte === 0)).toBe(true);
    expect(after.data.subarray(4096, 8192).equals(data.subarray(4096, 8192))).toBe(true);
    expect(after.data.subarray(8192, 12288).every((byte) => byte === 0)).toBe(true);
    expect(device.operations.map((operation) => operation.kind)).toEqual([
      "write",
      "read",
      "write-zeroes",
      "trim",
      "read",
    ]);
  });

  test("replies go out as requests complete: reads that finish in reverse are answered in reverse", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    for (let index = 0; index < 4; index++) {
      device.bytes.fill(index + 1, index * 4096, (index + 1) * 4096);
    }
    const held = holdOperations(device, ["read"]);
    const client = await open(device);
    for (let index = 0; index < 4; index++) {
      client.sendRequest({
        command: Command.Read,
        handle: BigInt(index + 1),
        offset: index * 4096,
        length: 4096,
      });
    }
    await waitUntil(() => held.length === 4, "four reads are held");
    for (const { release } of held.toReversed()) release();
    const replies = [];
    for (let index = 0; index < 4; index++) replies.push(await client.readReply());
    expect(replies.map((reply) => reply.handle)).toEqual([4n, 3n, 2n, 1n]);
    for (const reply of replies) {
      expect(reply.error).toBe(0);
      expect(reply.data.every((byte) => byte === Number(reply.handle))).toBe(true);
    }
  });

  test("a write with NBD_CMD_FLAG_FUA is answered with its own completion, without a flush", async () => {
    // A completed backend write is durable on every replica already: FUA asks for no more.
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["write"]);
    const client = await open(device);
    client.sendRequest({
      command: Command.Write,
      handle: 9n,
      flags: CommandFlag.ForceUnitAccess,
      offset: 0,
      data: patterned(4096, 1),
    });
    await waitUntil(() => held.length === 1, "the write is held");
    await expect(client.readReply(100)).rejects.toThrow(/timed out/);
    held[0]?.release();
    expect(await client.readReply()).toMatchObject({ error: 0, handle: 9n });
    expect(device.operations.map((operation) => operation.kind)).toEqual(["write"]);
  });

  test("FUA on write zeroes and trim adds no flush either", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const client = await open(device);
    const fua = CommandFlag.ForceUnitAccess;
    await client.roundTrip({ command: Command.Write, handle: 1n, data: patterned(512, 1) });
    await client.roundTrip({ command: Command.WriteZeroes, handle: 2n, flags: fua, length: 512 });
    await client.roundTrip({ command: Command.Trim, handle: 3n, flags: fua, length: 512 });
    expect(device.operations.map((operation) => operation.kind)).toEqual([
      "write",
      "write-zeroes",
      "trim",
    ]);
  });

  test("NBD_CMD_FLUSH flushes the backend before it is answered", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["flush"]);
    const client = await open(device);
    client.sendRequest({ command: Command.Flush, handle: 5n });
    await waitUntil(() => held.length === 1, "the flush is held");
    await expect(client.readReply(100)).rejects.toThrow(/timed out/);
    held[0]?.release();
    expect(await client.readReply()).toMatchObject({ error: 0, handle: 5n });
  });

  test.each([
    ["NoSpace", new BallastError(ErrorCode.NoSpace, "sleds full"), ReplyError.NoSpace],
    ["OutOfRange", new BallastError(ErrorCode.OutOfRange, "resized"), ReplyError.InvalidArgument],
    ["Unaligned", new BallastError(ErrorCode.Unaligned, "odd"), ReplyError.InvalidArgument],
    [
      "InvalidArgument",
      new BallastError(ErrorCode.InvalidArgument, "no"),
      ReplyError.InvalidArgument,
    ],
    ["Unavailable", new BallastError(ErrorCode.Unavailable, "no primary"), ReplyError.InputOutput],
    [
      "ChecksumMismatch",
      new BallastError(ErrorCode.ChecksumMismatch, "bad"),
      ReplyError.InputOutput,
    ],
    ["a plain Error", new Error("boom"), ReplyError.InputOutput],
  ])(
    "a backend failure with %s is answered with its error value",
    async (_name, failure, expected) => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      device.failNext(failure);
      const reply = await client.roundTrip({
        command: Command.Read,
        handle: 1n,
        offset: 0,
        length: 4096,
      });
      expect(reply).toMatchObject({ error: expected, handle: 1n });
      expect(reply.data.byteLength).toBe(0);
      await expectHealthy(client, 10n);
    },
  );

  test("a backend that finds a write past its end (the volume shrank) is NBD_ENOSPC; a read there NBD_EINVAL", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const client = await open(device);
    const shrunk = () => new BallastError(ErrorCode.OutOfRange, "past the end after a shrink");
    const asked = [
      { command: Command.Write, data: patterned(4096, 1) },
      { command: Command.WriteZeroes, length: 4096 },
      { command: Command.Read, length: 4096 },
      { command: Command.Trim, length: 4096 },
    ];
    const errors = [];
    for (const [index, request] of asked.entries()) {
      device.failNext(shrunk());
      const handle = BigInt(index + 1);
      errors.push((await client.roundTrip({ ...request, handle, offset: 0 })).error);
    }
    expect(errors).toEqual([
      ReplyError.NoSpace,
      ReplyError.NoSpace,
      ReplyError.InvalidArgument,
      ReplyError.InvalidArgument,
    ]);
    await expectHealthy(client, 10n);
  });

  test("a backend read that returns the wrong length is NBD_EIO, not a short reply", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    device.read = async () => new Uint8Array(100);
    const client = await open(device);
    const reply = await client.roundTrip({ command: Command.Read, handle: 1n, length: 4096 });
    expect(reply.error).toBe(ReplyError.InputOutput);
    await client.roundTrip({ command: Command.Flush, handle: 2n });
    expect(client.unreadBytes).toBe(0);
  });

  describe("bad requests", () => {
    test("a misaligned offset or length is NBD_EINVAL; a misaligned write's data is skipped", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      const misaligned = [
        { command: Command.Read, handle: 1n, offset: 100, length: 512 },
        { command: Command.Read, handle: 2n, offset: 0, length: 1000 },
        { command: Command.Write, handle: 3n, offset: 512, data: patterned(1000, 2) },
        { command: Command.Write, handle: 4n, offset: 7, data: patterned(512, 2) },
        { command: Command.Trim, handle: 5n, offset: 0, length: 513 },
        { command: Command.WriteZeroes, handle: 6n, offset: 256, length: 512 },
      ];
      for (const request of misaligned) {
        expect(await client.roundTrip(request)).toMatchObject({
          error: ReplyError.InvalidArgument,
          handle: request.handle,
        });
      }
      expect(device.operations).toEqual([]);
      await expectHealthy(client, 10n);
    });

    test("past the end, a read or trim is NBD_EINVAL and a write or write zeroes NBD_ENOSPC", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      const end = mebibyte;
      const cases = [
        [
          { command: Command.Read, handle: 1n, offset: end, length: 512 },
          ReplyError.InvalidArgument,
        ],
        [
          { command: Command.Trim, handle: 2n, offset: end - 512, length: 1024 },
          ReplyError.InvalidArgument,
        ],
        [
          { command: Command.Write, handle: 3n, offset: end - 512, data: patterned(1024, 1) },
          ReplyError.NoSpace,
        ],
        [
          { command: Command.WriteZeroes, handle: 4n, offset: end, length: 512 },
          ReplyError.NoSpace,
        ],
        // Offsets near 2^64 must not wrap around into range.
        [
          { command: Command.Read, handle: 5n, offset: 0xffff_ffff_ffff_fe00n, length: 512 },
          ReplyError.InvalidArgument,
        ],
        [
          {
            command: Command.Write,
            handle: 6n,
            offset: 0xffff_ffff_ffff_fe00n,
            data: patterned(512, 1),
          },
          ReplyError.NoSpace,
        ],
      ] as const;
      for (const [request, error] of cases) {
        expect(await client.roundTrip(request)).toMatchObject({ error, handle: request.handle });
      }
      expect(device.operations).toEqual([]);
      await expectHealthy(client, 10n);
    });

    test("a read longer than the maximum payload is NBD_EINVAL", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      const reply = await client.roundTrip({
        command: Command.Read,
        handle: 1n,
        offset: 0,
        length: 1024 * mebibyte,
      });
      expect(reply.error).toBe(ReplyError.InvalidArgument);
      expect(device.operations).toEqual([]);
      await expectHealthy(client, 10n);
    });

    test("a write over an advertised maximum below 2^25 bytes is NBD_EINVAL, its data skipped", async () => {
      // The spec: no length below 2^25 is a denial of service, whatever maximum the
      // server advertised; such a write is refused, not a reason to disconnect.
      const device = new MemoryBlockDevice("vol", 4 * mebibyte);
      await serve(device, { payloadBytesMax: 64 * kibibyte });
      const client = await open(device);
      const reply = await client.roundTrip({
        command: Command.Write,
        handle: 1n,
        offset: 0,
        data: patterned(mebibyte, 1),
      });
      expect(reply).toMatchObject({ error: ReplyError.InvalidArgument, handle: 1n });
      expect(device.operations).toEqual([]);
      await expectHealthy(client, 10n);
    });

    test("a write longer than the maximum payload closes that connection unread; others go on", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const other = await open(device);
      const client = await open(device);
      client.sendRequest({
        command: Command.Write,
        handle: 1n,
        offset: 0,
        length: 1024 * mebibyte,
      });
      expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
      expect(client.unreadBytes).toBe(0);
      await expectHealthy(other, 10n);
      expect(device.count("write")).toBe(1);
    });

    test("a bad request magic closes that connection only", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const other = await open(device);
      const client = await open(device);
      const request = Buffer.alloc(28);
      request.writeUInt32BE(0x12560953, 0); // the historic magic, no longer valid
      client.write(request);
      expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
      await expectHealthy(other, 10n);
      expect(running?.server.connectionCount).toBe(1);
    });

    test("an unknown command, or one the server does not offer, is NBD_EINVAL", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      const commands = [Command.Cache, Command.BlockStatus, Command.Resize, 99, 0xffff];
      for (const [index, command] of commands.entries()) {
        const handle = BigInt(index + 1);
        expect(await client.roundTrip({ command, handle, length: 512 })).toMatchObject({
          error: ReplyError.InvalidArgument,
          handle,
        });
      }
      await expectHealthy(client, 10n);
    });

    test("a flag that is unknown or not valid for the command is NBD_EINVAL", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      const cases = [
        { command: Command.Read, handle: 1n, flags: CommandFlag.NoHole, length: 512 },
        { command: Command.Read, handle: 2n, flags: CommandFlag.DoNotFragment, length: 512 },
        {
          command: Command.Write,
          handle: 3n,
          flags: CommandFlag.FastZero,
          data: patterned(512, 1),
        },
        { command: Command.WriteZeroes, handle: 4n, flags: CommandFlag.FastZero, length: 512 },
        { command: Command.Trim, handle: 5n, flags: CommandFlag.RequestOne, length: 512 },
        { command: Command.Flush, handle: 6n, flags: 0x8000 },
      ];
      for (const request of cases) {
        expect(await client.roundTrip(request)).toMatchObject({
          error: ReplyError.InvalidArgument,
          handle: request.handle,
        });
      }
      expect(device.operations).toEqual([]);
      await expectHealthy(client, 10n);
    });

    test("FUA is accepted on every command, even those that do not write", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      const fua = CommandFlag.ForceUnitAccess;
      expect(
        (await client.roundTrip({ command: Command.Read, handle: 1n, flags: fua, length: 512 }))
          .error,
      ).toBe(0);
      expect(
        (await client.roundTrip({ command: Command.Flush, handle: 2n, flags: fua })).error,
      ).toBe(0);
    });

    test("a flush with a nonzero offset or length is NBD_EINVAL", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      for (const request of [
        { command: Command.Flush, handle: 1n, offset: 512 },
        { command: Command.Flush, handle: 2n, length: 512 },
      ]) {
        expect((await client.roundTrip(request)).error).toBe(ReplyError.InvalidArgument);
      }
      expect(device.count("flush")).toBe(0);
    });

    test("a zero length is NBD_EINVAL and does not reach the backend", async () => {
      const device = new MemoryBlockDevice("vol", mebibyte);
      const client = await open(device);
      for (const [index, command] of [
        Command.Read,
        Command.Write,
        Command.Trim,
        Command.WriteZeroes,
      ].entries()) {
        const reply = await client.roundTrip({
          command,
          handle: BigInt(index),
          offset: 512,
          length: 0,
        });
        expect(reply.error).toBe(ReplyError.InvalidArgument);
      }
      expect(device.operations).toEqual([]);
      await expectHealthy(client, 10n);
    });
  });

  test("a connection that closes aborts what it had in flight, so none of it is retried", async () => {
    // The backend (the client library) retries a write after failovers and timeouts;
    // once its NBD client is gone, a retry could land after the client's next
    // connection wrote the same blocks again. The signal stops the retries.
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["write"]);
    await serve(device);
    const client = await open(device);
    client.sendRequest({ command: Command.Write, handle: 1n, offset: 0, data: patterned(4096, 1) });
    await waitUntil(() => held.length === 1, "the write is held in the backend");
    const { signal } = held[0]!.operation;
    expect(signal?.aborted).toBe(false);
    client.destroy();
    await waitUntil(() => signal?.aborted === true, "the write's signal to fire");
    // Another connection's operations carry a signal of their own, not fired.
    device.gate = undefined;
    const other = await open(device);
    await expectHealthy(other, 10n);
    expect(device.operations.at(-1)?.signal?.aborted).toBe(false);
  });

  test("NBD_CMD_DISC: requests in flight are answered, then the server closes", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["read"]);
    const { server } = await serve(device);
    const client = await open(device);
    client.sendRequest({ command: Command.Read, handle: 1n, length: 512 });
    client.sendRequest({ command: Command.Read, handle: 2n, offset: 512, length: 512 });
    client.sendRequest({ command: Command.Disconnect, handle: 3n });
    await waitUntil(() => held.length === 2, "both reads are held");
    expect(await client.isClosedWithin(100)).toBe(false);
    for (const { release } of held) release();
    const handles = [(await client.readReply()).handle, (await client.readReply()).handle];
    expect(handles.sort()).toEqual([1n, 2n]);
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
    expect(client.unreadBytes).toBe(0);
    await waitUntil(() => server.connectionCount === 0, "the server forgets the connection");
  });

  test("at the in-flight limit the server takes no more requests until one is answered", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["read"]);
    await serve(device, { requestsInflightPerConnectionMax: 2 });
    const client = await open(device);
    for (let index = 1; index <= 5; index++) {
      client.sendRequest({ command: Command.Read, handle: BigInt(index), length: 512 });
    }
    await waitUntil(() => held.length === 2, "two reads are held");
    await sleep(100);
    expect(device.count("read")).toBe(2);

    held.shift()?.release();
    expect((await client.readReply()).handle).toBe(1n);
    await waitUntil(() => device.count("read") === 3, "a third read starts");
    await sleep(50);
    expect(device.count("read")).toBe(3);

    device.gate = undefined;
    for (const { release } of held.splice(0)) release();
    const handles = [];
    for (let index = 0; index < 4; index++) handles.push((await client.readReply()).handle);
    expect(handles.sort()).toEqual([2n, 3n, 4n, 5n]);
  });

  test("the in-flight limit counts every command, not only those with data", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["flush"]);
    await serve(device, { requestsInflightPerConnectionMax: 2 });
    const client = await open(device);
    for (let index = 1; index <= 4; index++) {
      client.sendRequest({ command: Command.Flush, handle: BigInt(index) });
    }
    await waitUntil(() => held.length === 2, "two flushes are held");
    await sleep(100);
    expect(device.count("flush")).toBe(2);
    device.gate = undefined;
    for (const { release } of held.splice(0)) release();
    const handles = [];
    for (let index = 0; index < 4; index++) handles.push((await client.readReply()).handle);
    expect(handles.sort()).toEqual([1n, 2n, 3n, 4n]);
  });

  test("payload bytes in flight are limited too", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["read", "write"]);
    await serve(device, {
      payloadBytesMax: 64 * kibibyte,
      payloadBytesInflightPerConnectionMax: 128 * kibibyte,
    });
    const client = await open(device);
    client.sendRequest({ command: Command.Read, handle: 1n, length: 64 * kibibyte });
    client.sendRequest({ command: Command.Write, handle: 2n, data: patterned(64 * kibibyte, 1) });
    client.sendRequest({ command: Command.Read, handle: 3n, length: 512 });
    await waitUntil(() => held.length === 2, "a read and a write are held");
    await sleep(100);
    expect(device.operations.map((operation) => operation.kind)).toEqual(["read", "write"]);
    held.shift()?.release();
    await waitUntil(() => device.count("read") === 2, "the small read starts");
    device.gate = undefined;
    for (const { release } of held.splice(0)) release();
    const handles = [];
    for (let index = 0; index < 3; index++) handles.push((await client.readReply()).handle);
    expect(handles.sort()).toEqual([1n, 2n, 3n]);
  });

  test("payload bytes in flight are limited over all connections together", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    const held = holdOperations(device, ["read", "write"]);
    // Each connection could hold two requests of 64 KiB; the server only two in all.
    await serve(device, {
      payloadBytesMax: 64 * kibibyte,
      payloadBytesInflightPerConnectionMax: 128 * kibibyte,
      payloadBytesInflightMax: 128 * kibibyte,
    });
    const first = await open(device);
    const second = await open(device);
    first.sendRequest({ command: Command.Read, handle: 1n, length: 64 * kibibyte });
    first.sendRequest({ command: Command.Read, handle: 2n, length: 64 * kibibyte });
    await waitUntil(() => held.length === 2, "the first connection's reads are held");
    second.sendRequest({ command: Command.Write, handle: 3n, data: patterned(64 * kibibyte, 3) });
    second.sendRequest({ command: Command.Read, handle: 4n, length: 512 });
    await sleep(100);
    // The second connection's write waits for the server's budget, and its read behind it.
    expect(device.operations.map((operation) => operation.kind)).toEqual(["read", "read"]);
    held.shift()?.release();
    await waitUntil(() => device.count("write") === 1, "the write starts once a read is answered");
    expect((await first.readReply()).handle).toBe(1n);
    device.gate = undefined;
    for (const { release } of held.splice(0)) release();
    expect((await first.readReply()).handle).toBe(2n);
    const handles = [(await second.readReply()).handle, (await second.readReply()).handle];
    expect(handles.sort()).toEqual([3n, 4n]);
    await expectHealthy(second, 10n);
  });

  test("a connection that closes part way through a write's data gives its bytes back", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    await serve(device, {
      payloadBytesMax: 64 * kibibyte,
      payloadBytesInflightPerConnectionMax: 64 * kibibyte,
      payloadBytesInflightMax: 64 * kibibyte,
    });
    const leaving = await open(device);
    // A 64 KiB write's header and half its data, then the client goes.
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(Command.Write, 6);
    header.writeBigUInt64BE(1n, 8);
    header.writeUInt32BE(64 * kibibyte, 24);
    leaving.write(Buffer.concat([header, patterned(32 * kibibyte, 1)]));
    await sleep(50);
    leaving.destroy();
    // Had the half-read write kept the server's whole budget, this would never start.
    const staying = await open(device);
    const written = await staying.roundTrip({
      command: Command.Write,
      handle: 2n,
      offset: 0,
      data: patterned(64 * kibibyte, 2),
    });
    expect(written).toMatchObject({ error: 0, handle: 2n });
    expect(device.count("write")).toBe(1);
  });

  test("a client that does not read its replies stops the server reading its requests", async () => {
    const device = new MemoryBlockDevice("vol", mebibyte);
    await serve(device, { requestsInflightPerConnectionMax: 4 });
    const client = await open(device);
    const requests = 200;
    client.pause();
    for (let index = 0; index < requests; index++) {
      client.sendRequest({ command: Command.Read, handle: BigInt(index), length: mebibyte });
    }
    // Replies fill the socket buffers; then every slot waits for a drain that never comes.
    let seen = -1;
    while (seen !== device.count("read")) {
      seen = device.count("read");
      await sleep(200);
    }
    // Four in flight, plus the few replies the kernel's socket buffers took whole.
    expect(seen).toBeLessThan(requests / 4);
    client.resume();
    for (let index = 0; index < requests; index++) {
      expect((await client.readReply()).error).toBe(0);
    }
    expect(device.count("read")).toBe(requests);
  });
});
