// The structural and accounting invariants of the extent tree, recomputed from scratch.
// Nothing here trusts what the tree maintains incrementally: the walk recounts extents,
// nodes, mapped bytes and live bytes and compares them with the tree's own figures, so
// that a test calling it after every step catches a bookkeeping slip at the step that
// made it. It costs a full walk (about a tenth of a second per million extents); the
// tree never calls it on its own. Messages are built only on failure.

import { BtreeAssertionError } from "./errors.ts";
import type { LiveBytes } from "./live-bytes.ts";
import { isLocationCode, LocationCode } from "./location.ts";
import type { Branch, Leaf, Node } from "./node.ts";

export interface TreeFacts {
  readonly root: Node;
  readonly height: number;
  readonly fanout: number;
  readonly fillMin: number;
  readonly extentCount: number;
  readonly nodeCount: number;
  readonly mappedBytes: number;
  readonly liveBytes: LiveBytes;
}

interface Recount {
  nodes: number;
  readonly leaves: Leaf[];
}

export function verifyTree(facts: TreeFacts): void {
  const recount: Recount = { nodes: 0, leaves: [] };
  verifyNode(facts, facts.root, 1, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY, recount);
  if (recount.nodes !== facts.nodeCount) {
    fail(`the tree counts ${facts.nodeCount} nodes but holds ${recount.nodes}`);
  }
  verifyLeafChain(recount.leaves);
  verifyEntries(facts, recount.leaves);
}

/**
 * Checks `node` and its subtree: depth, fill, and that every offset lies within the
 * bounds [lowerBound, upperBound) its ancestors' separators give it.
 */
function verifyNode(
  facts: TreeFacts,
  node: Node,
  depth: number,
  lowerBound: number,
  upperBound: number,
  recount: Recount,
): void {
  recount.nodes += 1;
  const isRoot = depth === 1;
  if (node.isLeaf) {
    if (depth !== facts.height) {
      fail(`a leaf sits at depth ${depth} but the tree's height is ${facts.height}`);
    }
    if (node.capacity !== facts.fanout) {
      fail(`a leaf has capacity ${node.capacity}, not the fanout ${facts.fanout}`);
    }
    verifyFill(node.count, isRoot ? 0 : facts.fillMin, facts.fanout, "leaf", depth);
    for (let index = 0; index < node.count; index += 1) {
      const offset = node.offsetAt(index);
      if (!(offset >= lowerBound && offset < upperBound)) {
        fail(
          `leaf entry offset ${offset} at depth ${depth} lies outside its separators [${lowerBound}, ${upperBound})`,
        );
      }
    }
    recount.leaves.push(node);
    return;
  }
  verifyBranch(facts, node, depth, isRoot, lowerBound, upperBound);
  for (let index = 0; index < node.count; index += 1) {
    const childLower = index === 0 ? lowerBound : node.keys[index - 1]!;
    const childUpper = index === node.count - 1 ? upperBound : node.keys[index]!;
    verifyNode(facts, node.children[index]!, depth + 1, childLower, childUpper, recount);
  }
}

function verifyBranch(
  facts: TreeFacts,
  branch: Branch,
  depth: number,
  isRoot: boolean,
  lowerBound: number,
  upperBound: number,
): void {
  if (branch.keys.length !== branch.count - 1) {
    fail(
      `a branch at depth ${depth} has ${branch.count} children but ${branch.keys.length} separators`,
    );
  }
  verifyFill(branch.count, isRoot ? 2 : facts.fillMin, facts.fanout, "branch", depth);
  let previous = lowerBound;
  for (const key of branch.keys) {
    if (!(Number.isSafeInteger(key) && key > previous && key < upperBound)) {
      fail(`separator ${key} at depth ${depth} is not above ${previous} and below ${upperBound}`);
    }
    previous = key;
  }
}

function verifyFill(
  count: number,
  minimum: number,
  maximum: number,
  what: string,
  depth: number,
): void {
  if (count < minimum || count > maximum) {
    fail(`a ${what} at depth ${depth} holds ${count}, outside its bounds [${minimum}, ${maximum}]`);
  }
}

/** The leaves' links must list exactly the leaves a depth-first walk finds, in order. */
function verifyLeafChain(leaves: readonly Leaf[]): void {
  for (let index = 0; index < leaves.length; index += 1) {
    const leaf = leaves[index]!;
    if (leaf.previous !== (leaves[index - 1] ?? null)) {
      fail(`leaf ${index} of ${leaves.length} links back to the wrong leaf`);
    }
    if (leaf.next !== (leaves[index + 1] ?? null)) {
      fail(`leaf ${index} of ${leaves.length} links forward to the wrong leaf`);
    }
  }
}

/** Checks every entry in offset order and recounts what the tree keeps incrementally. */
function verifyEntries(facts: TreeFacts, leaves: readonly Leaf[]): void {
  let extents = 0;
  let mappedBytes = 0;
  let previousEnd = 0;
  const liveBytes = new Map<number, number>();
  for (const leaf of leaves) {
    for (let index = 0; index < leaf.count; index += 1) {
      const offset = leaf.offsetAt(index);
      const length = leaf.lengthAt(index);
      const opNum = leaf.opNumAt(index);
      const code = leaf.locationCodeAt(index);
      const id = leaf.locationIdAt(index);
      const locationOffset = leaf.locationOffsetAt(index);
      const wellFormed =
        Number.isSafeInteger(offset) &&
        offset >= previousEnd &&
        Number.isSafeInteger(length) &&
        length > 0 &&
        Number.isSafeInteger(offset + length) &&
        Number.isSafeInteger(opNum) &&
        opNum >= 0 &&
        isLocationCode(code) &&
        Number.isSafeInteger(id) &&
        id >= 0 &&
        Number.isSafeInteger(locationOffset + length) &&
        locationOffset >= 0 &&
        (code !== LocationCode.zero || (id === 0 && locationOffset === 0));
      if (!wellFormed) {
        fail(
          `extent [${offset}, +${length}) of op ${opNum} at location (${code}, ${id}, ${locationOffset}), after an extent ending at ${previousEnd}, is malformed or overlaps`,
        );
      }
      if (code === LocationCode.chunk) {
        liveBytes.set(id, (liveBytes.get(id) ?? 0) + length);
      }
      previousEnd = offset + length;
      extents += 1;
      mappedBytes += length;
    }
  }
  if (extents !== facts.extentCount) {
    fail(`the tree counts ${facts.extentCount} extents but holds ${extents}`);
  }
  if (mappedBytes !== facts.mappedBytes) {
    fail(`the tree counts ${facts.mappedBytes} mapped bytes but its extents cover ${mappedBytes}`);
  }
  if (liveBytes.size !== facts.liveBytes.chunkCount) {
    fail(
      `the tree keeps live bytes for ${facts.liveBytes.chunkCount} chunks but its extents point into ${liveBytes.size}`,
    );
  }
  for (const [chunkId, bytes] of liveBytes) {
    if (facts.liveBytes.get(chunkId) !== bytes) {
      fail(
        `chunk ${chunkId} has ${facts.liveBytes.get(chunkId)} live bytes on record but ${bytes} by recount`,
      );
    }
  }
}

function fail(message: string): never {
  throw new BtreeAssertionError(`extent tree invariant broken: ${message}`);
}
