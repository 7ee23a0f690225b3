// Entries and batches. An entry is one caller's piece of work on one partition (a
// write, a read, a trim or write-zeroes range, or a flush); a batch is the entries one
// request carries. This module is pure: it decides which pending entries go together,
// and the scheduler sends them.
//
// The batching rule: a batch is the longest prefix of its queue's pending entries that
// fits one request — at most `requestEntriesMax` entries and, for reads and writes, at
// most `requestDataBytesMax` data bytes. Taking a prefix keeps entries in the order they
// were issued, so overlapping writes in one batch apply in issue order. Two exceptions:
// every pending flush rides one flush request (it has no entries on the wire), and an
// entry marked `isolated` travels alone (see the scheduler on why an entry is isolated).

export type RequestKind = "write" | "read" | "trim" | "write-zeroes" | "flush";

export const requestKinds: readonly RequestKind[] = [
  "write",
  "read",
  "trim",
  "write-zeroes",
  "flush",
];

/** Kinds that change the volume's contents (and so make a later flush necessary). */
export function isMutation(kind: RequestKind): boolean {
  return kind === "write" || kind === "trim" || kind === "write-zeroes";
}

const noBytes = new Uint8Array(0);

export interface Entry {
  readonly kind: RequestKind;
  /** The volume offset of the entry's first byte; 0 for a flush. */
  readonly offset: number;
  /** The bytes the entry covers; 0 for a flush. */
  readonly length: number;
  /**
   * For a write, the bytes to write; for a read, the part of the caller's buffer the
   * reply is copied into. Empty for other kinds. Its length is `length` for both, except
   * for a read made without a buffer (empty here): its bytes go to `received` instead.
   */
  readonly buffer: Uint8Array;
  /**
   * For a read made without a buffer (`EntrySpec.buffer` absent): the bytes it read, set
   * once its reply arrived and passed, before the entry resolves. A buffer of the
   * client's own or a view of one a link decoder filled for the reply alone, never a
   * view of a buffer the transport writes into or reuses (wire.ts).
   */
  received?: Uint8Array | undefined;
  /** When the caller issued the operation, on the client's clock; the retry budget starts here. */
  readonly issuedAtMs: number;
  /** Set after a batch failed for good: the entry is re-sent alone, for its own answer. */
  isolated: boolean;
  /**
   * The caller's abort signal: once it fires, the entry is left out of every later
   * attempt and rejected with the signal's reason (scheduler.ts).
   */
  readonly signal?: AbortSignal;
  /**
   * For an entry with a signal: true once resolved or rejected (an aborted entry settles
   * before its batch does). Entries without a signal settle only with their batch.
   */
  settledEarly?: boolean;
  /**
   * For a read of a clone: the parts of the entry its partition has never mapped, as the
   * last reply said (they fall through to the parent snapshot; see volume.ts).
   */
  unmapped?: { offset: number; length: number }[];
  /** Settles the caller's piece; only the first call counts. */
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export interface EntrySpec {
  readonly kind: RequestKind;
  readonly offset: number;
  readonly length: number;
  readonly buffer?: Uint8Array | undefined;
  readonly issuedAtMs: number;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Builds an entry and the promise its settlement resolves. An entry with a signal is
 * rejected with the signal's reason as soon as it fires (its caller waits no longer);
 * the scheduler then leaves it out of every later attempt.
 *
 * Cheap on purpose: every NBD request makes one (issue 14; profiles of the gateway at
 * QD32 found a tenth of its busy time here). An entry is a class instance with its
 * settlement as methods, not an object spread with closures, and a signal gets one
 * abort listener for all its entries (`watchedEntries`) rather than one added and
 * removed per entry: the gateway passes its connection's signal with every operation.
 */
export function createEntry(spec: EntrySpec): { entry: Entry; settled: Promise<void> } {
  let resolvePromise!: () => void;
  let rejectPromise!: (error: unknown) => void;
  const settled = new Promise<void>((resolve, reject) => {
    resolvePromise = resolve;
    rejectPromise = reject;
  });
  const entry = new PendingEntry(spec, resolvePromise, rejectPromise);
  const { signal } = spec;
  if (signal !== undefined) {
    if (signal.aborted) entry.reject(signal.reason);
    else watch(signal, entry);
  }
  return { entry, settled };
}

class PendingEntry implements Entry {
  readonly kind: RequestKind;
  readonly offset: number;
  readonly length: number;
  readonly buffer: Uint8Array;
  readonly issuedAtMs: number;
  isolated = false;
  readonly signal: AbortSignal | undefined;
  settledEarly: boolean | undefined = undefined;
  unmapped: { offset: number; length: number }[] | undefined = undefined;
  received: Uint8Array | undefined = undefined;
  readonly #resolve: () => void;
  readonly #reject: (error: unknown) => void;

  constructor(spec: EntrySpec, resolve: () => void, reject: (error: unknown) => void) {
    this.kind = spec.kind;
    this.offset = spec.offset;
    this.length = spec.length;
    this.buffer = spec.buffer ?? noBytes;
    this.issuedAtMs = spec.issuedAtMs;
    this.signal = spec.signal;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  resolve(): void {
    if (this.#settling()) this.#resolve();
  }

  reject(error: unknown): void {
    if (this.#settling()) this.#reject(error);
  }

  /**
   * Whether this settlement counts. With a signal, the abort may settle the entry before
   * its batch does: only the first counts, and it stops watching the signal.
   */
  #settling(): boolean {
    if (this.signal === undefined) return true;
    if (this.settledEarly === true) return false;
    this.settledEarly = true;
    watchedEntries.get(this.signal)?.delete(this);
    return true;
  }
}

/**
 * The unsettled entries of each signal. A signal gets one abort listener, added with its
 * first entry and kept for its life (it goes with the signal): an entry joins the set
 * when made and leaves it when settled, and an abort rejects every entry still in it.
 */
const watchedEntries = new WeakMap<AbortSignal, Set<PendingEntry>>();

function watch(signal: AbortSignal, entry: PendingEntry): void {
  let entries = watchedEntries.get(signal);
  if (entries === undefined) {
    const watched = new Set<PendingEntry>();
    entries = watched;
    watchedEntries.set(signal, watched);
    signal.addEventListener(
      "abort",
      () => {
        for (const pending of [...watched]) pending.reject(signal.reason);
      },
      { once: true },
    );
  }
  entries.add(entry);
}

export interface BatchLimits {
  readonly requestEntriesMax: number;
  readonly requestDataBytesMax: number;
}

/** The data bytes an entry adds to a request: its length for reads and writes, else 0. */
export function dataBytesOf(entry: Entry): number {
  return entry.kind === "read" || entry.kind === "write" ? entry.length : 0;
}

/**
 * Removes the next batch from the front of `pending` (all of one kind) and returns it.
 * `pending` must not be empty, and no entry may carry more than `requestDataBytesMax`.
 */
export function takeBatch(pending: Entry[], limits: BatchLimits): Entry[] {
  const first = pending[0]!;
  if (first.kind === "flush") return pending.splice(0, pending.length);
  if (first.isolated) return pending.splice(0, 1);
  let count = 0;
  let dataBytes = 0;
  for (const entry of pending) {
    if (entry.isolated || count === limits.requestEntriesMax) break;
    const entryBytes = dataBytesOf(entry);
    if (count > 0 && dataBytes + entryBytes > limits.requestDataBytesMax) break;
    dataBytes += entryBytes;
    count += 1;
  }
  return pending.splice(0, count);
}
