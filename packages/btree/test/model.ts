// A reference model of the extent tree for property tests: an array with one cell per
// unit of address space (a 512-byte sector, or a single byte), each holding the op number
// and location of the newest data there, or null for a hole. It implements the tree's
// rules in the most direct way possible, unit by unit, so that the two can be compared
// after every step.

import fc from "fast-check";
import { expect } from "vitest";
import type { Extent, ExtentTree, Location } from "../src/index.ts";

/**
 * The location `bytes` past `location`, written out here rather than borrowed from the
 * package, so that a bug in the package's own advance cannot hide on both sides.
 */
export function modelAdvance(location: Location, bytes: number): Location {
  switch (location.kind) {
    case "zero":
      return location;
    case "journal":
      return { kind: "journal", segment: location.segment, position: location.position + bytes };
    case "chunk":
      return { kind: "chunk", chunkId: location.chunkId, offset: location.offset + bytes };
  }
}

interface Cell {
  readonly opNum: number;
  readonly location: Location;
}

export class UnitModel {
  private readonly cells: (Cell | null)[];

  constructor(
    readonly unitCount: number,
    readonly unitBytes: number,
  ) {
    this.cells = new Array<Cell | null>(unitCount).fill(null);
  }

  get addressBytes(): number {
    return this.unitCount * this.unitBytes;
  }

  insert(extent: Extent): void {
    this.forEachUnit(extent.offset, extent.length, (unit, byteOffset) => {
      const cell = this.cells[unit] ?? null;
      if (cell === null || cell.opNum < extent.opNum) {
        this.cells[unit] = {
          opNum: extent.opNum,
          location: modelAdvance(extent.location, byteOffset - extent.offset),
        };
      }
    });
  }

  /** Returns the bytes whose location changed, as the tree does. */
  updateLocation(offset: number, length: number, opNum: number, location: Location): number {
    let updatedBytes = 0;
    this.forEachUnit(offset, length, (unit, byteOffset) => {
      const cell = this.cells[unit] ?? null;
      if (cell !== null && cell.opNum === opNum) {
        this.cells[unit] = { opNum, location: modelAdvance(location, byteOffset - offset) };
        updatedBytes += this.unitBytes;
      }
    });
    return updatedBytes;
  }

  /** Returns the mapped bytes removed, as the tree does. */
  remove(offset: number, length: number): number {
    let removedBytes = 0;
    this.forEachUnit(offset, length, (unit) => {
      if (this.cells[unit] !== null) {
        removedBytes += this.unitBytes;
      }
      this.cells[unit] = null;
    });
    return removedBytes;
  }

  cellAt(unit: number): Cell | null {
    return this.cells[unit] ?? null;
  }

  mappedBytes(): number {
    return this.cells.filter((cell) => cell !== null).length * this.unitBytes;
  }

  liveBytesByChunk(): Map<number, number> {
    const live = new Map<number, number>();
    for (const cell of this.cells) {
      if (cell !== null && cell.location.kind === "chunk") {
        live.set(cell.location.chunkId, (live.get(cell.location.chunkId) ?? 0) + this.unitBytes);
      }
    }
    return live;
  }

  private forEachUnit(
    offset: number,
    length: number,
    visit: (unit: number, byteOffset: number) => void,
  ): void {
    for (let unit = offset / this.unitBytes; unit < (offset + length) / this.unitBytes; unit += 1) {
      visit(unit, unit * this.unitBytes);
    }
  }
}

/** One unit's state as text, so that a whole range compares in a single assertion. */
function describeCell(opNum: number, location: Location | null): string {
  if (location === null) {
    return "hole";
  }
  switch (location.kind) {
    case "zero":
      return `op ${opNum} zero`;
    case "journal":
      return `op ${opNum} journal ${location.segment}@${location.position}`;
    case "chunk":
      return `op ${opNum} chunk ${location.chunkId}@${location.offset}`;
  }
}

