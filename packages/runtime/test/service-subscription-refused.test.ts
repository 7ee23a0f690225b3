// A subscription that the NATS server refuses (a permissions violation) fails the service
// without leaving an unhandled rejection behind. Unit test on a fake connection: nats.js
// reports such a refusal by calling the subscription's callback with the error (and then
// closing it), which the fake does on demand.
//
// The service shell used to reject the subscription's `finished` promise, which nobody
// awaits until the subject is stopped: Node 20 ended the process on it with a bare
// stack trace, and a later stop of the subject rejected too.

import { expect, test } from "vitest";
import { recordUnhandledRejections } from "../../../test/support/unhandled-rejections.ts";
import type { Bus } from "../src/bus.ts";
import { createLogger } from "../src/logger.ts";
import { Service } from "../src/service.ts";

type Callback = (error: Error | null, message: unknown) => void;

/** A fake of the part of a nats.js connection the service shell subscribes with. */
class FakeConnection {
  private readonly subscriptions = new Map<string, { callback: Callback; close: () => void }>();

  subscribe(subject: string, options: { callback: Callback }) {
    let close = () => {};
    const closed = new Promise<void>((resolve) => {
      close = resolve;
    });
    this.subscriptions.set(subject, { callback: options.callback, close });
    return {
      closed,
      drain: async () => close(),
      unsubscribe: () => close(),
    };
  }

  /** As nats.js on the server's -ERR for a subscription: the callback hears, then it closes. */
  refuse(subject: string, error: Error): void {
    const subscription = this.subscriptions.get(subject);
    if (subscription === undefined) throw new Error(`no subscription to ${subject}`);
    subscription.callback(error, {});
    subscription.close();
  }

  isClosed(): boolean {
    return true;
  }
}

const unhandled = recordUnhandledRejections();

/** Lets every pending promise job and one round of the event loop run. */
async function settleTurns(): Promise<void> {
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
}

test("a subscription the server refuses fails the service, and nothing is left unhandled", async () => {
  const connection = new FakeConnection();
  const service = new Service({
    kind: "sled",
    nodeId: "sled-1",
    bus: { connection } as unknown as Bus,
    tracer: undefined,
    logger: createLogger({ service: "sled", nodeId: "sled-1", level: "silent" }),
    heartbeatIntervalMs: 1000,
  });
  const subject = "ballast.test.refused";
  const served = service.serve(subject, { accept: ["node.info.v1"] }, () => undefined);

  connection.refuse(subject, new Error("Permissions Violation for Subscription"));
  await settleTurns();
  expect(unhandled).toEqual([]);

  const reason = await Promise.race([service.failed, settleTurns().then(() => "not failed")]);
  expect(reason).toContain(subject);
  expect(reason).toContain("Permissions Violation");
  // Stopping the subject later is an ordinary stop.
  await expect(served.stop()).resolves.toBeUndefined();
  await service.stop("test over");
  await settleTurns();
  expect(unhandled).toEqual([]);
});
