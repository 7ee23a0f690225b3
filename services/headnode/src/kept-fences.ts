// The ordering fences (replica/ordering-fence.ts) of replicas closed to be reopened in
// place, per partition, within one head node process. A primary whose journal failed,
// with no secondary to take over, is configured again in the same epoch (coordinator
// decisions.ts, `outOfStep`), and the head node closes it and opens a new core from what
// is stored (configure-decision.ts). That core's table would start empty in an epoch in
// which the old one admitted attempts, while a stale copy of an earlier attempt may still
// sit unread in a link socket of this process: admitted, it would land above a later
// acknowledged write of its client. So the old core's table is kept here when it is
// closed, and handed to the next core opened for the partition, which takes it back only
// if configured in the same epoch (Replica `carryFence`).
//
// Bound: at most one entry per partition (a later close replaces it), and an entry goes
// when a core of the partition is opened (whichever the incarnation: a newer one needs
// no fence of an older one), when a configure of the same incarnation in a newer epoch
// comes (a stale attempt of the old epoch is refused by its epoch, and the fence would
// be dropped by the core anyway), when the replica's files are removed (another
// incarnation, a learner rebuilt) and when its incarnation is dropped. What stays is one
// entry for a partition closed after a failure and never opened or configured again in
// this process, of at most `fenceSessionsMax` sessions: as long as the process lives, as
// the failed replica's files on disk do.
//
// Failure model: none of its own; plain data in one process, lost with it (a stale
// frame does not survive the process either).

import type { KeptFence } from "./replica/ordering-fence.ts";

export class KeptFences {
  /** By partition key: the incarnation it was built by, and its table. */
  private readonly byPartition = new Map<string, { volumeId: string; fence: KeptFence }>();

  /** Keeps the table of a core of `volumeId` closed at `key` to be reopened there. */
  keep(key: string, volumeId: string, fence: KeptFence | undefined): void {
    if (fence === undefined) this.byPartition.delete(key);
    else this.byPartition.set(key, { volumeId, fence });
  }

  /** Takes the entry at `key` away, and gives its table if it is of `volumeId`. */
  take(key: string, volumeId: string): KeptFence | undefined {
    const kept = this.byPartition.get(key);
    this.byPartition.delete(key);
    return kept?.volumeId === volumeId ? kept.fence : undefined;
  }

  /** A configure of `volumeId` at `epoch` arrived: a table of an older epoch of it goes. */
  configured(key: string, volumeId: string, epoch: number): void {
    const kept = this.byPartition.get(key);
    if (kept?.volumeId === volumeId && epoch > kept.fence.epoch) this.byPartition.delete(key);
  }

  /** The partition's files were removed. */
  forget(key: string): void {
    this.byPartition.delete(key);
  }

  /** The incarnation was dropped: every entry it built goes. */
  forgetIncarnation(volumeId: string): void {
    for (const [key, kept] of this.byPartition) {
      if (kept.volumeId === volumeId) this.byPartition.delete(key);
    }
  }

  /** Entries held now. */
  get size(): number {
    return this.byPartition.size;
  }
}
