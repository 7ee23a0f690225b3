// The shell of purging deleted incarnations: on the leader, every few seconds, it reads
// the purge records from the catalogue, lists the chunks (by owner volume) and
// checkpoint blobs (by `checkpoints/<volume id>/`) of every live sled, asks purge.ts
// which of them belong to a deleted incarnation, and deletes those. The decisions —
// what to delete, when to start, when to forget — are purge.ts's; this file only moves
// requests.
//
// Failure model: a sled that is down (and not declared out: purge.ts, "Sleds awaited"),
// or a list or delete that fails, makes the pass incomplete and the record stays; the
// next pass tries again, so a sled that returns is purged then. A delete that finds the object gone (NotFound) is done. Passes run only
// while this coordinator leads a ready tenure, and a new tenure starts a new schedule,
// so after a failover the new leader finishes what the old one began. The live volume
// ids are read afresh from the catalogue before every pass, and nothing of a live
// incarnation is ever deleted.
//
// Drops: each pass also sends `headnode.drop.v1` to every live head node still owed the
// drop of an incarnation due (purge.ts, "Drops owed"), alongside the sled work. A head
// node that missed the delete's drop (down, frozen, cut off) is told once it is heard
// again, so it closes the replica, stops answering the volume's subject and removes its
// files; one that stays away keeps the record up to the age limit. A failed drop is
// logged once per node and incarnation in a tenure; the next pass tries again.

import {
  BallastError,
  checkpointBlobPrefixOf,
  ErrorCode,
  sledLimits,
  subjects,
} from "@ballast/protocol";
import { RepeatLog, type Service } from "@ballast/runtime";
import { type Catalogue, idOfVolume } from "./catalogue.ts";
import { now } from "./clock.ts";
import {
  dropDeadlineMs,
  purgeGraceMs,
  purgeListPagesMax,
  purgeRecordAgeMsMax,
  purgeRequestDeadlineMs,
  purgeRetainMs,
} from "./constants.ts";
import type { Heartbeats } from "./heartbeats.ts";
import {
  type ChunkEntry,
  type PassOutcome,
  type PendingPurge,
  type PurgeDelete,
  type PurgeRecord,
  PurgeSchedule,
  type PurgeTimes,
  purgeDeletes,
  type SledInventory,
  sledsAwaited,
} from "./purge.ts";
import { deleteSledObject } from "./sled-objects.ts";
import type { SledRecords } from "./sled-records.ts";
import type { Tenure, Tenures } from "./tenure.ts";

export interface PurgerOptions {
  service: Pick<Service, "bus" | "logger">;
  catalogue: Pick<Catalogue, "purges" | "forgetPurge" | "volumes">;
  heartbeats: Pick<Heartbeats, "list" | "listening">;
  tenures: Tenures;
  /** The sleds declared out; without it every dead sled keeps the records. */
  sleds?: Pick<SledRecords, "out">;
  times?: PurgeTimes;
  /** A monotonic clock (ms) for how often a lasting listing failure is logged again. */
  clock?: () => number;
  /** How often a sled that cannot be listed is logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
}

export class Purger {
  private readonly times: PurgeTimes;
  private schedule: PurgeSchedule;
  private scheduleTenure: Tenure | undefined;
  private running = false;
  /**
   * Per incarnation, the nodes whose failed drop was logged in this schedule: once each.
   * Dropped with the incarnation's record: one forgotten at its age limit while a node
   * still failed its drop otherwise stayed for the tenure's life.
   */
  private dropFailuresLogged = new Map<string, Set<string>>();
  /**
   * Live sleds whose listing failed: listed again every pass (purgePassIntervalMs) while
   * a purge is pending, so said when it begins, then once per logRepeatIntervalMs, and
   * once when a listing works again. Keys: sled ids.
   */
  private readonly listingFailures: RepeatLog;

  constructor(private readonly options: PurgerOptions) {
    this.listingFailures = new RepeatLog(options.logRepeatIntervalMs);
    this.times = options.times ?? {
      graceMs: purgeGraceMs,
      retainMs: purgeRetainMs,
      ageMsMax: purgeRecordAgeMsMax,
    };
    this.schedule = new PurgeSchedule(this.times);
  }

  /** The incarnations this leader is still purging (empty on a follower). */
  pending(): PendingPurge[] {
    const tenure = this.options.tenures.current();
    return tenure !== undefined && tenure === this.scheduleTenure
      ? this.schedule.pending(now())
      : [];
  }

