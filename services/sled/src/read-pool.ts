// Small reads of device files off the event loop, in trips. A read through libuv's
// threadpool (FileHandle.read) costs 12–15 µs of CPU for 4 KiB from the page cache, and
// more when the sled is quiet (each read wakes a pool thread and then the loop); readSync
// costs about 3 µs, but on the event loop a read that goes to the disk would stall every
// request of the sled. The pool keeps reads off the loop and pays the wake-ups once per
// trip instead of once per range: reads asked for while a worker is busy, or during one
// turn of the event loop, go together to a worker thread (read-worker.ts) that reads
// them with readSync into memory shared with the pool, from where the trip is copied
// into one buffer of its own, each range answered its part (docs/performance.md, "Sled
// reads in trips").
//
// Contract, as a BlockFile's read: a read returns exactly `length` bytes or fails with
// the error of its own range (a short read is an error); one range failing fails no
// other. The caller keeps the descriptor open until its reads have settled (the pool
// reads by number: a descriptor closed and reused under a read would be read instead).
// Every read settles: answered, failed, or failed because its worker stopped.
//
// At most `readWorkersMax` workers, started when needed: a new one starts when reads
// wait and every worker has a trip out, so that reads that wait on the disk do not hold
// up the others (as the threadpool's threads do not). Each worker has one trip out at
// most, of up to `readTripBytesMax` bytes and `readTripRangesMax` ranges, read into its
// own shared area of that size: the pool's memory is bounded by those constants. A worker
// with no trip out does not keep the process alive.

import { Worker } from "node:worker_threads";
import {
  readFailureMessageCharsMax,
  readTripBytesMax,
  readTripRangesMax,
  readWorkersMax,
} from "./constants.ts";
import { readControl, readWorkerSource } from "./read-worker.ts";

const { request, done, rangeCount, failureTextBytes, posted, stop } = readControl;
/** Bytes of failure text a range may need: its message, escaped, and its codes. */
const failureTextBytesPerRange = readFailureMessageCharsMax * 6 + 256;

/** Told when each of its reads has settled (a file that waits for its reads to close). */
export interface ReadOwner {
  readSettled(): void;
}

/**
 * A read asked for and not yet settled. A class, not an object with closures: a read
 * then costs no closures (which the bundler wraps to keep their names) beyond its
 * promise's own.
 */
class PendingRead {
  resolve!: (bytes: Buffer) => void;
  reject!: (error: Error) => void;
  readonly promise: Promise<Buffer>;

