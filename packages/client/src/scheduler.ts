// The request scheduler of one open volume: it turns callers' entries into requests,
// bounds how many are in flight, and retries them across failovers.
//
// Model. Entries wait in batch queues, one per partition and kind of request (write,
// read, trim, write-zeroes, flush). The pump — which runs once at the end of any
// event-loop turn in which an entry arrived or a request finished — starts requests
// while the volume has fewer than `requestsInflightPerVolumeMax` in flight, giving each
// queue at most `requestsInflightPerQueueMax`, round robin across queues. Each request
// carries the queue's next batch (see batch.ts: the longest prefix of pending entries
// that fits one request). The batching rule, from a caller's point of view: entries for
// one partition issued in the same event-loop turn, or while that partition's queue is
// at its in-flight bound, are merged into one request, up to the wire's entry and byte
// limits. Under light load a request leaves at the end of the turn its entry was issued
// in; under heavy load requests grow instead of multiplying.
//
// Failover. A request that fails with a retryable code (WrongEpoch, NotPrimary,
// Unavailable, Timeout, ShuttingDown) is retried with backoff (retry.ts); alongside the
// delay the volume is re-described (volume-state.ts, shared by every request that failed
// against the same description), and the retry carries the new epoch. A request holds
// its in-flight slot while it waits, so entries that arrive during a failover gather in
// their queues and leave as large batches once the new primary answers.
//
// Failure model. A non-retryable error fails the request at once. One request answers
// for its whole batch, but a head node refuses a batch for what one entry asks, so when
// a batch of several entries fails for good its entries are marked isolated and re-sent
// one per request: each caller gets the answer to its own entry. A retry may apply a
// write, trim or write-zeroes twice (the first reply was lost, not the request): the
// same bytes land on the same range again, which is harmless because an operation's
// promise settles only after its last attempt settled, and every mutation attempt
// carries an ordering fence (fence.ts): a late copy of an attempt the client gave up on
// (one that timed out, but may still sit unread at the primary) is refused there if it
// arrives after any later attempt of this client, so no write a caller issues after that
// promise can be overtaken by it. A refused copy (Superseded) is retried as a new
// attempt, without a describe: the epoch was right. Concurrent operations on
// overlapping ranges have no defined order, as with any block device.
//
// Flush to sleds. A flush request (Volume.flushToSleds; the durability barrier
// Volume.flush sends nothing) asks the partition's primary to flush to sleds everything
// it acknowledged before it was received. The scheduler counts, per partition, mutation requests that
// settled, and the count a successful flush was sent after; a volume flush needs only the
// partitions with mutations settled since.

import { type BallastError, ErrorCode, isBallastError } from "@ballast/protocol";
import { type Entry, isMutation, type RequestKind, takeBatch } from "./batch.ts";
import type { AttemptSequencer } from "./fence.ts";
import type { ClientOptions } from "./options.ts";
import { type RetryTask, withRetries } from "./retry.ts";

/** Thrown by an attempt that has no entry left to send: every caller aborted. */
const allAborted = new Error("every entry of the batch was aborted");

import type { VolumeStateCache } from "./volume-state.ts";
import { type RequestBus, sendBatch } from "./wire.ts";

/** The entries waiting for one partition and one kind of request. */
interface BatchQueue {
  readonly key: string;
  /** The partition's position in the volume's description. */
  readonly index: number;
  readonly kind: RequestKind;
  readonly pending: Entry[];
  inflight: number;
}

/** What one partition needs flushed. */
interface FlushProgress {
  /** Mutation requests to the partition that have settled, succeeded or failed. */
  mutationsSettled: number;
  /** `mutationsSettled` as it was when the last successful flush request was sent. */
  mutationsFlushed: number;
}

export class RequestScheduler {
  private readonly bus: RequestBus;
  private readonly state: VolumeStateCache;
  private readonly options: Readonly<ClientOptions>;
  /** Insertion-ordered; a queue that starts a request moves to the end (round robin). */
  private readonly queues = new Map<string, BatchQueue>();
  private readonly progress = new Map<number, FlushProgress>();
  private requestsInflightCount = 0;
  private pumpScheduled = false;

