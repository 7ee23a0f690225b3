// The tick schedule (tick-schedule.ts) on its own: against a plain map of due ticks, for
// any sequence of scheduling, waking, removing and advancing, it takes exactly the items
// due at each tick, earliest first, and reports the due tick of every other.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TickSchedule } from "../src/tick-schedule.ts";

type Step =
  | { kind: "due"; item: number; after: number }
  | { kind: "park"; item: number }
  | { kind: "wake"; item: number }
  | { kind: "remove"; item: number }
  | { kind: "advance"; count: number };

const items = 12;
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("due" as const),
    item: fc.integer({ min: 0, max: items - 1 }),
    // Negative: a tick already past, which means the next one.
    after: fc.integer({ min: -3, max: 40 }),
  }),
  fc.record({ kind: fc.constant("park" as const), item: fc.integer({ min: 0, max: items - 1 }) }),
  fc.record({ kind: fc.constant("wake" as const), item: fc.integer({ min: 0, max: items - 1 }) }),
  fc.record({
    kind: fc.constant("remove" as const),
    item: fc.integer({ min: 0, max: items - 1 }),
  }),
  fc.record({ kind: fc.constant("advance" as const), count: fc.integer({ min: 1, max: 30 }) }),
);

/** The model: a due tick per waiting item, looked through whole at every tick. */
class Model {
  now = 0;
  readonly dues = new Map<number, number>();

  due(item: number, tick: number): void {
    const dueTick = Math.max(tick, this.now + 1);
    if (dueTick === Number.POSITIVE_INFINITY) return;
    this.dues.set(item, Math.min(this.dues.get(item) ?? dueTick, dueTick));
  }

  advance(): number[] {
    this.now++;
    const taken = [...this.dues].filter(([, due]) => due <= this.now).map(([item]) => item);
    for (const item of taken) this.dues.delete(item);
    return taken;
  }
}

describe("TickSchedule", () => {
  it("takes exactly the items due at each tick, as a scan of every item would", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 120 }), (steps) => {
        const schedule = new TickSchedule<number>();
        const model = new Model();
        for (const one of steps) {
          switch (one.kind) {
            case "due":
              schedule.due(one.item, schedule.now + one.after);
              model.due(one.item, model.now + one.after);
              break;
            case "park":
              schedule.due(one.item, Number.POSITIVE_INFINITY);
              model.due(one.item, Number.POSITIVE_INFINITY);
              break;
            case "wake":
              schedule.wake(one.item);
              model.due(one.item, model.now + 1);
              break;
            case "remove":
              schedule.remove(one.item);
              model.dues.delete(one.item);
              break;
            case "advance":
              for (let tick = 0; tick < one.count; tick++) {
                const expected = model.advance();
                const taken = schedule.advance();
                expect([...taken].sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
              }
              break;
            default: {
              const unreachable: never = one;
              throw new Error(`unknown step ${JSON.stringify(unreachable)}`);
            }
          }
          expect(schedule.now).toBe(model.now);
          expect(schedule.size).toBe(model.dues.size);
          for (let item = 0; item < items; item++) {
            expect(schedule.dueTick(item)).toBe(model.dues.get(item));
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("keeps the earlier due tick: a wake during a tick survives the due tick computed after", () => {
    const schedule = new TickSchedule<string>();
    schedule.due("a", 1);
    expect(schedule.advance()).toEqual(["a"]);
    // Ticking "a" delivered an input to it (a wake), then it says it is quiet for 50.
    schedule.wake("a");
    schedule.due("a", schedule.now + 50);
    expect(schedule.dueTick("a")).toBe(2);
    expect(schedule.advance()).toEqual(["a"]);
  });

  it("never takes an item parked until woken, nor one removed", () => {
    const schedule = new TickSchedule<string>();
    schedule.due("parked", Number.POSITIVE_INFINITY);
    schedule.due("removed", 3);
    schedule.remove("removed");
    for (let tick = 0; tick < 1000; tick++) expect(schedule.advance()).toEqual([]);
    expect(schedule.size).toBe(0);
    schedule.wake("parked");
    expect(schedule.advance()).toEqual(["parked"]);
  });

  it("takes each item once, at its due tick, however often it was scheduled later", () => {
    const schedule = new TickSchedule<number>();
    const dueOf = (item: number) => 1 + ((item * 37) % 100);
    for (let item = 0; item < 100; item++) schedule.due(item, dueOf(item));
    for (let again = 0; again < 1000; again++) schedule.due(again % 100, 200);
    expect(schedule.size).toBe(100);
    const takenAt = new Map<number, number>();
    for (let tick = 0; tick < 300; tick++) {
      for (const item of schedule.advance()) {
        expect(takenAt.has(item)).toBe(false);
        takenAt.set(item, schedule.now);
      }
    }
    expect(takenAt.size).toBe(100);
    for (const [item, tick] of takenAt) expect(tick).toBe(dueOf(item));
  });
});
