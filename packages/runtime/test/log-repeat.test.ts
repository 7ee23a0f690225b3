import { describe, expect, test } from "vitest";
import { logRepeatIntervalMs } from "../src/constants.ts";
import { RepeatLog } from "../src/log-repeat.ts";

describe("RepeatLog (time passed in, no timers)", () => {
  test("a lasting condition: its first line, then one reminder an interval with the count left out", () => {
    const repeats = new RepeatLog(1000);
    expect(repeats.due("a", 0)).toEqual({ first: true, suppressed: 0 });
    const lines = [];
    for (let t = 100; t <= 10_000; t += 100) {
      const due = repeats.due("a", t);
      if (due !== undefined) lines.push(due);
    }
    // 100 repeats over 10 s: a reminder a second, each counting the 9 left out before it.
    expect(lines).toHaveLength(10);
    expect(lines.every((due) => !due.first && due.suppressed === 9)).toBe(true);
    expect(repeats.due("a", 10_500)).toBeUndefined();
    expect(repeats.due("a", 11_000)).toEqual({ first: false, suppressed: 1 });
  });

  test("keys are apart; end says whether it was on and what was left out since the last line", () => {
    const repeats = new RepeatLog(1000);
    repeats.due("a", 0);
    repeats.due("a", 10);
    repeats.due("a", 20);
    expect(repeats.due("b", 30)).toEqual({ first: true, suppressed: 0 });
    expect(repeats.end("a")).toEqual({ suppressed: 2 });
    expect(repeats.end("a")).toBeUndefined();
    expect(repeats.has("b")).toBe(true);
    // Begun again: a first line at once.
    expect(repeats.due("a", 40)).toEqual({ first: true, suppressed: 0 });
    repeats.forget((key) => key === "b");
    expect(repeats.keys()).toEqual(["a"]);
  });

  test("the keys tracked are bounded: past the bound the oldest is forgotten", () => {
    const repeats = new RepeatLog(1000, 2);
    repeats.due("a", 0);
    repeats.due("b", 0);
    repeats.due("c", 0);
    expect(repeats.size).toBe(2);
    expect(repeats.keys()).toEqual(["b", "c"]);
  });

  test("the default interval is the named one, and bad settings are refused", () => {
    const repeats = new RepeatLog();
    repeats.due("a", 0);
    expect(repeats.due("a", logRepeatIntervalMs - 1)).toBeUndefined();
    expect(repeats.due("a", logRepeatIntervalMs)).toEqual({ first: false, suppressed: 1 });
    expect(() => new RepeatLog(-1)).toThrow(/intervalMs/);
    expect(() => new RepeatLog(1000, 0)).toThrow(/keysMax/);
  });
});
