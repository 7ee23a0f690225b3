// How a head node uses sleds: write a chunk to two of them, read a range from the first
// copy that answers with sound bytes, and repair a copy that is damaged or missing from a
// sound one; store checkpoints as blobs on two sleds and read one back from the first
// copy that is whole and sound.
//
// Checksums end to end: the primary computes each chunk's CRC32C from the bytes it packs
// and the flush record keeps it. A write counts only on a sled whose stored copy has that
// CRC32C; a read of a whole chunk is checked against it here; a read of part of a chunk
// relies on the sled's CRC per 4 KiB block (it never returns a block that fails it). A
// copy whose blocks all pass but whose whole differs (another object under the right id)
// is caught by a whole read, a repair and `checkChunk`, which read copies whole.
//
// Repair order: sleds keep chunks write-once (writing an existing id with other bytes
// answers AlreadyExists, and a damaged one answers ChecksumMismatch), so a damaged copy
// cannot be overwritten where it is. A repair therefore first proves its source whole
// against the recorded CRC32C, then tries to write the copy (which succeeds at once when
// the copy is missing, or if the sled takes a replacement); only when the sled refuses is
// the damaged copy dropped and written again, after the sled has shown room for it. If
// that last write fails, the copy is missing rather than damaged (no fewer sound copies
// than before); the failure is logged and returned, and the next read or check that
// finds the copy missing repairs it.
//
// Batching: reads of chunk ranges asked for in one turn of the event loop (the parts of
// the reads of one `volume.read.v1`, or of several) go to each sled as one
// `sled.chunk.read-many.v1` per owner, instead of one `sled.chunk.read.v1` each: serving
// 4 KiB random reads, each sled request cost the sled about 300 µs of CPU and a message
// through nats-server each way. A read whose chunk has a copy on a sled the turn already
// reads from goes there first (`readOrder`), so a turn's misses ride as few read-manys as
// their copies allow. Each read of the batch succeeds or fails on its own, as
// a single read would, and a read that fails on one copy tries the next as before. A
// sled that does not know the message (one older than it) is asked one read at a time
// for `readManyReprobeMs`, then asked read-many again: a sled upgraded meanwhile (a
// restart under the same id) gets batched reads back, and one still old costs a single
// refused request per interval.
//
// Cache (chunk-cache.ts): chunks are write-once under ids never reused, so their bytes
// are cached here with no invalidation: filled by every chunk this node writes (what its
// primaries flush, kept whole: the flush's own buffer, no copy) and by every range it
// reads from a sled (after the checks above, copied per 4 KiB block; not the ranges larger
// than `cacheFillReadBytesMax`, which are scans), and consulted first
// by `readChunk`, which answers from it only when the chunk is held whole or every block
// of the range is there. A whole read answered from the cache is still
// checked against the recorded CRC32C (its blocks may have come from partial reads of
// a copy whose blocks pass but whose whole does not); on a mismatch the chunk is dropped
// from the cache and read from sleds as before. A read answered from the cache meets no
// copy, so it triggers no repair: damaged and missing copies are still found by the
// reads that do reach sleds and by the scrub (`checkChunk`), and repairs, checks and
// copies always read the sleds, never the cache.
//
// Slow sleds (slow-sleds.ts): a sled that missed a deadline, or answered data I/O slower
// than `sledSlowAnswerMs`, is asked last for `sledSlowHoldMs` in every order here (reads,
// chunk writes, blob puts and gets, copies' sources). And a read not answered within
// `sledReadHedgeMs` asks the next copy too (a hedge) and takes whichever sound answer
// comes first: before, a read waited on the first copy for its whole deadline (10 s,
// twice the client's), so a sled slow but alive held every cold read of its chunks.
// Chunk writes hedge too: a copy not answered within `sledWriteHedgeMs` (4 s) has the next
// sled in order written as well, and the write is done once `chunkCopies` sleds hold
// the chunk; a copy that fails is replaced by the next sled at once, unless the copies
// still under way can make up the count. Before (session
// 24), a flush waited for both copies it began, a slow sled's for up to its 10 s
// deadline, before it tried another sled: the sled not yet known slow held every flush
// that began on it, and the journal filled behind them. A copy answered after its
// write is done is a spare that no chunk table lists: it stays on its sled until the
// chunk is dropped, when the orphan sweep finds it (coordinator sweep.ts).

// Sleds answering again: a request to a sled that goes unanswered (Timeout, or Unavailable:
// no responder, a connection gone) marks the sled silent; its next answer, of any kind
// (a result or an error the sled itself sent), is told to `onAnswersAgain`'s listeners
// once. A sled restarted before the coordinator declared it out gives no other signal,
// and a primary whose checkpoint store failed for want of it would wait out its back-off
// (replica.ts, checkpointStoreRetryTicksMax); the head node brings that store forward.
// The replicator probes silent sleds on its scrub steps, so that an answer comes even
// with no other traffic to the sled.

import {
  BallastError,
  crc32c,
  ErrorCode,
  encodeMessageParts,
  isErrorCode,
  limits,
  type MessageOf,
  type RequestType,
  type ResultOf,
  sledLimits,
  subjects,
} from "@ballast/protocol";
import {
  type Bus,
  type Logger,
  type Meter,
  RepeatLog,
  type RequestOptions,
  testSledsCut,
  testSledsCutDirEnvVar,
  testSledsCutEnabled,
} from "@ballast/runtime";
import { ChunkCache, cacheFillReadBytesMax, chunkCacheBytesFloor } from "./chunk-cache.ts";
import { type SlowSledHold, SlowSleds, sledSlowAnswerMs } from "./slow-sleds.ts";

/** How long a data request to a sled (a chunk or blob read or write) waits for its answer. */
export const sledDeadlineMs = 10_000;
/**
 * A read of a chunk range not answered by its copy within this long asks the next copy
 * too (see the header): well above a healthy sled's answer, and early enough that the
 * next copy answers within a client's request deadline (5 s).
 */
export const sledReadHedgeMs = 1_000;
/**
 * A chunk write whose copies have not all answered within this long writes one more
 * sled (see the header), and one more again each further interval. Twice the answer
 * that marks a sled slow (`sledSlowAnswerMs`), and later than a read's hedge: each
 * hedge leaves a spare copy on a sled until its chunk is dropped, so a write a healthy
 * sled answers late on a loaded machine (4 MiB at most) should not make one; and less
 * than half the deadline a hung sled would otherwise hold each flush for.
 */
export const sledWriteHedgeMs = 2 * sledSlowAnswerMs;
/**
 * The most damaged chunk ids taken from one sled's list (`damagedChunks`): beyond it, the
 * rest wait until repairs have shortened the list.
 */
