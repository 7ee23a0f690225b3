// The shell of the leftover sweep: on the leader, slowly (every
// `leftoverSweepIntervalFactor` orphan-sweep intervals), it lists a window of each live
// sled's chunks (of every owner) and checkpoint blobs (under `checkpoints/`), then reads
// which incarnations the catalogue names, and deletes the objects of the others once
// leftovers.ts confirms them. The decisions are leftovers.ts's; this file only moves
// requests.
//
// Order matters for safety: the sleds are listed before the catalogue is read, so an
// object listed was written under a partition record that the read can see, unless its
// incarnation has been deleted or superseded since (leftovers.ts, "Model").
//
// Cost: each pass reads at most `leftoverListPagesMax` pages of each kind from each
// sled, continuing where the previous pass stopped, so a sled holding many objects is
// covered over several passes (a million chunks in 50 passes: some four hours at the
// default interval) while a pass stays small for the sled (which sorts its ids for
// every page) and for the coordinator's memory. At most `sweepDeletesPerPassMax`
// deletes a pass, one at a time.
//
// Failure model: a sled that is down is skipped (its cursor stays); a listing that fails
// skips that sled's kind this pass; a catalogue read that fails ends the pass before
// anything is decided; a delete that fails is retried on a later pass, and one that
// finds the object gone (NotFound) is done. Lasting faults are logged when they begin,
// once per `logRepeatIntervalMs` while they last and when they end (a listing that
// fails, the marks' refusal), and a pass's deletes in one summary line
// (delete-summary.ts), not one line per object. Passes run only while this coordinator
// leads a ready tenure and has listened to membership; a new tenure starts its
// sightings and cursors afresh, so a leader that does not last two passes a grace apart
// deletes nothing (the next one does).

import { sledLimits, subjects } from "@ballast/protocol";
import { RepeatLog, type Service } from "@ballast/runtime";
import type { Catalogue } from "./catalogue.ts";
import { now } from "./clock.ts";
import {
  leftoverListPagesMax,
  leftoverSightingsMax,
  sweepDeletesPerPassMax,
  sweepRequestDeadlineMs,
} from "./constants.ts";
import { DeleteSummary } from "./delete-summary.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { namedIncarnationsOf } from "./incarnations.ts";
import {
  knownIncarnationsOf,
  LeftoverSightings,
  type ListedWindow,
  leftoversIn,
  type SledListing,
} from "./leftovers.ts";
import { PassSchedule } from "./pass-schedule.ts";
import type { ChunkEntry } from "./purge.ts";
import { deleteForPass } from "./sled-objects.ts";
import type { StoreMarks } from "./store-marks.ts";
import type { Tenure, Tenures } from "./tenure.ts";

/** Every checkpoint blob key begins with this (`checkpointBlobPrefixOf`). */
const checkpointBlobsPrefix = "checkpoints/";

export interface LeftoverSweeperOptions {
  service: Pick<Service, "bus" | "logger">;
  catalogue: Pick<Catalogue, "volumes" | "allPartitions" | "purges">;
  heartbeats: Pick<Heartbeats, "list" | "listening">;
  tenures: Tenures;
  /** Whether the catalogue is the one the sleds' data was made under (store-marks.ts). */
  marks: Pick<StoreMarks, "refusal">;
  graceMs: number;
  /** Pages of each kind read from each sled in a pass (tests make it small). */
  pagesMax?: number;
  /** How often a lasting condition is logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
}

/** The RepeatLog key of the marks' refusal. */
const refusedKey = "refused";

/** What the leftover sweep has freed on this coordinator, for status and tests. */
export interface LeftoverStatus {
  passes: number;
  objectsFreed: number;
  bytesFreed: number;
  waiting: number;
}

export class LeftoverSweeper {
  private sightings: LeftoverSightings;
  private tenure: Tenure | undefined;
  /** Where each sled's next window of each kind starts: `${sled}\n${kind}` → id. */
  private cursors = new Map<string, string>();
  private readonly status: LeftoverStatus = {
    passes: 0,
    objectsFreed: 0,
    bytesFreed: 0,
    waiting: 0,
  };

