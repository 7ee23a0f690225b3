// The cluster's control state in the JetStream KV bucket `ballast-control`, as JSON so
// an operator can read it with any NATS tool:
//
//   volume.<name>                 {name, id, sizeBytes, replicaCount, partitionBytes,
//                                  createdAtMs, term, parent?, creatingSinceMs?,
//                                  clonePins?}  (term: of the last resize; parent: a
//                                  clone's, clones.ts; creatingSinceMs: a create not
//                                  finished, no volume yet; clonePins: see "Clone pins")
//   partition.<name>.<index>      {volume, volumeId, partition, partitionStart,
//                                  partitionBytes, epoch, primary, secondaries, joining,
//                                  learners, disks, term}  (disks: see "Lost disks",
//                                  decisions.ts)
//   checkpoint.<name>.<index>.<node>  the replica's newest checkpoint on sleds
//                                  {opNum, blobKey, sleds, bytes, createdAtMs}
//   checkpoint._mark              written by each orphan-sweep pass, to know when the
//                                  catalogue watch has caught up (sweeper.ts)
//   sweep.sightings               {term, objects: [[key, servedMs]], snapshots: [[key,
//                                  servedMs]]}: the orphans the sweep has seen and how
//                                  much of their grace they have served, handed from
//                                  leader to leader (sweeper.ts, sweep.ts); written by
//                                  compare-and-set under the writer's term
//   leader                        {coordinator, term}   (see leadership.ts)
//   incarnation.<name>            {incarnation}: the last incarnation number of the
//                                  name, never deleted
//   sequence                      {sequence, recent?: [[sequence, nonce]]}: raised by
//                                  one before each volume or snapshot create, never
//                                  lowered; witnessed on the sleds (store-marks.ts)
//   snapshot.<name>.<snapshot>    {volume, name, id, volumeId, createdAtMs, partitions:
//                                  [{index, opNum}], sizeBytes?, creatingSinceMs?,
//                                  deletingSinceMs?, clonePins?, rollbacks?} (see
//                                  snapshots.ts; creatingSinceMs: a create not finished,
//                                  no snapshot yet; deletingSinceMs: a delete has begun;
//                                  readers see no snapshot in either state; clonePins:
//                                  "Clone pins"; rollbacks: rollbacks to it running,
//                                  which hold off its delete);
//                                  removed with their incarnation by the volume delete,
//                                  and again when its purge record is forgotten
//   purge.<volume id>             {volume, volumeId, deletedAtMs, headNodes?}: a
//                                  deleted incarnation whose chunks and blobs may
//                                  remain on sleds, and the head nodes that may hold
//                                  its replicas (owed a drop until they answer; see
//                                  purge.ts); written before the volume record is
//                                  deleted, removed once purged
//   sled.<id>                     {id, firstSeenMs, lastSeenMs, state, since}: a sled
//                                  the leader has heard of, in or out of service
//                                  (see sleds.ts); deleted once it is forgotten, out
//                                  for good and named by nothing (sled-forgetting.ts)
//
// Incarnations: a volume's `id` is `<incarnation>-<nonce>` (@ballast/protocol
// incarnation.ts), the number taken from `incarnation.<name>` by compare-and-set, so ids
// of one name are ordered and never reused. Each partition record carries it as
// `volumeId`, so a
// volume deleted and created again under the same name is another volume to every head
// node. Records written before ids existed have none: their id is the name.
//
// Every change is a compare-and-set: `create` refuses a key that exists, and `update`
// names the revision it read, so a decision taken on a stale view is refused, not
// applied. Partition writes are also fenced by leadership term: a writer whose term is
// below the record's has been deposed and writes nothing, and a new leader rewrites
// every partition record with its term before it decides anything (`fence`), so a
// revision an ex-leader read before the takeover no longer matches.
//
// A volume is created in three writes (`createVolume`): its volume record, marked
// creating (`creatingSinceMs`), by `create`, so that of two creates of one name only one
// goes on, whoever leads; then its partitions; then the record again without the mark,
// by compare-and-set on the revision it was created at. Readers leave a creating record
// out, so a volume that is listed always has all its partitions. Partition records left
// by a create or a delete that died halfway belong to no listed volume (or to another
// id) and are overwritten by the next create of that name, but never one a later leader
// wrote, nor one of a later incarnation: a create stamps its term and refuses a record
// with a higher one, or of a higher incarnation number, so a create whose leader stalled
// past its lease and lost its creating record cannot overwrite the partitions of the
// create that took the name since, whichever of the two leaders' terms is higher. A creating record older than
// `volumeCreatingGraceMs` is taken for one whose leader died, and removed by
// compare-and-set on its revision; the leader that wrote it, should it resume, then
// fails its last compare-and-set, and never lists it.
//
// Clone pins. Creates, deletes and clones run one at a time in a leader, but a leader
// that stalls (a GC pause, SIGSTOP, a paused VM) past its lease acts on what it checked
// before the stall beside the leader that took over. So every check a clone and a delete
// make of each other is made on the record a compare-and-set then writes: a clone pins
// its parent snapshot's record and its parent volume's (`clonePins`, each a compare-and-
// set on the revision whose state it checked: the snapshot not being deleted, the volume
// of the snapshot's incarnation) between writing its creating record and listing it; a
// snapshot delete marks its record deleting, and a volume delete deletes its record, by
// compare-and-set on a revision that carries no live pin. A pin is live while the
// clone's record may still be listed, or is: a pin names the revision of the clone's
// creating record, and a read of the clone's key at a later revision that does not hold
// the clone's id proves it can never be listed (clone-pins.ts has the argument, step by
// step). Records written before pins have none and read as before; clones made before
// them are found by their records (clones.ts `clonesOf`), as before.
//
// Reading. Every record is decoded by its kind's schema (@ballast/protocol records.ts):
// a record that does not decode (damaged, or written by something else) is never acted
// on. A read of one key fails with its UnreadableRecordError (the request that needed it
// is refused, naming the key). A listing either refuses the same way (`refuse`, the
// default: for whoever would act on what is missing, such as the sweeps, which delete
// what no record names, or a delete's check for clones), or leaves the record out
// (`skip`: for serving, listing and reconciling every other volume). Either way the
// record is reported once per revision (`UnreadableRecords`: a warning naming the key,
// and a metric) and the key stays known as unreadable until a read of it decodes, so
// the reconciler does not take a partition it cannot read for one deleted. A key that
// is removed instead (an operator's repair) is no longer listed, and so never read
// again by the listings: every listing reads on its own each unreadable key under its
// filter that it did not find, and one found gone is unreadable no more. Before, it
// stayed so for the process's life, and the reconciler kept the record it last held of
// the partition (or volume) for as long as it led, acting on one that no longer exists.
//
// Keys are listed through the store's `keys`: on JetStream, kv-keys.ts, which leaves no
// consumer on the server (the KV's own `keys()` left one per call) and returns each
// key once. Every listing here is de-duplicated all the same (the KV's own listing, as
// tests may pass the bucket itself, returns a key twice when it is updated meanwhile),
// so no reader ever sees a partition twice.

import { randomBytes } from "node:crypto";
import {
  BallastError,
  type ControlRecordKind,
  type ControlRecordOf,
  checkpointBlobPrefixOf,
  decodeControlRecord,
  ErrorCode,
  incarnationOf,
  isUnreadableRecord,
  limits,
  type UnreadableRecordError,
} from "@ballast/protocol";
import type { Counter, Logger, Meter } from "@ballast/runtime";
import type { Watch } from "./catalogue-changes.ts";
import { parentAfterResize } from "./clones.ts";
import { volumeCreatingGraceMs } from "./constants.ts";
import { type PartitionRecord, volumeIdOf } from "./decisions.ts";
import type { PurgeRecord } from "./purge.ts";
import type { SledRecord } from "./sleds.ts";
import { newStoreId } from "./store-marks.ts";

