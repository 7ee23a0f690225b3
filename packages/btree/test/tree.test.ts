import { describe, expect, it } from "vitest";
import {
  advanceLocation,
  BtreeAssertionError,
  type ChunkLocation,
  type Extent,
  ExtentTree,
  type JournalLocation,
  type Location,
  type Piece,
  zeroLocation,
} from "../src/index.ts";
import { LocationCode } from "../src/location.ts";
import type { Leaf } from "../src/node.ts";

const kib = 1024;

function chunk(chunkId: number, offset: number): ChunkLocation {
  return { kind: "chunk", chunkId, offset };
}

function journal(segment: number, position: number): JournalLocation {
  return { kind: "journal", segment, position };
}

function extent(offset: number, length: number, opNum: number, location: Location): Extent {
  return { offset, length, opNum, location };
}

function hole(offset: number, length: number): Piece {
  return { offset, length, location: null };
}

/** A tree that runs `check()` after every mutation, as every test here wants. */
function checkedTree(fanout?: number): ExtentTree {
  const tree = new ExtentTree(fanout === undefined ? {} : { fanout });
  const insert = tree.insert.bind(tree);
  const updateLocation = tree.updateLocation.bind(tree);
  const remove = tree.remove.bind(tree);
  tree.insert = (value) => {
    insert(value);
    tree.check();
  };
  tree.updateLocation = (offset, length, opNum, location) => {
    const updated = updateLocation(offset, length, opNum, location);
    tree.check();
    return updated;
  };
  tree.remove = (offset, length) => {
    const removed = remove(offset, length);
    tree.check();
    return removed;
  };
  return tree;
}

