// Re-replication on a head node: every chunk a primary's table lists keeps two copies on
// sleds in service. The coordinator declares a sled out after a long silence (its
// sledOutAfterMs) and says so in the answer to this node's reports; a copy on an out
// sled counts as lost. When the out set changes, and every replicatorIntervalMs, each
// primary's chunk table is scanned (`planCopies`, pure); each chunk short of copies is
// read whole from a live copy, checked against its CRC32C, written to a live sled of the
// configuration that does not hold it (SledClient.copyChunk), and then the core is asked
// to record the new copy list (`recordCopies`): the next flush record carries it to every
// replica, so the table of every replica, and the next checkpoint, name the new copy. A
// primary whose recorded checkpoint blob has fewer than two copies on sleds in service is
// asked for a new checkpoint (stored on two live sleds), once per blob: the core retries
// one that fails until one is recorded, its stores backing off while too few sleds take
// them (replica.ts onCheckpointFailed; a sled back in service brings the next forward).
//
// Pacing: at most replicationCopiesInflightMax copies at once on this node, over every
// partition it leads; one pass at a time (a change of the out set during a pass runs
// another after it).
//
// Scheduled scrub: every primary also reads each of its chunks' live copies whole, at a
// slow rate (one pass over its table per scrubIntervalMs, a day by default, spread
// evenly: `scrubDue`), checks them against the table's CRC32C, and repairs a damaged or
// missing copy from a sound one (SledClient.checkChunk: the new copy is written first,
// the damaged one dropped only if the sled refuses it). One chunk at a time, so a scrub
// adds at most one read to the copies above. Rot found between reads is thus repaired
// before a second fault can meet it. The cursor is in memory: a new primary starts its
// pass from the lowest chunk number.
//
// A sled back empty under its old id before it was declared out (a disk replaced, a
// data directory wiped) changes no out set: the scans above see nothing short. On the
// scrub's steps, every checkpointCheckIntervalMs, each primary therefore looks for its
// recorded checkpoint on the live sleds its pointer names (SledClient.statBlob: the
// sled's map, no data read) and stores a lost copy there again from a sound one
// (copyBlob), so the recorded pointer is true again with nothing new to record; once a
// scrub pass it reads the copies whole, since rot keeps the size. A copy that cannot be
// stored again, or is damaged, is replaced by a new checkpoint, once per blob. A sled
// found without a copy it held (a checkpoint here, a chunk the scrub found missing) is
// audited: every chunk copy this node's primaries list there is looked for
// (statChunk, no data read) and the missing ones repaired as the scrub repairs, so the
// sled is whole again in minutes rather than over the scrub's daily pass. Both are
// bounded per step (checkpointChecksPerStepMax, sledAuditChunksPerStepMax,
// sledAuditRepairsPerStepMax) and cost one small request per checkpoint copy a minute
// when all is well.
//
// A primary whose checkpoint is not on such a sled would meet its lost chunk copies only
// at the scrub's pace. The coordinator, though, hears the sled's heartbeats from a new
// data directory and names it in the answer to this node's reports (`askAudits`, with
// the directory's id) until every primary has audited it: each such sled is audited
// at once (an audit already under way begins again, since it may have looked before
// the copies were lost; every recorded checkpoint is looked for at the next step),
// every primary's table taken in turn, and a primary whose
// table the audit has covered lists the directory's id in its reports (`auditedDisks`),
// which is how status learns the sled's copies are back. A primary gained later, or one
// the audit missed, is audited on a later step while the coordinator still asks.
//
// A copy a sled's own scrub found damaged (`ballast scrub` without --repair; the sled
// keeps the list until the object is replaced) is not a copy: every
// damagedCheckIntervalMs, on the scrub's steps, each sled the primaries use is asked for
// its list (`damagedCopies`), reports count such copies as none, and the chunks listed
// are checked whole and repaired as the scrub repairs (damagedRepairsPerStepMax a step).
//
// Memory: the per-partition state (chunks recorded recently, checkpoint blobs replaced
// and looked for, scrub and audit cursors) is forgotten when the partition goes away: the head node calls
// `forgetPartition` when it closes a replica (a drop, a deleted volume, a retire), and
// each pass and scrub step also forgets partitions this node no longer hosts, so a long-
// lived node holds state only for the partitions it hosts now.
//
// Failure model: the shell holds nothing durable. A copy written but never recorded (a
// crash, a lost flush record, a failover) is an extra object that the coordinator's
// orphan sweep frees; the next pass (here, or on the new primary) finds the chunk still
// short and copies it again, to the same sled by the same choice, where the same bytes
// count as copied. A chunk recorded is not copied again for recordSettleMs, the time its
// flush record needs to commit. A chunk with no live copy cannot be copied: it is logged
// and counted short (its data is lost unless an out sled comes back).

import { limits } from "@ballast/protocol";
import { type Logger, RepeatLog } from "@ballast/runtime";
import type { CheckpointPointer } from "./replica/effects.ts";
import type { ChunkEntry } from "./replica/metadata.ts";
import type { Replica } from "./replica/replica.ts";
import type { ChunkOwner, SledClient } from "./sled-client.ts";

