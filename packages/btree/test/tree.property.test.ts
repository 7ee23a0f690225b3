// Model-based properties: random interleavings of insert, updateLocation, remove and
// lookup, applied to the tree and to a unit-by-unit reference model, must agree on every
// unit's op number and location, on the bytes each call reports, and on live bytes per
// chunk; and `check()` must pass after every step. Small address spaces make overlaps
// the rule; small fanouts make splits, borrows and merges happen on most steps.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExtentTree } from "../src/index.ts";
import {
  applyToBoth,
  expectTreeMatchesModel,
  type OperationSpace,
  operationArbitrary,
  UnitModel,
} from "./model.ts";

const sectorSpace: OperationSpace = {
  unitCount: 256,
  unitBytes: 512,
  rangeUnitsMax: 48,
  opNumMax: 24,
};

const byteSpace: OperationSpace = {
  unitCount: 160,
  unitBytes: 1,
  rangeUnitsMax: 40,
  opNumMax: 16,
};

const wideSpace: OperationSpace = {
  unitCount: 4096,
  unitBytes: 512,
  rangeUnitsMax: 24,
  opNumMax: 1000,
};

function runAgainstModel(
  space: OperationSpace,
  fanout: number,
  stepsMax: number,
  numRuns: number,
): void {
  fc.assert(
    fc.property(
      fc.array(operationArbitrary(space), { minLength: 1, maxLength: stepsMax }),
      (operations) => {
        const tree = new ExtentTree({ fanout });
        const model = new UnitModel(space.unitCount, space.unitBytes);
        for (const operation of operations) {
          applyToBoth(tree, model, operation);
          // A full comparison after every step over a small space; over a wide one, the
          // touched range after every step and everything at the end.
          if (space.unitCount <= 256 || operation.kind === "lookup") {
            expectTreeMatchesModel(tree, model);
          } else {
            const range = operation.kind === "insert" ? operation.extent : operation;
            expectTreeMatchesModel(tree, model, range.offset, range.length);
          }
        }
        expectTreeMatchesModel(tree, model);
      },
    ),
    { numRuns },
  );
}

describe("the extent tree against a sector-by-sector model", () => {
  it("agrees on every sector, byte count and live byte with the default fanout", () => {
    runAgainstModel(sectorSpace, 128, 40, 300);
  });

  it("agrees with fanout 4, where nearly every step splits or merges nodes", () => {
    runAgainstModel(sectorSpace, 4, 80, 300);
  });

  it("agrees with fanout 5, where splits are uneven", () => {
    runAgainstModel(sectorSpace, 5, 80, 150);
  });

  it("agrees at single-byte granularity", () => {
    runAgainstModel(byteSpace, 4, 60, 200);
  });

  it("agrees over a wide space of mostly separate extents that grow a deep tree", () => {
    // Many short inserts over 4096 sectors make trees of a hundred or more extents, four
    // or five levels deep at fanout 4, before removes and overwrites take them apart.
    runAgainstModel(wideSpace, 4, 250, 40);
  });
});

describe("tree shape under churn", () => {
  it("grows several levels and shrinks back to an empty root leaf", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 4095 }), { minLength: 100, maxLength: 400 }),
        (slots) => {
          const tree = new ExtentTree({ fanout: 4 });
          const distinct = [...new Set(slots)];
          for (const [index, slot] of distinct.entries()) {
            tree.insert({
              offset: slot * 512,
              length: 512,
              opNum: index + 1,
              location: { kind: "chunk", chunkId: slot % 3, offset: 0 },
            });
          }
          tree.check();
          expect(tree.extentCount).toBe(distinct.length);
          expect(tree.height).toBeGreaterThanOrEqual(4);
          for (const slot of distinct) {
            expect(tree.remove(slot * 512, 512)).toBe(512);
            tree.check();
          }
          expect(tree.extentCount).toBe(0);
          expect(tree.height).toBe(1);
          expect(tree.nodeCount).toBe(1);
          expect(tree.liveBytesByChunk().size).toBe(0);
        },
      ),
      { numRuns: 30 },
    );
  });
});
