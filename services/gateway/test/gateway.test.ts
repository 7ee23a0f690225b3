// The gateway's exports over a fake cluster: one shared Volume per name, and a volume
// deleted and created again under its name while served. The connection that had the
// old volume keeps failing (its disk is gone, and the new volume's bytes are not its
// own); a new connection opens the new volume.

import { ErrorCode } from "@ballast/protocol";
import { createLogger, type Service } from "@ballast/runtime";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClusterBus } from "../../../packages/client/test/fake-cluster-bus.ts";
import { Gateway } from "../src/gateway.ts";
import { Command, ReplyError } from "../src/nbd/wire.ts";
import { TestNbdClient } from "./nbd-test-client.ts";
import { patterned } from "./nbd-test-server.ts";

const mebibyte = 1024 * 1024;
const spec = { name: "vol", sizeBytes: mebibyte, partitionBytes: mebibyte };

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Starts a Gateway on 127.0.0.1 over `bus`, with the few parts of a Service it uses. */
async function startGateway(bus: FakeClusterBus): Promise<{ port: number }> {
  const closers: (() => Promise<void>)[] = [];
  let describe: () => Record<string, unknown> = () => ({});
  const service = {
    bus,
    logger: createLogger({ service: "gateway", nodeId: "test", level: "silent" }),
    serveInbox: () => undefined,
    setDescription: (describer: () => Record<string, unknown>) => {
      describe = describer;
    },
    onClose: (closer: () => Promise<void>) => closers.push(closer),
  } as unknown as Service;
  const config = { nbdHost: "127.0.0.1", nbdPort: 0 } as ConstructorParameters<typeof Gateway>[1];
  await new Gateway(service, config).start();
  cleanups.push(async () => {
    for (const close of closers) await close();
  });
  const address = String(describe().nbd);
  return { port: Number(address.slice(address.lastIndexOf(":") + 1)) };
}

async function connect(address: { port: number }): Promise<TestNbdClient> {
  const { client } = await TestNbdClient.open(address, spec.name);
  cleanups.push(() => client.destroy());
  return client;
}

describe("gateway", () => {
  test("serves a volume created again under a deleted one's name to new connections", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const address = await startGateway(fake);
    const old = await connect(address);
    const data = patterned(4096, 1);
    expect(
      (await old.roundTrip({ command: Command.Write, handle: 1n, offset: 0, data })).error,
    ).toBe(0);

    fake.deleteVolume(spec.name);
    fake.createVolume({ ...spec, id: "vol-2" });
    // The old Volume learns of it at its next describe (volume.* requests carry no
    // incarnation, so a refusal is what makes it describe).
    fake.failNext(spec.name, 0, 1, ErrorCode.WrongEpoch);

    // The old connection's disk is gone: its I/O fails, and never reaches the new volume.
    const refused = await old.roundTrip({ command: Command.Read, handle: 2n, length: 4096 });
    expect(refused.error).toBe(ReplyError.InputOutput);
    // A new connection gets the new, empty volume.
    const fresh = await connect(address);
    const read = await fresh.roundTrip({ command: Command.Read, handle: 3n, length: 4096 });
    expect(read.error).toBe(0);
    expect(read.data.every((byte) => byte === 0)).toBe(true);
    expect((await old.roundTrip({ command: Command.Read, handle: 4n, length: 4096 })).error).toBe(
      ReplyError.InputOutput,
    );
  });
});
