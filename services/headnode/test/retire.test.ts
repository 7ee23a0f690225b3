// The order of retiring a replica (retire.ts), on ports the test drives: whatever fails,
// the stop of its intake is never a rejection nobody handles, which would end the head
// node (Node 20). It used to be awaited only after the close: a stop that failed while
// the close was still running, or after a close that failed, went unhandled.

import { expect, test } from "vitest";
import { recordUnhandledRejections } from "../../../test/support/unhandled-rejections.ts";
import { retireReplica } from "../src/retire.ts";

const unhandled = recordUnhandledRejections();

/** Lets every pending promise job and a few rounds of the event loop run. */
async function settleTurns(): Promise<void> {
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
}

/** A promise and the functions that settle it, for the test to call when it chooses. */
function gate() {
  let resolve: () => void = () => {};
  let reject: (error: Error) => void = () => {};
  const promise = new Promise<void>((resolveGate, rejectGate) => {
    resolve = resolveGate;
    reject = rejectGate;
  });
  return { promise, resolve, reject };
}

test("a stop that fails while the close runs is thrown once the close is done, and is handled", async () => {
  const stop = gate();
  const close = gate();
  const retired = retireReplica({
    stopIntake: () => stop.promise,
    closeReplica: () => close.promise,
  });
  const outcome = retired.then(
    () => "retired",
    (error: Error) => error.message,
  );
  stop.reject(new Error("the subscription's stop failed"));
  await settleTurns();
  expect(unhandled).toEqual([]);
  close.resolve();
  expect(await outcome).toBe("the subscription's stop failed");
  await settleTurns();
  expect(unhandled).toEqual([]);
});

test("a close that fails is thrown at once, and a stop that fails after it is handled", async () => {
  const stop = gate();
  const retired = retireReplica({
    stopIntake: () => stop.promise,
    closeReplica: async () => {
      throw new Error("the journal could not be closed");
    },
  });
  await expect(retired).rejects.toThrow("the journal could not be closed");
  stop.reject(new Error("the subscription's stop failed"));
  await settleTurns();
  expect(unhandled).toEqual([]);
});

test("the handlers are awaited after the close, not before", async () => {
  const order: string[] = [];
  const stop = gate();
  const retired = retireReplica({
    stopIntake: () => stop.promise.then(() => void order.push("handlers done")),
    closeReplica: async () => {
      order.push("closed");
      // Held requests are answered by the close: only then can the handlers finish.
      stop.resolve();
    },
  });
  await retired;
  expect(order).toEqual(["closed", "handlers done"]);
});
