// A replica core that throws fails that one replica, as a failed journal does, and the
// process and the node's other replicas carry on (partition-host.ts, `contain`). Real
// files in a temporary directory, a fake service in place of NATS (fake-service.ts). The
// throw is a real one: a control note whose record does not decode, sent with its
// checksum (a primary's bug, not damage on the way, which a secondary refuses before it
// journals the note), which the core's commit cannot apply. Before, the same
// throw reached through a journal completion was an unhandled rejection, which the crash
// policy turns into the end of the process and of every partition on the node; reached
// through a replication message it left the core serving with the op counted committed
// and never applied; and one from a tick ended the process from the tick timer.

import { BallastError, crc32c, ErrorCode, subjects } from "@ballast/protocol";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { Replica } from "../src/replica/replica.ts";
import { type FakeService, startHeadNode } from "./fake-service.ts";
import { TestPrimary } from "./test-primary.ts";

const partitionBytes = 1 << 20;
/** What reached the process's last resort: each would have ended it (runtime run.ts). */
const escaped: unknown[] = [];
const onEscape = (reason: unknown) => escaped.push(reason);
let service: FakeService;
let stop: () => Promise<void>;

beforeEach(async () => {
  escaped.length = 0;
  process.on("unhandledRejection", onEscape);
  process.on("uncaughtException", onEscape);
  ({ service, stop } = await startHeadNode("ballast-core-throw-"));
});

afterEach(async () => {
  await stop();
  process.off("unhandledRejection", onEscape);
  process.off("uncaughtException", onEscape);
  vi.restoreAllMocks();
});

function configure(partition: number, primary: string, secondaries: string[]) {
  return service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    partition,
    partitionStart: partition * partitionBytes,
    partitionBytes,
    epoch: 1,
    primary,
    secondaries,
    sleds: ["sled-1"],
  });
}

/** Partition 0's notes from its primary head-2: `notes` after op `previousOpNum`. */
function notes(commitOpNum: number, previousOpNum: number, notes: unknown[]) {
  return service.call(subjects.replica.build("vol", 0, "head-1"), {
    type: "replica.notes.v1",
    volume: "vol",
    partition: 0,
    epoch: 1,
    primary: "head-2",
    session: 7,
    commitOpNum,
    previousOpNum,
    previousEpoch: previousOpNum === 0 ? 0 : 1,
    previousSession: previousOpNum === 0 ? 0 : 7,
    notes,
  });
}

/** Op 1, a control note whose record (one byte, 0xc1) is no control record. */
const undecodable = new Uint8Array([0xc1]);
const damaged = {
  opNum: 1,
  epoch: 1,
  session: 7,
  kind: "control",
  offset: 0,
  length: 0,
  data: undecodable,
  checksum: crc32c(undecodable),
};

type Status = { failed?: string; commitOpNum: number; durableOpNum: number };
const status = (partition: number) =>
  service.inbox({
    type: "headnode.replica.status.v1",
    volume: "vol",
    partition,
  }) as Promise<Status>;

/** Partition 1, a lone primary here, takes a write and reads it back. */
async function partitionOneServes(fill: number): Promise<void> {
  const volume = subjects.volume.build("vol", 1);
  await service.call(volume, {
    type: "volume.write.v1",
    volume: "vol",
    partition: 1,
    epoch: 1,
    writes: [{ offset: partitionBytes, data: new Uint8Array(4096).fill(fill) }],
  });
  const { data } = (await service.call(volume, {
    type: "volume.read.v1",
    volume: "vol",
    partition: 1,
    epoch: 1,
    reads: [{ offset: partitionBytes, length: 4096 }],
  })) as { data: Uint8Array[] };
  expect(data[0]![0]).toBe(fill);
}

/** Partition 0 latched failed: no longer takes replication messages, and was reported. */
async function expectPartitionZeroFailed(): Promise<void> {
  expect((await status(0)).failed).toMatch(/the replica core threw .*; the replica stopped/s);
  await vi.waitFor(() =>
    expect(service.served.has(subjects.replica.build("vol", 0, "head-1"))).toBe(false),
  );
  expect(
    service.reports.some((report) => report.failures?.some((failed) => failed.partition === 0)),
  ).toBe(true);
}

