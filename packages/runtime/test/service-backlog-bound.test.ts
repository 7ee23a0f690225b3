// A subscription's backlog is bounded: past backlogMessagesMax messages or backlogBytesMax
// bytes waiting for a handler slot, a request is answered Unavailable at once and never
// handled, and a publish is dropped. Unit test on a fake connection (named as such
// below) whose handler never finishes: a receiver slower than its senders (a sled on a
// slow disk). Before, nats.js delivered every message and the backlog kept them all.

import {
  type BallastError,
  decodeReply,
  ErrorCode,
  encodeMessage,
  isBallastError,
} from "@ballast/protocol";
import { expect, test } from "vitest";
import type { Bus } from "../src/bus.ts";
import { backlogBytesMax, backlogMessagesMax } from "../src/constants.ts";
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

const subject = "ballast.test.slow";

function setUp() {
  const connection = new FakeConnection();
  const service = new Service({
    kind: "sled",
    nodeId: "sled-1",
    bus: { connection } as unknown as Bus,
    tracer: undefined,
    logger: createLogger({ service: "sled", nodeId: "sled-1", level: "silent" }),
    heartbeatIntervalMs: 1000,
  });
  let handled = 0;
  // One handler at a time, and it never finishes: everything after the first waits.
  service.serve(subject, { accept: ["node.info.v1"], inflightMax: 1 }, () => {
    handled++;
    return new Promise(() => undefined);
  });
  /** Delivers a request (or a publish, with `reply` ""); returns the replies it got. */
  const send = (data: Uint8Array, reply = "_INBOX.test.1"): Uint8Array[] => {
    const replies: Uint8Array[] = [];
    connection.deliver({
      subject,
      data,
      reply,
      respond: (bytes) => {
        replies.push(bytes);
        return true;
      },
    });
    return replies;
  };
  return { send, handled: () => handled };
}

const request = encodeMessage({ type: "node.info.v1" });

function unavailable(replies: Uint8Array[]): boolean {
  if (replies.length !== 1) return false;
  try {
    decodeReply("node.info.v1", replies[0]!);
    return false;
  } catch (error) {
    return isBallastError(error) && (error as BallastError).code === ErrorCode.Unavailable;
  }
}

test("past backlogMessagesMax waiting, a request is answered Unavailable at once and not handled", () => {
  const { send, handled } = setUp();
  expect(send(request)).toEqual([]); // running
  for (let n = 0; n < backlogMessagesMax; n++) expect(send(request)).toEqual([]);
  const turnedAway = send(request);
  expect(unavailable(turnedAway)).toBe(true);
  // A publish past the bound is dropped: no reply, never handled.
  expect(send(request, "")).toEqual([]);
  expect(handled()).toBe(1);
});

test("past backlogBytesMax waiting, a request is answered Unavailable; one at an empty backlog is kept", () => {
  const { send } = setUp();
  expect(send(request)).toEqual([]); // running
  // Larger than the whole bound, but the backlog is empty: it waits.
  const large = new Uint8Array(backlogBytesMax + 1);
  expect(send(large)).toEqual([]);
  // Anything more would be past the bytes bound.
  expect(unavailable(send(request))).toBe(true);
});