  constructor(
    readonly fd: number,
    readonly position: number,
    readonly length: number,
    readonly owner: ReadOwner | undefined,
  ) {
    this.promise = new Promise<Buffer>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

/** What of a failed range's error crosses from the worker. */
interface RangeFailure {
  index: number;
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
}

interface ReadWorker {
  worker: Worker;
  control: Int32Array;
  ranges: Float64Array;
  data: Uint8Array;
  text: Uint8Array;
  /** The trip out, or undefined while the worker waits for one. */
  trip: PendingRead[] | undefined;
  stopped: boolean;
}

export interface ReadPoolOptions {
  /** Worker threads at most (default `readWorkersMax`). */
  workersMax?: number;
}

/** Atomics.waitAsync (Node 16 and later), which TypeScript's ES2023 library lacks. */
const atomics = Atomics as typeof Atomics & {
  waitAsync(
    array: Int32Array,
    index: number,
    value: number,
  ): { async: false; value: string } | { async: true; value: Promise<string> };
};

const decoder = new TextDecoder();

export class ReadPool {
  /** Reads of more bytes than this are refused: a caller reads them another way. */
  static readonly readBytesMax = readTripBytesMax;

  private readonly workersMax: number;
  private readonly workers: ReadWorker[] = [];
  private pending: PendingRead[] = [];
  private flushScheduled = false;
  private closed = false;
  /** Reads asked for and not settled, and what waits for there to be none (close). */
  private readsInflight = 0;
  private whenIdle: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private tripCount = 0;

  constructor(options: ReadPoolOptions = {}) {
    this.workersMax = options.workersMax ?? readWorkersMax;
    if (!Number.isInteger(this.workersMax) || this.workersMax < 1) {
      throw new RangeError(
        `workersMax must be a whole number of 1 or more, not ${this.workersMax}`,
      );
    }
  }

  /**
   * Reads `length` bytes (at most `readBytesMax`) of descriptor `fd` at `position`; `owner`,
   * if given, is told once the read has settled (answered, failed or refused), before
   * its promise settles.
   */
  read(fd: number, position: number, length: number, owner?: ReadOwner): Promise<Buffer> {
    if (this.closed || !Number.isInteger(length) || length < 0 || length > ReadPool.readBytesMax) {
      owner?.readSettled();
      return Promise.reject(
        this.closed
          ? new Error("the read pool is closed")
          : new RangeError(
              `a pool read is a whole number of bytes up to ${ReadPool.readBytesMax}, not ${length}`,
            ),
      );
    }
    if (length === 0) {
      owner?.readSettled();
      return Promise.resolve(Buffer.alloc(0));
    }
    this.readsInflight++;
    const read = new PendingRead(fd, position, length, owner);
    this.pending.push(read);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
    return read.promise;
  }

  /** Trips sent so far (for tests and benchmarks). */
  get trips(): number {
    return this.tripCount;
  }

  /** Workers running now. */
  get workerCount(): number {
    return this.workers.length;
  }

  /**
   * Refuses new reads, waits for every read asked for to settle, then stops the workers.
   * Every call has the one close's promise: a second call while reads were in flight
   * replaced the first one's wake-up, so the first never resolved.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    if (this.readsInflight > 0) {
      await new Promise<void>((resolve) => {
        this.whenIdle = resolve;
      });
    }
    await Promise.all(
      this.workers.splice(0).map((entry) => {
        entry.stopped = true;
        Atomics.store(entry.control, request, stop);
        Atomics.notify(entry.control, request);
        return entry.worker.terminate();
      }),
    );
  }

  /** The reads of one turn go out (one closure for the pool's life, not one per turn). */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    this.dispatch();
  };

  private answerRead(read: PendingRead, bytes: Buffer): void {
    this.settled(read);
    read.resolve(bytes);
  }

  private failRead(read: PendingRead, error: Error): void {
    this.settled(read);
    read.reject(error);
  }

  private settled(read: PendingRead): void {
    read.owner?.readSettled();
    this.readsInflight--;
    if (this.readsInflight === 0 && this.whenIdle !== undefined) {
      const resolve = this.whenIdle;
      this.whenIdle = undefined;
      resolve();
    }
  }

  /** Sends waiting reads to idle workers, starting workers while there is room. */
  private dispatch(): void {
    while (this.pending.length > 0) {
      let entry = this.workers.find((candidate) => candidate.trip === undefined);
      if (entry === undefined) {
        if (this.workers.length >= this.workersMax) return; // a finishing trip sends the rest
        try {
          entry = this.startWorker();
        } catch (error) {
          const reads = this.pending;
          this.pending = [];
          for (const read of reads) this.failRead(read, error as Error);
          return;
        }
      }
      this.send(entry, this.takeTrip());
    }
  }

  /** The waiting reads, in order, that fit in one trip. */
  private takeTrip(): PendingRead[] {
    let bytes = 0;
    let count = 0;
    while (count < this.pending.length && count < readTripRangesMax) {
      const length = this.pending[count]!.length;
      if (bytes + length > readTripBytesMax) break;
      bytes += length;
      count++;
    }
    return this.pending.splice(0, count);
  }

  private send(entry: ReadWorker, trip: PendingRead[]): void {
    entry.trip = trip;
    this.tripCount++;
    for (let index = 0; index < trip.length; index++) {
      const read = trip[index]!;
      entry.ranges[3 * index] = read.fd;
      entry.ranges[3 * index + 1] = read.position;
      entry.ranges[3 * index + 2] = read.length;
    }
    entry.control[rangeCount] = trip.length;
    Atomics.store(entry.control, done, 0);
    Atomics.store(entry.control, request, posted);
    Atomics.notify(entry.control, request);
    // A pending waitAsync does not keep the loop alive; the worker does, while a trip is out.
    entry.worker.ref();
    const waiting = atomics.waitAsync(entry.control, done, 0);
    if (waiting.async) {
      void waiting.value.then(() => this.answer(entry, trip));
    } else {
      queueMicrotask(() => this.answer(entry, trip));
    }
  }

  /** Settles a finished trip's reads, from one copy of the trip's bytes. */
  private answer(entry: ReadWorker, trip: PendingRead[]): void {
    if (entry.trip !== trip) return; // the worker stopped and failed the trip already
    let failures: RangeFailure[] | undefined;
    const textBytes = entry.control[failureTextBytes]!;
    if (textBytes > 0) {
      try {
        failures = JSON.parse(decoder.decode(entry.text.slice(0, textBytes))) as RangeFailure[];
      } catch {
        failures = trip.map((_, index) => ({
          index,
          message: "the read worker's account of a failed read was unreadable",
        }));
      }
    }
    entry.trip = undefined;
    // One copy of the whole trip out of the shared area, each read answered its own part
    // of it: one buffer a trip rather than one a range (the ranges do not overlap, so no
    // answer sees another's bytes change; a trip is at most readTripBytesMax bytes).
    let tripBytes = 0;
    for (const read of trip) tripBytes += read.length;
    const copy = Buffer.allocUnsafe(tripBytes);
    copy.set(entry.data.subarray(0, tripBytes));
    let failure = 0;
    let at = 0;
    for (let index = 0; index < trip.length; index++) {
      const read = trip[index]!;
      if (failures !== undefined && failures[failure]?.index === index) {
        this.failRead(read, rangeError(failures[failure]!));
        failure++;
      } else {
        this.answerRead(read, copy.subarray(at, at + read.length));
      }
      at += read.length;
    }
    if (this.pending.length > 0) {
      this.send(entry, this.takeTrip());
    } else {
      entry.worker.unref();
    }
  }

  private startWorker(): ReadWorker {
    const control = new Int32Array(new SharedArrayBuffer(readControl.fields * 4));
    const ranges = new Float64Array(new SharedArrayBuffer(readTripRangesMax * 3 * 8));
    const data = new Uint8Array(new SharedArrayBuffer(readTripBytesMax));
    const text = new Uint8Array(
      new SharedArrayBuffer(readTripRangesMax * failureTextBytesPerRange),
    );
    const worker = new Worker(readWorkerSource, {
      eval: true,
      workerData: {
        control,
        ranges,
        data,
        text,
        failureMessageCharsMax: readFailureMessageCharsMax,
      },
    });
    const entry: ReadWorker = {
      worker,
      control,
      ranges,
      data,
      text,
      trip: undefined,
      stopped: false,
    };
    worker.unref();
    worker.on("error", (error) => this.stop(entry, error));
    worker.on("exit", (code) => this.stop(entry, new Error(`it exited with code ${code}`)));
    this.workers.push(entry);
    return entry;
  }

  /** A worker that stopped (an uncaught error, an exit): its trip fails, the pool goes on. */
  private stop(entry: ReadWorker, cause: Error): void {
    const index = this.workers.indexOf(entry);
    if (index >= 0) this.workers.splice(index, 1);
    const trip = entry.trip;
    entry.trip = undefined;
    const closing = entry.stopped;
    entry.stopped = true;
    if (trip !== undefined) {
      for (const read of trip) {
        this.failRead(
          read,
          closing
            ? new Error("the read pool is closed")
            : new Error(`the read worker stopped: ${cause.message}`, { cause }),
        );
      }
    }
    // Reads that waited for a worker go to another (or start one).
    if (!closing && this.pending.length > 0) this.dispatch();
  }
}

/** The error a failed range answers: the worker's, with its system error codes. */
function rangeError(failure: RangeFailure): Error {
  const error = new Error(failure.message) as Error & Partial<RangeFailure>;
  if (typeof failure.code === "string") error.code = failure.code;
  if (typeof failure.errno === "number") error.errno = failure.errno;
  if (typeof failure.syscall === "string") error.syscall = failure.syscall;
  return error;
}

let shared: ReadPool | undefined;

/** The process's pool, which every device file reads through unless given another. */
export function sharedReadPool(): ReadPool {
  shared ??= new ReadPool();
  return shared;
}