/** How often every primary's table is scanned even if the out set did not change. */
export const replicatorIntervalMs = 30_000;
/** Chunk copies made at once by this head node, over all its primaries. */
export const replicationCopiesInflightMax = 2;
/** A chunk whose new copy list was recorded is left alone this long (its flush record). */
export const recordSettleMs = 10_000;
/** One scrub pass over a primary's chunk table takes this long. */
export const scrubIntervalMs = 24 * 60 * 60 * 1000;
/** How often the scrub checks the chunks that have come due. */
export const scrubStepMs = 10_000;
/** Chunks one primary's scrub checks in one step at most (credit beyond it is dropped). */
export const scrubChunksPerStepMax = 16;
/**
 * How often each primary's recorded checkpoint is looked for on the live sleds its
 * pointer names (one metadata request per sled, no data read), on the scrub's steps.
 */
export const checkpointCheckIntervalMs = 60_000;
/** Primaries whose recorded checkpoint one scrub step looks for at most; the rest wait. */
export const checkpointChecksPerStepMax = 8;
/**
 * Chunk copies one scrub step looks for on sleds found to have lost a copy they held
 * (an audit: one metadata request each, no data read).
 */
export const sledAuditChunksPerStepMax = 256;
/** Copies an audit found missing that one scrub step repairs at most (a whole read each). */
export const sledAuditRepairsPerStepMax = 16;
/**
 * How often, on the scrub's steps, each sled the primaries use is asked which chunks its
 * own last scrub found damaged (`sled.chunk.damaged.v1`: one small request per sled).
 */
export const damagedCheckIntervalMs = 30_000;
/** Copies their sleds say are damaged that one scrub step repairs at most (a whole read each). */
export const damagedRepairsPerStepMax = 16;

/** What the replicator needs of a hosted replica (partition-host.ts). */
export interface ReplicatedPartition {
  readonly address: { volume: string; volumeId: string; partition: number };
  readonly roleName: "primary" | "secondary" | "idle";
  readonly replica: Pick<
    Replica,
    "metadata" | "recordCopies" | "requestCheckpoint" | "recordedCheckpoint"
  >;
  /** The sleds of the current configuration (alive as the coordinator last saw them). */
  readonly sleds: readonly string[];
}

/** One copy to make: from any of `sources` (live copies) to `target`. */
export interface CopyJob {
  chunkNumber: number;
  entry: ChunkEntry;
  sources: string[];
  target: string;
}

/** A chunk's copies on sleds in service. */
export function liveCopies(copies: readonly string[], out: ReadonlySet<string>): string[] {
  return copies.filter((sled) => !out.has(sled));
}

/** Per sled, the chunk ids whose copy there the sled's last scrub found damaged. */
export type DamagedCopies = ReadonlyMap<string, ReadonlySet<string>>;

const noDamagedCopies: DamagedCopies = new Map();

/**
 * Chunks of the table with fewer than `chunkCopies` sound copies on sleds in service: a copy its
 * sled says a scrub found damaged (`damaged`) is not counted.
 */
export function chunksShortOfCopies(
  chunks: ReadonlyMap<number, ChunkEntry>,
  out: ReadonlySet<string>,
  damaged: DamagedCopies = noDamagedCopies,
): number {
  let short = 0;
  for (const entry of chunks.values()) {
    let sound = 0;
    for (const sled of entry.copies) {
      if (out.has(sled)) continue;
      if (damaged.size > 0 && damaged.get(sled)?.has(entry.sledChunkId) === true) continue;
      sound++;
    }
    if (sound < limits.chunkCopies) short++;
  }
  return short;
}

/**
 * The copies to make for a table: one per chunk short of copies that has a live copy
 * to read and a live sled of `sleds` without one (chosen by the chunk number, so that
 * new copies spread and a retry picks the same sled). `skip` leaves chunks out (copies
 * in flight, or recorded recently). `lost`: short chunks with no live copy; `stuck`:
 * short chunks with no sled to copy to.
 */
export function planCopies(
  chunks: ReadonlyMap<number, ChunkEntry>,
  out: ReadonlySet<string>,
  sleds: readonly string[],
  skip: (chunkNumber: number) => boolean = () => false,
): { jobs: CopyJob[]; lost: number[]; stuck: number[] } {
  const jobs: CopyJob[] = [];
  const lost: number[] = [];
  const stuck: number[] = [];
  for (const [chunkNumber, entry] of chunks) {
    const sources = liveCopies(entry.copies, out);
    if (sources.length >= limits.chunkCopies || skip(chunkNumber)) continue;
    if (sources.length === 0) {
      lost.push(chunkNumber);
      continue;
    }
    const candidates = sleds.filter((sled) => !out.has(sled) && !entry.copies.includes(sled));
    if (candidates.length === 0) {
      stuck.push(chunkNumber);
      continue;
    }
    const target = candidates[chunkNumber % candidates.length]!;
    jobs.push({ chunkNumber, entry, sources, target });
  }
  return { jobs, lost, stuck };
}

/**
 * The scrub's pace for one partition: `credit` (fractional chunks owed) grows by the
 * table's share of `elapsedMs` of a whole pass; the whole part is due now, at most
 * scrubChunksPerStepMax (a long stall does not turn into a burst).
 */
