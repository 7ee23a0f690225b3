// The orphan sweep's decisions: which of a sled's objects of a live volume nothing can
// still reference, when such an orphan may be deleted, and which checkpoint pointers of
// departed replicas the catalogue can forget. Pure: the recorded checkpoints (pointers
// with the headers read from their blobs), the sleds' inventories and the time come in
// as arguments; the shell (sweeper.ts) reads them and sends the deletes.
//
// Model (docs/architecture.md, "Orphan sweep"): every replica's state derives from a
// recorded checkpoint or from a later state, and later states only add chunk numbers at
// or above the checkpoint's `nextChunkNumber`. So a chunk object of partition P with
// number n is an orphan iff n is below the least `nextChunkNumber` of P's recorded
// checkpoints and no recorded checkpoint's chunk table names its id. A chunk the table
// lists is kept on every sled, whatever its copies say (re-replication may have added a
// copy after the checkpoint). A checkpoint blob is an orphan iff no recorded pointer
// names its key and its op (in the key: a replica checkpoints at its commit op) is at or
// below the newest recorded pointer's of its partition. A blob above that is a state
// newer than anything the catalogue knows: an upload not yet recorded, one whose record
// failed, or one recorded in a catalogue that has since been restored from an older copy
// or rolled back. Without that bound the last would go: the copy's pointers (their blobs
// still on a sled that missed the replaced blob's delete, or of a replica that recorded
// nothing since) name older blobs, and the replicas' newest checkpoints, the only ones
// the newer catalogue names, read as orphans. Such a blob goes once a later checkpoint
// of the partition is recorded (ops only grow, and committed ops survive a failover).
// An orphan is deleted only once it was one in two passes at least
// `graceMs` apart: a read planned before a drop, a rebuild reading an old blob, or an
// upload not yet recorded all finish within the grace.
//
// Across leaders (`SweepConfirmations`, the record `sweep.sightings`): the grace is
// served in pieces that each leader measures on its own monotonic clock, and handed
// from leader to leader through the control store, so that orphans go even when no
// tenure lasts a grace (a coordinator restarted often, a flapping NATS), where one
// grace per tenure never freed anything. No clock is compared across coordinators:
//   - A leader claims the record once per tenure, before its first pass reads anything:
//     it reads it and writes it back under its term by compare-and-set over the
//     revision read (a higher term's record is left alone), and notes the claim's time
//     `c` on its clock once the write returned. Each later write is a compare-and-set
//     over its own last one, so the writes of all leaders form one chain, and between
//     a leader's claim and its last write that landed no other leader's write landed.
//   - An orphan this tenure sees for the first time serves from that pass; one the
//     record handed on with `s` served serves from `c` on, starting at `s`. Either way
//     it keeps serving only while every pass sees it: one pass without it (its sled
//     silent, its partition unreadable, referenced) forgets it, and so does the record
//     the leader writes next. After each pass the leader writes what each orphan had
//     served *at that pass* (not at the write).
//   - Why served time never exceeds real time: the pieces added up are [first
//     sighting or c, a pass whose write landed] of successive leaders in the chain.
//     Each lies after its leader's claim landed and before its last write landed, so
//     no two overlap in real time, and each is measured on one clock. Their sum is at
//     most the real time from the first sighting of the run to the pass that finds
//     the orphan due. The time between one leader's last pass and the next leader's
//     claim counts for nothing.
//   - What is unobserved: between a leader's last pass and the next leader's first,
//     nobody looks, as between two passes of one leader (the sweep interval), only for
//     longer (a leader that died before handing on leaves the record as its
//     predecessor wrote it). That is safe for the reason the grace is: an object that
//     was an orphan at a sighting can be touched afterwards only by what began before
//     it (later states only add chunk numbers at or above the checkpoints'), which ends
//     within the grace, so what matters is that the grace has passed since a sighting
//     and that the object is an orphan in the pass that deletes it.
//   - Progress: a tenure serves its orphans from its claim, made at the start of its
//     first pass, to its last pass, so a tenure of one pass still adds that pass's
//     length, and one of two passes an interval; an orphan is deleted once the pieces
//     add up to the grace. At most `sweepSightingsMax` orphans (most served first) are
//     handed on; the rest serve within one tenure as before, and move up as the others
//     are deleted.
//
// Snapshots no record names: a snapshot is recorded in the catalogue only once every
// partition has taken it, and a delete marks the record deleting, drops it on every
// partition, and only then removes the record (a record marked deleting still counts
// as naming its id here: the shell finishes that delete itself, sweeper.ts). So an id
// that a recorded checkpoint of the volume's current incarnation holds but no snapshot
// record of that incarnation names is a create that the leader gave up or died in, or
// a delete's drop that a partition missed; unless this leader is creating it now, it is
// dropped on every partition once it was unrecorded in two passes at least `graceMs`
// apart (longer than a create may take), and its chunks then go the ordinary way.
// Checkpoints lag the partitions, so this sees such an id late, never early.
//
// Failure model: every doubt keeps the object. A partition whose pointers cannot all be
// read (a header fetch failed, a pointer of another incarnation) or that has no
// recorded checkpoint keeps everything this pass; so does an object whose id or key
// does not parse as this incarnation's, whose owner disagrees with its id, or of a
// volume that is not in the catalogue (the purger owns deleted incarnations, and the
// leftover sweep, leftovers.ts, those whose purge records are forgotten). An
// orphan not seen again in a pass (its sled silent, its partition unreadable) starts its
// grace again. A record that cannot be claimed or written leaves a leader to its own
// sightings, which only makes the wait longer.

