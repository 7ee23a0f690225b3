// The fill-sled fault's filler (chaos nemesis) against a fake sled on a fake bus (a
// unit test: the real sled's NoSpace is covered by the sled's own tests and by the
// chaos run): it fills until the sled says NoSpace, no further, tells the wounds what
// it stored as it goes, fails loudly on any other error, and its undo deletes every
// filler id it may have stored.
// The kill-nats fault's restart (against a fake cluster): a failed restart is tried
// again, a bounded number of times, and a heal restarts any nats-server the cluster has
// down, even one no fault marked (the chaos run's heal left it down for good), heals
// everything else even when NATS will not come back, and then says so.

import { BallastError, ErrorCode } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import {
  fillerChunkBytes,
  fillerOwner,
  fillerWritesInFlight,
  fillSled,
  natsRestartAttempts,
  restartNatsServerRetrying,
  unfillSled,
  Wounds,
} from "../src/chaos/nemesis.ts";
import type { LocalCluster } from "../src/local-cluster.ts";

/** A fake sled holding `capacity` bytes of chunks, reached through a fake bus. */
function fakeSled(capacity: number, failWith?: ErrorCode) {
  const stored = new Map<string, number>();
  let used = 0;
  const bus = {
    async request(
      subject: string,
      message: { type: string; chunkId: string; owner: unknown; data?: Uint8Array },
    ) {
      expect(subject).toContain("sled-2");
      expect(message.owner).toEqual(fillerOwner);
      if (message.type === "sled.chunk.write.v1") {
        const bytes = message.data!.byteLength;
        if (failWith !== undefined) throw new BallastError(failWith, "fake failure");
        if (used + bytes > capacity) throw new BallastError(ErrorCode.NoSpace, "fake sled full");
        stored.set(message.chunkId, bytes);
        used += bytes;
        return { bytes, created: true };
      }
      if (message.type === "sled.chunk.delete.v1") {
        const bytes = stored.get(message.chunkId);
        if (bytes === undefined) throw new BallastError(ErrorCode.NotFound, "no such chunk");
        stored.delete(message.chunkId);
        used -= bytes;
        return { freedBytes: bytes };
      }
      throw new Error(`unexpected ${message.type}`);
    },
  } as unknown as Bus;
  return { bus, stored, used: () => used };
}

describe("fill-sled", () => {
  test("fills until NoSpace, and the undo deletes everything it stored", async () => {
    const capacity = 37 * fillerChunkBytes + 1000;
    const sled = fakeSled(capacity);
    const told: number[] = [];
    const tried = await fillSled(sled.bus, "sled-2", (count) => told.push(count));
    expect(sled.stored.size).toBe(37);
    expect(tried).toBeGreaterThanOrEqual(37);
    expect(tried).toBeLessThanOrEqual(37 + fillerWritesInFlight);
    // The wounds always know at least as many ids as were stored, before they are stored.
    expect(told.at(-1)).toBe(tried);
    expect(told).toEqual([...told].sort((a, b) => a - b));
    await unfillSled(sled.bus, "sled-2", tried);
    expect(sled.stored.size).toBe(0);
    expect(sled.used()).toBe(0);
  });

  test("a sled that never answers NoSpace ends the fault with an error naming it", async () => {
    const sled = fakeSled(Number.MAX_SAFE_INTEGER);
    await expect(fillSled(sled.bus, "sled-2", () => undefined)).rejects.toThrow(
      "sled-2 took 2048 filler chunks and never answered NoSpace",
    );
    expect(sled.stored.size).toBe(2048);
  });

  test("an error other than NoSpace ends the fault with that error", async () => {
    const sled = fakeSled(1 << 30, ErrorCode.Unavailable);
    await expect(fillSled(sled.bus, "sled-2", () => undefined)).rejects.toThrow("fake failure");
  });
});

/** A cluster whose nats-server 0 is down and whose restarts fail `failures` times first. */
function fakeCluster(failures: number) {
  let natsUp = false;
  const restarts: number[] = [];
  const signals: string[] = [];
  const running = new Map([
    ["head-1", true],
    ["sled-1", false],
  ]);
  const cluster = {
    natsServersDown: () => (natsUp ? [] : [0]),
    async restartNatsServer(index = 0) {
      restarts.push(index);
      if (restarts.length <= failures) {
        throw new Error(`nats-server did not accept connections (try ${restarts.length})`);
      }
      natsUp = true;
    },
    ids: () => [...running.keys()],
    isRunning: (id: string) => running.get(id) === true,
    signal: (id: string, signal: string) => signals.push(`${id} ${signal}`),
    restart: (id: string) => running.set(id, true),
  };
  return {
    cluster: cluster as unknown as LocalCluster,
    restarts,
    signals,
    natsUp: () => natsUp,
    running,
  };
}

describe("nats-server restarts", () => {
  test("a failed restart is tried again until it succeeds", async () => {
    const fake = fakeCluster(natsRestartAttempts - 1);
    const lines: string[] = [];
    await restartNatsServerRetrying(fake.cluster, 0, (line) => lines.push(line), undefined, 0);
    expect(fake.restarts).toEqual(Array(natsRestartAttempts).fill(0));
    expect(fake.natsUp()).toBe(true);
    expect(lines).toHaveLength(natsRestartAttempts - 1);
    expect(lines[0]).toContain("restart try 1 of 3 failed: nats-server did not accept");
  });

  test("the tries are bounded, and the last failure is thrown with their count", async () => {
    const fake = fakeCluster(Number.MAX_SAFE_INTEGER);
    await expect(
      restartNatsServerRetrying(fake.cluster, 0, () => undefined, undefined, 0),
    ).rejects.toThrow("nats-server 0 did not restart in 3 tries: nats-server did not accept");
    expect(fake.restarts).toHaveLength(natsRestartAttempts);
  });

  test("a heal restarts a nats-server the cluster has down, with retries, though no fault marked it", async () => {
    const fake = fakeCluster(1);
    await new Wounds().heal(fake.cluster);
    expect(fake.restarts).toEqual([0, 0]);
    expect(fake.natsUp()).toBe(true);
    expect(fake.running.get("sled-1")).toBe(true);
  });

  test("a heal whose nats-server will not come back heals everything else, then throws", async () => {
    const fake = fakeCluster(Number.MAX_SAFE_INTEGER);
    const wounds = new Wounds();
    wounds.stopped.add("head-1");
    await expect(wounds.heal(fake.cluster)).rejects.toThrow("did not restart in 3 tries");
    expect(fake.restarts).toHaveLength(natsRestartAttempts);
    expect(fake.signals).toEqual(["head-1 SIGCONT"]);
    expect(fake.running.get("sled-1")).toBe(true);
    expect(wounds.stopped.size).toBe(0);
  });
});
