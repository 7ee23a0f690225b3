// The handshake over a real loopback socket, driven by the hand-written test client:
// the greeting, client flags, every option the server answers, and every way a client
// can get itself disconnected during negotiation.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { afterEach, describe, expect, test } from "vitest";
import {
  ClientFlag,
  Command,
  Information,
  Option,
  OptionReply,
  TransmissionFlag,
} from "../src/wire.ts";
import { MemoryBlockDevice } from "./memory-block-device.ts";
import { TestNbdClient } from "./nbd-test-client.ts";
import { startTestServer, type TestServer, waitUntil } from "./nbd-test-server.ts";

const mebibyte = 1024 * 1024;
const closeWaitMs = 2000;

let running: TestServer | undefined;
const clients: TestNbdClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await running?.server.close();
  running = undefined;
});

async function serve(options: Partial<Parameters<typeof startTestServer>[0]> = {}) {
  running = await startTestServer({
    devices: [new MemoryBlockDevice("vol", 8 * mebibyte), new MemoryBlockDevice("other", mebibyte)],
    ...options,
  });
  return running;
}

/** A client past the greeting and flags, in option haggling. */
async function negotiating(flags: number = ClientFlag.FixedNewstyle | ClientFlag.NoZeroes) {
  const { address } = running ?? (await serve());
  const client = await TestNbdClient.connect(address);
  clients.push(client);
  await client.readGreeting();
  client.sendClientFlags(flags);
  return client;
}

/** Proves the client is still in option haggling: NBD_OPT_LIST still gets its answer. */
async function expectStillNegotiating(client: TestNbdClient): Promise<void> {
  client.sendOption(Option.List);
  const replies = await client.readOptionReplies();
  expect(replies.at(-1)?.type).toBe(OptionReply.Acknowledge);
}