import {
  type CheckpointHeader,
  checkpointBlobPrefixOf,
  opNumOfCheckpointBlobKey,
  parseSledChunkId,
  partitionOfCheckpointBlobKey,
} from "@ballast/protocol";
import type { CheckpointPointer } from "./catalogue.ts";
import type { ChunkEntry } from "./purge.ts";

/** A recorded pointer, with what its blob's header says. */
export interface RecordedCheckpoint {
  node: string;
  opNum: number;
  blobKey: string;
  nextChunkNumber: number;
  /** The sled chunk ids of its chunk table. */
  chunkIds: readonly string[];
  /** The ids of the snapshots (frozen trees) it holds. */
  snapshotIds: readonly string[];
  /** The sleds it names: where its blob is and every chunk copy (sled-forgetting.ts). */
  sleds: readonly string[];
}

/** One partition's recorded checkpoints as this pass read them. */
export type PartitionCheckpoints =
  | { kind: "read"; checkpoints: readonly RecordedCheckpoint[] }
  /** Some pointer could not be read: keep the whole partition this pass. */
  | { kind: "unreadable"; reason: string };

/** A live volume as the sweep sees it: partitions absent from the map keep everything. */
export interface SweptVolume {
  name: string;
  volumeId: string;
  partitions: ReadonlyMap<number, PartitionCheckpoints>;
}

/** What one sled holds of one volume: chunks owned by it, blobs under its prefix. */
export interface SweptInventory {
  chunks: readonly ChunkEntry[];
  blobs: readonly { key: string; bytes: number }[];
}

export type SweepTarget =
  | {
      kind: "chunk";
      sled: string;
      volume: string;
      volumeId: string;
      chunkId: string;
      owner: ChunkEntry["owner"];
      bytes: number;
    }
  | { kind: "blob"; sled: string; volume: string; volumeId: string; key: string; bytes: number };

/** A snapshot id some partitions hold and no record names: to drop on every partition. */
export interface UnrecordedSnapshot {
  volume: string;
  volumeId: string;
  id: string;
  /** The partitions whose recorded checkpoints hold it. */
  partitions: number[];
}

/**
 * One partition's recorded checkpoints from its pointers (node → pointer) and the
 * headers read from their blobs (blob key → header; absent when the read failed).
 */
export function partitionCheckpointsOf(
  volumeId: string,
  partition: number,
  pointers: ReadonlyMap<string, CheckpointPointer>,
  headers: ReadonlyMap<string, CheckpointHeader>,
): PartitionCheckpoints {
  const checkpoints: RecordedCheckpoint[] = [];
  for (const [node, pointer] of pointers) {
    // A pointer of another incarnation (recorded by a replica of a deleted one in a
    // race) says nothing of this one's chunk numbers: doubt keeps the partition.
    if (!pointer.blobKey.startsWith(checkpointBlobPrefixOf(volumeId, partition))) {
      return {
        kind: "unreadable",
        reason: `${node}'s pointer ${pointer.blobKey} is not of ${volumeId}`,
      };
    }
    const header = headers.get(pointer.blobKey);
    if (header === undefined) {
      return { kind: "unreadable", reason: `${node}'s checkpoint ${pointer.blobKey} was not read` };
    }
    if (header.opNum !== pointer.opNum) {
      return {
        kind: "unreadable",
        reason: `${pointer.blobKey} holds op ${header.opNum}, its pointer says ${pointer.opNum}`,
      };
    }
    checkpoints.push({
      node,
      opNum: pointer.opNum,
      blobKey: pointer.blobKey,
      nextChunkNumber: header.nextChunkNumber,
      chunkIds: header.chunks.map((chunk) => chunk[1]),
      snapshotIds: (header.snapshots ?? []).map((snapshot) => snapshot[0]),
      sleds: sledsNamedBy(pointer, header.chunks),
    });
  }
  return { kind: "read", checkpoints };
}