describe("inserting extents", () => {
  it("an empty tree looks up as one hole", () => {
    const tree = checkedTree();
    expect(tree.lookup(0, 64 * kib)).toEqual([hole(0, 64 * kib)]);
    expect(tree.extentCount).toBe(0);
    expect(tree.nodeCount).toBe(1);
    expect(tree.height).toBe(1);
  });

  it("an inserted extent is found whole, with holes around it", () => {
    const tree = checkedTree();
    tree.insert(extent(8 * kib, 4 * kib, 1, chunk(7, 0)));
    expect(tree.lookup(0, 16 * kib)).toEqual([
      hole(0, 8 * kib),
      extent(8 * kib, 4 * kib, 1, chunk(7, 0)),
      hole(12 * kib, 4 * kib),
    ]);
    expect(tree.extentCount).toBe(1);
    expect(tree.mappedBytes).toBe(4 * kib);
  });

  it("a lookup inside an extent returns its location advanced to the range", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 3, journal(2, 100_000)));
    expect(tree.lookup(1536, 1024)).toEqual([extent(1536, 1024, 3, journal(2, 101_536))]);
  });

  it("a newer extent splits an older one it lands inside", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 12 * kib, 1, chunk(1, 0)));
    tree.insert(extent(4 * kib, 4 * kib, 2, journal(0, 512)));
    expect(tree.lookup(0, 12 * kib)).toEqual([
      extent(0, 4 * kib, 1, chunk(1, 0)),
      extent(4 * kib, 4 * kib, 2, journal(0, 512)),
      extent(8 * kib, 4 * kib, 1, chunk(1, 8 * kib)),
    ]);
    expect(tree.extentCount).toBe(3);
  });

  it("a newer extent replaces every older extent it covers", () => {
    const tree = checkedTree(4);
    for (let index = 0; index < 40; index += 1) {
      tree.insert(extent(index * kib, kib, index + 1, chunk(index % 3, index * kib)));
    }
    tree.insert(extent(512, 39 * kib, 100, chunk(9, 0)));
    expect(tree.lookup(0, 40 * kib)).toEqual([
      extent(0, 512, 1, chunk(0, 0)),
      extent(512, 39 * kib, 100, chunk(9, 0)),
      extent(39 * kib + 512, 512, 40, chunk(0, 39 * kib + 512)),
    ]);
    expect(tree.extentCount).toBe(3);
  });

  it("an older extent fills only the holes around a newer one", () => {
    const tree = checkedTree();
    tree.insert(extent(4 * kib, 2 * kib, 9, chunk(1, 0)));
    tree.insert(extent(10 * kib, 2 * kib, 9, chunk(1, 2 * kib)));
    tree.insert(extent(0, 16 * kib, 5, journal(3, 0)));
    expect(tree.lookup(0, 16 * kib)).toEqual([
      extent(0, 4 * kib, 5, journal(3, 0)),
      extent(4 * kib, 2 * kib, 9, chunk(1, 0)),
      extent(6 * kib, 4 * kib, 5, journal(3, 6 * kib)),
      extent(10 * kib, 2 * kib, 9, chunk(1, 2 * kib)),
      extent(12 * kib, 4 * kib, 5, journal(3, 12 * kib)),
    ]);
  });

  it("an older extent wholly covered by a newer one changes nothing", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 9, chunk(1, 0)));
    tree.insert(extent(kib, 2 * kib, 4, journal(0, 0)));
    expect(tree.lookup(0, 8 * kib)).toEqual([extent(0, 8 * kib, 9, chunk(1, 0))]);
    expect(tree.liveBytes(1)).toBe(8 * kib);
  });

  it("a replayed extent with the stored op number does not move a flushed range back", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 4 * kib, 6, chunk(2, 512)));
    tree.insert(extent(0, 4 * kib, 6, journal(1, 0)));
    expect(tree.lookup(0, 4 * kib)).toEqual([extent(0, 4 * kib, 6, chunk(2, 512))]);
  });

  it("an exact overwrite by a newer op replaces the extent in place", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 4 * kib, 1, chunk(1, 0)));
    tree.insert(extent(0, 4 * kib, 2, chunk(2, 0)));
    expect([...tree.extents()]).toEqual([extent(0, 4 * kib, 2, chunk(2, 0))]);
    expect(tree.liveBytesByChunk()).toEqual(new Map([[2, 4 * kib]]));
  });

  it("trim of a chunk extent's front advances its offset", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 1, chunk(4, 64 * kib)));
    tree.insert(extent(0, 3 * kib, 2, journal(0, 0)));
    expect(tree.lookup(3 * kib, 5 * kib)).toEqual([
      extent(3 * kib, 5 * kib, 1, chunk(4, 67 * kib)),
    ]);
  });

  it("trim of a journal extent's front advances its position", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 1, journal(5, 1000)));
    tree.remove(0, 512);
    expect([...tree.extents()]).toEqual([extent(512, 8 * kib - 512, 1, journal(5, 1512))]);
  });

  it("trim of an extent's back keeps its location", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 1, chunk(4, 512)));
    tree.insert(extent(6 * kib, 4 * kib, 2, chunk(5, 0)));
    expect(tree.lookup(0, 6 * kib)).toEqual([extent(0, 6 * kib, 1, chunk(4, 512))]);
  });

  it("zero extents keep no location offset and count no live bytes", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 1, chunk(1, 0)));
    tree.insert(extent(0, 8 * kib, 2, zeroLocation));
    tree.insert(extent(2 * kib, 2 * kib, 3, chunk(1, 0)));
    expect(tree.lookup(0, 8 * kib)).toEqual([
      extent(0, 2 * kib, 2, zeroLocation),
      extent(2 * kib, 2 * kib, 3, chunk(1, 0)),
      extent(4 * kib, 4 * kib, 2, zeroLocation),
    ]);
    expect(tree.liveBytesByChunk()).toEqual(new Map([[1, 2 * kib]]));
    expect(tree.mappedBytes).toBe(8 * kib);
  });

  it("works at byte granularity, not only in sectors", () => {
    const tree = checkedTree();
    tree.insert(extent(3, 10, 1, chunk(1, 100)));
    tree.insert(extent(5, 1, 2, journal(0, 7)));
    expect(tree.lookup(0, 16)).toEqual([
      hole(0, 3),
      extent(3, 2, 1, chunk(1, 100)),
      extent(5, 1, 2, journal(0, 7)),
      extent(6, 7, 1, chunk(1, 103)),
      hole(13, 3),
    ]);
  });

  it("handles extents that end at the largest safe offset", () => {
    const tree = checkedTree();
    const end = Number.MAX_SAFE_INTEGER;
    tree.insert(extent(end - 4096, 4096, 1, chunk(1, 0)));
    tree.insert(extent(end - 1024, 512, 2, journal(0, 0)));
    expect(tree.lookup(end - 1024, 1024)).toEqual([
      extent(end - 1024, 512, 2, journal(0, 0)),
      extent(end - 512, 512, 1, chunk(1, 3584)),
    ]);
  });
});