export function scrubDue(
  credit: number,
  elapsedMs: number,
  chunks: number,
  intervalMs: number,
): { due: number; credit: number } {
  const owed = Math.min(credit + (elapsedMs * chunks) / intervalMs, scrubChunksPerStepMax);
  const due = Math.min(Math.floor(owed), chunks);
  return { due, credit: owed - due };
}

/** The `count` chunk numbers after `cursor` in order, wrapping around the table. */
export function nextChunks(
  chunkNumbers: Iterable<number>,
  cursor: number,
  count: number,
): number[] {
  const sorted = [...chunkNumbers].sort((a, b) => a - b);
  const start = sorted.findIndex((n) => n > cursor);
  const from = start === -1 ? 0 : start;
  const picked: number[] = [];
  for (let at = 0; at < Math.min(count, sorted.length); at++) {
    picked.push(sorted[(from + at) % sorted.length]!);
  }
  return picked;
}

export interface ReplicatorOptions {
  sleds: Pick<
    SledClient,
    "copyChunk" | "checkChunk" | "statBlob" | "copyBlob" | "getBlob" | "statChunk"
  > &
    Partial<Pick<SledClient, "damagedChunks" | "silentSleds">>;
  logger: Logger;
  /** The replicas this node hosts now. */
  partitions: () => Iterable<ReplicatedPartition>;
  intervalMs?: number;
  /** A whole scrub pass over each primary's table (scrubIntervalMs by default). */
  scrubIntervalMs?: number;
  /** How often a recorded checkpoint's copies are looked for (checkpointCheckIntervalMs). */
  checkpointCheckIntervalMs?: number;
  /** How often a lasting condition is logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
  clock?: () => number;
}

export class Replicator {
  private out: ReadonlySet<string> = new Set();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** `volumeId/partition/chunk` → when its new copy list was recorded. */
  private readonly recorded = new Map<string, number>();
  /**
   * Per partition, the checkpoint blob a new checkpoint was asked for: asked once, since
   * the core keeps a request until a checkpoint taken for it is recorded (a failed one is
   * taken again, Replica.onCheckpointFailed); a new recorded blob short of copies is asked
   * for anew.
   */
  private readonly checkpointsReplaced = new Map<string, string>();
  private readonly clock: () => number;
  private closed = false;
  private scrubTimer: NodeJS.Timeout | undefined;
  private scrubbing: Promise<void> | undefined;
  /** Per partition (`volumeId/partition`): the last chunk scrubbed, and chunks owed. */
  private readonly scrubbed = new Map<string, { cursor: number; credit: number; atMs: number }>();
  /**
   * Per partition: the recorded checkpoint blob last looked for on its sleds, when, and
   * when its copies were last read whole (or it was stored).
   */
  private readonly checkpointsChecked = new Map<
    string,
    { blobKey: string; atMs: number; readAtMs: number }
  >();
  /**
   * Sleds found without a copy they held (a store lost, the sled back under its old id):
   * per partition (`volumeId/partition`), the last chunk number looked for there
   * (Infinity once its table is done), and the copies found missing so far.
   */
  private readonly audits = new Map<
    string,
    { cursors: Map<string, number>; missing: number; disk?: string }
  >();
  /**
   * Sleds the coordinator asked audited (back on a new data directory): per sled, that
   * directory's id and the partitions (`volumeId/partition`) whose table an audit begun
   * since the ask has covered.
   */
  private readonly asked = new Map<string, { disk: string; partitions: Set<string> }>();
  /**
   * Per sled the primaries use, the chunks whose copy there its last scrub found damaged
   * (as it last said): reports count such a copy as none (`chunksShortOfCopies`), and the
   * scrub's steps repair it. One map for the node's life, changed in place: hosts read it.
   */
  readonly damagedCopies = new Map<string, Set<string>>();
  /** When the sleds were last asked for their damaged chunks (never: -Infinity). */
  private damagedAskedAtMs = Number.NEGATIVE_INFINITY;
  /**
   * The lasting conditions a pass meets again every replicatorIntervalMs (a partition
   * with chunks lost or stuck, copies to a sled that fail, the pass's own work line):
   * each logged when it begins, then once per logRepeatIntervalMs with the count left
   * out, and when it ends. Keys: `short/volumeId/partition`, `copy/volumeId/partition/sled`,
   * `work`.
   */
  private readonly repeats: RepeatLog;

  constructor(private readonly options: ReplicatorOptions) {
    this.clock = options.clock ?? (() => performance.now());
    this.repeats = new RepeatLog(options.logRepeatIntervalMs);
  }

  start(): void {
    this.timer = setInterval(
      () => void this.pass(),
      this.options.intervalMs ?? replicatorIntervalMs,
    );
    this.scrubTimer = setInterval(() => void this.scrubStep(), scrubStepMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.scrubTimer);
    await Promise.all([this.running, this.scrubbing]);
  }

  /** Checks the chunks whose turn has come on every primary; one step at a time. */
  scrubStep(): Promise<void> {
    this.scrubbing ??= (async () => {
      try {
        await this.scrubDueChunks();
      } catch (error) {
        this.options.logger.error({ error: String(error) }, "scrub step failed");
      } finally {
        this.scrubbing = undefined;
      }
    })();
    return this.scrubbing;
  }

