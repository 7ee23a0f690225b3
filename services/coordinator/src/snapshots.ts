// The snapshot requests the leader answers: create, list and delete. A snapshot of a
// volume is a frozen extent tree in every replica of every partition (a control note
// through each partition's op stream); the catalogue records it as
// `snapshot.<volume>.<name>` {volume, name, id, volumeId, createdAtMs, partitions: [{index,
// opNum}]}, first marked creating (before any partition takes it), then listed once
// every partition has it. Ids are drawn here and never reused.
//
// Crash consistency across partitions. A snapshot must hold every write acknowledged
// before the create began, and no write without one acknowledged before it was issued
// (B issued after A was acknowledged: B in the snapshot means A is in). The leader:
//   1. holds acknowledgements on every partition's primary (writes are still assigned
//      and committed, replies wait; `partition.snapshot.hold.v1`);
//   2. takes the snapshot on every partition (`partition.snapshot.take.v1`);
//   3. releases every hold, each answering whether it was in force throughout.
// A write acknowledged before its partition's hold began committed before it, so is
// below that partition's snapshot op. While every partition holds, nothing is
// acknowledged: a write B issued after A's acknowledgement was issued either after the
// release (so after every snapshot op: not in) or A was acknowledged before A's
// partition held (so A is in). That needs each partition to hold from its hold to the
// end of the takes without a gap: a failover, a restart or the hold's own deadline ends
// a hold (the new primary does not hold), and then the attempt is given up — the id is
// dropped on every partition, nothing is recorded — and tried again with a new id while
// the create's deadline allows. Retries of a take are idempotent by id (a new primary
// has the note if it committed), but a take answered by another epoch than its hold
// means the hold was lost: that attempt is given up too.
//
// Failure model: the leader may die mid-create: holds end by their deadline (writes
// then flow again), and a snapshot taken on some partitions but never listed stays as an
// unlisted frozen tree until the orphan sweep (sweep.ts) finds its id in recorded
// checkpoints, named by no record for a grace, and drops it on every partition
// (`dropUnrecorded`).
//
// Create against a stalled leader. The leader may also stall (a GC pause, SIGSTOP, a
// paused VM) for longer than its lease and the sweep's grace, and resume beside the next
// leader, whose sweep does not know this one's creates in flight. So what keeps a
// create's trees is a record in the store, not memory (`creatingIds` is only a second
// guard for this leader's own sweep). An attempt at id X of name n:
//   c1 writes n's record naming X, marked creating (`creatingSinceMs`), by create-if-
//      absent (over another incarnation's stale record, by compare-and-set on its
//      revision): the key is at revision rc. Before any take.
//   c2 holds, takes X on every partition, releases.
//   c3 lists it: the full record without the mark, by compare-and-set on rc.
// An attempt given up removes its record (compare-and-set on rc) and drops X.
// Claim: a record readers see (listed, not marked deleting) names a snapshot every
// partition has. Readers skip a creating record (list, rollback, delete's NotFound,
// clone and its pin), so only c3 makes X visible, and c3 applies only while the key is
// still at rc. X's trees are dropped only by (a) this create, (b) the sweep, (c) a
// delete or the volume's delete. (c) comes after a listed record is marked or removed
// with its volume, as before. (a): this create drops X only when c3 never ran or was
// refused as a conflict: the key had moved past rc, which it never comes back to, so c3
// can never apply. (b): the sweep drops X after two passes at least its grace apart
// each read, after the checkpoint headers holding X, every record of the volume in any
// state and found none naming X. A header holding X was written after a take of X, so
// after c1: at that read, the record c1 wrote was already gone, and the key past rc
// (removed past its grace by the sweep or a create of n, by this create giving the
// attempt up, or with the volume); so c3 can never apply, and X is never listed. Once
// c3 applied, the record names X in every state until a delete removes it, after its
// own drops. So the sweep never drops a listed snapshot's trees, whatever the leaders do.
// The interleavings with the next leader L2 (its sweep, or a user's request on it):
//   - L2's sweep or a create of n on L2 removes the creating record past
//     `snapshotCreatingGraceMs` by compare-and-set on rc while this leader (L1) runs c3,
//     also on rc: exactly one applies. c3 first: listed, the removal fails, the trees
//     stay. The removal first: c3 fails, L1 drops X and answers Unavailable; trees of X
//     left by an L1 dying there are orphans the sweep drops.
//   - A create of n on L2 within the grace answers Unavailable ("being created");
//     past it, it removes L1's record first (above) and writes its own with a new id Y;
//     L1's drops name X only, never Y.
//   - A delete of n on L2 before c3 answers NotFound and writes nothing; after c3 it
//     marks the listed record as any delete does, and c3 cannot run again.
//   - A volume delete removes the record (L1's c3 fails); a new incarnation's create of
//     n writes over it by compare-and-set (the same).
// Clocks: `creatingSinceMs` is L1's wall clock and the grace is judged on L2's. Skew
// only moves the removal: early, it fails a create still running (it answers
// Unavailable, its trees dropped); late, it holds the name longer. Safety rests on the
// compare-and-sets alone. The cost is one store write more per attempt. Records older
// coordinators wrote carry no mark and read as before; an older coordinator does not
// know the mark, so mixed versions would list a creating record (with no partitions).
//
// Delete, in two phases so that a leader cut off halfway never leaves a snapshot listed
// whose trees are gone: it first marks the record deleting (`deletingSinceMs`, a
// compare-and-set on the revision read), then drops the id on every partition, then
// removes the record. The mark is the delete's point of no return: from then on the
// catalogue's readers leave the record out (list, clone, the client's VOL@NAME, which
// resolves names through list), a rollback to it is refused NotFound, and whoever comes
// next finishes the delete — the request retried, a create of the same name, or the
// leader's sweep, every pass (sweeper.ts), so a new leader does it on its first one.
// Finishing is the same two steps again: drops are idempotent on head nodes (a drop of
// an id a partition lacks changes nothing) and the removal is a compare-and-set, so two
// finishers (an ex-leader still running, the sweep next to a retried request) agree.
// So a record that readers see always names a snapshot every partition has. Records
// older coordinators wrote carry no mark and read as before.
//
// Store writes can fail after the store kept them (a lost or late acknowledgement): a
// failed record write is read back, and its trees are dropped at once only when the
// write certainly was not kept, else left to that sweep (`record`); a failed mark is
// read back, and the delete goes on only if it finds the mark (`markDeleting`); a failed
// removal is read back and repeated (`forget`), and one still unsettled by its deadline
// leaves the marked record to the sweep.
//
// Rollback (`volume.rollback.v1`): every partition's primary replaces its current tree
// with a copy of the snapshot's (`partition.snapshot.rollback.v1`, a control note). It is
// refused while the volume is attached: each live gateway reports, in its `node.info.v1`
// details, `attached: {export: open NBD connections}`, and the leader asks every live
// gateway; one that does not answer counts as "maybe attached" (refused too). `force`
// skips the question, for client-library users who know no writer is using the volume
// (the library's connections are not seen). The check is a moment's: a client that
// connects during the rollback may see some partitions before and some after it. A
// volume whose size is not the snapshot's is refused (InvalidArgument, naming the
// snapshot's size): with more partitions the snapshot does not cover the new ones; with
// as many, the size would stay, hiding the snapshot's tail past it (which a later grow
// trims for good) or showing what lay past the snapshot's end. Resizing the volume back
// to the snapshot's size, then rolling back, is the way (records made before sizes were
// kept compare the partition count only). All partitions roll back or the request fails
// naming those that did not; a retry rolls back again to the same state.
//
// Rollback against a delete. A rollback that rolled some partitions back and then found
// the snapshot gone on the others leaves the volume neither before nor after, with no
// snapshot left to retry with; it must not happen, and never be answered as done. The
// leader serializes its own rollbacks and deletes, but a leader that stalled past its
// lease mid-rollback resumes beside the next one, who may delete the snapshot (or whose
// sweep finishes a delete marked earlier). So, as with clone pins (clone-pins.ts):
//   r1 reads the record; refuses if it is gone, creating, marked deleting, or of another
//      size; adds a rollback mark {token, sinceMs} (`rollbacks`, dropping expired ones)
//      by compare-and-set on the revision read (a conflict reads again);
//   r2 rolls back every partition;
//   r3 reads the record back: gone, another snapshot's or marked deleting answers
//      NotFound ("deleted while the rollback ran": the volume may be partly rolled
//      back, and that snapshot is no way back any more); else removes its mark by
//      compare-and-set (a failure leaves the mark to expire).
// A delete refuses while a mark is live, checked on the record its deleting mark's
// compare-and-set writes. Live: first seen by this coordinator at most
// `snapshotRollbackMarkMs` ago on its monotonic clock (`RollbackMarkSightings`, as
// leadership and the sweep judge what they see), never by the mark's `sinceMs`, another
// machine's wall clock: judged so, a deleting leader whose clock ran a minute ahead of
// the marking one's (or was stepped forward) took a mark written a moment ago for
// expired, and dropped the snapshot under the rollback; one behind kept a dead mark for
// the difference. A mark is first seen after it was written, so it never looks older
// than it is; a new leader (or one that forgot it) takes every mark it finds as new,
// which holds off deletes of that snapshot for one mark's life at most. r1 and the
// deleting mark are compare-and-sets on one record: r1 first, the delete reads the
// mark (Unavailable, "being rolled back to"), or its compare-and-set fails on the old
// revision (Unavailable, retry); the deleting mark first, r1 reads it (NotFound). So
// no drop runs between r1 and r3 while the mark lives; the marked delete the sweep
// finishes was marked before r1, which refused it. A leader held up past the mark's
// life can lose it to a delete: then r3 finds the delete, and the head nodes answer a
// rollback whose snapshot a drop removed first NotFound (replica.ts), so that partition
// is named as failed. Either way the request does not succeed on a partial rollback.
// A user who sees Unavailable for a delete retries it once the rollback is over; one
// whose rollback answered NotFound "deleted while the rollback ran" must check or
// restore the volume's data. Records older coordinators wrote carry no mark; an older
// coordinator neither writes nor honours marks.

