// A primary's read whose ranges start sled reads one after another: when a later range
// fails before its read starts, the reads already started are still observed. They
// used to be left to themselves: one that then failed (a sled gone) was a rejection
// nobody handled, which ends the head node (Node 20). A real partition host (real
// journal in a temporary directory, fake service) on a real SledClient whose sleds are
// kept in memory; the client's cache lookup is replaced to throw for the second chunk
// (as an assertion would), and its sled read to wait until the test fails it.

import { crc32c } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { expect, test } from "vitest";
import { recordUnhandledRejections } from "../../../test/support/unhandled-rejections.ts";
import type { PartitionHost } from "../src/partition-host.ts";
import { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";
import { TestPrimary } from "./test-primary.ts";

const unhandled = recordUnhandledRejections();

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

test("a read whose second range fails before its sled read keeps the first one observed", async () => {
  const client = new SledClient(memorySleds(), new FakeService().logger, {
    cacheBytes: 16 << 20,
  });
  const primary = await TestPrimary.open(
    "ballast-host-read-failure-",
    ["sled-1", "sled-2"],
    client,
  );
  const host = primary.host;
  try {
    // Two writes, each flushed to a chunk of its own.
    await primary.writeFlushed(0, 1);
    await primary.writeFlushed(4096, 2);
    expect(host.status().chunks).toBe(2);
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
    await primary.close();
  }
});
