// The extent index of one partition replica: a B+tree of non-overlapping extents
// {offset, length, opNum, location} ordered by offset, mapping every written byte range
// of the partition to where its newest data lives.
//
// Model. Op numbers order all writes of a partition, so "newest" is decided by op number
// and never by arrival order: replay and flush may deliver older information after newer,
// and the tree must end up the same. An insert therefore replaces a stored extent only
// where the stored op number is lower; where the stored one is as new or newer (equal
// included, so a replayed duplicate never moves a flushed range back to the journal), the
// inserted extent fills only the holes around it. A location update applies only where the
// stored op number still equals the one given, so a flush never clobbers a newer write.
//
// Every mutation follows one path: find the stored extents that overlap the range,
// compute the pieces that replace them (trimmed, split or new), and apply the difference
// as in-place rewrites (same offset), deletes and inserts of single entries. Trimming the
// front of an extent advances its location by the bytes cut, so each piece still points
// at its own bytes. Live bytes per chunk, the extent count and the mapped bytes are
// adjusted by the three single-entry primitives and nowhere else.
//
// Failure model. The tree is synchronous and in memory; it has no I/O to fail. Bad
// arguments and mutation during iteration are programmer errors and throw
// BtreeAssertionError before anything changes. `check()` recomputes every invariant from
// scratch for tests and for paranoid callers.

import { assert, assertIntegerInRange, fail } from "./assert.ts";
import { addressBytesMax, fanoutDefault, fanoutMax, fanoutMin, heightMax } from "./constants.ts";
import { EntryList } from "./entry-list.ts";
import { verifyTree } from "./invariants.ts";
import { LiveBytes } from "./live-bytes.ts";
import {
  advanceLocationOffset,
  assertLocation,
  type Location,
  LocationCode,
  locationCodeOf,
  locationFromParts,
  locationIdOf,
  locationOffsetOf,
} from "./location.ts";
import { Branch, Leaf, type Node } from "./node.ts";

/** A byte range and where its newest data lives. */
export interface Extent {
  readonly offset: number;
  readonly length: number;
  readonly opNum: number;
  readonly location: Location;
}

/** A byte range no extent covers: it was never written, or it was removed. */
export interface Hole {
  readonly offset: number;
  readonly length: number;
  readonly location: null;
}

/** One piece of a lookup: test `piece.location === null` to tell a hole from an extent. */
export type Piece = Extent | Hole;

export interface ExtentTreeOptions {
  /** Entries per leaf and children per branch, from `fanoutMin` to `fanoutMax`. */
  readonly fanout?: number;
}

/** A finished tree in parts, as the bulk builder assembles it. Package use only. */
export interface TreeParts {
  readonly fanout: number;
  readonly root: Node;
  readonly height: number;
  readonly extentCount: number;
  readonly nodeCount: number;
  readonly mappedBytes: number;
  readonly liveBytes: LiveBytes;
}

let adoptParts: (parts: TreeParts) => ExtentTree;

/**
 * Wraps parts built elsewhere in the package (the checkpoint loader's bulk builder) into
 * a tree. Not exported from the package: outside callers build trees by inserting.
 */
export function assembleTree(parts: TreeParts): ExtentTree {
  return adoptParts(parts);
}

export class ExtentTree {
  readonly fanout: number;
  /**
   * Entries or children every node but the root keeps: a split of a full node leaves at
   * least this many on each side, and two siblings this small fit in one node.
   */
  private readonly fillMin: number;
  private root: Node;
  private heightValue = 1;
  private extentCountValue = 0;
  private nodeCountValue = 1;
  private mappedBytesValue = 0;
  private liveBytesValue = new LiveBytes();
  /** Bumped by every mutating call, so that iterators notice a tree changed under them. */
  private generation = 0;

  // The branches and child indexes of the last descent, root first. Splits and merges
  // walk back up this path instead of keeping parent pointers in every node.
  private readonly pathBranches: Branch[] = [];
  private readonly pathIndexes: number[] = [];

