// A NATS server whose machine vanishes without closing the socket is noticed by the
// client's pings: after natsPingsOutMax of them go unanswered, the connection is taken
// for dead and replaced (bus.ts `connectNats`). Without them set, nats.js pings every
// 2 minutes and allows 2 out: such a server went unnoticed for 4 to 6 minutes.
//
// A real nats-server, a responder on a direct connection, and a client whose
// connection goes through a proxy (test/support/silent-proxy.ts) that silences it: the
// socket stays open and nothing comes through either way. New connections through the
// proxy are carried, so the client reaches the server as soon as it dials again. The
// client's ping interval is shortened to pingIntervalMs so that this takes about a
// second; the test waits at most `noticedWithinMs`, well past the bound the settings
// give and far below the 40 s the default interval would take (let alone nats.js's).

import { connectCli, type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { type BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { Bus, connectNats, constants, createLogger, Service } from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { temporaryDirectory, waitFor } from "../support/cluster.ts";
import { type SilentProxy, startSilentProxy } from "../support/silent-proxy.ts";

const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
/** The client's ping interval in this test. */
const pingIntervalMs = 200;
/** When a silent server is taken for dead at the latest: pings out, then one more. */
const staleBoundMs = (constants.natsPingsOutMax + 1) * pingIntervalMs;
/** What the test waits for that: the bound, with room for a loaded 2-core machine. */
const noticedWithinMs = staleBoundMs + 3000;

let nats: RunningNatsServer;
let removeDirectory: () => Promise<void>;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  const directory = await temporaryDirectory("ballast-nats-silent-");
  removeDirectory = directory.remove;
  nats = await startNatsServer({ directory: directory.path });
});
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await nats?.stop();
  await removeDirectory?.();
});

function portOf(url: string): number {
  return Number(new URL(url).port);
}

/**
 * Serves `volume.flush.v1` on head-r's inbox over a direct connection; each answer is
 * held while `hold` is set. `seen` counts the requests that reached it.
 */
async function startResponder() {
  const connection = await connectNats({ servers: nats.url, name: "responder", logger });
  const service = new Service({
    kind: "headnode",
    nodeId: "head-r",
    bus: new Bus(connection, undefined),
    tracer: undefined,
    logger,
    heartbeatIntervalMs: 1000,
  });
  const state = { seen: 0, hold: undefined as Promise<void> | undefined };
  service.serveInbox(["volume.flush.v1"], async () => {
    state.seen++;
    await state.hold;
    return { flushedOpNum: state.seen };
  });
  cleanups.push(() => service.stop("test"));
  return state;
}

const flush = (bus: Bus, deadlineMs: number) =>
  bus.request(
    subjects.node.build("headnode", "head-r"),
    { type: "volume.flush.v1", volume: "v", partition: 0, epoch: 1 },
    { deadlineMs },
  );

describe("a NATS server that goes silent", () => {
  test("the client notices within its ping bound and reconnects; a request in flight fails at its deadline and a retry succeeds", async () => {
    const responder = await startResponder();
    const proxy: SilentProxy = await startSilentProxy(portOf(nats.url));
    cleanups.push(() => proxy.close());
    const connection = await connectNats({
      servers: proxy.url,
      name: "client",
      logger,
      pingIntervalMs,
    });
    cleanups.push(() => connection.close());
    /** What the connection went through; a ping as `ping <pings unanswered, itself included>`. */
    const statuses: string[] = [];
    void (async () => {
      for await (const status of connection.status()) {
        statuses.push(status.type === "ping" ? `ping ${status.pendingPings}` : status.type);
      }
    })();
    const client = new Bus(connection, undefined);
    expect(await flush(client, 5000)).toEqual({ flushedOpNum: 1 });
    expect(proxy.accepted).toBe(1);

    // A request reaches the responder, whose answer waits; then the client's connection
    // goes silent, and the answer is lost on its way back.
    let release = () => {};
    responder.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const deadlineMs = 1500;
    const inFlight = flush(client, deadlineMs).then(
      () => "answered",
      (error: BallastError) => error.code,
    );
    await waitFor(
      "the request to reach the responder",
      () => (responder.seen === 2 ? true : undefined),
      5000,
    );
    proxy.silence();
    release();
    responder.hold = undefined;

    // Unanswered pings: the connection is dropped as stale, and a new one is dialled.
    await waitFor(
      "the client to take the silent connection for dead",
      () =>
        statuses.includes("staleConnection") && statuses.includes("disconnect") ? true : undefined,
      noticedWithinMs,
    );
    // It gave up at the tick after natsPingsOutMax pings went unanswered, not before.
    expect(statuses[statuses.indexOf("staleConnection") - 1]).toBe(
      `ping ${constants.natsPingsOutMax + 1}`,
    );
    // The answer never comes back: the request fails at its deadline, it does not hang.
    expect(await inFlight).toBe(ErrorCode.Timeout);
    await waitFor(
      "the client to reconnect",
      () => (statuses.includes("reconnect") ? true : undefined),
      5000,
    );
    expect(proxy.accepted).toBe(2);

    // The caller's retry, as clients retry a Timeout, is answered over the new connection.
    expect(await flush(client, 5000)).toEqual({ flushedOpNum: 3 });
  });

  // A command's close drained its connection with no bound of its own: on a silent
  // server the drain's flush waits for a PONG until the default pings run out (30 to
  // 40 s), so a command that had already failed (its request at the deadline) took that
  // long more to end. Now it closes within natsCloseGraceMs. The test's timeout sits
  // between the two.
  test("a command's connection to a silent server closes within the close grace", {
    timeout: constants.natsCloseGraceMs + 10_000,
  }, async () => {
    expect(constants.natsPingIntervalMs * constants.natsPingsOutMax).toBeGreaterThan(
      constants.natsCloseGraceMs + 10_000,
    );
    const proxy = await startSilentProxy(portOf(nats.url));
    cleanups.push(() => proxy.close());
    const cli = await connectCli({ natsUrl: proxy.url, source: "test", access: {} });
    expect(await cli.connection.flush().then(() => "flushed")).toBe("flushed");
    proxy.silence();
    await cli.close();
    expect(cli.connection.isClosed()).toBe(true);
  });

  test("a ping interval out of bounds is refused before connecting", async () => {
    for (const bad of [
      constants.natsPingIntervalMsMin - 1,
      1.5,
      constants.natsPingIntervalMsMax + 1,
    ]) {
      const attempt = connectNats({ servers: nats.url, name: "bad", logger, pingIntervalMs: bad });
      await expect(attempt).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
        message: expect.stringContaining(`got ${bad}`),
      });
    }
  });
});
