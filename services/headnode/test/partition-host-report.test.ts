// What a partition host reports for its primary after its ticks have been held back
// (held-ticks.ts): a real host on a real journal in a temporary directory, a fake service
// in place of NATS (fake-service.ts: no coordinator answers, so checkpoints are never
// recorded), fake sleds that hold every chunk they are given, and a node tick schedule
// driven by the test, as the head node drives it (tick-schedule.ts): the host is asked
// only at the tick it says it is next due, or after an input.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Service } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test } from "vitest";
import { PartitionHost } from "../src/partition-host.ts";
import type { Reply } from "../src/replica/effects.ts";
import type { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

let dataDir: string;
let host: PartitionHost;
/** The node tick now, and the node tick at which the host is next due. */
let now = 0;
let due = 0;

/** Fake sleds: every chunk and blob is held by the first two sleds it is offered to. */
const fakeSleds = {
  writeChunk: async (_owner: unknown, _id: string, _data: Uint8Array, sleds: readonly string[]) =>
    sleds.slice(0, 2),
  putBlob: async (_key: string, _data: Uint8Array, sleds: readonly string[]) => sleds.slice(0, 2),
} as unknown as SledClient;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-host-report-"));
  now = 0;
  due = 0;
  host = await PartitionHost.open(
    new FakeService() as unknown as Service,
    dataDir,
    { volume: "vol", volumeId: "vol", partition: 0, partitionStart: 0, partitionBytes: 1 << 20 },
    fakeSleds,
    1,
    undefined,
    // Flushed at once; no checkpoint of its own accord (none could be recorded anyway),
    // so that nothing but its held ticks can move its tick count once it is idle.
    { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9, checkpointIntervalOps: 1e9 },
  );
  host.attach({
    get now() {
      return now;
    },
    wake: () => {
      due = Math.min(due, now + 1);
    },
  });
  host.configure({ epoch: 1, primary: "head-1", secondaries: [] }, ["sled-1", "sled-2"]);
});

afterEach(async () => {
  await host.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** One node tick: the host is asked only if due; its I/O gets a turn after it. */
async function nodeTick(): Promise<void> {
  now++;
  if (now >= due) due = host.tick(now);
  await new Promise((resolve) => setTimeout(resolve, 1));
}

/** Node ticks until `done` holds (at most `limit`). */
async function until(done: () => boolean, limit = 2000): Promise<void> {
  for (let tick = 0; tick < limit && !done(); tick++) await nodeTick();
  expect(done()).toBe(true);
}

/** Writes one block of `fill` at offset 0 and waits until it is answered and flushed. */
async function writeFlushed(fill: number): Promise<void> {
  let answered: Reply | undefined;
  void host
    .request((requestId) => ({
      kind: "write",
      requestId,
      epoch: 1,
      writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
    }))
    .then((reply) => {
      answered = reply;
    });
  await until(
    () =>
      answered !== undefined &&
      host.replica.metadata.unflushed.size === 0 &&
      host.replica.commitOpNum === host.replica.lastOpNum,
  );
}

test("an idle primary reports the space figures of its last writes, not those before them", async () => {
  await writeFlushed(1);
  await control(() => host.snapshotControl("take", "s-1"));
  // Shared whole with the volume: deleting it would free nothing.
  expect(host.report()?.snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 0 }]);

  // An overwrite, flushed to a chunk of its own: the snapshot now holds the old block
  // alone. Within seconds of the last count, so the report may still show that one.
  await writeFlushed(2);
  // Then the volume is idle: the host is asked only when due, and its core's count
  // stands still while the node ticks on, for longer than the figures' refresh.
  // Asked at most for its looks for chunks to drop and compaction victims (within
  // dropIntervalTicks and compactionIntervalTicks, 50), which find nothing; then never.
  expect(idleFor(1000)).toBeLessThanOrEqual(3);
  const report = host.report();
  expect(report?.snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 4096 }]);
  expect(report?.liveBytes).toBe(8192);
  expect(host.status().snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 4096 }]);
});

/**
 * `ticks` node ticks of an idle host (nothing in flight, so no I/O to wait for); returns
 * how many times it was asked.
 */
function idleFor(ticks: number): number {
  let asked = 0;
  for (let tick = 0; tick < ticks; tick++) {
    now++;
    if (now < due) continue;
    asked++;
    due = host.tick(now);
  }
  return asked;
}

test("a snapshot rotation on an idle volume shows in the next report, with no write after it", async () => {
  await writeFlushed(1);
  await control(() => host.snapshotControl("take", "s-1"));
  expect(host.report()?.snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 0 }]);
  await writeFlushed(2);
  // Rotation, seconds apart at most: a new one, then the oldest deleted.
  await control(() => host.snapshotControl("take", "s-2"));
  expect(host.report()?.snapshotBytes).toEqual([
    { snapshot: "s-1", uniqueBytes: 4096 },
    { snapshot: "s-2", uniqueBytes: 0 },
  ]);
  await control(() => host.snapshotControl("drop", "s-1"));
  const report = host.report();
  expect(report?.snapshotBytes).toEqual([{ snapshot: "s-2", uniqueBytes: 0 }]);
  // The block only s-1 held is no longer live (it is freed by a later flush record).
  expect(report?.liveBytes).toBe(4096);
  // A rollback replaces the volume's tree: the snapshot shares it whole again.
  await writeFlushed(3);
  await control(() => host.rollbackSnapshot("s-2"));
  expect(host.report()).toMatchObject({
    liveBytes: 4096,
    snapshotBytes: [{ snapshot: "s-2", uniqueBytes: 0 }],
  });
});

/** Runs a snapshot control request to its answer, ticking the node meanwhile. */
async function control(run: () => Promise<unknown>): Promise<void> {
  let answered = false;
  void run().then(() => {
    answered = true;
  });
  await until(() => answered);
}
