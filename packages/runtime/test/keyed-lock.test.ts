import { describe, expect, test } from "vitest";
import { KeyedLock } from "../src/index.ts";

/** A promise and the functions that settle it, so a test decides when work ends. */
function gate(): { promise: Promise<void>; open: () => void; fail: (error: Error) => void } {
  let open!: () => void;
  let fail!: (error: Error) => void;
  const promise = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { promise, open, fail };
}

describe("KeyedLock", () => {
  test("work on one key runs one at a time, in arrival order", async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const first = gate();
    const a = lock.run("k", async () => {
      events.push("a start");
      await first.promise;
      events.push("a end");
      return 1;
    });
    const b = lock.run("k", async () => {
      events.push("b start");
      return 2;
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(events).toEqual(["a start"]);
    first.open();
    expect(await a).toBe(1);
    expect(await b).toBe(2);
    expect(events).toEqual(["a start", "a end", "b start"]);
  });

  test("different keys run concurrently", async () => {
    const lock = new KeyedLock();
    const held = gate();
    const events: string[] = [];
    const a = lock.run("a", async () => {
      await held.promise;
      events.push("a");
    });
    await lock.run("b", async () => {
      events.push("b");
    });
    expect(events).toEqual(["b"]);
    held.open();
    await a;
    expect(events).toEqual(["b", "a"]);
  });

  test("a failure reaches its own caller only, and the next work still runs", async () => {
    const lock = new KeyedLock();
    const failing = gate();
    const a = lock.run("k", () => failing.promise);
    const b = lock.run("k", async () => "after");
    failing.fail(new Error("boom"));
    await expect(a).rejects.toThrow("boom");
    expect(await b).toBe("after");
  });

  test("a key is forgotten once its last work finishes", async () => {
    const lock = new KeyedLock();
    const held = gate();
    const a = lock.run("k", () => held.promise);
    const b = lock.run("k", async () => undefined);
    expect(lock.size).toBe(1);
    held.open();
    await a;
    await b;
    // The entry is dropped a microtask after the tail settles.
    await new Promise((resolve) => setImmediate(resolve));
    expect(lock.size).toBe(0);
  });
});