export const damagedChunksListedMax = 16_384;
/**
 * How long a sled that refused `sled.chunk.read-many.v1` is asked single reads before
 * read-many is tried on it again (see the header).
 */
export const readManyReprobeMs = 5 * 60_000;

export interface ChunkOwner {
  volume: string;
  partition: number;
}

/** What the chunk table records of a chunk: a copy is sound only if it matches. */
export interface ChunkExpectation {
  bytes: number;
  /** CRC32C of the whole chunk; absent for chunks flushed before records kept it. */
  checksum?: number;
}

/** What became of one damaged or missing copy. */
export interface CopyRepair {
  sled: string;
  repaired: boolean;
  /** How the copy was found: damaged (failed a checksum) or missing (NotFound). */
  found: "damaged" | "missing";
  /** Why it was not repaired, and whether the damaged copy is still in place. */
  error?: string;
}

/** A copy a read could not use: it failed a checksum, or the sled does not have it. */
function isBadCopy(error: unknown): error is BallastError {
  return (
    error instanceof BallastError &&
    (error.code === ErrorCode.ChecksumMismatch || error.code === ErrorCode.NotFound)
  );
}

/** Where requests to one sled go, less the sled's id. */
const sledSubjectPrefix = subjects.node.build("sled", "x").slice(0, -1);

/**
 * The bus a head node's sled client sends on: `bus` itself, unless the test switch that
 * cuts a node from the sleds is on (BALLAST_TEST_FAULTS=1 and BALLAST_TEST_SLEDS_CUT_DIR,
 * runtime test-faults.ts). Then, while the node's file exists there, every request to a
 * sled fails as unanswered (Timeout) without being sent, as over a link that drops
 * them: flushes, checkpoint stores and probes fail, while the node's journal, its
 * replication and its reports go on. For integration tests of a primary cut from the
 * sleds, which the simulator models as `sledCutRate`.
 */
export function sledBusOf(bus: Pick<Bus, "request">, nodeId: string): Pick<Bus, "request"> {
  if (!testSledsCutEnabled()) return bus;
  const send = bus.request.bind(bus) as (subject: string, ...rest: unknown[]) => Promise<unknown>;
  return {
    request: ((subject: string, ...rest: unknown[]) =>
      subject.startsWith(sledSubjectPrefix) && testSledsCut(nodeId)
        ? Promise.reject(
            new BallastError(
              ErrorCode.Timeout,
              `${nodeId} is cut from the sleds by ${testSledsCutDirEnvVar}: ${subject} not sent`,
            ),
          )
        : send(subject, ...rest)) as Bus["request"],
  };
}

/**
 * A request nothing answered: no reply in time, no responder, a connection gone. Any
 * other error was the sled's own answer.
 */
function isUnanswered(error: unknown): boolean {
  return (
    !(error instanceof BallastError) ||
    error.code === ErrorCode.Timeout ||
    error.code === ErrorCode.Unavailable
  );
}

/** A chunk range waiting for the end of the turn to be sent with others to its sled. */
interface PendingRead {
  chunkId: string;
  offset: number;
  length: number;
  resolve: (data: Uint8Array) => void;
  reject: (error: unknown) => void;
}

/** Where a turn's reads of one sled and owner wait (`SledClient.pendingReads`). */
function pendingKey(sled: string, owner: ChunkOwner): string {
  return `${sled}\u0000${owner.volume}\u0000${owner.partition}`;
}

/** A sled's answer that it does not take a message type (it predates it). */
function isUnknownType(error: unknown): boolean {
  return (
    error instanceof BallastError &&
    (error.code === ErrorCode.UnknownMessageType || error.code === ErrorCode.UnexpectedMessageType)
  );
}

export interface SledClientOptions {
  /** Bound of the chunk cache, in bytes; 0 turns it off. */
  cacheBytes?: number;
  /** Where the cache's counters are reported (the service's meter). */
  meter?: Meter;
  /** Milliseconds on a monotonic clock (`performance.now` by default). */
  clock?: () => number;
  /**
   * Runs `run` once `ms` have passed; returns what cancels it (a timer by default; tests
   * pass a fake to fire hedges when they choose).
   */
  schedule?: (ms: number, run: () => void) => () => void;
}

/** The default `schedule`: a timer that keeps no process alive. */
function scheduleTimer(ms: number, run: () => void): () => void {
  const timer = setTimeout(run, ms);
  timer.unref();
  return () => clearTimeout(timer);
}

/**
 * What the sled client counts of slow sleds (SledClient.slowStats): the head node's
 * node info `slowSleds`, whose shape the protocol checks (SlowSledsInfo).
 */
export interface SlowSledStats {
  /** Sleds asked last now, having been seen slow within `sledSlowHoldMs`. */
  slow: string[];
  /** Reads that asked a further copy because the one asked had not answered in time. */
  hedgedReads: number;
  /** Chunk writes that wrote a further sled because a copy had not answered in time. */
  hedgedWrites: number;
  /** Each slow sled's hold, in the order of `slow`: for how long, and how much is left. */
  holds: SlowSledHold[];
}

/** The slow-sled counters as metrics, read when scraped. */
function observeSlowSleds(meter: Meter, client: SledClient): void {
  const slow = meter.createObservableGauge("ballast_headnode_sleds_slow", {
    description:
      "sleds this head node asks last, having seen them miss a deadline or answer data I/O slowly lately",
  });
  const hedged = meter.createObservableCounter("ballast_headnode_sled_reads_hedged", {
    description: "chunk reads that asked a further copy because the sled asked first was slow",
  });
  const hedgedWrites = meter.createObservableCounter("ballast_headnode_sled_writes_hedged", {
    description: "chunk writes that wrote a further sled because a copy had not answered in time",
  });
  meter.addBatchObservableCallback(
    (result) => {
      const stats = client.slowStats();
      result.observe(slow, stats.slow.length);
      result.observe(hedged, stats.hedgedReads);
      result.observe(hedgedWrites, stats.hedgedWrites);
    },
    [slow, hedged, hedgedWrites],
  );
}

/** The cache's counters as metrics, read when scraped. */
function observeCache(meter: Meter, cache: ChunkCache): void {
  const hits = meter.createObservableCounter("ballast_headnode_chunk_cache_hits", {
    description: "chunk reads answered from the head node's chunk cache",
  });
  const misses = meter.createObservableCounter("ballast_headnode_chunk_cache_misses", {
    description: "chunk reads the chunk cache could not answer whole (read from sleds)",
  });
  const evictions = meter.createObservableCounter("ballast_headnode_chunk_cache_evictions", {
    description:
      "4 KiB blocks evicted from the chunk cache to make room (a whole chunk counts its blocks)",
  });
  const bytes = meter.createObservableGauge("ballast_headnode_chunk_cache_bytes", {
    description: "bytes charged to the chunk cache (blocks, whole chunks and their overhead)",
  });
  meter.addBatchObservableCallback(
    (result) => {
      const stats = cache.stats();
      result.observe(hits, stats.hits);
      result.observe(misses, stats.misses);
      result.observe(evictions, stats.evictions);
      result.observe(bytes, stats.bytes);
    },
    [hits, misses, evictions, bytes],
  );
}

