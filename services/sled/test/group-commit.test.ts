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
  expect(calls).toBe(2);
});