import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  BallastError,
  ErrorCode,
  isBallastError,
  limits,
  type MessageOf,
  type RequestType,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import { type Members, refuseWhileAttached } from "./attached.ts";
import {
  type Catalogue,
  creatingPastGrace,
  idOfVolume,
  isCreating,
  isDeleting,
  type RollbackMark,
  type SnapshotRecord,
  type Versioned,
  type VolumeRecord,
} from "./catalogue.ts";
import { now } from "./clock.ts";
import { livePins, refuseWhilePinned } from "./clone-pins.ts";
import { clonesOf, refuseSnapshotDelete } from "./clones.ts";
import {
  rollbackMarkSightingsMax,
  snapshotAttemptsMax,
  snapshotCreateDeadlineMs,
  snapshotCreatingGraceMs,
  snapshotHoldMs,
  snapshotRetryMs,
  snapshotRollbackMarkAttemptsMax,
  snapshotRollbackMarkMs,
  snapshotRollbackMarksMax,
  snapshotStepDeadlineMs,
} from "./constants.ts";
import { shrinkingOf } from "./resize.ts";
import type { StoreMarks } from "./store-marks.ts";

export type SnapshotState = ResultOf<"snapshot.create.v1">;

export interface SnapshotsParts {
  service: Service;
  catalogue: Catalogue;
  /** Who is alive: the gateways asked whether a volume is attached (attached.ts). */
  members?: Members;
  /** The monotonic clock rollback marks are aged on; clock.ts `now` if absent. */
  markClock?: () => number;
  /**
   * Witnesses each create on the sleds before its first record (store-marks.ts): a
   * control store restored from an copy older than the snapshot then refuses the orphan
   * sweep, which would otherwise drop the snapshot as a create given up.
   */
  storeMarks: Pick<StoreMarks, "witnessCreate">;
}

type PartitionRequest =
  | MessageOf<"partition.snapshot.hold.v1">
  | MessageOf<"partition.snapshot.take.v1">
  | MessageOf<"partition.snapshot.release.v1">
  | MessageOf<"partition.snapshot.drop.v1">
  | MessageOf<"partition.snapshot.rollback.v1">;

/** One attempt's outcome: the ops it took at, or why it was given up. */
/**
 * An attempt's outcome. `refused`: a partition refused the take for good (NoSpace: the
 * checkpoint budget of its trees, see the head node's checkpointBudgetRefusal), so
 * another attempt would be refused too and the create answers with it.
 */
type Attempt = { ok: true; opNums: number[] } | { ok: false; why: string; refused?: BallastError };

/**
 * How far finishing a marked delete got: done (the record is gone), not every partition
 * dropped the id by the deadline, or whether the record was removed is unknown.
 */
type Finish = "done" | "not-dropped" | "removal-unknown";

export class Snapshots {
  /** Ids of snapshots this coordinator is creating now: the sweep leaves them alone. */
  private readonly creating = new Set<string>();
  /** When this coordinator first saw each rollback mark (module header). */
  private readonly marks: RollbackMarkSightings;