  private async scrubDueChunks(): Promise<void> {
    const nowMs = this.clock();
    const intervalMs = this.options.scrubIntervalMs ?? scrubIntervalMs;
    const hosted = new Set<string>();
    let checkpointChecks = 0;
    const primaries: ReplicatedPartition[] = [];
    for (const partition of this.options.partitions()) {
      const key = `${partition.address.volumeId}/${partition.address.partition}`;
      hosted.add(key);
      if (partition.roleName !== "primary") {
        this.scrubbed.delete(key);
        this.checkpointsChecked.delete(key);
        continue;
      }
      primaries.push(partition);
      if (
        checkpointChecks < checkpointChecksPerStepMax &&
        this.checkpointCheckDue(key, partition)
      ) {
        checkpointChecks++;
        await this.checkCheckpointCopies(partition);
        if (this.closed) return;
      }
      const chunks = partition.replica.metadata.chunks;
      const state = this.scrubbed.get(key) ?? { cursor: -1, credit: 0, atMs: nowMs };
      const { due, credit } = scrubDue(state.credit, nowMs - state.atMs, chunks.size, intervalMs);
      state.credit = credit;
      state.atMs = nowMs;
      this.scrubbed.set(key, state);
      for (const chunkNumber of nextChunks(chunks.keys(), state.cursor, due)) {
        if (this.closed || partition.roleName !== "primary") return;
        state.cursor = chunkNumber;
        const entry = chunks.get(chunkNumber);
        if (entry !== undefined) await this.scrubChunk(partition, entry);
      }
    }
    this.forgetAllBut(hosted);
    await this.repairDamaged(primaries);
    if (this.closed) return;
    // A sled asked audited that some primary's table has not been audited for (a primary
    // gained since, an audit cut short): audited again, the tables done left out.
    for (const [sled, { disk, partitions }] of this.asked) {
      if (this.audits.has(sled)) continue;
      const keys = primaries.map(({ address }) => `${address.volumeId}/${address.partition}`);
      if (keys.every((key) => partitions.has(key))) continue;
      this.auditSled(sled, `the coordinator heard it on a new data directory ${disk}`);
    }
    await this.auditSleds(primaries);
  }

  /**
   * `sled` was found without a copy it held: every chunk copy this node's primaries list
   * there is looked for (auditSleds), rather than left to the scrub's slow pace. A sled
   * the coordinator asks audited is audited for that ask (its directory's id), the
   * tables already covered for it left out.
   */
  private auditSled(sled: string, why: string): void {
    if (this.audits.has(sled) || this.out.has(sled)) return;
    const asked = this.asked.get(sled);
    const cursors = new Map<string, number>();
    for (const key of asked?.partitions ?? []) cursors.set(key, Number.POSITIVE_INFINITY);
    this.audits.set(sled, {
      cursors,
      missing: 0,
      ...(asked === undefined ? {} : { disk: asked.disk }),
    });
    this.options.logger.warn(
      { sled, why },
      "a sled lost a copy it held: looking for every chunk copy listed there",
    );
  }

  /**
   * Copies their sleds say a scrub found damaged: every damagedCheckIntervalMs each sled
   * the primaries use (in service) is asked for its list; then a bounded number of the
   * chunks listed with such a copy are checked whole and repaired as the scrub repairs
   * (scrubChunk), the rest on later steps. A sled that does not answer keeps what it last
   * said. Before, a copy a sled's own scrub (`ballast scrub`) had found damaged still
   * counted as a copy in the primaries' reports until a read or the daily scrub met it.
   */
  private async repairDamaged(primaries: readonly ReplicatedPartition[]): Promise<void> {
    const damagedChunks = this.options.sleds.damagedChunks?.bind(this.options.sleds);
    if (damagedChunks === undefined) return;
    const nowMs = this.clock();
    const used = new Set(
      primaries.flatMap((partition) => partition.sleds).filter((sled) => !this.out.has(sled)),
    );
    // A used sled whose last request went unanswered is asked on every step, not every
    // damagedCheckIntervalMs: its answer is how a sled back before it was declared out is
    // seen (sled-client.ts, "Sleds answering again"), and a checkpoint store short of it
    // waits for that.
    const silent = this.options.sleds.silentSleds?.() ?? new Set<string>();
    let asked = [...used].filter((sled) => silent.has(sled));
    if (nowMs - this.damagedAskedAtMs >= damagedCheckIntervalMs) {
      this.damagedAskedAtMs = nowMs;
      for (const sled of this.damagedCopies.keys()) {
        if (!used.has(sled)) this.damagedCopies.delete(sled);
      }
      asked = [...used];
    }
    if (asked.length > 0) {
      await Promise.all(
        asked.map(async (sled) => {
          try {
            const damaged = await damagedChunks(sled);
            if (damaged.size === 0) this.damagedCopies.delete(sled);
            else this.damagedCopies.set(sled, damaged);
          } catch (error) {
            this.options.logger.debug(
              { sled, error: String(error) },
              "could not ask a sled for the chunks its scrub found damaged; the next look asks again",
            );
          }
        }),
      );
    }
    if (this.damagedCopies.size === 0) return;
    let repairs = 0;
    for (const partition of primaries) {
      for (const entry of [...partition.replica.metadata.chunks.values()]) {
        if (repairs >= damagedRepairsPerStepMax || this.closed) return;
        if (partition.roleName !== "primary") break;
        const on = entry.copies.filter(
          (sled) => this.damagedCopies.get(sled)?.has(entry.sledChunkId) === true,
        );
        if (on.length === 0) continue;
        repairs++;
        const outcomes = await this.scrubChunk(partition, entry);
        // Repaired (or found sound after all): no longer counted damaged until a sled
        // says so again.
        for (const sled of on) {
          const failed = outcomes.some((outcome) => outcome.sled === sled && !outcome.repaired);
          if (failed) continue;
          this.damagedCopies.get(sled)?.delete(entry.sledChunkId);
          if (this.damagedCopies.get(sled)?.size === 0) this.damagedCopies.delete(sled);
        }
      }
    }
  }

