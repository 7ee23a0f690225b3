// Reads whole messages from a byte stream that arrives in arbitrary pieces. Chunks from
// the socket are kept as they came, in a queue; `read(n)` hands out the next n bytes as
// a view of a chunk when they lie in one (most headers, and small writes), and copies
// them once into a fresh buffer when they span chunks. Nothing is copied byte by byte,
// and no chunk is ever modified, so a view handed out stays valid.
//
// Flow control: the socket is paused once `readAheadBytesMax` bytes wait unparsed and
// nobody asks for more, and resumed when a read needs bytes or the queue drains below
// the limit. A connection that stops asking (its in-flight limit reached) therefore
// stops reading, and TCP pushes back on the client.
//
// Failure model: once the stream ends, reads are served from what is buffered and fail
// with ConnectionClosedError when that is not enough. `cancel` fails the pending read
// and every later one at once, and forgets what is buffered.
//
// Stalls: a read of bytes the client owes (a write's data, which the server took room
// for before reading it) checks every `stallMs` that some bytes arrived since the last
// check, and reports a client that sent none once through `onStall`; the connection
// then ends it. A read of the next request is not watched: a client may idle between
// requests for as long as it likes.

import type { Readable } from "node:stream";
import { assert, ConnectionClosedError, NbdAssertionError } from "./errors.ts";
import type { StallWatch } from "./socket-writer.ts";

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (reason: Error) => void;
}

const empty = Buffer.alloc(0);

export class SocketReader {
  private readonly stream: Readable;
  private readonly readAheadBytesMax: number;
  private readonly chunks: Buffer[] = [];
  /** Bytes of `chunks[0]` already handed out. */
  private headOffset = 0;
  private bufferedBytes = 0;
  private waiter: Waiter | undefined;
  /** Why no more bytes will arrive, once that is so. */
  private endReason: Error | undefined;
  private flowing = true;
  private readonly stallWatch: StallWatch | undefined;
  /** Bytes received since the reader was made, for the stall watch. */
  private bytesReceived = 0;

  constructor(stream: Readable, readAheadBytesMax: number, stallWatch?: StallWatch) {
    this.stream = stream;
    this.readAheadBytesMax = readAheadBytesMax;
    this.stallWatch = stallWatch;
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("end", () => this.finish(new ConnectionClosedError("the client ended the stream")));
    stream.on("close", () => this.finish(new ConnectionClosedError("the connection closed")));
  }

  /** Bytes received and not yet read. */
  get buffered(): number {
    return this.bufferedBytes;
  }

  /**
   * The next `bytes` bytes, once they have all arrived. `owed`: the client has begun
   * a message these bytes end, and one that sends none of them for the stall watch's
   * time is reported.
   */
  async read(bytes: number, owed = false): Promise<Buffer> {
    if (this.bufferedBytes >= bytes) return this.take(bytes);
    const watch = owed ? this.stallWatch : undefined;
    let timer: NodeJS.Timeout | undefined;
    if (watch !== undefined) {
      let seen = this.bytesReceived;
      const check = () => {
        if (this.bytesReceived > seen) {
          seen = this.bytesReceived;
          timer = setTimeout(check, watch.stallMs).unref();
        } else if (this.endReason === undefined) {
          watch.onStall();
        }
      };
      timer = setTimeout(check, watch.stallMs).unref();
    }
    try {
      while (this.bufferedBytes < bytes) await this.waitFor(bytes);
    } finally {
      clearTimeout(timer);
    }
    return this.take(bytes);
  }

  /**
   * The next `bytes` bytes if they have all arrived, else undefined and nothing read:
   * `read` without a promise, for a loop that would otherwise await bytes already here
   * (the NBD request loop, for every header and write payload a socket read brought in
   * together). Not while a `read` waits: one read at a time.
   */
  readNow(bytes: number): Buffer | undefined {
    if (this.waiter !== undefined) {
      throw new NbdAssertionError("a SocketReader serves one read at a time");
    }
    return this.bufferedBytes >= bytes ? this.take(bytes) : undefined;
  }

  /** Skips the next `bytes` bytes as they arrive, without holding them. */
  async discard(bytes: number): Promise<void> {
    let remaining = bytes;
    while (remaining > 0) {
      if (this.bufferedBytes === 0) await this.waitFor(1);
      const step = Math.min(remaining, this.bufferedBytes);
      this.consume(step);
      remaining -= step;
    }
    this.updateFlow();
  }

  /** Stops reading for good: the pending read and every later one fail with `reason`. */
  cancel(reason: Error): void {
    this.chunks.length = 0;
    this.headOffset = 0;
    this.bufferedBytes = 0;
    this.finish(reason);
  }

  private onData(chunk: Buffer): void {
    if (this.endReason !== undefined) return;
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.byteLength;
    this.bytesReceived += chunk.byteLength;
    const waiter = this.waiter;
    if (waiter !== undefined && this.bufferedBytes >= waiter.bytes) {
      this.waiter = undefined;
      waiter.resolve();
    }
    this.updateFlow();
  }

  private finish(reason: Error): void {
    if (this.endReason !== undefined) return;
    this.endReason = reason;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(reason);
    this.updateFlow();
  }

  private waitFor(bytes: number): Promise<void> {
    assert(this.waiter === undefined, "a SocketReader serves one read at a time");
    if (this.endReason !== undefined) return Promise.reject(this.endReason);
    const waiting = new Promise<void>((resolve, reject) => {
      this.waiter = { bytes, resolve, reject };
    });
    this.updateFlow();
    return waiting;
  }

  private take(bytes: number): Buffer {
    // The message only when it fails: this runs twice per request.
    if (bytes > this.bufferedBytes) {
      throw new NbdAssertionError(`take ${bytes} of ${this.bufferedBytes} buffered bytes`);
    }
    if (bytes === 0) return empty;
    const first = this.chunks[0]!;
    let result: Buffer;
    if (first.byteLength - this.headOffset >= bytes) {
      result = first.subarray(this.headOffset, this.headOffset + bytes);
      this.consume(bytes);
    } else {
      result = Buffer.allocUnsafe(bytes);
      let filled = 0;
      while (filled < bytes) {
        const chunk = this.chunks[0]!;
        const step = Math.min(chunk.byteLength - this.headOffset, bytes - filled);
        chunk.copy(result, filled, this.headOffset, this.headOffset + step);
        this.consume(step);
        filled += step;
      }
    }
    this.updateFlow();
    return result;
  }

  /** Drops `bytes` from the front of the queue. */
  private consume(bytes: number): void {
    let remaining = bytes;
    while (remaining > 0) {
      const chunk = this.chunks[0]!;
      const step = Math.min(chunk.byteLength - this.headOffset, remaining);
      this.headOffset += step;
      remaining -= step;
      if (this.headOffset === chunk.byteLength) {
        this.chunks.shift();
        this.headOffset = 0;
      }
    }
    this.bufferedBytes -= bytes;
  }

  /** Flowing while a read waits for bytes or the queue is under the read-ahead limit. */
  private updateFlow(): void {
    const wantedBytes = Math.max(this.readAheadBytesMax, this.waiter?.bytes ?? 0);
    const flowing = this.endReason === undefined && this.bufferedBytes < wantedBytes;
    if (flowing === this.flowing) return;
    this.flowing = flowing;
    if (flowing) this.stream.resume();
    else this.stream.pause();
  }
}
