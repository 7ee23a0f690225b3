// The shell of the orphan sweep: on the leader, every `intervalMs`, for each live
// volume it reads the recorded checkpoint pointers from the catalogue, forgets those of
// departed replicas that a member's pointer has caught up with, reads each pointer's
// checkpoint header from one of its sleds, lists every live sled's chunks (by owner
// volume) and checkpoint blobs (by `checkpoints/<volume id>/`), and deletes the orphans
// that sweep.ts confirms. The decisions are sweep.ts's; this file only moves requests.
//
// Order matters for safety: the headers are read before the sleds are listed, so an
// object listed was either referenced by a header read or can never be referenced
// again (later states only add chunk numbers at or above every header's
// nextChunkNumber); a new checkpoint recorded meanwhile only makes the sweep keep more.
//
// Snapshot ids that recorded checkpoints hold and no record names (a create the leader
// gave up or died in) are confirmed the same way, with the same grace, and dropped on
// every partition through `snapshots` (snapshots.ts). Snapshot records marked deleting
// (a delete cut off after its mark: a leader change, a drop a partition missed) are
// finished every pass, without a grace (the mark already hides them from every
// reader): their ids dropped on every partition again, then the records removed, at
// most `snapshotDeletesFinishedPerPassMax` a pass.
//
// Unfinished creates. A snapshot record still marked creating names its id as any
// record does, so the sweep never drops the trees of a create in flight, whichever
// leader runs it (the record is written before any take, so a tree the sweep can see
// was taken after its record was written). A creating record older than
// `snapshotCreatingGraceMs` is a create whose leader died or stalled: the sweep removes
// it, by compare-and-set on the revision this pass read, so a create listed meanwhile
// stays; the leader that wrote it can then never list it (its listing is a
// compare-and-set on that same revision), and its trees are orphans that later passes
// drop after the grace, as any. Volume records still creating past
// `volumeCreatingGraceMs` are removed likewise (catalogue.ts `abandonCreate`, the same
// removal a create of the name or a clone pin's delete makes). At most
// `staleCreatesRemovedPerPassMax` of each a pass.
//
// Idle cost (issue 14): a pass reads the volumes and their snapshot records from the KV
// store. It reads a volume's checkpoint pointers only if they may have changed since it
// last read them: a pointer is what keeps a blob, so one read late could let a new
// checkpoint's blob look orphaned, and the proof of "unchanged" is a watch that has
// delivered a mark written at the start of this pass (catalogue-changes.ts,
// PointerChanges); without that proof every pointer is read. It reads no partition
// records: it takes them from the leader's own copy (tenure.ts), which only this
// leader writes during its tenure, leaving out any whose write is in flight or unclear
// (they forget no pointer this pass). A checkpoint's header is read from a sled once
// per pointer (blob key, size and creation time: keys are never reused, blobs never
// rewritten) and kept while the pointer stays recorded, up to
// `sweepHeaderCacheChunksMax` chunk entries in all; headers beyond that are read every
// pass as before.
//
// A catalogue proven not to be the data's (store-marks.ts `mismatch`: another store's
// mark on a sled, a sled that witnessed a later catalogue sequence, a partition whose
// replicas hold a later epoch than its record) is not trusted here either: its pointers
// and snapshot records may be older than the replicas, and a snapshot taken since the
// copy (or a clone's base) would read as a create given up and be dropped. While the
// marks show it (asked at the start of a pass and again before anything is decided), a
// pass does nothing and sights nothing: what it had sighted is forgotten, and the record
// handed between leaders is emptied at the next pass that runs, so no grace is served
// meanwhile. Deletes left marked wait too, until the operator settles which catalogue
// is the data's. Marks not read yet (a new leader's first second) do not hold a pass
// up, unlike the leftover rules: every deletion here needs the catalogue to name the
// volume and its state, which a lost store does not, and whatever a restored copy
// makes an orphan needs a grace (more than the marks take to read) or was already an
// orphan by the same records when the copy was taken (sweep.ts, "Model").
//
// Sleds out for good: a pass that read every listed volume's recorded checkpoints (and
// was not refused by the marks) also tells the sled records (`references`) which sleds
// those checkpoints name, as blob locations or chunk copies, how far each partition's
// newest is, and the commit op each primary reported lately; sled-forgetting.ts decides
// from that which out sleds nothing can name any more, and sled-records.ts forgets them.
//
// Failure model: a header that no sled returns makes its partition keep everything
// this pass; a sled that is down, or a listing that fails, is skipped (its orphans
// start their grace again); a delete that fails is retried next pass; one that finds
// the object gone (NotFound) is done. Deletes go one at a time, at most
// `sweepDeletesPerPassMax` a pass. Lasting faults (a sled not listed, a header not
// read, the marks' refusal) are logged when they begin, once per `logRepeatIntervalMs`
// while they last and when they end, and a pass's deletes in one summary line
// (delete-summary.ts), not one line per object. Passes run only while this coordinator
// leads a ready tenure.
//
// Leader changes (sweep.ts, "Across leaders"): a tenure's first pass begins by claiming
// `sweep.sightings` (compare-and-set under its term) and takes the sightings handed
// on; every pass that sees orphans, or empties a record that held some, writes what
// they have served, before its deletes (compare-and-set over the tenure's last write).
// A claim or write that fails leaves this tenure to its own sightings: a failed write
// is claimed again, handing nothing on from before, at the next pass.

