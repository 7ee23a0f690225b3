// The snapshot requests the leader answers: create, list and delete. A snapshot of a
// volume is a frozen extent tree in every replica of every partition (a control note
// through each partition's op stream); the catalogue records it as
// `snapshot.<volume>.<name>` {volume, name, id, volumeId, createdAtMs, partitions: [{index,
// opNum}]} once every partition has it. Ids are drawn here and never reused.
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
// then flow again), and a snapshot taken on some partitions but never recorded stays as
// an unlisted frozen tree until the orphan sweep (sweep.ts) finds its id in recorded
// checkpoints, unrecorded for a grace and not being created (`creatingIds`), and drops
// it on every partition (`dropUnrecorded`). A delete drops the id on every partition before it removes the
// record, so a record always names a snapshot every partition has until the delete.
// Store writes can fail after the store kept them (a lost or late acknowledgement): a
// failed record write is read back, and its trees are dropped at once only when the
// write certainly was not kept, else left to that sweep (`record`); a failed removal
// is read back and repeated (`forget`). So no outcome of a failed write leaves a record
// naming trees that are gone, except a delete cut off between its drop and its removal,
// which a retried delete finishes.
//
// Rollback (`volume.rollback.v1`): every partition's primary replaces its current tree
// with a copy of the snapshot's (`partition.snapshot.rollback.v1`, a control note). It is
// refused while the volume is attached: each live gateway reports, in its `node.info.v1`
// details, `attached: {export: open NBD connections}`, and the leader asks every live
// gateway; one that does not answer counts as "maybe attached" (refused too). `force`
// skips the question, for client-library users who know no writer is using the volume
// (the library's connections are not seen). The check is a moment's: a client that
// connects during the rollback may see some partitions before and some after it. A
// volume resized since the snapshot (another partition count) is refused: the snapshot
// does not cover its new partitions. All partitions roll back or the request fails
// naming those that did not; a retry rolls back again to the same state.

import { randomBytes } from "node:crypto";
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
import { type Catalogue, idOfVolume, type VolumeRecord } from "./catalogue.ts";
import { now } from "./clock.ts";
import { clonesOf, refuseSnapshotDelete } from "./clones.ts";
import {
  probeDeadlineMs,
  snapshotAttemptsMax,
  snapshotCreateDeadlineMs,
  snapshotHoldMs,
  snapshotRetryMs,
  snapshotStepDeadlineMs,
} from "./constants.ts";

export type SnapshotState = ResultOf<"snapshot.create.v1">;

export interface SnapshotsParts {
  service: Service;
  catalogue: Catalogue;
  /** Who is alive: the gateways asked whether a volume is attached (rollback). */
  members?: { list(): readonly { kind: string; id: string; alive: boolean }[] };
}

type PartitionRequest =
  | MessageOf<"partition.snapshot.hold.v1">
  | MessageOf<"partition.snapshot.take.v1">
  | MessageOf<"partition.snapshot.release.v1">
  | MessageOf<"partition.snapshot.drop.v1">
  | MessageOf<"partition.snapshot.rollback.v1">;

/** One attempt's outcome: the ops it took at, or why it was given up. */
type Attempt = { ok: true; opNums: number[] } | { ok: false; why: string };

export class Snapshots {
  /** Ids of snapshots this coordinator is creating now: the sweep leaves them alone. */
  private readonly creating = new Set<string>();

  constructor(private readonly parts: SnapshotsParts) {}

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