/**
 * Asserts that the tree's lookup of [offset, offset + length) agrees with the model unit
 * by unit: the pieces tile the range in order with maximal holes, and each unit has the
 * model's op number and location (advanced to that unit) or is a hole where the model
 * has none.
 */
export function expectLookupMatchesModel(
  tree: ExtentTree,
  model: UnitModel,
  offset: number,
  length: number,
): void {
  const pieces = tree.lookup(offset, length);
  const tiling: string[] = [];
  const actual: string[] = [];
  let position = offset;
  let previousWasHole = false;
  for (const piece of pieces) {
    if (piece.offset !== position || piece.length <= 0) {
      tiling.push(`piece [${piece.offset}, +${piece.length}) where ${position} was expected`);
    }
    if (previousWasHole && piece.location === null) {
      tiling.push(`two holes in a row at ${piece.offset}`);
    }
    previousWasHole = piece.location === null;
    for (
      let byteOffset = piece.offset;
      byteOffset < piece.offset + piece.length;
      byteOffset += model.unitBytes
    ) {
      actual.push(
        piece.location === null
          ? describeCell(0, null)
          : describeCell(piece.opNum, modelAdvance(piece.location, byteOffset - piece.offset)),
      );
    }
    position = piece.offset + piece.length;
  }
  if (position !== offset + length) {
    tiling.push(`pieces end at ${position}, not ${offset + length}`);
  }
  expect(tiling).toEqual([]);
  const expected: string[] = [];
  for (let unit = offset / model.unitBytes; unit < (offset + length) / model.unitBytes; unit += 1) {
    const cell = model.cellAt(unit);
    expected.push(cell === null ? describeCell(0, null) : describeCell(cell.opNum, cell.location));
  }
  expect(actual).toEqual(expected);
}

/**
 * Asserts the tree against the model: `check()`, the counts, the live bytes, and every
 * unit of [offset, offset + length) (the whole space unless given).
 */
export function expectTreeMatchesModel(
  tree: ExtentTree,
  model: UnitModel,
  offset = 0,
  length = model.addressBytes,
): void {
  tree.check();
  expectLookupMatchesModel(tree, model, offset, length);
  expect(tree.mappedBytes).toBe(model.mappedBytes());
  expect(sortedEntries(tree.liveBytesByChunk())).toEqual(sortedEntries(model.liveBytesByChunk()));
  let extents = 0;
  for (const extent of tree.extents()) {
    if (extent.offset + extent.length > model.addressBytes) {
      expect.fail(`extent [${extent.offset}, +${extent.length}) lies outside the model`);
    }
    extents += 1;
  }
  expect(tree.extentCount).toBe(extents);
}

export function sortedEntries(map: ReadonlyMap<number, number>): [number, number][] {
  return [...map.entries()].sort((left, right) => left[0] - right[0]);
}

// --- Arbitraries -----------------------------------------------------------------------

export type Operation =
  | { readonly kind: "insert"; readonly extent: Extent }
  | {
      readonly kind: "updateLocation";
      readonly offset: number;
      readonly length: number;
      readonly opNum: number;
      readonly location: Location;
    }
  | { readonly kind: "remove"; readonly offset: number; readonly length: number }
  | { readonly kind: "lookup"; readonly offset: number; readonly length: number };

export interface OperationSpace {
  readonly unitCount: number;
  readonly unitBytes: number;
  /** The longest range an operation covers, in units. */
  readonly rangeUnitsMax: number;
  /** Op numbers are drawn from 1 to this: small, so that older, newer and equal all occur. */
  readonly opNumMax: number;
}

export function locationArbitrary(): fc.Arbitrary<Location> {
  return fc.oneof(
    fc.record(
      {
        kind: fc.constant("chunk" as const),
        chunkId: fc.integer({ min: 0, max: 3 }),
        offset: fc.integer({ min: 0, max: 4096 }).map((sectors) => sectors * 512),
      },
      { noNullPrototype: true },
    ),
    fc.record(
      {
        kind: fc.constant("journal" as const),
        segment: fc.integer({ min: 0, max: 2 }),
        position: fc.integer({ min: 0, max: 1 << 20 }),
      },
      { noNullPrototype: true },
    ),
    fc.constant({ kind: "zero" as const }),
  );
}