import {
  type CheckpointHeader,
  checkpointBlobPrefixOf,
  checkpointHeaderLengthBytes,
  checkpointHeaderLengthOf,
  readCheckpointHeader,
  sledLimits,
  subjects,
} from "@ballast/protocol";
import { RepeatLog, type Service } from "@ballast/runtime";
import {
  type Catalogue,
  type CheckpointPointer,
  creatingPastGrace,
  idOfVolume,
  isCreating,
  isDeleting,
  type SnapshotRecord,
  type SweepSightingsRecord,
  type Versioned,
  type VolumeRecord,
} from "./catalogue.ts";
import type { PointerChanges, PointerVersions } from "./catalogue-changes.ts";
import { now } from "./clock.ts";
import {
  reportAgeMsMax,
  snapshotCreatingGraceMs,
  sweepDeletesPerPassMax,
  sweepGraceMsDefault,
  sweepHeaderCacheChunksMax,
  sweepListPagesMax,
  sweepRequestDeadlineMs,
  sweepSightingsMax,
  volumeCreatingGraceMs,
} from "./constants.ts";
import { membersOf, type PartitionRecord, volumeIdOf } from "./decisions.ts";
import { DeleteSummary } from "./delete-summary.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { PassSchedule } from "./pass-schedule.ts";
import type { ChunkEntry } from "./purge.ts";
import {
  type CensusVolume,
  type CheckpointsNamed,
  censusOf,
  checkpointsNamedOf,
} from "./sled-forgetting.ts";
import { deleteForPass } from "./sled-objects.ts";
import type { SledRecords } from "./sled-records.ts";
import type { Snapshots } from "./snapshots.ts";
import type { StoreMarks } from "./store-marks.ts";
import {
  departedPointers,
  orphansOn,
  type PartitionCheckpoints,
  partitionCheckpointsOf,
  SweepConfirmations,
  type SweepTarget,
  type SweptInventory,
  type SweptVolume,
  type UnrecordedSnapshot,
  unrecordedSnapshotKey,
  unrecordedSnapshotsOf,
} from "./sweep.ts";
import type { Tenure, Tenures } from "./tenure.ts";