  /**
   * The sleds the coordinator asks audited (answer to a report: `sledsToAudit`), each with
   * the id of the new data directory it was heard from. A sled newly asked, or on yet
   * another directory, is audited at once (an audit under way begins again: it may have
   * looked before the sled lost its copies); one no longer asked is forgotten.
   */
  askAudits(sleds: readonly { sled: string; disk: string }[]): void {
    const next = new Map(sleds.map(({ sled, disk }) => [sled, disk]));
    let fresh = false;
    for (const [sled, disk] of next) {
      if (this.asked.get(sled)?.disk === disk) continue;
      this.asked.set(sled, { disk, partitions: new Set() });
      this.audits.delete(sled);
      // Recorded checkpoints are looked for at the next step too, not a minute on: one
      // named on that sled is stored there again at once.
      for (const checked of this.checkpointsChecked.values()) {
        checked.atMs = Number.NEGATIVE_INFINITY;
      }
      this.options.logger.warn(
        { sled, disk },
        "the coordinator heard a sled back on another data directory: auditing every chunk copy listed there",
      );
      fresh = true;
    }
    for (const sled of this.asked.keys()) {
      if (!next.has(sled)) this.asked.delete(sled);
    }
    if (fresh && !this.closed) void this.scrubStep();
  }

  /**
   * The data directories asked audited whose audit has covered partition `partition` of
   * incarnation `volumeId`'s table (its reports list them), sorted.
   */
  auditedDisks(volumeId: string, partition: number): string[] {
    const key = `${volumeId}/${partition}`;
    const disks: string[] = [];
    for (const { disk, partitions } of this.asked.values()) {
      if (partitions.has(key)) disks.push(disk);
    }
    return disks.sort();
  }

  /**
   * One step of the audits: for each sled audited, the chunks each primary lists there,
   * in chunk-number order from its cursor, are looked for (statChunk); a copy missing or
   * of another size is repaired as the scrub repairs (scrubChunk). Bounded per step by
   * sledAuditChunksPerStepMax looks and sledAuditRepairsPerStepMax repairs. A sled that
   * does not answer waits for the next step; one declared out is left to re-replication.
   * An audit ends once every primary's table is done.
   */
  private async auditSleds(primaries: readonly ReplicatedPartition[]): Promise<void> {
    let looks = 0;
    let repairs = 0;
    for (const [sled, audit] of this.audits) {
      if (this.out.has(sled)) {
        this.audits.delete(sled);
        continue;
      }
      let done = true;
      tables: for (const partition of primaries) {
        const key = `${partition.address.volumeId}/${partition.address.partition}`;
        const cursor = audit.cursors.get(key) ?? -1;
        if (cursor === Number.POSITIVE_INFINITY) continue;
        const chunks = partition.replica.metadata.chunks;
        const due: number[] = [];
        for (const [chunkNumber, entry] of chunks) {
          if (chunkNumber > cursor && entry.copies.includes(sled)) due.push(chunkNumber);
        }
        due.sort((a, b) => a - b);
        for (const chunkNumber of due) {
          const entry = chunks.get(chunkNumber);
          if (
            this.closed ||
            partition.roleName !== "primary" ||
            looks >= sledAuditChunksPerStepMax ||
            repairs >= sledAuditRepairsPerStepMax
          ) {
            done = false;
            break tables;
          }
          if (entry === undefined) continue;
          looks++;
          const { address } = partition;
          let found: { bytes: number } | undefined;
          try {
            found = await this.options.sleds.statChunk(
              { volume: address.volume, partition: address.partition },
              entry.sledChunkId,
              sled,
            );
          } catch (error) {
            this.options.logger.warn(
              { sled, chunk: entry.sledChunkId, error: String(error) },
              "could not look for a chunk copy on an audited sled; the next step asks again",
            );
            done = false;
            break tables;
          }
          audit.cursors.set(key, chunkNumber);
          if (found?.bytes === entry.bytes) continue;
          repairs++;
          audit.missing++;
          await this.scrubChunk(partition, entry);
        }
        audit.cursors.set(key, Number.POSITIVE_INFINITY);
        // Covered by an audit the coordinator asked, still current: said in reports.
        const asked = this.asked.get(sled);
        if (
          audit.disk !== undefined &&
          asked?.disk === audit.disk &&
          this.audits.get(sled) === audit
        ) {
          asked.partitions.add(key);
        }
      }
      if (!done) continue;
      // Begun again meanwhile (askAudits): the new audit stays.
      if (this.audits.get(sled) !== audit) continue;
      this.audits.delete(sled);
      this.options.logger.info(
        { sled, missing: audit.missing },
        "looked for every chunk copy listed on a sled that had lost one",
      );
    }
  }