export class SledClient {
  /** Copies being repaired now (`sled/chunk`): concurrent reads start one repair each. */
  private readonly repairing = new Set<string>();
  /** Reads of this turn by sled and owner, sent as one read-many when the turn ends. */
  private readonly pendingReads = new Map<
    string,
    { sled: string; owner: ChunkOwner; reads: PendingRead[] }
  >();
  /**
   * Sleds that answered that they do not know `sled.chunk.read-many.v1`, and when (on
   * `clock`): asked single reads until `readManyReprobeMs` has passed.
   */
  private readonly singleReadSleds = new Map<string, number>();
  private readonly clock: () => number;
  /** Every request to a sled goes through here, so that its answers are watched. */
  private readonly bus: Pick<Bus, "request">;
  /** Sleds whose last request went unanswered (see the header, "Sleds answering again"). */
  private readonly silent = new Set<string>();
  private readonly answersAgain = new Set<(sled: string) => void>();
  private readonly schedule: (ms: number, run: () => void) => () => void;
  /** Sleds seen slow lately: asked last (see the header). */
  private readonly slowSleds = new SlowSleds();
  /** One warning per sled when it is seen slow, a reminder per logRepeatIntervalMs. */
  private readonly slowLog = new RepeatLog();
  private hedgedReads = 0;
  private hedgedWrites = 0;
  /** Chunk writes and blob stores that reached their copies (`stores`). */
  private storesSucceeded = 0;

  /** Chunk bytes by 4 KiB block (see the header); off when its capacity is 0. */
  readonly cache: ChunkCache;

  constructor(
    bus: Pick<Bus, "request">,
    private readonly logger: Logger,
    options: SledClientOptions = {},
  ) {
    this.bus = {
      request: <T extends RequestType>(
        subject: string,
        message: MessageOf<T>,
        options?: RequestOptions,
      ): Promise<ResultOf<T>> => {
        const sent = bus.request<T>(subject, message, options);
        sent.then(
          () => this.heard(subject, true),
          (error: unknown) => this.heard(subject, !isUnanswered(error)),
        );
        return sent;
      },
    };
    this.cache = new ChunkCache(options.cacheBytes ?? chunkCacheBytesFloor);
    this.clock = options.clock ?? (() => performance.now());
    this.schedule = options.schedule ?? scheduleTimer;
    if (options.meter !== undefined) {
      observeCache(options.meter, this.cache);
      observeSlowSleds(options.meter, this);
    }
  }

  /** The sleds asked last now with their holds, and the reads and writes hedged so far. */
  slowStats(): SlowSledStats {
    const holds = this.slowSleds.holdsAt(this.clock());
    return {
      slow: holds.map((hold) => hold.sled),
      hedgedReads: this.hedgedReads,
      hedgedWrites: this.hedgedWrites,
      holds,
    };
  }

  /**
   * Sends one data request to `sled` and notes how it went: a missed deadline, or an
   * answer slower than `sledSlowAnswerMs`, marks the sled slow (see the header).
   */
  private async timed<R>(sled: string, send: () => Promise<R>): Promise<R> {
    const startedMs = this.clock();
    try {
      const answer = await send();
      this.noteAnswer(sled, startedMs, undefined);
      return answer;
    } catch (error) {
      this.noteAnswer(sled, startedMs, error);
      throw error;
    }
  }

  private noteAnswer(sled: string, startedMs: number, error: unknown): void {
    const nowMs = this.clock();
    const tookMs = nowMs - startedMs;
    const missed = error instanceof BallastError && error.code === ErrorCode.Timeout;
    if (!missed && tookMs <= sledSlowAnswerMs) return;
    this.slowSleds.mark(sled, nowMs);
    const due = this.slowLog.due(sled, nowMs);
    if (due === undefined) return;
    this.logger.warn(
      {
        sled,
        tookMs: Math.round(tookMs),
        missedDeadline: missed,
        ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
      },
      "sled is slow (alive but answering late): asking it last for reads, chunk writes and checkpoints",
    );
  }

  /** `sleds` with the ones seen slow lately moved to the end (SlowSleds.order). */
  private slowLast(sleds: readonly string[]): readonly string[] {
    return this.slowSleds.order(sleds, this.clock());
  }

  /**
   * Tells `listener` each time a sled answers after requests to it went unanswered;
   * returns what stops it.
   */
  onAnswersAgain(listener: (sled: string) => void): () => void {
    this.answersAgain.add(listener);
    return () => this.answersAgain.delete(listener);
  }

  /** The sleds whose last request went unanswered. */
  silentSleds(): ReadonlySet<string> {
    return this.silent;
  }

  /** A request to `subject` settled: `answered` unless nothing answered it. */
  private heard(subject: string, answered: boolean): void {
    if (!subject.startsWith(sledSubjectPrefix)) return;
    const sled = subject.slice(sledSubjectPrefix.length);
    if (!answered) {
      this.silent.add(sled);
      return;
    }
    if (!this.silent.delete(sled)) return;
    this.logger.debug({ sled }, "a sled answers again after requests to it went unanswered");
    for (const listener of [...this.answersAgain]) listener(sled);
  }