describe("updating locations", () => {
  it("updateLocation moves a range whose op number matches", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 4, journal(1, 0)));
    expect(tree.updateLocation(0, 8 * kib, 4, chunk(3, 4096))).toBe(8 * kib);
    expect(tree.lookup(0, 8 * kib)).toEqual([extent(0, 8 * kib, 4, chunk(3, 4096))]);
    expect(tree.liveBytes(3)).toBe(8 * kib);
  });

  it("updateLocation leaves ranges whose op number changed untouched", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 8 * kib, 4, journal(1, 0)));
    // A newer write lands in the middle before the flush of op 4 is applied.
    tree.insert(extent(2 * kib, 2 * kib, 5, journal(1, 8 * kib)));
    expect(tree.updateLocation(0, 8 * kib, 4, chunk(3, 0))).toBe(6 * kib);
    expect(tree.lookup(0, 8 * kib)).toEqual([
      extent(0, 2 * kib, 4, chunk(3, 0)),
      extent(2 * kib, 2 * kib, 5, journal(1, 8 * kib)),
      extent(4 * kib, 4 * kib, 4, chunk(3, 4 * kib)),
    ]);
    expect(tree.liveBytes(3)).toBe(6 * kib);
  });

  it("updateLocation splits an extent at the range's edges", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 12 * kib, 4, journal(1, 1000)));
    expect(tree.updateLocation(4 * kib, 4 * kib, 4, chunk(3, 0))).toBe(4 * kib);
    expect(tree.lookup(0, 12 * kib)).toEqual([
      extent(0, 4 * kib, 4, journal(1, 1000)),
      extent(4 * kib, 4 * kib, 4, chunk(3, 0)),
      extent(8 * kib, 4 * kib, 4, journal(1, 1000 + 8 * kib)),
    ]);
  });

  it("updateLocation names where the range's first byte lives, across holes", () => {
    const tree = checkedTree();
    tree.insert(extent(2 * kib, 2 * kib, 4, journal(1, 0)));
    tree.insert(extent(6 * kib, 2 * kib, 4, journal(1, 2 * kib)));
    expect(tree.updateLocation(0, 8 * kib, 4, chunk(8, 0))).toBe(4 * kib);
    expect(tree.lookup(0, 8 * kib)).toEqual([
      hole(0, 2 * kib),
      extent(2 * kib, 2 * kib, 4, chunk(8, 2 * kib)),
      hole(4 * kib, 2 * kib),
      extent(6 * kib, 2 * kib, 4, chunk(8, 6 * kib)),
    ]);
  });

  it("updateLocation with no matching op number changes nothing and reports zero", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 4 * kib, 4, journal(1, 0)));
    expect(tree.updateLocation(0, 4 * kib, 3, chunk(3, 0))).toBe(0);
    expect(tree.updateLocation(8 * kib, 4 * kib, 4, chunk(3, 0))).toBe(0);
    expect([...tree.extents()]).toEqual([extent(0, 4 * kib, 4, journal(1, 0))]);
  });
});