/** The sleds a recorded checkpoint names: where its blob is, and every chunk copy. */
export function sledsNamedBy(
  pointer: Pick<CheckpointPointer, "sleds">,
  chunks: CheckpointHeader["chunks"],
): string[] {
  const named = new Set(pointer.sleds);
  for (const chunk of chunks) {
    for (const sled of chunk[2]) named.add(sled);
  }
  return [...named].sort();
}

/** The objects of `volume` on `sled` that are orphans in this pass. */
export function orphansOn(
  sled: string,
  volume: SweptVolume,
  inventory: SweptInventory,
): SweepTarget[] {
  const bounds = new Map<
    number,
    {
      nextChunkNumberMin: number;
      opNumMax: number;
      referenced: Set<string>;
      keys: Set<string>;
    }
  >();
  for (const [partition, state] of volume.partitions) {
    if (state.kind !== "read" || state.checkpoints.length === 0) continue;
    bounds.set(partition, {
      nextChunkNumberMin: Math.min(
        ...state.checkpoints.map((checkpoint) => checkpoint.nextChunkNumber),
      ),
      opNumMax: Math.max(...state.checkpoints.map((checkpoint) => checkpoint.opNum)),
      referenced: new Set(state.checkpoints.flatMap((checkpoint) => checkpoint.chunkIds)),
      keys: new Set(state.checkpoints.map((checkpoint) => checkpoint.blobKey)),
    });
  }
  const orphans: SweepTarget[] = [];
  for (const chunk of inventory.chunks) {
    if (chunk.owner.volume !== volume.name) continue;
    const parsed = parseSledChunkId(chunk.chunkId, volume.volumeId);
    if (parsed === undefined || parsed.partition !== chunk.owner.partition) continue;
    const bound = bounds.get(parsed.partition);
    if (bound === undefined) continue;
    if (parsed.chunkNumber >= bound.nextChunkNumberMin) continue;
    if (bound.referenced.has(chunk.chunkId)) continue;
    orphans.push({
      kind: "chunk",
      sled,
      volume: volume.name,
      volumeId: volume.volumeId,
      chunkId: chunk.chunkId,
      owner: chunk.owner,
      bytes: chunk.bytes,
    });
  }
  for (const blob of inventory.blobs) {
    const partition = partitionOfCheckpointBlobKey(blob.key, volume.volumeId);
    if (partition === undefined) continue;
    const bound = bounds.get(partition);
    if (bound === undefined || bound.keys.has(blob.key)) continue;
    // Newer than every recorded pointer (see the header): kept, whatever its age.
    const opNum = opNumOfCheckpointBlobKey(blob.key, volume.volumeId);
    if (opNum === undefined || opNum > bound.opNumMax) continue;
    orphans.push({
      kind: "blob",
      sled,
      volume: volume.name,
      volumeId: volume.volumeId,
      key: blob.key,
      bytes: blob.bytes,
    });
  }
  return orphans;
}

/**
 * The snapshot ids that recorded checkpoints of `volume` hold but neither a snapshot
 * record (`recorded`, ids of this incarnation's records) nor a create in progress on
 * this leader (`creating`) accounts for.
 */
export function unrecordedSnapshotsOf(
  volume: SweptVolume,
  recorded: ReadonlySet<string>,
  creating: ReadonlySet<string>,
): UnrecordedSnapshot[] {
  const found = new Map<string, number[]>();
  for (const [partition, state] of volume.partitions) {
    if (state.kind !== "read") continue;
    const ids = new Set(state.checkpoints.flatMap((checkpoint) => checkpoint.snapshotIds));
    for (const id of ids) {
      if (recorded.has(id) || creating.has(id)) continue;
      const partitions = found.get(id) ?? [];
      if (partitions.length === 0) found.set(id, partitions);
      partitions.push(partition);
    }
  }
  return [...found].map(([id, partitions]) => ({
    volume: volume.name,
    volumeId: volume.volumeId,
    id,
    partitions: partitions.sort((a, b) => a - b),
  }));
}

function targetKey(target: SweepTarget): string {
  return `${target.sled}\n${target.kind}\n${target.kind === "chunk" ? target.chunkId : target.key}`;
}

/** The confirmation key of an unrecorded snapshot. */
export function unrecordedSnapshotKey(snapshot: UnrecordedSnapshot): string {
  return `${snapshot.volumeId}\nsnapshot\n${snapshot.id}`;
}

/** A sighting kept across tenures: an orphan's key and how much of its grace it has served. */
export type Sighting = readonly [key: string, servedMs: number];