  constructor(private readonly parts: SnapshotsParts) {
    this.marks = new RollbackMarkSightings(parts.markClock);
  }

  creatingIds(): ReadonlySet<string> {
    return this.creating;
  }

  /**
   * Drops a snapshot id that no record names on every partition of `volume` (for the
   * orphan sweep): whether every partition did within one step's deadline.
   */
  async dropUnrecorded(volume: VolumeRecord, id: string): Promise<boolean> {
    return this.dropEverywhere(volume, id, now() + snapshotStepDeadlineMs);
  }

  /**
   * Finishes a delete left marked on a snapshot of `volume` (for the sweep): drops its
   * id on every partition within one step's deadline, then removes the record. Whether
   * the record is gone; if not, the next pass tries again.
   */
  async finishDeleting(volume: VolumeRecord, marked: Versioned<SnapshotRecord>): Promise<boolean> {
    const outcome = await this.finishDelete(volume, marked, now() + snapshotStepDeadlineMs);
    if (outcome === "done") {
      this.parts.service.logger.info(
        { volume: volume.name, name: marked.value.name, id: marked.value.id },
        "finished a snapshot delete that was cut off",
      );
    }
    return outcome === "done";
  }

  async create(message: MessageOf<"snapshot.create.v1">): Promise<SnapshotState> {
    const { catalogue } = this.parts;
    const volume = await this.volumeOf(message.volume);
    refuseWhileShrinking(volume, `snapshot ${message.name} of ${message.volume}`);
    let existing = await catalogue.snapshotIncludingDeleting(message.volume, message.name);
    if (
      existing !== undefined &&
      existing.value.volumeId === idOfVolume(volume) &&
      isDeleting(existing.value)
    ) {
      // A delete of the name was cut off: it is finished first, as a retried delete
      // would, so that the name is free again without waiting for the sweep.
      const outcome = await this.finishDelete(volume, existing, now() + snapshotStepDeadlineMs);
      if (outcome !== "done") {
        throw new BallastError(
          ErrorCode.Unavailable,
          `snapshot ${message.name} of ${message.volume} is being deleted and the delete could not be finished now (${outcome === "not-dropped" ? "not every partition dropped it in time" : "its record's removal is unsettled"}); retry once it is gone`,
          { details: { volume: message.volume, name: message.name, id: existing.value.id } },
        );
      }
      existing = undefined;
    }
    if (
      existing !== undefined &&
      existing.value.volumeId === idOfVolume(volume) &&
      isCreating(existing.value)
    ) {
      await this.abandonStaleCreate(existing);
      existing = undefined;
    }
    if (existing !== undefined && existing.value.volumeId === idOfVolume(volume)) {
      throw nameTaken(existing.value);
    }
    const count = (await this.snapshotsOf(volume)).length;
    if (count >= limits.snapshotsPerVolumeMax) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `volume ${message.volume} has ${count} snapshots, the most it may have; delete one first`,
      );
    }
    // Before any record of the snapshot (store-marks.ts): once its trees are in recorded
    // checkpoints, a catalogue restored from an older copy names no record of it, and
    // the sleds must prove that catalogue older than the data.
    await this.parts.storeMarks.witnessCreate(`snapshot ${message.name} of ${message.volume}`);
    const deadline = now() + snapshotCreateDeadlineMs;
    const whys: string[] = [];
    for (let attempt = 1; attempt <= snapshotAttemptsMax && now() < deadline; attempt++) {
      const id = newSnapshotId();
      this.creating.add(id);
      try {
        const stale = existing;
        // A stale record is written over by the first attempt's creating record; later
        // attempts find the key free (each failed attempt removes its own record).
        existing = undefined;
        const taken = await this.attemptRecorded(volume, message.name, id, deadline, stale);
        if (taken.ok) {
          this.parts.service.logger.info(
            { volume: volume.name, name: message.name, id, attempt },
            "snapshot taken",
          );
          return taken.state;
        }
        // A partition with no checkpoint room for another snapshot: every attempt would
        // be refused the same way, and the user must delete snapshots first.
        if (taken.refused !== undefined) throw taken.refused;
        whys.push(taken.why);
      } finally {
        this.creating.delete(id);
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `snapshot ${message.name} of ${message.volume} could not be taken consistently by its deadline (${snapshotCreateDeadlineMs} ms): ${whys.join("; ") || "no attempt finished"}; nothing was recorded, retry`,
    );
  }

  /**
   * A record of the name whose create has not finished, met by another create. Within
   * `snapshotCreatingGraceMs` another create is running, or its leader died moments ago:
   * refused Unavailable. Past it, its leader is taken for dead or stalled: the record is
   * removed by compare-and-set on the revision read, after which that leader's listing
   * (a compare-and-set on the same revision) can never apply, and the trees it took are
   * orphans the sweep drops. A record that moved since it was read is refused too.
   */
  private async abandonStaleCreate(found: Versioned<SnapshotRecord>): Promise<void> {
    const { volume, name, id, creatingSinceMs } = found.value;
    const details = { volume, name, id };
    if (!creatingPastGrace(found.value, snapshotCreatingGraceMs, Date.now())) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${name} of ${volume} is being created by another request (id ${id}, since ${new Date(creatingSinceMs ?? 0).toISOString()}); retry`,
        { details },
      );
    }
    if (!(await this.parts.catalogue.abandonSnapshotCreate(volume, name, found.revision))) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${name} of ${volume}: an unfinished create's record changed while it was being removed; retry`,
        { details },
      );
    }
    this.parts.service.logger.warn(
      { ...details, creatingSinceMs },
      "removed the record of a snapshot create past its grace: its leader died or stalled",
    );
  }

  /**
   * One attempt at snapshot `id`: its record written first, marked creating, then the
   * takes; listed if every partition took it, else its record removed and its trees
   * dropped (see the module header, "Create against a stalled leader").
   */
  private async attemptRecorded(
    volume: VolumeRecord,
    name: string,
    id: string,
    deadline: number,
    stale: Versioned<SnapshotRecord> | undefined,
  ): Promise<
    { ok: true; state: SnapshotState } | { ok: false; why: string; refused?: BallastError }
  > {
    const creating = await this.beginRecord(volume, name, id, stale);
    const outcome = await this.attempt(volume, id, deadline);
    if (outcome.ok) {
      const state: SnapshotRecord = {
        volume: volume.name,
        name,
        id,
        volumeId: idOfVolume(volume),
        createdAtMs: Date.now(),
        partitions: outcome.opNums.map((opNum, index) => ({ index, opNum })),
        sizeBytes: volume.sizeBytes,
        // A clone's snapshot falls through as the clone did when it was taken.
        ...(volume.parent === undefined ? {} : { overlap: volume.parent.overlap }),
      };
      await this.record(volume, creating, state);
      return { ok: true, state: snapshotAnswer(state) };
    }
    this.parts.service.logger.warn(
      { volume: volume.name, name, id, why: outcome.why },
      "snapshot attempt given up",
    );
    // The name is free again first (the next attempt writes its own record); a removal
    // that fails leaves the record to the sweep once past its grace. Its partial trees
    // then go: a snapshot taken on some partitions only is no snapshot, and one left by a
    // leader dying here is an orphan no record names, which the sweep drops.
    await this.parts.catalogue
      .abandonSnapshotCreate(volume.name, name, creating.revision)
      .catch(() => false);
    await this.dropEverywhere(volume, id, Math.max(deadline, now() + snapshotStepDeadlineMs));
    return outcome;
  }

  /**
   * An attempt's first write, before any take: the snapshot's record marked creating,
   * naming `id` (over `stale`, another incarnation's record of the name, if any). From
   * then until the record is listed or removed, the sweep counts `id` as recorded and
   * keeps its trees, whichever leader runs it. The name taken by this incarnation since
   * it was read answers AlreadyExists (listed) or Unavailable (being created or deleted).
   * A write that fails may have been kept: read back, naming this id, it was; otherwise
   * nothing was taken, and a record that lands unseen is removed by the sweep after its
   * grace.
   */
  private async beginRecord(
    volume: VolumeRecord,
    name: string,
    id: string,
    stale: Versioned<SnapshotRecord> | undefined,
  ): Promise<Versioned<SnapshotRecord>> {
    const { catalogue } = this.parts;
    const startedAtMs = Date.now();
    const record: SnapshotRecord = {
      volume: volume.name,
      name,
      id,
      volumeId: idOfVolume(volume),
      createdAtMs: startedAtMs,
      partitions: [],
      creatingSinceMs: startedAtMs,
    };
    try {
      const outcome = await catalogue.beginSnapshotCreate(record, stale);
      if ("created" in outcome) return outcome.created;
      throw nameTaken(outcome.taken.value);
    } catch (error) {
      if (isBallastError(error)) throw error;
      const stored = await catalogue
        .snapshotIncludingDeleting(volume.name, name)
        .catch(() => undefined);
      if (stored?.value.id === id) return stored;
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${name} of ${volume.name} could not be begun: its record could not be written (${(error as Error).message}); nothing was taken, retry`,
        { cause: error, details: { volume: volume.name, name, id } },
      );
    }
  }

  /**
   * Lists snapshot `state`, taken on every partition: its record without the creating
   * mark, by compare-and-set on the revision `creating` was written at. A compare-and-set
   * refused as a conflict certainly was not kept and never will be: the creating record
   * was removed (past its grace, by the sweep or a create of the name: this leader
   * stalled; or with its volume), so nothing names this id but this create, whose trees
   * are dropped at once, and the create answers Unavailable. Any other failure may have
   * been kept (its acknowledgement lost or late): the key is read back, and naming this
   * id without the mark, the create succeeded. Otherwise the outcome is unknown, and the
   * trees stay: the write still in flight lists them, or the creating record is removed
   * past its grace (both are compare-and-sets on one revision: exactly one can apply),
   * after which the sweep drops them as orphans.
   */
  private async record(
    volume: VolumeRecord,
    creating: Versioned<SnapshotRecord>,
    state: SnapshotRecord,
  ): Promise<void> {
    const { catalogue, service } = this.parts;
    const where = { volume: state.volume, name: state.name, id: state.id };
    let revision: number | undefined;
    try {
      revision = await catalogue.listSnapshot(creating, state);
    } catch (error) {
      const stored = await catalogue
        .snapshotIncludingDeleting(state.volume, state.name)
        .catch(() => undefined);
      if (stored?.value.id === state.id && !isCreating(stored.value)) {
        service.logger.warn(
          { ...where, error: (error as Error).message },
          "the snapshot's record was written although the write reported a failure",
        );
        return;
      }
      service.logger.warn(
        { ...where, error: (error as Error).message },
        "the snapshot's record may or may not have been listed: its trees are kept for the orphan sweep",
      );
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${state.name} of ${state.volume} (id ${state.id}) was taken, but whether its record was written is unknown (${(error as Error).message}); retry: AlreadyExists naming id ${state.id} means it was recorded, and if it was not, its trees are dropped by the orphan sweep`,
        { cause: error, details: where },
      );
    }
    if (revision !== undefined) return;
    service.logger.warn(
      where,
      "the snapshot's creating record was removed before it could be listed: dropping its trees",
    );
    await this.dropEverywhere(volume, state.id, now() + snapshotStepDeadlineMs);
    throw new BallastError(
      ErrorCode.Unavailable,
      `snapshot ${state.name} of ${state.volume} (id ${state.id}) was taken, but its unfinished record was removed meanwhile (this leader stalled past ${snapshotCreatingGraceMs} ms, or the volume was deleted); nothing was listed, retry`,
      { details: where },
    );
  }

  /**
   * The volume's snapshots, by name, each as an answer names it (`snapshotAnswer`): the
   * first partitions' ops and clones only, so that the list fits one message whatever
   * the volume's size.
   */
  async list(volumeName: string): Promise<ResultOf<"snapshot.list.v1">> {
    const volume = await this.volumeOf(volumeName);
    // Records that do not decode are left out of the listing (reported).
    const [records, volumes] = await Promise.all([
      this.snapshotsOf(volume),
      this.parts.catalogue.volumes("skip"),
    ]);
    return {
      snapshots: records.map((record) =>
        snapshotAnswer(record, clonesOf(volumes, idOfVolume(volume), record.id)),
      ),
    };
  }

  /**
   * Deletes a snapshot in two phases (see the module header): marks its record
   * deleting, drops it on every partition, removes the record. A snapshot already
   * marked (a delete cut off) goes straight to the drops: a retry finishes it.
   */
  async delete(message: MessageOf<"snapshot.delete.v1">): Promise<ResultOf<"snapshot.delete.v1">> {
    const { catalogue } = this.parts;
    const volume = await this.volumeOf(message.volume);
    // A create not finished is no snapshot: nothing to delete (the sweep removes its
    // record past its grace, or its create lists it).
    const found = finishedSnapshot(
      message.volume,
      message.name,
      volume,
      await catalogue.snapshotIncludingDeleting(message.volume, message.name),
    );
    if (message.id !== undefined && found.value.id !== message.id) {
      // Taken since the client read the one it means, which is gone (perhaps deleted by
      // this request's earlier attempt): kept.
      throw new BallastError(
        ErrorCode.NotFound,
        `volume ${message.volume} has no snapshot named ${message.name} with id ${message.id}: the one of that name now is ${found.value.id}, taken since; it is kept`,
        {
          details: {
            volume: message.volume,
            name: message.name,
            id: message.id,
            current: found.value.id,
          },
        },
      );
    }
    let marked = found;
    if (!isDeleting(found.value)) {
      // Clones read through it wherever they have not written: it stays while they do.
      // Asked before the mark, of the record the mark's compare-and-set writes: clones
      // made before pins by their records, the others by their pins on it, and a clone
      // pinned since the read fails the mark (clone-pins.ts has every order of the two).
      refuseSnapshotDelete(
        message.volume,
        message.name,
        clonesOf(await catalogue.volumes(), idOfVolume(volume), found.value.id),
      );
      refuseWhilePinned(
        `snapshot ${message.name} of ${message.volume}`,
        await livePins(catalogue, found.value.clonePins ?? [], Date.now()),
      );
      // A rollback to it that runs now would be left half done (module header).
      refuseWhileRolledBackTo(found.value, this.marks.live(found.value));
      marked = await this.markDeleting(found);
    }
    const outcome = await this.finishDelete(volume, marked, now() + snapshotCreateDeadlineMs);
    const details = { volume: message.volume, name: message.name, id: marked.value.id };
    if (outcome === "not-dropped") {
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${message.name} of ${message.volume} is being deleted (no longer listed or readable), but not every partition dropped it by the deadline; the leader's sweep keeps trying, or retry`,
        { details },
      );
    }
    if (outcome === "removal-unknown") {
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${message.name} of ${message.volume} was dropped on every partition, but whether its record was removed is unknown; retry (the drop is repeated harmlessly; NotFound then means the record is gone), or the leader's sweep removes it`,
        { details },
      );
    }
    return { deleted: true };
  }

  /**
   * Marks `found` deleting, the delete's point of no return: the record as marked. The
   * write can fail after the store kept it, so a failure is settled by reading the key
   * back: marked, with this id, the delete goes on. Anything else (not marked, moved on,
   * unreadable) answers Unavailable with nothing dropped; a mark that landed unseen
   * hides the snapshot, and the sweep or a retry finishes that delete.
   */
  private async markDeleting(found: Versioned<SnapshotRecord>): Promise<Versioned<SnapshotRecord>> {
    const { catalogue, service } = this.parts;
    const { volume, name, id } = found.value;
    let why = "the record changed since it was read";
    try {
      const marked = await catalogue.markSnapshotDeleting(found, Date.now());
      if (marked !== undefined) return marked;
    } catch (error) {
      why = (error as Error).message;
    }
    const current = await catalogue.snapshotIncludingDeleting(volume, name).catch(() => undefined);
    if (current !== undefined && current.value.id === id && isDeleting(current.value)) {
      service.logger.warn(
        { volume, name, id, why },
        "the snapshot's deleting mark was written although the write reported a failure",
      );
      return current;
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `snapshot ${name} of ${volume} could not be marked for deletion (${why}); nothing was dropped, retry`,
      { details: { volume, name, id } },
    );
  }

  /**
   * The second phase of a delete, for a record marked deleting: drops its id on every
   * partition until `dropDeadline`, then removes the record. Safe to repeat, and to run
   * beside another finisher of the same delete (see the module header).
   */
  private async finishDelete(
    volume: VolumeRecord,
    marked: Versioned<SnapshotRecord>,
    dropDeadline: number,
  ): Promise<Finish> {
    if (!(await this.dropEverywhere(volume, marked.value.id, dropDeadline))) return "not-dropped";
    return (await this.forget(marked, now() + snapshotStepDeadlineMs)) ? "done" : "removal-unknown";
  }

  /**
   * Removes the record of a snapshot whose trees are dropped, until `deadline`: whether
   * it is gone. A removal can fail after the store applied it, and one that did not
   * apply leaves the marked record for the next finisher; so a failure is settled by
   * reading the key back (gone, or naming another id: done) and, while it still names
   * this id, by removing it again. Repeating is safe: each removal is a compare-and-set
   * on the revision read, which either applies or finds that the record moved on. At
   * least one removal is tried whatever the deadline.
   */
  private async forget(record: Versioned<SnapshotRecord>, deadline: number): Promise<boolean> {
    const { catalogue, service } = this.parts;
    const { volume, name, id } = record.value;
    let revision = record.revision;
    for (;;) {
      try {
        await catalogue.forgetSnapshot(volume, name, revision);
        return true;
      } catch (error) {
        service.logger.warn(
          { volume, name, id, error: (error as Error).message },
          "removing a dropped snapshot's record failed; reading it back",
        );
      }
      // A read that fails says nothing: try the removal again on what was last known.
      const current = await catalogue
        .snapshotIncludingDeleting(volume, name)
        .catch(() => ({ value: record.value, revision }));
      if (current === undefined || current.value.id !== id) return true;
      revision = current.revision;
      const left = deadline - now();
      if (left <= 0) return false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(snapshotRetryMs, left)));
    }
  }

  // ------------------------------------------------------------ rollback

  /** Rolls every partition back to the snapshot (see the module header). */
  async rollback(
    message: MessageOf<"volume.rollback.v1">,
  ): Promise<ResultOf<"volume.rollback.v1">> {
    const volume = await this.volumeOf(message.volume);
    refuseWhileShrinking(volume, `rollback of ${message.volume} to ${message.snapshot}`);
    rollbackTarget(
      message,
      volume,
      await this.parts.catalogue.snapshotIncludingDeleting(message.volume, message.snapshot),
    );
    await refuseWhileAttached(
      this.parts.service.bus,
      this.parts.members,
      message.volume,
      `roll volume ${message.volume} back to ${message.snapshot}`,
      message.force,
    );
    const token = randomBytes(rollbackTokenBytes).toString("hex");
    const marked = await this.markRollback(message, volume, token);
    const count = Math.ceil(volume.sizeBytes / volume.partitionBytes);
    const deadline = now() + snapshotCreateDeadlineMs;
    const base = { volume: volume.name, volumeId: idOfVolume(volume), snapshot: marked.value.id };
    const results = await Promise.allSettled(
      Array.from({ length: count }, (_, partition) =>
        this.call({ type: "partition.snapshot.rollback.v1", ...base, partition }, deadline),
      ),
    );
    const failed = results.flatMap((result, index) =>
      result.status === "rejected" ? [`${index} (${(result.reason as Error).message})`] : [],
    );
    const after = await this.unmarkRollback(marked, token);
    const details = { volume: message.volume, name: message.snapshot, id: marked.value.id };
    if (after === "deleted") {
      this.parts.service.logger.warn(
        { ...details, failed },
        "the snapshot was deleted while a rollback to it ran: the rollback is not reported done",
      );
      throw new BallastError(
        ErrorCode.NotFound,
        `snapshot ${message.snapshot} of volume ${message.volume} was deleted while the rollback to it ran (this leader was held up past its ${snapshotRollbackMarkMs} ms mark on the snapshot${failed.length > 0 ? `; partitions ${failed.join(", ")} did not roll back` : ""}): the volume may be only partly rolled back, and the snapshot cannot be rolled back to again; check the volume's data, or restore it from elsewhere`,
        { details: { ...details, deletedDuringRollback: true } },
      );
    }
    if (failed.length > 0) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `rollback of ${message.volume} to ${message.snapshot} did not finish on partitions ${failed.join(", ")}; the others rolled back; retry (a rollback to the same snapshot again is safe)`,
        { details },
      );
    }
    if (after === "unknown") {
      throw new BallastError(
        ErrorCode.Unavailable,
        `every partition of ${message.volume} rolled back to ${message.snapshot}, but its record could not be read back to confirm that no delete of it began meanwhile; retry (a rollback to the same snapshot again is safe; NotFound then means it was deleted, and the volume's data should be checked)`,
        { details },
      );
    }
    this.parts.service.logger.info(
      { volume: volume.name, snapshot: message.snapshot, id: marked.value.id },
      "volume rolled back",
    );
    // The first partitions' ops: the answer fits one message whatever the volume's size.
    return {
      volume: volume.name,
      snapshot: message.snapshot,
      partitions: results.slice(0, limits.snapshotPartitionsListedMax).map((result, index) => ({
        index,
        opNum: (result as PromiseFulfilledResult<{ opNum: number }>).value.opNum,
      })),
      partitionCount: count,
    };
  }

  /**
   * Marks the snapshot's record with rollback `token` before any partition rolls back,
   * by compare-and-set on the revision whose state it checked (see the module header,
   * "Rollback against a delete"): the record as marked. A record moved since it was read
   * is read and checked again. A write that fails may have been kept: read back, with
   * the token, it was; otherwise Unavailable, nothing rolled back (a mark that landed
   * unseen only holds off deletes until it expires).
   */
  private async markRollback(
    message: MessageOf<"volume.rollback.v1">,
    volume: VolumeRecord,
    token: string,
  ): Promise<Versioned<SnapshotRecord>> {
    const { catalogue } = this.parts;
    const read = () => catalogue.snapshotIncludingDeleting(message.volume, message.snapshot);
    for (let attempt = 0; attempt < snapshotRollbackMarkAttemptsMax; attempt++) {
      const found = rollbackTarget(message, volume, await read());
      const live = this.marks.live(found.value);
      if (live.length >= snapshotRollbackMarksMax) {
        throw new BallastError(
          ErrorCode.Unavailable,
          `snapshot ${message.snapshot} of volume ${message.volume} has ${live.length} rollbacks to it running, the most it may have; retry once they have finished`,
          { details: { volume: message.volume, name: message.snapshot } },
        );
      }
      try {
        const marked = await catalogue.markSnapshotRollbacks(found, [
          ...live,
          { token, sinceMs: Date.now() },
        ]);
        if (marked !== undefined) return marked;
      } catch (error) {
        const stored = await read().catch(() => undefined);
        if (stored?.value.rollbacks?.some((mark) => mark.token === token)) return stored;
        throw new BallastError(
          ErrorCode.Unavailable,
          `snapshot ${message.snapshot} of volume ${message.volume} could not be marked for the rollback (${(error as Error).message}); nothing was rolled back, retry`,
          { details: { volume: message.volume, name: message.snapshot } },
        );
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `snapshot ${message.snapshot} of volume ${message.volume}: its record kept changing while the rollback marked it; nothing was rolled back, retry`,
      { details: { volume: message.volume, name: message.snapshot } },
    );
  }

  /**
   * After the partitions answered: reads the record back and removes mark `token` (and
   * expired marks), by compare-and-set. "deleted": the record is gone, another
   * snapshot's, or marked deleting (a delete began during the rollback: its mark
   * expired, as when this leader stalled). "unknown": the record could not be read. A
   * removal that fails leaves the mark to expire.
   */
  private async unmarkRollback(
    marked: Versioned<SnapshotRecord>,
    token: string,
  ): Promise<"kept" | "deleted" | "unknown"> {
    const { catalogue, service } = this.parts;
    const { volume, name, id } = marked.value;
    for (let attempt = 0; attempt < snapshotRollbackMarkAttemptsMax; attempt++) {
      let current: Versioned<SnapshotRecord> | undefined;
      try {
        current = await catalogue.snapshotIncludingDeleting(volume, name);
      } catch (error) {
        service.logger.warn(
          { volume, name, id, error: (error as Error).message },
          "the snapshot's record could not be read back after a rollback",
        );
        return "unknown";
      }
      if (current === undefined || current.value.id !== id || isDeleting(current.value)) {
        return "deleted";
      }
      const kept = this.marks.live(current.value).filter((mark) => mark.token !== token);
      try {
        if ((await catalogue.markSnapshotRollbacks(current, kept)) !== undefined) return "kept";
      } catch (error) {
        service.logger.warn(
          { volume, name, id, error: (error as Error).message },
          "removing a rollback's mark failed: it expires by itself",
        );
        return "kept";
      }
    }
    service.logger.warn({ volume, name, id }, "a rollback's mark was left to expire");
    return "kept";
  }

  /** The snapshots recorded (listed) for this incarnation of the volume, by name. */
  private async snapshotsOf(volume: VolumeRecord): Promise<SnapshotRecord[]> {
    const records = await this.parts.catalogue.snapshots(volume.name, "skip");
    return records
      .filter((record) => record.volumeId === idOfVolume(volume))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  private async volumeOf(name: string): Promise<VolumeRecord> {
    const volume = await this.parts.catalogue.volume(name);
    if (volume === undefined) {
      throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`, {
        details: { volume: name },
      });
    }
    return volume.value;
  }

  /**
   * Hold everywhere, take everywhere, release everywhere (see the module header). Given
   * up at a partition's failure, the attempt first stops the other partitions' retries
   * and waits for the requests it sent to settle: its release and the caller's drop
   * then come after every hold and take it will ever send. Before, a retry still running
   * could land a hold after the release (the partition's acknowledgements held up to
   * snapshotHoldMs) or a take after the drop (an orphan tree until the sweep).
   */
  private async attempt(volume: VolumeRecord, id: string, deadline: number): Promise<Attempt> {
    const count = Math.ceil(volume.sizeBytes / volume.partitionBytes);
    const indexes = Array.from({ length: count }, (_, index) => index);
    const base = { volume: volume.name, volumeId: idOfVolume(volume) };
    const holdMs = Math.max(1, Math.min(snapshotHoldMs, deadline - now()));
    const givenUp = new AbortController();
    const sent: Promise<unknown>[] = [];
    const send = <T extends PartitionRequest>(message: T) => {
      const answer = this.call(message, deadline, givenUp.signal);
      sent.push(answer);
      return answer;
    };
    let holds: ResultOf<"partition.snapshot.hold.v1">[] = [];
    try {
      holds = await Promise.all(
        indexes.map((partition) =>
          send({ type: "partition.snapshot.hold.v1", ...base, partition, hold: id, holdMs }),
        ),
      );
      const takes = await Promise.all(
        indexes.map((partition) =>
          send({ type: "partition.snapshot.take.v1", ...base, partition, snapshot: id }),
        ),
      );
      const moved = indexes.filter((index) => takes[index]!.epoch !== holds[index]!.epoch);
      const released = await this.releaseEverywhere(volume, id, indexes);
      const lost = indexes.filter((index) => released[index] !== true);
      if (moved.length > 0 || lost.length > 0) {
        return {
          ok: false,
          why: `partitions ${[...new Set([...moved, ...lost])].join(", ")} did not hold acknowledgements throughout (a failover or the hold's deadline)`,
        };
      }
      return { ok: true, opNums: takes.map((take) => take.opNum) };
    } catch (error) {
      givenUp.abort();
      await Promise.allSettled(sent);
      await this.releaseEverywhere(volume, id, indexes);
      const refused =
        isBallastError(error) && error.code === ErrorCode.NoSpace ? { refused: error } : {};
      return { ok: false, why: (error as Error).message, ...refused };
    }
  }

  /** Releases hold `id` on every partition, once each: whether each held throughout. */
  private async releaseEverywhere(
    volume: VolumeRecord,
    id: string,
    indexes: number[],
  ): Promise<(boolean | undefined)[]> {
    return Promise.all(
      indexes.map(async (partition) => {
        try {
          const { held } = await this.parts.service.bus.request(
            subjects.partitionControl.build(volume.name, partition),
            {
              type: "partition.snapshot.release.v1",
              volume: volume.name,
              volumeId: idOfVolume(volume),
              partition,
              hold: id,
            },
            { deadlineMs: snapshotStepDeadlineMs },
          );
          return held;
        } catch {
          return undefined; // the hold ends at its own deadline
        }
      }),
    );
  }

  /** Drops snapshot `id` on every partition (retrying until `deadline`): whether all did. */
  private async dropEverywhere(
    volume: VolumeRecord,
    id: string,
    deadline: number,
  ): Promise<boolean> {
    const count = Math.ceil(volume.sizeBytes / volume.partitionBytes);
    const results = await Promise.allSettled(
      Array.from({ length: count }, (_, partition) =>
        this.call(
          {
            type: "partition.snapshot.drop.v1",
            volume: volume.name,
            volumeId: idOfVolume(volume),
            partition,
            snapshot: id,
          },
          deadline,
        ),
      ),
    );
    return results.every((result) => result.status === "fulfilled");
  }

  /**
   * Sends a partition request to whichever node is its primary, retrying retryable
   * failures (no primary yet, a failover) until `deadline`, or until `givenUp` aborts
   * (its attempt failed elsewhere): then no retry is sent.
   */
  private async call<T extends PartitionRequest>(
    message: T,
    deadline: number,
    givenUp?: AbortSignal,
  ): Promise<ResultOf<T["type"] & RequestType>> {
    const subject = subjects.partitionControl.build(message.volume, message.partition);
    for (;;) {
      if (givenUp?.aborted === true) {
        throw new BallastError(
          ErrorCode.Unavailable,
          `${message.type} to partition ${message.partition} not retried: the attempt was given up`,
        );
      }
      const left = deadline - now();
      if (left <= 0) {
        throw new BallastError(
          ErrorCode.Timeout,
          `partition ${message.partition} did not answer ${message.type} by the deadline`,
        );
      }
      try {
        return (await this.parts.service.bus.request(subject, message as never, {
          deadlineMs: Math.max(1, Math.min(snapshotStepDeadlineMs, left)),
        })) as ResultOf<T["type"] & RequestType>;
      } catch (error) {
        if (!isBallastError(error) || !error.retryable) throw error;
        // Cut short when the attempt is given up; the loop's top then throws.
        await sleep(Math.min(snapshotRetryMs, left), undefined, { signal: givenUp }).catch(
          () => undefined,
        );
      }
    }
  }
}