describe("removing ranges", () => {
  it("remove splits an extent in the middle", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 12 * kib, 1, chunk(2, 0)));
    expect(tree.remove(4 * kib, 4 * kib)).toBe(4 * kib);
    expect(tree.lookup(0, 12 * kib)).toEqual([
      extent(0, 4 * kib, 1, chunk(2, 0)),
      hole(4 * kib, 4 * kib),
      extent(8 * kib, 4 * kib, 1, chunk(2, 8 * kib)),
    ]);
    expect(tree.liveBytes(2)).toBe(8 * kib);
  });

  it("remove reports the mapped bytes it removed, holes excluded", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 2 * kib, 1, chunk(1, 0)));
    tree.insert(extent(4 * kib, 2 * kib, 2, zeroLocation));
    expect(tree.remove(kib, 4 * kib)).toBe(2 * kib);
    expect(tree.remove(16 * kib, kib)).toBe(0);
    expect(tree.mappedBytes).toBe(2 * kib);
  });

  it("a removed range can be written again by an older op", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 4 * kib, 9, chunk(1, 0)));
    tree.remove(0, 4 * kib);
    tree.insert(extent(0, 4 * kib, 2, journal(0, 0)));
    expect(tree.lookup(0, 4 * kib)).toEqual([extent(0, 4 * kib, 2, journal(0, 0))]);
  });
});

describe("live bytes per chunk", () => {
  it("follow overwrites, trims, splits and removes", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 16 * kib, 1, chunk(1, 0)));
    tree.insert(extent(16 * kib, 16 * kib, 2, chunk(2, 0)));
    expect(tree.liveBytesByChunk()).toEqual(
      new Map([
        [1, 16 * kib],
        [2, 16 * kib],
      ]),
    );
    tree.insert(extent(12 * kib, 8 * kib, 3, chunk(3, 0)));
    expect(tree.liveBytes(1)).toBe(12 * kib);
    expect(tree.liveBytes(2)).toBe(12 * kib);
    expect(tree.liveBytes(3)).toBe(8 * kib);
    tree.remove(kib, kib);
    expect(tree.liveBytes(1)).toBe(11 * kib);
    tree.updateLocation(24 * kib, 8 * kib, 2, chunk(4, 0));
    expect(tree.liveBytes(2)).toBe(4 * kib);
    expect(tree.liveBytes(4)).toBe(8 * kib);
  });

  it("a chunk whose last live byte is overwritten is forgotten", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 4 * kib, 1, chunk(1, 0)));
    tree.insert(extent(0, 4 * kib, 2, chunk(2, 0)));
    expect(tree.liveBytes(1)).toBe(0);
    expect([...tree.liveBytesByChunk().keys()]).toEqual([2]);
  });

  it("the map handed out is a copy", () => {
    const tree = checkedTree();
    tree.insert(extent(0, 4 * kib, 1, chunk(1, 0)));
    tree.liveBytesByChunk().set(1, 0);
    expect(tree.liveBytes(1)).toBe(4 * kib);
  });
});

