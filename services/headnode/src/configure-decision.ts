// What a head node does with a `headnode.configure.v1` of one partition: pure, a function
// of the message (incarnation, epoch, this node's part in the replica set) and of what
// the node hosts of that partition (incarnation, epoch, failed or not, whether it was
// rebuilt as the learner it is still asked to be); no clock, no I/O. The head node's shell
// (headnode.ts) and the failover simulator (simulation/failover.ts) both decide here and
// carry out the answer each on its own disks, so that the model cannot drift from the
// shell.
//
// The model, in the order it is decided:
// - A configure for another disk is refused: the coordinator recorded this node's replica
//   on a data directory with another id (`disk`), so that replica was lost with its disk
//   (the node came back on an empty one under its old id). Opened from what this disk
//   stores (nothing), a voter would hand out op numbers again and serve a volume missing
//   acknowledged writes; the coordinator takes the node out of the replica set instead,
//   and may add it back as a learner on its new disk.
// - An incarnation deleted here is refused: a late configure recreates nothing.
// - A hosted replica of another incarnation: a configure of an older (or the same
//   numbered) one is a delayed one from a deleted volume, refused and remembered as
//   deleted; it must never replace the current replica, failed or not. A newer one
//   replaces it: the old replica's files are removed and its incarnation remembered as
//   deleted (ids are never reused).
// - A hosted replica refuses an epoch older than its own, failed or not. With nothing of
//   the incarnation hosted with a configuration (a restart, a replica that failed before
//   it was configured, or one open but not configured since), an epoch older than the
//   newest its disk shows (`storedEpoch`: the epoch
//   it was last configured a voter in, or of its journal's newest note) is refused too,
//   and nothing of the incarnation's is removed or opened: a leader frozen past its
//   tenure may send a learner's configure after a newer one made this node a voter, which
//   then answers for every write acknowledged before its epoch (the coordinator's
//   safe-promotion rule) and for those it acknowledged since; rebuilt afresh it would
//   lose them (review-retries.md, item 3). The journal alone would not do: a learner
//   promoted while no write came holds no note of its voter epoch. Every path below
//   that removes or rebuilds the directory of this incarnation comes after this check:
//   the rebuild of a learner with nothing hosted, and the retirement of a hosted stale
//   one, whose configured epoch is never below what its disk shows.
// - A failed replica (its journal failed) is closed and reopened as a restart would, so
//   that recovery says what is durable, in a session of its own: what it sent before
//   the failure may not be in its journal, so a later op could take the number of one a
//   secondary holds, and only the session tells them apart (log matching compares epoch
//   and session); chunk ids and checkpoint keys are named by session too. Whatever
//   replaces a failed replica at the partition (reopened, rebuilt, or another
//   incarnation) opens in a new session. Reopened in the epoch it failed in, it keeps
//   its ordering fence: the shells hand the closed core's table to the new one
//   (kept-fences.ts), since a stale attempt may still be unread in the process. (The
//   shell's open refuses a journal that failed a write or sync earlier in this boot of
//   the machine: the decision stays "open", and the configure fails as for a damaged
//   checkpoint; partition-host.ts, `openJournal`.)
// - Named a learner while it holds the partition in any other state (it was a voter, or
//   a learner of an earlier period), in a newer epoch: its state is discarded and it is
//   rebuilt afresh. What it holds may lie below the primary's release point or off its
//   log; a learner counts for nothing, so discarding it loses no acknowledged write.
// - With nothing hosted (any more): a node outside the replica set is refused (there is
//   nothing to tell it); a learner is rebuilt afresh (from the message's checkpoint, or
//   from op 1), its epoch kept in the partition's directory first by the shells (so a
//   failed fetch still leaves `storedEpoch` to refuse older configures by); a voter
//   opens from what is stored. A voter whose disk stores nothing of
//   the incarnation (no journal, no checkpoint) is opened empty only where the configure
//   names this disk (the coordinator recorded the member on it, which it does when it
//   places a new incarnation there or adds a learner there) or comes from a sender that
//   records no disks (a static assignment, an older coordinator). From a sender that
//   records them (`disksRecorded`) but named none (a record from before disk ids), an
//   empty voter is a node back on an empty disk under its old id, and is refused
//   (`no-replica`): opened, it would hand out op numbers again and serve a volume
//   missing acknowledged writes (closing note 7, the limit of disk ids). The
//   coordinator counts the member out of the partition, as for a lost disk
//   (decisions.ts, "Lost disks"). Where the sender says whether this is a fresh incarnation's
//   first placement (the simulator's `create`; the protocol does not carry it), a voter
//   with nothing stored is refused otherwise: it would be a replica missing
//   acknowledged writes.
// - A hosted replica named out of the set (`part: "none"`, in its epoch or a later one,
//   or not configured since it opened) is closed with its files kept, and the configure
//   refused `not-a-member` (NotFound: the coordinator forgets a former member that holds
//   nothing, configurer.ts): `close-out`. Kept hosted, its idle
//   core held the out epoch in memory only, and the replica (unreleased notes, journal,
//   subscription, gauges) for the process's life (review-leaks.md, H1). The shells first
//   make a healthy core idle in that epoch (a failed one takes no configure), keep the
//   epoch on its disk (the voter-epoch file, which `storedEpoch` reads) and only then
//   close it: a delayed configure of an older epoch naming it a voter (a leader frozen
//   past its tenure) is still refused `older-epoch`, from its disk, as it was by the idle
//   core, and after a restart too. A failed replica needs it as much: the failed
//   marker's refusal to reopen its journal (journal/failed-marker.ts) lasts only until
//   the machine reboots, and a core that threw leaves none. Should the disk refuse the
//   out epoch (a failing one may), the replica stays hosted, the epoch held in memory
//   (partition-host.ts `fencedEpoch`, which the shell passes as the hosted epoch), and
//   the configure fails, to be sent again. With nothing of the incarnation open but its
//   replica stored (`stored`: the node restarted since it was configured, so the out
//   configure is the first it hears), the refusal says to keep the out epoch in the
//   replica's directory all the same (`keepOutEpoch`): else a delayed configure of the
//   epoch it was last a voter in opened it. A later configure opens it again from its
//   files (a voter) or rebuilds it (a learner); a drop removes them.
// - Otherwise the configuration is applied to the hosted core (the core ignores an epoch
//   it already holds).
//
// Failure model: none of its own. The shells carry the answer out in order (retire, then
// open or refuse) and handle what the decision cannot see: a drop that lands while a
// replica opens, a checkpoint fetch that fails.