describe("NBD handshake", () => {
  test("the greeting is NBDMAGIC, IHAVEOPT and the fixed-newstyle and no-zeroes flags", async () => {
    const { address } = await serve();
    const client = await TestNbdClient.connect(address);
    clients.push(client);
    expect(await client.readGreeting()).toEqual({
      magic: "NBDMAGIC",
      option: "IHAVEOPT",
      handshakeFlags: 0b11,
    });
  });

  test("a client flag the server does not know closes the connection", async () => {
    const client = await negotiating(ClientFlag.FixedNewstyle | 0b100);
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
  });

  test("NBD_OPT_GO describes the export, sends block sizes, and enters transmission", async () => {
    const client = await negotiating();
    const description = await client.information(Option.Go, "vol", [Information.BlockSize]);
    expect(description?.sizeBytes).toBe(8 * mebibyte);
    expect(description?.transmissionFlags).toBe(
      TransmissionFlag.HasFlags |
        TransmissionFlag.SendFlush |
        TransmissionFlag.SendForceUnitAccess |
        TransmissionFlag.SendTrim |
        TransmissionFlag.SendWriteZeroes |
        TransmissionFlag.CanMultipleConnections,
    );
    expect(description?.blockSizes).toEqual({
      minimumBytes: 512,
      preferredBytes: 4096,
      maximumBytes: 32 * mebibyte,
    });
    const reply = await client.roundTrip({ command: Command.Read, handle: 7n, length: 512 });
    expect(reply).toMatchObject({ error: 0, handle: 7n });
    expect(reply.data.byteLength).toBe(512);
  });

  test("block sizes are sent even when the client did not ask for them", async () => {
    const client = await negotiating();
    const description = await client.information(Option.Go, "vol", []);
    expect(description?.blockSizes?.minimumBytes).toBe(512);
  });

  test("NBD_OPT_INFO answers NAME and DESCRIPTION when asked, and stays in the handshake", async () => {
    const client = await negotiating();
    const description = await client.information(Option.Info, "vol", [
      Information.Name,
      Information.Description,
      0x7fff, // unknown information types are ignored
    ]);
    expect(description?.sizeBytes).toBe(8 * mebibyte);
    expect(description?.name).toBe("vol");
    expect(description?.description).toBe("Ballast volume vol");
    await expectStillNegotiating(client);
  });

  test("NAME and DESCRIPTION are not sent unless asked for", async () => {
    const client = await negotiating();
    const description = await client.information(Option.Info, "vol", []);
    expect(description?.name).toBeUndefined();
    expect(description?.description).toBeUndefined();
  });

  test("NBD_OPT_GO for an unknown export is NBD_REP_ERR_UNKNOWN, and the client may try again", async () => {
    const client = await negotiating();
    expect(await client.information(Option.Go, "missing", [])).toBeUndefined();
    expect(client.lastReplies).toHaveLength(1);
    expect(client.lastReplies[0]?.type).toBe(OptionReply.ErrorUnknown);
    expect(client.lastReplies[0]?.data.toString()).toContain('no export named "missing"');
    expect((await client.information(Option.Go, "other", []))?.sizeBytes).toBe(mebibyte);
  });

  test("an export lookup that throws is NBD_REP_ERR_UNKNOWN with the reason", async () => {
    await serve({
      openExport: async () => {
        throw new BallastError(ErrorCode.Unavailable, "the coordinator is unreachable");
      },
    });
    const client = await negotiating();
    expect(await client.information(Option.Info, "vol", [])).toBeUndefined();
    expect(client.lastReplies[0]?.type).toBe(OptionReply.ErrorUnknown);
    expect(client.lastReplies[0]?.data.toString()).toContain("the coordinator is unreachable");
    await expectStillNegotiating(client);
  });

  test("NBD_OPT_EXPORT_NAME answers size, flags and 124 zero bytes without NO_ZEROES", async () => {
    const client = await negotiating(ClientFlag.FixedNewstyle);
    client.sendOption(Option.ExportName, Buffer.from("vol"));
    const reply = await client.readBytes(134);
    expect(reply.readBigUInt64BE(0)).toBe(BigInt(8 * mebibyte));
    expect(reply.readUInt16BE(8) & TransmissionFlag.HasFlags).toBe(1);
    expect(reply.subarray(10).every((byte) => byte === 0)).toBe(true);
    // Exactly 134 bytes: the next thing on the wire is the reply to our request.
    const read = await client.roundTrip({ command: Command.Read, handle: 1n, length: 512 });
    expect(read.error).toBe(0);
  });

  test("NBD_OPT_EXPORT_NAME after NBD_FLAG_C_NO_ZEROES answers without padding", async () => {
    const client = await negotiating(ClientFlag.FixedNewstyle | ClientFlag.NoZeroes);
    client.sendOption(Option.ExportName, Buffer.from("other"));
    const reply = await client.readBytes(10);
    expect(reply.readBigUInt64BE(0)).toBe(BigInt(mebibyte));
    const read = await client.roundTrip({ command: Command.Read, handle: 2n, length: 512 });
    expect(read).toMatchObject({ error: 0, handle: 2n });
    expect(client.unreadBytes).toBe(0);
  });

  test("NBD_OPT_EXPORT_NAME for an unknown export closes the connection", async () => {
    const client = await negotiating();
    client.sendOption(Option.ExportName, Buffer.from("missing"));
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
    expect(client.unreadBytes).toBe(0);
  });

  test("a client without the fixed-newstyle flag may still use options", async () => {
    const client = await negotiating(0);
    expect((await client.information(Option.Go, "vol", []))?.sizeBytes).toBe(8 * mebibyte);
  });

  test("NBD_OPT_LIST names every export, then acknowledges", async () => {
    const client = await negotiating();
    client.sendOption(Option.List);
    const replies = await client.readOptionReplies();
    expect(replies.map((reply) => reply.type)).toEqual([
      OptionReply.Server,
      OptionReply.Server,
      OptionReply.Acknowledge,
    ]);
    const names = replies.slice(0, 2).map((reply) => {
      const length = reply.data.readUInt32BE(0);
      expect(reply.data.byteLength).toBe(4 + length);
      return reply.data.subarray(4).toString();
    });
    expect(names).toEqual(["vol", "other"]);
  });

  test("NBD_OPT_LIST with data is NBD_REP_ERR_INVALID", async () => {
    const client = await negotiating();
    client.sendOption(Option.List, Buffer.from("x"));
    expect((await client.readOptionReply()).type).toBe(OptionReply.ErrorInvalid);
    await expectStillNegotiating(client);
  });

  test("more exports than exportsListedMax is NBD_REP_ERR_TOO_BIG", async () => {
    await serve({ limits: { exportsListedMax: 1 } });
    const client = await negotiating();
    client.sendOption(Option.List);
    const replies = await client.readOptionReplies();
    expect(replies.map((reply) => reply.type)).toEqual([OptionReply.ErrorTooBig]);
  });

  test("a failing export list is an error reply, and negotiation goes on", async () => {
    await serve({
      listExports: async () => {
        throw new Error("catalogue unavailable");
      },
    });
    const client = await negotiating();
    client.sendOption(Option.List);
    const reply = await client.readOptionReply();
    expect(reply.type).toBe(OptionReply.ErrorPlatform);
    expect(reply.data.toString()).toContain("catalogue unavailable");
    expect((await client.information(Option.Go, "vol", []))?.sizeBytes).toBe(8 * mebibyte);
  });

  test("NBD_OPT_ABORT is acknowledged, then the server closes", async () => {
    const client = await negotiating();
    client.sendOption(Option.Abort);
    const reply = await client.readOptionReply();
    expect(reply).toMatchObject({ option: Option.Abort, type: OptionReply.Acknowledge });
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
  });

  test("structured replies, TLS, metadata contexts and unknown options are NBD_REP_ERR_UNSUP", async () => {
    const client = await negotiating();
    const refused = [
      Option.StructuredReply,
      Option.StartTls,
      Option.ListMetaContext,
      Option.SetMetaContext,
      4, // NBD_OPT_PEEK_EXPORT, withdrawn
      99,
    ];
    for (const option of refused) {
      client.sendOption(option, Buffer.from("some data the server must skip"));
      expect(await client.readOptionReply()).toMatchObject({
        option,
        type: OptionReply.ErrorUnsupported,
      });
    }
    expect((await client.information(Option.Go, "vol", []))?.sizeBytes).toBe(8 * mebibyte);
  });

  test("NBD_OPT_GO with malformed data is NBD_REP_ERR_INVALID, and negotiation goes on", async () => {
    const client = await negotiating();
    const good = TestNbdClient.exportRequestData("vol", [Information.BlockSize]);
    const nameTooLong = Buffer.from(good);
    nameTooLong.writeUInt32BE(100, 0);
    const countTooLarge = Buffer.from(good);
    countTooLarge.writeUInt16BE(2, 4 + 3);
    const notUtf8 = TestNbdClient.exportRequestData("vol", []);
    notUtf8[4] = 0xff;
    const withNul = TestNbdClient.exportRequestData("v\0l", []);
    for (const data of [
      Buffer.alloc(3),
      nameTooLong,
      countTooLarge,
      Buffer.concat([good, Buffer.alloc(1)]),
      notUtf8,
      withNul,
    ]) {
      client.sendOption(Option.Go, data);
      expect((await client.readOptionReply()).type).toBe(OptionReply.ErrorInvalid);
    }
    await expectStillNegotiating(client);
  });

  test("an option longer than optionBytesMax closes the connection without reading it", async () => {
    const client = await negotiating();
    client.sendOption(Option.Go, new Uint8Array(0), 1024 * mebibyte);
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
  });

  test("a bad option magic closes the connection", async () => {
    const client = await negotiating();
    client.write(Buffer.from("IHAVEOPX\0\0\0\x03\0\0\0\0", "latin1"));
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
  });

  test("an export name that is not valid UTF-8 closes the connection", async () => {
    const client = await negotiating();
    client.sendOption(Option.ExportName, Buffer.from([0xc3, 0x28]));
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
  });

  test("a client that does not finish the handshake in time is disconnected", async () => {
    const { server } = await serve({ limits: { handshakeDeadlineMs: 100 } });
    const client = await negotiating();
    expect(await client.isClosedWithin(closeWaitMs)).toBe(true);
    await waitUntil(() => server.connectionCount === 0, "the server forgets the connection");
  });

  test("a finished handshake is not subject to the deadline", async () => {
    await serve({ limits: { handshakeDeadlineMs: 100 } });
    const client = await negotiating();
    await client.information(Option.Go, "vol", []);
    expect(await client.isClosedWithin(300)).toBe(false);
    const read = await client.roundTrip({ command: Command.Read, handle: 1n, length: 512 });
    expect(read.error).toBe(0);
  });
});
