// Which sleds a head node asks last (slow-sleds.ts): a hold after each request that
// showed a sled slow, doubled when it is slow again soon after a hold ends, up to a cap,
// and back to the first length once it has stayed fast for a hold; and what it tells
// operators of each hold. Time is passed in.

import { expect, test } from "vitest";
import { SlowSleds, sledSlowHoldMs, sledSlowHoldMsMax } from "../src/slow-sleds.ts";

test("a sled seen slow is asked last for a hold from the last request that showed it", () => {
  const slow = new SlowSleds();
  expect(slow.mark("sled-2", 0)).toBe(true);
  expect(slow.order(["sled-1", "sled-2", "sled-3"], 1)).toEqual(["sled-1", "sled-3", "sled-2"]);
  // Seen slow again within the hold: it runs from then, and it is not news.
  expect(slow.mark("sled-2", 10_000)).toBe(false);
  expect(slow.isSlow("sled-2", 10_000 + sledSlowHoldMs - 1)).toBe(true);
  expect(slow.isSlow("sled-2", 10_000 + sledSlowHoldMs)).toBe(false);
  const none = ["sled-1", "sled-2"];
  expect(slow.order(none, 10_000 + sledSlowHoldMs)).toBe(none);
});

test("a sled slow again soon after its hold ends is held twice as long, up to the cap", () => {
  const slow = new SlowSleds();
  let nowMs = 0;
  let holdMs = sledSlowHoldMs;
  slow.mark("sled-1", nowMs);
  for (let round = 0; round < 10; round++) {
    nowMs += holdMs; // the hold ends, and the first request after it finds it slow
    expect(slow.isSlow("sled-1", nowMs)).toBe(false);
    expect(slow.mark("sled-1", nowMs)).toBe(true);
    holdMs = Math.min(holdMs * 2, sledSlowHoldMsMax);
    expect(slow.isSlow("sled-1", nowMs + holdMs - 1)).toBe(true);
    expect(slow.isSlow("sled-1", nowMs + holdMs)).toBe(false);
  }
  expect(holdMs).toBe(sledSlowHoldMsMax);
  // Fast for a whole hold after the last ended: the next hold is the first length again.
  nowMs += 2 * holdMs;
  expect(slow.isSlow("sled-1", nowMs)).toBe(false);
  slow.mark("sled-1", nowMs);
  expect(slow.isSlow("sled-1", nowMs + sledSlowHoldMs)).toBe(false);
});

test("its holds say how long each sled has been slow, across doubled holds, and how much is left", () => {
  const slow = new SlowSleds();
  slow.mark("sled-2", 1_000);
  slow.mark("sled-2", 11_000); // seen slow again within the hold: it runs from here
  expect(slow.holdsAt(21_000)).toEqual([
    {
      sled: "sled-2",
      slowForMs: 20_000,
      holdLeftMs: sledSlowHoldMs - 10_000,
      holdMs: sledSlowHoldMs,
    },
  ]);
  // Its hold ends, and the next try finds it slow: a doubled hold, slow since the first.
  const againMs = 11_000 + sledSlowHoldMs + 5_000;
  expect(slow.holdsAt(againMs - 1)).toEqual([]);
  slow.mark("sled-2", againMs);
  expect(slow.holdsAt(againMs + 0.4)).toEqual([
    {
      sled: "sled-2",
      slowForMs: againMs - 1_000,
      holdLeftMs: 2 * sledSlowHoldMs,
      holdMs: 2 * sledSlowHoldMs,
    },
  ]);
  // Fast for a whole hold after that one ends: slow again is a new run, counted from then.
  const newRunMs = againMs + 2 * sledSlowHoldMs + 2 * sledSlowHoldMs;
  slow.mark("sled-2", newRunMs);
  expect(slow.holdsAt(newRunMs + 3_000)).toEqual([
    {
      sled: "sled-2",
      slowForMs: 3_000,
      holdLeftMs: sledSlowHoldMs - 3_000,
      holdMs: sledSlowHoldMs,
    },
  ]);
});
