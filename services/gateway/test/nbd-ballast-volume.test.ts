// The NBD server over a real client-library Volume on the client's fake cluster bus:
// what NBD_CMD_FLUSH and NBD_CMD_FLAG_FUA cost and wait for once requests reach head
// nodes, and that a failover (with the coordinator's listing showing the partition
// twice, a primary refusing reads without a lease, the coordinator failing over too)
// reaches an NBD client as latency, never as NBD_EIO.

import { BallastClient, type Volume } from "@ballast/client";
import { Command, CommandFlag } from "@ballast/nbd/wire";
import { ErrorCode } from "@ballast/protocol";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClusterBus } from "../../../packages/client/test/fake-cluster-bus.ts";
import { VirtualClock } from "../../../packages/client/test/helpers.ts";
import { TestNbdClient } from "../../../packages/nbd/test/nbd-test-client.ts";
import {
  patterned,
  startTestServer,
  type TestServer,
  waitUntil,
} from "../../../packages/nbd/test/nbd-test-server.ts";

const mebibyte = 1024 * 1024;
const spec = { name: "vol", sizeBytes: 3 * mebibyte, partitionBytes: mebibyte };

let running: TestServer | undefined;
const clients: TestNbdClient[] = [];
let fake: FakeClusterBus | undefined;

afterEach(async () => {
  fake?.resume();
  fake = undefined;
  for (const client of clients.splice(0)) client.destroy();
  await running?.server.close();
  running = undefined;
});

/** Serves one Volume on a fake cluster; retry delays pass at once on a virtual clock. */
async function serveVolume(): Promise<{ fake: FakeClusterBus; volume: Volume }> {
  fake = new FakeClusterBus([spec]);
  const clock = new VirtualClock();
  fake.elapse = (ms) => {
    clock.nowMsValue += ms;
  };
  const volume = await new BallastClient(fake, { clock, random: () => 0.5 }).openVolume(spec.name);
  running = await startTestServer({ devices: [volume] });
  return { fake, volume };
}

async function connect(): Promise<TestNbdClient> {
  const { client } = await TestNbdClient.open(running!.address, spec.name);
  clients.push(client);
  return client;
}

describe("NBD over a Ballast volume", () => {
  test("FLUSH on one connection waits for a write in flight on another, and sends no flush", async () => {
    const { fake } = await serveVolume();
    const writer = await connect();
    const flusher = await connect();
    fake.pause((_, message) => message.type === "volume.write.v1");
    writer.sendRequest({ command: Command.Write, handle: 1n, offset: 0, data: patterned(4096, 1) });
    await waitUntil(() => fake.held === 1, "the write is held");

    flusher.sendRequest({ command: Command.Flush, handle: 2n });
    await expect(flusher.readReply(200)).rejects.toThrow(/timed out/);
    fake.resume();

    expect(await writer.readReply()).toMatchObject({ error: 0, handle: 1n });
    expect(await flusher.readReply()).toMatchObject({ error: 0, handle: 2n });
    expect(fake.requestsOf("volume.flush.v1")).toEqual([]);
  });

  test("FLUSH and FUA succeed while the head nodes cannot flush to sleds", async () => {
    const { fake } = await serveVolume();
    // As with fewer live sleds than a chunk needs copies: every flush to sleds fails.
    for (const partition of [0, 1, 2]) {
      fake.failNext(spec.name, partition, Number.POSITIVE_INFINITY, ErrorCode.Unavailable, {
        types: ["volume.flush.v1"],
      });
    }
    const client = await connect();
    const fua = CommandFlag.ForceUnitAccess;

    const replies = [
      await client.roundTrip({ command: Command.Write, handle: 1n, data: patterned(4096, 2) }),
      await client.roundTrip({
        command: Command.Write,
        handle: 2n,
        flags: fua,
        offset: mebibyte,
        data: patterned(4096, 3),
      }),
      await client.roundTrip({ command: Command.Trim, handle: 3n, flags: fua, length: 4096 }),
      await client.roundTrip({
        command: Command.WriteZeroes,
        handle: 4n,
        flags: fua,
        offset: 2 * mebibyte,
        length: 4096,
      }),
      await client.roundTrip({ command: Command.Flush, handle: 5n }),
    ];

    expect(replies.map((reply) => reply.error)).toEqual([0, 0, 0, 0, 0]);
    expect(fake.requestsOf("volume.flush.v1")).toEqual([]);
    expect(Buffer.from(fake.contents(spec.name).subarray(mebibyte, mebibyte + 4096))).toEqual(
      patterned(4096, 3),
    );
  });

  test("a failover reaches the NBD client as latency, never as an error", async () => {
    const { fake } = await serveVolume();
    const client = await connect();
    const before = patterned(8192, 4);
    await client.roundTrip({ command: Command.Write, handle: 1n, offset: mebibyte, data: before });

    // Partition 1's primary freezes, then is declared dead (no responders); the
    // coordinator changes leader meanwhile; the partition fails over, the listing
    // shows it twice, and the new primary refuses reads until its lease arrives.
    fake.failNext(spec.name, 1, 2, ErrorCode.Timeout, { takesMs: 5000 });
    fake.failNext(spec.name, 1, 3, ErrorCode.Unavailable);
    fake.failNext(spec.name, 1, 2, ErrorCode.Unavailable, { types: ["volume.read.v1"] });
    fake.failDescribes(2, ErrorCode.Unavailable);
    fake.failDescribes(1, ErrorCode.Internal);
    fake.failover(spec.name, 1);
    fake.listTwiceInDescribes(spec.name, 1, "stale-first");

    const after = patterned(4096, 5);
    const write = await client.roundTrip({
      command: Command.Write,
      handle: 2n,
      offset: mebibyte + 4096,
      data: after,
    });
    const read = await client.roundTrip({
      command: Command.Read,
      handle: 3n,
      offset: mebibyte,
      length: 8192,
    });
    const flush = await client.roundTrip({ command: Command.Flush, handle: 4n });

    expect([write.error, read.error, flush.error]).toEqual([0, 0, 0]);
    expect(read.data).toEqual(Buffer.concat([before.subarray(0, 4096), after]));
    expect(fake.failuresPlanned(spec.name, 1)).toBe(0);
    expect(fake.describeFailuresPlanned).toBe(0);
    expect(fake.epochOf(spec.name, 1)).toBe(2);
  });
});
