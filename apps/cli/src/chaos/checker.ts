// The chaos checker: is a history of block operations linearizable, block by block, and
// did every acknowledged write survive?
//
// Model: every 4 KiB block of a volume is a register. Its operations are writes (a
// self-checking payload, or zeros for trims and write-zeroes) and reads (what came
// back, decoded by payload.ts). Each has an invoke time and, if it completed, a complete
// time and an outcome:
// - `ok`: it happened, between invoke and complete;
// - `fail`: it definitely did not happen (refused before it was assigned);
// - `unknown`: a timeout or a dropped connection. It may have happened at any time after
//   its invoke, even long after (an indeterminate write may still commit), or never.
// Registers are independent (linearizability composes), so each block is checked alone
// with a Wing–Gong search: find an order of the block's operations that respects real
// time (an operation that completed before another was invoked comes first), includes
// every `ok` operation, may include `unknown` writes, and in which every read returns
// the value of the write just before it (zeros at first). The search memoises
// (operations done, register value), which keeps single-writer histories cheap.
//
// Durability is the same check on the reads made after the cluster has healed and
// settled: they must return the last acknowledged write or a later indeterminate one.
// A read that returns a torn block, a block of another volume or offset, garbage, or a
// value nobody wrote to that block is a violation without any search.
//
// A violation carries the block's history shrunk to a minimal failing one: operations
// are removed one at a time as long as the rest still fails.

import { type BlockValue, valueName } from "./payload.ts";

export type Outcome = "ok" | "fail" | "unknown";

export interface BlockOp {
  /** Unique within the history; orders the report. */
  id: number;
  /** Which client ran it. */
  process: string;
  kind: "write" | "read";
  volume: string;
  block: number;
  /** Writes: the value written (zero for trims and write-zeroes). Reads: what came back. */
  value: BlockValue;
  invokeMs: number;
  /** Absent while it has not completed, and for `unknown` outcomes. */
  completeMs?: number;
  outcome: Outcome;
}

export type ViolationKind =
  | "torn"
  | "foreign"
  | "garbage"
  | "never-written"
  | "lost-write"
  | "stale-read";

export interface Violation {
  kind: ViolationKind;
  volume: string;
  block: number;
  /** The read that shows it. */
  read: BlockOp;
  message: string;
  /** The block's history, shrunk to a minimal one that still fails. */
  history: BlockOp[];
}

export interface CheckResult {
  blocks: number;
  operations: number;
  violations: Violation[];
}

/** Histories of more operations than this on one block are reported without shrinking. */
export const shrinkOperationsMax = 400;

/** Checks a whole history: every block on its own. */
export function checkHistory(history: readonly BlockOp[]): CheckResult {
  const byBlock = new Map<string, BlockOp[]>();
  for (const op of history) {
    const key = `${op.volume}\u0000${op.block}`;
    const ops = byBlock.get(key);
    if (ops === undefined) byBlock.set(key, [op]);
    else ops.push(op);
  }
  const violations: Violation[] = [];
  for (const ops of byBlock.values()) {
    const violation = checkBlock(ops);
    if (violation !== undefined) violations.push(violation);
  }
  violations.sort((a, b) => a.read.id - b.read.id);
  return { blocks: byBlock.size, operations: history.length, violations };
}

