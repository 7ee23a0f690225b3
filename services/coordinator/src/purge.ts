// Purging deleted incarnations: which of a sled's objects belong to a deleted volume
// incarnation, and when to look for them again or forget the incarnation. Pure: the
// inventory, the purge records and the time come in as arguments; the shell
// (purger.ts) lists the sleds and sends the deletes.
//
// Model: a volume delete leaves a durable purge record per incarnation in the
// catalogue (`purge.<volume id>`). The objects of an incarnation are its chunks, whose
// ids begin with the volume id (or, when that id would make a chunk id too long, with
// the base-36 CRC32C of the volume id; see the head node's `sledChunkIdOf`) and whose
// owner names the volume, and its checkpoint blobs, keyed
// `checkpoints/<volume id>/<partition>/<node>/…`. A match is exact: the whole id
// prefix, followed by the rest of a chunk id's shape, the owner's volume and partition;
// never a name prefix that another volume or incarnation could share. A hashed prefix
// that a live incarnation of the same name also hashes to is never matched, so a CRC
// collision cannot delete live data; an incarnation that is live again (a record left
// by a delete that failed) is never purged.
//
// Schedule: an incarnation is first purged a grace period after the leader first saw
// its record, so that a head node's flush or checkpoint upload in flight at the delete
// lands first and is deleted too. Passes repeat; once passes have found nothing on
// every sled awaited (see below) for a retention time, the record is forgotten. A sled
// that is down keeps the record (its objects are purged when it returns), up to an age
// limit past which the orphan collector is left to find them.
//
// Sleds awaited: every sled membership lists that is alive (it is listed and must
// answer) or dead but not declared out (a restart, a short outage: it comes back with
// its objects soon, and purging it then is cheaper than the collector). A sled declared
// out (sleds.ts: silent for `sledOutAfterMs`) or forgotten by membership (silent far
// longer, membership.ts) is gone for good as far as a purge is concerned, and does not
// keep the record: one such sled kept every record for the whole age limit, and every
// pass listed every live sled for each. If it does come back, its objects of
// incarnations whose records are gone belong to no incarnation the catalogue knows, and
// the leftover sweep (leftovers.ts) deletes them; of those still recorded, the purger
// does when it lists the sled again. A leader that has not yet loaded the out set
// awaits every dead sled.
// A new leader starts each record's grace afresh: it cannot know how long ago the
// previous leader saw it, and a longer wait is always safe.
//
// Drops owed: the record also names the head nodes that may hold replicas of the
// incarnation when it was deleted (`headNodes`). The delete tells the live ones to drop
// them at once, but a head node that is down, frozen or cut off from the bus misses
// that, and then nothing else would ever tell it: the incarnation's records are gone,
// so no configure reaches it, and a replica it still holds as primary keeps answering
// the volume's subject (a re-creation of the name included) and keeps its files for
// good. So each pass owes the drop to every named head node, and to every node whose
// reports still name a replica of the incarnation, that has not acknowledged it to
// this leader; the shell sends it to those alive. Acknowledgements are kept in memory
// only (the catalogue's purge record is written once, before the delete), so a new
// leader sends every drop once more; a drop is idempotent on the head node. A record is
// forgotten only once no drop is owed as well, or at the age limit. Once the sleds are
// clean for the retention time, passes stop listing them for a record that only waits
// for drops. An incarnation that is live (a record left by a delete that failed) is
// owed no drop: a drop closes and removes replicas.

import { checkpointBlobPrefixOf, hashedChunkIdPrefixOf } from "@ballast/protocol";

/** `purge.<volume id>` in the catalogue: a deleted incarnation whose objects may remain. */
export interface PurgeRecord {
  /** The volume's name: every chunk of the incarnation names it as owner. */
  volume: string;
  volumeId: string;
  /** Wall-clock time of the delete, shown to operators; never used to measure. */
  deletedAtMs: number;
  /**
   * The head nodes that may hold replicas of the incarnation at its delete: each is
   * told to drop them until it acknowledges. Absent on records written before.
   */
  headNodes?: readonly string[];
}

export interface ChunkEntry {
  chunkId: string;
  owner: { volume: string; partition: number };
  bytes: number;
}