  async create(message: MessageOf<"snapshot.create.v1">): Promise<SnapshotState> {
    const { catalogue } = this.parts;
    const volume = await this.volumeOf(message.volume);
    const existing = await catalogue.snapshot(message.volume, message.name);
    if (existing !== undefined && existing.value.volumeId === idOfVolume(volume)) {
      // Its id and time let a client that retries after a create whose outcome it did
      // not learn (see `record`) tell its own snapshot from someone else's.
      const { id, createdAtMs } = existing.value;
      throw new BallastError(
        ErrorCode.AlreadyExists,
        `volume ${message.volume} already has a snapshot named ${message.name} (id ${id}, taken ${new Date(createdAtMs).toISOString()})`,
        { details: { volume: message.volume, name: message.name, id, createdAtMs } },
      );
    }
    const count = (await this.snapshotsOf(volume)).length;
    if (count >= limits.snapshotsPerVolumeMax) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `volume ${message.volume} has ${count} snapshots, the most it may have; delete one first`,
      );
    }
    const deadline = now() + snapshotCreateDeadlineMs;
    const whys: string[] = [];
    for (let attempt = 1; attempt <= snapshotAttemptsMax && now() < deadline; attempt++) {
      const id = newSnapshotId();
      this.creating.add(id);
      try {
        const taken = await this.attemptRecorded(volume, message.name, id, deadline, existing);
        if (taken.ok) {
          this.parts.service.logger.info(
            { volume: volume.name, name: message.name, id, attempt },
            "snapshot taken",
          );
          return taken.state;
        }
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

  /** One attempt at snapshot `id`, recorded if it was taken everywhere, dropped if not. */
  private async attemptRecorded(
    volume: VolumeRecord,
    name: string,
    id: string,
    deadline: number,
    existing: Awaited<ReturnType<Catalogue["snapshot"]>>,
  ): Promise<{ ok: true; state: SnapshotState } | { ok: false; why: string }> {
    const outcome = await this.attempt(volume, id, deadline);
    if (outcome.ok) {
      const state: SnapshotState = {
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
      await this.record(volume, state, existing);
      return { ok: true, state };
    }
    this.parts.service.logger.warn(
      { volume: volume.name, name, id, why: outcome.why },
      "snapshot attempt given up",
    );
    // Its partial trees go: a snapshot taken on some partitions only is no snapshot.
    await this.dropEverywhere(volume, id, Math.max(deadline, now() + snapshotStepDeadlineMs));
    return { ok: false, why: outcome.why };
  }

  /**
   * Records snapshot `state`, taken on every partition. A write to the store can fail
   * after the store kept it (its acknowledgement lost or late), so a failure is settled
   * by reading the key back: naming this id, the snapshot is recorded and the create
   * succeeded. Otherwise its trees are dropped at once only when the write certainly was
   * not kept: the store refused it as a conflict (its compare-and-set found another
   * revision, so it can never apply later either) — someone else's create took the name.
   * Any other failure leaves the outcome unknown (a read back may also lag the write), and
   * dropping would leave a record naming trees that are gone, with nothing to repair it;
   * so the trees stay, and if no record names them the orphan sweep drops them after its
   * grace (sweep.ts: two passes at least `sweepGraceMsDefault` apart), far longer than a
   * write the store is still working on can take to land.
   */
  private async record(
    volume: VolumeRecord,
    state: SnapshotState,
    existing: Awaited<ReturnType<Catalogue["snapshot"]>>,
  ): Promise<void> {
    const { catalogue, service } = this.parts;
    try {
      await catalogue.recordSnapshot(state, existing);
      return;
    } catch (error) {
      const where = { volume: state.volume, name: state.name, id: state.id };
      const stored = await catalogue.snapshot(state.volume, state.name).catch(() => undefined);
      if (stored?.value.id === state.id) {
        service.logger.warn(
          { ...where, error: (error as Error).message },
          "the snapshot's record was written although the write reported a failure",
        );
        return;
      }
      if (isBallastError(error) && error.code === ErrorCode.AlreadyExists) {
        await this.dropEverywhere(volume, state.id, now() + snapshotStepDeadlineMs);
        throw error;
      }
      service.logger.warn(
        { ...where, error: (error as Error).message },
        "the snapshot's record may or may not have been written: its trees are kept for the orphan sweep",
      );
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${state.name} of ${state.volume} (id ${state.id}) was taken, but whether its record was written is unknown (${(error as Error).message}); retry: AlreadyExists naming id ${state.id} means it was recorded, and if it was not, its trees are dropped by the orphan sweep`,
        { cause: error, details: where },
      );
    }
  }

  async list(volumeName: string): Promise<ResultOf<"snapshot.list.v1">> {
    const volume = await this.volumeOf(volumeName);
    return { snapshots: await this.snapshotsOf(volume) };
  }

  async delete(message: MessageOf<"snapshot.delete.v1">): Promise<ResultOf<"snapshot.delete.v1">> {
    const { catalogue } = this.parts;
    const volume = await this.volumeOf(message.volume);
    const record = await catalogue.snapshot(message.volume, message.name);
    if (record === undefined || record.value.volumeId !== idOfVolume(volume)) {
      throw new BallastError(
        ErrorCode.NotFound,
        `volume ${message.volume} has no snapshot named ${message.name}`,
        { details: { volume: message.volume, name: message.name } },
      );
    }
    // Clones read through it wherever they have not written: it stays while they do.
    refuseSnapshotDelete(
      message.volume,
      message.name,
      clonesOf(await catalogue.volumes(), idOfVolume(volume), record.value.id),
    );
    const dropped = await this.dropEverywhere(
      volume,
      record.value.id,
      now() + snapshotCreateDeadlineMs,
    );
    if (!dropped) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${message.name} of ${message.volume} could not be dropped on every partition by the deadline; it is still recorded, retry`,
      );
    }
    if (!(await this.forget(record, now() + snapshotStepDeadlineMs))) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `snapshot ${message.name} of ${message.volume} was dropped on every partition, but whether its record was removed is unknown; retry (the drop is repeated harmlessly; NotFound then means the record is gone)`,
        { details: { volume: message.volume, name: message.name, id: record.value.id } },
      );
    }
    return { deleted: true };
  }

  /**
   * Removes the record of a snapshot whose trees are dropped, until `deadline`: whether
   * it is gone. A removal can fail after the store applied it, and one that did not
   * apply leaves a record naming trees that are gone; so a failure is settled by reading
   * the key back (gone, or naming another id: done) and, while it still names this id,
   * by removing it again. Repeating is safe: each removal is a compare-and-set on the
   * revision read, which either applies or finds that the record moved on. At least one
   * removal is tried whatever the deadline.
   */
  private async forget(
    record: NonNullable<Awaited<ReturnType<Catalogue["snapshot"]>>>,
    deadline: number,
  ): Promise<boolean> {
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
        .snapshot(volume, name)
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
    const record = await this.parts.catalogue.snapshot(message.volume, message.snapshot);
    if (record === undefined || record.value.volumeId !== idOfVolume(volume)) {
      throw new BallastError(
        ErrorCode.NotFound,
        `volume ${message.volume} has no snapshot named ${message.snapshot}`,
        { details: { volume: message.volume, name: message.snapshot } },
      );
    }
    const count = Math.ceil(volume.sizeBytes / volume.partitionBytes);
    if (record.value.partitions.length !== count) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `volume ${message.volume} has ${count} partitions but snapshot ${message.snapshot} has ${record.value.partitions.length} (resized since): rollback needs the same size`,
      );
    }
    if (message.force !== true) {
      const attached = await this.attachedThrough(message.volume);
      if (attached.length > 0) {
        throw new BallastError(
          ErrorCode.InvalidArgument,
          `volume ${message.volume} is attached (${attached.join("; ")}): disconnect its NBD clients and retry, or pass --force if you know nothing writes to it`,
          { details: { volume: message.volume } },
        );
      }
    }
    const deadline = now() + snapshotCreateDeadlineMs;
    const base = { volume: volume.name, volumeId: idOfVolume(volume), snapshot: record.value.id };
    const results = await Promise.allSettled(
      Array.from({ length: count }, (_, partition) =>
        this.call({ type: "partition.snapshot.rollback.v1", ...base, partition }, deadline),
      ),
    );
    const failed = results.flatMap((result, index) =>
      result.status === "rejected" ? [`${index} (${(result.reason as Error).message})`] : [],
    );
    if (failed.length > 0) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `rollback of ${message.volume} to ${message.snapshot} did not finish on partitions ${failed.join(", ")}; the others rolled back; retry (a rollback to the same snapshot again is safe)`,
        { details: { volume: message.volume, name: message.snapshot } },
      );
    }
    this.parts.service.logger.info(
      { volume: volume.name, snapshot: message.snapshot, id: record.value.id },
      "volume rolled back",
    );
    return {
      volume: volume.name,
      snapshot: message.snapshot,
      partitions: results.map((result, index) => ({
        index,
        opNum: (result as PromiseFulfilledResult<{ opNum: number }>).value.opNum,
      })),
    };
  }

  /**
   * Why the volume may be attached: each live gateway that reports NBD connections to
   * it, or did not answer. Empty: no gateway has it open.
   */
  private async attachedThrough(volumeName: string): Promise<string[]> {
    const gateways = (this.parts.members?.list() ?? []).filter(
      (member) => member.kind === "gateway" && member.alive,
    );
    const answers = await Promise.all(
      gateways.map(async (gateway): Promise<string | undefined> => {
        try {
          const info = await this.parts.service.bus.request(
            subjects.node.build(gateway.id),
            { type: "node.info.v1" },
            { deadlineMs: probeDeadlineMs },
          );
          const connections = attachedCount(info.details, volumeName);
          return connections > 0
            ? `${connections} NBD connection(s) through gateway ${gateway.id}`
            : undefined;
        } catch (error) {
          return `gateway ${gateway.id} did not say whether it has it open: ${(error as Error).message}`;
        }
      }),
    );
    return answers.filter((answer): answer is string => answer !== undefined);
  }

  /** The snapshots recorded for this incarnation of the volume, by name. */
  private async snapshotsOf(volume: VolumeRecord): Promise<SnapshotState[]> {
    const [records, volumes] = await Promise.all([
      this.parts.catalogue.snapshots(volume.name),
      this.parts.catalogue.volumes(),
    ]);
    return records
      .filter((record) => record.volumeId === idOfVolume(volume))
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((record) => {
        const clones = clonesOf(volumes, idOfVolume(volume), record.id);
        return clones.length === 0 ? record : { ...record, clones };
      });
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

  /** Hold everywhere, take everywhere, release everywhere (see the module header). */
  private async attempt(volume: VolumeRecord, id: string, deadline: number): Promise<Attempt> {
    const count = Math.ceil(volume.sizeBytes / volume.partitionBytes);
    const indexes = Array.from({ length: count }, (_, index) => index);
    const base = { volume: volume.name, volumeId: idOfVolume(volume) };
    const holdMs = Math.max(1, Math.min(snapshotHoldMs, deadline - now()));
    let holds: ResultOf<"partition.snapshot.hold.v1">[] = [];
    try {
      holds = await Promise.all(
        indexes.map((partition) =>
          this.call(
            { type: "partition.snapshot.hold.v1", ...base, partition, hold: id, holdMs },
            deadline,
          ),
        ),
      );
      const takes = await Promise.all(
        indexes.map((partition) =>
          this.call(
            { type: "partition.snapshot.take.v1", ...base, partition, snapshot: id },
            deadline,
          ),
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
      await this.releaseEverywhere(volume, id, indexes);
      return { ok: false, why: (error as Error).message };
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
   * failures (no primary yet, a failover) until `deadline`.
   */
  private async call<T extends PartitionRequest>(
    message: T,
    deadline: number,
  ): Promise<ResultOf<T["type"] & RequestType>> {
    const subject = subjects.partitionControl.build(message.volume, message.partition);
    for (;;) {
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
        await new Promise((resolve) => setTimeout(resolve, Math.min(snapshotRetryMs, left)));
      }
    }
  }
}

/** A fresh snapshot id: never reused (time and randomness), a valid token. */
function newSnapshotId(): string {
  return `s${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
}

/** Open NBD connections to `volume` in a gateway's node.info details (`attached`). */
export function attachedCount(details: Record<string, unknown>, volume: string): number {
  const attached = details.attached;
  if (typeof attached !== "object" || attached === null) return 0;
  const count = (attached as Record<string, unknown>)[volume];
  return typeof count === "number" ? count : 0;
}
