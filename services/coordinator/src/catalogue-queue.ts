// The leader's catalogue changes (creates, deletes, resizes, clones, snapshots,
// rollbacks) run one at a time, in the order they arrived. Each is queued under the
// tenure that accepted it and runs only if that tenure still leads when its turn comes:
// work queued before a lost leadership is refused Unavailable at once (the client
// retries on the new leader), rather than run by a coordinator that no longer leads
// while the next lead waits for it (stopping the control subscriptions waits for every
// handler in flight, and up to a subscription's limit of them may be queued here).

import { BallastError, ErrorCode } from "@ballast/protocol";

export class CatalogueQueue<Tenure> {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly current: () => Tenure | undefined,
    private readonly nodeId: string,
  ) {}

  /** Runs `work` after every change queued before it, if `tenure` still leads then. */
  run<T>(tenure: Tenure, work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(() => {
      if (this.current() !== tenure) {
        throw new BallastError(
          ErrorCode.Unavailable,
          `${this.nodeId} lost the leadership before this request's turn; retry`,
        );
      }
      return work();
    });
    this.tail = result.catch(() => undefined);
    return result;
  }
}