export interface VolumeRecord {
  name: string;
  /** The incarnation: never reused. Absent in records written before incarnations. */
  id?: string;
  sizeBytes: number;
  replicaCount: number;
  partitionBytes: number;
  createdAtMs: number;
  /** The leadership term of the last resize; absent until the volume is resized. */
  term?: number;
  /** A clone's parent snapshot (clones.ts); absent for a volume that is no clone. */
  parent?: VolumeParentRecord;
  /**
   * Wall-clock time the create that wrote this record began: it is no volume yet (see
   * the header). Absent once the create finished, as in every record older code wrote.
   */
  creatingSinceMs?: number;
  /** Clones of this volume's snapshots, pinned as they were created (see the header). */
  clonePins?: ClonePin[];
  /**
   * A shrink to this size began (its partitions' ends may be lowered to it, its tail
   * partly trimmed) and has not finished: the resize that finishes it writes the size
   * and removes this (resize.ts, "A shrink begun"). Ignored unless below `sizeBytes`
   * and `shrinkingFrom` is the size.
   */
  shrinkingTo?: number;
  /**
   * The size the shrink began from. A coordinator older than the mark copies it through
   * its own resizes: a size changed since (a grow by such a writer, whose new tail holds
   * acknowledged writes) makes the mark stale, never a shrink to finish.
   */
  shrinkingFrom?: number;
}

/**
 * A clone being created, or created, pinned on its parent snapshot's record and its
 * parent volume's: a snapshot delete or a volume delete is refused while a live pin
 * names it (clone-pins.ts).
 */
export interface ClonePin {
  /** The clone: its name and incarnation. */
  volume: string;
  volumeId: string;
  /**
   * The revision its creating record was written at: the clone is listed only by a
   * compare-and-set on it, so once the clone's key has moved past it without holding
   * the clone, the clone can never be listed.
   */
  revision: number;
  /** The parent snapshot's id. */
  snapshotId: string;
  /** Wall-clock time of the pin: a pin of a create older than the grace may be undone. */
  sinceMs: number;
}

/**
 * Whether the create that wrote a volume or snapshot record has not finished: it is no
 * volume, or no snapshot, yet.
 */
export function isCreating(record: { creatingSinceMs?: number }): boolean {
  return record.creatingSinceMs !== undefined;
}

/** Which snapshot a clone layers on, and below which byte it falls through to it. */
export interface VolumeParentRecord {
  volume: string;
  volumeId: string;
  snapshot: string;
  snapshotId: string;
  overlap: number;
}

export interface Versioned<T> {
  value: T;
  revision: number;
}

export interface CheckpointPointer {
  opNum: number;
  blobKey: string;
  sleds: string[];
  bytes: number;
  createdAtMs: number;
}

/**
 * One stored entry, as the KV store returns it: the bytes, decoded only by
 * `decodeControlRecord` (through `Catalogue`, or leadership.ts for the leader record).
 */
export interface StoredEntry {
  revision: number;
  operation: "PUT" | "DEL" | "PURGE";
  value: Uint8Array;
}

/**
 * What a listing does with a record that does not decode: `refuse` fails the listing
 * with the record's UnreadableRecordError, `skip` leaves the record out. Both report it.
 */
export type UnreadablePolicy = "refuse" | "skip";

/**
 * The control records found unreadable: each warned of once per revision, and counted
 * (`ballast_control_records_unreadable`), until a read of its key decodes again or
 * finds it gone (see the header: also after a listing no longer finds it).
 */
export class UnreadableRecords {
  private readonly revisions = new Map<string, number>();
  private readonly counter: Counter | undefined;

  constructor(
    private readonly logger?: Pick<Logger, "warn" | "info">,
    meter?: Meter,
  ) {
    this.counter = meter?.createCounter("ballast_control_records_unreadable", {
      description:
        "control records found unreadable (damaged, or written by something else), each revision once",
    });
  }

  /** Reports `error` for the key's `revision`, the first time that revision is seen. */
  saw(error: UnreadableRecordError, revision: number): void {
    if (this.revisions.get(error.key) === revision) return;
    this.revisions.set(error.key, revision);
    this.counter?.add(1, { kind: error.kind });
    this.logger?.warn(
      { key: error.key, kind: error.kind, revision, problem: error.problem },
      "a control record does not decode: it is not acted on (skipped where a listing may do without it, refused where it may not) until it is repaired or rewritten",
    );
  }

  /** The key decoded, or holds nothing (`gone`): no longer unreadable. */
  cleared(key: string, gone = false): void {
    if (!this.revisions.delete(key)) return;
    this.logger?.info(
      { key },
      gone ? "a control record that did not decode is gone" : "a control record decodes again",
    );
  }

  /** Whether the key's last read did not decode. */
  has(key: string): boolean {
    return this.revisions.has(key);
  }

  /** The keys whose last read did not decode. */
  keys(): string[] {
    return [...this.revisions.keys()];
  }
}

/**
 * The part of the JetStream KV API the coordinator uses: a port, so that tests run the
 * catalogue and leadership on an in-memory store.
 */
export interface ControlStore {
  get(key: string): Promise<StoredEntry | null>;
  create(key: string, value: Uint8Array): Promise<number>;
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
  delete(key: string, options?: { previousSeq?: number }): Promise<void>;
  /**
   * The live keys matching `filter`, at least every key live before the call began and
   * not deleted before it ended (kv-keys.ts), leaving nothing behind on the server.
   */
  keys(filter: string): Promise<AsyncIterable<string>>;
  /**
   * The key's last entry as the stream's leader holds it. `get` may be answered by a
   * replica that has not yet stored a write the leader acknowledged (JetStream's direct
   * get), so a key it finds empty may only be late there; this read is not. Absent: `get`
   * is never late (an in-memory store).
   */
  getLatest?(key: string): Promise<StoredEntry | null>;
  /** Changes as they happen (catalogue-changes.ts); absent: re-reads are never skipped. */
  watch?: Watch;
  /**
   * Removes the delete markers older than `ageMs` (delete-markers.ts); the number
   * removed. Absent on a store that keeps no markers worth removing (tests).
   */
  removeDeleteMarkers?(ageMs: number): Promise<number>;
}

/** How many times a fencing rewrite retries a record that moved under it. */
const fenceAttemptsMax = 5;
/** Records rewritten at once when a new leader fences the catalogue. */
const fenceConcurrencyMax = 64;
/**
 * Partition records a create writes at once. A create of 16,384 partitions began every
 * write together, some 49,000 KV requests at once: requests timed out in the queue (the
 * create failed "Internal: timeout" while its writes went on), and their answers came
 * in one long burst that kept the leader from renewing its lease.
 */
export const createWritesInflightMax = 64;
/** Records a listing of partitions reads at once (the re-read, describe, a create's load). */
export const partitionReadsInflightMax = 256;

/**
 * `work` of every item, at most `limit` at once, in the items' order; rejects with the
 * first failure (the work begun goes on, none more begins).
 */
export async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await work(items[index]!);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const encoder = new TextEncoder();

function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export const keys = {
  volume: (name: string) => `volume.${name}`,
  volumes: "volume.>",
  checkpoint: (name: string, partition: number, node: string) =>
    `checkpoint.${name}.${partition}.${node}`,
  checkpointsOf: (name: string) => `checkpoint.${name}.>`,
  checkpointsOfPartition: (name: string, partition: number) => `checkpoint.${name}.${partition}.*`,
  partition: (name: string, partition: number) => `partition.${name}.${partition}`,
  partitionsOf: (name: string) => `partition.${name}.>`,
  partitions: "partition.>",
  /** The last incarnation number given to a name; never deleted, so never reused. */
  incarnation: (name: string) => `incarnation.${name}`,
  purge: (volumeId: string) => `purge.${volumeId}`,
  purges: "purge.>",
  sled: (id: string) => `sled.${id}`,
  sleds: "sled.>",
  sweepSightings: "sweep.sightings",
  /** The control store's identity (store-marks.ts). */
  store: "store",
  /** Raised before each volume create; witnessed on the sleds (store-marks.ts). */
  sequence: "sequence",
};

/** The orphan sweep's sightings as handed from leader to leader (sweeper.ts). */
export interface SweepSightingsRecord {
  /** The term of the leader that wrote it: a lower term never writes over it. */
  term: number;
  /** Objects (sweep.ts `targetKey`) and unrecorded snapshot ids, with the grace served. */
  objects: (readonly [string, number])[];
  snapshots: (readonly [string, number])[];
}