  // The result of the last `seek`: the first entry that ends after the sought offset
  // (`scanLeaf` null or `scanIndex` past its count when there is none), and the floor
  // index in the leaf the descent reached, where an insert without overlaps goes.
  private scanLeaf: Leaf | null = null;
  private scanIndex = 0;
  private seekLeaf: Leaf | null = null;
  private seekFloorIndex = -1;
  /** Every offset in the leaf the last descent reached is below this. */
  private descentUpperBound = Number.POSITIVE_INFINITY;

  // Scratch for rewriting a range, reused across calls.
  private readonly pieces = new EntryList();
  private readonly deleteOffsets: number[] = [];
  private readonly insertPieceIndexes: number[] = [];

  static {
    adoptParts = (parts: TreeParts): ExtentTree => {
      const tree = new ExtentTree({ fanout: parts.fanout });
      tree.root = parts.root;
      tree.heightValue = parts.height;
      tree.extentCountValue = parts.extentCount;
      tree.nodeCountValue = parts.nodeCount;
      tree.mappedBytesValue = parts.mappedBytes;
      tree.liveBytesValue = parts.liveBytes;
      return tree;
    };
  }

  constructor(options: ExtentTreeOptions = {}) {
    const fanout = options.fanout ?? fanoutDefault;
    assertIntegerInRange(fanout, "fanout", fanoutMin, fanoutMax);
    this.fanout = fanout;
    this.fillMin = Math.floor(fanout / 2);
    this.root = new Leaf(fanout);
  }

  /** How many extents the tree holds. */
  get extentCount(): number {
    return this.extentCountValue;
  }

  /** How many nodes (leaves and branches) the tree holds. */
  get nodeCount(): number {
    return this.nodeCountValue;
  }

  /** Levels from the root to the leaves: 1 while the root is a leaf. */
  get height(): number {
    return this.heightValue;
  }

  /** The bytes covered by extents (holes excluded), zero extents included. */
  get mappedBytes(): number {
    return this.mappedBytesValue;
  }

  /** How many bytes of the tree's extents point into chunk `chunkId`. */
  liveBytes(chunkId: number): number {
    return this.liveBytesValue.get(chunkId);
  }

  /** Live bytes of every chunk that holds any, as a copy. */
  liveBytesByChunk(): Map<number, number> {
    return this.liveBytesValue.toMap();
  }

  /**
   * Records that `extent.location` holds op `extent.opNum`'s data for the extent's range.
   * Where a stored extent has a lower op number, the stored one is trimmed or split around
   * the new one; where it has an equal or higher op number it stays, and the new extent
   * fills only the parts of its range that it does not cover.
   */
  insert(extent: Extent): void {
    const { offset, length, opNum, location } = extent;
    assertIntegerInRange(offset, "extent offset", 0, addressBytesMax - 1);
    assertIntegerInRange(length, "extent length", 1, addressBytesMax - offset);
    assertIntegerInRange(opNum, "extent op number", 0, Number.MAX_SAFE_INTEGER);
    assertLocation(location, length);
    this.generation += 1;

    const code = locationCodeOf(location);
    const id = locationIdOf(location);
    const locationOffset = locationOffsetOf(location);
    const end = offset + length;
    const overlapCount = this.seekOverlaps(offset, end);
    if (overlapCount === 0) {
      // The common case, a write to a range nothing covers: the descent just made is the
      // one the insert needs.
      this.insertIntoLeaf(
        this.seekLeaf!,
        this.seekFloorIndex + 1,
        offset,
        length,
        opNum,
        code,
        id,
        locationOffset,
      );
      return;
    }

    this.pieces.clear();
    // `position` is where the part of the new extent not yet placed begins.
    let position = offset;
    let leaf = this.scanLeaf!;
    let index = this.scanIndex;
    for (let overlap = 0; overlap < overlapCount; overlap += 1) {
      if (index === leaf.count) {
        leaf = leaf.next!;
        index = 0;
      }
      const storedStart = leaf.offsetAt(index);
      const storedEnd = leaf.endOf(index);
      if (leaf.opNumAt(index) >= opNum) {
        if (storedStart > position) {
          this.pushPiece(position, storedStart, opNum, code, id, locationOffset, offset);
        }
        this.pushStoredPiece(leaf, index, storedStart, storedEnd);
        position = Math.max(position, storedEnd);
      } else {
        if (storedStart < offset) {
          this.pushStoredPiece(leaf, index, storedStart, offset);
        }
        if (storedEnd > end) {
          // Only the last overlap can reach past the end; the new extent's tail goes first.
          if (position < end) {
            this.pushPiece(position, end, opNum, code, id, locationOffset, offset);
          }
          position = end;
          this.pushStoredPiece(leaf, index, end, storedEnd);
        }
      }
      index += 1;
    }
    if (position < end) {
      this.pushPiece(position, end, opNum, code, id, locationOffset, offset);
    }
    this.applyPieces(overlapCount);
  }

