// Large messages through a real nats-server with the bus's tuned NATS client
// (tuneForLargeMessages in packages/runtime/src/bus.ts): every byte arrives, in order,
// small and large interleaved, and a large payload arrives in a buffer of its own size.

import { randomBytes } from "node:crypto";
import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import {
  connectNats,
  createLogger,
  natsLargeMessageBytesMin,
  packSmallRuns,
} from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { temporaryDirectory } from "../support/cluster.ts";

let nats: RunningNatsServer;
let removeDirectory: () => Promise<void>;
const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });

beforeAll(async () => {
  const directory = await temporaryDirectory();
  removeDirectory = directory.remove;
  nats = await startNatsServer({ directory: directory.path });
});
afterAll(async () => {
  await nats?.stop();
  await removeDirectory?.();
});

describe("large NATS messages", () => {
  test("small and large payloads arrive intact and in order, large ones in exact-size buffers", async () => {
    const sender = await connectNats({ servers: nats.url, name: "sender", logger });
    const receiver = await connectNats({ servers: nats.url, name: "receiver", logger });
    const sizes = [1, 1024 * 1024, 100, 100, 100, 4 * 1024 * 1024, 70 * 1024, 5];
    for (let round = 0; round < 3; round += 1) sizes.push(...sizes.slice(0, 8));
    const sent = sizes.map((size) => new Uint8Array(randomBytes(size)));
    const received: Uint8Array[] = [];
    const done = new Promise<void>((resolve) => {
      receiver.subscribe("large.test", {
        callback: (_error, message) => {
          received.push(message.data);
          if (received.length === sent.length) resolve();
        },
      });
    });
    await receiver.flush();
    // Published in one turn, so that one flush of the sender carries small and large
    // payloads together.
    for (const payload of sent) sender.publish("large.test", payload);
    await done;
    expect(received.length).toBe(sent.length);
    for (const [index, payload] of sent.entries()) {
      expect(Buffer.from(received[index]!).equals(Buffer.from(payload))).toBe(true);
      if (payload.byteLength >= 256 * 1024) {
        // Gathered from many socket reads into one buffer of exactly its size (the
        // client's own buffer would have doubled as the bytes came in).
        expect(received[index]!.buffer.byteLength).toBe(payload.byteLength);
      }
    }
    await sender.close();
    await receiver.close();
  });

  test("packSmallRuns passes large buffers through and packs the small ones between them", () => {
    const small = (byte: number, length: number) => new Uint8Array(length).fill(byte);
    const large = small(9, natsLargeMessageBytesMin);
    const buffers = [small(1, 3), small(2, 2), large, small(3, 1), large, large, small(4, 4)];
    const frames = packSmallRuns(buffers);
    expect(frames.length).toBe(6);
    expect(frames[1]).toBe(large);
    expect(frames[3]).toBe(large);
    expect(frames[4]).toBe(large);
    expect(frames[5]).toBe(buffers[6]);
    expect([...frames[0]!]).toEqual([1, 1, 1, 2, 2]);
    expect(frames[2]).toBe(buffers[3]);
    expect(Buffer.concat(frames).equals(Buffer.concat(buffers))).toBe(true);
    expect(packSmallRuns([])).toEqual([]);
  });
});
