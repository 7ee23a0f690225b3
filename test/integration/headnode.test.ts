// The write and read path on real processes: three head nodes and three sleds on a real
// nats-server. A client writes a pseudo-random pattern (overlapping writes, trims and
// write-zeroes) while flushes move data to sleds; every read must equal an independent
// model of the writes. A secondary and then the primary are killed with SIGKILL; the
// primary's replacement comes from a static re-assignment (the coordinator's job later).

import { BallastError, ErrorCode, type ResultOf, subjects } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";

const volume = "vol";
const partitionBytes = 4 * 1024 * 1024;
const sleds = ["sled-1", "sled-2", "sled-3"];

let cluster: TestCluster;
/** The independent model: what every byte of the partition must read as. */
const model = new Uint8Array(partitionBytes);
let epoch = 1;
let seed = 12345;

function random(bound: number): number {
  // A small LCG: deterministic, and independent of the code under test.
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed % bound;
}

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 3,
    sleds: 3,
    env: { BALLAST_SLED_DEVICES: "2", BALLAST_SLED_DEVICE_BYTES: String(64 * 1024 * 1024) },
  });
});
afterAll(() => cluster?.stop());

async function configure(nodes: string[], primary: string, secondaries: string[]) {
  return Promise.all(
    nodes.map((node) =>
      cluster.bus.request(subjects.node.build("headnode", node), {
        type: "headnode.configure.v1",
        volume,
        partition: 0,
        partitionStart: 0,
        partitionBytes,
        epoch,
        primary,
        secondaries,
        sleds,
      }),
    ),
  );
}

function request(bus: Bus, body: Record<string, unknown>, deadlineMs = 30_000) {
  const address = { volume, partition: 0, epoch };
  // biome-ignore lint/suspicious/noExplicitAny: the body is one of the volume messages
  return bus.request(subjects.volume.build(volume, 0), { ...address, ...body } as any, {
    deadlineMs,
  });
}

/** Writes, trims and zeroes at random (sector-aligned, overlapping), updating the model. */
async function writeBatch(count: number): Promise<number> {
  let lastOpNum = 0;
  for (let index = 0; index < count; index++) {
    const sectors = 1 + random(64);
    const offset = random(partitionBytes / 512 - sectors) * 512;
    const length = sectors * 512;
    const kind = random(10);
    let result: ResultOf<"volume.write.v1">;
    if (kind < 8) {
      const data = new Uint8Array(length);
      for (let at = 0; at < length; at += 512) data.fill(1 + random(255), at, at + 512);
      result = (await request(cluster.bus, {
        type: "volume.write.v1",
        writes: [{ offset, data }],
      })) as ResultOf<"volume.write.v1">;
      model.set(data, offset);
    } else {
      result = (await request(cluster.bus, {
        type: kind === 8 ? "volume.trim.v1" : "volume.write-zeroes.v1",
        ranges: [{ offset, length }],
      })) as ResultOf<"volume.write.v1">;
      model.fill(0, offset, offset + length);
    }
    lastOpNum = result.opNumLast;
  }
  return lastOpNum;
}

/** Reads the whole partition in 1 MiB requests and compares it with the model. */
async function expectModel(): Promise<void> {
  const step = 1024 * 1024;
  for (let offset = 0; offset < partitionBytes; offset += step) {
    const result = (await request(cluster.bus, {
      type: "volume.read.v1",
      reads: [{ offset, length: step }],
    })) as ResultOf<"volume.read.v1">;
    const data = result.data[0]!;
    const expected = model.subarray(offset, offset + step);
    if (Buffer.compare(Buffer.from(data), Buffer.from(expected)) !== 0) {
      let at = 0;
      while (data[at] === expected[at]) at++;
      throw new Error(`byte ${offset + at} reads ${data[at]}, the model says ${expected[at]}`);
    }
  }
}

async function replicaStatus(node: string) {
  return cluster.bus.request(subjects.node.build("headnode", node), {
    type: "headnode.replica.status.v1",
    volume,
    partition: 0,
  });
}

async function expectReplicasIdentical(nodes: string[]) {
  await waitFor("replicas to agree", async () => {
    const statuses = await Promise.all(nodes.map(replicaStatus));
    const primary = statuses[0]!;
    const same = statuses.every(
      (status) =>
        status.commitOpNum === primary.lastOpNum &&
        status.metadataDigest === primary.metadataDigest,
    );
    return same ? statuses : undefined;
  });
}