export function rangeArbitrary(
  space: OperationSpace,
): fc.Arbitrary<{ offset: number; length: number }> {
  return fc
    .tuple(
      fc.integer({ min: 0, max: space.unitCount - 1 }),
      fc.integer({ min: 1, max: space.rangeUnitsMax }),
    )
    .map(([startUnit, units]) => ({
      offset: startUnit * space.unitBytes,
      length: Math.min(units, space.unitCount - startUnit) * space.unitBytes,
    }));
}

export function operationArbitrary(space: OperationSpace): fc.Arbitrary<Operation> {
  const range = rangeArbitrary(space);
  const opNum = fc.integer({ min: 1, max: space.opNumMax });
  return fc.oneof(
    {
      weight: 5,
      arbitrary: fc
        .record({ range, opNum, location: locationArbitrary() }, { noNullPrototype: true })
        .map(
          ({ range: { offset, length }, opNum: op, location }): Operation => ({
            kind: "insert",
            extent: { offset, length, opNum: op, location },
          }),
        ),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ range, opNum, location: locationArbitrary() }, { noNullPrototype: true })
        .map(
          ({ range: { offset, length }, opNum: op, location }): Operation => ({
            kind: "updateLocation",
            offset,
            length,
            opNum: op,
            location,
          }),
        ),
    },
    {
      weight: 1,
      arbitrary: range.map(({ offset, length }): Operation => ({ kind: "remove", offset, length })),
    },
    {
      weight: 2,
      arbitrary: range.map(({ offset, length }): Operation => ({ kind: "lookup", offset, length })),
    },
  );
}

/** Applies `operation` to both, asserting that their return values agree. */
export function applyToBoth(tree: ExtentTree, model: UnitModel, operation: Operation): void {
  switch (operation.kind) {
    case "insert":
      tree.insert(operation.extent);
      model.insert(operation.extent);
      return;
    case "updateLocation":
      expect(
        tree.updateLocation(
          operation.offset,
          operation.length,
          operation.opNum,
          operation.location,
        ),
      ).toBe(
        model.updateLocation(
          operation.offset,
          operation.length,
          operation.opNum,
          operation.location,
        ),
      );
      return;
    case "remove":
      expect(tree.remove(operation.offset, operation.length)).toBe(
        model.remove(operation.offset, operation.length),
      );
      return;
    case "lookup":
      expectLookupMatchesModel(tree, model, operation.offset, operation.length);
      return;
    default: {
      const unknown: never = operation;
      throw new Error(`unknown operation ${JSON.stringify(unknown)}`);
    }
  }
}

/** Applies `operation` to the tree alone and returns what the call returned. */
export function applyToTree(tree: ExtentTree, operation: Operation): unknown {
  switch (operation.kind) {
    case "insert":
      tree.insert(operation.extent);
      return undefined;
    case "updateLocation":
      return tree.updateLocation(
        operation.offset,
        operation.length,
        operation.opNum,
        operation.location,
      );
    case "remove":
      return tree.remove(operation.offset, operation.length);
    case "lookup":
      return tree.lookup(operation.offset, operation.length);
    default: {
      const unknown: never = operation;
      throw new Error(`unknown operation ${JSON.stringify(unknown)}`);
    }
  }
}

/** A tree (and its model) after `operations`, for tests that need a varied tree. */
export function buildTree(
  operations: readonly Operation[],
  space: OperationSpace,
  tree: ExtentTree,
): UnitModel {
  const model = new UnitModel(space.unitCount, space.unitBytes);
  for (const operation of operations) {
    applyToBoth(tree, model, operation);
  }
  return model;
}
