// A primary's reads of flushed data through its sled client's chunk cache: a real
// partition host (real journal in a temporary directory, fake service as in
// partition-host-metrics.test.ts) on a real SledClient whose sleds are kept in memory.
// A range whose parts lie in two chunks, one cached and one not, answers both parts'
// bytes, and each part counts once in the cache's counters: the cached one as a hit
// (not looked up again when the other goes to a sled), the other as one miss.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32c, type Message } from "@ballast/protocol";
import type { Bus, Service } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test } from "vitest";
import { PartitionHost } from "../src/partition-host.ts";
import type { Reply } from "../src/replica/effects.ts";
import { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

let dataDir: string;
let now = 0;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-host-cache-reads-"));
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

/** Sleds in memory: chunk writes, reads and read-manys, as real ones answer them. */
function memorySleds() {
  const stored = new Map<string, Map<string, Uint8Array>>();
  const sledOf = (subject: string) => {
    const name = subject.slice(subject.lastIndexOf(".") + 1);
    let sled = stored.get(name);
    if (sled === undefined) {
      sled = new Map();
      stored.set(name, sled);
    }
    return sled;
  };
  const bus = {
    // biome-ignore lint/suspicious/noExplicitAny: a fake of the sleds' request surface
    request: async (subject: string, message: any) => {
      const sled = sledOf(subject);
      switch (message.type) {
        case "sled.chunk.write.v1": {
          const data: Uint8Array = message.data.slice();
          sled.set(message.chunkId, data);
          return { bytes: data.byteLength, checksum: crc32c(data), created: true, location: {} };
        }
        case "sled.chunk.read.v1":
          return {
            data: sled.get(message.chunkId)!.slice(message.offset, message.offset + message.length),
          };
        case "sled.chunk.read-many.v1":
          return {
            data: message.reads.map((read: { chunkId: string; offset: number; length: number }) =>
              sled.get(read.chunkId)!.slice(read.offset, read.offset + read.length),
            ),
          };
        default:
          throw new Error(`the memory sleds do not answer ${(message as Message).type}`);
      }
    },
  } as unknown as Bus;
  return { bus, stored };
}

async function settle(host: PartitionHost, done: () => boolean): Promise<void> {
  for (let tick = 0; tick < 2000 && !done(); tick++) {
    now++;
    host.tick(now);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  expect(done()).toBe(true);
}

test("a range over a cached and an uncached chunk answers both, and each part counts once", async () => {
  const service = new FakeService();
  const sleds = memorySleds();
  const client = new SledClient(sleds.bus, service.logger, { cacheBytes: 16 << 20 });
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
      // Flushed once the chunk table holds the write's chunk (the flush record is an op
      // of its own, so the flushed point stays below the commit point).
      await settle(host, () => host.status().chunks === fill);
    }
    // Drop the second write's chunk from the cache: its part must come from a sled.
    const second = [...sleds.stored.get("sled-1")!].find(([, data]) => data[0] === 2)![0];
    client.cache.forget(second);
    const before = client.cache.stats();
    const { data } = await host.read({
      type: "volume.read.v1",
      volume: "vol",
      partition: 0,
      epoch: 1,
      reads: [{ offset: 0, length: 8192 }],
    } as Parameters<PartitionHost["read"]>[0]);
    const expected = new Uint8Array(8192);
    expected.fill(1, 0, 4096);
    expected.fill(2, 4096);
    expect(Buffer.compare(data[0]!, expected)).toBe(0);
    const after = client.cache.stats();
    expect(after.hits - before.hits).toBe(1);
    expect(after.misses - before.misses).toBe(1);
  } finally {
    await host.close();
  }
});