  /**
   * `sequencer`: numbers mutation attempts (the client's, shared by its volumes).
   * `snapshotId`: every read goes to that snapshot of each partition.
   */
  constructor(
    bus: RequestBus,
    state: VolumeStateCache,
    options: Readonly<ClientOptions>,
    private readonly sequencer: AttemptSequencer,
    private readonly snapshotId?: string,
  ) {
    this.bus = bus;
    this.state = state;
    this.options = options;
  }

  /** Requests in flight now, including those waiting to be retried. */
  get requestsInflight(): number {
    return this.requestsInflightCount;
  }

  /** Queues `entry` for the partition at position `index`; it leaves at the next pump. */
  submit(index: number, entry: Entry): void {
    const key = `${index}/${entry.kind}`;
    let queue = this.queues.get(key);
    if (queue === undefined) {
      queue = { key, index, kind: entry.kind, pending: [], inflight: 0 };
      this.queues.set(key, queue);
    }
    queue.pending.push(entry);
    this.schedulePump();
  }

  /** Positions of the partitions with mutations settled since their last flush was sent. */
  partitionsToFlush(): number[] {
    const indexes: number[] = [];
    for (const [index, progress] of this.progress) {
      if (progress.mutationsSettled > progress.mutationsFlushed) indexes.push(index);
    }
    return indexes.sort((left, right) => left - right);
  }

  /**
   * In the check phase, so that the entries of every socket read and reply of one loop
   * iteration share a batch. Measured at QD1 (issue 14; docs/performance.md, "Queue
   * depth 1: latency"): the wait costs a lone request about 10 µs, of which
   * `process.nextTick` would save about 1 µs, while pumping at the end of every turn made
   * QD32 batches about a third smaller.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    const volumeMax = this.options.requestsInflightPerVolumeMax;
    const queueMax = this.options.requestsInflightPerQueueMax;
    let started = true;
    while (started && this.requestsInflightCount < volumeMax) {
      started = false;
      // A snapshot, because starting a request moves its queue to the end of the map.
      for (const queue of [...this.queues.values()]) {
        if (this.requestsInflightCount >= volumeMax) break;
        if (queue.pending.length === 0 || queue.inflight >= queueMax) continue;
        this.queues.delete(queue.key);
        this.queues.set(queue.key, queue);
        this.start(queue, takeBatch(queue.pending, this.options));
        started = true;
      }
    }
  }

  private start(queue: BatchQueue, batch: Entry[]): void {
    queue.inflight += 1;
    this.requestsInflightCount += 1;
    void this.run(queue, batch);
  }

  /**
   * Sends one batch to its end and settles its entries; never rejects. Entries aborted
   * by their callers are rejected at once (batch.ts) and left out of later attempts.
   */
  private async run(queue: BatchQueue, batch: Entry[]): Promise<void> {
    try {
      await this.settle(queue, batch);
    } finally {
      queue.inflight -= 1;
      this.requestsInflightCount -= 1;
      if (queue.inflight === 0 && queue.pending.length === 0) this.queues.delete(queue.key);
      this.schedulePump();
    }
  }

  /**
   * Sends one batch to its end and settles its entries; never rejects. Entries aborted
   * by their callers are rejected at once (batch.ts) and left out of later attempts.
   */
  private async settle(queue: BatchQueue, batch: Entry[]): Promise<void> {
    const { index, kind } = queue;
    const progress = this.progressOf(index);
    const task = new BatchTask(this, index, kind, batch, progress);
    let failure: { error: unknown } | undefined;
    try {
      await withRetries(task, this.options);
    } catch (error) {
      failure = { error };
    }
    if (failure?.error === allAborted) {
      if (isMutation(kind)) progress.mutationsSettled += 1;
      return;
    }
    // Progress first, so that a caller who flushes as soon as its write settles finds
    // the write counted.
    if (isMutation(kind)) progress.mutationsSettled += 1;
    if (failure === undefined) {
      if (kind === "flush") {
        progress.mutationsFlushed = Math.max(progress.mutationsFlushed, task.mutationsCovered);
      }
      for (const entry of batch) entry.resolve();
      return;
    }
    const { error } = failure;
    if (batch.length > 1 && kind !== "flush" && isBallastError(error) && !error.retryable) {
      for (const entry of batch) entry.isolated = true;
      queue.pending.unshift(...batch);
      return;
    }
    for (const entry of batch) entry.reject(error);
  }

