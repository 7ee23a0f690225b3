// The leader's per-partition notes of head nodes that membership evicted (tenure.ts):
// kept for the last evictedHeadNodesNotedMax of them, so one back un-restarted is still
// told it is out, and dropped past that, so replaced head nodes do not pile up.

import { describe, expect, test } from "vitest";
import { evictedHeadNodesNotedMax } from "../src/constants.ts";
import type { PartitionRecord } from "../src/decisions.ts";
import {
  forgetConfigured,
  newTenure,
  noteEvicted,
  noteJoined,
  type Tenure,
} from "../src/tenure.ts";

const record: PartitionRecord = {
  volume: "vol",
  volumeId: "1-abc",
  partition: 0,
  partitionStart: 0,
  partitionBytes: 1024 * 1024,
  epoch: 3,
  primary: "head-1",
  secondaries: ["head-2"],
  term: 1,
};

/** Every per-node note a tenure keeps of `node`, in partitions `0..partitions-1`. */
function note(tenure: Tenure, node: string, partitions: number): void {
  for (let partition = 0; partition < partitions; partition++) {
    const key = `1-abc/${partition}`;
    const at = <V>(map: Map<string, Map<string, V>>) => {
      const nodes = map.get(key) ?? new Map<string, V>();
      map.set(key, nodes);
      return nodes;
    };
    at(tenure.configured).set(node, { epoch: 2, atMs: 5 });
    at(tenure.asked).set(node, { epoch: 2, atMs: 5 });
    at(tenure.noReplica).set(node, 2);
    at(tenure.failuresLogged).set(node, 2);
  }
  tenure.configureQueue.set(node, new Map([["1-abc/0", record]]));
}

/** The nodes any per-node note names. */
function noted(tenure: Tenure): Set<string> {
  const nodes = new Set<string>();
  for (const map of [tenure.configured, tenure.asked, tenure.noReplica, tenure.failuresLogged]) {
    for (const inner of map.values()) for (const node of inner.keys()) nodes.add(node);
  }
  for (const node of tenure.configureQueue.keys()) nodes.add(node);
  return nodes;
}

/** What the shell does when membership evicts a node (coordinator.ts). */
function evict(tenure: Tenure, node: string): void {
  forgetConfigured(tenure, node);
  noteEvicted(tenure, node);
}

const ghost = (index: number) => `ghost-${String(index).padStart(2, "0")}`;

describe("notes of evicted head nodes (unit)", () => {
  test("kept for the last evictedHeadNodesNotedMax evicted, out of date; the earliest past them go from every map", () => {
    const tenure = newTenure({ term: 1, tenure: 1 }, 0);
    note(tenure, "head-1", 4);
    for (let index = 0; index <= evictedHeadNodesNotedMax; index++) note(tenure, ghost(index), 4);
    for (let index = 0; index <= evictedHeadNodesNotedMax; index++) evict(tenure, ghost(index));

    const kept = Array.from({ length: evictedHeadNodesNotedMax }, (_, index) => ghost(index + 1));
    expect(noted(tenure)).toEqual(new Set(["head-1", ...kept]));
    expect([...tenure.evicted]).toEqual(kept);
    // Those kept are out of date, so the configurer tells them they are out if they are
    // heard again (configurer.ts, owesConfigure); the live node's notes are untouched.
    for (const nodes of tenure.configured.values()) {
      expect(nodes.get(ghost(1))?.epoch).toBe(-1);
      expect(nodes.get("head-1")?.epoch).toBe(2);
    }
    expect(tenure.noReplica.get("1-abc/3")?.get("head-1")).toBe(2);
    // The reconciler looks again at every partition whose acknowledgements changed.
    expect(tenure.changes.keys).toEqual(new Set(["1-abc/0", "1-abc/1", "1-abc/2", "1-abc/3"]));
  });

  test("a node heard again leaves the window: evictions after it never drop its notes", () => {
    const tenure = newTenure({ term: 1, tenure: 1 }, 0);
    for (let index = 0; index < evictedHeadNodesNotedMax; index++) {
      note(tenure, ghost(index), 1);
      evict(tenure, ghost(index));
    }
    noteJoined(tenure, ghost(0)); // back (un-restarted): it is told it is out, live again
    for (let index = evictedHeadNodesNotedMax; index < 3 * evictedHeadNodesNotedMax; index++) {
      note(tenure, ghost(index), 1);
      evict(tenure, ghost(index));
    }
    expect(tenure.configured.get("1-abc/0")?.has(ghost(0))).toBe(true);
    expect(tenure.configured.get("1-abc/0")?.has(ghost(1))).toBe(false);
    expect(tenure.evicted.size).toBe(evictedHeadNodesNotedMax);
    // Evicted again later, it is the latest.
    evict(tenure, ghost(0));
    expect([...tenure.evicted].at(-1)).toBe(ghost(0));
    expect(tenure.evicted.size).toBe(evictedHeadNodesNotedMax);
  });

  test("a member the tenure holds nothing of (a sled, a gateway, an idle head node) takes no place", () => {
    const tenure = newTenure({ term: 1, tenure: 1 }, 0);
    note(tenure, "head-1", 1);
    evict(tenure, "head-1");
    for (let index = 0; index < 3 * evictedHeadNodesNotedMax; index++) {
      evict(tenure, `sled-${index}`);
    }
    expect([...tenure.evicted]).toEqual(["head-1"]);
    expect(tenure.configured.get("1-abc/0")?.get("head-1")?.epoch).toBe(-1);
  });
});
