// The order in which a head node retires a replica it hosts (a configure that removes it
// or reopens it, a dropped volume, a journal failure's reopen): one place, used by the
// shell (headnode.ts `close`) and by the failover simulator's model of it with its own
// ports, so the simulator checks the order the shell runs.
//
// Model: a replica is served by subscriptions whose handlers may be in flight, each
// waiting on a request the replica holds (a primary's write waiting for its
// acknowledgements, a snapshot's note). Stopping a subscription takes no new message at
// once, and its stop settles only when every handler already called has finished.
// Closing the replica answers every request it holds, and refuses any that still reach it.
//
// Failure model: once a replica is off the tick schedule, nothing but its close answers
// what it holds. A write's acknowledgements never come from the members of a newer
// epoch, and its deadline passes only on ticks. So the handlers are awaited only after
// the close: waited for first, they never finish, the retire hangs, and with it every
// later configure of the partition on this node, which the shell runs one at a time
// (CI's chaos run, stop-primary: the woken ex-primary, re-added as a learner, was never
// rebuilt, and the partition never got back to full strength).

/** What retiring one replica does, as its host provides it. */
export interface RetirePorts {
  /**
   * Stops taking new requests for the replica (its subscriptions, and whatever else
   * hands it work) at once; the promise settles once every handler already running has
   * finished.
   */
  stopIntake(): PromiseLike<unknown>;
  /** Closes the replica: every request it holds is answered, later ones refused. */
  closeReplica(): Promise<void>;
}

/**
 * Retires a replica: intake stopped, the replica closed (its held requests answered),
 * then its handlers awaited. See the module header for why this order, and only this.
 * Throws the close's failure, else the stop's. The stop is observed from the start: one
 * that failed while the close was awaited, or after a close that failed, was a rejection
 * nobody handled, which ends the process.
 */
export async function retireReplica(ports: RetirePorts): Promise<void> {
  const handlersDone = Promise.resolve(ports.stopIntake());
  // Seen here; still thrown below once the close has succeeded.
  handlersDone.then(undefined, () => undefined);
  await ports.closeReplica();
  await handlersDone;
}