/** What one sled holds that could belong to the incarnations being purged. */
export interface SledInventory {
  chunks: readonly ChunkEntry[];
  blobKeys: readonly string[];
}

export type PurgeDelete =
  | { kind: "chunk"; volumeId: string; chunkId: string; owner: ChunkEntry["owner"] }
  | { kind: "blob"; volumeId: string; key: string };

/** The rest of a chunk id after its volume prefix (partition, epoch, session, chunk). */
const chunkIdTailPattern = /^-p([0-9a-z]+)-e[0-9a-z]+-s[0-9a-z]+-c[0-9a-z]+$/;

/**
 * Whether `chunk` belongs to the incarnation `record`. `liveVolumeIds` are the ids of
 * every volume in the catalogue now: a hashed prefix one of them shares is ambiguous,
 * and ambiguity keeps the chunk.
 */
export function isChunkOf(
  chunk: Pick<ChunkEntry, "chunkId" | "owner">,
  record: Pick<PurgeRecord, "volume" | "volumeId">,
  liveVolumeIds: ReadonlySet<string>,
): boolean {
  if (chunk.owner.volume !== record.volume) return false;
  // Readable ids write the partition in decimal, hashed ones in base 36.
  if (tailPartitionIs(chunk.chunkId, record.volumeId, 10, chunk.owner.partition)) return true;
  const hashed = hashedChunkIdPrefixOf(record.volumeId);
  if (!tailPartitionIs(chunk.chunkId, hashed, 36, chunk.owner.partition)) return false;
  for (const live of liveVolumeIds) if (hashedChunkIdPrefixOf(live) === hashed) return false;
  return true;
}

function tailPartitionIs(chunkId: string, prefix: string, radix: number, partition: number) {
  if (!chunkId.startsWith(prefix)) return false;
  const tail = chunkIdTailPattern.exec(chunkId.slice(prefix.length));
  return tail !== null && Number.parseInt(tail[1]!, radix) === partition;
}

export function isBlobOf(key: string, volumeId: string): boolean {
  return key.startsWith(checkpointBlobPrefixOf(volumeId));
}

/**
 * The deletes that purge `records` from a sled holding `inventory`. Records of
 * incarnations that are live are skipped whole.
 */
export function purgeDeletes(
  inventory: SledInventory,
  records: readonly PurgeRecord[],
  liveVolumeIds: ReadonlySet<string>,
): PurgeDelete[] {
  const deletes: PurgeDelete[] = [];
  for (const record of records) {
    if (liveVolumeIds.has(record.volumeId)) continue;
    for (const chunk of inventory.chunks) {
      if (isChunkOf(chunk, record, liveVolumeIds)) {
        deletes.push({
          kind: "chunk",
          volumeId: record.volumeId,
          chunkId: chunk.chunkId,
          owner: chunk.owner,
        });
      }
    }
    for (const key of inventory.blobKeys) {
      if (isBlobOf(key, record.volumeId))
        deletes.push({ kind: "blob", volumeId: record.volumeId, key });
    }
  }
  return deletes;
}

/**
 * The sleds a purge pass must hear from before it can call an incarnation clean and
 * is missing: those dead and not declared out. `out` is undefined while the leader does
 * not know the out set: then every dead sled is awaited.
 */
export function sledsAwaited(
  sleds: readonly { id: string; alive: boolean }[],
  out: ReadonlySet<string> | undefined,
): string[] {
  return sleds
    .filter((sled) => !sled.alive && !(out?.has(sled.id) ?? false))
    .map((sled) => sled.id)
    .sort();
}

export interface PurgeTimes {
  /** After the leader first sees a record, before its first pass. */
  graceMs: number;
  /** Clean passes must span this long before a record is forgotten. */
  retainMs: number;
  /**
   * A record this old (since first seen) is forgotten even if some sled never answered
   * or some head node never acknowledged its drop.
   */
  ageMsMax: number;
}

