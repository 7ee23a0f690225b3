// A subscription's deliveries (service.ts `Deliveries`) under a load that never lets the
// backlog empty: a closed loop of clients with more requests out than the handlers it
// runs at once, each sending its next as soon as one is answered. Unit test: messages
// are plain objects and handlers are promises the test settles.
//
// The backlog was emptied (its slots dropped) only when it had run dry; otherwise each
// message handled left its slot behind, so the array grew by one per message for as long
// as the load lasted (gigabytes a day for a busy partition or sled).

import { expect, test } from "vitest";
import { backlogCompactSlotsMin } from "../src/constants.ts";
import { createLogger } from "../src/logger.ts";
import { Deliveries } from "../src/service.ts";

test("a backlog that never empties keeps slots only for what waits, and hands out every message in order", async () => {
  const handled: number[] = [];
  const running: (() => void)[] = [];
  const deliveries = new Deliveries(
    (raw) => {
      handled.push((raw as unknown as { n: number }).n);
      return new Promise<void>((resolve) => running.push(resolve));
    },
    2,
    createLogger({ service: "sled", nodeId: "test", level: "silent" }),
    () => undefined,
  );
  const deliver = (n: number) => deliveries.deliver(null, { n } as never);
  // Two handlers running and three waiting, then one more for every one answered.
  let next = 0;
  for (; next < 5; next++) deliver(next);
  const messages = 20 * backlogCompactSlotsMin;
  let slotsMax = 0;
  for (; next < messages; next++) {
    deliver(next);
    running.shift()!();
    await Promise.resolve();
    await Promise.resolve();
    slotsMax = Math.max(slotsMax, deliveries.backlogSlots);
  }
  expect(slotsMax).toBeLessThanOrEqual(2 * backlogCompactSlotsMin + 4);
  // Nothing lost or reordered: the handlers started in delivery order.
  for (const resolve of running.splice(0)) resolve();
  while (handled.length < messages) {
    await new Promise((resolve) => setImmediate(resolve));
    for (const resolve of running.splice(0)) resolve();
  }
  expect(handled).toEqual(Array.from({ length: messages }, (_, n) => n));
  expect(deliveries.backlogSlots).toBe(0);
});
