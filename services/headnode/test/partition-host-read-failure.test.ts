// A primary's read whose ranges start sled reads one after another: when a later range
// fails before its read starts, the reads already started are still observed. They
// used to be left to themselves: one that then failed (a sled gone) was a rejection
// nobody handled, which ends the head node (Node 20). A real partition host (real
// journal in a temporary directory, fake service) on a real SledClient whose sleds are
// kept in memory; the client's cache lookup is replaced to throw for the second chunk
// (as an assertion would), and its sled read to wait until the test fails it.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32c } from "@ballast/protocol";
import type { Bus, Service } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test } from "vitest";
import { PartitionHost } from "../src/partition-host.ts";
import type { Reply } from "../src/replica/effects.ts";
import { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

let dataDir: string;
let now = 0;
const unhandled: unknown[] = [];
const recordUnhandled = (reason: unknown) => unhandled.push(reason);

beforeEach(async () => {
  unhandled.length = 0;
  process.on("unhandledRejection", recordUnhandled);
  dataDir = await mkdtemp(join(tmpdir(), "ballast-host-read-failure-"));
});

afterEach(async () => {
  process.off("unhandledRejection", recordUnhandled);
  await rm(dataDir, { recursive: true, force: true });
});

/** Sleds in memory that take chunk writes (the flushes); nothing else is asked here. */
function memorySleds(): Bus {
  return {
    request: async (_subject: string, message: { type: string; data: Uint8Array }) => {
      if (message.type !== "sled.chunk.write.v1") throw new Error(`unexpected ${message.type}`);
      return {
        bytes: message.data.byteLength,
        checksum: crc32c(message.data),
        created: true,
        location: {},
      };
    },
  } as unknown as Bus;
}

async function settle(host: PartitionHost, done: () => boolean): Promise<void> {
  for (let tick = 0; tick < 2000 && !done(); tick++) {
    now++;
    host.tick(now);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  expect(done()).toBe(true);
}

test("a read whose second range fails before its sled read keeps the first one observed", async () => {
  const service = new FakeService();
  const client = new SledClient(memorySleds(), service.logger, { cacheBytes: 16 << 20 });
  const host = await PartitionHost.open(
    service as unknown as Service,
    join(dataDir, "vol-0"),
    { volume: "vol", volumeId: "vol", partition: 0, partitionStart: 0, partitionBytes: 1 << 20 },
    client,
    1,
    undefined,
    { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9, checkpointIntervalOps: 1e9 },
  );
  try {
    host.attach({
      get now() {
        return now;
      },
      wake: () => undefined,
    });
    host.configure({ epoch: 1, primary: "head-1", secondaries: [] }, ["sled-1", "sled-2"]);
    // Two writes, each flushed to a chunk of its own.
    for (const [offset, fill] of [
      [0, 1],
      [4096, 2],
    ] as const) {
      let answered: Reply | undefined;
      void host
        .request((requestId) => ({
          kind: "write",
          requestId,
          epoch: 1,
          writes: [{ offset, data: new Uint8Array(4096).fill(fill) }],
        }))
        .then((reply) => {
          answered = reply;
        });
      await settle(host, () => answered !== undefined);
      await settle(host, () => host.status().chunks === fill);
    }
    let lookups = 0;
    let failSledRead: (error: Error) => void = () => {};
    Object.assign(client, {
      readCached: () => {
        lookups++;
        if (lookups === 2) throw new Error("an assertion in the second range's lookup");
        return undefined;
      },
      readChunk: () =>
        new Promise<Uint8Array>((_, reject) => {
          failSledRead = reject;
        }),
    });
    await expect(
      host.read({
        type: "volume.read.v1",
        volume: "vol",
        partition: 0,
        epoch: 1,
        reads: [
          { offset: 0, length: 4096 },
          { offset: 4096, length: 4096 },
        ],
      } as Parameters<PartitionHost["read"]>[0]),
    ).rejects.toThrow("an assertion in the second range's lookup");
    expect(lookups).toBe(2);
    failSledRead(new Error("the sled went away"));
    for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(unhandled).toEqual([]);
  } finally {
    await host.close();
  }
});