import { incarnationOf } from "@ballast/protocol";

/** This node's part in a replica set. */
export type Part = "primary" | "secondary" | "learner" | "none";

/** The node's part in a replica set naming `primary`, `secondaries` and `learners`. */
export function partOf(
  node: string,
  members: { primary: string; secondaries: readonly string[]; learners?: readonly string[] },
): Part {
  if (members.primary === node) return "primary";
  if (members.secondaries.includes(node)) return "secondary";
  if ((members.learners ?? []).includes(node)) return "learner";
  return "none";
}

/** What a configure asks of this node. */
export interface ConfigureAsk {
  /** The volume's incarnation. */
  volumeId: string;
  epoch: number;
  part: Part;
  /** The data directory the sender recorded this node's replica on, if it says. */
  disk?: string | undefined;
  /**
   * The sender records members' disks (the coordinator): without `disk`, the member was
   * placed before disk ids, and a voter with nothing `stored` refuses (`no-replica`).
   */
  disksRecorded?: boolean | undefined;
  /**
   * Whether this is the incarnation's first placement, where a voter may start empty;
   * undefined where the sender does not say (the head node: it opens what it stores).
   */
  create?: boolean;
}

/** What the node hosts of the partition. */
export interface HostedReplica {
  volumeId: string;
  /** Its journal failed: it serves nothing until it is reopened. */
  failed: boolean;
  /**
   * The epoch its core is configured in, or the newest it was named out in while failed
   * (a failed core takes no configure), whichever is newer; undefined while neither.
   */
  epoch: number | undefined;
  /**
   * Rebuilt afresh as the learner it is still asked to be: what it holds came from the
   * primary it learns from, so a configure naming it a learner again keeps it.
   */
  freshLearner: boolean;
}

/** What the node knows of the partition when the configure arrives. */
export interface ConfigureNode {
  /** This node's data directory id (data-dir.ts). */
  disk?: string | undefined;
  /** The message's incarnation was deleted here (dropped, or replaced by a newer one). */
  deleted: boolean;
  /**
   * Whether this node's disk stores a replica of the message's incarnation (a journal or
   * a checkpoint in its partition directory); undefined where the caller did not look.
   */
  stored?: boolean | undefined;
  /**
   * The newest epoch this node's disk shows of the message's incarnation's replica: the
   * epoch it was last configured a voter in (kept before its core takes it), or of the
   * newest note its journal holds, whichever is newer; where the caller looked: it looks
   * where nothing of the incarnation is hosted with a configuration. A hosted replica's
   * configured epoch is never below it (a configure older than it opens nothing, and
   * notes come only from a primary of the configured epoch or an earlier one).
   */
  storedEpoch?: number | undefined;
  hosted: HostedReplica | undefined;
}

/**
 * What becomes of the hosted replica before the rest: kept, closed with its files kept
 * (a failed one, reopened from them), closed with its files kept once they keep the
 * configure's epoch (`close-out`: one named out of the set, see the module header), or
 * closed and its files removed.
 */
export type Retire = "keep" | "close" | "close-out" | "remove";

export type Refusal =
  | { reason: "other-disk"; disk: string }
  | { reason: "deleted" }
  | { reason: "older-incarnation"; hostedVolumeId: string }
  | { reason: "older-epoch"; currentEpoch: number }
  | { reason: "not-a-member" }
  | { reason: "no-state" }
  | { reason: "no-replica" };

