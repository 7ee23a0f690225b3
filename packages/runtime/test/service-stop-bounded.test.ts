// Stopping a served subject, or the whole service, ends within the shutdown grace even
// when a handler never settles. Unit test on a fake connection (named as such below)
// and vitest's fake timers: the grace is 10 s, and the test only moves the clock.
//
// A subject's stop used to wait for its handlers with no bound. The service's own stop
// bounds them by shutdownGraceMs, but the coordinator's closer (and its loss of the
// leadership) and the head node's demotion stop subjects themselves: one handler stuck
// on something that never answered kept that stop, and so the process's SIGTERM, from
// ever ending.

import { encodeMessage } from "@ballast/protocol";
import { afterEach, expect, test, vi } from "vitest";
import { type Bus, drainNats } from "../src/bus.ts";
import { closersGraceMs, natsCloseGraceMs, shutdownGraceMs } from "../src/constants.ts";
import { createLogger } from "../src/logger.ts";
import { Service } from "../src/service.ts";

type Callback = (error: Error | null, message: unknown) => void;

/**
 * A fake of the part of a nats.js connection the service shell uses: deliver on demand.
 * A silent one is a server gone quiet without closing the socket: its drains (of a
 * subscription, of the connection) wait for a PONG that never comes.
 */
class FakeConnection {
  readonly callbacks = new Map<string, Callback>();
  closedByUs = false;

  constructor(private readonly silent = false) {}

  subscribe(subject: string, options: { callback: Callback }) {
    this.callbacks.set(subject, options.callback);
    let close = () => {};
    const closed = new Promise<void>((resolve) => {
      close = resolve;
    });
    const drain = this.silent ? () => new Promise<void>(() => undefined) : async () => close();
    return { closed, drain, unsubscribe: () => close() };
  }

  drain(): Promise<void> {
    return new Promise<void>(() => undefined);
  }

  async close(): Promise<void> {
    this.closedByUs = true;
  }

  /** A request to `subject`, as nats.js hands it to the subscription's callback. */
  request(subject: string): void {
    const callback = this.callbacks.get(subject);
    if (callback === undefined) throw new Error(`no subscription to ${subject}`);
    callback(null, {
      subject,
      reply: "_INBOX.test",
      data: encodeMessage({ type: "node.info.v1" }),
      headers: undefined,
      respond: () => true,
    });
  }

  isClosed(): boolean {
    return !this.silent || this.closedByUs;
  }
}

afterEach(() => {
  vi.useRealTimers();
});

function serviceOn(connection: FakeConnection): Service {
  return new Service({
    kind: "coordinator",
    nodeId: "coordinator-1",
    bus: { connection } as unknown as Bus,
    tracer: undefined,
    logger: createLogger({ service: "coordinator", nodeId: "coordinator-1", level: "silent" }),
    heartbeatIntervalMs: 1000,
  });
}

/** Whether `promise` has settled once the fake clock has moved `ms` on. */
async function settledAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await vi.advanceTimersByTimeAsync(ms);
  return settled;
}

test("a subject's stop ends within the shutdown grace while a handler never settles", async () => {
  vi.useFakeTimers();
  const connection = new FakeConnection();
  const service = serviceOn(connection);
  const subject = "ballast.test.stuck";
  let started = 0;
  const served = service.serve(subject, { accept: ["node.info.v1"] }, () => {
    started++;
    return new Promise<never>(() => undefined);
  });
  connection.request(subject);
  expect(started).toBe(1);

  const stop = served.stop();
  expect(await settledAfter(stop, shutdownGraceMs - 1)).toBe(false);
  expect(await settledAfter(stop, 1)).toBe(true);
  await expect(stop).resolves.toBeUndefined();
});

test("a service whose closer stops a stuck subject (the coordinator's) still stops", async () => {
  vi.useFakeTimers();
  const connection = new FakeConnection();
  const service = serviceOn(connection);
  const subject = "ballast.test.control";
  const served = service.serve(subject, { accept: ["node.info.v1"] }, () => {
    return new Promise<never>(() => undefined);
  });
  service.onClose(() => served.stop());
  connection.request(subject);

  const stop = service.stop("test over");
  // The service's wait for its handlers, then the closer's own: each bounded by the grace.
  expect(await settledAfter(stop, 2 * shutdownGraceMs + 1)).toBe(true);
  await expect(stop).resolves.toBeUndefined();
});

test("a closer that never settles (a store on a hung disk) holds the stop no longer than its grace", async () => {
  vi.useFakeTimers();
  const connection = new FakeConnection();
  const service = serviceOn(connection);
  let laterCloserRan = false;
  service.onClose(() => {
    laterCloserRan = true;
  });
  service.onClose(() => new Promise<never>(() => undefined));

  const stop = service.stop("test over");
  // No handlers and a prompt NATS close: what is left is the closers' grace.
  expect(await settledAfter(stop, closersGraceMs - 1)).toBe(false);
  expect(await settledAfter(stop, 1)).toBe(true);
  await expect(stop).resolves.toBeUndefined();
  // Closers run last registered first; the stuck one holds the ones after it, and the
  // process ends without them (as a crash would).
  expect(laterCloserRan).toBe(false);
  expect(connection.closedByUs).toBe(false);
  // The stuck closer may still write the service's files: its data directory stays locked.
  expect(service.workLeftAtStop).toBe(true);
});

test("a handler a stopped subject left running past its grace counts as work left at the service's stop", async () => {
  vi.useFakeTimers();
  const connection = new FakeConnection();
  const service = serviceOn(connection);
  const subject = "ballast.test.demoted";
  const served = service.serve(subject, { accept: ["node.info.v1"] }, () => {
    return new Promise<never>(() => undefined);
  });
  connection.request(subject);
  // A demotion stops the subject itself: released at its grace, the handler still runs.
  expect(await settledAfter(served.stop(), shutdownGraceMs)).toBe(true);
  const stop = service.stop("test over");
  expect(await settledAfter(stop, shutdownGraceMs + 1)).toBe(true);
  // It may still write the service's files: the data directory stays locked.
  expect(service.workLeftAtStop).toBe(true);
});

test("a stop that waited for every handler and closer left no work running", async () => {
  vi.useFakeTimers();
  const connection = new FakeConnection();
  const service = serviceOn(connection);
  service.serve("ballast.test.quick", { accept: ["node.info.v1"] }, () => undefined);
  service.onClose(async () => undefined);
  const stop = service.stop("test over");
  expect(await settledAfter(stop, 1)).toBe(true);
  expect(service.workLeftAtStop).toBe(false);
});

test("a service on a silent NATS server stops within its graces and closes the connection", async () => {
  vi.useFakeTimers();
  const connection = new FakeConnection(true);
  const service = serviceOn(connection);
  service.serve("ballast.test.quiet", { accept: ["node.info.v1"] }, () => undefined);

  const stop = service.stop("test over");
  // The handlers' grace (subscription drains included), then the connection's drain's.
  expect(await settledAfter(stop, shutdownGraceMs + natsCloseGraceMs + 1)).toBe(true);
  await expect(stop).resolves.toBeUndefined();
  expect(connection.closedByUs).toBe(true);
});

test("drainNats closes a connection whose drain does not end within the grace", async () => {
  vi.useFakeTimers();
  const silent = new FakeConnection(true);
  const drained = drainNats(silent, natsCloseGraceMs);
  expect(await settledAfter(drained, natsCloseGraceMs - 1)).toBe(false);
  expect(await settledAfter(drained, 1)).toBe(true);
  expect(await drained).toBe(false);
  expect(silent.closedByUs).toBe(true);
});
