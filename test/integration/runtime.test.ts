// The service shell against a real nats-server, in this process: dispatch, error
// replies, deadlines, the in-flight bound, and the order of a graceful shutdown.

import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { Bus, connectNats, createLogger, Service, startTracing } from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { temporaryDirectory } from "../support/cluster.ts";

let nats: RunningNatsServer;
let removeDirectory: () => Promise<void>;
const tracing = startTracing({ serviceName: "runtime-test", instanceId: "t" });
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

async function newBus(name: string): Promise<Bus> {
  return new Bus(await connectNats({ servers: nats.url, name, logger }), tracing.tracer);
}

async function newService(nodeId: string): Promise<Service> {
  return new Service({
    kind: "headnode",
    nodeId,
    bus: await newBus(nodeId),
    tracer: tracing.tracer,
    logger,
    heartbeatIntervalMs: 1000,
  });
}

const flushMessage = {
  type: "volume.flush.v1" as const,
  volume: "v",
  partition: 0,
  epoch: 1,
};

describe("service shell", () => {
  test("a request reaches the dispatch function and its result comes back", async () => {
    const service = await newService("head-a");
    const seen: string[] = [];
    service.serveInbox(["volume.flush.v1"], (message, context) => {
      seen.push(`${message.type} on ${context.subject} request=${context.isRequest}`);
      return { flushedOpNum: 41 };
    });
    const client = await newBus("client-a");
    const result = await client.request(subjects.node.build("headnode", "head-a"), flushMessage);
    expect(result).toEqual({ flushedOpNum: 41 });
    expect(seen).toEqual(["volume.flush.v1 on ballast.v1.node.headnode.head-a request=true"]);
    const info = await client.request(subjects.node.build("headnode", "head-a"), {
      type: "node.info.v1",
    });
    expect(info).toMatchObject({ kind: "headnode", nodeId: "head-a", pid: process.pid });
    expect(info.subjects).toEqual(["ballast.v1.node.headnode.head-a"]);
    await service.stop("test");
    await client.connection.close();
  });

  test("thrown errors become typed replies and the service keeps serving", async () => {
    const service = await newService("head-b");
    let calls = 0;
    service.serveInbox(["volume.flush.v1"], () => {
      calls++;
      if (calls === 1) {
        throw new BallastError(ErrorCode.WrongEpoch, "epoch 1 is old", { details: { epoch: 1 } });
      }
      if (calls === 2) throw new TypeError("a bug");
      return { flushedOpNum: 1 };
    });
    const client = await newBus("client-b");
    const subject = subjects.node.build("headnode", "head-b");
    await expect(client.request(subject, flushMessage)).rejects.toMatchObject({
      code: ErrorCode.WrongEpoch,
      message: "epoch 1 is old",
      details: { epoch: 1, remote: true },
    });
    await expect(client.request(subject, flushMessage)).rejects.toMatchObject({
      code: ErrorCode.Internal,
      message: "a bug",
    });
    await expect(client.request(subject, flushMessage)).resolves.toEqual({ flushedOpNum: 1 });
    await service.stop("test");
    await client.connection.close();
  });

  test("a reply slower than the deadline fails with Timeout; no listener is Unavailable", async () => {
    const service = await newService("head-c");
    service.serveInbox(["volume.flush.v1"], async () => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      return { flushedOpNum: 0 };
    });
    const client = await newBus("client-c");
    await expect(
      client.request(subjects.node.build("headnode", "head-c"), flushMessage, { deadlineMs: 100 }),
    ).rejects.toMatchObject({ code: ErrorCode.Timeout });
    await expect(
      client.request(subjects.node.build("sled", "nobody"), flushMessage, { deadlineMs: 1000 }),
    ).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(() =>
      client.request(subjects.node.build("headnode", "head-c"), flushMessage, { deadlineMs: 0 }),
    ).toThrow(BallastError);
    await service.stop("test");
    await client.connection.close();
  });

  test("no more handlers run at once than the subscription's limit", async () => {
    const service = await newService("head-d");
    let running = 0;
    let runningMax = 0;
    service.serve(
      subjects.node.build("headnode", "head-d"),
      { accept: ["volume.flush.v1"], inflightMax: 2 },
      async () => {
        running++;
        runningMax = Math.max(runningMax, running);
        await new Promise((resolve) => setTimeout(resolve, 50));
        running--;
        return { flushedOpNum: 0 };
      },
    );
    const client = await newBus("client-d");
    await Promise.all(
      Array.from({ length: 8 }, () =>
        client.request(subjects.node.build("headnode", "head-d"), flushMessage),
      ),
    );
    expect(runningMax).toBe(2);
    await service.stop("test");
    await client.connection.close();
  });

  test("one subscription's messages reach dispatch in the order sent, whatever order their handlers finish in", async () => {
    const service = await newService("head-i");
    const started: number[] = [];
    const finished: number[] = [];
    const count = 60;
    let markDone = () => {};
    const done = new Promise<void>((resolve) => {
      markDone = resolve;
    });
    service.serve(
      subjects.node.build("headnode", "head-i"),
      { accept: ["volume.flush.v1"] },
      async (message) => {
        const sequence = (message as { partition: number }).partition;
        started.push(sequence);
        // Later messages finish first: their order of completion is reversed.
        await new Promise((resolve) => setTimeout(resolve, (count - sequence) % 7));
        finished.push(sequence);
        if (finished.length === count) markDone();
      },
    );
    await service.bus.connection.flush(); // subscribed at the server before anything is sent
    const client = await newBus("client-i");
    for (let sequence = 0; sequence < count; sequence++) {
      client.publish(subjects.node.build("headnode", "head-i"), {
        ...flushMessage,
        partition: sequence,
      });
    }
    await done;
    expect(started).toEqual(Array.from({ length: count }, (_, sequence) => sequence));
    expect(finished).not.toEqual(started);
    await service.stop("test");
    await client.connection.close();
  });

  test("with a limit of one, handlers run one at a time in the order sent", async () => {
    const service = await newService("head-j");
    const events: string[] = [];
    service.serve(
      subjects.node.build("headnode", "head-j"),
      { accept: ["volume.flush.v1"], inflightMax: 1 },
      async (message) => {
        const sequence = (message as { partition: number }).partition;
        events.push(`start ${sequence}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
        events.push(`end ${sequence}`);
        return { flushedOpNum: sequence };
      },
    );
    await service.bus.connection.flush(); // subscribed at the server before anything is sent
    const client = await newBus("client-j");
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, sequence) =>
        client.request(subjects.node.build("headnode", "head-j"), {
          ...flushMessage,
          partition: sequence,
        }),
      ),
    );
    expect(results).toEqual(
      Array.from({ length: 6 }, (_, sequence) => ({ flushedOpNum: sequence })),
    );
    expect(events).toEqual(
      Array.from({ length: 6 }, (_, sequence) => [`start ${sequence}`, `end ${sequence}`]).flat(),
    );
    await service.stop("test");
    await client.connection.close();
  });

  test("stopping one subscription handles every message already delivered, waits for them, then takes no more", async () => {
    const service = await newService("head-k");
    const handled: number[] = [];
    let markStarted = () => {};
    const firstStarted = new Promise<void>((resolve) => {
      markStarted = resolve;
    });
    const served = service.serve(
      subjects.node.build("headnode", "head-k"),
      { accept: ["volume.flush.v1"], inflightMax: 1 },
      async (message) => {
        const sequence = (message as { partition: number }).partition;
        markStarted();
        await new Promise((resolve) => setTimeout(resolve, 40));
        handled.push(sequence);
        return { flushedOpNum: sequence };
      },
    );
    await service.bus.connection.flush(); // subscribed at the server before anything is sent
    const client = await newBus("client-k");
    // Five requests: one runs, four wait behind it (delivered, not yet handled).
    const replies = Array.from({ length: 5 }, (_, sequence) =>
      client.request(subjects.node.build("headnode", "head-k"), {
        ...flushMessage,
        partition: sequence,
      }),
    );
    await firstStarted;
    await new Promise((resolve) => setTimeout(resolve, 20));
    await served.stop();
    // stop() returned only after every delivered message was handled and answered.
    expect(handled).toEqual([0, 1, 2, 3, 4]);
    await expect(Promise.all(replies)).resolves.toEqual(
      Array.from({ length: 5 }, (_, sequence) => ({ flushedOpNum: sequence })),
    );
    expect(service.subjects).toEqual([]);
    await expect(
      client.request(subjects.node.build("headnode", "head-k"), flushMessage, { deadlineMs: 500 }),
    ).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(handled).toHaveLength(5);
    await service.stop("test");
    await client.connection.close();
  });

  test("a handler that answers without a promise is answered, and a refused message is answered with its error", async () => {
    const service = await newService("head-l");
    service.serveInbox(["volume.flush.v1"], (message) => ({
      flushedOpNum: (message as { partition: number }).partition,
    }));
    await service.bus.connection.flush(); // subscribed at the server before anything is sent
    const client = await newBus("client-l");
    await expect(
      client.request(subjects.node.build("headnode", "head-l"), { ...flushMessage, partition: 3 }),
    ).resolves.toEqual({ flushedOpNum: 3 });
    await expect(
      client.request(subjects.node.build("headnode", "head-l"), {
        type: "volume.read.v1",
        volume: "v",
        partition: 0,
        epoch: 1,
        offset: 0,
        length: 4096,
      } as never),
    ).rejects.toMatchObject({ code: ErrorCode.UnexpectedMessageType });
    await service.stop("test");
    await client.connection.close();
  });

  test("shutdown finishes in-flight work, then closes resources, then stops listening", async () => {
    const service = await newService("head-e");
    const order: string[] = [];
    service.serveInbox(["volume.flush.v1"], async () => {
      order.push("handler started");
      await new Promise((resolve) => setTimeout(resolve, 300));
      order.push("handler finished");
      return { flushedOpNum: 7 };
    });
    service.onClose(() => {
      order.push("files closed");
    });
    const client = await newBus("client-e");
    const pending = client.request(subjects.node.build("headnode", "head-e"), flushMessage);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stopped = service.stop("test");
    await expect(pending).resolves.toEqual({ flushedOpNum: 7 });
    await stopped;
    expect(order).toEqual(["handler started", "handler finished", "files closed"]);
    await expect(
      client.request(subjects.node.build("headnode", "head-e"), flushMessage, { deadlineMs: 500 }),
    ).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await client.connection.close();
  });

  test("replies answered out of order reach their own requests; a closed connection fails those waiting at once", async () => {
    const service = await newService("head-f");
    // Each answer echoes the partition asked about, after a delay that reverses the order.
    service.serveInbox(["volume.flush.v1"], async (message) => {
      const partition = (message as { partition: number }).partition;
      await new Promise((resolve) => setTimeout(resolve, (20 - partition) * 5));
      return { flushedOpNum: partition };
    });
    const client = await newBus("client-f");
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, partition) =>
        client.request(subjects.node.build("headnode", "head-f"), { ...flushMessage, partition }),
      ),
    );
    expect(results).toEqual(
      Array.from({ length: 20 }, (_, partition) => ({ flushedOpNum: partition })),
    );
    // Answered only after the client has gone: its request fails as soon as it closes,
    // as Unavailable, not at its deadline as Timeout.
    const late = await newService("head-g");
    late.serveInbox(["volume.flush.v1"], async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return { flushedOpNum: 0 };
    });
    // Its subscription must reach the server first, or the request finds no listener.
    await late.bus.connection.flush();
    const pending = client.request(subjects.node.build("headnode", "head-g"), flushMessage, {
      deadlineMs: 60_000,
    });
    pending.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    await client.connection.close();
    await expect(pending).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
      message: "the NATS connection closed before the reply",
    });
    await service.stop("test");
    await late.stop("test");
  });

  test("heartbeats carry the node's identity, its interval and a rising sequence", async () => {
    const service = new Service({
      kind: "sled",
      nodeId: "sled-h",
      bus: await newBus("sled-h"),
      tracer: tracing.tracer,
      logger,
      heartbeatIntervalMs: 50,
    });
    const client = await newBus("client-h");
    const subscription = client.connection.subscribe(subjects.heartbeat.build("sled", "sled-h"), {
      max: 3,
    });
    // The subscription must reach the server before the first heartbeat goes out.
    await client.connection.flush();
    service.startHeartbeats();
    const sequences: number[] = [];
    const { decodeMessage } = await import("@ballast/protocol");
    for await (const message of subscription) {
      const heartbeat = decodeMessage(message.data);
      expect(heartbeat).toMatchObject({
        type: "heartbeat.v1",
        kind: "sled",
        nodeId: "sled-h",
        intervalMs: 50,
      });
      if (heartbeat.type === "heartbeat.v1") sequences.push(heartbeat.sequence);
    }
    expect(sequences).toEqual([0, 1, 2]);
    await service.stop("test");
    await client.connection.close();
  });
});