  private readonly schedule: PassSchedule;
  /** Lasting conditions said once per `logRepeatIntervalMs`: the refusal, failed listings. */
  private readonly repeats: RepeatLog;

  constructor(private readonly options: LeftoverSweeperOptions) {
    this.schedule = new PassSchedule(options.tenures, options.heartbeats);
    this.repeats = new RepeatLog(options.logRepeatIntervalMs);
    this.sightings = new LeftoverSightings(options.graceMs, leftoverSightingsMax);
  }

  leftoverStatus(): LeftoverStatus {
    return { ...this.status };
  }

  /** A pass if one is due: the first of a tenure once it is ready, then every `intervalMs`. */
  sweepIfDue(intervalMs: number): Promise<void> {
    if (this.schedule.tenureOver()) this.forgetTenure();
    return this.schedule.ifDue(intervalMs, (tenure) => this.pass(tenure));
  }

  /** The tenure of the last pass is over (pass-schedule.ts): its sightings and cursors go. */
  private forgetTenure(): void {
    this.tenure = undefined;
    this.sightings = new LeftoverSightings(this.options.graceMs, leftoverSightingsMax);
    this.cursors = new Map();
    this.status.waiting = 0;
  }

  /** One pass, if this coordinator leads a ready tenure and no pass is running. */
  sweep(): Promise<void> {
    return this.schedule.run((tenure) => this.pass(tenure));
  }

  private async pass(tenure: Tenure): Promise<void> {
    const { catalogue, heartbeats, tenures, marks, service } = this.options;
    if (this.tenure !== tenure) {
      this.tenure = tenure;
      this.sightings = new LeftoverSightings(this.options.graceMs, leftoverSightingsMax);
      this.cursors = new Map();
    }
    // A catalogue that is not the one the data was made under names nothing of it: every
    // object would read as a leftover (store-marks.ts). Nothing is sighted either, so
    // that no grace is served meanwhile.
    const refusal = marks.refusal();
    if (refusal !== undefined) {
      this.sightings = new LeftoverSightings(this.options.graceMs, leftoverSightingsMax);
      this.status.waiting = 0;
      const due = this.repeats.due(refusedKey, now());
      if (due !== undefined) {
        service.logger.warn(
          { reason: refusal, ...(due.first ? {} : { repeatsSuppressed: due.suppressed }) },
          "leftover sweep skipped",
        );
      }
      return;
    }
    const lifted = this.repeats.end(refusedKey);
    if (lifted !== undefined) {
      service.logger.info(
        { repeatsSuppressed: lifted.suppressed },
        "the leftover sweep runs again: the control store's marks no longer refuse",
      );
    }
    const sleds = heartbeats
      .list()
      .filter((member) => member.kind === "sled" && member.alive)
      .map((member) => member.id);
    // First the sleds, then the catalogue (leftover-sweeper.ts, "Order matters").
    const listings = await Promise.all(sleds.map((sled) => this.listingOf(sled)));
    const [volumes, partitions, purges] = await Promise.all([
      catalogue.volumes(),
      catalogue.allPartitions(),
      catalogue.purges(),
    ]);
    if (tenures.current() !== tenure) return;
    const known = knownIncarnationsOf(
      namedIncarnationsOf({
        volumes,
        partitions: partitions.map((entry) => entry.value),
        purges,
      }),
    );
    const windows = listings.flatMap((listing) => [
      ...(listing.chunks === undefined ? [] : [listing.chunks.window]),
      ...(listing.blobs === undefined ? [] : [listing.blobs.window]),
    ]);
    const due = this.sightings.confirm(windows, leftoversIn(listings, known), now());
    for (const window of windows) this.advance(window);
    this.status.waiting = this.sightings.waiting - due.length;
    const deleted = new DeleteSummary();
    try {
      for (const target of due.slice(0, sweepDeletesPerPassMax)) {
        if (tenures.current() !== tenure) return;
        await deleteForPass(this.options.service.bus, target, deleted, this.status);
      }
    } finally {
      deleted.log(service.logger, "leftovers of volume incarnations the catalogue no longer names");
    }
    this.status.passes++;
  }

