// The server-wide payload budget: bytes are taken up to the bound, given back, and
// handed to waiters first come, first served.

import { expect, test } from "vitest";
import { PayloadBudget } from "../src/payload-budget.ts";

test("takes up to its bound, then waiters are served in the order they came", async () => {
  const budget = new PayloadBudget(100);
  await budget.take(60);
  const served: string[] = [];
  const large = budget.take(80).then(() => served.push("large"));
  // It would fit now, but the large request came first and is not passed over.
  const small = budget.take(10).then(() => served.push("small"));
  await Promise.resolve();
  expect(served).toEqual([]);
  expect(budget.held).toBe(60);
  budget.give(60);
  await large;
  await small;
  expect(served).toEqual(["large", "small"]);
  expect(budget.held).toBe(90);
  budget.give(80);
  budget.give(10);
  expect(budget.held).toBe(0);
});

test("a request larger than the bound, or giving back more than was taken, is a bug", () => {
  const budget = new PayloadBudget(100);
  expect(() => budget.take(101)).toThrow(/can never fit/);
  expect(() => budget.give(1)).toThrow(/more payload bytes than were taken/);
});

test("tryTake takes free bytes at once, and nothing when they are not free or someone waits", async () => {
  const budget = new PayloadBudget(100);
  expect(budget.tryTake(70)).toBe(true);
  expect(budget.tryTake(31)).toBe(false);
  expect(budget.held).toBe(70);
  const waiting = budget.take(50);
  // 20 bytes are free, but a waiter came first: not passed over.
  expect(budget.tryTake(20)).toBe(false);
  budget.give(70);
  await waiting;
  expect(budget.held).toBe(50);
  expect(() => budget.tryTake(101)).toThrow(/can never fit/);
});