export type ConfigureDecision =
  /** Answer an error; `retire` first (a failed replica is closed even so). */
  | {
      kind: "refuse";
      refusal: Refusal;
      retire: Retire;
      /** An incarnation to remember as deleted. */
      forget: string | undefined;
      /**
       * Named out with nothing of the incarnation open, its replica stored: keep the
       * configure's epoch in the replica's directory, as `close-out` does before it closes.
       */
      keepOutEpoch?: true;
    }
  /** Configure the hosted core as it is. */
  | { kind: "apply" }
  /** `retire` the hosted replica (if any), then open one and configure it. */
  | {
      kind: "open";
      retire: Retire;
      forget: string | undefined;
      /** The node's session, or a new one of its own (after a failed replica). */
      session: "node" | "new";
      /** Afresh as a learner (from the message's checkpoint), or from what is stored. */
      from: "rebuild" | "stored";
    };

/** What to do with a configure (see the module header). */
export function decideConfigure(ask: ConfigureAsk, node: ConfigureNode): ConfigureDecision {
  const refuse = (refusal: Refusal, retire: Retire = "keep", forget?: string) =>
    ({ kind: "refuse", refusal, retire, forget }) as const;
  if (ask.disk !== undefined && ask.disk !== node.disk) {
    return refuse({ reason: "other-disk", disk: ask.disk });
  }
  if (node.deleted) return refuse({ reason: "deleted" });
  const hosted = node.hosted;
  let retire: Retire = "keep";
  let forget: string | undefined;
  if (hosted !== undefined && hosted.volumeId !== ask.volumeId) {
    if (incarnationOf(ask.volumeId) <= incarnationOf(hosted.volumeId)) {
      return refuse(
        { reason: "older-incarnation", hostedVolumeId: hosted.volumeId },
        "keep",
        ask.volumeId,
      );
    }
    retire = "remove";
    forget = hosted.volumeId;
  } else if (hosted !== undefined && hosted.epoch !== undefined && ask.epoch < hosted.epoch) {
    // Failed or not: a configure from before the replica's epoch is a delayed one. A
    // failed replica stays failed (and reported) until a configure of its epoch or a
    // later one reopens it: reopened by a stale one, its core (which recovers no
    // configuration) would take the old epoch's part.
    return refuse({ reason: "older-epoch", currentEpoch: hosted.epoch });
  } else if (hosted?.failed === true) {
    // Named out, failed or not: its out epoch kept on its disk before it closes (below).
    // Closed without, a failed one left the out epoch nowhere: on a reboot (which lifts
    // the failed marker's refusal, journal/failed-marker.ts), or for a core that threw
    // (which leaves no marker), a delayed configure of an older epoch opened it.
    if (ask.part === "none") return refuse({ reason: "not-a-member" }, "close-out");
    retire = "close";
  } else if (hosted !== undefined) {
    const current = hosted.epoch;
    if (current === undefined && node.storedEpoch !== undefined && ask.epoch < node.storedEpoch) {
      // Open but not configured since (the simulator's restarted node reopens what it
      // hosted): as with nothing hosted, its disk says which epochs are past. Applied, a
      // delayed configure naming it a voter made its core take the old epoch's part.
      return refuse({ reason: "older-epoch", currentEpoch: node.storedEpoch });
    }
    const stale =
      ask.part === "learner" &&
      !hosted.freshLearner &&
      (current === undefined || ask.epoch > current);
    if (stale) retire = "remove";
    else if (ask.part === "none") {
      // Named out (in its epoch or a later one, or not configured since it opened):
      // closed with its files kept, once its disk keeps the out epoch, so that it fences
      // as its idle core did.
      return refuse({ reason: "not-a-member" }, "close-out");
    } else return { kind: "apply" };
  }
  // Nothing hosted, or the hosted replica retires.
  if (ask.part === "none") {
    const refusal = refuse({ reason: "not-a-member" }, retire, forget);
    // Its disk stores the incarnation's replica, open nowhere (the node restarted since
    // it was configured): the out epoch is kept there all the same.
    const open = hosted?.volumeId === ask.volumeId;
    return node.stored === true && !open ? { ...refusal, keepOutEpoch: true } : refusal;
  }
  if (node.storedEpoch !== undefined && ask.epoch < node.storedEpoch) {
    // Delayed (a leader frozen past its tenure): this disk was a voter, or holds notes,
    // of a later epoch. Rebuilt as a learner, it would lose writes it answers for;
    // opened as a voter, its core would take the old epoch's part. What it stores is
    // kept, and a failed replica stays failed; only another incarnation retires.
    return refuse(
      { reason: "older-epoch", currentEpoch: node.storedEpoch },
      forget === undefined ? "keep" : retire,
      forget,
    );
  }
  const session = hosted?.failed === true ? "new" : "node";
  if (ask.part === "learner") return { kind: "open", retire, forget, session, from: "rebuild" };
  // A voter keeps what is stored only if it is this incarnation's (a failed one reopens).
  const stored = retire === "close";
  if (!stored && ask.disk === undefined && ask.disksRecorded === true && node.stored === false) {
    return refuse({ reason: "no-replica" }, retire, forget);
  }
  if (!stored && ask.create === false) return refuse({ reason: "no-state" }, retire, forget);
  return { kind: "open", retire, forget, session, from: "stored" };
}
