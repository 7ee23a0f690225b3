// Writes replies to a socket whole and in order of completion, with backpressure.
//
// A reply is its header and, for a read, its data: the two are written with the socket
// corked, so that they leave in one writev and no other reply can come between them.
// The socket also stays corked until the end of the turn in which its first reply of
// the turn was written (`process.nextTick`, which runs once the promise callbacks of
// the turn are done), so that the replies one batched answer completes leave in one
// writev: at 4 KiB random reads, QD32, a writev per reply was 18 % of the gateway's
// busy time. No reply waits for anything but the end of the turn it was written in.
// Replies to different requests may go out in any order (the spec allows it; each
// carries the client's handle). `send` resolves at once while the socket takes more,
// and otherwise when it has drained, so a caller that awaits it (the transmission
// loop holds a request's in-flight slot until then) never piles up more than the
// socket's high-water mark plus one reply per request in flight.
//
// Failure model: on a socket that is closed or closing the bytes are dropped and `send`
// resolves; the client is gone and nobody can read them. Socket errors are the
// connection's to log; they end in a close, which also releases any waiter here.
//
// Stalls: while a send waits for the socket to drain, the writer checks every
// `stallMs` that the client took some bytes since the last check (the socket's
// buffered length fell below what was written). A client that took none is reported
// once through `onStall`; the connection then ends it. A waiting send is what holds a
// request's slot and payload bytes, so without this a client that never reads would
// hold them, and its share of the server's budget, for as long as it stays connected.

import type { Writable } from "node:stream";

const settled: Promise<void> = Promise.resolve();

/** What the writer (and the reader, socket-reader.ts) do about a client that stalls. */
export interface StallWatch {
  /** How long the client may move no byte of a transfer it is part of. */
  stallMs: number;
  /** Called when it moved none for `stallMs`: once by the writer, once by a read. */
  onStall(): void;
}

export class SocketWriter {
  private readonly stream: Writable;
  private readonly stallWatch: StallWatch | undefined;
  private drained: Promise<void> | undefined;
  private releaseDrained: (() => void) | undefined;
  /** Bytes handed to the socket since it was made. */
  private bytesQueued = 0;
  /** Bytes the socket had passed on to the client (queued less buffered) at the last check. */
  private bytesTakenSeen = 0;
  private stallTimer: NodeJS.Timeout | undefined;
  private stalled = false;
  /** True while the socket is corked until the end of this turn. */
  private corkedForTurn = false;
  private readonly uncorkTurn = () => {
    this.corkedForTurn = false;
    this.stream.uncork();
  };

  constructor(stream: Writable, stallWatch?: StallWatch) {
    this.stream = stream;
    this.stallWatch = stallWatch;
    stream.on("drain", () => this.release());
    stream.on("close", () => this.release());
  }

  /** Writes `head`, then `body` if given, with nothing between them. Never rejects. */
  send(head: Uint8Array, body?: Uint8Array): Promise<void> {
    const stream = this.stream;
    if (!stream.writable) return settled;
    if (!this.corkedForTurn) {
      this.corkedForTurn = true;
      stream.cork();
      process.nextTick(this.uncorkTurn);
    }
    let accepted: boolean;
    if (body === undefined || body.byteLength === 0) {
      accepted = stream.write(head);
      this.bytesQueued += head.byteLength;
    } else {
      stream.cork();
      stream.write(head);
      accepted = stream.write(body);
      stream.uncork();
      this.bytesQueued += head.byteLength + body.byteLength;
    }
    if (accepted) return settled;
    if (this.drained === undefined) {
      this.drained = new Promise<void>((resolve) => {
        this.releaseDrained = resolve;
      });
      this.watchForStall();
    }
    return this.drained;
  }

  private release(): void {
    const release = this.releaseDrained;
    this.drained = undefined;
    this.releaseDrained = undefined;
    if (this.stallTimer !== undefined) clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    release?.();
  }

  /** Starts a check `stallMs` from now, if there is a watch and none is due. */
  private watchForStall(): void {
    const watch = this.stallWatch;
    if (watch === undefined || this.stallTimer !== undefined || this.stalled) return;
    this.bytesTakenSeen = this.bytesTaken();
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (this.drained === undefined || !this.stream.writable) return;
      if (this.bytesTaken() > this.bytesTakenSeen) {
        this.watchForStall();
        return;
      }
      this.stalled = true;
      watch.onStall();
    }, watch.stallMs);
    this.stallTimer.unref();
  }

  /** Bytes the socket has passed on towards the client: queued, less still buffered. */
  private bytesTaken(): number {
    return this.bytesQueued - this.stream.writableLength;
  }
}