/**
 * The refusal of a create whose name this incarnation's record `taken` holds: listed,
 * AlreadyExists with its id and time, which let a client that retries after a create
 * whose outcome it did not learn (see `record`) tell its own snapshot from someone
 * else's; being created or deleted, Unavailable.
 */
function nameTaken(taken: SnapshotRecord): BallastError {
  const { volume, name, id, createdAtMs } = taken;
  if (isCreating(taken) || isDeleting(taken)) {
    return new BallastError(
      ErrorCode.Unavailable,
      `snapshot ${name} of ${volume} is being ${isCreating(taken) ? "created by another request" : "deleted"} (id ${id}); retry`,
      { details: { volume, name, id } },
    );
  }
  return new BallastError(
    ErrorCode.AlreadyExists,
    `volume ${volume} already has a snapshot named ${name} (id ${id}, taken ${new Date(createdAtMs).toISOString()})`,
    { details: { volume, name, id, createdAtMs } },
  );
}

/**
 * Snapshot `record` as create and list answer it: the fields the protocol names and no
 * others (not the record's marks and pins), the first `snapshotPartitionsListedMax`
 * partitions' ops with the count of all, and the first `snapshotClonesListedMax` of
 * `clones` (sorted) with theirs. Every field is bounded, so a list of
 * `snapshotsPerVolumeMax` of them fits one message (protocol test reply-size.test.ts);
 * the whole record was about 27 bytes per partition, 1.7 MiB for the largest volume.
 */
