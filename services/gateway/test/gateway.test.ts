// The gateway's exports over a fake cluster: one shared Volume per name, and a volume
// deleted and created again under its name while served. The connection that had the
// old volume keeps failing (its disk is gone, and the new volume's bytes are not its
// own); a new connection opens the new volume, the very first one too, even when
// nothing on the old Volume had found the deletion. A new connection sees a resize that
// answered before it, even while a describe read before the resize is in flight. A
// Volume lives while connections hold it: the last one to end closes it, one opening
// meanwhile keeps it open, and an NBD_OPT_INFO gives it back at once. Told of a shrink
// (gateway.volume.shrunk.v1), the shared Volume learns the new end at once.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Volume } from "@ballast/client";

import { NbdServer } from "@ballast/nbd";
import { ClientFlag, Command, Option, OptionReply, ReplyError } from "@ballast/nbd/wire";
import { ErrorCode, type MessageOf, type RequestType, type ResultOf } from "@ballast/protocol";
import {
  createLogger,
  type Meter,
  type RequestOptions,
  type Service,
  startTelemetry,
} from "@ballast/runtime";

import { afterEach, describe, expect, test, vi } from "vitest";
import { FakeClusterBus } from "../../../packages/client/test/fake-cluster-bus.ts";
import { TestNbdClient } from "../../../packages/nbd/test/nbd-test-client.ts";
import { patterned } from "../../../packages/nbd/test/nbd-test-server.ts";
import {
  exportListOf,
  exportListProblem,
  isLoopbackAddress,
  nbdExposureWarning,
} from "../src/exposure.ts";
import { Gateway } from "../src/gateway.ts";

const mebibyte = 1024 * 1024;
const spec = { name: "vol", sizeBytes: mebibyte, partitionBytes: mebibyte };

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * Starts a Gateway on 127.0.0.1 over `bus`, with the few parts of a Service it uses;
 * with `logFile`, its warnings and errors go there (for a test to read what it said).
 */
async function startGateway(
  bus: FakeClusterBus,
  logFile?: string,
  meter?: Meter,
  options: { nbdExports?: string } = {},
): Promise<{
  port: number;
  describe: () => Record<string, unknown>;
  inbox: (message: unknown) => unknown;
}> {
  const closers: (() => Promise<void>)[] = [];
  let describe: () => Record<string, unknown> = () => ({});
  // What the gateway answers on its node inbox (none before it serves one).
  let inbox: (message: unknown) => unknown = () => undefined;
  const service = {
    bus,
    logger: createLogger({
      service: "gateway",
      nodeId: "test",
      ...(logFile === undefined
        ? { level: "silent" as const }
        : { level: "warn" as const, destination: logFile }),
    }),
    serveInbox: (_accept: unknown, dispatch: (message: unknown) => unknown) => {
      inbox = dispatch;
    },
    setDescription: (describer: () => Record<string, unknown>) => {
      describe = describer;
    },
    onClose: (closer: () => Promise<void>) => closers.push(closer),
    ...(meter === undefined ? {} : { meter }),
  } as unknown as Service;
  const config = { nbdHost: "127.0.0.1", nbdPort: 0, ...options } as ConstructorParameters<
    typeof Gateway
  >[1];
  await new Gateway(service, config).start();
  cleanups.push(async () => {
    for (const close of closers) await close();
  });
  const address = String(describe().nbd);
  return {
    port: Number(address.slice(address.lastIndexOf(":") + 1)),
    describe: () => describe(),
    inbox: (message) => inbox(message),
  };
}

async function connect(address: { port: number }): Promise<TestNbdClient> {
  return (await connectWithSize(address)).client;
}

/** A connection to the export, and the size the gateway gave it. */
async function connectWithSize(address: {
  port: number;
}): Promise<{ client: TestNbdClient; sizeBytes: number }> {
  const { client, export: description } = await TestNbdClient.open(address, spec.name);
  cleanups.push(() => client.destroy());
  return { client, sizeBytes: description.sizeBytes };
}

/** A file for the gateway's log, removed after the test. */
async function logFileForTest(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), "ballast-gateway-log-"));
  cleanups.push(() => rm(directory, { recursive: true, force: true }));
  return join(directory, "gateway.log");
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address !== null ? address.port : 0;
}

const isZeroes = (data: Uint8Array) => data.every((byte) => byte === 0);

