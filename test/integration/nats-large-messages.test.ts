// Large messages through a real nats-server with the bus's tuned NATS client
// (tuneForLargeMessages in packages/runtime/src/bus.ts): every byte arrives, in order,
// small and large interleaved, and a large payload arrives in a buffer of its own size;
// a request with large data, published in parts (publishParts), arrives whole.

import { createHash, randomBytes } from "node:crypto";
import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { decodeMessage, subjects } from "@ballast/protocol";
import {
  Bus,
  connectNats,
  createLogger,
  natsLargeMessageBytesMin,
  packSmallRuns,
  Service,
  startTracing,
} from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { temporaryDirectory } from "../support/cluster.ts";

let nats: RunningNatsServer;
let removeDirectory: () => Promise<void>;
const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
const tracing = startTracing({ serviceName: "large-test", instanceId: "t" });

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

  test.each([
    ["without", undefined],
    ["with", tracing.tracer],
  ])(
    "a request with large data, sent in parts, arrives whole (%s trace headers)",
    async (_, tracer) => {
      const nodeId = `head-large-${tracer === undefined ? "plain" : "traced"}`;
      const service = new Service({
        kind: "headnode",
        nodeId,
        bus: new Bus(await connectNats({ servers: nats.url, name: nodeId, logger }), tracer),
        tracer,
        logger,
        heartbeatIntervalMs: 1000,
      });
      const seen: string[][] = [];
      service.serveInbox(["volume.write.v1"], (message) => {
        if (message.type !== "volume.write.v1") throw new Error(message.type);
        seen.push(message.writes.map((write) => digest(write.data)));
        return { opNumFirst: 1, opNumLast: message.writes.length };
      });
      const client = new Bus(
        await connectNats({ servers: nats.url, name: "client", logger }),
        tracer,
      );
      // Published in parts: the client's protocol gets the data as payloads of their own.
      const protocol = (
        client.connection as unknown as {
          protocol: { sendCommand: (...args: unknown[]) => void };
        }
      ).protocol;
      const sendCommand = protocol.sendCommand;
      let sentInParts = 0;
      protocol.sendCommand = function (this: unknown, ...args: unknown[]) {
        if (args.length > 4) sentInParts += 1;
        return sendCommand.apply(this, args);
      };
      const writes = [100 * 1024, 4096, 1024 * 1024, 20_000, 0, 3 * 1024 * 1024].map(
        (size, index) => ({
          offset: index * 4 * 1024 * 1024,
          data: new Uint8Array(randomBytes(size)),
        }),
      );
      for (let round = 0; round < 3; round += 1) {
        const result = await client.request(subjects.node.build("headnode", nodeId), {
          type: "volume.write.v1",
          volume: "v",
          partition: 0,
          epoch: 1,
          writes,
        });
        expect(result).toEqual({ opNumFirst: 1, opNumLast: writes.length });
      }
      expect(sentInParts).toBe(3);
      // A publication (as replication messages go) is sent in parts too.
      const listener = await connectNats({ servers: nats.url, name: "listener", logger });
      const published = new Promise<string[]>((resolve) => {
        listener.subscribe("large.publish", {
          max: 1,
          callback: (_error, message) => {
            const decoded = decodeMessage(message.data);
            if (decoded.type !== "volume.write.v1") throw new Error(decoded.type);
            resolve(decoded.writes.map((write) => digest(write.data)));
          },
        });
      });
      await listener.flush();
      client.publish("large.publish", {
        type: "volume.write.v1",
        volume: "v",
        partition: 0,
        epoch: 1,
        writes,
      });
      expect(await published).toEqual(writes.map((write) => digest(write.data)));
      expect(sentInParts).toBe(4);
      await listener.close();
      expect(seen).toEqual(
        Array.from({ length: 3 }, () => writes.map((write) => digest(write.data))),
      );
      await service.stop("test");
      await client.connection.close();
    },
  );
});

function digest(bytes: Uint8Array): string {
  return `${bytes.byteLength} ${createHash("sha1").update(bytes).digest("hex")}`;
}
