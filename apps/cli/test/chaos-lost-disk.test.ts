// The lose-head-disk fault's target choice and its recovery check (chaos lost-disk.ts),
// as pure functions: a head node may lose its disk only if every partition it is a
// voter of keeps another live voter not itself on a lost disk (never the last copy),
// and the fault is over only once no partition record names a member on a disk its
// node no longer has.

import { describe, expect, test } from "vitest";
import {
  headsThatMayLoseDisk,
  membersOnLostDisks,
  type RecordedPartition,
} from "../src/chaos/lost-disk.ts";

const heads = ["headnode-1", "headnode-2", "headnode-3"];
const allAlive = new Set(heads);
const partition = (primary: string, ...secondaries: string[]) => ({ primary, secondaries });

describe("headsThatMayLoseDisk", () => {
  test("with every partition at full strength on live nodes, any head node may", () => {
    const volumes = [
      {
        partitions: [partition("headnode-1", "headnode-2"), partition("headnode-3", "headnode-1")],
      },
      { partitions: [partition("headnode-2", "headnode-1", "headnode-3")] },
    ];
    expect(headsThatMayLoseDisk(volumes, heads, allAlive)).toEqual(heads);
  });

  test("not a voter whose partition's other voter is dead: that would lose the last copy", () => {
    const volumes = [{ partitions: [partition("headnode-1", "headnode-2")] }];
    const alive = new Set(["headnode-1", "headnode-3"]);
    // headnode-1 holds the only live copy; headnode-2 is dead; headnode-3 holds nothing.
    expect(headsThatMayLoseDisk(volumes, heads, alive)).toEqual(["headnode-3"]);
  });

  test("not a voter whose partition's other voter is itself on a lost disk", () => {
    const volumes = [{ partitions: [partition("headnode-1", "headnode-2")] }];
    expect(headsThatMayLoseDisk(volumes, heads, allAlive, new Set(["headnode-2"]))).toEqual([
      "headnode-3",
    ]);
  });

  test("a partition with one voter (the other counted out) pins it", () => {
    const volumes = [{ partitions: [partition("headnode-2")] }];
    expect(headsThatMayLoseDisk(volumes, heads, allAlive)).toEqual(["headnode-1", "headnode-3"]);
  });

  test("a primary is pinned only by its own partitions; another live voter is enough", () => {
    const volumes = [
      {
        partitions: [
          partition("headnode-1", "headnode-2"),
          partition("headnode-2", "headnode-3"),
          partition("headnode-3", "headnode-1", "headnode-2"),
        ],
      },
    ];
    // headnode-3 dead: headnode-2 is the only live voter of partition 1; headnode-1 and
    // headnode-2 both still have a live partner in partitions 0 and 2.
    const alive = new Set(["headnode-1", "headnode-2"]);
    expect(headsThatMayLoseDisk(volumes, heads, alive)).toEqual(["headnode-1"]);
  });

  test("a dead head node or one on a lost disk is never chosen", () => {
    expect(headsThatMayLoseDisk([], heads, new Set(["headnode-2"]))).toEqual(["headnode-2"]);
    expect(headsThatMayLoseDisk([], heads, allAlive, new Set(["headnode-1"]))).toEqual([
      "headnode-2",
      "headnode-3",
    ]);
  });

  test("learners are no copy: a partition whose other members are learners pins its voter", () => {
    const volumes = [
      { partitions: [{ primary: "headnode-1", secondaries: [], learners: ["headnode-2"] }] },
    ];
    expect(headsThatMayLoseDisk(volumes, heads, allAlive)).toEqual(["headnode-2", "headnode-3"]);
  });
});

describe("membersOnLostDisks", () => {
  const record = (extra: Partial<RecordedPartition>): RecordedPartition => ({
    volume: "v",
    partition: 0,
    primary: "headnode-1",
    secondaries: ["headnode-2"],
    disks: { "headnode-1": "a1", "headnode-2": "b1" },
    ...extra,
  });
  const disks = new Map<string, string | undefined>([
    ["headnode-1", "a1"],
    ["headnode-2", "b1"],
    ["headnode-3", "c1"],
  ]);

  test("none while every member's recorded disk is its node's disk", () => {
    expect(membersOnLostDisks([record({})], disks)).toEqual([]);
  });

  test("a voter recorded on its old disk, once the node has a new one or none yet", () => {
    const lost = new Map(disks).set("headnode-2", "b2");
    expect(membersOnLostDisks([record({})], lost)).toEqual([
      { volume: "v", partition: 0, node: "headnode-2", recorded: "b1", current: "b2" },
    ]);
    const none = new Map(disks).set("headnode-1", undefined);
    expect(membersOnLostDisks([record({ partition: 3 })], none)).toEqual([
      { volume: "v", partition: 3, node: "headnode-1", recorded: "a1", current: undefined },
    ]);
  });

  test("learners and joiners are members too", () => {
    const lost = new Map(disks).set("headnode-3", "c2");
    const recordLearning = record({
      learners: ["headnode-3"],
      disks: { "headnode-1": "a1", "headnode-2": "b1", "headnode-3": "c1" },
    });
    const recordJoining = record({
      partition: 1,
      joining: ["headnode-3"],
      disks: { "headnode-1": "a1", "headnode-2": "b1", "headnode-3": "c1" },
    });
    expect(
      membersOnLostDisks([recordLearning, recordJoining], lost).map((m) => m.partition),
    ).toEqual([0, 1]);
  });

  test("rebuilt on the new disk (recorded anew) or counted out: none left", () => {
    const lost = new Map(disks).set("headnode-2", "b2");
    const rebuilt = record({
      epoch: 2,
      disks: { "headnode-1": "a1", "headnode-2": "b2" },
    } as never);
    const countedOut = record({
      secondaries: [],
      disks: { "headnode-1": "a1", "headnode-2": "b1" },
    });
    expect(membersOnLostDisks([rebuilt, countedOut], lost)).toEqual([]);
  });

  test("members without a recorded disk, and nodes not checked, are not counted", () => {
    const lost = new Map([["headnode-1", "a2"]]);
    expect(membersOnLostDisks([record({ disks: undefined })], lost)).toEqual([]);
    // headnode-2 is not among the checked nodes (as a service that is no head node).
    expect(membersOnLostDisks([record({ disks: { "headnode-2": "b1" } })], lost)).toEqual([]);
  });
});