export interface SweeperOptions {
  service: Pick<Service, "bus" | "logger">;
  catalogue: Pick<
    Catalogue,
    | "volumesIncludingCreating"
    | "abandonCreate"
    | "abandonSnapshotCreate"
    | "checkpoints"
    | "forgetCheckpoint"
    | "snapshotsIncludingDeleting"
    | "claimSweepSightings"
    | "writeSweepSightings"
  >;
  heartbeats: Pick<Heartbeats, "list" | "listening">;
  tenures: Tenures;
  /** Whether the catalogue is proven not the sleds' data's (store-marks.ts). */
  marks: Pick<StoreMarks, "mismatch">;
  /**
   * Changes to checkpoint pointers; without it every pass reads every pointer. `retain`
   * is told the live volumes after each complete pass, so counts of gone names go.
   */
  pointers?: Pick<PointerChanges, "sync"> & Partial<Pick<PointerChanges, "retain">>;
  /**
   * Drops snapshot ids no record names and finishes deletes left marked; without it
   * the former are only counted and the latter wait for a retried delete.
   */
  snapshots?: Pick<Snapshots, "creatingIds" | "dropUnrecorded" | "finishDeleting">;
  /**
   * Told, after each pass that read every listed volume's recorded checkpoints, which
   * sleds they name and how far each partition's are behind its primary's commit op
   * (sled-forgetting.ts): how an out sled nothing names comes to be forgotten. Without
   * it none is.
   */
  references?: Pick<SledRecords, "referencesSeen">;
  graceMs?: number;
  /** How often a lasting condition is logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
}

/** The RepeatLog key of the marks' refusal. */
const refusedKey = "refused";

/** What the sweep has freed so far on this coordinator, for status. */
export interface SweepStatus {
  passes: number;
  objectsFreed: number;
  bytesFreed: number;
  /** Orphans waiting out their grace after the last pass. */
  orphansWaiting: number;
  /** Wall-clock time of the last complete pass, shown to operators; 0 before one. */
  lastPassAtMs: number;
  /** Snapshot ids no record named that were dropped on every partition. */
  snapshotsDropped: number;
  /** Volume and snapshot records of creates past their grace that were removed. */
  staleCreatesRemoved: number;
}

/**
 * Deletes left marked that one pass finishes at most: each may wait a step's deadline
 * for its drops, and the pass should end; the rest are finished by the next passes.
 */
const snapshotDeletesFinishedPerPassMax = 16;

/**
 * Creating records past their grace one pass removes at most, of volumes and of
 * snapshots each: one compare-and-set each; the rest wait for the next pass.
 */
const staleCreatesRemovedPerPassMax = 64;

export class Sweeper {
  private readonly graceMs: number;
  private confirmations: SweepConfirmations;
  private snapshotConfirmations: SweepConfirmations<UnrecordedSnapshot>;
  private confirmationsTenure: Tenure | undefined;
  /**
   * This tenure's hold on `sweep.sightings`: the revision of its last write, or
   * undefined until claimed, and after a write that failed (claimed again next pass).
   * `handed` says whether the record holds any sighting (so an empty pass rewrites it).
   */
  private sightings: { revision: number; handed: boolean } | undefined;
  /** The tenure of the last pass begun, and when (this coordinator's monotonic clock). */
  /** Headers read by earlier passes, by `headerCacheKey`, while their pointer is recorded. */
  private headers = new Map<string, CheckpointHeader>();
  /** Pointers read by earlier passes, by volume name, with the count they were read at. */
  private pointers = new Map<string, PointerRead>();
  private readonly status: SweepStatus = {
    passes: 0,
    objectsFreed: 0,
    bytesFreed: 0,
    orphansWaiting: 0,
    lastPassAtMs: 0,
    snapshotsDropped: 0,
    staleCreatesRemoved: 0,
  };

  private readonly schedule: PassSchedule;
  /**
   * Lasting conditions said once per `logRepeatIntervalMs`: the marks' refusal, sleds
   * not listed, headers not read, partitions kept whole.
   */
  private readonly repeats: RepeatLog;

  constructor(private readonly options: SweeperOptions) {
    this.schedule = new PassSchedule(options.tenures, options.heartbeats);
    this.repeats = new RepeatLog(options.logRepeatIntervalMs);
    this.graceMs = options.graceMs ?? sweepGraceMsDefault;
    this.confirmations = new SweepConfirmations(this.graceMs);
    this.snapshotConfirmations = new SweepConfirmations(this.graceMs, unrecordedSnapshotKey);
  }

  sweepStatus(): SweepStatus {
    return { ...this.status };
  }

  /**
   * A pass if one is due: the first of a tenure as soon as it is ready (a leader that
   * lasts less than an interval still serves its part of the graces, see sweep.ts
   * "Across leaders"), then one every `intervalMs`. Called often (sweepDueCheckMs).
   */
  sweepIfDue(intervalMs: number): Promise<void> {
    if (this.schedule.tenureOver()) this.forgetTenure();
    return this.schedule.ifDue(intervalMs, (tenure) => this.pass(tenure));
  }

  /**
   * The tenure of the last pass is over (pass-schedule.ts): its sightings go. The header
   * and pointer caches stay: they hold for any tenure (blobs are immutable, and pointers
   * are read again unless the watch proves them unchanged).
   */
  private forgetTenure(): void {
    this.confirmationsTenure = undefined;
    this.confirmations = new SweepConfirmations(this.graceMs);
    this.snapshotConfirmations = new SweepConfirmations(this.graceMs, unrecordedSnapshotKey);
    this.sightings = undefined;
    this.status.orphansWaiting = 0;
  }

  /** One pass, if this coordinator leads and no pass is running (pass-schedule.ts). */
  sweep(): Promise<void> {
    return this.schedule.run((tenure) => this.pass(tenure));
  }