/** The first violation of one block's history, if any. */
export function checkBlock(ops: readonly BlockOp[]): Violation | undefined {
  const sorted = [...ops].sort((a, b) => a.invokeMs - b.invokeMs || a.id - b.id);
  const written = new Set(
    sorted
      .filter((op) => op.kind === "write" && op.outcome !== "fail")
      .map((op) => keyOf(op.value)),
  );
  written.add("zero");
  const reads = sorted.filter((op) => op.kind === "read" && op.outcome === "ok");
  for (const read of reads) {
    const value = read.value;
    if (value.kind === "torn" || value.kind === "foreign" || value.kind === "garbage") {
      return violation(value.kind, read, [read], `read ${valueName(value)}`);
    }
    if (!written.has(keyOf(value))) {
      const failed = sorted.some(
        (op) => op.kind === "write" && op.outcome === "fail" && keyOf(op.value) === keyOf(value),
      );
      return violation(
        "never-written",
        read,
        shrink(sorted, read),
        failed
          ? `read ${valueName(value)}, whose write was answered as failed`
          : `read ${valueName(value)}, which no write to this block wrote`,
      );
    }
  }
  if (linearizable(sorted)) return undefined;
  // The culprit: the first read whose prefix of the history cannot be linearized.
  for (const read of reads) {
    const prefix = sorted.filter((op) => op.invokeMs <= read.invokeMs || op === read);
    if (linearizable(prefix)) continue;
    const acknowledgedBefore = sorted.filter(
      (op) =>
        op.kind === "write" &&
        op.outcome === "ok" &&
        op.completeMs !== undefined &&
        op.completeMs < read.invokeMs,
    );
    const last = acknowledgedBefore.at(-1);
    const lost = read.value.kind === "zero" && last !== undefined && last.value.kind !== "zero";
    return violation(
      lost ? "lost-write" : "stale-read",
      read,
      shrink(prefix, read),
      lost
        ? `read zeros after write ${valueName(last!.value)} was acknowledged`
        : `read ${valueName(read.value)}, but ${last === undefined ? "no" : valueName(last.value)} was the last write acknowledged before it began`,
    );
  }
  // Not linearizable, yet every prefix ending at a read is: cannot happen, since a
  // history without reads always linearizes. Report the last read to be safe.
  const read = reads.at(-1)!;
  return violation("stale-read", read, shrink(sorted, read), "the history cannot be linearized");
}

function violation(kind: ViolationKind, read: BlockOp, history: BlockOp[], message: string) {
  return { kind, volume: read.volume, block: read.block, read, message, history };
}

function keyOf(value: BlockValue): string {
  return valueName(value);
}

interface Item {
  read: boolean;
  value: string;
  invokeMs: number;
  /** Infinity for writes of unknown outcome: they may take effect at any later time. */
  completeMs: number;
  required: boolean;
}

