// Group commit: many writers, few fsyncs. A writer that needs its writes durable calls
// `sync()` after its writes have completed; the promise resolves once an fdatasync that
// began after that call has finished. While one fdatasync runs, every caller that
// arrives joins the single next one, so N concurrent writers cost about two fdatasyncs,
// not N, and a caller is never answered by an fdatasync that started before its write.
//
// Failure model: when an fdatasync fails, the kernel may already have dropped the dirty
// pages it could not write (the "fsyncgate" lesson), so a retry proves nothing. Every
// caller of that fdatasync gets the error, and so does every caller after it, including
// those that had already joined the next one: their writes were in the page cache when
// the failed fdatasync ran, so a later one that succeeds would acknowledge pages the
// kernel may have dropped. The failure is latched: no further fdatasync is issued, and
// the owner (the device) stops taking writes until it is reopened.

export class GroupCommit {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private syncCount = 0;
  private failure: { error: unknown } | undefined;

  constructor(private readonly syncOnce: () => Promise<void>) {}

  /** fdatasync calls made so far. */
  get syncs(): number {
    return this.syncCount;
  }

  /** Resolves once every write completed before this call is durable. */
  sync(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure.error);
    if (this.running === undefined) return this.start();
    // The running sync may have begun before this caller's write: wait for the next one,
    // which all callers arriving meanwhile share.
    this.next ??= this.running.then(
      () => this.startNext(),
      () => this.startNext(),
    );
    return this.next;
  }

  private startNext(): Promise<void> {
    this.next = undefined;
    if (this.failure !== undefined) return Promise.reject(this.failure.error);
    return this.start();
  }

  private start(): Promise<void> {
    this.syncCount++;
    const running: Promise<void> = this.syncOnce()
      .catch((error: unknown) => {
        this.failure ??= { error };
        throw error;
      })
      .finally(() => {
        if (this.running === running) this.running = undefined;
      });
    this.running = running;
    return running;
  }
}