  private async pass(tenure: Tenure): Promise<void> {
    const { catalogue, heartbeats, tenures } = this.options;
    if (this.refused(tenure)) return;
    if (this.confirmationsTenure !== tenure) {
      this.confirmationsTenure = tenure;
      this.confirmations = new SweepConfirmations(this.graceMs);
      this.snapshotConfirmations = new SweepConfirmations(this.graceMs, unrecordedSnapshotKey);
      this.sightings = undefined;
      // First, before anything this pass reads: the claim's time is where what earlier
      // tenures handed on starts serving again, and all of this pass counts.
      await this.claimSightings(tenure, true);
    } else if (this.sightings === undefined) {
      await this.claimSightings(tenure, false);
    }
    const confirmations = this.confirmations;
    const unrecorded: UnrecordedSnapshot[] = [];
    const deleting: { volume: VolumeRecord; record: Versioned<SnapshotRecord> }[] = [];
    // Read once, at the start of the pass: past their grace by the wall clock their
    // `creatingSinceMs` was written on (the writer's; see `creatingPastGrace`).
    const wallMs = Date.now();
    const staleSnapshots: Versioned<SnapshotRecord>[] = [];
    const volumesById = new Map<string, VolumeRecord>();
    const sleds = heartbeats
      .list()
      .filter((member) => member.kind === "sled" && member.alive)
      .map((member) => member.id);
    const orphans: SweepTarget[] = [];
    /** Sleds whose listing of some volume failed this pass: how many, the first's error. */
    const listFailures = new Map<string, { volumes: number; volume: string; error: string }>();
    const records = settledRecords(tenure);
    const headers = { kept: new Map<string, CheckpointHeader>(), chunks: 0 };
    // Before the volumes are listed: what they hold is read after the mark.
    const versions = await this.options.pointers
      ?.sync(sweepRequestDeadlineMs)
      .catch(() => undefined);
    const pointersRead = new Map<string, PointerRead>();
    // What each listed volume's checkpoints name, for `references` (kept small: the
    // pass's tables go with each volume).
    const named: { volumeId: string; checkpoints: Map<number, CheckpointsNamed | undefined> }[] =
      [];
    const volumeRecords = await catalogue.volumesIncludingCreating();
    const staleVolumes = volumeRecords.filter((record) =>
      creatingPastGrace(record.value, volumeCreatingGraceMs, wallMs),
    );
    const listedVolumes = volumeRecords
      .map((record) => record.value)
      .filter((volume) => !isCreating(volume));
    for (const volume of listedVolumes) {
      if (tenures.current() !== tenure) return;
      const pointers = await this.pointersOf(volume, versions, pointersRead);
      const read = await this.readVolume(volume, pointers, records.get(volume.name) ?? [], headers);
      if (this.options.references !== undefined) {
        const checkpoints = new Map<number, CheckpointsNamed | undefined>();
        for (const [partition, state] of read.partitions) {
          checkpoints.set(partition, checkpointsNamedOf(state));
        }
        named.push({ volumeId: read.volumeId, checkpoints });
      }
      volumesById.set(read.volumeId, volume);
      const snapshotRecords = (await catalogue.snapshotsIncludingDeleting(volume.name)).filter(
        (record) => record.value.volumeId === read.volumeId,
      );
      // A record in any state counts as recorded: a marked one's delete is finished
      // below, not after an orphan's grace, and a creating one's id is a create in
      // flight, or one past its grace whose record is removed below (its id counts as
      // unrecorded from the next pass on).
      const recordedIds = new Set(snapshotRecords.map((record) => record.value.id));
      for (const record of snapshotRecords) {
        if (isDeleting(record.value)) deleting.push({ volume, record });
        if (creatingPastGrace(record.value, snapshotCreatingGraceMs, wallMs)) {
          staleSnapshots.push(record);
        }
      }
      unrecorded.push(
        ...unrecordedSnapshotsOf(
          read,
          recordedIds,
          this.options.snapshots?.creatingIds() ?? new Set(),
        ),
      );
      for (const sled of sleds) {
        const inventory = await this.inventoryOf(sled, read).catch((error) => {
          const failed = listFailures.get(sled);
          if (failed === undefined) {
            listFailures.set(sled, {
              volumes: 1,
              volume: read.name,
              error: (error as Error).message,
            });
          } else failed.volumes++;
          return undefined;
        });
        if (inventory !== undefined) orphans.push(...orphansOn(sled, read, inventory));
      }
    }
    this.sayListFailures(sleds, listFailures);
    // Headers of pointers no longer recorded are dropped with them, and pointers with
    // their volumes.
    this.headers = headers.kept;
    this.pointers = pointersRead;
    // In step with the line above: the watch forgets the counts of names this pass did
    // not find live, as the sweep forgets their pointers (catalogue-changes.ts).
    this.options.pointers?.retain?.([...volumesById.values()].map((volume) => volume.name));
    // The marks may have changed while this pass read (a sled back with another store's
    // mark, a partition found behind): asked again before anything is sighted.
    if (this.refused(tenure)) return;
    this.tellReferences(tenure, named);
    const due = confirmations.confirm(orphans, now());
    this.status.orphansWaiting = confirmations.waiting - due.length;
    const snapshotsDue = this.snapshotConfirmations.confirm(unrecorded, now());
    // Before the deletes, which may take long: the next leader's claim then follows
    // this pass closely, and serving counts only up to the sightings.
    await this.handSightings(tenure);
    // First: a marked record is a delete a user asked for and may be waiting on.
    for (const { volume, record } of deleting.slice(0, snapshotDeletesFinishedPerPassMax)) {
      if (tenures.current() !== tenure) return;
      await this.finishDeleting(volume, record);
    }
    for (const record of staleSnapshots.slice(0, staleCreatesRemovedPerPassMax)) {
      if (tenures.current() !== tenure) return;
      await this.removeStaleCreate("snapshot", record.value, () =>
        catalogue.abandonSnapshotCreate(record.value.volume, record.value.name, record.revision),
      );
    }
    for (const record of staleVolumes.slice(0, staleCreatesRemovedPerPassMax)) {
      if (tenures.current() !== tenure) return;
      await this.removeStaleCreate("volume", record.value, () =>
        catalogue.abandonCreate(record.value.name, record.revision),
      );
    }
    const deleted = new DeleteSummary();
    try {
      for (const target of due.slice(0, sweepDeletesPerPassMax)) {
        if (tenures.current() !== tenure) return;
        await deleteForPass(this.options.service.bus, target, deleted, this.status);
      }
    } finally {
      deleted.log(this.options.service.logger, "orphans no recorded checkpoint references");
    }
    for (const snapshot of snapshotsDue) {
      const volume = volumesById.get(snapshot.volumeId);
      if (tenures.current() !== tenure || volume === undefined) return;
      await this.dropSnapshot(volume, snapshot);
    }
    this.status.passes++;
    this.status.lastPassAtMs = Date.now();
  }

