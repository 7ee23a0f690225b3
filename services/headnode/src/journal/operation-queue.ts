// One operation at a time. The journal's file operations (a group commit's writes and
// sync, a truncation, a release, closing) must not interleave: a truncation that ran
// during a write could cut the bytes being written, and a release could delete the file
// a write was about to use. Each operation starts once the previous one has settled,
// whether it succeeded or failed, in the order they were queued.

export class OperationQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<Result>(operation: () => Promise<Result>): Promise<Result> {
    const result = this.#tail.then(operation);
    // The next operation waits for this one to settle, never for its outcome; the caller
    // of `run` receives the outcome.
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