  /** One pass, if this coordinator leads and no pass is running. */
  async purge(): Promise<void> {
    const { tenures, heartbeats } = this.options;
    const tenure = tenures.current();
    // A tenure over (this coordinator no longer leads): its schedule goes now, not when it
    // next leads (reconciler.ts `forgetTenure`). A pass still running keeps it till then.
    if (tenure !== this.scheduleTenure && !this.running) this.forgetTenure();
    if (tenure === undefined || !tenure.ready || this.running) return;
    if (heartbeats.listening(now())) return;
    this.running = true;
    try {
      await this.pass(tenure);
    } finally {
      this.running = false;
    }
  }

  private forgetTenure(): void {
    if (this.scheduleTenure === undefined) return;
    this.scheduleTenure = undefined;
    this.schedule = new PurgeSchedule(this.times);
    this.dropFailuresLogged = new Map();
  }

  private async pass(tenure: Tenure): Promise<void> {
    const { catalogue, heartbeats, tenures, service } = this.options;
    if (this.scheduleTenure !== tenure) {
      this.scheduleTenure = tenure;
      this.schedule = new PurgeSchedule(this.times);
      this.dropFailuresLogged = new Map();
    }
    const schedule = this.schedule;
    // A purge record that does not decode waits (reported); the volumes must all be read,
    // since one left out would be taken for deleted and its data purged.
    schedule.observe(await catalogue.purges("skip"), now());
    const due = schedule.due(now());
    if (due.length === 0) return;
    const live = new Set((await catalogue.volumes()).map(idOfVolume));
    // Records that only wait for drops have clean sleds: those are not listed again.
    const listed = due.filter((record) => !schedule.sledsClean(record.volumeId));
    const members = heartbeats.list();
    const sleds = members.filter((member) => member.kind === "sled");
    const out = this.options.sleds?.out(tenure);
    const awaited = sledsAwaited(sleds, out === undefined ? undefined : new Set(out));
    const outcomes = new Map<string, PassOutcome>(
      due.map((record) => [record.volumeId, { found: 0, complete: awaited.length === 0 }]),
    );
    const aliveHeadNodes = new Set(
      members.filter((member) => member.kind === "headnode" && member.alive).map((m) => m.id),
    );
    const holders = tenure.leases.holdersOf(new Set(due.map((record) => record.volumeId)));
    await Promise.all([
      ...(listed.length === 0
        ? []
        : sleds
            .filter((member) => member.alive)
            .map((member) => this.purgeSled(member.id, listed, live, outcomes))),
      ...due.map((record) =>
        this.drop(
          schedule,
          record,
          schedule.dropsOwed(record.volumeId, holders.get(record.volumeId) ?? [], live),
          aliveHeadNodes,
        ),
      ),
    ]);
    for (const record of due) {
      outcomes.get(record.volumeId)!.dropsOwed = schedule.dropsOwed(
        record.volumeId,
        holders.get(record.volumeId) ?? [],
        live,
      ).length;
    }
    for (const record of due) {
      if (tenures.current() !== tenure) return;
      const outcome = outcomes.get(record.volumeId)!;
      if (outcome.found > 0) {
        service.logger.info(
          { volume: record.volume, id: record.volumeId, objects: outcome.found },
          "purged objects of a deleted volume incarnation",
        );
      }
      if (schedule.passed(record.volumeId, outcome, now()) === "forget") {
        await catalogue.forgetPurge(record.volumeId);
        schedule.forget(record.volumeId);
        this.dropFailuresLogged.delete(record.volumeId);
        service.logger.info(
          { volume: record.volume, id: record.volumeId, complete: outcome.complete },
          "a deleted volume incarnation is purged; its record is forgotten",
        );
      }
    }
  }

