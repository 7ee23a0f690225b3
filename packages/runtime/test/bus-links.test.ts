// The Bus's side of links with a fake NATS connection: what goes by link and what by
// NATS, and when a route is given up. The fake answers link offers as a head node's
// service shell would (a sealed token for a real LinkServer on loopback) and any other
// request as a NATS-reached server, counting them.

import {
  BallastError,
  decodeMessage,
  ErrorCode,
  encodeError,
  encodeResult,
  subjects,
} from "@ballast/protocol";
import type { NatsConnection, Status } from "@nats-io/transport-node";
import { afterEach, expect, test } from "vitest";
import { Bus } from "../src/bus.ts";
import { SealKeys } from "../src/link-seal.ts";
import { type LinkMessage, LinkServer } from "../src/link-server.ts";
import { createLogger } from "../src/logger.ts";
import { Service } from "../src/service.ts";

const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
const volumeSubject = subjects.volume.build("v", 0);
const flush = { type: "volume.flush.v1" as const, volume: "v", partition: 0, epoch: 1 };

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** A NATS connection in memory: offers answered for `server`, other requests counted. */
function fakeNats(server: LinkServer) {
  const keys = new SealKeys();
  const inboxes: ((error: Error | null, message: unknown) => void)[] = [];
  // Each reader of status() gets every status, as nats.js's do (the Bus has two).
  const readers = new Set<{ queue: Status[]; wake: () => void }>();
  let closeNow: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    closeNow = resolve;
  });
  const counts = { requests: 0 };
  const connection = {
    subscribe(_subject: string, options: { callback: (typeof inboxes)[number] }) {
      inboxes.push(options.callback);
      return {};
    },
    publish(_subject: string, data: Uint8Array, options: { reply?: string } = {}) {
      if (options.reply === undefined) return;
      const message = decodeMessage(data);
      let reply: Uint8Array;
      if (message.type === "link.offer.v1") {
        reply = encodeResult({
          nodeId: "n1",
          scope: "volume",
          address: server.address,
          key: keys.publicKey,
          sealed: keys.seal(message.key, server.tokenFor("volume")),
        });
      } else {
        counts.requests += 1;
        reply = encodeResult({ flushedOpNum: 0 });
      }
      const to = options.reply;
      queueMicrotask(() => {
        for (const inbox of inboxes) inbox(null, { subject: to, data: reply, headers: undefined });
      });
    },
    closed: () => closed,
    async *status() {
      const reader: { queue: Status[]; wake: () => void } = { queue: [], wake: () => undefined };
      readers.add(reader);
      for (;;) {
        while (reader.queue.length > 0) yield reader.queue.shift()!;
        await new Promise<void>((resolve) => {
          reader.wake = resolve;
        });
      }
    },
  };
  return {
    connection: connection as unknown as NatsConnection,
    counts,
    status(status: Status) {
      for (const reader of readers) {
        reader.queue.push(status);
        reader.wake();
      }
    },
    close: closeNow,
  };
}

async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function linkedBus(answer: (message: LinkMessage) => void) {
  const server = await LinkServer.listen({
    host: "127.0.0.1",
    port: 0,
    advertise: "127.0.0.1",
    logger,
  });
  cleanup.push(() => server.close());
  server.route(volumeSubject, "volume", answer);
  const nats = fakeNats(server);
  cleanup.push(() => nats.close());
  const bus = new Bus(nats.connection, undefined);
  bus.enableLinks(["volume"]);
  // The first request goes over NATS and asks for a link in the background.
  await bus.request(volumeSubject, flush);
  await waitUntil(() => bus.linkStats().routed === 1);
  return { bus, nats, server };
}

test("a reply over a link saying its server no longer serves forgets the route; the next goes over NATS", async () => {
  for (const code of [
    ErrorCode.Unavailable,
    ErrorCode.NotPrimary,
    ErrorCode.WrongEpoch,
    ErrorCode.ShuttingDown,
  ]) {
    const { bus, nats } = await linkedBus((message) =>
      message.respond(encodeError(new BallastError(code, "read lease ran out"))),
    );
    // The reply is the caller's, as it came.
    await expect(bus.request(volumeSubject, flush)).rejects.toMatchObject({ code });
    expect(bus.linkStats().link.requests).toBe(1);
    expect(bus.linkStats().routed).toBe(0);
    expect(bus.linkStats().fallbacks["not-serving"]).toBe(1);
    const overNats = nats.counts.requests;
    await bus.request(volumeSubject, flush);
    expect(nats.counts.requests).toBe(overNats + 1);
  }
});

test("other errors in a reply over a link keep the route", async () => {
  const { bus } = await linkedBus((message) =>
    message.respond(encodeError(new BallastError(ErrorCode.InvalidArgument, "no"))),
  );
  await expect(bus.request(volumeSubject, flush)).rejects.toMatchObject({
    code: ErrorCode.InvalidArgument,
  });
  expect(bus.linkStats().routed).toBe(1);
});

test("while NATS is disconnected no link is used; after it reconnects links are learned again", async () => {
  const served: LinkMessage[] = [];
  const { bus, nats } = await linkedBus((message) => {
    served.push(message);
    message.respond(encodeResult({ flushedOpNum: served.length }));
  });
  await bus.request(volumeSubject, flush);
  expect(served).toHaveLength(1);
  nats.status({ type: "disconnect", server: "nats://127.0.0.1:4222" } as Status);
  await waitUntil(() => bus.linkStats().routed === 0);
  const overNats = nats.counts.requests;
  await bus.request(volumeSubject, flush);
  await new Promise((resolve) => setTimeout(resolve, 50));
  await bus.request(volumeSubject, flush);
  expect(nats.counts.requests).toBe(overNats + 2);
  expect(served).toHaveLength(1);
  expect(bus.linkStats().routed).toBe(0);
  nats.status({ type: "reconnect", server: "nats://127.0.0.1:4222" } as Status);
  await new Promise((resolve) => setTimeout(resolve, 1100)); // past the offer backoff
  await bus.request(volumeSubject, flush);
  await waitUntil(() => bus.linkStats().routed === 1);
  await bus.request(volumeSubject, flush);
  expect(served).toHaveLength(2);
});

test("serve refuses a link scope with a queue group, or a subject outside the scope, before subscribing", () => {
  let subscribed = 0;
  const connection = {
    subscribe() {
      subscribed += 1;
      return { closed: new Promise(() => undefined) };
    },
    closed: () => new Promise(() => undefined),
  } as unknown as NatsConnection;
  const service = new Service({
    kind: "headnode",
    nodeId: "n1",
    bus: new Bus(connection, undefined),
    tracer: undefined,
    logger,
    heartbeatIntervalMs: 1000,
  });
  const refusal = (serve: () => unknown) => {
    try {
      serve();
    } catch (error) {
      return error;
    }
    return undefined;
  };
  const dispatch = () => undefined;
  const queued = refusal(() =>
    service.serve(
      volumeSubject,
      { accept: ["volume.flush.v1"], queue: "q", link: "volume" },
      dispatch,
    ),
  );
  expect(queued).toBeInstanceOf(BallastError);
  expect((queued as BallastError).code).toBe(ErrorCode.InvalidArgument);
  const outside = refusal(() =>
    service.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "replica" }, dispatch),
  );
  expect(outside).toBeInstanceOf(BallastError);
  expect((outside as BallastError).code).toBe(ErrorCode.InvalidArgument);
  expect(subscribed).toBe(0);
  expect(service.subjects).toEqual([]);
});
