// A service answers a NATS request only on an _INBOX reply subject. Unit test on a fake
// connection (named as such below): the real server is in test/integration/nats-access.
//
// NATS checks a publisher's permission on a message's subject, not on its reply subject,
// and the responder publishes the reply as its own user. The shell used to answer any
// non-empty reply subject: a client asking the coordinator for a volume's description,
// with `$KV.ballast-control.leader` as its reply subject, had the coordinator overwrite
// its own leader record.

import { encodeMessage, limits } from "@ballast/protocol";
import { expect, test, vi } from "vitest";
import type { Bus } from "../src/bus.ts";
import { repliesRefusedLogIntervalMs, requestDeadlineMsMax } from "../src/constants.ts";
import { createLogger } from "../src/logger.ts";
import { type Inbound, Service } from "../src/service.ts";

type Callback = (error: Error | null, message: Inbound) => void;

/** A fake of the part of a nats.js connection the service shell uses: deliver on demand. */
class FakeConnection {
  readonly callbacks = new Map<string, Callback>();

  subscribe(subject: string, options: { callback: Callback }) {
    this.callbacks.set(subject, options.callback);
    return { closed: new Promise<void>(() => undefined), drain: async () => undefined };
  }

  deliver(message: Inbound): void {
    const callback = this.callbacks.get(message.subject);
    if (callback === undefined) throw new Error(`no subscription to ${message.subject}`);
    callback(null, message);
  }
}

const subject = "ballast.test.control";

function setUp() {
  const connection = new FakeConnection();
  const service = new Service({
    kind: "coordinator",
    nodeId: "coordinator-1",
    bus: { connection } as unknown as Bus,
    tracer: undefined,
    logger: createLogger({ service: "coordinator", nodeId: "coordinator-1", level: "silent" }),
    heartbeatIntervalMs: 1000,
  });
  const dispatched: string[] = [];
  service.serve(subject, { accept: ["node.info.v1"] }, (_message, context) => {
    dispatched.push(context.isRequest ? "request" : "publish");
    return { ok: true };
  });
  /** Delivers a request with `reply`; returns how many replies the shell sent. */
  const send = (reply: string | undefined, viaLink?: true): number => {
    let replies = 0;
    connection.deliver({
      subject,
      data: encodeMessage({ type: "node.info.v1" }),
      reply,
      ...(viaLink === undefined ? {} : { viaLink }),
      respond: () => {
        replies++;
        return true;
      },
    });
    return replies;
  };
  return { send, dispatched, service };
}

test("a request whose reply subject is not an inbox is neither run nor answered", () => {
  const { send, dispatched } = setUp();
  for (const reply of [
    "$KV.ballast-control.leader",
    "$KV.ballast-control.volume.victim",
    "$JS.API.STREAM.PURGE.KV_ballast-control",
    "ballast.v1.replica.victim.0.head-1",
    "_INBOX.",
    "_INBOX",
    "link",
  ]) {
    expect(send(reply), reply).toBe(0);
  }
  expect(dispatched).toEqual([]);
});

test("a request with an inbox reply, one by link, and a publish are all handled", () => {
  const { send, dispatched } = setUp();
  expect(send("_INBOX.Jx1c2.7")).toBe(1);
  expect(send("link", true)).toBe(1);
  expect(send(undefined)).toBe(0);
  expect(dispatched).toEqual(["request", "request", "publish"]);
});

test("nats-server lets a service answer for as long as any requester may wait", () => {
  // Replies go by allow_responses, which expires after replyPermissionMs (permissions.ts).
  expect(requestDeadlineMsMax).toBeLessThanOrEqual(limits.replyPermissionMs);
});

test("a flood of such requests is logged a line an interval, each counted in the line", () => {
  vi.useFakeTimers({ toFake: ["performance"] });
  try {
    const { send, service } = setUp();
    const warn = vi.spyOn(service.logger, "warn");
    for (let index = 0; index < 1000; index++) send("$KV.ballast-control.leader");
    expect(warn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(repliesRefusedLogIntervalMs);
    send("$KV.ballast-control.leader");
    expect(warn).toHaveBeenCalledTimes(2);
    // The second line counts the 999 dropped unlogged after the first, and itself.
    expect(warn.mock.calls[1]![0]).toMatchObject({ droppedSinceLastLine: 1000 });
  } finally {
    vi.useRealTimers();
  }
});
