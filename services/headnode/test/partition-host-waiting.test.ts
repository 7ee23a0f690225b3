// A request whose start throws leaves no reply waiting in the partition host. The host
// registers a request's reply before handing the request to its core (the core may
// answer at once); a throw after that (building the request, or an assertion of the
// core) used to leave the reply in the host's waiting map with nobody awaiting it, and
// the host's close then rejected it: a rejection nobody handled, which ends the head
// node (Node 20). Real host on a real journal (test-primary.ts); the core's assertion
// is stood in for by a method of its core (a private field) replaced with one that throws.

import { afterEach, beforeEach, expect, test } from "vitest";
import { recordUnhandledRejections } from "../../../test/support/unhandled-rejections.ts";
import { TestPrimary } from "./test-primary.ts";

const unhandled = recordUnhandledRejections();
let primary: TestPrimary;

beforeEach(async () => {
  primary = await TestPrimary.open("ballast-host-waiting-", ["sled-1", "sled-2"]);
});

afterEach(async () => {
  await primary.close();
});

/** Replaces one method of the host's core with one that throws, as a failed assertion. */
function coreThrowsIn(method: "takeSnapshot" | "rollbackSnapshot"): void {
  const { core } = primary.host as unknown as { core: Record<string, unknown> };
  core[method] = () => {
    throw new Error("an assertion of the core");
  };
}

/** Lets every pending promise job and a few rounds of the event loop run. */
async function settleTurns(): Promise<void> {
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
}

test("a request whose building throws leaves nothing to reject at close", async () => {
  const host = primary.host;
  expect(() =>
    host.request(() => {
      throw new Error("a request that cannot be built");
    }),
  ).toThrow("a request that cannot be built");
  await host.close();
  await settleTurns();
  expect(unhandled).toEqual([]);
});

test("a snapshot whose core step throws leaves nothing to reject at close", async () => {
  const host = primary.host;
  coreThrowsIn("takeSnapshot");
  await expect(host.snapshotControl("take", "s1")).rejects.toThrow("an assertion of the core");
  await host.close();
  await settleTurns();
  expect(unhandled).toEqual([]);
});

test("a rollback whose core step throws leaves nothing to reject at close", async () => {
  const host = primary.host;
  coreThrowsIn("rollbackSnapshot");
  await expect(host.rollbackSnapshot("s1")).rejects.toThrow("an assertion of the core");
  await host.close();
  await settleTurns();
  expect(unhandled).toEqual([]);
});

test("a request that is started is still answered", async () => {
  await primary.writeFlushed(0, 7);
  expect(unhandled).toEqual([]);
});