/** A snapshot as recorded (snapshots.ts). */
export interface SnapshotRecord {
  volume: string;
  name: string;
  id: string;
  volumeId: string;
  createdAtMs: number;
  partitions: { index: number; opNum: number }[];
  /** The volume's size when taken; absent in records made before clones. */
  sizeBytes?: number;
  /** A snapshot of a clone: the clone's overlap when taken. */
  overlap?: number;
  /**
   * Wall-clock time the create that wrote this record began, before any partition took
   * the snapshot (snapshots.ts): it is no snapshot yet, its `partitions` are empty, and
   * no reader sees it; the sweep keeps its id's trees, and removes the record once it is
   * older than `snapshotCreatingGraceMs`. Absent once the create listed it, as in every
   * record older coordinators wrote.
   */
  creatingSinceMs?: number;
  /**
   * Wall-clock time a delete began (snapshots.ts): from then on the snapshot is gone to
   * every reader, and whoever comes next finishes the delete. Absent while it is not
   * being deleted, as in every record older coordinators wrote.
   */
  deletingSinceMs?: number;
  /** Clones of this snapshot, pinned as they were created (see the header). */
  clonePins?: ClonePin[];
  /**
   * Rollbacks to this snapshot running now (snapshots.ts, "Rollback against a delete"):
   * a delete is refused while one is live. Absent in records older coordinators wrote.
   */
  rollbacks?: RollbackMark[];
}

/**
 * A rollback to a snapshot, marked on its record before any partition rolls back and
 * removed when it ends: live for `snapshotRollbackMarkMs` from when the reader first saw
 * it, on the reader's monotonic clock (snapshots.ts; a leader that died or stalled
 * leaves it behind, and it then holds nothing).
 */
export interface RollbackMark {
  /** Drawn by the rollback, to remove its own mark and no other; names its sightings. */
  token: string;
  /** Wall-clock time the mark was written, by the writer's clock: shown, never compared. */
  sinceMs: number;
}

/** Whether a delete of the snapshot has begun: no reader may use it any more. */
export function isDeleting(record: SnapshotRecord): boolean {
  return record.deletingSinceMs !== undefined;
}

/**
 * Whether a record's create began more than `graceMs` ago by the wall clock `nowMs`: its
 * leader is taken for dead or stalled, and the record may be removed by compare-and-set.
 * A clock ahead only cuts short a create still running (its listing then fails).
 */
export function creatingPastGrace(
  record: { creatingSinceMs?: number },
  graceMs: number,
  nowMs: number,
): boolean {
  return record.creatingSinceMs !== undefined && nowMs - record.creatingSinceMs > graceMs;
}

/** Whether readers see the snapshot: its create finished, and no delete has begun. */
export function isListed(record: SnapshotRecord): boolean {
  return !isCreating(record) && !isDeleting(record);
}

const snapshotKeys = {
  snapshot: (volume: string, name: string) => `snapshot.${volume}.${name}`,
  snapshotsOf: (volume: string) => `snapshot.${volume}.>`,
};

/** The incarnation of a volume record: records before incarnations use the name. */
export function idOfVolume(volume: VolumeRecord): string {
  return volume.id ?? volume.name;
}

/**
 * The incarnation whose checkpoint a pointer names: the id in its blob key
 * (`checkpoints/<volume id>/<partition>/<node>/<name>`), undefined if it has none.
 */
export function checkpointVolumeIdOf(pointer: CheckpointPointer): string | undefined {
  return pointer.blobKey.split("/")[1];
}

/** Each key once, sorted, however often the listing returned it. */
export function uniqueKeys(listed: Iterable<string>): string[] {
  return [...new Set(listed)].sort();
}

/** Whether `key` is under the KV filter `filter` (tokens split by '.'; '*' one, '>' the rest). */
export function keyMatches(filter: string, key: string): boolean {
  const wanted = filter.split(".");
  const tokens = key.split(".");
  for (let index = 0; index < wanted.length; index++) {
    if (wanted[index] === ">") return tokens.length > index;
    if (index >= tokens.length || (wanted[index] !== "*" && wanted[index] !== tokens[index])) {
      return false;
    }
  }
  return wanted.length === tokens.length;
}

/** The leadership term a record was written in (0 before terms). */
export function termOf(record: PartitionRecord): number {
  return record.term ?? 0;
}

/**
 * Whether a partition record belongs to an incarnation of its name later than `volume`'s.
 * Incarnations are numbered by compare-and-set on the name's counter, so a later one was
 * begun after this create took its number: this create stalled (its creating record
 * removed as past its grace, the later one then created and perhaps listed), and must
 * not write over the later one's partitions, whichever leader's term is higher.
 */
export function isNewerIncarnation(record: PartitionRecord, volume: VolumeRecord): boolean {
  return incarnationOf(volumeIdOf(record)) > incarnationOf(idOfVolume(volume));
}

/** Whether a leader of `writerTerm` may write over a record stored with `record`'s term. */
export function mayOverwrite(record: PartitionRecord, writerTerm: number): boolean {
  return termOf(record) <= writerTerm;
}

/** True for the KV errors that mean "the revision you named is not the current one". */
export function isConflict(error: unknown): boolean {
  const message = String((error as Error)?.message ?? error);
  return /wrong last sequence|key exists|already exists/i.test(message);
}

export type UpdateOutcome =
  | { applied: true; revision: number }
  /** The record moved on since it was read: decide again on a fresh read. */
  | { applied: false; reason: "conflict" }
  /** The record carries a higher term: this writer no longer leads. */
  | { applied: false; reason: "deposed" };

export class Catalogue {
  constructor(
    private readonly kv: ControlStore,
    /** Where unreadable records are reported; a silent one by default (tests). */
    readonly unreadable: UnreadableRecords = new UnreadableRecords(),
  ) {}

  /** A volume's record, unless a create of it has not finished (it is no volume yet). */
  async volume(name: string): Promise<Versioned<VolumeRecord> | undefined> {
    const found = await this.volumeIncludingCreating(name);
    return found === undefined || isCreating(found.value) ? undefined : found;
  }

  /** A volume's record, also one whose create has not finished. */
  async volumeIncludingCreating(name: string): Promise<Versioned<VolumeRecord> | undefined> {
    return this.read(keys.volume(name), "volume");
  }

  /**
   * The last entry of a volume's key: its revision, and the record if it is one (not a
   * delete). Undefined if the key holds no message at all: never written, or every
   * message removed with an old delete marker (delete-markers.ts). A read that finds
   * the key empty may be late (`ControlStore.getLatest`), so it is asked again of the
   * stream's leader before it counts. For judging a clone pin (clone-pins.ts).
   */
  async volumeEntry(name: string): Promise<{ revision: number; value?: VolumeRecord } | undefined> {
    const key = keys.volume(name);
    const entry = (await this.kv.get(key)) ?? (await this.kv.getLatest?.(key)) ?? null;
    if (entry === null) return undefined;
    return entry.operation === "PUT"
      ? { revision: entry.revision, value: this.decode(key, "volume", entry) }
      : { revision: entry.revision };
  }

  /**
   * Every volume record with its revision, also those whose create has not finished
   * (for the sweep, which removes creating records past their grace).
   */
  async volumesIncludingCreating(
    unreadable: UnreadablePolicy = "refuse",
  ): Promise<Versioned<VolumeRecord>[]> {
    return this.readAll(await this.list(keys.volumes), "volume", unreadable);
  }

  /** The listed volumes: not those whose create has not finished. */
  async volumes(unreadable: UnreadablePolicy = "refuse"): Promise<VolumeRecord[]> {
    return (await this.volumesIncludingCreating(unreadable))
      .map((record) => record.value)
      .filter((record) => !isCreating(record));
  }

  async partition(name: string, index: number): Promise<Versioned<PartitionRecord> | undefined> {
    return this.read(keys.partition(name, index), "partition");
  }

  /** The partitions of a volume, each once, in partition order. */
  async partitions(
    name: string,
    unreadable: UnreadablePolicy = "refuse",
  ): Promise<Versioned<PartitionRecord>[]> {
    return this.readPartitions(await this.list(keys.partitionsOf(name)), unreadable);
  }

  /** Every partition record, each once. */
  async allPartitions(
    unreadable: UnreadablePolicy = "refuse",
  ): Promise<Versioned<PartitionRecord>[]> {
    return this.readPartitions(await this.list(keys.partitions), unreadable);
  }