export function snapshotAnswer(record: SnapshotRecord, clones: string[] = []): SnapshotState {
  const { volume, name, id, volumeId, createdAtMs, partitions, sizeBytes, overlap } = record;
  return {
    volume,
    name,
    id,
    volumeId,
    createdAtMs,
    partitions: partitions.slice(0, limits.snapshotPartitionsListedMax),
    partitionCount: partitions.length,
    ...(sizeBytes === undefined ? {} : { sizeBytes }),
    ...(overlap === undefined ? {} : { overlap }),
    ...(clones.length === 0
      ? {}
      : { clones: clones.slice(0, limits.snapshotClonesListedMax), cloneCount: clones.length }),
  };
}

/** A fresh snapshot id: never reused (time and randomness), a valid token. */
function newSnapshotId(): string {
  return `s${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
}

/** Bytes of randomness in a rollback's mark token. */
const rollbackTokenBytes = 8;

/**
 * `record` if it is a finished snapshot of `volume`'s incarnation (not of an earlier one
 * of the name, not a create still under way); else NotFound, naming it.
 */
function finishedSnapshot(
  volumeName: string,
  snapshotName: string,
  volume: VolumeRecord,
  record: Versioned<SnapshotRecord> | undefined,
): Versioned<SnapshotRecord> {
  if (
    record === undefined ||
    record.value.volumeId !== idOfVolume(volume) ||
    isCreating(record.value)
  ) {
    throw new BallastError(
      ErrorCode.NotFound,
      `volume ${volumeName} has no snapshot named ${snapshotName}`,
      { details: { volume: volumeName, name: snapshotName } },
    );
  }
  return record;
}

/**
 * The snapshot a rollback goes to, from its record as read: NotFound if there is none of
 * this incarnation, or it is being created or deleted; InvalidArgument if the volume's
 * size is not the one the snapshot was taken at.
 */
function rollbackTarget(
  message: MessageOf<"volume.rollback.v1">,
  volume: VolumeRecord,
  record: Versioned<SnapshotRecord> | undefined,
): Versioned<SnapshotRecord> {
  // A create not finished is no snapshot: some partitions may not have taken it yet.
  const found = finishedSnapshot(message.volume, message.snapshot, volume, record);
  // Its trees may be dropped already on some partitions: a rollback would fail on
  // those and roll back the others, leaving the volume neither before nor after.
  if (isDeleting(found.value)) {
    throw new BallastError(
      ErrorCode.NotFound,
      `snapshot ${message.snapshot} of volume ${message.volume} is being deleted: it cannot be rolled back to`,
      { details: { volume: message.volume, name: message.snapshot, deleting: true } },
    );
  }
  const count = Math.ceil(volume.sizeBytes / volume.partitionBytes);
  const { sizeBytes, partitions } = found.value;
  // The same partition count is not enough: the volume's size would stay, hiding the
  // snapshot's tail past it (which a later grow trims for good), or showing what lay
  // past the snapshot's end. Records made before sizes were kept have only the count.
  if (sizeBytes !== undefined && sizeBytes !== volume.sizeBytes) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `volume ${message.volume} is ${volume.sizeBytes} bytes but snapshot ${message.snapshot} was taken at ${sizeBytes} bytes (resized since): a rollback needs the volume at the snapshot's size; resize it to ${sizeBytes} bytes and retry`,
      {
        details: {
          volume: message.volume,
          name: message.snapshot,
          sizeBytes: volume.sizeBytes,
          snapshotSizeBytes: sizeBytes,
        },
      },
    );
  }
  if (partitions.length !== count) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `volume ${message.volume} has ${count} partitions but snapshot ${message.snapshot} has ${partitions.length} (resized since): a rollback needs the volume at the snapshot's size`,
      { details: { volume: message.volume, name: message.snapshot } },
    );
  }
  return found;
}

