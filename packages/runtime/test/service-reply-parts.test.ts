// The service shell's replies in parts (ServeOptions.repliesByReference): a handler's
// large result data goes to a link's reply by reference, the rest of the envelope around
// it, and the bytes are those of the reply encoded whole. A fake NATS connection (it
// only hands the test the subscription's callback) and fake inbound messages stand in
// for NATS and links; the real link path is in test/integration/links.test.ts.

import { decodeReply, encodeError, encodeMessage, encodeResult, subjects } from "@ballast/protocol";
import type { NatsConnection } from "@nats-io/transport-node";
import { expect, test } from "vitest";
import { Bus } from "../src/bus.ts";
import { createLogger } from "../src/logger.ts";
import { type Inbound, Service } from "../src/service.ts";

const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
const volumeSubject = subjects.volume.build("v", 0);
const read = {
  type: "volume.read.v1" as const,
  volume: "v",
  partition: 0,
  epoch: 1,
  reads: [
    { offset: 0, length: 1024 * 1024 },
    { offset: 1024 * 1024, length: 4096 },
    { offset: 2 * 1024 * 1024, length: 256 * 1024 },
  ],
};

function bytes(length: number, seed: number): Uint8Array {
  const data = new Uint8Array(length);
  for (let at = 0; at < length; at += 1021) data[at] = (seed + at) & 0xff;
  return data;
}

/** The read's answer: two ranges large enough to go by reference, one too small. */
const answer = { data: [bytes(1024 * 1024, 1), bytes(4096, 2), bytes(256 * 1024, 3)] };

/** A service on a fake NATS connection, serving `volumeSubject` with `dispatch`. */
function serving(repliesByReference: boolean | undefined, dispatch: () => unknown) {
  let deliver: ((error: Error | null, message: Inbound) => void) | undefined;
  const connection = {
    subscribe(_subject: string, options: { callback: typeof deliver }) {
      deliver = options.callback;
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
  service.serve(
    volumeSubject,
    {
      accept: ["volume.read.v1"],
      ...(repliesByReference === undefined ? {} : { repliesByReference }),
    },
    dispatch,
  );
  return (message: Inbound) => deliver!(null, message);
}

/** An inbound request recording how it was answered; `parts` false: NATS-like, no parts. */
function inbound(parts: boolean) {
  const answered: { whole: Uint8Array[]; parts: (readonly Uint8Array[])[] } = {
    whole: [],
    parts: [],
  };
  let settle: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    settle = resolve;
  });
  const message: Inbound = {
    subject: volumeSubject,
    data: encodeMessage(read),
    // A link's request is marked as one; a NATS request names an inbox to answer on.
    reply: parts ? "link" : "_INBOX.test.1",
    ...(parts ? { viaLink: true as const } : {}),
    headers: undefined,
    respond(data) {
      answered.whole.push(data);
      settle();
      return true;
    },
    ...(parts
      ? {
          respondParts(list: readonly Uint8Array[]) {
            answered.parts.push(list);
            settle();
            return true;
          },
        }
      : {}),
  };
  return { message, answered, done };
}

test("with replies by reference, a link's reply is in parts: the large data itself, the bytes of the whole", async () => {
  for (const asPromise of [false, true]) {
    const deliver = serving(true, () => (asPromise ? Promise.resolve(answer) : answer));
    const { message, answered, done } = inbound(true);
    deliver(message);
    await done;
    expect(answered.whole).toEqual([]);
    expect(answered.parts).toHaveLength(1);
    const parts = answered.parts[0]!;
    // The two large ranges are sent from where they are; the 4 KiB one is copied.
    const own = parts.filter((part) => answer.data.includes(part));
    expect(own).toHaveLength(2);
    expect(own[0]).toBe(answer.data[0]);
    expect(own[1]).toBe(answer.data[2]);
    const sent = Buffer.concat(parts);
    expect(sent.equals(Buffer.from(encodeResult(answer)))).toBe(true);
    const decoded = decodeReply("volume.read.v1", sent);
    expect(decoded.data).toHaveLength(answer.data.length);
    for (const [index, data] of decoded.data.entries()) {
      expect(Buffer.from(data).equals(Buffer.from(answer.data[index]!))).toBe(true);
    }
  }
});

test("without the option, or where a reply cannot go in parts (NATS), the reply is one buffer as before", async () => {
  for (const [byReference, parts] of [
    [undefined, true],
    [false, true],
    [true, false],
  ] as const) {
    const deliver = serving(byReference, () => answer);
    const { message, answered, done } = inbound(parts);
    deliver(message);
    await done;
    expect(answered.parts).toEqual([]);
    expect(answered.whole).toHaveLength(1);
    expect(Buffer.from(answered.whole[0]!).equals(Buffer.from(encodeResult(answer)))).toBe(true);
  }
});

test("a small result, and a handler's error, are answered whole even with replies by reference", async () => {
  const small = { data: [bytes(4096, 9)] };
  const deliver = serving(true, () => small);
  const first = inbound(true);
  deliver(first.message);
  await first.done;
  // One part: nothing large to send apart, so it is the whole encoding.
  expect(first.answered.parts).toHaveLength(1);
  expect(first.answered.parts[0]).toHaveLength(1);
  expect(Buffer.from(first.answered.parts[0]![0]!).equals(Buffer.from(encodeResult(small)))).toBe(
    true,
  );
  const failing = serving(true, () => {
    throw new Error("no such range");
  });
  const second = inbound(true);
  failing(second.message);
  await second.done;
  expect(second.answered.parts).toEqual([]);
  expect(
    Buffer.from(second.answered.whole[0]!).equals(
      Buffer.from(encodeError(new Error("no such range"))),
    ),
  ).toBe(true);
});
