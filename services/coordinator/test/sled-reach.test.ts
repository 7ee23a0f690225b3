import { describe, expect, it } from "vitest";
import { sledProbeAskMs } from "../src/constants.ts";
import { SledReach } from "../src/sled-reach.ts";

/**
 * A node's reports, each answered before the next is built: its `base` the last one (the
 * default), another, or null for a whole state.
 */
function reporter(reach: SledReach, node: string, session = 1) {
  let seq = 0;
  return (stores: number | undefined, nowMs: number, base: number | null = seq || null) => {
    seq++;
    reach.heard(
      node,
      { session, seq, ...(base === null ? {} : { base }), sledStores: stores },
      nowMs,
    );
    return seq;
  };
}

describe("SledReach: evidence that head nodes reach the sleds", () => {
  it("dates stores first counted in a report by the base of the report before it", () => {
    // Stores counted first in the report heard at 2,000 were made after the one heard at
    // 1,500 was built, and that one named the report heard at 1,000 as answered.
    const reach = new SledReach();
    const report = reporter(reach, "head-1");
    report(10, 1_000);
    // The first reports say nothing of when their stores were made.
    expect(reach.storedSince()).toEqual(new Map());
    report(11, 1_500);
    expect(reach.storedSince()).toEqual(new Map());
    report(12, 2_000);
    expect(reach.storedSince()).toEqual(new Map([["head-1", 1_000]]));
    // Kept while the count stands still, moved on by the next growth.
    report(12, 2_500);
    expect(reach.storedSince().get("head-1")).toBe(1_000);
    report(14, 3_000);
    expect(reach.storedSince().get("head-1")).toBe(2_000);
    // What decisions read, without a copy: the same.
    expect(reach.get("head-1")).toBe(2_000);
    expect(reach.get("head-2")).toBeUndefined();
  });

  it("dates nothing later than the store when a report is heard late (review 30, finding 1)", () => {
    // R1 is sent at 500 and heard at 3,000; the node gave up on its answer at its
    // deadline and sent R2 at 1,500 (based on R0, the last answered), heard at 3,010. A
    // store at 1,600 shows in R3, heard at 3,500. Dated by R2's position it would be
    // 3,000, after it was made; dated by R2's base it is R0's 0.
    const reach = new SledReach();
    const report = reporter(reach, "head-1");
    const r0 = report(5, 0);
    report(5, 3_000, r0);
    report(5, 3_010, r0);
    report(6, 3_500, r0);
    expect(reach.get("head-1")).toBe(0);
  });

  it("keeps the earlier date when the base was never heard here (a whole state, another leader)", () => {
    const reach = new SledReach();
    const report = reporter(reach, "head-1");
    report(1, 0);
    report(1, 500);
    report(2, 1_000);
    expect(reach.get("head-1")).toBe(0);
    // A whole state (no base) after a full answer: its growth cannot be dated by it.
    report(2, 1_500, null);
    report(3, 2_000);
    expect(reach.get("head-1")).toBe(0);
    // Nor by a base another leader answered (this growth is dated by the report before's).
    report(4, 2_500, 999);
    expect(reach.get("head-1")).toBe(1_500);
    report(5, 3_000);
    expect(reach.get("head-1")).toBe(1_500);
  });

  it("starts over on another session, a count that went down, or a report without the count", () => {
    const reach = new SledReach();
    const grown = (node: string) => {
      const report = reporter(reach, node);
      report(0, 0);
      report(0, 250);
      report(5, 500);
      expect(reach.storedSince().has(node)).toBe(true);
      return report;
    };
    grown("restarted");
    const restarted = reporter(reach, "restarted", 2);
    restarted(9, 1_000); // a restart's stores are of unknown time
    grown("went-down")(4, 1_000);
    grown("old-code")(undefined, 1_000);
    expect(reach.storedSince()).toEqual(new Map());
    // And growth is evidence again once the session's reports date it.
    restarted(10, 1_500);
    expect(reach.storedSince()).toEqual(new Map());
    restarted(11, 2_000);
    expect(reach.storedSince()).toEqual(new Map([["restarted", 1_000]]));
  });

  it("keeps at most nodesMax nodes, forgetting the longest silent", () => {
    const reach = new SledReach(2);
    const a = reporter(reach, "a");
    const b = reporter(reach, "b");
    for (const report of [a, b]) {
      report(0, 0);
      report(0, 250);
      report(1, 500);
    }
    a(1, 600); // a heard again: b is now the longest silent
    reporter(reach, "c")(0, 700);
    expect([...reach.storedSince().keys()]).toEqual(["a"]);
    expect(reach.get("b")).toBeUndefined();
  });

  it("asks a node to probe for sledProbeAskMs after it was last wanted", () => {
    const reach = new SledReach();
    expect(reach.probeWanted("head-2", 0)).toBe(false);
    reach.askProbe("head-2", 1_000);
    expect(reach.probeWanted("head-2", 1_000 + sledProbeAskMs)).toBe(true);
    expect(reach.probeWanted("head-3", 1_000)).toBe(false);
    expect(reach.probeWanted("head-2", 1_001 + sledProbeAskMs)).toBe(false);
    reach.askProbe("head-2", 9_000);
    expect(reach.probeWanted("head-2", 9_500)).toBe(true);
  });
});