  /**
   * Tells `references` what this pass read of every listed volume, with the commit op
   * each partition's primary reported lately (sled-forgetting.ts), or that it cannot
   * vouch for all of them: a partition record of a listed volume being written (its
   * primary may be changing) leaves the census incomplete.
   */
  private tellReferences(
    tenure: Tenure,
    volumes: readonly {
      volumeId: string;
      checkpoints: Map<number, CheckpointsNamed | undefined>;
    }[],
  ): void {
    const references = this.options.references;
    if (references === undefined) return;
    const nowMs = now();
    const commitOpNums = new Map<string, Map<number, number | undefined>>();
    for (const volume of volumes) commitOpNums.set(volume.volumeId, new Map());
    for (const [key, { value: record }] of tenure.records) {
      const partitions = commitOpNums.get(volumeIdOf(record));
      if (partitions === undefined) continue;
      if (tenure.inflight.has(key) || tenure.unsure.has(key)) {
        references.referencesSeen(tenure, undefined);
        return;
      }
      partitions.set(record.partition, tenure.leases.reportOf(record, nowMs)?.commitOpNum);
    }
    const census: CensusVolume[] = volumes.map((volume) => ({
      ...volume,
      commitOpNums: commitOpNums.get(volume.volumeId)!,
    }));
    // reportOf gives only reports received within reportAgeMsMax.
    references.referencesSeen(tenure, censusOf(census, nowMs - reportAgeMsMax));
  }

  /**
   * Whether the store marks prove this catalogue not the data's now (see the header): if so,
   * forgets this tenure's sightings and has the next pass that runs claim the handed-on
   * record afresh, emptying it. Said when it begins, at most once per
   * `logRepeatIntervalMs` while it lasts, and when it ends.
   */
  private refused(tenure: Tenure): boolean {
    const { marks, service } = this.options;
    const refusal = marks.mismatch();
    if (refusal === undefined) {
      const ended = this.repeats.end(refusedKey);
      if (ended !== undefined) {
        service.logger.info(
          { repeatsSuppressed: ended.suppressed },
          "the orphan sweep runs again: the control store's marks no longer show it older than the data",
        );
      }
      return false;
    }
    this.confirmationsTenure = tenure;
    this.confirmations = new SweepConfirmations(this.graceMs);
    this.snapshotConfirmations = new SweepConfirmations(this.graceMs, unrecordedSnapshotKey);
    this.sightings = undefined;
    this.status.orphansWaiting = 0;
    const due = this.repeats.due(refusedKey, now());
    if (due !== undefined) {
      // Info: the marks say why as an error themselves when it is more than a wait.
      service.logger.info(
        { reason: refusal, ...(due.first ? {} : { repeatsSuppressed: due.suppressed }) },
        "orphan sweep skipped: nothing is deleted or dropped by this catalogue's pointers and records",
      );
    }
    return true;
  }