  /**
   * Points the parts of [offset, offset + length) whose stored op number equals `opNum` at
   * `location` (which names where byte `offset` now lives); other parts keep theirs. This
   * is how a flush record moves ranges from the journal to a chunk without clobbering a
   * newer write that landed meanwhile. Returns how many bytes changed location.
   */
  updateLocation(offset: number, length: number, opNum: number, location: Location): number {
    assertRange(offset, length);
    assertIntegerInRange(opNum, "op number", 0, Number.MAX_SAFE_INTEGER);
    assertLocation(location, length);
    this.generation += 1;

    const code = locationCodeOf(location);
    const id = locationIdOf(location);
    const locationOffset = locationOffsetOf(location);
    const end = offset + length;
    const overlapCount = this.seekOverlaps(offset, end);
    this.pieces.clear();
    let updatedBytes = 0;
    let leaf = this.scanLeaf!;
    let index = this.scanIndex;
    for (let overlap = 0; overlap < overlapCount; overlap += 1) {
      if (index === leaf.count) {
        leaf = leaf.next!;
        index = 0;
      }
      const storedStart = leaf.offsetAt(index);
      const storedEnd = leaf.endOf(index);
      if (leaf.opNumAt(index) !== opNum) {
        this.pushStoredPiece(leaf, index, storedStart, storedEnd);
      } else {
        const updatedStart = Math.max(storedStart, offset);
        const updatedEnd = Math.min(storedEnd, end);
        if (storedStart < updatedStart) {
          this.pushStoredPiece(leaf, index, storedStart, updatedStart);
        }
        this.pushPiece(updatedStart, updatedEnd, opNum, code, id, locationOffset, offset);
        if (updatedEnd < storedEnd) {
          this.pushStoredPiece(leaf, index, updatedEnd, storedEnd);
        }
        updatedBytes += updatedEnd - updatedStart;
      }
      index += 1;
    }
    if (updatedBytes > 0) {
      this.applyPieces(overlapCount);
    }
    return updatedBytes;
  }

  /**
   * Makes [offset, offset + length) a hole: extents inside it go, extents across its
   * edges are trimmed or split. Returns how many mapped bytes were removed.
   */
  remove(offset: number, length: number): number {
    assertRange(offset, length);
    this.generation += 1;

    const end = offset + length;
    const overlapCount = this.seekOverlaps(offset, end);
    this.pieces.clear();
    let removedBytes = 0;
    let leaf = this.scanLeaf!;
    let index = this.scanIndex;
    for (let overlap = 0; overlap < overlapCount; overlap += 1) {
      if (index === leaf.count) {
        leaf = leaf.next!;
        index = 0;
      }
      const storedStart = leaf.offsetAt(index);
      const storedEnd = leaf.endOf(index);
      if (storedStart < offset) {
        this.pushStoredPiece(leaf, index, storedStart, offset);
      }
      if (storedEnd > end) {
        this.pushStoredPiece(leaf, index, end, storedEnd);
      }
      removedBytes += Math.min(storedEnd, end) - Math.max(storedStart, offset);
      index += 1;
    }
    if (overlapCount > 0) {
      this.applyPieces(overlapCount);
    }
    return removedBytes;
  }