  /** Moves the sled's cursor past the window: to its end, or back to the start. */
  private advance(window: ListedWindow): void {
    const key = `${window.sled}\n${window.kind}`;
    if (window.through === undefined) this.cursors.delete(key);
    else this.cursors.set(key, window.through);
  }

  /** This pass's window of each kind on `sled`; a kind whose listing fails is left out. */
  private async listingOf(sled: string): Promise<SledListing> {
    const listing: SledListing = { sled };
    try {
      listing.chunks = await this.chunksOf(sled);
      this.listed(sled, "chunk");
    } catch (error) {
      this.warnListing(sled, "chunk", error);
    }
    try {
      listing.blobs = await this.blobsOf(sled);
      this.listed(sled, "blob");
    } catch (error) {
      this.warnListing(sled, "blob", error);
    }
    return listing;
  }

  /** A listing failed: said when it begins, then once per `logRepeatIntervalMs`. */
  private warnListing(sled: string, kind: string, error: unknown): void {
    const due = this.repeats.due(`list\n${sled}\n${kind}`, now());
    if (due === undefined) return;
    this.options.service.logger.warn(
      {
        sled,
        kind,
        error: (error as Error).message,
        ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
      },
      "could not list a sled's objects to find leftovers of deleted volumes",
    );
  }

  /** A listing worked: said once if it had failed before. */
  private listed(sled: string, kind: string): void {
    const ended = this.repeats.end(`list\n${sled}\n${kind}`);
    if (ended === undefined) return;
    this.options.service.logger.info(
      { sled, kind, repeatsSuppressed: ended.suppressed },
      "listed a sled's objects to find leftovers again",
    );
  }

  private async chunksOf(sled: string): Promise<NonNullable<SledListing["chunks"]>> {
    const { bus } = this.options.service;
    const after = this.cursors.get(`${sled}\nchunk`);
    const entries: ChunkEntry[] = [];
    let startAfter = after;
    for (let page = 0; page < (this.options.pagesMax ?? leftoverListPagesMax); page++) {
      const listed = await bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.chunk.list.v1", startAfter, limit: sledLimits.chunkListEntriesMax },
        { deadlineMs: sweepRequestDeadlineMs },
      );
      entries.push(...listed.chunks);
      if (!listed.truncated || listed.chunks.length === 0) {
        return { entries, window: { sled, kind: "chunk", after, through: undefined } };
      }
      startAfter = listed.chunks.at(-1)!.chunkId;
    }
    return { entries, window: { sled, kind: "chunk", after, through: startAfter } };
  }

  private async blobsOf(sled: string): Promise<NonNullable<SledListing["blobs"]>> {
    const { bus } = this.options.service;
    const after = this.cursors.get(`${sled}\nblob`);
    const entries: { key: string; bytes: number }[] = [];
    let startAfter = after;
    for (let page = 0; page < (this.options.pagesMax ?? leftoverListPagesMax); page++) {
      const listed = await bus.request(
        subjects.node.build("sled", sled),
        {
          type: "sled.blob.list.v1",
          prefix: checkpointBlobsPrefix,
          startAfter,
          limit: sledLimits.blobListEntriesMax,
        },
        { deadlineMs: sweepRequestDeadlineMs },
      );
      entries.push(...listed.blobs.map((blob) => ({ key: blob.key, bytes: blob.bytes })));
      if (!listed.truncated || listed.blobs.length === 0) {
        return { entries, window: { sled, kind: "blob", after, through: undefined } };
      }
      startAfter = listed.blobs.at(-1)!.key;
    }
    return { entries, window: { sled, kind: "blob", after, through: startAfter } };
  }
}
