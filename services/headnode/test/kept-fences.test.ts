// The fences a head node keeps for replicas it reopens in place (kept-fences.ts): handed
// to the next core of the same incarnation, and dropped whenever they can no longer be
// needed, so that they do not pile up.

import { describe, expect, test } from "vitest";
import { KeptFences } from "../src/kept-fences.ts";

const fence = (epoch: number) => ({
  epoch,
  sessions: [{ session: "a".repeat(32), sequence: 3, ageTicks: 0 }],
});

describe("kept fences", () => {
  test("are handed once, to a core of the same incarnation", () => {
    const kept = new KeptFences();
    kept.keep("vol/0", "1-a", fence(5));
    expect(kept.take("vol/0", "1-a")).toEqual(fence(5));
    expect(kept.take("vol/0", "1-a")).toBeUndefined();
    kept.keep("vol/0", "1-a", fence(5));
    // A core of a newer incarnation opened there: the old one's goes unused.
    expect(kept.take("vol/0", "2-b")).toBeUndefined();
    expect(kept.size).toBe(0);
  });

  test("one per partition, replaced by a later close, and nothing kept for an empty table", () => {
    const kept = new KeptFences();
    kept.keep("vol/0", "1-a", fence(5));
    kept.keep("vol/0", "1-a", fence(6));
    kept.keep("vol/1", "1-a", fence(5));
    expect(kept.size).toBe(2);
    kept.keep("vol/1", "1-a", undefined);
    expect(kept.size).toBe(1);
    expect(kept.take("vol/0", "1-a")?.epoch).toBe(6);
  });

  test("go at a configure of a newer epoch of their incarnation, not at an older or another's", () => {
    const kept = new KeptFences();
    kept.keep("vol/0", "1-a", fence(5));
    kept.configured("vol/0", "1-a", 5);
    kept.configured("vol/0", "1-a", 4);
    kept.configured("vol/0", "0-z", 9);
    expect(kept.size).toBe(1);
    kept.configured("vol/0", "1-a", 6);
    expect(kept.size).toBe(0);
  });

  test("go when their files are removed or their incarnation is dropped", () => {
    const kept = new KeptFences();
    kept.keep("vol/0", "1-a", fence(5));
    kept.keep("vol/1", "1-a", fence(5));
    kept.keep("other/0", "1-c", fence(5));
    kept.forget("other/0");
    expect(kept.size).toBe(2);
    kept.forgetIncarnation("1-a");
    expect(kept.size).toBe(0);
  });
});