  /**
   * Tells the live head nodes among `owed` to drop the incarnation's replicas, and notes
   * each that acknowledged; the others stay owed.
   */
  private async drop(
    schedule: PurgeSchedule,
    record: PurgeRecord,
    owed: readonly string[],
    aliveHeadNodes: ReadonlySet<string>,
  ): Promise<void> {
    const { bus, logger } = this.options.service;
    const { volume, volumeId } = record;
    await Promise.all(
      owed
        .filter((node) => aliveHeadNodes.has(node))
        .map(async (node) => {
          try {
            const { dropped } = await bus.request(
              subjects.node.build("headnode", node),
              { type: "headnode.drop.v1", volume, volumeId },
              { deadlineMs: dropDeadlineMs },
            );
            schedule.dropped(volumeId, node);
            const logged = this.dropFailuresLogged.get(volumeId);
            if (logged?.delete(node) === true && logged.size === 0) {
              this.dropFailuresLogged.delete(volumeId);
            }
            // A node that still held something had missed the delete's drop.
            if (dropped > 0) {
              logger.info(
                { node, volume, id: volumeId, dropped },
                "a head node dropped the replicas of a deleted volume incarnation it had kept",
              );
            }
          } catch (error) {
            const logged = this.dropFailuresLogged.get(volumeId) ?? new Set<string>();
            if (logged.has(node)) return;
            logged.add(node);
            this.dropFailuresLogged.set(volumeId, logged);
            logger.warn(
              { node, volume, id: volumeId, error: (error as Error).message },
              "could not tell a head node to drop a deleted volume incarnation's replicas; will retry",
            );
          }
        }),
    );
  }

  /** Incarnations with a failed drop logged (for tests: none is kept past its record). */
  get dropFailuresLoggedCount(): number {
    return this.dropFailuresLogged.size;
  }

  /** Lists one sled and deletes what belongs to the incarnations due. */
  private async purgeSled(
    sled: string,
    due: readonly PurgeRecord[],
    live: ReadonlySet<string>,
    outcomes: Map<string, PassOutcome>,
  ): Promise<void> {
    let inventory: SledInventory;
    try {
      inventory = await this.inventoryOf(sled, due);
    } catch (error) {
      for (const outcome of outcomes.values()) outcome.complete = false;
      const due = this.listingFailures.due(sled, (this.options.clock ?? now)());
      if (due !== undefined) {
        this.options.service.logger.warn(
          {
            sled,
            error: (error as Error).message,
            ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
          },
          "could not list a sled's objects to purge deleted volumes",
        );
      }
      return;
    }
    const failed = this.listingFailures.end(sled);
    if (failed !== undefined) {
      this.options.service.logger.info(
        { sled, repeatsSuppressed: failed.suppressed },
        "listed a sled's objects to purge deleted volumes again",
      );
    }
    for (const target of purgeDeletes(inventory, due, live)) {
      const outcome = outcomes.get(target.volumeId)!;
      outcome.found++;
      try {
        await this.delete(sled, target);
      } catch (error) {
        if (error instanceof BallastError && error.code === ErrorCode.NotFound) continue;
        outcome.complete = false;
        this.options.service.logger.warn(
          { sled, target, error: (error as Error).message },
          "could not delete an object of a deleted volume incarnation",
        );
      }
    }
  }

  private async inventoryOf(sled: string, due: readonly PurgeRecord[]): Promise<SledInventory> {
    const { bus } = this.options.service;
    const subject = subjects.node.build("sled", sled);
    const options = { deadlineMs: purgeRequestDeadlineMs };
    const chunks: ChunkEntry[] = [];
    for (const volume of new Set(due.map((record) => record.volume))) {
      let startAfter: string | undefined;
      for (let page = 0; page < purgeListPagesMax; page++) {
        const listed = await bus.request(
          subject,
          { type: "sled.chunk.list.v1", volume, startAfter, limit: sledLimits.chunkListEntriesMax },
          options,
        );
        chunks.push(...listed.chunks);
        if (!listed.truncated || listed.chunks.length === 0) break;
        startAfter = listed.chunks.at(-1)!.chunkId;
      }
    }
    const blobKeys: string[] = [];
    for (const record of due) {
      let startAfter: string | undefined;
      for (let page = 0; page < purgeListPagesMax; page++) {
        const listed = await bus.request(
          subject,
          {
            type: "sled.blob.list.v1",
            prefix: checkpointBlobPrefixOf(record.volumeId),
            startAfter,
            limit: sledLimits.blobListEntriesMax,
          },
          options,
        );
        blobKeys.push(...listed.blobs.map((blob) => blob.key));
        if (!listed.truncated || listed.blobs.length === 0) break;
        startAfter = listed.blobs.at(-1)!.key;
      }
    }
    return { chunks, blobKeys };
  }

  private delete(sled: string, target: PurgeDelete): Promise<void> {
    return deleteSledObject(this.options.service.bus, sled, target, purgeRequestDeadlineMs);
  }
}
