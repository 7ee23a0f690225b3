// Rejections nobody handled, recorded per test: a test that shows an operation's failure
// is always observed asserts the list is empty. (Node 20 ends a process on one; vitest
// would report it, but only after the test, and not as the test's own failure.)

import { afterEach, beforeEach } from "vitest";

/** Registers the recorder around every test of the calling file; returns its list. */
export function recordUnhandledRejections(): readonly unknown[] {
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => unhandled.push(reason);
  beforeEach(() => {
    unhandled.length = 0;
    process.on("unhandledRejection", record);
  });
  afterEach(() => {
    process.off("unhandledRejection", record);
  });
  return unhandled;
}