  /**
   * Whether partition `key`'s recorded checkpoint is due a look at its copies: never
   * looked at by this primary, or not for checkpointCheckIntervalMs. A blob recorded
   * since the last look was just stored on its sleds: its first look waits an interval.
   */
  private checkpointCheckDue(key: string, partition: ReplicatedPartition): boolean {
    const pointer = partition.replica.recordedCheckpoint;
    if (pointer === undefined) return false;
    const nowMs = this.clock();
    const last = this.checkpointsChecked.get(key);
    if (last !== undefined && last.blobKey !== pointer.blobKey) {
      this.checkpointsChecked.set(key, { blobKey: pointer.blobKey, atMs: nowMs, readAtMs: nowMs });
      return false;
    }
    const intervalMs = this.options.checkpointCheckIntervalMs ?? checkpointCheckIntervalMs;
    return last === undefined || nowMs - last.atMs >= intervalMs;
  }

  /**
   * Looks for the recorded checkpoint blob on each live sled its pointer names (a sled
   * back under its old id on an empty disk before it was declared out holds none); a
   * missing copy is stored there again from a sound one, so the pointer the coordinator
   * holds names two copies again and nothing new is recorded. When that cannot be done
   * (no sound copy, a copy of another size, the store failed), a new checkpoint is asked
   * for, as for a copy on a sled out (`checkCheckpoint`). A sled that does not answer
   * says nothing: the next look asks again, and a long silence makes it out.
   */
  private async checkCheckpointCopies(partition: ReplicatedPartition): Promise<void> {
    const pointer = partition.replica.recordedCheckpoint;
    if (pointer === undefined) return;
    const key = `${partition.address.volumeId}/${partition.address.partition}`;
    const nowMs = this.clock();
    const readAtMs = this.checkpointsChecked.get(key)?.readAtMs ?? nowMs;
    this.checkpointsChecked.set(key, { blobKey: pointer.blobKey, atMs: nowMs, readAtMs });
    const sound: string[] = [];
    const missing: string[] = [];
    const wrong: string[] = [];
    for (const sled of liveCopies(pointer.sleds, this.out)) {
      try {
        const found = await this.options.sleds.statBlob(pointer.blobKey, sled);
        if (found === undefined) missing.push(sled);
        else if (found.bytes === pointer.bytes) sound.push(sled);
        else wrong.push(sled);
      } catch (error) {
        this.options.logger.warn(
          { ...partition.address, blobKey: pointer.blobKey, sled, error: String(error) },
          "could not look for a copy of the recorded checkpoint; the next look asks again",
        );
      }
    }
    // Once a scrub pass, the copies found are read whole and checked against the blob's
    // CRC32C: rot that keeps the size is seen only so. A damaged copy cannot be written
    // over (blobs are write-once): a new checkpoint replaces the blob.
    const damaged: string[] = [];
    if (nowMs - readAtMs >= (this.options.scrubIntervalMs ?? scrubIntervalMs)) {
      this.checkpointsChecked.set(key, { blobKey: pointer.blobKey, atMs: nowMs, readAtMs: nowMs });
      for (const sled of sound) {
        try {
          await this.options.sleds.getBlob(pointer.blobKey, pointer.bytes, [sled]);
        } catch {
          damaged.push(sled); // getBlob logged why
        }
      }
    }
    if (damaged.length > 0 && partition.replica.recordedCheckpoint?.blobKey === pointer.blobKey) {
      this.replaceCheckpoint(
        partition,
        pointer,
        `the recorded checkpoint's copy on [${damaged.join(", ")}] is damaged: taking a new one`,
      );
      return;
    }
    if (missing.length === 0 && wrong.length === 0) return;
    for (const sled of missing) {
      this.auditSled(sled, `checkpoint ${pointer.blobKey} was missing`);
    }
    const current = () =>
      partition.roleName === "primary" &&
      partition.replica.recordedCheckpoint?.blobKey === pointer.blobKey;
    let failed = wrong.length > 0 || sound.length === 0;
    for (const sled of failed ? [] : missing) {
      if (!current() || this.closed) return;
      try {
        const from = await this.options.sleds.copyBlob(pointer.blobKey, pointer.bytes, sound, sled);
        this.options.logger.warn(
          { ...partition.address, blobKey: pointer.blobKey, from, to: sled },
          "a sled named by the recorded checkpoint had lost its copy: stored it there again",
        );
      } catch (error) {
        failed = true;
        this.options.logger.warn(
          { ...partition.address, blobKey: pointer.blobKey, to: sled, error: String(error) },
          "could not store a lost copy of the recorded checkpoint again",
        );
      }
    }
    if (failed && current()) {
      this.replaceCheckpoint(
        partition,
        pointer,
        `the recorded checkpoint is missing on [${missing.join(", ")}] and of another size on [${wrong.join(", ")}], and could not be stored there again: taking a new one`,
      );
    }
  }