/** Polls `condition` every few milliseconds; fails the test after `timeoutMs`. */
async function eventually(condition: () => boolean, what: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) expect.fail(`gave up after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
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

    // The old Volume's request names incarnation vol-1; the fake refuses it as a head
    // node does, and the describe that follows finds the volume deleted.
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
  test("the first connection after a delete and create while idle opens the new volume", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const address = await startGateway(fake);
    // The export is opened once and the connection closed (the gateway once kept its
    // Volume then; it closes it now, and either way the next connection must work).
    const first = await connect(address);
    const written = patterned(4096, 2);
    expect(
      (await first.roundTrip({ command: Command.Write, handle: 1n, offset: 0, data: written }))
        .error,
    ).toBe(0);
    first.destroy();
    await first.closed;

    // Deleted and created again, larger, with no I/O on the kept Volume since: nothing
    // but the next connection's describe can find the deletion.
    fake.deleteVolume(spec.name);
    fake.createVolume({ ...spec, id: "vol-2", sizeBytes: 2 * mebibyte });

    const { client: fresh, sizeBytes } = await connectWithSize(address);
    expect(sizeBytes).toBe(2 * mebibyte);
    const read = await fresh.roundTrip({ command: Command.Read, handle: 2n, length: 4096 });
    expect(read.error).toBe(0);
    expect(isZeroes(read.data)).toBe(true);
  });

  test("a connection held across the delete and create fails clearly; the first new one opens the new volume", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const logFile = await logFileForTest();
    const address = await startGateway(fake, logFile);
    const old = await connect(address);
    const written = patterned(4096, 3);
    expect(
      (await old.roundTrip({ command: Command.Write, handle: 1n, offset: 0, data: written })).error,
    ).toBe(0);

    fake.deleteVolume(spec.name);
    fake.createVolume({ ...spec, id: "vol-2", sizeBytes: 2 * mebibyte });

    const { client: fresh, sizeBytes } = await connectWithSize(address);
    expect(sizeBytes).toBe(2 * mebibyte);
    // The old connection's disk is gone: its reads and writes fail, and its write never
    // reaches the new volume.
    const read = await old.roundTrip({ command: Command.Read, handle: 2n, length: 4096 });
    expect(read.error).toBe(ReplyError.InputOutput);
    const write = await old.roundTrip({
      command: Command.Write,
      handle: 3n,
      offset: 4096,
      data: written,
    });
    expect(write.error).toBe(ReplyError.InputOutput);
    const after = await fresh.roundTrip({ command: Command.Read, handle: 4n, length: 8192 });
    expect(after.error).toBe(0);
    expect(isZeroes(after.data)).toBe(true);
    // And the gateway says why: the volume was deleted, not that something closed it.
    const failures = (await readFile(logFile, "utf8"))
      .split("\n")
      .filter((line) => line.includes('"request failed"'));
    expect(failures).toHaveLength(2);
    for (const line of failures) {
      expect(line).toContain("was deleted while open");
      expect(line).not.toContain("the volume is closed");
    }
  });

  test("a client reconnecting while its volume's size cannot be learned: one warning, not one a connection", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const logFile = await logFileForTest();
    const address = await startGateway(fake, logFile);
    // Held, so that each new connection shares its Volume and describes it again.
    await connect(address);
    fake.failDescribes(12, ErrorCode.Unavailable);
    for (let attempt = 0; attempt < 12; attempt++) {
      const { client, sizeBytes } = await connectWithSize(address);
      expect(sizeBytes).toBe(spec.sizeBytes);
      client.destroy();
      await client.closed;
    }
    const warned = (await readFile(logFile, "utf8"))
      .split("\n")
      .filter((line) => line.includes("could not learn the volume's current size"));
    // Old: a warning per connection (12).
    expect(warned).toHaveLength(1);
  });

  test("a new connection sees a grow that answered while a describe read before it was in flight", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const address = await startGateway(fake);
    const old = await connect(address);
    // A failover makes the old connection's read describe the volume; the fake cluster
    // reads its catalogue for that describe now, and holds the answer back.
    fake.failover(spec.name, 0);
    fake.holdReplies((_, message) => message.type === "volume.describe.v1");
    const oldRead = old.roundTrip({ command: Command.Read, handle: 1n, length: 4096 });
    await eventually(() => fake.held === 1, "the failover's describe is in flight");

    // The grow answers (to whoever asked for it) before the next connection arrives.
    fake.resizeVolume(spec.name, 3 * mebibyte);
    const refreshes = vi.spyOn(Volume.prototype, "refreshSize");
    cleanups.push(() => refreshes.mockRestore());
    const opening = connectWithSize(address);
    // The new connection has asked the shared Volume for its size; only then does the
    // describe from before the grow answer.
    await eventually(() => refreshes.mock.calls.length === 1, "the new connection refreshes");
    fake.resume();

    const [opened, read] = await Promise.all([opening, oldRead]);
    expect(opened.sizeBytes).toBe(3 * mebibyte);
    expect(read.error).toBe(0);
  });
  test("told of a shrink, the shared Volume learns the new end: an old connection's write past it is NBD_ENOSPC", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1", sizeBytes: 2 * mebibyte }]);
    const address = await startGateway(fake);
    const { client: old, sizeBytes } = await connectWithSize(address);
    expect(sizeBytes).toBe(2 * mebibyte);
    const data = new Uint8Array(4096).fill(7);
    const write = (handle: bigint, offset: number) =>
      old.roundTrip({ command: Command.Write, handle, offset, data });
    expect((await write(1n, mebibyte + 4096)).error).toBe(0);

    fake.resizeVolume(spec.name, mebibyte);
    // Not told: the shared Volume still has the old size, and the write lands past the
    // end (on a real cluster, where the next grow trims it).
    expect((await write(2n, mebibyte + 4096)).error).toBe(0);
    expect(await address.inbox({ type: "gateway.volume.shrunk.v1", volume: spec.name })).toEqual({
      open: true,
      sizeBytes: mebibyte,
    });
    expect((await write(3n, mebibyte + 4096)).error).toBe(ReplyError.NoSpace);
    expect((await write(4n, 0)).error).toBe(0);
    // A volume no connection holds: nothing to tell.
    expect(await address.inbox({ type: "gateway.volume.shrunk.v1", volume: "other" })).toEqual({
      open: false,
    });
  });

  test("told of a shrink, the gateway answers only once the writes begun before have settled", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1", sizeBytes: 2 * mebibyte }]);
    const address = await startGateway(fake);
    const old = await connect(address);
    const other = await connect(address);
    // A write past the coming end, begun before the shrink: its reply held on the way.
    fake.pause((_, message) => message.type === "volume.write.v1");
    const data = new Uint8Array(4096).fill(9);
    const writing = old.roundTrip({ command: Command.Write, handle: 1n, offset: mebibyte, data });
    await eventually(() => fake.held === 1, "the write is on its way");
    fake.resizeVolume(spec.name, mebibyte);
    let answered = false;
    const telling = Promise.resolve(
      address.inbox({ type: "gateway.volume.shrunk.v1", volume: spec.name }),
    ).then((answer) => {
      answered = true;
      return answer;
    });
    // The new end is learned (another connection's read past it is refused, NBD_EINVAL),
    // and the answer still waits for the write.
    const readPast = () =>
      other.roundTrip({ command: Command.Read, handle: 2n, offset: mebibyte, length: 4096 });
    let refused = false;
    for (let attempt = 0; attempt < 1000 && !refused; attempt++) {
      refused = (await readPast()).error === ReplyError.InvalidArgument;
    }
    expect(refused).toBe(true);
    expect(answered).toBe(false);
    fake.resume();
    expect((await writing).error).toBe(0);
    expect(await telling).toEqual({ open: true, sizeBytes: mebibyte });
  });

  test("keeps no Volume for an export once its last connection is gone, and closes it", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const address = await startGateway(fake);
    const closes = vi.spyOn(Volume.prototype, "close");
    cleanups.push(() => closes.mockRestore());
    const exports = () => address.describe().exports;

    const first = await connect(address);
    const second = await connect(address);
    expect(exports()).toEqual([spec.name]);
    first.destroy();
    await first.closed;
    // One connection still holds the Volume.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(exports()).toEqual([spec.name]);
    expect(closes).not.toHaveBeenCalled();

    second.destroy();
    await second.closed;
    await eventually(() => (exports() as string[]).length === 0, "the export's Volume is let go");
    expect(closes).toHaveBeenCalledTimes(1);

    // NBD_OPT_INFO describes the export and gives its Volume back at once.
    const asking = await TestNbdClient.connect(address);
    cleanups.push(() => asking.destroy());
    await asking.readGreeting();
    asking.sendClientFlags(ClientFlag.FixedNewstyle | ClientFlag.NoZeroes);
    expect((await asking.information(Option.Info, spec.name, []))?.sizeBytes).toBe(mebibyte);
    await eventually(() => (exports() as string[]).length === 0, "the described Volume is let go");
    expect(closes).toHaveBeenCalledTimes(2);
  });

  test("a connection opening while the last one ends keeps the Volume open, not closed under it", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const address = await startGateway(fake);
    const first = await connect(address);
    // The next connection finds the shared Volume and describes it again; the describe
    // is held while the only other connection ends.
    fake.holdReplies((_, message) => message.type === "volume.describe.v1");
    const opening = connectWithSize(address);
    await eventually(() => fake.held === 1, "the new connection's describe is in flight");
    first.destroy();
    await first.closed;
    await new Promise((resolve) => setTimeout(resolve, 20));
    fake.resume();

    const { client } = await opening;
    const data = patterned(4096, 7);
    expect((await client.roundTrip({ command: Command.Write, handle: 1n, data })).error).toBe(0);
    const read = await client.roundTrip({ command: Command.Read, handle: 2n, length: 4096 });
    expect(read.error).toBe(0);
    expect(Buffer.from(read.data).equals(data)).toBe(true);
    expect(address.describe().exports).toEqual([spec.name]);
  });

  test("a Volume found deleted is closed when the last connection holding it ends", async () => {
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const address = await startGateway(fake);
    const closed: string[] = [];
    const closes = vi.spyOn(Volume.prototype, "close").mockImplementation(async function (
      this: Volume,
    ) {
      closed.push(String(this.id));
    });
    cleanups.push(() => closes.mockRestore());
    const old = await connect(address);
    fake.deleteVolume(spec.name);
    fake.createVolume({ ...spec, id: "vol-2" });
    const fresh = await connect(address);
    // The old connection still holds the deleted Volume: its I/O fails as deleted.
    expect((await old.roundTrip({ command: Command.Read, handle: 1n, length: 4096 })).error).toBe(
      ReplyError.InputOutput,
    );
    expect(closed).toEqual([]);
    old.destroy();
    await old.closed;
    await eventually(() => closed.length === 1, "the deleted Volume is closed");
    expect(closed).toEqual(["vol-1"]);
    fresh.destroy();
    await fresh.closed;
    await eventually(() => closed.length === 2, "the new Volume is closed");
    expect(closed).toEqual(["vol-1", "vol-2"]);
    expect(address.describe().exports).toEqual([]);
  });
  test("an export's series go from the scrape once no connection holds it", async () => {
    const telemetry = await startTelemetry({
      metricsPort: await freePort(),
      serviceName: "gateway",
      instanceId: "gateway-1",
    });
    cleanups.push(() => telemetry.shutdown());
    const scrape = async () => (await fetch(telemetry.metricsUrl as string)).text();
    const fake = new FakeClusterBus([{ ...spec, id: "vol-1" }]);
    const address = await startGateway(fake, undefined, telemetry.meter);
    const client = await connect(address);
    const data = patterned(4096, 9);
    expect((await client.roundTrip({ command: Command.Write, handle: 1n, data })).error).toBe(0);
    const text = await scrape();
    expect(text).toMatch(
      /^ballast_gateway_requests_total\{volume="vol",operation="write"[^}]*\} 1$/m,
    );
    expect(text).toMatch(
      /^ballast_gateway_bytes_total\{volume="vol",operation="write"[^}]*\} 4096$/m,
    );
    expect(text).toMatch(/^ballast_gateway_request_seconds_count\{volume="vol",operation="write"/m);

    client.destroy();
    await client.closed;
    await eventually(
      () => (address.describe().exports as string[]).length === 0,
      "the export is let go",
    );
    expect(await scrape()).not.toContain('volume="vol"');
  });
});

describe("exposure", () => {
  test("loopback addresses, however spelled, are this host's only; any other is reachable", () => {
    for (const address of [
      "127.0.0.1",
      "127.3.2.1",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.1",
      "localhost",
      " LOCALHOST ",
    ]) {
      expect(isLoopbackAddress(address), address).toBe(true);
      expect(nbdExposureWarning(address, "x")).toBeUndefined();
    }
    for (const address of [
      "0.0.0.0",
      "::",
      "10.0.0.5",
      "192.168.1.20",
      "128.0.0.1",
      "::ffff:10.0.0.5",
      "fe80::1",
      "nbd.example.com",
      "",
    ]) {
      expect(isLoopbackAddress(address), address).toBe(false);
      expect(nbdExposureWarning(address, `${address}:10809`)).toMatch(
        /can be reached from other hosts, and NBD has no access control/,
      );
    }
  });

  test("a gateway on loopback says nothing; one bound where others reach it warns in its log and on stderr", async () => {
    const directory = await mkdtemp(join(tmpdir(), "ballast-gateway-exposure-"));
    cleanups.push(() => rm(directory, { recursive: true, force: true }));
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    cleanups.push(() => stderr.mockRestore());
    const quiet = join(directory, "loopback.log");
    await startGateway(new FakeClusterBus([spec]), quiet);
    expect(await readFile(quiet, "utf8")).toBe("");
    expect(stderr).not.toHaveBeenCalled();

    // Tests bind loopback only: the listener is bound there, and reported (a fake) as
    // bound to every address, as with --nbd-host 0.0.0.0.
    const listen = NbdServer.prototype.listen;
    const faked = vi.spyOn(NbdServer.prototype, "listen").mockImplementation(async function (
      this: NbdServer,
      address,
    ) {
      return { ...(await listen.call(this, address)), host: "0.0.0.0" };
    });
    cleanups.push(() => faked.mockRestore());
    const loud = join(directory, "everywhere.log");
    await startGateway(new FakeClusterBus([spec]), loud);
    const warned = (await readFile(loud, "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, boundTo: "0.0.0.0" });
    expect(warned[0].msg).toMatch(
      /^NBD on 127\.0\.0\.1:\d+ can be reached from other hosts, and NBD has no access control/,
    );
    expect(stderr).toHaveBeenCalledTimes(1);
    expect(String(stderr.mock.calls[0]?.[0])).toMatch(
      /^ballast gateway: warning: NBD on .* no access control: anyone who connects can read and write every volume/,
    );
  });
});

/**
 * The fake cluster, also answering the catalogue listings an NBD_OPT_LIST asks for: its
 * volumes, each with one snapshot `daily`.
 */
class ListingClusterBus extends FakeClusterBus {
  constructor(private readonly names: readonly string[]) {
    super(names.map((name) => ({ ...spec, name })));
  }

  override request<T extends RequestType>(
    subject: string,
    message: MessageOf<T>,
    options?: RequestOptions,
  ): Promise<ResultOf<T>> {
    const { type } = message as { type: string };
    if (type === "volume.list.v1") {
      return Promise.resolve({ volumes: this.names.map((name) => ({ name })) } as ResultOf<T>);
    }
    if (type === "snapshot.list.v1") {
      return Promise.resolve({ snapshots: [{ name: "daily" }] } as unknown as ResultOf<T>);
    }
    return super.request(subject, message, options);
  }
}

/** The names an NBD_OPT_LIST on a new connection gets. */
async function listedExports(address: { port: number }): Promise<string[]> {
  const client = await TestNbdClient.connect(address);
  cleanups.push(() => client.destroy());
  await client.readGreeting();
  client.sendClientFlags(ClientFlag.FixedNewstyle | ClientFlag.NoZeroes);
  client.sendOption(Option.List);
  const replies = await client.readOptionReplies();
  return replies.slice(0, -1).map((reply) => reply.data.subarray(4).toString());
}

describe("--nbd-exports", () => {
  test("serves and lists only the volumes named, with their snapshots; any other is an unknown export", async () => {
    const everything = await startGateway(new ListingClusterBus(["vol", "other"]));
    expect(await listedExports(everything)).toEqual(["vol", "vol@daily", "other", "other@daily"]);

    const narrowed = await startGateway(
      new ListingClusterBus(["vol", "other"]),
      undefined,
      undefined,
      {
        nbdExports: "vol",
      },
    );
    expect(await listedExports(narrowed)).toEqual(["vol", "vol@daily"]);
    const served = await connectWithSize(narrowed);
    expect(served.sizeBytes).toBe(spec.sizeBytes);
    // The volume exists, and so does its snapshot: to this gateway both are unknown.
    for (const name of ["other", "other@daily"]) {
      const client = await TestNbdClient.connect(narrowed);
      cleanups.push(() => client.destroy());
      await client.readGreeting();
      client.sendClientFlags(ClientFlag.FixedNewstyle | ClientFlag.NoZeroes);
      expect(await client.information(Option.Go, name, []), name).toBeUndefined();
      expect(client.lastReplies.at(-1)?.type, name).toBe(OptionReply.ErrorUnknown);
    }
  });

  test("a value that names no volume is refused with the names at fault", () => {
    expect(exportListOf(" vol , other,, ")).toEqual(["vol", "other"]);
    expect(exportListProblem("vol,other")).toBeUndefined();
    expect(exportListProblem(" , ")).toMatch(/must name at least one volume/);
    expect(exportListProblem("vol,Other,vol@daily")).toBe(
      'must be volume names separated by commas (a snapshot is served with its volume); not volume names: "Other", "vol@daily"',
    );
  });
});