  /**
   * Claims `sweep.sightings` for this tenure. `inherit`: this is the tenure's first
   * pass, so what earlier tenures handed on is taken; a claim in a later pass (the
   * first failed) takes nothing and empties them, since this tenure's passes before it
   * handed nothing on and may have seen some of those orphans referenced. A failure
   * leaves the tenure to its own sightings, as before there were any to hand on.
   */
  private async claimSightings(tenure: Tenure, inherit: boolean): Promise<void> {
    const claimed = await this.options.catalogue
      .claimSweepSightings(tenure.term, inherit)
      .catch((error: Error) => {
        this.options.service.logger.warn(
          { error: error.message },
          "could not claim the sweep's sightings: this tenure counts its own only",
        );
        return undefined;
      });
    if (claimed === undefined) return;
    const claimedAtMs = now();
    const found = inherit ? claimed.found : undefined;
    this.sightings = {
      revision: claimed.revision,
      handed: found !== undefined && (found.objects.length > 0 || found.snapshots.length > 0),
    };
    if (found !== undefined) {
      this.confirmations.inherit(found.objects, claimedAtMs);
      this.snapshotConfirmations.inherit(found.snapshots, claimedAtMs);
    }
  }

  /**
   * Hands this pass's sightings on, by compare-and-set over this tenure's last write:
   * one that fails (another leader claimed, or the store) leaves them unwritten and the
   * claim to be made again next pass. Nothing is written while there is nothing to
   * hand on and nothing was handed.
   */
  private async handSightings(tenure: Tenure): Promise<void> {
    const held = this.sightings;
    if (held === undefined) return;
    const record: SweepSightingsRecord = {
      term: tenure.term,
      objects: this.confirmations.sightings(sweepSightingsMax),
      snapshots: this.snapshotConfirmations.sightings(sweepSightingsMax),
    };
    const empty = record.objects.length === 0 && record.snapshots.length === 0;
    if (empty && !held.handed) return;
    this.sightings = undefined;
    const revision = await this.options.catalogue
      .writeSweepSightings(record, held.revision)
      .catch(() => undefined);
    if (revision !== undefined) this.sightings = { revision, handed: !empty };
  }

  /**
   * A live volume's recorded checkpoints, partition by partition; forgets the pointers
   * of departed replicas on the way (they still count in this pass). `records` are the
   * leader's settled records of the volume (`settledRecords`); `headers` collects the
   * headers this pass used, to keep for the next.
   */
  private async readVolume(
    volume: VolumeRecord,
    pointers: ReadonlyMap<number, ReadonlyMap<string, CheckpointPointer>>,
    records: readonly PartitionRecord[],
    headers: { kept: Map<string, CheckpointHeader>; chunks: number },
  ): Promise<SweptVolume> {
    const { catalogue, service } = this.options;
    const volumeId = idOfVolume(volume);
    for (const record of records) {
      const recorded = pointers.get(record.partition);
      if (volumeIdOf(record) !== volumeId || recorded === undefined) continue;
      const prefix = checkpointBlobPrefixOf(volumeId, record.partition);
      for (const { node, opNum } of departedPointers(membersOf(record), recorded, prefix)) {
        if (await catalogue.forgetCheckpoint(volume.name, record.partition, node, opNum)) {
          service.logger.info(
            { volume: volume.name, partition: record.partition, node, opNum },
            "forgot the checkpoint pointer of a departed replica: a member's is as new",
          );
        }
      }
    }
    const partitions = new Map<number, PartitionCheckpoints>();
    for (const [partition, recorded] of pointers) {
      const read = new Map<string, CheckpointHeader>();
      for (const pointer of recorded.values()) {
        const key = headerCacheKey(pointer);
        const header = this.headers.get(key) ?? (await this.headerOf(pointer));
        if (header === undefined) break;
        read.set(pointer.blobKey, header);
        if (
          !headers.kept.has(key) &&
          headers.chunks + header.chunks.length <= sweepHeaderCacheChunksMax
        ) {
          headers.kept.set(key, header);
          headers.chunks += header.chunks.length;
        }
      }
      const state = partitionCheckpointsOf(volumeId, partition, recorded, read);
      const key = `unreadable\n${volumeId}/${partition}`;
      if (state.kind === "unreadable") {
        const due = this.repeats.due(key, now());
        if (due !== undefined) {
          service.logger.warn(
            {
              volume: volume.name,
              partition,
              reason: state.reason,
              ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
            },
            "keeping every object of a partition this sweep: its checkpoints could not all be read",
          );
        }
      } else this.repeats.end(key);
      partitions.set(partition, state);
    }
    return { name: volume.name, volumeId, partitions };
  }

