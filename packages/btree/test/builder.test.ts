import { describe, expect, it } from "vitest";
import { groupSizes, TreeBuilder } from "../src/builder.ts";
import { BtreeAssertionError } from "../src/index.ts";
import { LocationCode } from "../src/location.ts";

function build(count: number, fanout: number) {
  const builder = new TreeBuilder({ fanout });
  for (let index = 0; index < count; index += 1) {
    builder.append(index * 1024, 512, index + 1, LocationCode.chunk, index % 3, index * 512);
  }
  return builder.finish();
}

describe("the bulk builder", () => {
  it("meets every invariant for every extent count, at several fanouts", () => {
    for (const fanout of [4, 5, 6, 9, 16]) {
      for (let count = 0; count <= 300; count += 1) {
        const tree = build(count, fanout);
        tree.check();
        expect(tree.extentCount).toBe(count);
        expect([...tree.extents()].map((extent) => extent.offset)).toEqual(
          Array.from({ length: count }, (_, index) => index * 1024),
        );
      }
    }
  });

  it("packs nodes fuller than random inserts do", () => {
    const tree = build(100_000, 128);
    tree.check();
    // 112 of 128 per leaf: 893 leaves, eight branches and a root.
    expect(tree.nodeCount).toBe(902);
    expect(tree.height).toBe(3);
  });

  it("builds a tree that splits and merges like any other", () => {
    const tree = build(200, 4);
    for (let index = 0; index < 200; index += 3) {
      tree.insert({
        offset: index * 1024 + 512,
        length: 1024,
        opNum: 1000 + index,
        location: { kind: "zero" },
      });
      tree.check();
    }
    const mappedBefore = tree.mappedBytes;
    const removed = tree.remove(0, 100 * 1024);
    tree.check();
    expect(removed).toBeGreaterThan(0);
    expect(tree.mappedBytes).toBe(mappedBefore - removed);
    expect(tree.lookup(0, 100 * 1024)).toEqual([{ offset: 0, length: 100 * 1024, location: null }]);
  });

  it("refuses extents out of order, and appends after finishing", () => {
    const builder = new TreeBuilder({ fanout: 4 });
    builder.append(1024, 512, 1, LocationCode.zero, 0, 0);
    expect(() => builder.append(1024, 512, 1, LocationCode.zero, 0, 0)).toThrow(
      BtreeAssertionError,
    );
    builder.finish();
    expect(() => builder.append(4096, 512, 1, LocationCode.zero, 0, 0)).toThrow(
      BtreeAssertionError,
    );
  });

  it("cuts a level into groups within the fill bounds", () => {
    expect(groupSizes(10, 7, 4, 8)).toEqual([5, 5]);
    expect(groupSizes(15, 7, 4, 8)).toEqual([7, 8]);
    expect(groupSizes(14, 7, 4, 8)).toEqual([7, 7]);
    expect(groupSizes(3, 7, 4, 8)).toEqual([3]);
    for (let count = 2; count < 500; count += 1) {
      const sizes = groupSizes(count, 112, 64, 128);
      expect(sizes.reduce((total, size) => total + size, 0)).toBe(count);
      if (sizes.length > 1) {
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(64);
      }
      expect(Math.max(...sizes)).toBeLessThanOrEqual(128);
    }
  });
});
