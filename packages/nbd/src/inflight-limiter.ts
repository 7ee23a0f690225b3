// Counts one connection's requests in flight (read from the socket, not yet answered)
// and the payload bytes they hold, and makes the connection's read loop wait while
// either is at its limit. Only the read loop waits, so there is one waiter at most;
// requests complete in any order and each completion may wake it.

import { assert, NbdAssertionError } from "./errors.ts";

export class InflightLimiter {
  private readonly requestsMax: number;
  private readonly payloadBytesMax: number;
  private requests = 0;
  private payloadBytes = 0;
  private waiter: { payloadBytes: number; resolve: () => void } | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(requestsMax: number, payloadBytesMax: number) {
    this.requestsMax = requestsMax;
    this.payloadBytesMax = payloadBytesMax;
  }

  get requestCount(): number {
    return this.requests;
  }

  /**
   * Resolves once one more request holding `payloadBytes` fits. Waiting with 0 before
   * reading a request header, and again with the request's size once it is known,
   * holds the header and the data back until there is room for both.
   */
  whenRoomFor(payloadBytes: number): Promise<void> {
    if (this.hasRoomFor(payloadBytes)) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiter = { payloadBytes, resolve };
    });
  }

  /**
   * Whether one more request holding `payloadBytes` fits now: `whenRoomFor` without a
   * promise, for the read loop's common case (room to spare). False means wait with
   * `whenRoomFor`.
   */
  hasRoomFor(payloadBytes: number): boolean {
    assert(this.waiter === undefined, "one caller waits for room at a time");
    // The message only when it fails: this runs twice per request.
    if (payloadBytes > this.payloadBytesMax) {
      throw new NbdAssertionError(
        `a request of ${payloadBytes} payload bytes can never fit in ${this.payloadBytesMax}`,
      );
    }
    return this.fits(payloadBytes);
  }

  /** Counts a request in; room for it must have been waited for. */
  begin(payloadBytes: number): void {
    assert(this.fits(payloadBytes), "begin a request without room for it");
    this.requests += 1;
    this.payloadBytes += payloadBytes;
  }

  /** Counts a request out, with the payload bytes it began with. */
  end(payloadBytes: number): void {
    assert(this.requests > 0 && this.payloadBytes >= payloadBytes, "end a request never begun");
    this.requests -= 1;
    this.payloadBytes -= payloadBytes;
    const waiter = this.waiter;
    if (waiter !== undefined && this.fits(waiter.payloadBytes)) {
      this.waiter = undefined;
      waiter.resolve();
    }
    if (this.requests === 0) {
      const idleWaiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of idleWaiters) resolve();
    }
  }

  /** Resolves once no request is in flight. */
  whenIdle(): Promise<void> {
    if (this.requests === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private fits(payloadBytes: number): boolean {
    return (
      this.requests < this.requestsMax && this.payloadBytes + payloadBytes <= this.payloadBytesMax
    );
  }
}
