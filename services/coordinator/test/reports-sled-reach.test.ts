// The leader's part of sled evidence in `headnode.report.v1` (reports.ts, sled-reach.ts):
// every report's `sledStores` goes to the book, whatever the tenure, and an answer asks
// the node to probe the sleds while the reconciler wants evidence from it. The catalogue,
// heartbeats and sled records are fakes (unit test); the tenure is a real one not yet
// ready, which answers every report `full`.

import type { MessageOf } from "@ballast/protocol";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { sledProbeAskMs } from "../src/constants.ts";
import { Reports } from "../src/reports.ts";
import { SledReach } from "../src/sled-reach.ts";
import { newTenure } from "../src/tenure.ts";

let clockMs = 1_000;

beforeEach(() => {
  clockMs = 1_000;
  vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
});
afterEach(() => vi.restoreAllMocks());

function setup() {
  const reach = new SledReach();
  const reports = new Reports(
    {} as never,
    {
      aliveHeadNodes: () => new Set(["head-1", "head-2"]),
      aliveSleds: () => ["sled-1", "sled-2", "sled-3"],
    },
    { out: () => undefined, toAudit: () => undefined },
    () => undefined,
    undefined,
    reach,
  );
  const tenure = newTenure({ term: 1, tenure: 1 }, 0);
  let seq = 0;
  /** head-2's next report, each answered before the next (its base the last one). */
  const report = (sledStores: number): MessageOf<"headnode.report.v1"> => {
    seq++;
    return {
      type: "headnode.report.v1",
      node: "head-2",
      session: 1,
      seq,
      ...(seq > 1 ? { base: seq - 1 } : {}),
      primaries: [],
      sledStores,
    };
  };
  return { reach, reports, tenure, report };
}

describe("Reports: sled evidence from head nodes' reports", () => {
  it("keeps each report's store count as evidence, dated by the base of the report before", () => {
    const { reach, reports, tenure, report } = setup();
    reports.onReport(tenure, report(0));
    clockMs += 500;
    reports.onReport(tenure, report(0));
    clockMs += 500;
    expect(reach.get("head-2")).toBeUndefined();
    reports.onReport(tenure, report(1));
    // Made after the second report was built, so after the first was heard (at 1,000).
    expect(reach.get("head-2")).toBe(1_000);
  });

  it("asks the node to probe in its answers while wanted, and no longer after sledProbeAskMs", () => {
    const { reach, reports, tenure, report } = setup();
    expect(reports.onReport(tenure, report(0)).probeSleds).toBeUndefined();
    reach.askProbe("head-2", clockMs);
    const asked = reports.onReport(tenure, report(0));
    expect(asked.probeSleds).toBe(true);
    // The live sleds ride along, for a node that hosts nothing (a spare, for a stand-in).
    expect(asked.probeOn).toEqual(["sled-1", "sled-2", "sled-3"]);
    clockMs += sledProbeAskMs + 1;
    const after = reports.onReport(tenure, report(0));
    expect(after.probeSleds).toBeUndefined();
    expect(after.probeOn).toBeUndefined();
  });
});