/**
 * The two-pass confirmation: an orphan becomes due once it was an orphan in an earlier
 * pass and has served `graceMs` since, counted on this leader's clock from its first
 * sighting in this tenure, plus what earlier tenures handed on (`inherit`). Serving
 * lapses, here and in what is handed on, as soon as a pass does not see the orphan.
 */
export class SweepConfirmations<T = SweepTarget> {
  /** Served time is `baseMs + (now - sinceMs)`. */
  private readonly seen = new Map<string, { baseMs: number; sinceMs: number }>();
  private inherited = new Map<string, { baseMs: number; sinceMs: number }>();
  private lastPassMs: number | undefined;

  constructor(
    private readonly graceMs: number,
    private readonly keyOf: (orphan: T) => string = targetKey as unknown as (orphan: T) => string,
  ) {}

  /**
   * Takes the sightings an earlier tenure handed on, claimed (under this tenure's term,
   * by compare-and-set over the last write) at `claimedAtMs`: each counts as served
   * that much at the claim, and serves on from there if the next pass sees it. Only
   * before the first pass: a tenure that has already looked hands on its own.
   */
  inherit(sightings: readonly Sighting[], claimedAtMs: number): void {
    if (this.lastPassMs !== undefined) return;
    // A record of another shape (an older or foreign writer) hands on nothing: doubt waits.
    if (!Array.isArray(sightings)) return;
    this.inherited = new Map(
      sightings
        .filter(
          (sighting) =>
            Array.isArray(sighting) &&
            typeof sighting[0] === "string" &&
            Number.isFinite(sighting[1]) &&
            sighting[1] >= 0,
        )
        .map(([key, servedMs]) => [key, { baseMs: servedMs, sinceMs: claimedAtMs }]),
    );
  }

  /**
   * Takes a pass's orphans (all of them: one not passed in is forgotten) and returns
   * those due for deletion.
   */
  confirm(orphans: readonly T[], nowMs: number): T[] {
    const seen = new Set<string>();
    const due: T[] = [];
    for (const orphan of orphans) {
      const key = this.keyOf(orphan);
      seen.add(key);
      const known = this.seen.get(key) ?? this.inherited.get(key);
      if (known === undefined) this.seen.set(key, { baseMs: 0, sinceMs: nowMs });
      else {
        this.seen.set(key, known);
        if (known.baseMs + (nowMs - known.sinceMs) >= this.graceMs) due.push(orphan);
      }
    }
    for (const key of [...this.seen.keys()]) {
      if (!seen.has(key)) this.seen.delete(key);
    }
    this.inherited = new Map();
    this.lastPassMs = nowMs;
    return due;
  }

  /**
   * What to hand on to the next tenure: each orphan the last pass saw, with the time it
   * had served at that pass (not at the write: serving is only known up to a sighting),
   * most served first, at most `max`.
   */
  sightings(max: number): Sighting[] {
    const passMs = this.lastPassMs;
    if (passMs === undefined) return [...this.inherited].map(([key, { baseMs }]) => [key, baseMs]);
    return [...this.seen]
      .map(([key, { baseMs, sinceMs }]): Sighting => [key, Math.floor(baseMs + passMs - sinceMs)])
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, max);
  }

  /** Orphans waiting out their grace. */
  get waiting(): number {
    return this.seen.size;
  }
}

/**
 * The nodes whose pointers the catalogue can forget: not members of the partition
 * (primary, secondaries, joining, learners) and no newer than some member's pointer of
 * the partition's incarnation (`prefix`, its checkpoint blob prefix). Until then the
 * departed pointer may be the partition's newest state on sleds, the one a learner is
 * sent (decisions.ts `learnerCheckpoint`). A member's pointer of another incarnation (a
 * deleted one's replica recorded it under the same name) holds another volume's data:
 * before (review 32) it counted, and could let a departed pointer of this one go though
 * no member's was as new.
 */
export function departedPointers(
  members: readonly string[],
  pointers: ReadonlyMap<string, Pick<CheckpointPointer, "opNum" | "blobKey">>,
  prefix: string,
): { node: string; opNum: number }[] {
  const memberSet = new Set(members);
  let memberOpNumMax = -1;
  for (const [node, pointer] of pointers) {
    if (memberSet.has(node) && pointer.blobKey.startsWith(prefix))
      memberOpNumMax = Math.max(memberOpNumMax, pointer.opNum);
  }
  const departed: { node: string; opNum: number }[] = [];
  for (const [node, pointer] of pointers) {
    if (!memberSet.has(node) && pointer.opNum <= memberOpNumMax) {
      departed.push({ node, opNum: pointer.opNum });
    }
  }
  return departed;
}