  /**
   * The control store's identity (store-marks.ts): read, or made by the first
   * coordinator to open the store (by create, so two agree on one).
   */
  async storeId(): Promise<string> {
    for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
      const found = await this.read(keys.store, "store");
      if (found !== undefined) return found.value.storeId;
      try {
        await this.kv.create(
          keys.store,
          encode({ storeId: newStoreId(), createdAtMs: Date.now() }),
        );
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    throw new BallastError(ErrorCode.Unavailable, "cannot read the control store's identity");
  }

  /** The catalogue's sequence (store-marks.ts): 0 before the first create that raised it. */
  async sequence(): Promise<number> {
    return (await this.sequenceHistory()).sequence;
  }

  /** The catalogue's sequence with the nonces of its latest raises (sequence → nonce). */
  async sequenceHistory(): Promise<SequenceHistory> {
    return sequenceHistoryOf((await this.read(keys.sequence, "catalogueSequence"))?.value);
  }

  /**
   * Raises the catalogue's sequence by one, by compare-and-set (store-marks.ts), with a
   * fresh random nonce kept in its history, unless `refusal` answers an error for the
   * history as read: then it is left as it is and that error thrown. Returns the new
   * sequence and its nonce.
   */
  async nextSequence(
    refusal: (current: SequenceHistory) => Error | undefined,
  ): Promise<{ sequence: number; nonce: string }> {
    for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
      const current = await this.read(keys.sequence, "catalogueSequence");
      const history = sequenceHistoryOf(current?.value);
      const refused = refusal(history);
      if (refused !== undefined) throw refused;
      const sequence = history.sequence + 1;
      const nonce = randomBytes(8).toString("hex");
      const recent = [...history.recent, [sequence, nonce] as [number, string]].slice(
        -limits.catalogueSequenceHistoryMax,
      );
      const next = encode({ sequence, recent });
      try {
        if (current === undefined) await this.kv.create(keys.sequence, next);
        else await this.kv.update(keys.sequence, next, current.revision);
        return { sequence, nonce };
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      "cannot raise the catalogue's sequence: it kept changing",
    );
  }

  /**
   * The next incarnation number of a name, taken by compare-and-set on a counter that
   * a delete never removes: ids of one name are ordered, and never reused.
   */
  async nextIncarnation(name: string): Promise<number> {
    const key = keys.incarnation(name);
    for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
      const current = await this.read(key, "incarnation");
      const next = (current?.value.incarnation ?? 0) + 1;
      try {
        if (current === undefined) await this.kv.create(key, encode({ incarnation: next }));
        else await this.kv.update(key, encode({ incarnation: next }), current.revision);
        return next;
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `cannot create volume ${name}: its incarnation counter kept changing`,
    );
  }

  /**
   * Creates volume `volume` (see the header): writes its record marked creating, which
   * a name that exists refuses; runs `beforePartitions` (a clone pins its parents
   * there); writes the partition records of the new incarnation, each stamped with
   * `term`; then lists the record by compare-and-set on the revision it was created at.
   * Any failure after the first write removes the creating record again, by
   * compare-and-set, so a failed create leaves at most partition records of no listed
   * volume. Returns the partitions as stored.
   */
  async createVolume(
    volume: VolumeRecord,
    partitions: PartitionRecord[],
    term: number,
    beforePartitions?: (creating: Versioned<VolumeRecord>) => Promise<void>,
  ): Promise<Versioned<PartitionRecord>[]> {
    const creating = await this.beginCreate(volume);
    try {
      await beforePartitions?.(creating);
      const stored = await this.writePartitions(volume, partitions, term, creating.revision);
      await this.finishCreate(creating);
      return stored;
    } catch (error) {
      // On the revision written: a create listed after all (an unclear write) stays.
      await this.abandonCreate(volume.name, creating.revision).catch(() => false);
      throw error;
    }
  }

  /**
   * Writes `volume`'s record marked creating, by `create`. A listed volume of the name
   * refuses it (AlreadyExists); so does a creating record within its grace (Unavailable:
   * another create is running, or its leader died moments ago); one past its grace is
   * removed by compare-and-set on its revision first.
   */
  private async beginCreate(volume: VolumeRecord): Promise<Versioned<VolumeRecord>> {
    const record: VolumeRecord = { ...volume, creatingSinceMs: Date.now() };
    for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
      const found = await this.volumeIncludingCreating(volume.name);
      if (found !== undefined && !isCreating(found.value)) {
        throw new BallastError(ErrorCode.AlreadyExists, `volume ${volume.name} already exists`);
      }
      if (found !== undefined) {
        const sinceMs = found.value.creatingSinceMs!;
        if (Date.now() - sinceMs <= volumeCreatingGraceMs) {
          throw new BallastError(
            ErrorCode.Unavailable,
            `volume ${volume.name} is being created by another request (since ${new Date(sinceMs).toISOString()}); retry`,
          );
        }
        await this.abandonCreate(volume.name, found.revision);
        continue;
      }
      try {
        const revision = await this.kv.create(keys.volume(volume.name), encode(record));
        return { value: record, revision };
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `cannot create volume ${volume.name}: its record kept changing; retry`,
    );
  }

  /**
   * Writes the partition records of a new incarnation, stamped with `term`, over any a
   * create or delete that died halfway left under the name, but never over one a later
   * leader wrote (see the header); forgets the checkpoint pointers of older incarnations.
   */
  private async writePartitions(
    volume: VolumeRecord,
    partitions: PartitionRecord[],
    term: number,
    creatingRevision: number,
  ): Promise<Versioned<PartitionRecord>[]> {
    await this.forgetOlderCheckpoints(volume);
    return mapLimited(partitions, createWritesInflightMax, async (partition) => {
      const record = { ...partition, term };
      const key = keys.partition(volume.name, record.partition);
      for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
        const leftover = await this.read(key, "partition");
        if (leftover !== undefined && !mayOverwrite(leftover.value, term)) {
          throw new BallastError(
            ErrorCode.Unavailable,
            `cannot create volume ${volume.name}: partition ${record.partition}'s record was written by a later leader (term ${termOf(leftover.value)}, this one's ${term}); retry`,
          );
        }
        if (leftover !== undefined && isNewerIncarnation(leftover.value, volume)) {
          throw new BallastError(
            ErrorCode.Unavailable,
            `cannot create volume ${volume.name}: partition ${record.partition}'s record belongs to a later incarnation (${volumeIdOf(leftover.value)}, this one ${idOfVolume(volume)}); retry`,
          );
        }
        // Between the read of the record it replaces and its compare-and-set on that
        // read: this create's own creating record is still there. Another create lists
        // the name only after removing it and writing its own partitions, so either
        // that removal shows here, or those writes move the record read above and the
        // compare-and-set below fails, and the next attempt sees the removal. Without
        // this, a create that stalled, its creating record removed as past its grace,
        // wrote over the partitions of the create that took and listed the name since
        // (found by the two-leader property, about 1 run in 17,000).
        const own = await this.read(keys.volume(volume.name), "volume");
        if (own?.revision !== creatingRevision) {
          throw new BallastError(
            ErrorCode.Unavailable,
            `cannot create volume ${volume.name}: its unfinished record was removed meanwhile (this leader stalled past ${volumeCreatingGraceMs} ms, or was deposed); nothing was listed, retry`,
          );
        }
        try {
          const revision =
            leftover === undefined
              ? await this.kv.create(key, encode(record))
              : await this.kv.update(key, encode(record), leftover.revision);
          return { value: record, revision };
        } catch (error) {
          if (!isConflict(error)) throw error;
        }
      }
      throw new BallastError(
        ErrorCode.Unavailable,
        `cannot create volume ${volume.name}: partition ${record.partition}'s record kept changing`,
      );
    });
  }