describe("tree structure", () => {
  it("sequential inserts and removes grow and shrink the tree through splits and merges", () => {
    const tree = checkedTree(4);
    for (let index = 0; index < 300; index += 1) {
      tree.insert(extent(index * 512, 512, index + 1, chunk(index % 5, 0)));
    }
    expect(tree.extentCount).toBe(300);
    expect(tree.height).toBeGreaterThanOrEqual(5);
    expect(tree.nodeCount).toBeGreaterThan(100);
    for (let index = 0; index < 300; index += 2) {
      tree.remove(index * 512, 512);
    }
    expect(tree.extentCount).toBe(150);
    tree.remove(0, 300 * 512);
    expect(tree.extentCount).toBe(0);
    expect(tree.height).toBe(1);
    expect(tree.nodeCount).toBe(1);
  });

  describe("an extent that reaches past its leaf's upper separator", () => {
    // With fanout 4, inserting sectors 0, 2, 4, 6, 8 and 10 splits the leaf into [0, 2]
    // and [4, 6, 8, 10] with separator 4. Removing sector 4 leaves the separator in place,
    // so an extent over sectors 3 to 5 routes to the left leaf yet reaches past it. A
    // change that starts in the left leaf and cuts pieces at or after sector 4 must put
    // them in the right leaf.
    const sector = 512;
    function treeWithStraddlingExtent(): ExtentTree {
      const tree = checkedTree(4);
      for (const slot of [0, 2, 4, 6, 8, 10]) {
        tree.insert(extent(slot * sector, sector, 1, chunk(1, slot * sector)));
      }
      expect(tree.height).toBe(2);
      tree.remove(4 * sector, sector);
      tree.insert(extent(3 * sector, 3 * sector, 2, chunk(2, 0)));
      return tree;
    }

    it("a remove across it leaves its tail piece in the right leaf", () => {
      const tree = treeWithStraddlingExtent();
      expect(tree.remove(2 * sector, 3 * sector)).toBe(3 * sector);
      expect(tree.lookup(2 * sector, 4 * sector)).toEqual([
        hole(2 * sector, 3 * sector),
        extent(5 * sector, sector, 2, chunk(2, 2 * sector)),
      ]);
    });

    it("a piece that starts exactly at the separator goes to the right leaf", () => {
      const tree = treeWithStraddlingExtent();
      expect(tree.remove(2 * sector, 2 * sector)).toBe(2 * sector);
      expect(tree.lookup(2 * sector, 4 * sector)).toEqual([
        hole(2 * sector, 2 * sector),
        extent(4 * sector, 2 * sector, 2, chunk(2, sector)),
      ]);
    });

    it("a remove that routes right of the separator trims the extent in the left leaf", () => {
      const tree = treeWithStraddlingExtent();
      expect(tree.remove(4 * sector, sector)).toBe(sector);
      expect(tree.lookup(3 * sector, 3 * sector)).toEqual([
        extent(3 * sector, sector, 2, chunk(2, 0)),
        hole(4 * sector, sector),
        extent(5 * sector, sector, 2, chunk(2, 2 * sector)),
      ]);
    });

    it("a newer insert across it leaves its tail piece in the right leaf", () => {
      const tree = treeWithStraddlingExtent();
      tree.insert(extent(2 * sector, 3 * sector, 3, journal(0, 0)));
      expect(tree.lookup(2 * sector, 4 * sector)).toEqual([
        extent(2 * sector, 3 * sector, 3, journal(0, 0)),
        extent(5 * sector, sector, 2, chunk(2, 2 * sector)),
      ]);
    });

    it("an older insert around it places its tail fragment in the right leaf", () => {
      const tree = treeWithStraddlingExtent();
      tree.remove(6 * sector, sector);
      tree.insert(extent(2 * sector, 6 * sector, 1, journal(0, 0)));
      expect(tree.lookup(2 * sector, 6 * sector)).toEqual([
        extent(2 * sector, sector, 1, chunk(1, 2 * sector)),
        extent(3 * sector, 3 * sector, 2, chunk(2, 0)),
        extent(6 * sector, 2 * sector, 1, journal(0, 4 * sector)),
      ]);
    });
  });

  it("a lookup across many leaves returns contiguous pieces in order", () => {
    const tree = checkedTree(4);
    for (let index = 0; index < 200; index += 1) {
      tree.insert(extent(index * 2 * kib, kib, index + 1, chunk(1, index * kib)));
    }
    // From the middle of the gap after the first extent to the middle of the last one:
    // a hole, then 199 extents with 198 holes between them, the last one cut short.
    const pieces = tree.lookup(kib + 512, 397 * kib);
    expect(pieces).toHaveLength(398);
    expect(pieces[0]).toEqual(hole(kib + 512, 512));
    expect(pieces[1]).toEqual(extent(2 * kib, kib, 2, chunk(1, kib)));
    expect(pieces[2]).toEqual(hole(3 * kib, kib));
    expect(pieces.at(-1)).toEqual(extent(398 * kib, 512, 200, chunk(1, 199 * kib)));
    let position = kib + 512;
    for (const piece of pieces) {
      expect(piece.offset).toBe(position);
      position += piece.length;
    }
  });

  it("iteration yields every extent in offset order", () => {
    const tree = checkedTree(4);
    const offsets = [90, 10, 50, 30, 70, 20, 80, 40, 60, 0].map((slot) => slot * kib);
    for (const [index, offset] of offsets.entries()) {
      tree.insert(extent(offset, kib, index + 1, zeroLocation));
    }
    expect([...tree].map((stored) => stored.offset)).toEqual(
      [...offsets].sort((left, right) => left - right),
    );
  });

  it("iterating while the tree changes throws instead of reading a torn tree", () => {
    const tree = checkedTree(4);
    for (let index = 0; index < 20; index += 1) {
      tree.insert(extent(index * kib, kib, 1, zeroLocation));
    }
    const iterator = tree.extents();
    iterator.next();
    tree.remove(0, 10 * kib);
    expect(() => iterator.next()).toThrow(BtreeAssertionError);
  });

  it("check() reports a structure that breaks an invariant", () => {
    const tree = new ExtentTree();
    tree.insert(extent(0, 4 * kib, 1, chunk(1, 0)));
    tree.insert(extent(8 * kib, 4 * kib, 1, chunk(1, 0)));
    tree.check();
    // Reach into the root leaf and make the first extent overlap the second.
    const root = (tree as unknown as { root: Leaf }).root;
    root.set(0, 0, 9 * kib, 1, LocationCode.chunk, 1, 0);
    expect(() => tree.check()).toThrow(/overlaps/);
    root.set(0, 0, 4 * kib, 1, LocationCode.chunk, 1, 0);
    tree.check();
    // Same bytes, same chunks, but the second extent no longer points into chunk 1.
    root.set(1, 8 * kib, 4 * kib, 1, LocationCode.journal, 1, 0);
    expect(() => tree.check()).toThrow(/chunk 1 has 8192 live bytes on record but 4096 by recount/);
  });
});

