import { describe, expect, it } from "vitest";
import { sledProbeAskMs } from "../src/constants.ts";
import { SledReach } from "../src/sled-reach.ts";

describe("SledReach: evidence that head nodes reach the sleds", () => {
  it("takes growth between two reports as a store after the report before the earlier one was heard", () => {
    // A node sends a report once the one before is answered: stores counted first in
    // the report heard at 2,000 were made after the one heard at 1,500 was sent, so
    // after the one heard at 1,000 was answered.
    const reach = new SledReach();
    reach.heard("head-1", 7, 10, 1_000);
    // The first reports say nothing of when their stores were made.
    expect(reach.storedSince()).toEqual(new Map());
    reach.heard("head-1", 7, 11, 1_500);
    expect(reach.storedSince()).toEqual(new Map());
    reach.heard("head-1", 7, 12, 2_000);
    expect(reach.storedSince()).toEqual(new Map([["head-1", 1_000]]));
    // Kept while the count stands still, moved on by the next growth.
    reach.heard("head-1", 7, 12, 2_500);
    expect(reach.storedSince().get("head-1")).toBe(1_000);
    reach.heard("head-1", 7, 14, 3_000);
    expect(reach.storedSince().get("head-1")).toBe(2_000);
    // What decisions read, without a copy: the same.
    expect(reach.get("head-1")).toBe(2_000);
    expect(reach.get("head-2")).toBeUndefined();
  });

  it("starts over on another session, a count that went down, or a report without the count", () => {
    const reach = new SledReach();
    const grown = (node: string) => {
      reach.heard(node, 1, 0, 0);
      reach.heard(node, 1, 0, 250);
      reach.heard(node, 1, 5, 500);
      expect(reach.storedSince().has(node)).toBe(true);
    };
    grown("restarted");
    reach.heard("restarted", 2, 9, 1_000); // a restart's stores are of unknown time
    grown("went-down");
    reach.heard("went-down", 1, 4, 1_000);
    grown("old-code");
    reach.heard("old-code", 1, undefined, 1_000);
    expect(reach.storedSince()).toEqual(new Map());
    // And growth is evidence again once two reports of the session were heard.
    reach.heard("restarted", 2, 10, 1_500);
    expect(reach.storedSince()).toEqual(new Map());
    reach.heard("restarted", 2, 11, 2_000);
    expect(reach.storedSince()).toEqual(new Map([["restarted", 1_000]]));
  });

  it("keeps at most nodesMax nodes, forgetting the longest silent", () => {
    const reach = new SledReach(2);
    for (const node of ["a", "b"]) {
      reach.heard(node, 1, 0, 0);
      reach.heard(node, 1, 0, 250);
      reach.heard(node, 1, 1, 500);
    }
    reach.heard("a", 1, 1, 600); // a heard again: b is now the longest silent
    reach.heard("c", 1, 0, 700);
    expect([...reach.storedSince().keys()]).toEqual(["a"]);
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