  /**
   * The pieces that cover [offset, offset + length) in order: the parts of stored extents
   * (with their locations advanced to the piece's first byte) and holes between them.
   */
  lookup(offset: number, length: number): Piece[] {
    assertRange(offset, length);
    const end = offset + length;
    const pieces: Piece[] = [];
    this.seek(offset);
    let position = offset;
    let leaf = this.scanLeaf;
    let index = this.scanIndex;
    while (leaf !== null) {
      if (index === leaf.count) {
        leaf = leaf.next;
        index = 0;
        continue;
      }
      const storedStart = leaf.offsetAt(index);
      if (storedStart >= end) {
        break;
      }
      if (storedStart > position) {
        pieces.push({ offset: position, length: storedStart - position, location: null });
        position = storedStart;
      }
      const pieceEnd = Math.min(leaf.endOf(index), end);
      const code = leaf.locationCodeAt(index);
      pieces.push({
        offset: position,
        length: pieceEnd - position,
        opNum: leaf.opNumAt(index),
        location: locationFromParts(
          code,
          leaf.locationIdAt(index),
          advanceLocationOffset(code, leaf.locationOffsetAt(index), position - storedStart),
        ),
      });
      position = pieceEnd;
      index += 1;
    }
    if (position < end) {
      pieces.push({ offset: position, length: end - position, location: null });
    }
    return pieces;
  }

  /**
   * Every extent in offset order. The tree must not change while the iteration runs: the
   * next step after a mutation throws BtreeAssertionError rather than read a torn tree.
   */
  *extents(): Generator<Extent, void, undefined> {
    const generation = this.generation;
    for (let leaf: Leaf | null = this.firstLeaf(); leaf !== null; leaf = leaf.next) {
      for (let index = 0; index < leaf.count; index += 1) {
        yield extentAt(leaf, index);
        if (this.generation !== generation) {
          fail("the extent tree changed while it was being iterated");
        }
      }
    }
  }

  [Symbol.iterator](): Generator<Extent, void, undefined> {
    return this.extents();
  }

  /**
   * Recomputes every invariant from scratch: key order, no overlaps, positive lengths,
   * node fill bounds, one leaf depth, separator bounds, leaf links, and the counts and
   * live bytes against a recount. Throws BtreeAssertionError naming the first violation.
   */
  check(): void {
    verifyTree({
      root: this.root,
      height: this.heightValue,
      fanout: this.fanout,
      fillMin: this.fillMin,
      extentCount: this.extentCountValue,
      nodeCount: this.nodeCountValue,
      mappedBytes: this.mappedBytesValue,
      liveBytes: this.liveBytesValue,
    });
  }

  // --- Finding entries ----------------------------------------------------------------

  /** Descends to the leaf whose key range holds `offset`, recording the path. */
  private descend(offset: number): Leaf {
    let node: Node = this.root;
    let level = 0;
    let upperBound = Number.POSITIVE_INFINITY;
    while (!node.isLeaf) {
      const index = node.childIndexFor(offset);
      this.pathBranches[level] = node;
      this.pathIndexes[level] = index;
      // A separator to the right bounds the child; deeper ones are tighter.
      if (index < node.keys.length) {
        upperBound = node.keys[index]!;
      }
      node = node.children[index]!;
      level += 1;
    }
    this.descentUpperBound = upperBound;
    return node;
  }

  private firstLeaf(): Leaf {
    let node: Node = this.root;
    while (!node.isLeaf) {
      node = node.children[0]!;
    }
    return node;
  }

