// Builds a tree bottom-up from extents that arrive in offset order, as a checkpoint load
// delivers them. Inserting one by one would split every leaf on the way and leave them
// about two-thirds full; building bottom-up fills each node to `bulkFillRatio` of its
// fanout in one pass, with no search and no shifting, and yields a tree indistinguishable
// from one built by inserts: the same invariants hold, and it is mutated the same way.
//
// Leaves are filled as extents arrive; the branch levels are built in `finish`, when the
// number of leaves is known. Only then is the tree handed out, so a caller that stops
// half way (a corrupt checkpoint) has nothing half-built to misuse.

import { assert, assertIntegerInRange, fail } from "./assert.ts";
import { bulkFillRatio, fanoutDefault, fanoutMax, fanoutMin } from "./constants.ts";
import { LiveBytes } from "./live-bytes.ts";
import { LocationCode } from "./location.ts";
import { Branch, Leaf, type Node } from "./node.ts";
import { assembleTree, type ExtentTree, type ExtentTreeOptions } from "./tree.ts";

export class TreeBuilder {
  private readonly fanout: number;
  private readonly fillMin: number;
  private readonly fillTarget: number;
  private readonly leaves: Leaf[] = [];
  private current: Leaf | null = null;
  private previousEnd = 0;
  private extentCount = 0;
  private mappedBytes = 0;
  private readonly liveBytes = new LiveBytes();
  private finished = false;

  constructor(options: ExtentTreeOptions = {}) {
    const fanout = options.fanout ?? fanoutDefault;
    assertIntegerInRange(fanout, "fanout", fanoutMin, fanoutMax);
    this.fanout = fanout;
    this.fillMin = Math.floor(fanout / 2);
    this.fillTarget = Math.max(this.fillMin, Math.floor(fanout * bulkFillRatio));
  }

  /**
   * Adds the next extent, in stored form. It must start at or after the end of the one
   * before: the caller has validated its input, so a violation is a bug.
   */
  append(
    offset: number,
    length: number,
    opNum: number,
    locationCode: number,
    locationId: number,
    locationOffset: number,
  ): void {
    assert(!this.finished, "a finished tree builder was appended to");
    if (offset < this.previousEnd || length <= 0) {
      fail(
        `bulk-built extents must be ordered and non-empty: [${offset}, +${length}) after ${this.previousEnd}`,
      );
    }
    let leaf = this.current;
    if (leaf === null || leaf.count === this.fillTarget) {
      const next = new Leaf(this.fanout);
      if (leaf !== null) {
        leaf.next = next;
        next.previous = leaf;
      }
      this.leaves.push(next);
      this.current = next;
      leaf = next;
    }
    leaf.insertAt(leaf.count, offset, length, opNum, locationCode, locationId, locationOffset);
    this.previousEnd = offset + length;
    this.extentCount += 1;
    this.mappedBytes += length;
    if (locationCode === LocationCode.chunk) {
      this.liveBytes.add(locationId, length);
    }
  }

  /** Builds the branch levels and hands out the tree. The builder is spent afterwards. */
  finish(): ExtentTree {
    assert(!this.finished, "a tree builder was finished twice");
    this.finished = true;
    this.balanceLastLeaves();
    let level: Node[] = this.leaves;
    let lowerBounds = this.leaves.map((leaf) => leaf.offsetAt(0));
    let nodeCount = level.length;
    let height = 1;
    while (level.length > 1) {
      const sizes = groupSizes(level.length, this.fillTarget, this.fillMin, this.fanout);
      const parents: Node[] = [];
      const parentLowerBounds: number[] = [];
      let start = 0;
      for (const size of sizes) {
        const end = start + size;
        parents.push(new Branch(lowerBounds.slice(start + 1, end), level.slice(start, end)));
        parentLowerBounds.push(lowerBounds[start]!);
        start = end;
      }
      level = parents;
      lowerBounds = parentLowerBounds;
      nodeCount += level.length;
      height += 1;
    }
    const root = level[0] ?? new Leaf(this.fanout);
    return assembleTree({
      fanout: this.fanout,
      root,
      height,
      extentCount: this.extentCount,
      nodeCount: Math.max(nodeCount, 1),
      mappedBytes: this.mappedBytes,
      liveBytes: this.liveBytes,
    });
  }

  /**
   * The last leaf holds whatever was left over and may be below the minimum fill: then it
   * takes entries from the full leaf before it, or the two become one.
   */
  private balanceLastLeaves(): void {
    const last = this.leaves.at(-1);
    const previous = this.leaves.at(-2);
    if (last === undefined || previous === undefined || last.count >= this.fillMin) {
      return;
    }
    const total = previous.count + last.count;
    if (total <= this.fanout) {
      previous.appendFrom(last, 0, last.count);
      previous.next = null;
      this.leaves.pop();
      return;
    }
    // Move the tail of `previous` in front of `last` so each holds about half.
    const keep = Math.ceil(total / 2);
    const moved = new Leaf(this.fanout);
    previous.moveTailTo(moved, keep);
    moved.appendFrom(last, 0, last.count);
    last.count = 0;
    last.appendFrom(moved, 0, moved.count);
  }
}

/**
 * How to cut `count` children into branches of `fillTarget`, so that every branch holds
 * between `fillMin` and `fanout`: the remainder joins the branch before it, or the two
 * split the sum between them.
 */
export function groupSizes(
  count: number,
  fillTarget: number,
  fillMin: number,
  fanout: number,
): number[] {
  const sizes: number[] = [];
  let remaining = count;
  while (remaining > 0) {
    sizes.push(Math.min(remaining, fillTarget));
    remaining -= fillTarget;
  }
  const last = sizes.at(-1);
  if (sizes.length >= 2 && last !== undefined && last < fillMin) {
    sizes.pop();
    const total = sizes.pop()! + last;
    if (total <= fanout) {
      sizes.push(total);
    } else {
      sizes.push(Math.ceil(total / 2), Math.floor(total / 2));
    }
  }
  return sizes;
}