  /** One attempt at sending `entries` (BatchTask.attempt), with the volume as it is now. */
  sendAttempt(index: number, kind: RequestKind, entries: readonly Entry[]): Promise<void> {
    const snapshot = this.state.current;
    const partition = snapshot.state.partitions[index]!;
    return sendBatch(
      this.bus,
      snapshot.subjects[index]!,
      kind,
      {
        volume: snapshot.state.name,
        partition: partition.partition,
        epoch: partition.epoch,
        ...(snapshot.state.id === undefined ? {} : { volumeId: snapshot.state.id }),
        ...(this.snapshotId === undefined ? {} : { snapshot: this.snapshotId }),
        // A clone's reads say what falls through to its parent (volume.ts).
        ...(snapshot.state.parent === undefined ? {} : { unmapped: true }),
        // Taken now, in the turn the bus is handed the attempt: attempts leave in the
        // order of their numbers.
        ...(isMutation(kind) ? { fence: this.sequencer.next() } : {}),
      },
      entries,
      this.options.requestDeadlineMs,
    );
  }

  /** The generation of the volume's description requests are sent with now. */
  get generation(): number {
    return this.state.current.generation;
  }

  /** Re-describes the volume after a failed attempt sent with `generationSent`. */
  refresh(generationSent: number): Promise<void> {
    return this.state.refresh(generationSent);
  }

  private progressOf(index: number): FlushProgress {
    let progress = this.progress.get(index);
    if (progress === undefined) {
      progress = { mutationsSettled: 0, mutationsFlushed: 0 };
      this.progress.set(index, progress);
    }
    return progress;
  }

  /** Says what a batch does, for the error when its retry budget runs out. */
  describeBatch(index: number, kind: RequestKind, batch: readonly Entry[]): string {
    const { state } = this.state.current;
    const where = `partition ${state.partitions[index]!.partition} of volume ${JSON.stringify(state.name)}`;
    if (kind === "flush") return `flush ${where}`;
    let bytes = 0;
    for (const entry of batch) bytes += entry.length;
    const verb = kind === "write-zeroes" ? "write zeroes to" : kind;
    const ranges = batch.length === 1 ? "1 range" : `${batch.length} ranges`;
    return `${verb} ${ranges} (${bytes} bytes) in ${where}`;
  }
}

/**
 * One batch's retry task. A class rather than an object of closures made per batch:
 * tsx (esbuild's keepNames) names every closure it makes, a `defineProperty` each, and
 * three per request were 2 to 4 % of a gateway's busy time in a profile of 4 KiB writes
 * (docs/performance.md, session 13).
 */
class BatchTask implements RetryTask<void> {
  readonly issuedAtMs: number;
  /** The entries still in the next attempt: an entry whose caller aborted is in none after. */
  private live: readonly Entry[];
  /** The description's generation the last attempt was sent with. */
  private generationSent = 0;
  /** `mutationsSettled` as it was when the last attempt was sent (for a flush). */
  mutationsCovered = 0;

  constructor(
    private readonly scheduler: RequestScheduler,
    private readonly index: number,
    private readonly kind: RequestKind,
    private readonly batch: readonly Entry[],
    private readonly progress: FlushProgress,
  ) {
    let issuedAtMs = Number.POSITIVE_INFINITY;
    for (const entry of batch) issuedAtMs = Math.min(issuedAtMs, entry.issuedAtMs);
    this.issuedAtMs = issuedAtMs;
    this.live = batch;
  }

  describe(): string {
    return this.scheduler.describeBatch(this.index, this.kind, this.batch);
  }

  attempt(): Promise<void> {
    // When every entry of the batch was aborted, nothing more is sent.
    if (this.live.some(settledEarly)) this.live = this.live.filter(notSettledEarly);
    if (this.live.length === 0) throw allAborted;
    this.generationSent = this.scheduler.generation;
    this.mutationsCovered = this.progress.mutationsSettled;
    return this.scheduler.sendAttempt(this.index, this.kind, this.live);
  }

  beforeRetry(failure: BallastError): Promise<void> {
    // A stale copy refused by the fence was sent in the right epoch: nothing to learn.
    if (failure.code === ErrorCode.Superseded) return Promise.resolve();
    return this.scheduler.refresh(this.generationSent);
  }
}

function settledEarly(entry: Entry): boolean {
  return entry.settledEarly === true;
}

function notSettledEarly(entry: Entry): boolean {
  return entry.settledEarly !== true;
}