  /**
   * Positions the scan at the first entry that ends after `offset`: the extent covering
   * `offset` if there is one, else the first one after it.
   */
  private seek(offset: number): void {
    const leaf = this.descend(offset);
    const floor = leaf.floorIndex(offset);
    this.seekLeaf = leaf;
    this.seekFloorIndex = floor;
    let scanLeaf = leaf;
    let scanIndex = floor;
    if (floor < 0) {
      // Every key here is above `offset`; the extent that may cover it ends the
      // previous leaf (separators are lower bounds, so it cannot be in this one).
      if (leaf.previous !== null) {
        scanLeaf = leaf.previous;
        scanIndex = scanLeaf.count - 1;
      } else {
        scanIndex = 0;
      }
    }
    if (scanIndex < scanLeaf.count && scanLeaf.endOf(scanIndex) <= offset) {
      scanIndex += 1;
    }
    if (scanIndex === scanLeaf.count && scanLeaf.next !== null) {
      scanLeaf = scanLeaf.next;
      scanIndex = 0;
    }
    this.scanLeaf = scanLeaf;
    this.scanIndex = scanIndex;
  }

  /** Seeks to `start` and counts the entries that overlap [start, end). */
  private seekOverlaps(start: number, end: number): number {
    this.seek(start);
    let count = 0;
    let leaf = this.scanLeaf;
    let index = this.scanIndex;
    while (leaf !== null) {
      if (index === leaf.count) {
        leaf = leaf.next;
        index = 0;
        continue;
      }
      if (leaf.offsetAt(index) >= end) {
        break;
      }
      count += 1;
      index += 1;
    }
    return count;
  }

  // --- Rewriting a range --------------------------------------------------------------

  /** Queues piece [start, end) of an extent whose byte `extentStart` lives at the location given. */
  private pushPiece(
    start: number,
    end: number,
    opNum: number,
    code: number,
    id: number,
    locationOffset: number,
    extentStart: number,
  ): void {
    this.pieces.push(
      start,
      end - start,
      opNum,
      code,
      id,
      advanceLocationOffset(code, locationOffset, start - extentStart),
    );
  }

  /** Queues the part [start, end) of stored entry `index` of `leaf`. */
  private pushStoredPiece(leaf: Leaf, index: number, start: number, end: number): void {
    this.pushPiece(
      start,
      end,
      leaf.opNumAt(index),
      leaf.locationCodeAt(index),
      leaf.locationIdAt(index),
      leaf.locationOffsetAt(index),
      leaf.offsetAt(index),
    );
  }

  /**
   * Replaces the `overlapCount` entries from the scan position with the queued pieces.
   * Both are in offset order; a piece with the offset of a stored entry rewrites it in
   * place, which needs no structural change and so is done first, while the scan
   * position is still valid. Then stored entries without a piece are deleted and pieces
   * without a stored entry are inserted, each by its own descent.
   */
  private applyPieces(overlapCount: number): void {
    if (this.spliceWithinLeaf(overlapCount)) {
      return;
    }
    const pieces = this.pieces;
    let leaf = this.scanLeaf!;
    let index = this.scanIndex;
    let stored = 0;
    let piece = 0;
    let deleteCount = 0;
    let insertCount = 0;
    while (stored < overlapCount || piece < pieces.count) {
      let storedOffset = Number.POSITIVE_INFINITY;
      if (stored < overlapCount) {
        if (index === leaf.count) {
          leaf = leaf.next!;
          index = 0;
        }
        storedOffset = leaf.offsetAt(index);
      }
      const pieceOffset = piece < pieces.count ? pieces.offsets[piece]! : Number.POSITIVE_INFINITY;
      if (storedOffset < pieceOffset) {
        this.deleteOffsets[deleteCount] = storedOffset;
        deleteCount += 1;
        stored += 1;
        index += 1;
      } else if (pieceOffset < storedOffset) {
        this.insertPieceIndexes[insertCount] = piece;
        insertCount += 1;
        piece += 1;
      } else {
        this.rewriteEntry(leaf, index, piece);
        stored += 1;
        index += 1;
        piece += 1;
      }
    }
    this.scanLeaf = null;
    this.seekLeaf = null;
    for (let deletion = 0; deletion < deleteCount; deletion += 1) {
      this.deleteEntry(this.deleteOffsets[deletion]!);
    }
    for (let insertion = 0; insertion < insertCount; insertion += 1) {
      const at = this.insertPieceIndexes[insertion]!;
      this.insertEntry(
        pieces.offsets[at]!,
        pieces.lengths[at]!,
        pieces.opNums[at]!,
        pieces.locationCodes[at]!,
        pieces.locationIds[at]!,
        pieces.locationOffsets[at]!,
      );
    }
  }