describe("head nodes on real processes", () => {
  test("writes through the primary read back exactly, across flushes to sleds", async () => {
    const statuses = await configure(["head-1", "head-2", "head-3"], "head-1", [
      "head-2",
      "head-3",
    ]);
    expect(statuses.map((status) => status.role)).toEqual(["primary", "secondary", "secondary"]);
    await waitFor("the primary to serve", async () => {
      try {
        await request(
          cluster.bus,
          { type: "volume.read.v1", reads: [{ offset: 0, length: 512 }] },
          1000,
        );
        return true;
      } catch {
        return undefined;
      }
    });
    await writeBatch(150);
    const flushed = (await request(cluster.bus, {
      type: "volume.flush.v1",
    })) as ResultOf<"volume.flush.v1">;
    expect(flushed.flushedOpNum).toBeGreaterThanOrEqual(150);
    await writeBatch(100);
    await expectModel();
    const primary = await replicaStatus("head-1");
    expect(primary.chunks).toBeGreaterThan(0);
    await expectReplicasIdentical(["head-1", "head-2", "head-3"]);
  });

  test("bad requests get typed errors and change nothing", async () => {
    const cases: [Record<string, unknown>, ErrorCode][] = [
      [
        { type: "volume.write.v1", writes: [{ offset: 100, data: new Uint8Array(512) }] },
        ErrorCode.Unaligned,
      ],
      [
        {
          type: "volume.write.v1",
          writes: [{ offset: partitionBytes, data: new Uint8Array(512) }],
        },
        ErrorCode.OutOfRange,
      ],
      [{ type: "volume.trim.v1", ranges: [{ offset: 0, length: 100 }] }, ErrorCode.Unaligned],
      [
        { type: "volume.read.v1", reads: Array(5).fill({ offset: 0, length: 1024 * 1024 }) },
        ErrorCode.InvalidArgument,
      ],
      [
        {
          type: "volume.write.v1",
          epoch: epoch + 7,
          writes: [{ offset: 0, data: new Uint8Array(512) }],
        },
        ErrorCode.WrongEpoch,
      ],
    ];
    for (const [body, code] of cases) {
      await expect(request(cluster.bus, body)).rejects.toMatchObject({ code });
    }
    // A secondary does not listen on the volume subject; its inbox refuses volume I/O.
    await expect(
      cluster.bus.request(subjects.node.build("headnode", "head-2"), {
        type: "volume.flush.v1",
        volume,
        partition: 0,
        epoch,
      }),
    ).rejects.toMatchObject({ code: ErrorCode.UnexpectedMessageType });
    await expectModel();
  });

  test("kill -9 of a secondary: writes wait for it, it recovers, nothing acknowledged is lost", async () => {
    await cluster.cluster.kill("head-3", "SIGKILL");
    // Writes cannot commit without every secondary of the epoch: they wait, not fail.
    const pending = writeBatch(20);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    cluster.cluster.restart("head-3");
    await waitFor(
      "head-3 to take its configuration",
      async () => {
        try {
          return await configure(["head-3"], "head-1", ["head-2", "head-3"]);
        } catch {
          return undefined;
        }
      },
      20_000,
    );
    await pending;
    await writeBatch(50);
    await expectModel();
    await expectReplicasIdentical(["head-1", "head-2", "head-3"]);
  });

  test("kill -9 of the primary: a re-assigned primary serves every acknowledged write", async () => {
    await writeBatch(30);
    await cluster.cluster.kill("head-1", "SIGKILL");
    epoch = 2;
    await configure(["head-2", "head-3"], "head-2", ["head-3"]);
    await waitFor("the new primary to serve reads", async () => {
      try {
        await request(
          cluster.bus,
          { type: "volume.read.v1", reads: [{ offset: 0, length: 512 }] },
          1000,
        );
        return true;
      } catch (error) {
        if (error instanceof BallastError && error.retryable) return undefined;
        throw error;
      }
    });
    await expectModel();
    await writeBatch(60);
    await expectModel();

    // The old primary comes back and rejoins as a secondary in a new epoch.
    cluster.cluster.restart("head-1");
    epoch = 3;
    await waitFor(
      "head-1 to rejoin",
      async () => {
        try {
          return await configure(["head-1", "head-2", "head-3"], "head-2", ["head-3", "head-1"]);
        } catch {
          return undefined;
        }
      },
      20_000,
    );
    await writeBatch(40);
    await expectModel();
    await expectReplicasIdentical(["head-2", "head-3", "head-1"]);
  });
});
