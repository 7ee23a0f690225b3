import { expect, test } from "vitest";
import { GroupCommit } from "../src/group-commit.ts";

/** A sync whose completion the test controls. */
function controlledSync() {
  const started: (() => void)[] = [];
  const sync = () => new Promise<void>((resolve) => started.push(resolve));
  return { started, sync };
}

test("callers during a running sync share the next one, never the running one", async () => {
  const { started, sync } = controlledSync();
  const commit = new GroupCommit(sync);
  const order: string[] = [];
  const first = commit.sync().then(() => order.push("first"));
  const second = commit.sync().then(() => order.push("second"));
  const third = commit.sync().then(() => order.push("third"));
  expect(started).toHaveLength(1);
  started[0]!();
  await first;
  await Promise.resolve();
  // The second and third arrived while the first ran: one more sync covers both.
  expect(order).toEqual(["first"]);
  expect(started).toHaveLength(2);
  started[1]!();
  await Promise.all([second, third]);
  expect(order).toEqual(["first", "second", "third"]);
  expect(commit.syncs).toBe(2);
});

test("a failed sync fails every caller that shares it", async () => {
  let calls = 0;
  const commit = new GroupCommit(async () => {
    calls++;
    throw new Error("EIO");
  });
  const results = await Promise.allSettled([commit.sync(), commit.sync(), commit.sync()]);
  expect(results.every((result) => result.status === "rejected")).toBe(true);
  // The failure is latched: the callers that joined the next sync get it without one.
  expect(calls).toBe(1);
});

test("a caller that joined the sync after a failed one fails too, and so does every later caller", async () => {
  // The first fdatasync fails; the second would succeed. The joiner's write was in the
  // page cache when the first failed, so the second proves nothing for it.
  const results: ("fail" | "ok")[] = ["fail", "ok", "ok"];
  let calls = 0;
  const pending: (() => void)[] = [];
  const commit = new GroupCommit(
    () =>
      new Promise<void>((resolve, reject) => {
        const outcome = results[calls++];
        pending.push(() => (outcome === "fail" ? reject(new Error("EIO")) : resolve()));
      }),
  );
  const first = commit.sync();
  const joiner = commit.sync();
  pending[0]!();
  await expect(first).rejects.toThrow("EIO");
  await Promise.resolve();
  pending[1]?.();
  await expect(joiner).rejects.toThrow("EIO");
  await expect(commit.sync()).rejects.toThrow("EIO");
  expect(calls).toBe(1);
});