  /**
   * A volume's recorded pointers: those an earlier pass read if the watch proves none
   * changed since (`versions`, of a mark written at the start of this pass), else read
   * from the store now. Records what it used in `used`.
   */
  private async pointersOf(
    volume: VolumeRecord,
    versions: PointerVersions | undefined,
    used: Map<string, PointerRead>,
  ): Promise<ReadonlyMap<number, ReadonlyMap<string, CheckpointPointer>>> {
    const previous = this.pointers.get(volume.name);
    const count = versions?.counts.get(volume.name) ?? 0;
    if (
      versions !== undefined &&
      previous !== undefined &&
      previous.generation === versions.generation &&
      previous.count === count
    ) {
      used.set(volume.name, previous);
      return previous.pointers;
    }
    const pointers = await this.options.catalogue.checkpoints(volume.name);
    if (versions !== undefined) {
      used.set(volume.name, { generation: versions.generation, count, pointers });
    }
    return pointers;
  }

  /** A checkpoint's header from the first of its sleds that returns it. */
  private async headerOf(pointer: CheckpointPointer): Promise<CheckpointHeader | undefined> {
    const problems: string[] = [];
    const { logger } = this.options.service;
    const key = `header\n${pointer.blobKey}`;
    for (const sled of pointer.sleds) {
      try {
        const header = await this.readHeader(sled, pointer);
        const ended = this.repeats.end(key);
        if (ended !== undefined) {
          logger.info(
            { blob: pointer.blobKey, repeatsSuppressed: ended.suppressed },
            "read a recorded checkpoint's header that could not be read before",
          );
        }
        return header;
      } catch (error) {
        problems.push(`${sled}: ${(error as Error).message}`);
      }
    }
    const due = this.repeats.due(key, now());
    if (due !== undefined) {
      logger.warn(
        {
          blob: pointer.blobKey,
          problems,
          ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
        },
        "could not read a recorded checkpoint's header from any of its sleds",
      );
    }
    return undefined;
  }

  private async readHeader(sled: string, pointer: CheckpointPointer): Promise<CheckpointHeader> {
    const { bus } = this.options.service;
    const subject = subjects.node.build("sled", sled);
    const options = { deadlineMs: sweepRequestDeadlineMs };
    const key = pointer.blobKey;
    const first = await bus.request(
      subject,
      { type: "sled.blob.get.v1", key, offset: 0, length: checkpointHeaderLengthBytes },
      options,
    );
    if (first.bytes !== pointer.bytes) {
      throw new Error(`blob holds ${first.bytes} bytes, its pointer says ${pointer.bytes}`);
    }
    const headerEnd = checkpointHeaderLengthBytes + checkpointHeaderLengthOf(first.data);
    if (headerEnd > first.bytes) throw new Error(`header of ${headerEnd} bytes overruns the blob`);
    const parts: Uint8Array[] = [first.data.subarray(0, checkpointHeaderLengthBytes)];
    let offset = checkpointHeaderLengthBytes;
    while (offset < headerEnd) {
      const length = Math.min(sledLimits.readBytesMax, headerEnd - offset);
      const got = await bus.request(
        subject,
        { type: "sled.blob.get.v1", key, offset, length },
        options,
      );
      if (got.data.byteLength === 0) throw new Error(`empty read at ${offset} of ${headerEnd}`);
      parts.push(got.data);
      offset += got.data.byteLength;
    }
    return readCheckpointHeader(Buffer.concat(parts)).header;
  }

  private async inventoryOf(sled: string, volume: SweptVolume): Promise<SweptInventory> {
    const { bus } = this.options.service;
    const subject = subjects.node.build("sled", sled);
    const options = { deadlineMs: sweepRequestDeadlineMs };
    const chunks: ChunkEntry[] = [];
    let startAfter: string | undefined;
    for (let page = 0; page < sweepListPagesMax; page++) {
      const listed = await bus.request(
        subject,
        {
          type: "sled.chunk.list.v1",
          volume: volume.name,
          startAfter,
          limit: sledLimits.chunkListEntriesMax,
        },
        options,
      );
      chunks.push(...listed.chunks);
      if (!listed.truncated || listed.chunks.length === 0) break;
      startAfter = listed.chunks.at(-1)!.chunkId;
    }
    const blobs: { key: string; bytes: number }[] = [];
    let keyAfter: string | undefined;
    for (let page = 0; page < sweepListPagesMax; page++) {
      const listed = await bus.request(
        subject,
        {
          type: "sled.blob.list.v1",
          prefix: checkpointBlobPrefixOf(volume.volumeId),
          startAfter: keyAfter,
          limit: sledLimits.blobListEntriesMax,
        },
        options,
      );
      blobs.push(...listed.blobs.map((blob) => ({ key: blob.key, bytes: blob.bytes })));
      if (!listed.truncated || listed.blobs.length === 0) break;
      keyAfter = listed.blobs.at(-1)!.key;
    }
    return { chunks, blobs };
  }