  /**
   * The fast path of `applyPieces`: when the overlapped entries all sit in the leaf the
   * seek descended to, every piece's offset falls within that leaf's separators, and the
   * leaf stays within its fill bounds, the pieces replace the entries in one shift of the
   * leaf, with no further descent and no split or merge. The first piece cannot fall
   * below the leaf's lower bound: it starts either at the sought offset, which routed
   * here, or at a stored entry of this leaf. Returns whether it applied.
   */
  private spliceWithinLeaf(overlapCount: number): boolean {
    const leaf = this.seekLeaf!;
    const start = this.scanIndex;
    const pieces = this.pieces;
    const countAfter = leaf.count - overlapCount + pieces.count;
    const fits =
      this.scanLeaf === leaf &&
      start + overlapCount <= leaf.count &&
      countAfter <= this.fanout &&
      (countAfter >= this.fillMin || this.heightValue === 1) &&
      (pieces.count === 0 || pieces.offsets[pieces.count - 1]! < this.descentUpperBound);
    if (!fits) {
      return false;
    }
    for (let index = start; index < start + overlapCount; index += 1) {
      this.forgetEntry(leaf, index);
    }
    leaf.resizeRange(start, overlapCount, pieces.count);
    for (let piece = 0; piece < pieces.count; piece += 1) {
      leaf.set(
        start + piece,
        pieces.offsets[piece]!,
        pieces.lengths[piece]!,
        pieces.opNums[piece]!,
        pieces.locationCodes[piece]!,
        pieces.locationIds[piece]!,
        pieces.locationOffsets[piece]!,
      );
      this.countEntry(leaf, start + piece);
    }
    this.scanLeaf = null;
    this.seekLeaf = null;
    return true;
  }

  // --- Single-entry primitives: the only places that change counts and live bytes ---

  private rewriteEntry(leaf: Leaf, index: number, piece: number): void {
    const pieces = this.pieces;
    this.forgetEntry(leaf, index);
    leaf.set(
      index,
      pieces.offsets[piece]!,
      pieces.lengths[piece]!,
      pieces.opNums[piece]!,
      pieces.locationCodes[piece]!,
      pieces.locationIds[piece]!,
      pieces.locationOffsets[piece]!,
    );
    this.countEntry(leaf, index);
  }

  private insertEntry(
    offset: number,
    length: number,
    opNum: number,
    code: number,
    id: number,
    locationOffset: number,
  ): void {
    const leaf = this.descend(offset);
    const floor = leaf.floorIndex(offset);
    assert(floor < 0 || leaf.offsetAt(floor) !== offset, "an inserted entry's offset is taken");
    this.insertIntoLeaf(leaf, floor + 1, offset, length, opNum, code, id, locationOffset);
  }

  private deleteEntry(offset: number): void {
    const leaf = this.descend(offset);
    const index = leaf.floorIndex(offset);
    assert(index >= 0 && leaf.offsetAt(index) === offset, "a deleted entry is missing");
    this.forgetEntry(leaf, index);
    leaf.removeAt(index);
    if (this.heightValue > 1 && leaf.count < this.fillMin) {
      this.rebalanceLeaf(leaf);
    }
  }

