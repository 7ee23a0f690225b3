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
  const failed = new Set<string>();
  const done = new Uint8Array(items.length);

  // Iterative depth-first search with an explicit stack, so long histories do not
  // exhaust the call stack.
  interface Frame {
    value: string;
    remaining: number;
    next: number;
    chosen: number;
    key: string;
  }
  const keyFor = (value: string) => {
    let mask = "";
    for (let index = 0; index < done.length; index++) mask += done[index] === 1 ? "1" : "0";
    return `${mask}|${value}`;
  };
  const stack: Frame[] = [{ value: "zero", remaining: required, next: 0, chosen: -1, key: "" }];
  stack[0]!.key = keyFor("zero");
  while (stack.length > 0) {
    const frame = stack.at(-1)!;
    if (frame.remaining === 0) return true;
    if (frame.next === 0 && failed.has(frame.key)) {
      stack.pop();
      if (stack.length > 0) done[stack.at(-1)!.chosen] = 0;
      continue;
    }
    let minComplete = Number.POSITIVE_INFINITY;
    for (let index = 0; index < items.length; index++) {
      if (done[index] === 0) minComplete = Math.min(minComplete, items[index]!.completeMs);
    }
    let advanced = false;
    while (frame.next < items.length) {
      const index = frame.next++;
      const item = items[index]!;
      if (done[index] === 1 || item.invokeMs > minComplete) continue;
      if (item.read && item.value !== frame.value) continue;
      done[index] = 1;
      frame.chosen = index;
      const value = item.read ? frame.value : item.value;
      stack.push({
        value,
        remaining: frame.remaining - (item.required ? 1 : 0),
        next: 0,
        chosen: -1,
        key: keyFor(value),
      });
      advanced = true;
      break;
    }
    if (advanced) continue;
    failed.add(frame.key);
    stack.pop();
    if (stack.length > 0) done[stack.at(-1)!.chosen] = 0;
  }
  return false;
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