  /** Drops an unrecorded snapshot id on every partition (retried next pass if not all did). */
  private async dropSnapshot(volume: VolumeRecord, snapshot: UnrecordedSnapshot): Promise<void> {
    const { logger } = this.options.service;
    const { snapshots } = this.options;
    if (snapshots === undefined) return;
    // Asked once more just before the drop: a create may have begun since the pass began.
    if (snapshots.creatingIds().has(snapshot.id)) return;
    const dropped = await snapshots.dropUnrecorded(volume, snapshot.id).catch(() => false);
    if (!dropped) {
      logger.warn({ ...snapshot }, "could not drop an unrecorded snapshot on every partition");
      return;
    }
    this.status.snapshotsDropped++;
    logger.info(
      { ...snapshot },
      "dropped a snapshot no record names (a create given up or cut off by a leader change)",
    );
  }

  /**
   * Removes the record of a create past its grace by `remove`, a compare-and-set on the
   * revision this pass read: false, it was listed or written again since, and stays.
   * One that fails is tried again next pass.
   */
  private async removeStaleCreate(
    kind: "volume" | "snapshot",
    record: { name: string; id?: string; creatingSinceMs?: number; volume?: string },
    remove: () => Promise<boolean>,
  ): Promise<void> {
    const { logger } = this.options.service;
    const where = {
      kind,
      ...(kind === "snapshot" ? { volume: record.volume } : {}),
      name: record.name,
      id: record.id,
      creatingSinceMs: record.creatingSinceMs,
    };
    const removed = await remove().catch((error: Error) => {
      logger.warn({ ...where, error: error.message }, "could not remove a stale creating record");
      return false;
    });
    if (!removed) return;
    this.status.staleCreatesRemoved++;
    logger.info(
      where,
      "removed the record of a create past its grace (its leader died or stalled): it can never be listed",
    );
  }

  /** Finishes a snapshot delete left marked (retried next pass if it does not finish). */
  private async finishDeleting(
    volume: VolumeRecord,
    record: Versioned<SnapshotRecord>,
  ): Promise<void> {
    const { snapshots, service } = this.options;
    if (snapshots === undefined) return;
    const finished = await snapshots.finishDeleting(volume, record).catch(() => false);
    if (!finished) {
      service.logger.warn(
        { volume: volume.name, name: record.value.name, id: record.value.id },
        "could not finish a snapshot delete that was cut off; trying again next pass",
      );
    }
  }

  /**
   * Says which sleds could not be listed this pass (some volume of theirs): when it
   * begins, once per `logRepeatIntervalMs` while it lasts, and when a pass lists every
   * volume of the sled again.
   */
  private sayListFailures(
    sleds: readonly string[],
    failures: ReadonlyMap<string, { volumes: number; volume: string; error: string }>,
  ): void {
    const { logger } = this.options.service;
    for (const sled of sleds) {
      const key = `list\n${sled}`;
      const failed = failures.get(sled);
      if (failed === undefined) {
        const ended = this.repeats.end(key);
        if (ended !== undefined) {
          logger.info(
            { sled, repeatsSuppressed: ended.suppressed },
            "listed a sled's objects to sweep again",
          );
        }
        continue;
      }
      const due = this.repeats.due(key, now());
      if (due === undefined) continue;
      logger.warn(
        {
          sled,
          volumesNotListed: failed.volumes,
          volume: failed.volume,
          error: failed.error,
          ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
        },
        "could not list a sled's objects to sweep: its orphans wait",
      );
    }
  }
}

/**
 * What identifies a checkpoint blob's content: its key (node, op, session and upload
 * number: never reused), size and creation time, so a header read once stands for it.
 */
export function headerCacheKey(pointer: CheckpointPointer): string {
  return `${pointer.blobKey}|${pointer.bytes}|${pointer.createdAtMs}`;
}

/**
 * The leader's partition records by volume name, leaving out those with a write in
 * flight or unclear: the rest are what the store holds, since only this leader writes
 * them during its tenure (every write is fenced by its term) and its copy takes each
 * write it makes, and the records of a volume it creates, as they land.
 */
export function settledRecords(tenure: Tenure): Map<string, PartitionRecord[]> {
  const byVolume = new Map<string, PartitionRecord[]>();
  for (const [key, entry] of tenure.records) {
    if (tenure.inflight.has(key) || tenure.unsure.has(key)) continue;
    const list = byVolume.get(entry.value.volume) ?? [];
    list.push(entry.value);
    byVolume.set(entry.value.volume, list);
  }
  return byVolume;
}

/** A volume's pointers as a pass read them, and the watch's count they were read at. */
interface PointerRead {
  generation: number;
  count: number;
  pointers: ReadonlyMap<number, ReadonlyMap<string, CheckpointPointer>>;
}