  /** Inserts at `index` of `leaf`, which the last descent reached. */
  private insertIntoLeaf(
    leaf: Leaf,
    index: number,
    offset: number,
    length: number,
    opNum: number,
    code: number,
    id: number,
    locationOffset: number,
  ): void {
    let target = leaf;
    let at = index;
    if (leaf.count === this.fanout) {
      const right = this.splitLeaf(leaf);
      // An entry at the split point stays left: the separator is the right leaf's first key.
      if (at > leaf.count) {
        at -= leaf.count;
        target = right;
      }
    }
    target.insertAt(at, offset, length, opNum, code, id, locationOffset);
    this.countEntry(target, at);
  }

  private countEntry(leaf: Leaf, index: number): void {
    const length = leaf.lengthAt(index);
    this.extentCountValue += 1;
    this.mappedBytesValue += length;
    if (leaf.locationCodeAt(index) === LocationCode.chunk) {
      this.liveBytesValue.add(leaf.locationIdAt(index), length);
    }
  }

  private forgetEntry(leaf: Leaf, index: number): void {
    const length = leaf.lengthAt(index);
    this.extentCountValue -= 1;
    this.mappedBytesValue -= length;
    if (leaf.locationCodeAt(index) === LocationCode.chunk) {
      this.liveBytesValue.subtract(leaf.locationIdAt(index), length);
    }
  }

  // --- Splits: a full node splits in half and hands its parent a separator ------------

  private splitLeaf(leaf: Leaf): Leaf {
    const right = new Leaf(this.fanout);
    leaf.moveTailTo(right, Math.ceil(leaf.count / 2));
    right.next = leaf.next;
    right.previous = leaf;
    if (leaf.next !== null) {
      leaf.next.previous = right;
    }
    leaf.next = right;
    this.nodeCountValue += 1;
    this.insertIntoParent(this.heightValue - 1, right.offsetAt(0), right);
    return right;
  }

  /** Adds `child` right of the node at depth `level` on the path, with separator `key`. */
  private insertIntoParent(level: number, key: number, child: Node): void {
    if (level === 0) {
      assert(this.heightValue < heightMax, "the extent tree outgrew its height limit");
      this.root = new Branch([key], [this.root, child]);
      this.heightValue += 1;
      this.nodeCountValue += 1;
      return;
    }
    const parent = this.pathBranches[level - 1]!;
    const childIndex = this.pathIndexes[level - 1]! + 1;
    if (parent.count < this.fanout) {
      parent.keys.splice(childIndex - 1, 0, key);
      parent.children.splice(childIndex, 0, child);
      return;
    }
    const keep = Math.ceil(parent.count / 2);
    const rightKeys = parent.keys.splice(keep);
    const separator = parent.keys.pop()!;
    const right = new Branch(rightKeys, parent.children.splice(keep));
    this.nodeCountValue += 1;
    if (childIndex <= keep) {
      parent.keys.splice(childIndex - 1, 0, key);
      parent.children.splice(childIndex, 0, child);
    } else {
      right.keys.splice(childIndex - keep - 1, 0, key);
      right.children.splice(childIndex - keep, 0, child);
    }
    this.insertIntoParent(level - 1, separator, right);
  }

  // --- Merges: an underfull node borrows from a sibling, or merges with one -----------

  private rebalanceLeaf(leaf: Leaf): void {
    const level = this.heightValue - 1;
    const parent = this.pathBranches[level - 1]!;
    const childIndex = this.pathIndexes[level - 1]!;
    const left = childIndex > 0 ? leafChild(parent, childIndex - 1) : null;
    const right = childIndex + 1 < parent.count ? leafChild(parent, childIndex + 1) : null;
    if (left !== null && left.count > this.fillMin) {
      leaf.insertCopyAt(0, left, left.count - 1);
      left.count -= 1;
      parent.keys[childIndex - 1] = leaf.offsetAt(0);
    } else if (right !== null && right.count > this.fillMin) {
      leaf.insertCopyAt(leaf.count, right, 0);
      right.removeAt(0);
      parent.keys[childIndex] = right.offsetAt(0);
    } else if (left !== null) {
      mergeLeaves(left, leaf);
      this.removeChild(level - 1, childIndex);
    } else {
      assert(right !== null, "an underfull leaf has no sibling");
      mergeLeaves(leaf, right);
      this.removeChild(level - 1, childIndex + 1);
    }
  }

