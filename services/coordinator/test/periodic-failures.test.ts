// The leader's periodic work that fails for as long as its cause lasts: a fake clock and a
// captured logger (fakes: a unit test) play an hour of a 1 s task at once.

import { describe, expect, test } from "vitest";
import { PeriodicFailures } from "../src/periodic-failures.ts";

describe("periodic work that keeps failing", () => {
  test("its error when it begins, once per interval with the count, and a line when it works again", () => {
    const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const at = (level: string) => (fields: Record<string, unknown>, message: string) => {
      lines.push({ level, fields, message });
    };
    let nowMs = 0;
    const failures = new PeriodicFailures(
      { info: at("info"), error: at("error") } as never,
      () => nowMs,
      5 * 60_000,
    );
    for (; nowMs < 60 * 60_000; nowMs += 1000) {
      failures.failed("every-1000ms-4", 1000, new Error("no responders"));
      failures.succeeded("every-1000ms-5", 1000); // another task, working: says nothing
    }
    const failed = lines.filter((line) => line.message === "periodic work failed");
    // Old (coordinator.ts `every`): an error line a period, 3600 an hour.
    expect(failed).toHaveLength(12);
    expect(failed.every((line) => line.level === "error")).toBe(true);
    expect(failed[1]!.fields.repeatsSuppressed).toBe(299);
    failures.succeeded("every-1000ms-4", 1000);
    failures.succeeded("every-1000ms-4", 1000);
    expect(lines.filter((line) => line.message === "periodic work succeeds again")).toHaveLength(1);
    expect(lines).toHaveLength(13);
  });
});
