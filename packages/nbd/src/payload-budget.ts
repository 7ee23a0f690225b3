// The server's budget of payload bytes held by requests in flight over all its
// connections (write data received, read data not yet sent). Each connection has its
// own bound (InflightLimiter); this one bounds their sum, so that many connections
// cannot together hold more memory than the gateway can spare (1,024 connections of
// 128 MiB each would be 128 GiB). A connection's read loop takes its request's bytes
// here before it reads the data or starts the read, and they are given back when the
// request is answered. Waiters are served first come, first served, so a large request
// is not passed over for ever by small ones.

import { assert, NbdAssertionError } from "./errors.ts";

export class PayloadBudget {
  private readonly bytesMax: number;
  private bytesHeld = 0;
  private readonly waiters: { bytes: number; resolve: () => void }[] = [];

  constructor(bytesMax: number) {
    this.bytesMax = bytesMax;
  }

  /** Bytes taken and not yet given back. */
  get held(): number {
    return this.bytesHeld;
  }

  /** Resolves once `bytes` are taken; give them back with `give`. */
  take(bytes: number): Promise<void> {
    if (this.tryTake(bytes)) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push({ bytes, resolve });
    });
  }

  /**
   * Takes `bytes` now if they are free and nobody waits before this caller (true), else
   * takes nothing (false: wait with `take`). `take` without a promise, for the common
   * case of a budget with room.
   */
  tryTake(bytes: number): boolean {
    // The message only when it fails: this runs once per request with a payload.
    if (bytes > this.bytesMax) {
      throw new NbdAssertionError(
        `a request of ${bytes} payload bytes can never fit in ${this.bytesMax}`,
      );
    }
    if (this.waiters.length === 0 && this.bytesHeld + bytes <= this.bytesMax) {
      this.bytesHeld += bytes;
      return true;
    }
    return false;
  }

  /** Gives back bytes taken, and hands them to waiters in the order they came. */
  give(bytes: number): void {
    assert(this.bytesHeld >= bytes, "give back more payload bytes than were taken");
    this.bytesHeld -= bytes;
    while (this.waiters.length > 0) {
      const next = this.waiters[0]!;
      if (this.bytesHeld + next.bytes > this.bytesMax) break;
      this.waiters.shift();
      this.bytesHeld += next.bytes;
      next.resolve();
    }
  }
}