  private rebalanceBranch(level: number): void {
    const branch = this.pathBranches[level]!;
    const parent = this.pathBranches[level - 1]!;
    const childIndex = this.pathIndexes[level - 1]!;
    const left = childIndex > 0 ? branchChild(parent, childIndex - 1) : null;
    const right = childIndex + 1 < parent.count ? branchChild(parent, childIndex + 1) : null;
    if (left !== null && left.count > this.fillMin) {
      branch.children.unshift(left.children.pop()!);
      branch.keys.unshift(parent.keys[childIndex - 1]!);
      parent.keys[childIndex - 1] = left.keys.pop()!;
    } else if (right !== null && right.count > this.fillMin) {
      branch.children.push(right.children.shift()!);
      branch.keys.push(parent.keys[childIndex]!);
      parent.keys[childIndex] = right.keys.shift()!;
    } else if (left !== null) {
      mergeBranches(left, branch, parent.keys[childIndex - 1]!);
      this.removeChild(level - 1, childIndex);
    } else {
      assert(right !== null, "an underfull branch has no sibling");
      mergeBranches(branch, right, parent.keys[childIndex]!);
      this.removeChild(level - 1, childIndex + 1);
    }
  }

  /**
   * Drops child `childIndex` (never the first) of the branch at depth `level` on the path,
   * after it was merged into its left sibling, with the separator left of it.
   */
  private removeChild(level: number, childIndex: number): void {
    const branch = this.pathBranches[level]!;
    branch.keys.splice(childIndex - 1, 1);
    branch.children.splice(childIndex, 1);
    this.nodeCountValue -= 1;
    if (level === 0) {
      if (branch.count === 1) {
        this.root = branch.children[0]!;
        this.heightValue -= 1;
        this.nodeCountValue -= 1;
      }
      return;
    }
    if (branch.count < this.fillMin) {
      this.rebalanceBranch(level);
    }
  }
}

function assertRange(offset: number, length: number): void {
  assertIntegerInRange(offset, "range offset", 0, addressBytesMax - 1);
  assertIntegerInRange(length, "range length", 1, addressBytesMax - offset);
}

function extentAt(leaf: Leaf, index: number): Extent {
  return {
    offset: leaf.offsetAt(index),
    length: leaf.lengthAt(index),
    opNum: leaf.opNumAt(index),
    location: locationFromParts(
      leaf.locationCodeAt(index),
      leaf.locationIdAt(index),
      leaf.locationOffsetAt(index),
    ),
  };
}

function leafChild(branch: Branch, index: number): Leaf {
  const child = branch.children[index]!;
  assert(child.isLeaf, "a branch mixes leaves and branches");
  return child;
}

function branchChild(branch: Branch, index: number): Branch {
  const child = branch.children[index]!;
  assert(!child.isLeaf, "a branch mixes leaves and branches");
  return child;
}

/** Appends `right`'s entries to `left` and unlinks `right`. */
function mergeLeaves(left: Leaf, right: Leaf): void {
  left.appendFrom(right, 0, right.count);
  left.next = right.next;
  if (right.next !== null) {
    right.next.previous = left;
  }
}

/** Appends `right`'s children to `left`, joined by the separator that stood between them. */
function mergeBranches(left: Branch, right: Branch, separator: number): void {
  left.keys.push(separator);
  for (const key of right.keys) {
    left.keys.push(key);
  }
  for (const child of right.children) {
    left.children.push(child);
  }
}