/**
 * When this coordinator first saw each rollback mark, by its token, on its monotonic
 * clock: a mark is live for `snapshotRollbackMarkMs` from then (module header). At most
 * `rollbackMarkSightingsMax` are kept, the oldest forgotten first; a mark forgotten and
 * seen again counts as new, which only holds off deletes longer.
 */
export class RollbackMarkSightings {
  private readonly firstSeenMs = new Map<string, number>();

  constructor(private readonly clock: () => number = now) {}

  /** The marks on `record` still live, each first seen now if it had not been. */
  live(record: SnapshotRecord): RollbackMark[] {
    const nowMs = this.clock();
    return (record.rollbacks ?? []).filter(
      (mark) => nowMs - this.firstSeen(mark.token, nowMs) <= snapshotRollbackMarkMs,
    );
  }

  private firstSeen(token: string, nowMs: number): number {
    const seen = this.firstSeenMs.get(token);
    if (seen !== undefined) return seen;
    if (this.firstSeenMs.size >= rollbackMarkSightingsMax) {
      this.firstSeenMs.delete(this.firstSeenMs.keys().next().value!);
    }
    this.firstSeenMs.set(token, nowMs);
    return nowMs;
  }
}

/**
 * Refuses a delete of snapshot `record` while a rollback to it runs (`live`, its live
 * marks): Unavailable, to retry once the rollback has ended.
 */
