// The configures of one partition on a head node, run one at a time with at most one
// waiting: one place, used by the shell (headnode.ts `onConfigure`) and by the failover
// simulator's model of it (simulation/failover.ts), so the simulator checks the queue the
// shell runs.
//
// Model: configures of a partition run one at a time under the node's keyed lock (which
// its drops share), in arrival order. Behind the one running, at most one waits: the
// lock holds a single queued run for it, and that run takes whichever configure waits
// when it starts. A configure arriving while one waits keeps one of the two
// (`supersedes`) and answers the other at once with the error `superseded` makes
// (Unavailable in the shell).
//
// Why: the coordinator gives up on a configure after configureDeadlineMs and resends it
// about every round, and acts only on the answer to its newest; the configurer holds at
// most one in flight per replica, so the one superseded was already abandoned, and an
// Unavailable it does hear is logged and retried on a later round (configurer.ts). With
// every resend queued behind a configure that hung, each held one of the inbox's
// handler slots, and one stuck partition filled them all within minutes (54d41e9).
//
// Failure model: `run`'s outcome, success or error, is the answer to the configure it
// ran; a superseded configure never runs. What waits dies with the process (a new
// process has a new queue), as the inbox message it answers does.

import type { KeyedLock } from "@ballast/runtime";

/** What decides which of two waiting configures is kept. */
export interface ConfigureOrder {
  /** The volume's incarnation (its volume id). */
  incarnation: string;
  epoch: number;
}

/**
 * Whether a configure arriving replaces the one waiting for the same partition: the
 * newer by arrival, unless the waiting one is of a later epoch of the same incarnation
 * (a delayed older one must not push back the newer, which would then wait for a
 * resend). Another incarnation's always replaces it: a re-created volume's configure is
 * newer than anything of the deleted one.
 */
export function supersedes(arriving: ConfigureOrder, waiting: ConfigureOrder): boolean {
  return arriving.incarnation !== waiting.incarnation || arriving.epoch >= waiting.epoch;
}

export interface ConfigureQueueOptions<M, R> {
  /** The node's per-partition lock, shared with whatever else runs one at a time (drops). */
  lock: KeyedLock;
  orderOf: (message: M) => ConfigureOrder;
  /** Carries out one configure; called only under `lock` for its key. */
  run: (message: M) => Promise<R>;
  /** The answer to a configure superseded by `kept`, waiting for `key`. */
  superseded: (key: string, kept: M) => unknown;
}

interface Waiting<M, R> {
  message: M;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

export class ConfigureQueue<M, R> {
  /** Per key: the configure waiting for the lock (its run is queued), at most one. */
  private readonly waiting = new Map<string, Waiting<M, R>>();

  constructor(private readonly options: ConfigureQueueOptions<M, R>) {}

  /** Settles with the configure's answer: `run`'s outcome, or `superseded`'s error. */
  submit(key: string, message: M): Promise<R> {
    const { lock, orderOf, run, superseded } = this.options;
    return new Promise<R>((resolve, reject) => {
      const arriving: Waiting<M, R> = { message, resolve, reject };
      const waiting = this.waiting.get(key);
      if (waiting !== undefined) {
        // A run is queued already and takes whichever waits when it starts.
        const [kept, dropped] = supersedes(orderOf(message), orderOf(waiting.message))
          ? [arriving, waiting]
          : [waiting, arriving];
        this.waiting.set(key, kept);
        dropped.reject(superseded(key, kept.message));
        return;
      }
      this.waiting.set(key, arriving);
      void lock.run(key, async () => {
        const next = this.waiting.get(key)!;
        this.waiting.delete(key);
        try {
          next.resolve(await run(next.message));
        } catch (error) {
          next.reject(error);
        }
      });
    });
  }

  /** Configures waiting, over all keys (0 or 1 per key). */
  get size(): number {
    return this.waiting.size;
  }
}
