// A client retrying against a fault that lasts fails the same way request after request:
// the shell's "request failed" line is said once per kind (message type and error code)
// and logRepeatIntervalMs, with the count; each failure is still answered and is a debug
// line. Unit test on a fake connection (named as such) with performance faked.

import { BallastError, ErrorCode, encodeMessage } from "@ballast/protocol";
import { expect, test, vi } from "vitest";
import type { Bus } from "../src/bus.ts";
import { logRepeatIntervalMs } from "../src/constants.ts";
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
    this.callbacks.get(message.subject)!(null, message);
  }
}

test("a request failing the same way again and again: one line per interval, each answered", async () => {
  vi.useFakeTimers({ toFake: ["performance"] });
  try {
    const connection = new FakeConnection();
    const service = new Service({
      kind: "headnode",
      nodeId: "head-1",
      bus: { connection } as unknown as Bus,
      tracer: undefined,
      logger: createLogger({ service: "headnode", nodeId: "head-1", level: "silent" }),
      heartbeatIntervalMs: 1000,
    });
    let code: ErrorCode = ErrorCode.Unavailable;
    service.serve("ballast.test.replica", { accept: ["node.info.v1"] }, () => {
      throw new BallastError(code, "the replica's journal failed in this boot");
    });
    const warn = vi.spyOn(service.logger, "warn");
    const debug = vi.spyOn(service.logger, "debug");
    let answered = 0;
    const send = async () => {
      connection.deliver({
        subject: "ballast.test.replica",
        data: encodeMessage({ type: "node.info.v1" }),
        reply: "_INBOX.retry.1",
        respond: () => {
          answered++;
          return true;
        },
      });
      await new Promise((resolve) => setImmediate(resolve));
    };
    // Retried every 500 ms for a minute.
    for (let index = 0; index < 120; index++) {
      await send();
      vi.advanceTimersByTime(500);
    }
    expect(answered).toBe(120);
    const failed = () => warn.mock.calls.filter(([, message]) => message === "request failed");
    // Old: a warning per request (120).
    expect(failed()).toHaveLength(1);
    expect(debug.mock.calls.filter(([, message]) => message === "request failed")).toHaveLength(
      119,
    );
    vi.advanceTimersByTime(logRepeatIntervalMs);
    await send();
    expect(failed()).toHaveLength(2);
    expect(failed()[1]![0]).toMatchObject({ repeatsSuppressed: 119 });
    // Another kind of failure is said at once.
    code = ErrorCode.WrongEpoch;
    await send();
    expect(failed()).toHaveLength(3);
  } finally {
    vi.useRealTimers();
  }
});