export function refuseWhileRolledBackTo(record: SnapshotRecord, live: RollbackMark[]): void {
  if (live.length === 0) return;
  const since = Math.min(...live.map((mark) => mark.sinceMs));
  throw new BallastError(
    ErrorCode.Unavailable,
    `snapshot ${record.name} of ${record.volume} is being rolled back to (since ${new Date(since).toISOString()}); retry once the rollback has finished (at most ${snapshotRollbackMarkMs} ms after this leader first saw its mark, if its leader died)`,
    { details: { volume: record.volume, name: record.name, id: record.id, rollingBack: true } },
  );
}

/**
 * Refuses a snapshot or rollback while a shrink of the volume is begun and not finished
 * (`shrinkingTo`: it failed after lowering the partitions' ends, and the leader finishes
 * it in the background). Its tail may be trimmed on some partitions and not on others: a
 * snapshot taken now would keep that half-trimmed tail at the old size, and a rollback
 * would bring back data the shrink's finish then trims again. Both run in the catalogue
 * queue, as resizes do, so no shrink begins while one of them runs.
 */
function refuseWhileShrinking(volume: VolumeRecord, what: string): void {
  const target = shrinkingOf(volume);
  if (target === undefined) return;
  throw new BallastError(
    ErrorCode.Unavailable,
    `${what} refused: volume ${volume.name} is being shrunk from ${volume.sizeBytes} to ${target} bytes (a shrink begun earlier and not finished; the leader finishes it, and describe shows it); retry once it is finished`,
    {
      details: {
        volume: volume.name,
        sizeBytes: volume.sizeBytes,
        shrinkingTo: target,
      },
    },
  );
}