  /**
   * Reads every live copy of one chunk whole; repairs the damaged and missing ones.
   * Returns what was found wrong with each copy (none: every copy sound).
   */
  private async scrubChunk(
    partition: ReplicatedPartition,
    entry: ChunkEntry,
  ): Promise<{ sled: string; repaired: boolean }[]> {
    const { address } = partition;
    const copies = liveCopies(entry.copies, this.out);
    if (copies.length === 0) return [];
    const outcomes = await this.options.sleds.checkChunk(
      { volume: address.volume, partition: address.partition },
      entry.sledChunkId,
      copies,
      entry.checksum === undefined
        ? { bytes: entry.bytes }
        : { bytes: entry.bytes, checksum: entry.checksum },
    );
    for (const outcome of outcomes) {
      if (outcome.found === "missing") {
        this.auditSled(outcome.sled, `chunk ${entry.sledChunkId} was missing`);
      }
      this.options.logger.warn(
        { ...address, chunk: entry.sledChunkId, ...outcome },
        outcome.repaired
          ? `scrub found a ${outcome.found} chunk copy and repaired it`
          : `scrub found a ${outcome.found} chunk copy and could not repair it`,
      );
    }
    return outcomes;
  }

  /**
   * Forgets everything kept for partition `partition` of incarnation `volumeId` (it is
   * no longer hosted here). Reopened later, it starts as a new primary would: a chunk
   * recorded just before may be copied again, which the failure model allows.
   */
  forgetPartition(volumeId: string, partition: number): void {
    const key = `${volumeId}/${partition}`;
    this.checkpointsReplaced.delete(key);
    this.checkpointsChecked.delete(key);
    this.scrubbed.delete(key);
    this.forgetRepeatsOf(volumeId, partition);
    for (const audit of this.audits.values()) audit.cursors.delete(key);
    for (const asked of this.asked.values()) asked.partitions.delete(key);
    for (const chunkKey of this.recorded.keys()) {
      if (chunkKey.startsWith(`${key}/`)) this.recorded.delete(chunkKey);
    }
  }

  /** Forgets, without a line, the lasting conditions logged of one partition. */
  private forgetRepeatsOf(volumeId: string, partition: number): void {
    const key = `${volumeId}/${partition}`;
    this.repeats.forget((repeat) => repeat === `short/${key}` || repeat.startsWith(`copy/${key}/`));
  }

  /** The partitions (`volumeId/partition`) this replicator keeps any state for. */
  trackedPartitions(): string[] {
    const keys = new Set([
      ...this.checkpointsReplaced.keys(),
      ...this.checkpointsChecked.keys(),
      ...this.scrubbed.keys(),
      ...[...this.audits.values()].flatMap((audit) => [...audit.cursors.keys()]),
      ...[...this.asked.values()].flatMap((asked) => [...asked.partitions]),
    ]);
    for (const chunkKey of this.recorded.keys()) {
      keys.add(chunkKey.slice(0, chunkKey.lastIndexOf("/")));
    }
    for (const repeat of this.repeats.keys()) {
      if (repeat.startsWith("short/")) keys.add(repeat.slice("short/".length));
      else if (repeat.startsWith("copy/")) {
        keys.add(repeat.slice("copy/".length, repeat.lastIndexOf("/")));
      }
    }
    return [...keys].sort();
  }

  /** Forgets the partitions not in `hosted` (keys `volumeId/partition`). */
  private forgetAllBut(hosted: ReadonlySet<string>): void {
    for (const key of this.trackedPartitions()) {
      if (hosted.has(key)) continue;
      const at = key.lastIndexOf("/");
      this.forgetPartition(key.slice(0, at), Number(key.slice(at + 1)));
    }
  }

  /** The sleds out of service, as the coordinator's last report answer named them. */
  get sledsOut(): ReadonlySet<string> {
    return this.out;
  }

  /** A new out set: a pass starts at once if it changed. */
  setOut(ids: readonly string[]): void {
    const next = new Set(ids);
    if (next.size === this.out.size && [...next].every((id) => this.out.has(id))) return;
    this.options.logger.info({ sledsOut: [...next] }, "sleds out of service changed");
    this.out = next;
    void this.pass();
  }