  /**
   * Stale pointers of a dead incarnation must never seed a learner of a new one. Only
   * those of older incarnations go (each by compare-and-set on the revision read): a
   * create whose leader stalled past its grace must not forget the pointers of the
   * newer incarnation that took the name since.
   */
  private async forgetOlderCheckpoints(volume: VolumeRecord): Promise<void> {
    const incarnation = incarnationOf(idOfVolume(volume));
    for (const key of await this.list(keys.checkpointsOf(volume.name))) {
      const pointer = await this.read(key, "checkpoint");
      if (pointer === undefined) continue;
      const blobVolumeId = checkpointVolumeIdOf(pointer.value);
      if (blobVolumeId !== undefined && incarnationOf(blobVolumeId) > incarnation) continue;
      try {
        await this.kv.delete(key, { previousSeq: pointer.revision });
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
  }

  /**
   * Lists a created volume: its record without the creating mark, by compare-and-set on
   * the revision it was created at. Refused (Unavailable) if the record moved: it was
   * removed as past its grace, and this create must not list a volume whose partitions
   * a later create may have overwritten.
   */
  private async finishCreate(creating: Versioned<VolumeRecord>): Promise<void> {
    const { creatingSinceMs: _since, ...record } = creating.value;
    try {
      await this.kv.update(keys.volume(record.name), encode(record), creating.revision);
    } catch (error) {
      if (!isConflict(error)) throw error;
      throw new BallastError(
        ErrorCode.Unavailable,
        `cannot create volume ${record.name}: its unfinished record was removed meanwhile (this leader stalled past ${volumeCreatingGraceMs} ms, or was deposed); nothing was listed, retry`,
      );
    }
  }

  /**
   * Removes a creating record by compare-and-set on `revision`: whether it did. A record
   * listed or written again since is left alone.
   */
  async abandonCreate(name: string, revision: number): Promise<boolean> {
    try {
      await this.kv.delete(keys.volume(name), { previousSeq: revision });
      return true;
    } catch (error) {
      if (isConflict(error)) return false;
      throw error;
    }
  }

  // ------------------------------------------------------------------ clone pins

  /**
   * Writes a snapshot record's clone pins, by compare-and-set on the revision read: the
   * record as written, or undefined if it moved on since (nothing written).
   */
  async pinSnapshot(
    read: Versioned<SnapshotRecord>,
    pins: ClonePin[],
  ): Promise<Versioned<SnapshotRecord> | undefined> {
    return this.putSnapshotIfAt(read, { ...read.value, clonePins: pins });
  }

  /**
   * Writes a snapshot record's rollback marks, by compare-and-set on the revision read:
   * the record as written, or undefined if it moved on since (nothing written). Other
   * failures are thrown: the write may or may not have been kept.
   */
  async markSnapshotRollbacks(
    read: Versioned<SnapshotRecord>,
    rollbacks: RollbackMark[],
  ): Promise<Versioned<SnapshotRecord> | undefined> {
    const value: SnapshotRecord = { ...read.value, rollbacks };
    if (rollbacks.length === 0) delete value.rollbacks;
    return this.putSnapshotIfAt(read, value);
  }

  /** `value` in place of the snapshot record `read`, by compare-and-set on its revision. */
  private async putSnapshotIfAt(
    read: Versioned<SnapshotRecord>,
    value: SnapshotRecord,
  ): Promise<Versioned<SnapshotRecord> | undefined> {
    const key = snapshotKeys.snapshot(value.volume, value.name);
    const revision = await this.updateIfAt(key, value, read.revision);
    return revision === undefined ? undefined : { value, revision };
  }

  /** As `pinSnapshot`, for a volume record. */
  async pinVolume(
    read: Versioned<VolumeRecord>,
    pins: ClonePin[],
  ): Promise<Versioned<VolumeRecord> | undefined> {
    const value: VolumeRecord = { ...read.value, clonePins: pins };
    const revision = await this.updateIfAt(keys.volume(value.name), value, read.revision);
    return revision === undefined ? undefined : { value, revision };
  }

  /** Writes `value` if the key is at `revision`: the new revision, or undefined if not. */
  private async updateIfAt(
    key: string,
    value: unknown,
    revision: number,
  ): Promise<number | undefined> {
    try {
      return await this.kv.update(key, encode(value), revision);
    } catch (error) {
      if (isConflict(error)) return undefined;
      throw error;
    }
  }

  // ------------------------------------------------------------------ resize

  /**
   * Adds the partitions a grow places, in partition order, each with `create` (a key
   * left by a resize that died halfway, of this incarnation, is taken as it stands:
   * an added partition past the size is harmless, and the next grow counts it). Stamps
   * each with the writer's term. `current` is the volume record the resize read: each
   * write requires it still at that revision. Returns them as stored.
   *
   * A leftover of another incarnation (a create or delete that died halfway) is
   * overwritten, as create does, but never one a later leader wrote nor one of a later
   * incarnation; and between the read of the record it replaces and its
   * compare-and-set on that read, the volume record is read again and must be the one
   * the resize read. A later incarnation of the name exists only once this one's record
   * was deleted, and is created only after that: so either the deletion shows here, or
   * the later create's partition writes come after the read and the compare-and-set
   * fails. Without this, a grow whose leader stalled overwrote a partition record of the
   * incarnation another leader had deleted and created since, which then had a
   * partition no one served.
   */
  async addPartitions(
    current: Versioned<VolumeRecord>,
    partitions: readonly PartitionRecord[],
    term: number,
  ): Promise<Versioned<PartitionRecord>[]> {
    const volume = current.value;
    const refuse = (partition: number, why: string): never => {
      throw new BallastError(
        ErrorCode.Unavailable,
        `cannot resize volume ${volume.name}: partition ${partition} ${why}; retry`,
      );
    };
    const stored: Versioned<PartitionRecord>[] = [];
    // One at a time, in order: a resize that dies halfway leaves a prefix, never a gap.
    for (const partition of partitions) {
      const record = { ...partition, term };
      const key = keys.partition(volume.name, record.partition);
      const leftover = await this.read(key, "partition");
      if (leftover !== undefined) {
        if (volumeIdOf(leftover.value) === idOfVolume(volume)) {
          refuse(record.partition, "appeared meanwhile");
        }
        if (!mayOverwrite(leftover.value, term)) {
          refuse(
            record.partition,
            `has a record a later leader wrote (term ${termOf(leftover.value)}, this one's ${term})`,
          );
        }
        if (isNewerIncarnation(leftover.value, volume)) {
          refuse(
            record.partition,
            `has a record of a later incarnation (${volumeIdOf(leftover.value)}, this one ${idOfVolume(volume)})`,
          );
        }
      }
      const now = await this.read(keys.volume(volume.name), "volume");
      if (now?.revision !== current.revision) {
        throw new BallastError(
          ErrorCode.Unavailable,
          `volume ${volume.name} changed while it was being resized; retry`,
        );
      }
      try {
        const revision =
          leftover === undefined
            ? await this.kv.create(key, encode(record))
            : await this.kv.update(key, encode(record), leftover.revision);
        stored.push({ value: record, revision });
      } catch (error) {
        if (!isConflict(error)) throw error;
        refuse(record.partition, "had its record changed meanwhile");
      }
    }
    return stored;
  }

  /**
   * Sets the volume's size if its record is still at `current.revision` and was not
   * written by a later leader; stamps it with the writer's term.
   */
  async resizeVolume(
    current: Versioned<VolumeRecord>,
    sizeBytes: number,
    term: number,
  ): Promise<UpdateOutcome & { record?: VolumeRecord }> {
    if ((current.value.term ?? 0) > term) return { applied: false, reason: "deposed" };
    // A clone's overlap follows a shrink down and never comes back up (clones.ts).
    const parent = parentAfterResize(current.value.parent, sizeBytes);
    // The size written ends any shrink begun (its own, finished; or one finished first).
    const { shrinkingTo: _finished, shrinkingFrom: _from, ...rest } = current.value;
    const record: VolumeRecord = {
      ...rest,
      sizeBytes,
      term,
      ...(parent === undefined ? {} : { parent }),
    };
    try {
      const revision = await this.kv.update(
        keys.volume(record.name),
        encode(record),
        current.revision,
      );
      return { applied: true, revision, record };
    } catch (error) {
      if (isConflict(error)) return { applied: false, reason: "conflict" };
      throw error;
    }
  }

  /**
   * Records that a shrink of the volume to `sizeBytes` begins (`shrinkingTo`), by
   * compare-and-set on `current`, before any partition's end is lowered: should the
   * shrink stop halfway, the record says so, and the leader or the next resize
   * finishes it.
   */
  async markShrinking(
    current: Versioned<VolumeRecord>,
    sizeBytes: number,
    term: number,
  ): Promise<UpdateOutcome & { record?: VolumeRecord }> {
    if ((current.value.term ?? 0) > term) return { applied: false, reason: "deposed" };
    const record: VolumeRecord = {
      ...current.value,
      shrinkingTo: sizeBytes,
      shrinkingFrom: current.value.sizeBytes,
      term,
    };
    try {
      const revision = await this.kv.update(
        keys.volume(record.name),
        encode(record),
        current.revision,
      );
      return { applied: true, revision, record };
    } catch (error) {
      if (isConflict(error)) return { applied: false, reason: "conflict" };
      throw error;
    }
  }

  /**
   * Replaces a partition record if it is still at `current.revision` and was not
   * written by a later leader; stamps `record` with the writer's term.
   */
  async updatePartition(
    record: PartitionRecord,
    current: Versioned<PartitionRecord>,
    term: number,
  ): Promise<UpdateOutcome> {
    if (!mayOverwrite(current.value, term)) return { applied: false, reason: "deposed" };
    try {
      const revision = await this.kv.update(
        keys.partition(record.volume, record.partition),
        encode({ ...record, term }),
        current.revision,
      );
      return { applied: true, revision };
    } catch (error) {
      if (isConflict(error)) return { applied: false, reason: "conflict" };
      throw error;
    }
  }

  /**
   * A new leader's first act: rewrites every partition record with its term, so that
   * any compare-and-set an ex-leader prepared fails. Returns the records as rewritten,
   * or `deposed` if a record already carries a higher term.
   */
  async fence(
    term: number,
  ): Promise<{ deposed: false; records: Versioned<PartitionRecord>[] } | { deposed: true }> {
    const found = await this.list(keys.partitions);
    const records: Versioned<PartitionRecord>[] = [];
    let deposed = false;
    for (let start = 0; start < found.length && !deposed; start += fenceConcurrencyMax) {
      await Promise.all(
        found.slice(start, start + fenceConcurrencyMax).map(async (key) => {
          for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
            // A record that does not decode is left as it is (reported): whatever an
            // ex-leader prepared against it names a revision from before the damage.
            const current = await this.readUnless(key, "partition", "skip");
            if (current === undefined) return;
            if (termOf(current.value) === term) {
              records.push(current);
              return;
            }
            const outcome = await this.updatePartition(current.value, current, term);
            if (outcome.applied) {
              records.push({ value: { ...current.value, term }, revision: outcome.revision });
              return;
            }
            if (outcome.reason === "deposed") {
              deposed = true;
              return;
            }
          }
          throw new BallastError(
            ErrorCode.Unavailable,
            `cannot fence ${key} with term ${term}: it kept changing`,
          );
        }),
      );
    }
    return deposed ? { deposed: true } : { deposed: false, records };
  }

  /**
   * Records a replica's newest checkpoint; an older one than what is recorded of the same
   * incarnation is ignored (the newer covers more). One of another incarnation is always
   * replaced, whatever its op: a deleted incarnation's replica may have recorded it under
   * the same name in a race with the re-create (reports.ts), and kept, it refused every
   * record of the new incarnation's replica, whose head node released its journal all the
   * same (review 32). Returns the pointer it replaced, whose blob the head node may
   * delete. Throws Unavailable when the key kept changing under it.
   */
  async recordCheckpoint(
    name: string,
    partition: number,
    node: string,
    pointer: CheckpointPointer,
  ): Promise<{ replaced?: CheckpointPointer; recorded: boolean }> {
    const key = keys.checkpoint(name, partition, node);
    for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
      const current = await this.read(key, "checkpoint");
      if (
        current !== undefined &&
        current.value.opNum > pointer.opNum &&
        checkpointVolumeIdOf(current.value) === checkpointVolumeIdOf(pointer)
      )
        return { recorded: false };
      try {
        if (current === undefined) await this.kv.create(key, encode(pointer));
        else await this.kv.update(key, encode(pointer), current.revision);
        return current === undefined
          ? { recorded: true }
          : { replaced: current.value, recorded: true };
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `the checkpoint pointer of ${name}/${partition} on ${node} kept changing: not recorded`,
    );
  }

  /** One replica's newest checkpoint, if recorded. */
  async checkpoint(
    name: string,
    partition: number,
    node: string,
  ): Promise<CheckpointPointer | undefined> {
    return (await this.read(keys.checkpoint(name, partition, node), "checkpoint"))?.value;
  }

  /**
   * The newest checkpoint recorded for a partition of incarnation `volumeId` by any
   * replica, departed ones too (the sweeper keeps a departed replica's pointer while no
   * member's is as new), if any. A pointer of another incarnation of the name (a replica
   * of a deleted one recorded it in a race: sweep.ts) is never one: its blob holds
   * another volume's data.
   */
  async newestCheckpoint(
    name: string,
    partition: number,
    volumeId: string,
  ): Promise<CheckpointPointer | undefined> {
    const prefix = checkpointBlobPrefixOf(volumeId, partition);
    let newest: CheckpointPointer | undefined;
    for (const key of await this.list(keys.checkpointsOfPartition(name, partition))) {
      const pointer = (await this.read(key, "checkpoint"))?.value;
      if (pointer === undefined || !pointer.blobKey.startsWith(prefix)) continue;
      if (newest === undefined || pointer.opNum > newest.opNum) newest = pointer;
    }
    return newest;
  }

  /** Every replica's newest checkpoint of a volume: partition → node → pointer. */
  async checkpoints(
    name: string,
    unreadable: UnreadablePolicy = "refuse",
  ): Promise<Map<number, Map<string, CheckpointPointer>>> {
    const found = await this.list(keys.checkpointsOf(name));
    const entries = await Promise.all(
      found.map(async (key) => ({
        key,
        entry: await this.readUnless(key, "checkpoint", unreadable),
      })),
    );
    const result = new Map<number, Map<string, CheckpointPointer>>();
    for (const { key, entry } of entries) {
      const [, , partitionText, node] = key.split(".");
      if (entry === undefined || node === undefined) continue;
      const partition = Number(partitionText);
      if (!result.has(partition)) result.set(partition, new Map());
      result.get(partition)!.set(node, entry.value);
    }
    return result;
  }

  /**
   * Forgets a departed replica's pointer, only if it still records `opNum` (a node that
   * rejoined and recorded a newer one since keeps it). Returns whether it was deleted.
   */
  async forgetCheckpoint(
    name: string,
    partition: number,
    node: string,
    opNum: number,
  ): Promise<boolean> {
    const key = keys.checkpoint(name, partition, node);
    const current = await this.read(key, "checkpoint");
    if (current === undefined || current.value.opNum !== opNum) return false;
    try {
      await this.kv.delete(key, { previousSeq: current.revision });
      return true;
    } catch (error) {
      if (isConflict(error)) return false;
      throw error;
    }
  }

  /**
   * Deletes the volume record first (so it stops being listed), then its partitions,
   * checkpoint pointers and the incarnation's snapshot records. Returns the deleted
   * record, or undefined if there was none. A delete cut off after the volume record
   * leaves the rest; the snapshot records are removed again when the incarnation's purge
   * record is forgotten (`forgetPurge`), the rest by the next create of the name.
   *
   * Only records that are no live volume's go, each by compare-and-set on the revision
   * read (`forgetDeadRecord`): a leader that stalls after deleting the volume record may
   * resume once another leader has created the name again, and must not remove the new
   * incarnation's partitions (it would be listed with none, its data stranded) or its
   * checkpoint pointers.
   */
  async deleteVolume(
    name: string,
    read?: Versioned<VolumeRecord>,
  ): Promise<VolumeRecord | undefined> {
    // With `read`, only that very record is deleted: a re-creation since is left alone.
    const volume = read ?? (await this.volume(name));
    if (volume === undefined) return undefined;
    try {
      await this.kv.delete(keys.volume(name), { previousSeq: volume.revision });
    } catch (error) {
      if (isConflict(error)) return undefined;
      throw error;
    }
    const deletedId = idOfVolume(volume.value);
    for (const key of await this.list(keys.partitionsOf(name))) {
      await this.forgetDeadRecord(name, key, "partition", deletedId, volumeIdOf);
    }
    for (const key of await this.list(keys.checkpointsOf(name))) {
      await this.forgetDeadRecord(name, key, "checkpoint", deletedId, checkpointVolumeIdOf);
    }
    await this.forgetSnapshotsOf(name, deletedId);
    return volume.value;
  }

  /**
   * Removes a partition record or checkpoint pointer of volume `name` that no live
   * volume can be using, by compare-and-set on the revision read: one of `deletedId`
   * (ids are never reused, so that incarnation is gone for good), or one of another id
   * (`idOf` the record; undefined: none can be told) left by a create or delete that
   * died halfway, while the name has no volume record at all. For the latter, the
   * name's record is read between the read of the record and its compare-and-set: a
   * create of the name writes its creating record before any partition, so either that
   * record shows here and the leftover is kept (the create overwrites or forgets it),
   * or the create's writes come after the read and the compare-and-set fails. A
   * record written since it was read is left alone either way. One that does not decode
   * is left alone too (reported): whose it is cannot be told.
   */
  private async forgetDeadRecord<K extends "partition" | "checkpoint">(
    name: string,
    key: string,
    kind: K,
    deletedId: string,
    idOf: (record: ControlRecordOf<K>) => string | undefined,
  ): Promise<void> {
    const record = await this.readUnless(key, kind, "skip");
    if (record === undefined) return;
    if (idOf(record.value) !== deletedId) {
      if ((await this.volumeEntry(name))?.value !== undefined) return;
    }
    try {
      await this.kv.delete(key, { previousSeq: record.revision });
    } catch (error) {
      if (!isConflict(error)) throw error;
    }
  }

  /** Records that an incarnation is to be purged; a record already there is kept. */
  async recordPurge(record: PurgeRecord): Promise<void> {
    try {
      await this.kv.create(keys.purge(record.volumeId), encode(record));
    } catch (error) {
      if (!isConflict(error)) throw error;
    }
  }

  /** Every incarnation still to be purged. */
  async purges(unreadable: UnreadablePolicy = "refuse"): Promise<PurgeRecord[]> {
    return (await this.readAll(await this.list(keys.purges), "purge", unreadable)).map(
      (record) => record.value,
    );
  }

  /**
   * Forgets an incarnation's purge record; first, if the incarnation is not live, removes
   * the snapshot records it left (a delete cut off before it removed them). The purge
   * record is written before the volume record is deleted and goes last, so whichever
   * leader forgets it finds every record left: none outlives the purge. An incarnation
   * still live (its delete failed, and the record is dropped again) keeps its snapshots.
   */
  async forgetPurge(volumeId: string): Promise<void> {
    const key = keys.purge(volumeId);
    const purge = await this.read(key, "purge");
    if (purge !== undefined) {
      const volume = await this.volume(purge.value.volume);
      const live = volume !== undefined && idOfVolume(volume.value) === volumeId;
      if (!live) await this.forgetSnapshotsOf(purge.value.volume, volumeId);
    }
    await this.kv.delete(key);
  }

  // ---------------------------------------------------------------- sled records

  /** Every sled record the leaders have kept (sleds.ts). */
  async sledRecords(unreadable: UnreadablePolicy = "refuse"): Promise<SledRecord[]> {
    return (await this.readAll(await this.list(keys.sleds), "sled", unreadable)).map(
      (record) => record.value,
    );
  }

  /**
   * Writes a sled record over whatever is there. Only the leader writes them, and a
   * write an ex-leader races in is corrected by the leader's next change of state.
   */
  async putSledRecord(record: SledRecord): Promise<void> {
    const key = keys.sled(record.id);
    const current = await this.kv.get(key);
    if (current === null || current.operation !== "PUT") {
      await this.kv.create(key, encode(record));
    } else {
      await this.kv.update(key, encode(record), current.revision);
    }
  }

  /**
   * Deletes the record of a sled to forget (sled-forgetting.ts), by compare-and-set on
   * the revision read, only if it holds the sled out: one written in since (by a leader
   * that heard it again) stays. Returns whether the key holds no record now.
   */
  async forgetSledRecord(id: string): Promise<boolean> {
    const key = keys.sled(id);
    const current = await this.read(key, "sled");
    if (current === undefined) return true;
    if (current.value.state !== "out") return false;
    await this.kv.delete(key, { previousSeq: current.revision });
    return true;
  }

  // ------------------------------------------------------------ sweep sightings (sweeper.ts)

  /**
   * Claims the sweep's sightings for a leader of `term`: reads them and writes them back
   * stamped with `term`, by compare-and-set over the revision read, so every write made
   * before the claim returns is older than it and every later write by a lower term
   * fails. `keep`: the sightings are written back as they were (else emptied). Returns
   * what was there (undefined if nothing) and the revision written, or undefined if a
   * higher term holds them or a write raced the claim.
   */
  async claimSweepSightings(
    term: number,
    keep: boolean,
  ): Promise<{ found: SweepSightingsRecord | undefined; revision: number } | undefined> {
    const entry = await this.kv.get(keys.sweepSightings);
    const live = entry !== null && entry.operation === "PUT" ? entry : undefined;
    let current: SweepSightingsRecord | undefined;
    if (live !== undefined) {
      try {
        current = this.decode(keys.sweepSightings, "sweepSightings", live);
      } catch (error) {
        // A record that does not decode counts for nothing: it is claimed over by
        // compare-and-set, with no sightings (every orphan serves its grace afresh).
        if (!isUnreadableRecord(error)) throw error;
      }
    }
    if (current !== undefined && current.term > term) return undefined;
    const record: SweepSightingsRecord = {
      term,
      objects: keep && current !== undefined ? current.objects : [],
      snapshots: keep && current !== undefined ? current.snapshots : [],
    };
    const revision = await this.writeSweepSightings(record, live?.revision);
    if (revision === undefined) return undefined;
    return { found: live === undefined ? undefined : record, revision };
  }

  /**
   * Writes the sweep's sightings over `revision` (undefined: the key must not exist).
   * Returns the new revision, or undefined if the key moved on (another leader claimed).
   */
  async writeSweepSightings(
    record: SweepSightingsRecord,
    revision: number | undefined,
  ): Promise<number | undefined> {
    try {
      return revision === undefined
        ? await this.kv.create(keys.sweepSightings, encode(record))
        : await this.kv.update(keys.sweepSightings, encode(record), revision);
    } catch (error) {
      if (isConflict(error)) return undefined;
      throw error;
    }
  }

  // ------------------------------------------------------------ snapshots (snapshots.ts)
  // `snapshot.<volume>.<name>`: a snapshot of an incarnation of the volume (its
  // `volumeId`); a record of another incarnation is stale (the volume was deleted: left
  // only by a delete cut off before it removed them, until the purge record is
  // forgotten) and is overwritten by a create of the name. A record marked deleting
  // (`isDeleting`) or still creating (`isCreating`) is left out of `snapshot` and
  // `snapshots`, what readers use, so that nothing reads, clones or lists a snapshot whose
  // trees may already be dropped or not all taken yet; create, delete and the sweep read
  // every record with the `…IncludingDeleting` readers (which include creating ones too).

  /** A snapshot record, unless its create has not finished or its delete has begun. */
  async snapshot(volume: string, name: string): Promise<Versioned<SnapshotRecord> | undefined> {
    const found = await this.snapshotIncludingDeleting(volume, name);
    return found === undefined || !isListed(found.value) ? undefined : found;
  }

  /** A snapshot record in any state: also one being created, or being deleted. */
  async snapshotIncludingDeleting(
    volume: string,
    name: string,
  ): Promise<Versioned<SnapshotRecord> | undefined> {
    return this.read(snapshotKeys.snapshot(volume, name), "snapshot");
  }

  /** A volume name's listed snapshot records: not those being created or deleted. */
  async snapshots(
    volume: string,
    unreadable: UnreadablePolicy = "refuse",
  ): Promise<SnapshotRecord[]> {
    return (await this.snapshotsIncludingDeleting(volume, unreadable))
      .map((record) => record.value)
      .filter(isListed);
  }

  /** A volume name's snapshot records in any state: also those being created or deleted. */
  async snapshotsIncludingDeleting(
    volume: string,
    unreadable: UnreadablePolicy = "refuse",
  ): Promise<Versioned<SnapshotRecord>[]> {
    return this.readAll(await this.list(snapshotKeys.snapshotsOf(volume)), "snapshot", unreadable);
  }

  /**
   * Marks a snapshot record deleting, by compare-and-set on the revision read: the
   * record as marked, or undefined if it moved on since it was read (nothing written).
   * Other failures are thrown: the write may or may not have been kept.
   */
  async markSnapshotDeleting(
    read: Versioned<SnapshotRecord>,
    sinceMs: number,
  ): Promise<Versioned<SnapshotRecord> | undefined> {
    const value: SnapshotRecord = { ...read.value, deletingSinceMs: sinceMs };
    try {
      const revision = await this.kv.update(
        snapshotKeys.snapshot(value.volume, value.name),
        encode(value),
        read.revision,
      );
      return { value, revision };
    } catch (error) {
      if (isConflict(error)) return undefined;
      throw error;
    }
  }

  /**
   * Records a listed snapshot in one write, as coordinators did before creating records
   * (snapshots.ts now writes `beginSnapshotCreate`, then `listSnapshot`); tests seed
   * records with it. `stale` is a record of another incarnation it replaces. Refused
   * AlreadyExists only for a record of the same incarnation: a stale record removed or
   * replaced since it was read (by `forgetSnapshotsOf`, which runs beside creates from
   * the purger) is read again and written over.
   */
  async recordSnapshot(record: SnapshotRecord, stale?: Versioned<SnapshotRecord>): Promise<void> {
    const key = snapshotKeys.snapshot(record.volume, record.name);
    let over = stale;
    for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
      try {
        if (over === undefined) await this.kv.create(key, encode(record));
        else await this.kv.update(key, encode(record), over.revision);
        return;
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
      over = await this.read(key, "snapshot");
      if (over !== undefined && over.value.volumeId === record.volumeId) break;
    }
    throw new BallastError(
      ErrorCode.AlreadyExists,
      `volume ${record.volume} already has a snapshot named ${record.name}`,
    );
  }

  /**
   * Writes a snapshot create's first record, marked creating (`record` carries
   * `creatingSinceMs`), by `create`; or, over `stale` (a record of another incarnation
   * of the volume name), by compare-and-set on its revision. The record as written, or
   * `taken`: the name holds a record of this incarnation (read after the write was
   * refused), which may be listed, creating or being deleted. Other failures are thrown:
   * the write may or may not have been kept.
   */
  async beginSnapshotCreate(
    record: SnapshotRecord,
    stale?: Versioned<SnapshotRecord>,
  ): Promise<{ created: Versioned<SnapshotRecord> } | { taken: Versioned<SnapshotRecord> }> {
    const key = snapshotKeys.snapshot(record.volume, record.name);
    let over = stale;
    for (let attempt = 0; attempt < fenceAttemptsMax; attempt++) {
      try {
        const revision =
          over === undefined
            ? await this.kv.create(key, encode(record))
            : await this.kv.update(key, encode(record), over.revision);
        return { created: { value: record, revision } };
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
      over = await this.read(key, "snapshot");
      if (over !== undefined && over.value.volumeId === record.volumeId) return { taken: over };
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `cannot create snapshot ${record.name} of ${record.volume}: its record kept changing; retry`,
    );
  }

  /**
   * Lists a created snapshot: writes `record` (no creating mark) by compare-and-set on
   * the revision its creating record was written at. The revision written, or undefined
   * if the key moved since (nothing written, and never will be: the creating record
   * was removed as past its grace, or with its volume). Other failures are thrown.
   */
  async listSnapshot(
    creating: Versioned<SnapshotRecord>,
    record: SnapshotRecord,
  ): Promise<number | undefined> {
    return this.updateIfAt(
      snapshotKeys.snapshot(record.volume, record.name),
      record,
      creating.revision,
    );
  }

  /**
   * Removes a snapshot's creating record by compare-and-set on `revision`: whether it
   * did. A record listed or written again since is left alone.
   */
  async abandonSnapshotCreate(volume: string, name: string, revision: number): Promise<boolean> {
    try {
      await this.kv.delete(snapshotKeys.snapshot(volume, name), { previousSeq: revision });
      return true;
    } catch (error) {
      if (isConflict(error)) return false;
      throw error;
    }
  }

  /**
   * Removes the snapshot records of incarnation `volumeId` of `volume`, each by
   * compare-and-set on the revision read: a record of another incarnation (a new one of
   * the name) is never touched, nor one written over since it was read. Its trees went
   * with the incarnation's replicas, so there is nothing to drop. Returns how many went.
   */
  async forgetSnapshotsOf(volume: string, volumeId: string): Promise<number> {
    let removed = 0;
    for (const record of await this.snapshotsIncludingDeleting(volume)) {
      if (record.value.volumeId !== volumeId) continue;
      try {
        await this.kv.delete(snapshotKeys.snapshot(volume, record.value.name), {
          previousSeq: record.revision,
        });
        removed++;
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    return removed;
  }

  async forgetSnapshot(volume: string, name: string, revision: number): Promise<void> {
    await this.kv.delete(snapshotKeys.snapshot(volume, name), { previousSeq: revision });
  }

  /** The keys matching `filter`, each once. */
  private async list(filter: string): Promise<string[]> {
    const found: string[] = [];
    for await (const key of await this.kv.keys(filter)) found.push(key);
    const listed = uniqueKeys(found);
    await this.forgetUnlisted(filter, listed);
    return listed;
  }

  /**
   * Reads each unreadable key under `filter` that a listing did not find: one gone since
   * (removed, not rewritten) is unreadable no more (see the header). A read that fails
   * leaves it as it was, for the next listing.
   */
  private async forgetUnlisted(filter: string, listed: readonly string[]): Promise<void> {
    const known = this.unreadable.keys();
    if (known.length === 0) return;
    const found = new Set(listed);
    const unlisted = known.filter((key) => !found.has(key) && keyMatches(filter, key));
    await Promise.all(
      unlisted.map(async (key) => {
        const entry = await this.kv.get(key).catch(() => undefined);
        if (entry === null || (entry !== undefined && entry.operation !== "PUT")) {
          this.unreadable.cleared(key, true);
        }
      }),
    );
  }

  private async readPartitions(
    found: string[],
    unreadable: UnreadablePolicy,
  ): Promise<Versioned<PartitionRecord>[]> {
    const records = await mapLimited(found, partitionReadsInflightMax, (key) =>
      this.readUnless(key, "partition", unreadable),
    );
    const byPartition = new Map<string, Versioned<PartitionRecord>>();
    for (const record of records) {
      if (record === undefined) continue;
      // Two keys never name one partition; this guards the invariant readers rely on.
      byPartition.set(`${record.value.volume}/${record.value.partition}`, record);
    }
    return [...byPartition.values()].sort(
      (a, b) =>
        a.value.volume.localeCompare(b.value.volume) ||
        a.value.partition - b.value.partition ||
        volumeIdOf(a.value).localeCompare(volumeIdOf(b.value)),
    );
  }

  /**
   * The record at `key` decoded as `kind`, undefined if there is none; one that does not
   * decode fails with its UnreadableRecordError (reported).
   */
  private async read<K extends ControlRecordKind>(
    key: string,
    kind: K,
  ): Promise<Versioned<ControlRecordOf<K>> | undefined> {
    const entry = await this.kv.get(key);
    if (entry === null || entry.operation !== "PUT") {
      this.unreadable.cleared(key, true);
      return undefined;
    }
    return { value: this.decode(key, kind, entry), revision: entry.revision };
  }

  /** `read`, except that with `skip` a record that does not decode reads as none. */
  private async readUnless<K extends ControlRecordKind>(
    key: string,
    kind: K,
    unreadable: UnreadablePolicy,
  ): Promise<Versioned<ControlRecordOf<K>> | undefined> {
    try {
      return await this.read(key, kind);
    } catch (error) {
      if (unreadable === "skip" && isUnreadableRecord(error)) return undefined;
      throw error;
    }
  }

  /** Every record of `found` (each once), as `unreadable` says for those that do not decode. */
  private async readAll<K extends ControlRecordKind>(
    found: string[],
    kind: K,
    unreadable: UnreadablePolicy,
  ): Promise<Versioned<ControlRecordOf<K>>[]> {
    const records = await Promise.all(found.map((key) => this.readUnless(key, kind, unreadable)));
    return records.filter((record) => record !== undefined);
  }

  /** The one place a stored entry becomes a record (or is reported as unreadable). */
  private decode<K extends ControlRecordKind>(
    key: string,
    kind: K,
    entry: StoredEntry,
  ): ControlRecordOf<K> {
    try {
      const value = decodeControlRecord(kind, key, entry.value);
      this.unreadable.cleared(key);
      return value;
    } catch (error) {
      if (isUnreadableRecord(error)) this.unreadable.saw(error, entry.revision);
      throw error;
    }
  }
}

/** The catalogue's sequence and the nonces of its latest raises, oldest first. */
export interface SequenceHistory {
  sequence: number;
  recent: readonly (readonly [number, string])[];
}

function sequenceHistoryOf(
  record: { sequence: number; recent?: [number, string][] } | undefined,
): SequenceHistory {
  return { sequence: record?.sequence ?? 0, recent: record?.recent ?? [] };
}