test("a throw from a journal completion fails that replica only; the process and the other partition go on", async () => {
  await configure(0, "head-2", ["head-1"]);
  await configure(1, "head-1", []);
  await partitionOneServes(0x11);
  // The commit point already names op 1: the commit, and its throw, come with the
  // journal's completion, once the note is durable.
  await notes(1, 0, [damaged]);
  await vi.waitFor(async () => expect((await status(0)).failed).toBeDefined(), {
    timeout: 10_000,
  });
  await expectPartitionZeroFailed();
  expect((await status(0)).commitOpNum).toBe(0);
  await partitionOneServes(0x22);
  expect(escaped).toEqual([]);
});

test("a throw from a replication message fails that replica, which answers Unavailable", async () => {
  await configure(0, "head-2", ["head-1"]);
  await configure(1, "head-1", []);
  // Held durably while the commit point does not reach it yet.
  await notes(0, 0, [damaged]);
  await vi.waitFor(async () => expect((await status(0)).durableOpNum).toBe(1));
  // The commit point reaches it with the next message: the commit throws in the handler.
  const answered = await notes(1, 1, []).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(answered).toBeInstanceOf(BallastError);
  expect((answered as BallastError).code).toBe(ErrorCode.Unavailable);
  await expectPartitionZeroFailed();
  await partitionOneServes(0x33);
  expect(escaped).toEqual([]);
});

test("a throw from a tick fails that replica instead of escaping the tick", async () => {
  const primary = await TestPrimary.open("ballast-core-throw-tick-", ["sled-1", "sled-2"]);
  try {
    const { host } = primary;
    await primary.writeFlushed(0, 0x44);
    // Injected: the core's next tick, not a quiet one, throws as a broken invariant would.
    vi.spyOn(Replica.prototype, "quietTicks").mockReturnValue(0);
    vi.spyOn(Replica.prototype, "tick").mockImplementationOnce(() => {
      throw new Error("injected by the test");
    });
    primary.due = primary.now + 1;
    await primary.nodeTick();
    expect(host.failed?.message).toMatch(/the replica core threw \(Error: injected by the test\)/);
    expect(host.roleName).toBe("idle");
    expect(primary.due).toBe(Number.POSITIVE_INFINITY);
    // The failed replica refuses requests as one whose journal failed does.
    await expect(
      host.request((requestId) => ({
        kind: "flush",
        requestId,
        epoch: 1,
      })),
    ).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  } finally {
    await primary.close();
  }
});

test("a request whose effects throw is answered Unavailable, and its reply is left to no one", async () => {
  const primary = await TestPrimary.open("ballast-core-throw-request-", ["sled-1", "sled-2"]);
  try {
    const { host } = primary;
    // Injected: carrying out the request's effects throws, as a broken invariant would.
    vi.spyOn(Replica.prototype, "drainEffects").mockImplementationOnce(() => {
      throw new Error("injected by the test");
    });
    const write = (async () =>
      host.request((requestId) => ({
        kind: "write",
        requestId,
        epoch: 1,
        writes: [{ offset: 0, data: new Uint8Array(4096).fill(0x55) }],
      })))();
    await expect(write).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(host.failed?.message).toMatch(/injected by the test/);
  } finally {
    await primary.close();
  }
  await new Promise((resolve) => setImmediate(resolve));
  expect(escaped).toEqual([]);
});

test("a throw from the replicator's recordCopies fails that replica and reaches the replicator, which then logs no copy recorded", async () => {
  const primary = await TestPrimary.open("ballast-core-throw-copies-", ["sled-1", "sled-2"]);
  try {
    const { host } = primary;
    await primary.writeFlushed(0, 0x66);
    const [chunkNumber] = [...host.replica.metadata.chunks.keys()];
    expect(chunkNumber).toBeDefined();
    // No copy at all is a list the core refuses with a plain Error, a broken invariant.
    expect(() => host.replica.recordCopies(chunkNumber!, [])).toThrow(
      expect.objectContaining({ code: ErrorCode.Unavailable }),
    );
    expect(host.failed?.message).toMatch(/the replica core threw .*copies must number 1 to 8/);
  } finally {
    await primary.close();
  }
  expect(escaped).toEqual([]);
});