  /** Scans every primary's table and makes the missing copies; one pass at a time. */
  pass(): Promise<void> {
    if (this.running !== undefined) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.scan();
        } while (this.again && !this.closed);
      } catch (error) {
        this.options.logger.error({ error: String(error) }, "re-replication pass failed");
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async scan(): Promise<void> {
    const out = this.out;
    const nowMs = this.clock();
    for (const [key, atMs] of this.recorded) {
      if (nowMs - atMs >= recordSettleMs) this.recorded.delete(key);
    }
    const work: { partition: ReplicatedPartition; job: CopyJob }[] = [];
    const partitions = [...this.options.partitions()];
    this.forgetAllBut(
      new Set(partitions.map(({ address }) => `${address.volumeId}/${address.partition}`)),
    );
    for (const partition of partitions) {
      if (partition.roleName !== "primary") {
        // Not its to copy any more: what it said as primary is not said on.
        this.forgetRepeatsOf(partition.address.volumeId, partition.address.partition);
        continue;
      }
      this.checkCheckpoint(partition, out);
      const { volumeId, partition: index } = partition.address;
      const { jobs, lost, stuck } = planCopies(
        partition.replica.metadata.chunks,
        out,
        partition.sleds,
        (chunk) => this.recorded.has(`${volumeId}/${index}/${chunk}`),
      );
      const shortKey = `short/${volumeId}/${index}`;
      if (lost.length > 0 || stuck.length > 0) {
        // Data at risk: a warning as long as it lasts, at a bounded rate.
        const due = this.repeats.due(shortKey, nowMs);
        if (due !== undefined) {
          this.options.logger.warn(
            {
              ...partition.address,
              lost: lost.slice(0, 16),
              stuck: stuck.slice(0, 16),
              ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
            },
            `${lost.length} chunks have no copy on a sled in service, ${stuck.length} have no live sled to copy to`,
          );
        }
      } else if (this.repeats.end(shortKey) !== undefined) {
        this.options.logger.info(
          { ...partition.address },
          "no chunk is left without a copy on a sled in service or a live sled to copy to",
        );
      }
      for (const job of jobs) work.push({ partition, job });
    }
    // Copies no longer owed to a sled (it went out, the chunks got copies elsewhere):
    // failures there are not repeats any more.
    const owed = new Set(
      work.map(
        ({ partition, job }) =>
          `copy/${partition.address.volumeId}/${partition.address.partition}/${job.target}`,
      ),
    );
    this.repeats.forget((key) => key.startsWith("copy/") && !owed.has(key));
    if (work.length === 0) {
      this.repeats.end("work");
      return;
    }
    // Copies that fail every pass (a full sled, say) bring the same work back each pass.
    const due = this.repeats.due("work", nowMs);
    if (due !== undefined) {
      this.options.logger.info(
        { chunks: work.length, ...(due.first ? {} : { repeatsSuppressed: due.suppressed }) },
        "re-replicating chunks short of copies",
      );
    }
    let next = 0;
    const worker = async () => {
      while (next < work.length && !this.closed) {
        const { partition, job } = work[next++]!;
        await this.copy(partition, job);
      }
    };
    await Promise.all(Array.from({ length: replicationCopiesInflightMax }, worker));
  }

  private async copy(partition: ReplicatedPartition, job: CopyJob): Promise<void> {
    const { replica, address } = partition;
    const current = replica.metadata.chunks.get(job.chunkNumber);
    // Dropped or replaced since the plan, or no longer led here: nothing to do.
    if (partition.roleName !== "primary" || current?.sledChunkId !== job.entry.sledChunkId) return;
    const owner: ChunkOwner = { volume: address.volume, partition: address.partition };
    try {
      const from = await this.options.sleds.copyChunk(
        owner,
        job.entry.sledChunkId,
        job.sources,
        job.target,
        job.entry.checksum === undefined
          ? { bytes: job.entry.bytes }
          : { bytes: job.entry.bytes, checksum: job.entry.checksum },
      );
      if (partition.roleName !== "primary") return;
      const copies = [...liveCopies(current.copies, this.out), job.target];
      replica.recordCopies(job.chunkNumber, [...new Set(copies)]);
      this.recorded.set(
        `${address.volumeId}/${address.partition}/${job.chunkNumber}`,
        this.clock(),
      );
      const failed = this.repeats.end(
        `copy/${address.volumeId}/${address.partition}/${job.target}`,
      );
      this.options.logger.info(
        {
          ...address,
          chunk: job.entry.sledChunkId,
          from,
          to: job.target,
          copies,
          ...(failed === undefined ? {} : { afterFailuresSuppressed: failed.suppressed }),
        },
        "made a new copy of a chunk short of copies",
      );
    } catch (error) {
      // One line per partition and target sled when its copies begin to fail, then a
      // reminder per logRepeatIntervalMs: every chunk short of copies fails each pass.
      const due = this.repeats.due(
        `copy/${address.volumeId}/${address.partition}/${job.target}`,
        this.clock(),
      );
      if (due !== undefined) {
        this.options.logger.warn(
          {
            ...address,
            chunk: job.entry.sledChunkId,
            to: job.target,
            error: String(error),
            ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
          },
          "could not copy a chunk short of copies; the next pass tries again",
        );
      }
    }
  }

  /** A recorded checkpoint with fewer than two live copies is replaced by a new one. */
  private checkCheckpoint(partition: ReplicatedPartition, out: ReadonlySet<string>): void {
    const pointer = partition.replica.recordedCheckpoint;
    if (pointer === undefined) return;
    if (liveCopies(pointer.sleds, out).length >= limits.chunkCopies) return;
    this.replaceCheckpoint(
      partition,
      pointer,
      `the recorded checkpoint has fewer than ${limits.chunkCopies} copies on sleds in service: taking a new one`,
    );
  }

  /** Asks the core for a new checkpoint in place of `pointer`'s, once per blob. */
  private replaceCheckpoint(
    partition: ReplicatedPartition,
    pointer: CheckpointPointer,
    why: string,
  ): void {
    const key = `${partition.address.volumeId}/${partition.address.partition}`;
    if (this.checkpointsReplaced.get(key) === pointer.blobKey) return;
    this.checkpointsReplaced.set(key, pointer.blobKey);
    partition.replica.requestCheckpoint();
    this.options.logger.info(
      { ...partition.address, blobKey: pointer.blobKey, sleds: pointer.sleds },
      why,
    );
  }
}
