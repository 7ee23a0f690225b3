// The drops of one incarnation on a head node (`headnode.drop.v1`), run once however
// often they are sent: used by the shell (headnode.ts `onDrop`).
//
// Model: a drop closes and removes every hosted replica of an incarnation, each under
// its partition's lock, behind whatever configure runs there (configure-queue.ts). A
// drop of an incarnation arriving while one for it runs does not run again: it shares
// the running one's answer. At most `joinedMax` share it; one arriving past that is
// answered at once with the error `busy` makes (Unavailable in the shell).
//
// Why: the coordinator sends a drop at the delete and again on every purge pass (about
// every 2 s) until the node acknowledges one, and gives up on each after
// dropDeadlineMs. Behind a configure that hangs (a slow journal open, a retire waiting
// on a hung disk), every resend queued on the lock and held one of the inbox's handler
// slots and its pending reply; the inbox has handlersInflightMax of them, so within
// minutes every configure, status and node info of the node waited behind one stuck
// partition, as resent configures once did (54d41e9).
//
// Why sharing is right: the node remembers the incarnation as dropped when a drop
// arrives, before it waits, and from then on a configure of it is refused (and one
// that was opening it closes it again). So a replica of it hosted when a duplicate
// arrives was hosted when the running drop began, and the running drop's answer is
// the duplicate's too. The coordinator acts on any success from the node (it is then
// no longer owed the drop) and retries on any error on its next purge pass: a busy
// answer converges once the running drop finishes, since the next drop finds nothing
// hosted and answers at once.
//
// Failure model: the run's outcome, success or error, is every sharer's answer; a run
// that fails is forgotten, so the next drop runs afresh. What runs dies with the
// process, as the inbox messages it answers do.

export interface DropRunsOptions {
  /** Duplicates that may share one running drop's answer. */
  joinedMax: number;
  /** The answer to a duplicate arriving while `joinedMax` already share the run for `key`. */
  busy: (key: string) => unknown;
}

interface Running<R> {
  outcome: Promise<R>;
  /** Duplicates sharing `outcome`, not counting the run's own request. */
  joined: number;
}

export class DropRuns<R> {
  /** Per incarnation: the drop running for it, at most one. */
  private readonly running = new Map<string, Running<R>>();

  constructor(private readonly options: DropRunsOptions) {}

  /** Settles with the answer of the drop running for `key`: this `run`'s, or an earlier one's. */
  submit(key: string, run: () => Promise<R>): Promise<R> {
    const current = this.running.get(key);
    if (current !== undefined) {
      if (current.joined >= this.options.joinedMax) {
        return Promise.reject(this.options.busy(key));
      }
      current.joined++;
      return current.outcome;
    }
    const outcome = (async () => run())();
    const entry: Running<R> = { outcome, joined: 0 };
    this.running.set(key, entry);
    const forget = () => {
      if (this.running.get(key) === entry) this.running.delete(key);
    };
    void outcome.then(forget, forget);
    return outcome;
  }

  /** Drops running, over all keys. */
  get size(): number {
    return this.running.size;
  }
}