  /**
   * Writes the chunk to `chunkCopies` sleds, starting at a position chosen by the chunk
   * number so that chunks spread over the sleds; a sled that fails, or stores a copy
   * whose CRC32C is not `checksum`, is replaced by the next at once (unless the copies
   * under way can still make up the count), and one that has not
   * answered within `sledWriteHedgeMs` gets the next written beside it (see the header).
   * Resolves with the first `chunkCopies` sleds that hold it, in the order they were
   * asked; rejects if fewer could: with NoSpace when every sled that failed answered
   * NoSpace, else Unavailable. `data` is handed over: once written, the cache may keep
   * it as it is, so it must never be written again (a flush's chunk is not: sled chunks
   * are write-once).
   */
  async writeChunk(
    owner: ChunkOwner,
    chunkId: string,
    data: Uint8Array,
    sleds: readonly string[],
    spread: number,
    checksum: number = crc32c(data),
  ): Promise<string[]> {
    if (sleds.length < limits.chunkCopies) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `a chunk needs ${limits.chunkCopies} sleds, but only ${sleds.length} are configured`,
      );
    }
    const order = this.slowLast(sleds.map((_, index) => sleds[(spread + index) % sleds.length]!));
    // One encoding for every copy, in parts: the chunk's bytes (up to 4 MiB) go to each
    // sled's request from where they are, never copied into an encoding.
    const encoded = encodeMessageParts({ type: "sled.chunk.write.v1", owner, chunkId, data });
    const holders = await new Promise<string[]>((resolve, reject) => {
      const held: string[] = [];
      const failures: string[] = [];
      let allNoSpace = true;
      let next = 0;
      let inFlight = 0;
      let done = false;
      let cancelHedge: (() => void) | undefined;
      const finish = () => {
        done = true;
        cancelHedge?.();
      };
      // Copies land one at a time and nothing lands once done: `held` never passes
      // chunkCopies.
      const settle = () => {
        if (held.length === limits.chunkCopies) {
          finish();
          held.sort((a, b) => order.indexOf(a) - order.indexOf(b));
          resolve(held);
        } else if (held.length + inFlight < limits.chunkCopies && next >= order.length) {
          finish();
          // Every sled that failed was full: say so, so that the core can answer writes
          // NoSpace instead of letting them wait for room that is not coming.
          reject(
            new BallastError(
              allNoSpace ? ErrorCode.NoSpace : ErrorCode.Unavailable,
              `chunk ${chunkId} reached ${held.length} of ${limits.chunkCopies} sleds: ${failures.join("; ")}`,
            ),
          );
        }
      };
      const write = (sled: string) => {
        inFlight++;
        this.writeCopy(owner, chunkId, sled, data, checksum, encoded).then(
          () => {
            inFlight--;
            // Answered after the write was done: a spare copy (see the header).
            if (done) return;
            held.push(sled);
            settle();
          },
          (error: unknown) => {
            inFlight--;
            if (done) return;
            failures.push(`${sled}: ${(error as Error).message}`);
            const code = error instanceof BallastError ? error.code : undefined;
            if (code !== ErrorCode.NoSpace) allNoSpace = false;
            // Replaced only where the copies still under way cannot make up the count (a
            // hedge may already be writing the sled that would replace it).
            if (held.length + inFlight < limits.chunkCopies && next < order.length) {
              write(order[next++]!);
            }
            settle();
          },
        );
      };
      const hedgeLater = () => {
        cancelHedge = this.schedule(sledWriteHedgeMs, () => {
          cancelHedge = undefined;
          if (done || next >= order.length) return;
          this.hedgedWrites++;
          write(order[next++]!);
          hedgeLater();
        });
      };
      while (next < limits.chunkCopies) write(order[next++]!);
      hedgeLater();
    });
    // What the primary just flushed is what its reads will ask for next; every holder
    // stored exactly these bytes (its CRC32C matched). Kept whole, without a copy.
    this.cache.insertChunk(chunkId, data);
    this.storesSucceeded++;
    return holders;
  }

  /**
   * Chunk writes and blob stores that reached their `chunkCopies` sleds since this client
   * was made: the head node reports it (`sledStores`), and the leader takes its growth as
   * evidence that the node reaches the sleds (coordinator sled-reach.ts).
   */
  get stores(): number {
    return this.storesSucceeded;
  }

  /** Writes one copy and checks that the sled stored what the primary packed. */
  private async writeCopy(
    owner: ChunkOwner,
    chunkId: string,
    sled: string,
    data: Uint8Array,
    checksum: number,
    encoded?: readonly Uint8Array[],
  ): Promise<void> {
    const written = await this.timed(sled, () =>
      this.bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.chunk.write.v1", owner, chunkId, data },
        encoded === undefined
          ? { deadlineMs: sledDeadlineMs }
          : { deadlineMs: sledDeadlineMs, encoded },
      ),
    );
    if (written.checksum === checksum && written.bytes === data.byteLength) return;
    // The sled holds other bytes under this id (changed on the way, or in its memory):
    // that copy is no copy of the chunk. Drop it if this write made it; either way the
    // sled does not count as a holder.
    if (written.created) {
      await this.bus
        .request(subjects.node.build("sled", sled), {
          type: "sled.chunk.delete.v1",
          owner,
          chunkId,
        })
        .catch(() => undefined);
    }
    throw new BallastError(
      ErrorCode.ChecksumMismatch,
      `chunk ${chunkId} on ${sled} was stored with ${written.bytes} bytes and CRC32C ${written.checksum}, not ${data.byteLength} bytes and ${checksum}`,
      { details: { sled, chunkId, stored: written.checksum, expected: checksum } },
    );
  }

  /**
   * Reads from the first sound copy; repairs, in the background, copies that failed a
   * checksum or are missing. A read of the whole chunk is checked against the recorded
   * CRC32C when `expect` has one. Answered from the cache when it holds the whole range
   * (see the header). The bytes returned are a view of the reply message, of a cached
   * block or of a cached whole chunk: copy them to keep them, and never modify them.
   */
  /**
   * `readChunk`'s answer when the cache has the whole range (and a whole-chunk read
   * passes its recorded CRC32C), synchronously; undefined otherwise, for `readChunk` to
   * take from there (a cached whole chunk that fails its check is dropped there, not
   * here). What a hit returns is exactly what `readChunk` would: the same view. A hit
   * counts in the cache's counters; a miss does not, since `readChunk` follows it and
   * counts it (each range counts once).
   */
  readCached(
    chunkId: string,
    offset: number,
    length: number,
    expect?: ChunkExpectation,
  ): Uint8Array | undefined {
    const cached = this.cache.tryRead(chunkId, offset, length);
    if (cached === undefined) return undefined;
    const whole = expect?.checksum !== undefined && offset === 0 && length === expect.bytes;
    if (!whole || crc32c(cached) === expect.checksum) return cached;
    return undefined;
  }

  async readChunk(
    owner: ChunkOwner,
    chunkId: string,
    copies: readonly string[],
    offset: number,
    length: number,
    expect?: ChunkExpectation,
  ): Promise<Uint8Array> {
    const whole = expect?.checksum !== undefined && offset === 0 && length === expect.bytes;
    const cached = this.cache.read(chunkId, offset, length);
    if (cached !== undefined) {
      if (!whole || crc32c(cached) === expect.checksum) return cached;
      this.logger.warn(
        { chunk: chunkId },
        "cached chunk does not match its recorded CRC32C; dropped it and reading sleds",
      );
      this.cache.forget(chunkId);
    }
    const order = this.readOrder(owner, copies);
    const bad: { sled: string; found: CopyRepair["found"] }[] = [];
    const errors: string[] = [];
    if (order.length === 0) {
      throw new BallastError(ErrorCode.Unavailable, `no copy of chunk ${chunkId} is recorded`);
    }
    // Copies are asked in order: the next at once when one fails, or when the one asked
    // last has not answered within sledReadHedgeMs (a hedge). The first sound answer is
    // the read's; the answers of copies still out then are dropped.
    return new Promise<Uint8Array>((resolve, reject) => {
      let next = 0;
      let out = 0;
      let settled = false;
      let cancelHedge: (() => void) | undefined;
      const stopHedge = () => {
        cancelHedge?.();
        cancelHedge = undefined;
      };
      const succeed = (sled: string, data: Uint8Array) => {
        settled = true;
        stopHedge();
        // Not a scan's large ranges (see cacheFillReadBytesMax).
        if (length <= cacheFillReadBytesMax) {
          this.cache.insert(chunkId, offset, data, expect?.bytes);
        }
        if (bad.length > 0) {
          void this.repairChunk(owner, chunkId, sled, bad, expect, whole ? data : undefined);
        }
        // A view of the reply's buffer: the caller copies it into the read it assembles.
        resolve(data);
      };
      const fail = (sled: string, error: unknown) => {
        if (isBadCopy(error)) {
          this.logger.warn(
            { sled, chunk: chunkId, offset, code: error.code },
            "chunk copy is damaged or missing; reading another",
          );
          bad.push({
            sled,
            found: error.code === ErrorCode.NotFound ? "missing" : "damaged",
          });
        }
        errors.push(`${sled}: ${(error as Error).message}`);
        if (next < order.length) {
          ask();
          return;
        }
        if (out > 0) return; // a copy asked earlier (slow: it was hedged) may still answer
        settled = true;
        stopHedge();
        reject(
          new BallastError(
            ErrorCode.Unavailable,
            `no copy of chunk ${chunkId} could be read: ${errors.join("; ")}`,
          ),
        );
      };
      const ask = () => {
        stopHedge();
        const sled = order[next++]!;
        out++;
        if (next < order.length) {
          cancelHedge = this.schedule(sledReadHedgeMs, () => {
            cancelHedge = undefined;
            if (settled) return;
            this.hedgedReads++;
            ask();
          });
        }
        this.readCopy(sled, owner, chunkId, offset, length, whole ? expect : undefined).then(
          (data) => {
            out--;
            if (!settled) succeed(sled, data);
          },
          (error: unknown) => {
            out--;
            if (!settled) fail(sled, error);
          },
        );
      };
      ask();
    });
  }

  /**
   * One copy's range for `readChunk`, checked against `expect.checksum` when given (a
   * whole read): a copy whose blocks pass but whose whole does not is ChecksumMismatch.
   */
  private async readCopy(
    sled: string,
    owner: ChunkOwner,
    chunkId: string,
    offset: number,
    length: number,
    expect: ChunkExpectation | undefined,
  ): Promise<Uint8Array> {
    const data = await this.readRange(sled, owner, chunkId, offset, length);
    if (expect?.checksum !== undefined && crc32c(data) !== expect.checksum) {
      // Partial reads of this copy may have cached blocks of the wrong object.
      this.cache.forget(chunkId);
      throw new BallastError(
        ErrorCode.ChecksumMismatch,
        `chunk ${chunkId} on ${sled} passes the sled's block checks but not the recorded CRC32C`,
      );
    }
    return data;
  }

  /**
   * The copies in the order to try them: as recorded, except that a copy on a sled this
   * turn already has reads for (of the same owner) goes first, so that the turn's reads
   * ride fewer read-manys. A sled's CPU per request is several times its CPU per range
   * (the request's frames, wake-ups and reply), and random reads spread each turn's few
   * misses over every sled otherwise. Sleds seen slow lately go last all the same.
   */
  private readOrder(owner: ChunkOwner, copies: readonly string[]): readonly string[] {
    return this.slowLast(this.batchOrder(owner, copies));
  }

  /** The copies as recorded, a copy on a sled this turn already reads from first. */
  private batchOrder(owner: ChunkOwner, copies: readonly string[]): readonly string[] {
    if (copies.length < 2 || this.pendingReads.size === 0) return copies;
    if (this.pendingReads.has(pendingKey(copies[0]!, owner))) return copies;
    for (let index = 1; index < copies.length; index++) {
      const sled = copies[index]!;
      if (this.pendingReads.has(pendingKey(sled, owner))) {
        return [sled, ...copies.filter((_, other) => other !== index)];
      }
    }
    return copies;
  }

  /**
   * One chunk range from one sled: joins the reads of this turn to that sled and owner
   * (see the header), or goes alone to a sled that takes only single reads.
   */
  private readRange(
    sled: string,
    owner: ChunkOwner,
    chunkId: string,
    offset: number,
    length: number,
  ): Promise<Uint8Array> {
    if (this.takesSingleReads(sled)) return this.readOne(sled, owner, chunkId, offset, length);
    return new Promise((resolve, reject) => {
      const key = pendingKey(sled, owner);
      let pending = this.pendingReads.get(key);
      if (pending === undefined) {
        pending = { sled, owner, reads: [] };
        this.pendingReads.set(key, pending);
        queueMicrotask(() => {
          this.pendingReads.delete(key);
          this.sendReads(pending!.sled, pending!.owner, pending!.reads);
        });
      }
      pending.reads.push({ chunkId, offset, length, resolve, reject });
    });
  }

  private async readOne(
    sled: string,
    owner: ChunkOwner,
    chunkId: string,
    offset: number,
    length: number,
  ): Promise<Uint8Array> {
    const { data } = await this.timed(sled, () =>
      this.bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.chunk.read.v1", owner, chunkId, offset, length },
        { deadlineMs: sledDeadlineMs },
      ),
    );
    return data;
  }

  /** Sends a turn's reads to one sled, in read-manys within the sled's limits. */
  private sendReads(sled: string, owner: ChunkOwner, reads: readonly PendingRead[]): void {
    let group: PendingRead[] = [];
    let bytes = 0;
    for (const read of reads) {
      if (
        group.length > 0 &&
        (group.length >= sledLimits.readManyEntriesMax ||
          bytes + read.length > sledLimits.readBytesMax)
      ) {
        void this.sendGroup(sled, owner, group);
        group = [];
        bytes = 0;
      }
      group.push(read);
      bytes += read.length;
    }
    void this.sendGroup(sled, owner, group);
  }

  /**
   * Whether `sled` is to be asked single reads: it refused read-many less than
   * `readManyReprobeMs` ago. Past that, it is forgotten and the next batch tries read-many.
   */
  private takesSingleReads(sled: string): boolean {
    const refusedAtMs = this.singleReadSleds.get(sled);
    if (refusedAtMs === undefined) return false;
    if (this.clock() - refusedAtMs < readManyReprobeMs) return true;
    this.singleReadSleds.delete(sled);
    return false;
  }

  /** Settles every read of `group`: one request (a single read when alone). Never throws. */
  private async sendGroup(
    sled: string,
    owner: ChunkOwner,
    group: readonly PendingRead[],
  ): Promise<void> {
    if (group.length === 1 || this.takesSingleReads(sled)) {
      for (const read of group) {
        this.readOne(sled, owner, read.chunkId, read.offset, read.length).then(
          read.resolve,
          read.reject,
        );
      }
      return;
    }
    let answer: ResultOf<"sled.chunk.read-many.v1">;
    try {
      answer = await this.timed(sled, () =>
        this.bus.request(
          subjects.node.build("sled", sled),
          {
            type: "sled.chunk.read-many.v1",
            owner,
            reads: group.map(({ chunkId, offset, length }) => ({ chunkId, offset, length })),
          },
          { deadlineMs: sledDeadlineMs },
        ),
      );
    } catch (error) {
      if (isUnknownType(error)) {
        if (!this.singleReadSleds.has(sled)) {
          this.logger.info(
            { sled, reprobeMs: readManyReprobeMs },
            "the sled does not know read-many: asking it single reads for a while",
          );
        }
        this.singleReadSleds.set(sled, this.clock());
        void this.sendGroup(sled, owner, group);
        return;
      }
      for (const read of group) read.reject(error);
      return;
    }
    const failures = new Map((answer.failed ?? []).map((failure) => [failure.index, failure]));
    group.forEach((read, index) => {
      const failure = failures.get(index);
      if (failure !== undefined) {
        read.reject(
          new BallastError(
            isErrorCode(failure.code) ? failure.code : ErrorCode.Internal,
            failure.message,
            { details: { ...failure.details, remote: true } },
          ),
        );
        return;
      }
      const data = answer.data[index];
      if (data === undefined || data.byteLength !== read.length) {
        read.reject(
          new BallastError(
            ErrorCode.Internal,
            `sled ${sled} answered ${data?.byteLength ?? "no"} bytes for a read of ${read.length} bytes of chunk ${read.chunkId}`,
          ),
        );
        return;
      }
      read.resolve(data);
    });
  }

  /**
   * Reads every copy whole and checks it against `expect` (and each sled's own checks);
   * repairs the damaged and missing ones from a sound one. For a verifier that knows
   * the chunk table (a head node's scrub): what it cannot repair is returned, not thrown.
   */
  async checkChunk(
    owner: ChunkOwner,
    chunkId: string,
    copies: readonly string[],
    expect: ChunkExpectation,
  ): Promise<CopyRepair[]> {
    const bad: { sled: string; found: CopyRepair["found"] }[] = [];
    let sound: { sled: string; data: Uint8Array } | undefined;
    for (const sled of copies) {
      try {
        const data = await this.readWhole(owner, chunkId, sled, expect);
        sound ??= { sled, data };
      } catch (error) {
        if (isBadCopy(error)) {
          bad.push({ sled, found: error.code === ErrorCode.NotFound ? "missing" : "damaged" });
        } else {
          this.logger.warn(
            { sled, chunk: chunkId, error: String(error) },
            "chunk copy could not be checked",
          );
        }
      }
    }
    if (bad.length === 0) return [];
    if (sound === undefined) {
      return bad.map(({ sled, found }) => ({
        sled,
        found,
        repaired: false,
        error: `no sound copy of chunk ${chunkId} to repair from`,
      }));
    }
    return this.repairChunk(owner, chunkId, sound.sled, bad, expect, sound.data);
  }

  /**
   * Repairs damaged or missing copies from the copy on `from` (see the header for the
   * order). `data`, when given, is the whole chunk already read from `from` and checked.
   * Never throws: each copy's outcome is logged and returned.
   */
  async repairChunk(
    owner: ChunkOwner,
    chunkId: string,
    from: string,
    bad: readonly { sled: string; found: CopyRepair["found"] }[],
    expect?: ChunkExpectation,
    data?: Uint8Array,
  ): Promise<CopyRepair[]> {
    const mine = bad.filter(({ sled }) => !this.repairing.has(`${sled}/${chunkId}`));
    for (const { sled } of mine) this.repairing.add(`${sled}/${chunkId}`);
    try {
      let source: { data: Uint8Array; checksum: number };
      try {
        source = await this.soundSource(owner, chunkId, from, expect, data);
      } catch (error) {
        const reason = `the source copy on ${from} is not sound: ${(error as Error).message}`;
        this.logger.error(
          { chunk: chunkId, from, bad: mine, error: reason },
          "chunk repair failed",
        );
        return mine.map(({ sled, found }) => ({ sled, found, repaired: false, error: reason }));
      }
      const outcomes: CopyRepair[] = [];
      for (const { sled, found } of mine) {
        const error = await this.replaceCopy(owner, chunkId, sled, source.data, source.checksum);
        if (error === undefined) {
          // A damaged copy may have been a wrong object whose blocks passed: whatever
          // partial reads of it cached goes, and later reads see the sound bytes.
          if (found === "damaged") this.cache.forget(chunkId);
          this.logger.info({ sled, chunk: chunkId, from, found }, "repaired a chunk copy");
          outcomes.push({ sled, found, repaired: true });
        } else {
          this.logger.error({ sled, chunk: chunkId, from, found, error }, "chunk repair failed");
          outcomes.push({ sled, found, repaired: false, error });
        }
      }
      return outcomes;
    } finally {
      for (const { sled } of mine) this.repairing.delete(`${sled}/${chunkId}`);
    }
  }

  /** The whole chunk from `from`, proven against the recorded CRC32C (or the sled's). */
  private async soundSource(
    owner: ChunkOwner,
    chunkId: string,
    from: string,
    expect: ChunkExpectation | undefined,
    data: Uint8Array | undefined,
  ): Promise<{ data: Uint8Array; checksum: number }> {
    if (data !== undefined && expect?.checksum !== undefined && crc32c(data) === expect.checksum) {
      return { data: Uint8Array.prototype.slice.call(data), checksum: expect.checksum };
    }
    const stat = await this.bus.request(subjects.node.build("sled", from), {
      type: "sled.chunk.stat.v1",
      owner,
      chunkId,
    });
    const checksum = expect?.checksum ?? stat.checksum;
    const whole = await this.readWhole(owner, chunkId, from, {
      bytes: expect?.bytes ?? stat.bytes,
      checksum,
    });
    return { data: whole, checksum };
  }

  /**
   * Reads one copy whole and checks it against `expect.checksum` (when known); a copy
   * that does not match answers ChecksumMismatch. A copy of the chunk is one read.
   */
  private async readWhole(
    owner: ChunkOwner,
    chunkId: string,
    sled: string,
    expect: ChunkExpectation,
  ): Promise<Uint8Array> {
    const { data } = await this.timed(sled, () =>
      this.bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.chunk.read.v1", owner, chunkId, offset: 0, length: expect.bytes },
        { deadlineMs: sledDeadlineMs },
      ),
    );
    if (expect.checksum !== undefined && crc32c(data) !== expect.checksum) {
      // Partial reads of this copy may have cached blocks of the wrong object.
      this.cache.forget(chunkId);
      throw new BallastError(
        ErrorCode.ChecksumMismatch,
        `chunk ${chunkId} on ${sled} does not match its recorded CRC32C`,
      );
    }
    return Uint8Array.prototype.slice.call(data);
  }

  /**
   * Puts a sound copy on `sled`; returns why it could not, or undefined. Writes first;
   * drops the copy there only if the sled refuses because it holds another (damaged or
   * wrong) one, and only once the sled has shown room for the new one.
   */
  private async replaceCopy(
    owner: ChunkOwner,
    chunkId: string,
    sled: string,
    data: Uint8Array,
    checksum: number,
  ): Promise<string | undefined> {
    try {
      await this.writeCopy(owner, chunkId, sled, data, checksum);
      return undefined;
    } catch (error) {
      const refused =
        error instanceof BallastError &&
        (error.code === ErrorCode.AlreadyExists || error.code === ErrorCode.ChecksumMismatch);
      if (!refused) {
        return `writing the copy failed (the old copy is untouched): ${(error as Error).message}`;
      }
    }
    const subject = subjects.node.build("sled", sled);
    try {
      const stat = await this.bus.request(subject, { type: "sled.stat.v1" });
      const room = stat.devices.some(
        (device) => !device.failed && device.largestFreeBytes >= data.byteLength,
      );
      if (!room) {
        return `the sled has no room for a new copy, so the damaged copy is left in place`;
      }
      await this.bus.request(subject, { type: "sled.chunk.delete.v1", owner, chunkId });
    } catch (error) {
      return `dropping the damaged copy failed (it may still be in place): ${(error as Error).message}`;
    }
    try {
      await this.writeCopy(owner, chunkId, sled, data, checksum);
      return undefined;
    } catch (error) {
      return `the damaged copy was dropped but writing the new one failed, so the copy is missing until a later repair: ${(error as Error).message}`;
    }
  }

  /**
   * Re-replication (replicator.ts): makes a copy of the chunk on `to` from the first of
   * `from` whose whole copy is sound (checked against `expect.checksum`, or the sled's
   * own when the table has none). A copy already on `to` with the same bytes counts as
   * made; a different one there is replaced as a repair would (replaceCopy). Resolves
   * with the sled copied from; rejects when no source was sound or the write failed.
   */
  async copyChunk(
    owner: ChunkOwner,
    chunkId: string,
    from: readonly string[],
    to: string,
    expect: ChunkExpectation,
  ): Promise<string> {
    const errors: string[] = [];
    for (const sled of this.slowLast(from)) {
      let source: { data: Uint8Array; checksum: number };
      try {
        source = await this.soundSource(owner, chunkId, sled, expect, undefined);
      } catch (error) {
        errors.push(`${sled}: ${(error as Error).message}`);
        continue;
      }
      const failed = await this.replaceCopy(owner, chunkId, to, source.data, source.checksum);
      if (failed !== undefined) {
        throw new BallastError(
          ErrorCode.Unavailable,
          `copying chunk ${chunkId} from ${sled} to ${to}: ${failed}`,
        );
      }
      return sled;
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `no sound copy of chunk ${chunkId} to copy to ${to}: ${errors.join("; ")}`,
    );
  }

  /**
   * Stores a blob on `chunkCopies` sleds (in parts); resolves with the sleds that hold it,
   * in the order they were tried. The copies are stored at once, each on the next sled of
   * the order that has not failed: one after the other (before), a checkpoint took twice
   * one copy's time, and a sled probe's evidence (sled-probe.ts) was as old as the first
   * copy's store when the second ended.
   */
  async putBlob(
    key: string,
    data: Uint8Array,
    sleds: readonly string[],
    spread: number,
  ): Promise<string[]> {
    const order = this.slowLast(sleds.map((_, index) => sleds[(spread + index) % sleds.length]!));
    const checksum = crc32c(data);
    const holders: string[] = [];
    const failures: string[] = [];
    // Sleds whose upload went unanswered: one may have committed the blob all the same.
    const unanswered: string[] = [];
    let next = 0;
    // One lane a copy: each tries sleds in order until one takes the blob.
    const lane = async (): Promise<void> => {
      while (next < order.length) {
        const sled = order[next++]!;
        try {
          await this.uploadBlob(sled, key, data, checksum);
          holders.push(sled);
          return;
        } catch (error) {
          failures.push(`${sled}: ${(error as Error).message}`);
          if (isUnanswered(error)) unanswered.push(sled);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(limits.chunkCopies, order.length) }, lane));
    holders.sort((a, b) => order.indexOf(a) - order.indexOf(b));
    if (holders.length < limits.chunkCopies) {
      // A blob that did not get its copies is never recorded, so never read: its copies
      // are removed here (best effort). Left, they waited for the orphan sweep, which
      // keeps a blob above every recorded pointer's op until a later checkpoint is
      // recorded, so a long outage of one sled piled up one on the live sled per try.
      // With those whose upload went unanswered: a commit that took effect but whose
      // answer was lost left a copy this list would miss (review 32).
      await this.deleteBlob(key, [...holders, ...unanswered]);
      throw new BallastError(
        ErrorCode.Unavailable,
        `blob ${key} reached ${holders.length} of ${limits.chunkCopies} sleds: ${failures.join("; ")}`,
      );
    }
    this.storesSucceeded++;
    return holders;
  }

  private async uploadBlob(sled: string, key: string, data: Uint8Array, checksum: number) {
    const subject = subjects.node.build("sled", sled);
    const begun = await this.timed(sled, () =>
      this.bus.request(subject, {
        type: "sled.blob.begin.v1",
        key,
        bytes: data.byteLength,
        checksum,
      }),
    );
    const partBytes = Math.min(begun.partBytesMax, sledLimits.blobPartBytesMax);
    try {
      for (let offset = 0; offset < data.byteLength; offset += partBytes) {
        await this.timed(sled, () =>
          this.bus.request(
            subject,
            {
              type: "sled.blob.part.v1",
              uploadId: begun.uploadId,
              offset,
              data: data.subarray(offset, offset + partBytes),
            },
            { deadlineMs: sledDeadlineMs },
          ),
        );
      }
      await this.timed(sled, () =>
        this.bus.request(
          subject,
          { type: "sled.blob.commit.v1", uploadId: begun.uploadId },
          { deadlineMs: sledDeadlineMs },
        ),
      );
    } catch (error) {
      await this.bus
        .request(subject, { type: "sled.blob.abort.v1", uploadId: begun.uploadId })
        .catch(() => undefined);
      throw error;
    }
  }

  /**
   * Reads a whole blob from the first sled whose copy is sound (every block passes its
   * checksum on the sled, and the whole passes the blob's CRC32C here).
   */
  async getBlob(
    key: string,
    bytes: number,
    sleds: readonly string[],
  ): Promise<{ data: Uint8Array; sled: string }> {
    const errors: string[] = [];
    for (const sled of this.slowLast(sleds)) {
      try {
        return { data: await this.readBlob(sled, key, bytes), sled };
      } catch (error) {
        this.logger.warn(
          { sled, blob: key, error: (error as Error).message },
          "blob copy unreadable; trying another",
        );
        errors.push(`${sled}: ${(error as Error).message}`);
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `no sound copy of blob ${key}: ${errors.join("; ")}`,
    );
  }

  /** Reads a blob of `bytes` bytes in pieces no larger than a sled read may return. */
  private async readBlob(sled: string, key: string, bytes: number): Promise<Uint8Array> {
    const subject = subjects.node.build("sled", sled);
    const parts: Uint8Array[] = [];
    let total = bytes;
    let checksum = 0;
    let offset = 0;
    while (offset < total) {
      const length = Math.min(sledLimits.readBytesMax, total - offset);
      const got = await this.timed(sled, () =>
        this.bus.request(
          subject,
          { type: "sled.blob.get.v1", key, offset, length },
          { deadlineMs: sledDeadlineMs },
        ),
      );
      if (got.bytes !== bytes)
        throw new Error(`blob ${key} holds ${got.bytes} bytes, not ${bytes}`);
      total = got.bytes;
      checksum = got.checksum;
      if (got.data.byteLength === 0 && offset < total)
        throw new Error(`empty read at ${offset} of ${total}`);
      parts.push(Uint8Array.prototype.slice.call(got.data));
      offset += got.data.byteLength;
    }
    const data = Buffer.concat(parts);
    if (crc32c(data) !== checksum) {
      throw new BallastError(
        ErrorCode.ChecksumMismatch,
        `blob ${key} on ${sled} does not match its CRC32C`,
      );
    }
    return data;
  }

  /**
   * The ids of the chunks `sled` says its last scrub found damaged and still holds so
   * (`sled.chunk.damaged.v1`, page by page, at most damagedChunksListedMax). Rejects
   * when the sled does not answer.
   */
  async damagedChunks(sled: string): Promise<Set<string>> {
    const damaged = new Set<string>();
    let startAfter: string | undefined;
    while (damaged.size < damagedChunksListedMax) {
      const page = await this.bus.request(
        subjects.node.build("sled", sled),
        {
          type: "sled.chunk.damaged.v1",
          ...(startAfter === undefined ? {} : { startAfter }),
        },
        { deadlineMs: sledDeadlineMs },
      );
      for (const chunk of page.chunks) damaged.add(chunk.chunkId);
      if (!page.truncated || page.chunks.length === 0) break;
      startAfter = page.chunks[page.chunks.length - 1]!.chunkId;
    }
    return damaged;
  }

  /**
   * What `sled` says it holds of chunk `chunkId` (its size and CRC32C, from the sled's
   * map, no data read), or undefined when it holds none. Rejects when the sled does not
   * answer, or answers anything but the chunk or NotFound.
   */
  async statChunk(
    owner: ChunkOwner,
    chunkId: string,
    sled: string,
  ): Promise<{ bytes: number; checksum: number } | undefined> {
    try {
      const found = await this.bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.chunk.stat.v1", owner, chunkId },
        { deadlineMs: sledDeadlineMs },
      );
      return { bytes: found.bytes, checksum: found.checksum };
    } catch (error) {
      if (error instanceof BallastError && error.code === ErrorCode.NotFound) return undefined;
      throw error;
    }
  }

  /**
   * What `sled` says it holds under blob key `key` (its size and CRC32C, from the sled's
   * map, no data read), or undefined when it holds none. Rejects when the sled does not
   * answer: that says nothing of the copy.
   */
  async statBlob(
    key: string,
    sled: string,
  ): Promise<{ bytes: number; checksum: number } | undefined> {
    // Keys sort before every longer key they begin: the first listed under the key as a
    // prefix is the key itself, if the sled holds it.
    const listed = await this.bus.request(
      subjects.node.build("sled", sled),
      { type: "sled.blob.list.v1", prefix: key, limit: 1 },
      { deadlineMs: sledDeadlineMs },
    );
    const found = listed.blobs[0];
    return found?.key === key ? { bytes: found.bytes, checksum: found.checksum } : undefined;
  }

  /**
   * Stores blob `key` (of `bytes` bytes) on `to` again, from the first of `from` whose
   * copy is whole and sound (getBlob). Blobs are write-once: `to` must not hold the key
   * (a sled that lost its store). Resolves with the sled read from.
   */
  async copyBlob(key: string, bytes: number, from: readonly string[], to: string): Promise<string> {
    const { data, sled } = await this.getBlob(key, bytes, from);
    await this.uploadBlob(to, key, data, crc32c(data));
    return sled;
  }

  /**
   * The keys of the blobs `sled` holds under `prefix`, in key order, at most `limit`
   * (one listing page). Rejects when the sled does not answer.
   */
  async listBlobKeys(sled: string, prefix: string, limit: number): Promise<string[]> {
    const listed = await this.bus.request(
      subjects.node.build("sled", sled),
      { type: "sled.blob.list.v1", prefix, limit },
      { deadlineMs: sledDeadlineMs },
    );
    return listed.blobs.map((blob) => blob.key);
  }

  /**
   * Deletes blob `key` from `sleds`, best effort: never rejects. Resolves with the sleds
   * that did not confirm the delete (no answer, or an error other than not holding it).
   */
  async deleteBlob(key: string, sleds: readonly string[]): Promise<string[]> {
    const settled = await Promise.allSettled(
      sleds.map((sled) =>
        this.bus.request(subjects.node.build("sled", sled), { type: "sled.blob.delete.v1", key }),
      ),
    );
    return sleds.filter((_, index) => {
      const outcome = settled[index]!;
      if (outcome.status === "fulfilled") return false;
      const error = outcome.reason;
      return !(error instanceof BallastError && error.code === ErrorCode.NotFound);
    });
  }
}
