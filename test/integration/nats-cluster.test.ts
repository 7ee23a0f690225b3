// NATS as a cluster on real processes (issue 15): three routed nats-servers, the control
// bucket replicated three ways, and services and a client that fail over. One server is
// killed with SIGKILL in the middle of a write workload through the client library:
// every write completes (a write may be retried, as any client retries across a
// failover) and reading everything back finds none lost.

import { setTimeout as sleep } from "node:timers/promises";
import { BallastClient } from "@ballast/client";
import { buckets, ErrorCode, subjects } from "@ballast/protocol";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, expect, test } from "vitest";
import { connectTestBus, startTestCluster, type TestCluster } from "../support/cluster.ts";

const mebibyte = 1024 * 1024;
const blockBytes = 4096;
const writes = 240;
/** The server is killed after this many writes have completed. */
const killAfter = 60;
const writersInFlight = 4;
/** A write that keeps failing this long is lost, not slow. */
const writeRetryMs = 60_000;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ natsCluster: 3, headNodes: 2, sleds: 2 });
  await cluster.bus.request(
    subjects.coordinator.build(),
    {
      type: "volume.create.v1",
      name: "ha",
      sizeBytes: 8 * mebibyte,
      partitionBytes: 8 * mebibyte,
      replicaCount: 2,
    },
    { deadlineMs: 15_000 },
  );
}, 90_000);
afterAll(() => cluster?.stop());

function pattern(index: number): Uint8Array {
  const block = new Uint8Array(blockBytes);
  for (let offset = 0; offset < blockBytes; offset += 4) {
    new DataView(block.buffer).setUint32(offset, index * 2654435761 + offset, true);
  }
  return block;
}

test("three nats-servers hold the control bucket three ways", async () => {
  expect(cluster.cluster.natsUrl.split(",")).toHaveLength(3);
  const kv = await new Kvm(cluster.bus.connection).open(buckets.control);
  expect((await kv.status()).replicas).toBe(3);
});

test("killing one nats-server during writes loses no write", async () => {
  const client = await connectTestBus(cluster.cluster.natsUrl, "client");
  try {
    const volume = await new BallastClient(client.bus).openVolume("ha");
    let retried = 0;
    let completed = 0;
    let next = 0;
    const writeOne = async (index: number) => {
      const deadline = Date.now() + writeRetryMs;
      for (;;) {
        try {
          await volume.write(index * blockBytes, pattern(index));
          completed++;
          return;
        } catch (error) {
          retried++;
          if (Date.now() > deadline) throw error;
          await sleep(100);
        }
      }
    };
    // Several writers, so that writes are in flight when the server dies.
    const writers = Array.from({ length: writersInFlight }, async () => {
      while (next < writes) await writeOne(next++);
    });
    // The server this client is on: the failover it must survive.
    const killed = client.bus.connection.getServer();
    const victim = cluster.cluster.natsServers.findIndex(
      (server) => server !== undefined && killed.endsWith(`:${server.port}`),
    );
    expect(victim).toBeGreaterThanOrEqual(0);
    while (completed < killAfter) await sleep(5);
    await cluster.cluster.killNatsServer("SIGKILL", victim);
    const inFlightAtKill = next - completed;
    await Promise.all(writers);
    expect(completed).toBe(writes);
    expect(client.bus.connection.getServer()).not.toBe(killed);
    const lost: number[] = [];
    for (let index = 0; index < writes; index++) {
      const read = await volume.read(index * blockBytes, blockBytes);
      if (Buffer.compare(Buffer.from(read), Buffer.from(pattern(index))) !== 0) lost.push(index);
    }
    process.stdout.write(
      `nats-cluster: ${writes} writes, ${inFlightAtKill} in flight at the kill, ${retried} retried, killed ${killed}\n`,
    );
    expect(lost).toEqual([]);
    // The control plane writes its replicated bucket with two servers of three. If the
    // killed server led the bucket's stream, the other two elect a new leader first
    // (seconds, longer on a loaded machine), and the coordinator's own store requests
    // time out meanwhile: a create that fails is retried for up to a minute, and one
    // that landed before its answer was lost answers AlreadyExists.
    const create = () =>
      cluster.bus.request(
        subjects.coordinator.build(),
        {
          type: "volume.create.v1",
          name: "ha-after",
          sizeBytes: 8 * mebibyte,
          partitionBytes: 8 * mebibyte,
          replicaCount: 2,
        },
        { deadlineMs: 15_000 },
      );
    let created: { name: string } | undefined;
    const giveUpAt = Date.now() + 60_000;
    while (created === undefined) {
      try {
        created = await create();
      } catch (error) {
        if ((error as { code?: string }).code === ErrorCode.AlreadyExists) {
          created = { name: "ha-after" };
        } else if (Date.now() > giveUpAt) {
          throw error;
        } else {
          process.stdout.write(
            `nats-cluster: create after the kill failed (${String(error)}); retrying\n`,
          );
          await sleep(1000);
        }
      }
    }
    expect(created.name).toBe("ha-after");
  } finally {
    await client.close();
  }
}, 180_000);
