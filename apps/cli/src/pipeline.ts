// Operations in flight for `ballast write` and `import`: at most `inflightMax` at once,
// the first failure thrown by the next `add` or by `drain`.

/**
 * Every operation's failure is observed the moment it happens, so none can become an
 * unhandled rejection, which ends the process with a stack trace instead of the error.
 * `add` takes a function that starts the operation, not the operation, and starts it
 * only if nothing has failed: an operation started and then refused by an earlier
 * failure had no handler, and a write past the end of the volume that failed after
 * that refusal ended the CLI with a stack (found by CI, `cli-io.test.ts`).
 */
export class Pipeline {
  private readonly inflight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly inflightMax: number) {}

  /** Starts `start()` unless an earlier operation failed; waits while the pipeline is full. */
  async add(start: () => Promise<unknown>): Promise<void> {
    this.throwIfFailed();
    let operation: Promise<unknown>;
    try {
      operation = start();
    } catch (error) {
      operation = Promise.reject(error);
    }
    const tracked: Promise<void> = operation
      .then(
        () => undefined,
        (error: unknown) => {
          this.failure ??= { error };
        },
      )
      .finally(() => this.inflight.delete(tracked));
    this.inflight.add(tracked);
    if (this.inflight.size >= this.inflightMax) await Promise.race(this.inflight);
    this.throwIfFailed();
  }

  /** Waits for every operation; throws the first failure. */
  async drain(): Promise<void> {
    await this.settled();
    this.throwIfFailed();
  }

  /** Waits for every operation to end; never throws. */
  async settled(): Promise<void> {
    await Promise.all(this.inflight);
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.error;
  }
}