/** Whether some order of the operations is a legal register history (see the header). */
export function linearizable(ops: readonly BlockOp[]): boolean {
  const items: Item[] = [];
  for (const op of ops) {
    if (op.outcome === "fail") continue;
    if (op.kind === "read" && op.outcome !== "ok") continue; // a lost answer says nothing
    const known = op.outcome === "ok" && op.completeMs !== undefined;
    items.push({
      read: op.kind === "read",
      value: keyOf(op.value),
      invokeMs: op.invokeMs,
      completeMs: known ? op.completeMs! : Number.POSITIVE_INFINITY,
      required: known,
    });
  }
  items.sort((a, b) => a.invokeMs - b.invokeMs);
  const required = items.filter((item) => item.required).length;
  const count = items.length;
  // The operations not yet in the order, as a doubly linked list in invoke order (a
  // sentinel at `count`): taking one out and putting it back are O(1), and the search
  // puts them back in the reverse order it took them out, so the list is always intact.
  const next = new Int32Array(count + 1);
  const prev = new Int32Array(count + 1);
  for (let index = 0; index < count; index++) {
    next[index] = index + 1;
    prev[index] = index === 0 ? count : index - 1;
  }
  next[count] = count === 0 ? count : 0;
  prev[count] = count === 0 ? count : count - 1;
  const unlink = (index: number) => {
    next[prev[index]!] = next[index]!;
    prev[next[index]!] = prev[index]!;
  };
  const relink = (index: number) => {
    next[prev[index]!] = index;
    prev[next[index]!] = index;
  };
  // Which operations are done is remembered as a 64-bit Zobrist hash (two random words
  // per operation, xored in and out), so a memo key costs O(1), not O(operations).
  const random = xorshift(0x9e3779b9);
  const zobristLow = new Uint32Array(count);
  const zobristHigh = new Uint32Array(count);
  for (let index = 0; index < count; index++) {
    zobristLow[index] = random();
    zobristHigh[index] = random();
  }
  const failed = new Set<string>();

  interface Frame {
    value: string;
    remaining: number;
    low: number;
    high: number;
    /** The frontier: operations invoked by then may go next (see minCompleteOf). */
    bound: number;
    /** The candidate tried last (the sentinel before the first). */
    cursor: number;
    /** The candidate taken out for the child frame, put back when it returns. */
    chosen: number;
  }
  // The earliest completion among the operations left. They are in invoke order and
  // each completes after it is invoked, so the scan stops at the first invoked after the
  // earliest completion seen: the frontier, a handful of operations.
  const minCompleteOf = () => {
    let min = Number.POSITIVE_INFINITY;
    for (let index = next[count]!; index !== count; index = next[index]!) {
      const item = items[index]!;
      if (item.invokeMs > min) break;
      if (item.completeMs < min) min = item.completeMs;
    }
    return min;
  };
  const frameOf = (value: string, remaining: number, low: number, high: number): Frame => ({
    value,
    remaining,
    low,
    high,
    bound: minCompleteOf(),
    cursor: count,
    chosen: -1,
  });
  const memoKey = (frame: Frame) => `${frame.low},${frame.high},${frame.value}`;
  const stack: Frame[] = [frameOf("zero", required, 0, 0)];
  const pop = () => {
    stack.pop();
    const parent = stack.at(-1);
    if (parent !== undefined) relink(parent.chosen);
  };
  while (stack.length > 0) {
    const frame = stack.at(-1)!;
    if (frame.remaining === 0) return true;
    if (frame.cursor === count && failed.has(memoKey(frame))) {
      pop();
      continue;
    }
    let advanced = false;
    for (let index = next[frame.cursor]!; index !== count; index = next[index]!) {
      const item = items[index]!;
      if (item.invokeMs > frame.bound) break;
      frame.cursor = index;
      if (item.read && item.value !== frame.value) continue;
      frame.chosen = index;
      unlink(index);
      stack.push(
        frameOf(
          item.read ? frame.value : item.value,
          frame.remaining - (item.required ? 1 : 0),
          (frame.low ^ zobristLow[index]!) >>> 0,
          (frame.high ^ zobristHigh[index]!) >>> 0,
        ),
      );
      advanced = true;
      break;
    }
    if (advanced) continue;
    failed.add(memoKey(frame));
    pop();
  }
  return false;
}

/** A small seeded generator (xorshift32) for the Zobrist words. */
function xorshift(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

/** Removes operations one at a time while the rest still fails with `read` in it. */
function shrink(ops: readonly BlockOp[], read: BlockOp): BlockOp[] {
  let current = [...ops];
  if (current.length > shrinkOperationsMax) return current;
  const fails = (candidate: readonly BlockOp[]) => checkBlockQuick(candidate);
  for (let index = current.length - 1; index >= 0; index--) {
    if (current[index] === read) continue;
    const candidate = current.filter((_, at) => at !== index);
    if (fails(candidate)) current = candidate;
  }
  return current;
}

/** Whether a block's history fails, without classifying or shrinking. */
function checkBlockQuick(ops: readonly BlockOp[]): boolean {
  const written = new Set(
    ops.filter((op) => op.kind === "write" && op.outcome !== "fail").map((op) => keyOf(op.value)),
  );
  written.add("zero");
  for (const op of ops) {
    if (op.kind !== "read" || op.outcome !== "ok") continue;
    const kind = op.value.kind;
    if (kind === "torn" || kind === "foreign" || kind === "garbage") return true;
    if (!written.has(keyOf(op.value))) return true;
  }
  return !linearizable(ops);
}

/** A failing block history, one line per operation, for the report. */
export function formatHistory(ops: readonly BlockOp[]): string {
  return ops
    .map((op) => {
      const end = op.completeMs === undefined ? "…" : `${op.completeMs}`;
      return `  #${op.id} ${op.process} ${op.kind} ${valueName(op.value)} [${op.invokeMs}, ${end}] ${op.outcome}`;
    })
    .join("\n");
}