describe("locations", () => {
  it("advanceLocation moves journal and chunk locations and leaves zero alone", () => {
    expect(advanceLocation(journal(1, 10), 5)).toEqual(journal(1, 15));
    expect(advanceLocation(chunk(2, 512), 512)).toEqual(chunk(2, 1024));
    expect(advanceLocation(zeroLocation, 4096)).toBe(zeroLocation);
  });
});

describe("argument assertions", () => {
  const tree = new ExtentTree();
  const cases: [string, () => unknown][] = [
    ["a zero length", () => tree.insert(extent(0, 0, 1, zeroLocation))],
    ["a negative offset", () => tree.insert(extent(-512, 512, 1, zeroLocation))],
    ["a fractional length", () => tree.lookup(0, 0.5)],
    ["an end beyond the safe integers", () => tree.remove(Number.MAX_SAFE_INTEGER - 10, 11)],
    ["a negative op number", () => tree.insert(extent(0, 512, -1, zeroLocation))],
    ["an unknown location kind", () => tree.insert(extent(0, 512, 1, { kind: "tape" } as never))],
    ["a location that is not an object", () => tree.insert(extent(0, 512, 1, null as never))],
    [
      "a chunk offset that would overflow",
      () => tree.insert(extent(0, 1024, 1, chunk(1, Number.MAX_SAFE_INTEGER - 512))),
    ],
    ["a fanout below the minimum", () => new ExtentTree({ fanout: 3 })],
    ["a fanout above the maximum", () => new ExtentTree({ fanout: 100_000 })],
  ];
  for (const [what, call] of cases) {
    it(`refuses ${what} with a BtreeAssertionError and leaves the tree as it was`, () => {
      expect(call).toThrow(BtreeAssertionError);
      try {
        call();
      } catch (error) {
        expect((error as Error).name).toBe("BtreeAssertionError");
        expect((error as Error).message.length).toBeGreaterThan(10);
      }
      expect(tree.extentCount).toBe(0);
      tree.check();
    });
  }
});
