// The shell's part of the checkpoint store back-off (replica.ts onCheckpointFailed): a
// real partition host (real journal and checkpoint file in a temporary directory, fake
// service) on fake sleds where sled-2 is dead, ticked by hand (a fake clock). Its
// checkpoints stay due (flushed bytes to release), yet a store, which writes a blob to
// sled-1 that the sweep then deletes, is tried a bounded number of times, not every
// checkpointRetryTicks; once sled-2 leaves the out set the next store comes at the usual
// pace and is recorded.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallastError, ErrorCode, type Message } from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test } from "vitest";
import { replicaLimitsDefault } from "../src/constants.ts";
import { PartitionHost } from "../src/partition-host.ts";
import type { Reply } from "../src/replica/effects.ts";
import type { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

let dataDir: string;
let now = 0;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-host-ckpt-backoff-"));
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

test("checkpoint stores short of a sled back off, and a sled back in service gets one stored soon", async () => {
  const state = { sled2Alive: true, stores: 0 };
  const fakeSleds = {
    writeChunk: async () => ["sled-1", "sled-2"],
    putBlob: async () => {
      state.stores++;
      if (!state.sled2Alive) {
        throw new BallastError(ErrorCode.Unavailable, "blob reached 1 of 2 sleds: sled-2 dead");
      }
      return ["sled-1", "sled-2"];
    },
    deleteBlob: async () => undefined,
  } as unknown as SledClient;
  const service = new FakeService();
  const request = service.bus.request;
  let records = 0;
  service.bus.request = async (subject: string, message?: Message) => {
    if (message?.type !== "checkpoint.record.v1") return request(subject, message);
    records++;
    return {};
  };
  const host = await PartitionHost.open(
    service as unknown as Service,
    join(dataDir, "vol-0"),
    { volume: "vol", volumeId: "vol", partition: 0, partitionStart: 0, partitionBytes: 1 << 20 },
    fakeSleds,
    1,
    undefined,
    { flushBytesThreshold: 1, checkpointIntervalTicks: 50, checkpointIntervalOps: 1e9 },
  );
  // Every `pace`th tick lets the checkpoint file's write and sync (real I/O) finish.
  const ticks = async (count: number, until: () => boolean = () => false, pace = 10) => {
    for (let tick = 0; tick < count && !until(); tick++) {
      now++;
      host.tick(now);
      await new Promise((resolve) =>
        tick % pace === 0 ? setTimeout(resolve, 2) : setImmediate(resolve),
      );
    }
  };
  try {
    host.attach({
      get now() {
        return now;
      },
      wake: () => undefined,
    });
    host.configure({ epoch: 1, primary: "head-1", secondaries: [] }, ["sled-1", "sled-2"]);
    state.sled2Alive = false;
    host.sledsOut = new Set(["sled-2"]);
    let answered: Reply | undefined;
    void host
      .request((requestId) => ({
        kind: "write",
        requestId,
        epoch: 1,
        writes: [{ offset: 0, data: new Uint8Array(4096).fill(1) }],
      }))
      .then((reply) => {
        answered = reply;
      });
    await ticks(2000, () => answered !== undefined);
    expect(answered?.kind).toBe("mutation");
    // Five simulated minutes (tickMs 20) with sled-2 dead: the old pace was a store every
    // checkpointRetryTicks (2 s), 150 in all.
    await ticks(5 * 3000);
    expect(state.stores).toBeGreaterThan(0);
    expect(state.stores).toBeLessThanOrEqual(10);
    expect(records).toBe(0);

    // Just after a failed store (the next one is checkpointStoreRetryTicksMax away),
    // sled-2 is back in service: stored and recorded well before that (the core takes it
    // checkpointRetryTicks after the last; the rest is the real file write's time).
    const failed = state.stores;
    await ticks(replicaLimitsDefault.checkpointStoreRetryTicksMax, () => state.stores > failed);
    state.sled2Alive = true;
    const before = state.stores;
    host.sledsOut = new Set();
    await ticks(replicaLimitsDefault.checkpointStoreRetryTicksMax / 3, () => records > 0, 1);
    expect(state.stores).toBe(before + 1);
    expect(records).toBe(1);
  } finally {
    await host.close();
  }
});

test("a sled that answers again before it was ever declared out gets a store soon too", async () => {
  const state = { sled2Alive: true, stores: 0 };
  const fakeSleds = {
    writeChunk: async () => ["sled-1", "sled-2"],
    putBlob: async () => {
      state.stores++;
      if (!state.sled2Alive) {
        throw new BallastError(ErrorCode.Unavailable, "blob reached 1 of 2 sleds: sled-2 dead");
      }
      return ["sled-1", "sled-2"];
    },
    deleteBlob: async () => undefined,
  } as unknown as SledClient;
  const service = new FakeService();
  const request = service.bus.request;
  let records = 0;
  service.bus.request = async (subject: string, message?: Message) => {
    if (message?.type !== "checkpoint.record.v1") return request(subject, message);
    records++;
    return {};
  };
  const host = await PartitionHost.open(
    service as unknown as Service,
    join(dataDir, "vol-0"),
    { volume: "vol", volumeId: "vol", partition: 0, partitionStart: 0, partitionBytes: 1 << 20 },
    fakeSleds,
    1,
    undefined,
    { flushBytesThreshold: 1, checkpointIntervalTicks: 50, checkpointIntervalOps: 1e9 },
  );
  const ticks = async (count: number, until: () => boolean = () => false, pace = 10) => {
    for (let tick = 0; tick < count && !until(); tick++) {
      now++;
      host.tick(now);
      await new Promise((resolve) =>
        tick % pace === 0 ? setTimeout(resolve, 2) : setImmediate(resolve),
      );
    }
  };
  try {
    host.attach({
      get now() {
        return now;
      },
      wake: () => undefined,
    });
    host.configure({ epoch: 1, primary: "head-1", secondaries: [] }, ["sled-1", "sled-2"]);
    // sled-2 dies and comes back before the coordinator declares it out: the out set
    // never changes.
    state.sled2Alive = false;
    let answered: Reply | undefined;
    void host
      .request((requestId) => ({
        kind: "write",
        requestId,
        epoch: 1,
        writes: [{ offset: 0, data: new Uint8Array(4096).fill(1) }],
      }))
      .then((reply) => {
        answered = reply;
      });
    await ticks(2000, () => answered !== undefined);
    expect(answered?.kind).toBe("mutation");
    await ticks(3 * 3000);
    expect(records).toBe(0);
    const failed = state.stores;
    await ticks(replicaLimitsDefault.checkpointStoreRetryTicksMax, () => state.stores > failed);
    state.sled2Alive = true;
    const before = state.stores;
    // A sled this replica does not store on answering again changes nothing.
    host.sledAnsweredAgain("sled-9");
    await ticks(replicaLimitsDefault.checkpointStoreRetryTicksMax / 3, () => records > 0, 1);
    expect(state.stores).toBe(before);
    // sled-2 answers again (the sled client saw it): stored well before the back-off ends.
    host.sledAnsweredAgain("sled-2");
    await ticks(replicaLimitsDefault.checkpointStoreRetryTicksMax / 3, () => records > 0, 1);
    expect(state.stores).toBe(before + 1);
    expect(records).toBe(1);
  } finally {
    await host.close();
  }
});
