// The in-flight bound of one connection: a request count and a payload byte budget.

import { describe, expect, test } from "vitest";
import { InflightLimiter } from "../src/inflight-limiter.ts";

/** Whether `promise` has settled after pending callbacks ran. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => {
    settled = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

describe("InflightLimiter", () => {
  test("waits at the request limit until a request ends", async () => {
    const limiter = new InflightLimiter(2, 1000);
    limiter.begin(0);
    limiter.begin(0);
    const room = limiter.whenRoomFor(0);
    expect(await isSettled(room)).toBe(false);
    limiter.end(0);
    expect(await isSettled(room)).toBe(true);
  });

  test("waits until the payload fits in the byte budget", async () => {
    const limiter = new InflightLimiter(10, 1000);
    limiter.begin(600);
    limiter.begin(300);
    const room = limiter.whenRoomFor(500);
    expect(await isSettled(room)).toBe(false);
    limiter.end(300);
    expect(await isSettled(room)).toBe(false);
    limiter.end(600);
    expect(await isSettled(room)).toBe(true);
    expect(limiter.requestCount).toBe(0);
  });

  test("whenIdle resolves once every request has ended", async () => {
    const limiter = new InflightLimiter(4, 1000);
    await limiter.whenIdle();
    limiter.begin(10);
    limiter.begin(20);
    const idle = limiter.whenIdle();
    limiter.end(10);
    expect(await isSettled(idle)).toBe(false);
    limiter.end(20);
    expect(await isSettled(idle)).toBe(true);
  });

  test("counting out more than was counted in is a bug", () => {
    const limiter = new InflightLimiter(4, 1000);
    expect(() => limiter.end(0)).toThrow(/never begun/);
    expect(() => limiter.whenRoomFor(1001)).toThrow(/can never fit/);
  });

  test("hasRoomFor says at once whether whenRoomFor would resolve without waiting", async () => {
    const limiter = new InflightLimiter(2, 1000);
    expect(limiter.hasRoomFor(1000)).toBe(true);
    limiter.begin(600);
    expect(limiter.hasRoomFor(400)).toBe(true);
    expect(limiter.hasRoomFor(401)).toBe(false);
    expect(await isSettled(limiter.whenRoomFor(401))).toBe(false);
    limiter.end(600);
    limiter.begin(0);
    limiter.begin(0);
    expect(limiter.hasRoomFor(0)).toBe(false);
    expect(() => limiter.hasRoomFor(1001)).toThrow(/can never fit in 1000/);
  });
});