/** How a pass over every known sled went, for one incarnation. */
export interface PassOutcome {
  /** Objects of the incarnation the pass found (deleted, or failed to delete). */
  found: number;
  /** No sled was awaited (sledsAwaited), every live one answered and took every delete. */
  complete: boolean;
  /** Head nodes still owed the drop after the pass (dropsOwed less those that answered). */
  dropsOwed?: number;
}

interface Tracked {
  record: PurgeRecord;
  seenAtMs: number;
  cleanSinceMs: number | undefined;
  /** Passes found nothing on every sled for the retention time: no need to list them. */
  sledsClean: boolean;
  /** Head nodes that acknowledged the drop to this leader. */
  dropped: Set<string>;
}

export interface PendingPurge {
  volume: string;
  volumeId: string;
  deletedAtMs: number;
  /** How long passes have found nothing on every sled; 0 until one has. */
  cleanForMs: number;
}

export class PurgeSchedule {
  private readonly tracked = new Map<string, Tracked>();

  constructor(private readonly times: PurgeTimes) {}

  /** The records in the catalogue now: new ones start their grace, gone ones are dropped. */
  observe(records: readonly PurgeRecord[], nowMs: number): void {
    const present = new Set(records.map((record) => record.volumeId));
    for (const volumeId of [...this.tracked.keys()]) {
      if (!present.has(volumeId)) this.tracked.delete(volumeId);
    }
    for (const record of records) {
      if (!this.tracked.has(record.volumeId)) {
        this.tracked.set(record.volumeId, {
          record,
          seenAtMs: nowMs,
          cleanSinceMs: undefined,
          sledsClean: false,
          dropped: new Set(),
        });
      }
    }
  }

  /** The incarnations whose grace is over: purge them now. */
  due(nowMs: number): PurgeRecord[] {
    return [...this.tracked.values()]
      .filter((entry) => nowMs - entry.seenAtMs >= this.times.graceMs)
      .map((entry) => entry.record);
  }

  /** Whether passes need not list the sleds for the incarnation any more. */
  sledsClean(volumeId: string): boolean {
    return this.tracked.get(volumeId)?.sledsClean === true;
  }

  /**
   * The head nodes owed the incarnation's drop: those its record names and `holders`
   * (the nodes whose reports name a replica of it), less those that acknowledged it.
   * None while the incarnation is live: a drop would remove a live volume's replicas.
   */
  dropsOwed(
    volumeId: string,
    holders: Iterable<string>,
    liveVolumeIds: ReadonlySet<string>,
  ): string[] {
    const entry = this.tracked.get(volumeId);
    if (entry === undefined || liveVolumeIds.has(volumeId)) return [];
    const owed = new Set([...(entry.record.headNodes ?? []), ...holders]);
    return [...owed].filter((node) => !entry.dropped.has(node)).sort();
  }

  /** `node` acknowledged the incarnation's drop. */
  dropped(volumeId: string, node: string): void {
    this.tracked.get(volumeId)?.dropped.add(node);
  }

  /** Records a pass; answers whether the incarnation's record can now be forgotten. */
  passed(volumeId: string, outcome: PassOutcome, nowMs: number): "keep" | "forget" {
    const entry = this.tracked.get(volumeId);
    if (entry === undefined) return "keep";
    if (!entry.sledsClean) {
      if (outcome.found > 0 || !outcome.complete) {
        entry.cleanSinceMs = undefined;
      } else {
        entry.cleanSinceMs ??= nowMs;
        entry.sledsClean = nowMs - entry.cleanSinceMs >= this.times.retainMs;
      }
    }
    if (entry.sledsClean && (outcome.dropsOwed ?? 0) === 0) return "forget";
    return nowMs - entry.seenAtMs >= this.times.ageMsMax && outcome.found === 0 ? "forget" : "keep";
  }

  /** The record is gone from the catalogue. */
  forget(volumeId: string): void {
    this.tracked.delete(volumeId);
  }

  pending(nowMs: number): PendingPurge[] {
    return [...this.tracked.values()].map((entry) => ({
      volume: entry.record.volume,
      volumeId: entry.record.volumeId,
      deletedAtMs: entry.record.deletedAtMs,
      cleanForMs: entry.cleanSinceMs === undefined ? 0 : nowMs - entry.cleanSinceMs,
    }));
  }
}
