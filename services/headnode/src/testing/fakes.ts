// Seeded fakes of a replica's ports (ports.ts), shared by the simulators
// (simulation/simulation.ts, simulation/failover.ts) and the scenario tests. Nothing
// here reads a clock or Math.random: work completes when the simulator calls
// `complete()` at a tick, and every fault is drawn from the one seeded generator, so a
// seed replays exactly.
//
// Fault knobs, each off once the simulator turns faults off (settling):
// - journal (FakeJournal): operations complete in order after a random delay; a crash
//   loses what had not completed, and the append in progress may leave a prefix of its
//   notes (a torn tail); as sabotage, a crash may also lose acknowledged notes. Armed
//   by `failNext` (the simulator's draw, kept while settling: it strikes at the next
//   write), the next append or truncation fails with EIO and what was queued behind it
//   is lost, as on a full or broken disk.
// - checkpoint file (FakeCheckpointFile): written after a delay; a crash loses a write
//   in progress (the old file stays).
// - sleds (FakeSleds): chunk writes and whole-chunk reads (compaction) fail at a rate,
//   and a read of a chunk no sled has (or with another size or CRC32C) fails (where asked,
//   one that succeeds may hand over damaged bytes all the same); checkpoint uploads fail at a rate,
//   and each of their two copies may be lost or corrupt (found by the blob's CRC32C).
//   Copies go only to the sleds the replica was told of that are up (`sledUp`): with
//   fewer than chunkCopies configured a chunk write is refused, as SledClient's is, and
//   with fewer up it fails. Reads ignore which sleds are up (a copy is never lost).
// - network (FakeNetwork): messages are dropped, duplicated and delayed (so reordered).
// - checkpoint records (FakeCheckpointRecords): the coordinator's catalogue, which keeps
//   the newest pointer per replica and answers with the one it replaced.
// - clock (DriftingClock): a node's monotonic clock at its own rate and offset, stepping
//   forward now and then.
//
// Holding back: a simulator may hold the completions of one owner (a paused process, a
// hung disk) by the `held` predicate it passes to `complete`.

import { BallastError, crc32c, ErrorCode, limits } from "@ballast/protocol";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { JumpableRandomGenerator } from "pure-rand/types/JumpableRandomGenerator";
import type {
  CheckpointStorePort,
  ClockPort,
  Done,
  JournalPort,
  SledsPort,
  StoredCheckpoint,
} from "../ports.ts";
import type { CheckpointPointer } from "../replica/effects.ts";
import { PartitionMetadata } from "../replica/metadata.ts";
import type { Note } from "../replica/note.ts";
import type { ClockReading, Recovered } from "../replica/replica.ts";
import type { CopyRepair } from "../sled-client.ts";

/** The one seeded generator of a simulation. */
export class SimRandom {
  private readonly generator: JumpableRandomGenerator;

  constructor(seed: number) {
    this.generator = xoroshiro128plus(seed);
  }

  chance(probability: number): boolean {
    if (probability <= 0) return false;
    return uniformInt(this.generator, 0, 999_999) < probability * 1_000_000;
  }

  /** A whole number in [from, to] (bounds rounded inwards). */
  integer(from: number, to: number): number {
    const low = Math.ceil(from);
    return uniformInt(this.generator, low, Math.max(low, Math.floor(to)));
  }
}

/** A copy of `data` with one bit, drawn from `random`, flipped (damage). */
export function flipBit(data: Uint8Array, random: SimRandom): Uint8Array {
  const copy = Uint8Array.prototype.slice.call(data);
  const bit = random.integer(0, copy.byteLength * 8 - 1);
  copy[bit >> 3] = copy[bit >> 3]! ^ (1 << (bit & 7));
  return copy;
}

/** What every fake reads of its simulation. */
export interface SimWorld {
  readonly random: SimRandom;
  readonly tick: number;
  /** Faults are drawn only while this is on (off while settling). */
  readonly faultsOn: boolean;
  /** A check the fakes themselves make failed (a journal out of order, a chunk rewritten). */
  fail(check: string, message: string): void;
}

/** A world that reads the simulation's tick and its fault switch as they change. */
export function simWorld(
  random: SimRandom,
  now: { tick(): number; faultsOn(): boolean },
  fail: (check: string, message: string) => void,
): SimWorld {
  return {
    random,
    get tick() {
      return now.tick();
    },
    get faultsOn() {
      return now.faultsOn();
    },
    fail,
  };
}

const ok = { ok: true, value: undefined } as const;

type JournalOperation =
  | { kind: "append"; notes: readonly Note[] }
  | { kind: "truncate"; afterOpNum: number }
  | { kind: "release"; throughOpNum: number };

/** One replica's journal: `notes` is what survives a crash. */
export class FakeJournal implements JournalPort {
  notes: Note[] = [];
  /**
   * The notes of an append that failed: written to the page cache, never made durable.
   * After a failed fsync Linux may mark such pages clean, so until the machine reboots
   * a read of the files can return them (journal/failed-marker.ts): what a reopen in
   * that boot would recover on top of `notes`. Empty once the machine reboots.
   */
  unsynced: Note[] = [];
  private queue: { operation: JournalOperation; readyTick: number; done: Done }[] = [];
  private failArmed = false;
  private failAllowed: () => boolean = () => true;

  constructor(
    private readonly world: SimWorld,
    private readonly delayTicksMax: number,
  ) {}

  append(notes: readonly Note[], done: Done): void {
    this.enqueue({ kind: "append", notes }, done);
  }

  truncateAfter(afterOpNum: number, done: Done): void {
    this.enqueue({ kind: "truncate", afterOpNum }, done);
  }

  releaseThrough(throughOpNum: number, done: Done): void {
    this.enqueue({ kind: "release", throughOpNum }, done);
  }

  /** Operations not yet durable. */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Armed by `failNext`: the next append or truncation that comes due fails, as on a full
   * or broken disk (ENOSPC, EIO).
   */
  get failing(): boolean {
    return this.failArmed;
  }

  /**
   * A journal failure: the next append or truncation to come due (now or whenever the
   * replica next writes) is rejected with an I/O error. What was queued behind it is
   * lost, as after a failed fsync nothing later is known durable; what was durable
   * stays, for recovery to find when the replica is opened again. One failure per arming:
   * a reopened replica finds a working disk. `allowed`, asked when the failure would
   * strike, may call it off (the simulation's fault model).
   */
  failNext(allowed: () => boolean = () => true): void {
    this.failArmed = true;
    this.failAllowed = allowed;
  }

  /**
   * Makes durable, in order, every operation due by now, or the first `operationsMax` of
   * them (a slow disk that does one write at a time).
   */
  complete(operationsMax: number = Number.POSITIVE_INFINITY): void {
    let completed = 0;
    while (
      completed++ < operationsMax &&
      this.queue.length > 0 &&
      this.queue[0]!.readyTick <= this.world.tick
    ) {
      const { operation, done } = this.queue.shift()!;
      if (this.failArmed && operation.kind !== "release") {
        this.failArmed = false;
        if (this.failAllowed()) {
          this.queue = [];
          this.unsynced =
            operation.kind === "append" ? operation.notes.map((note) => ({ ...note })) : [];
          const error = Object.assign(new Error("EIO: i/o error, write (simulated)"), {
            code: "EIO",
          });
          done({ ok: false, error });
          return;
        }
      }
      switch (operation.kind) {
        case "append":
          this.appendDurably(operation.notes);
          break;
        case "truncate":
          this.notes = this.notes.filter((note) => note.opNum <= operation.afterOpNum);
          break;
        case "release":
          this.notes = this.notes.filter((note) => note.opNum > operation.throughOpNum);
          break;
        default: {
          const unreachable: never = operation;
          throw new Error(`unknown journal operation ${JSON.stringify(unreachable)}`);
        }
      }
      done(ok);
    }
  }

  /** A crash: pending operations are lost, the append in progress may be torn. */
  crash(): void {
    // The restarted process finds the disk working again.
    this.failArmed = false;
    const inProgress = this.queue[0]?.operation;
    if (inProgress?.kind === "append") {
      const kept = this.world.random.integer(0, inProgress.notes.length);
      this.appendDurably(inProgress.notes.slice(0, kept));
    }
    this.queue = [];
  }

  /** The machine rebooted: the page cache is gone, and the disk is what reads find. */
  reboot(): void {
    this.unsynced = [];
  }

  /**
   * What a read of the files finds in this boot: the durable notes and, after a failed
   * append, that append's notes where they follow on (the page cache's).
   */
  readable(): Note[] {
    const last = this.notes[this.notes.length - 1]?.opNum;
    const first = this.unsynced[0]?.opNum;
    const follows = first !== undefined && (last === undefined || first === last + 1);
    return follows ? [...this.notes, ...this.unsynced] : [...this.notes];
  }

  /** Sabotage: a disk that loses acknowledged writes (its newest durable notes). */
  loseNewest(count: number): void {
    this.notes.splice(Math.max(0, this.notes.length - count));
  }

  private enqueue(operation: JournalOperation, done: Done): void {
    const previous = this.queue[this.queue.length - 1]?.readyTick ?? this.world.tick;
    const delay = this.world.faultsOn ? this.world.random.integer(0, this.delayTicksMax) : 0;
    this.queue.push({ operation, readyTick: Math.max(previous, this.world.tick + delay), done });
  }

  private appendDurably(notes: readonly Note[]): void {
    for (const note of notes) {
      const last = this.notes[this.notes.length - 1];
      if (last !== undefined && note.opNum !== last.opNum + 1) {
        this.world.fail("journal", `append of op ${note.opNum} after op ${last.opNum}`);
      }
      this.notes.push({ ...note });
    }
  }
}

/** One replica's checkpoint file, and the checkpoint it was rebuilt from. */
export class FakeCheckpointFile implements CheckpointStorePort {
  checkpoint: Uint8Array | undefined;
  /** Another replica's checkpoint this one was rebuilt from, until it writes its own. */
  rebuiltFrom: Uint8Array | undefined;
  private writing: { snapshot: Uint8Array; readyTick: number; done: Done } | undefined;

  constructor(
    private readonly world: SimWorld,
    private readonly writeTicksMax: number,
  ) {}

  write(snapshot: Uint8Array, done: Done): void {
    const readyTick = this.world.tick + this.world.random.integer(1, this.writeTicksMax);
    this.writing = { snapshot, readyTick, done };
  }

  read(): Promise<StoredCheckpoint | undefined> {
    if (this.checkpoint !== undefined)
      return Promise.resolve({ bytes: this.checkpoint, rebuilt: false });
    if (this.rebuiltFrom !== undefined)
      return Promise.resolve({ bytes: this.rebuiltFrom, rebuilt: true });
    return Promise.resolve(undefined);
  }

  /** Whether a write is in progress. */
  get pending(): boolean {
    return this.writing !== undefined;
  }

  complete(): void {
    const writing = this.writing;
    if (writing === undefined || writing.readyTick > this.world.tick) return;
    this.writing = undefined;
    this.checkpoint = writing.snapshot;
    this.rebuiltFrom = undefined;
    writing.done(ok);
  }

  crash(): void {
    this.writing = undefined;
  }
}

/**
 * What a replica starts from on these disks, as the head node reads them on start: the
 * checkpoint file (restored; rebuilt when it is another replica's) and a copy of every
 * durable note.
 */
export async function recoveredFrom(
  journal: FakeJournal,
  checkpoints: FakeCheckpointFile,
  /** Reads the files as they read in the boot the journal failed in (see `unsynced`). */
  inFailedBoot = false,
): Promise<Recovered> {
  const stored = await checkpoints.read();
  const checkpoint =
    stored === undefined ? undefined : await PartitionMetadata.restore(stored.bytes);
  return {
    ...(checkpoint === undefined ? {} : { checkpoint }),
    rebuilt: stored?.rebuilt === true,
    notes: (inFailedBoot ? journal.readable() : journal.notes).map((note) => ({ ...note })),
  };
}

export interface FakeSledsOptions {
  chunkFailRate: number;
  /** Ticks a chunk write takes at most (at least one). */
  chunkWriteTicksMax: number;
  /** A checkpoint upload fails; each of its two copies is lost or corrupt. */
  blobPutFailRate: number;
  blobCopyLossRate: number;
  blobPutTicksMax: number;
  /**
   * Whether a sled is up now (all are, without it). A copy goes only to a sled the
   * replica was told of (its configure's live sleds) that is up when the write lands.
   */
  sledUp?: (sled: string) => boolean;
  /**
   * Whole-chunk reads (compaction) need a sled up among the chunk's copies that holds
   * one (`holders`), as a sled whose store was lost answers NotFound. Off, any read of a
   * chunk written finds its bytes.
   */
  perSledCopies?: boolean;
  /**
   * Asked for each whole-chunk read that succeeds: whether it hands the replica bytes
   * with a bit flipped that got past the shell's CRC32C check (damage in memory after
   * it, say), for the core's own check to refuse. Never, without it.
   */
  readDamaged?: () => boolean;
  /**
   * Whether a head node (a port's owner) is cut from every sled now, while the sleds are
   * up for everyone else and for the coordinator: its chunk writes, whole-chunk reads,
   * blob stores and blob fetches fail as the real client's would. Never, without it.
   * (Reads of a flushed range, `readChunk`, still find their bytes.)
   */
  ownerCut?: (owner: string) => boolean;
}

interface Blob {
  crc: number;
  /** Each holder's copy, or undefined where it was lost. */
  copies: Map<string, Uint8Array | undefined>;
}

type SledWork =
  | {
      kind: "chunk";
      owner: string;
      readyTick: number;
      sledChunkId: string;
      data: Uint8Array;
      /** The sleds the replica's configure named (its runner's). */
      sleds: readonly string[];
      fails: boolean;
      done: Done<string[]>;
    }
  | {
      kind: "blob";
      owner: string;
      readyTick: number;
      key: string;
      data: Uint8Array;
      sleds: readonly string[];
      done: Done<string[]>;
    }
  | {
      kind: "read";
      owner: string;
      readyTick: number;
      sledChunkId: string;
      bytes: number;
      checksum: number | undefined;
      /** The copies the chunk table lists. */
      copies: readonly string[];
      fails: boolean;
      done: Done<Uint8Array>;
    }
  | { kind: "delete"; owner: string; readyTick: number; key: string; done: Done }
  | {
      /** The replicator's look for a checkpoint copy (SledClient.statBlob). */
      kind: "blob-stat";
      owner: string;
      readyTick: number;
      key: string;
      sled: string;
      done: Done<{ bytes: number; checksum: number } | undefined>;
    }
  | {
      /** An audit's look for a chunk copy (SledClient.statChunk). */
      kind: "chunk-stat";
      owner: string;
      readyTick: number;
      sledChunkId: string;
      sled: string;
      done: Done<{ bytes: number; checksum: number } | undefined>;
    }
  | {
      /** A lost checkpoint copy stored again (SledClient.copyBlob). */
      kind: "blob-copy";
      owner: string;
      readyTick: number;
      key: string;
      from: readonly string[];
      to: string;
      fails: boolean;
      done: Done<string>;
    }
  | {
      /** Re-replication (SledClient.copyChunk): a live copy read whole, written to `to`. */
      kind: "copy";
      owner: string;
      readyTick: number;
      sledChunkId: string;
      from: readonly string[];
      to: string;
      fails: boolean;
      done: Done<string>;
    }
  | {
      /** The scrub (SledClient.checkChunk): every copy read, the missing ones repaired. */
      kind: "check";
      owner: string;
      readyTick: number;
      sledChunkId: string;
      copies: readonly string[];
      done: Done<CopyRepair[]>;
    };

/** The sleds every replica of a simulation shares. */
export class FakeSleds {
  /** Every chunk's bytes, by its id (write-once: one content per id, wherever held). */
  readonly chunks = new Map<string, Uint8Array>();
  /**
   * Which sleds hold a copy of each chunk: those a write reached, a copy or a repair
   * wrote to, less those whose store was lost since (`loseStore`). Reads ignore it
   * unless `perSledCopies` is on.
   */
  readonly holders = new Map<string, Set<string>>();
  /** `sled/chunk id` of every copy any sled ever held (the copy-list check). */
  private readonly everHeld = new Set<string>();
  readonly blobs = new Map<string, Blob>();
  /** Whole-chunk reads answered with the chunk's bytes (compaction). */
  chunkReads = 0;
  /** Chunk writes and blob stores that got their copies, by owner (`storesOf`). */
  private readonly stores = new Map<string, number>();
  private work: SledWork[] = [];

  constructor(
    private readonly world: SimWorld,
    private readonly options: FakeSledsOptions,
  ) {}

  /** The sleds as one owner (a head node) uses them; its completions can be held. */
  port(owner: string): SledsPort {
    const world = this.world;
    return {
      writeChunk: (chunk, sleds, done) => {
        if (sleds.length < limits.chunkCopies) {
          // As SledClient.writeChunk: refused before any sled is asked (answered at the
          // next completion, as the real client's promise rejects on a later turn).
          this.work.push({
            kind: "chunk",
            owner,
            readyTick: world.tick,
            sledChunkId: chunk.sledChunkId,
            data: chunk.data,
            sleds,
            fails: true,
            done: (outcome) =>
              done(
                outcome.ok
                  ? outcome
                  : {
                      ok: false,
                      error: new BallastError(
                        ErrorCode.Unavailable,
                        `a chunk needs ${limits.chunkCopies} sleds, but only ${sleds.length} are configured`,
                      ),
                    },
              ),
          });
          return;
        }
        this.work.push({
          kind: "chunk",
          owner,
          readyTick: world.tick + world.random.integer(1, this.options.chunkWriteTicksMax),
          sledChunkId: chunk.sledChunkId,
          data: chunk.data,
          sleds: [...sleds],
          fails: world.faultsOn && world.random.chance(this.options.chunkFailRate),
          done,
        });
      },
      readChunk: async (sledChunkId, _copies, offset, length) => {
        const chunk = this.chunks.get(sledChunkId);
        if (chunk === undefined) throw new Error(`no chunk ${sledChunkId}`);
        return chunk.subarray(offset, offset + length);
      },
      readWholeChunk: (chunk, done) => {
        this.work.push({
          kind: "read",
          owner,
          readyTick: world.tick + world.random.integer(1, this.options.chunkWriteTicksMax),
          sledChunkId: chunk.sledChunkId,
          bytes: chunk.bytes,
          checksum: chunk.checksum,
          copies: chunk.copies,
          fails: world.faultsOn && world.random.chance(this.options.chunkFailRate),
          done,
        });
      },
      putBlob: (key, data, sleds, _spread, done) => {
        const readyTick = world.tick + world.random.integer(0, this.options.blobPutTicksMax);
        this.work.push({ kind: "blob", owner, readyTick, key, data, sleds, done });
      },
      getBlob: async (key, _bytes, sleds) => {
        // Unanswered, as a real cut is (Timeout): not a refusal of the blob.
        if (this.cut(owner))
          throw new BallastError(ErrorCode.Timeout, `blob ${key}: no sled answered ${owner}`);
        return this.getBlob(key, sleds);
      },
      deleteBlob: (key, _sleds, done) => {
        this.work.push({ kind: "delete", owner, readyTick: world.tick, key, done });
      },
    };
  }

  /** Work not yet completed. */
  get pending(): number {
    return this.work.length;
  }

  /** Completes the work due by now, except what `held` holds back. */
  complete(held: (owner: string, kind: SledWork["kind"]) => boolean = () => false): void {
    for (let index = 0; index < this.work.length; ) {
      const work = this.work[index]!;
      if (work.readyTick > this.world.tick || held(work.owner, work.kind)) {
        index++;
        continue;
      }
      this.work.splice(index, 1);
      switch (work.kind) {
        case "chunk": {
          const holders = this.cut(work.owner)
            ? []
            : this.upOf(work.sleds).slice(0, limits.chunkCopies);
          if (work.fails) {
            work.done({ ok: false, error: new Error(`chunk ${work.sledChunkId}: sled failed`) });
          } else if (holders.length < limits.chunkCopies) {
            // Its sleds are down: as SledClient.writeChunk, too few copies is a failure.
            work.done({
              ok: false,
              error: new Error(
                `chunk ${work.sledChunkId} reached ${holders.length} of ${limits.chunkCopies} sleds`,
              ),
            });
          } else {
            const existing = this.chunks.get(work.sledChunkId);
            if (existing !== undefined && Buffer.compare(existing, work.data) !== 0) {
              this.world.fail(
                "sled",
                `chunk ${work.sledChunkId} written twice with different data`,
              );
            }
            this.chunks.set(work.sledChunkId, work.data);
            for (const sled of holders) this.hold(sled, work.sledChunkId);
            this.stored(work.owner);
            work.done({ ok: true, value: holders });
          }
          break;
        }
        case "read": {
          const data = this.chunks.get(work.sledChunkId);
          const held =
            this.options.perSledCopies !== true ||
            work.copies.some((sled) => this.holds(sled, work.sledChunkId));
          if (work.fails || data === undefined || !held || this.cut(work.owner)) {
            work.done({ ok: false, error: new Error(`chunk ${work.sledChunkId}: read failed`) });
          } else if (
            data.byteLength !== work.bytes ||
            (work.checksum !== undefined && crc32c(data) !== work.checksum)
          ) {
            work.done({
              ok: false,
              error: new Error(`chunk ${work.sledChunkId}: CRC32C mismatch`),
            });
          } else {
            this.chunkReads++;
            const damaged = this.options.readDamaged?.() === true;
            work.done({ ok: true, value: damaged ? flipBit(data, this.world.random) : data });
          }
          break;
        }
        case "blob":
          this.completePut(work);
          break;
        case "delete":
          this.blobs.delete(work.key);
          work.done(ok);
          break;
        case "copy":
          this.completeCopy(work);
          break;
        case "check":
          work.done({ ok: true, value: this.checkCopies(work.sledChunkId, work.copies) });
          break;
        case "blob-stat":
          this.completeBlobStat(work);
          break;
        case "chunk-stat": {
          const up = this.options.sledUp ?? (() => true);
          const data = this.chunks.get(work.sledChunkId);
          if (!up(work.sled)) {
            work.done({ ok: false, error: new Error(`sled ${work.sled} did not answer`) });
          } else if (data === undefined || !this.holds(work.sled, work.sledChunkId)) {
            work.done({ ok: true, value: undefined });
          } else {
            work.done({ ok: true, value: { bytes: data.byteLength, checksum: crc32c(data) } });
          }
          break;
        }
        case "blob-copy":
          this.completeBlobCopy(work);
          break;
        default: {
          const unreachable: never = work;
          throw new Error(`unknown sled work ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  /**
   * Chunk writes and blob stores of `owner` that got their copies, as a head node's
   * SledClient counts them (`stores`, the report's `sledStores`).
   */
  storesOf(owner: string): number {
    return this.stores.get(owner) ?? 0;
  }

  private stored(owner: string): void {
    this.stores.set(owner, this.storesOf(owner) + 1);
  }

  /** Whether `owner` is cut from every sled now (`ownerCut`). */
  private cut(owner: string): boolean {
    return this.options.ownerCut?.(owner) === true;
  }

  /** Whether `sled` is up now and holds a copy of the chunk. */
  holds(sled: string, sledChunkId: string): boolean {
    const up = this.options.sledUp;
    return (up === undefined || up(sled)) && this.holders.get(sledChunkId)?.has(sled) === true;
  }

  /** Whether `sled` held a copy of the chunk at any time (lost since or not). */
  everHeldBy(sled: string, sledChunkId: string): boolean {
    return this.everHeld.has(`${sled}/${sledChunkId}`);
  }

  /** The sleds that hold a copy of the chunk now, up or down. */
  holdersOf(sledChunkId: string): ReadonlySet<string> {
    return this.holders.get(sledChunkId) ?? new Set();
  }

  private hold(sled: string, sledChunkId: string): void {
    let holders = this.holders.get(sledChunkId);
    if (holders === undefined) {
      holders = new Set();
      this.holders.set(sledChunkId, holders);
    }
    holders.add(sled);
    this.everHeld.add(`${sled}/${sledChunkId}`);
  }

  /** `sled`'s store is lost (a failed disk): every chunk copy and blob copy on it. */
  loseStore(sled: string): void {
    for (const holders of this.holders.values()) holders.delete(sled);
    for (const blob of this.blobs.values()) blob.copies.delete(sled);
  }

  /**
   * Copies a chunk as SledClient.copyChunk does, `ticks` from now: from the first of
   * `from` up that holds it, to `to` (up then); answers the source sled. Fails (as the
   * real one rejects) with `fails`, with no source, or with the target down.
   */
  copyChunk(
    owner: string,
    sledChunkId: string,
    from: readonly string[],
    to: string,
    ticks: number,
    fails: boolean,
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      this.work.push({
        kind: "copy",
        owner,
        readyTick: this.world.tick + ticks,
        sledChunkId,
        from: [...from],
        to,
        fails,
        done: (outcome) => (outcome.ok ? resolve(outcome.value) : reject(outcome.error)),
      });
    });
  }

  /**
   * The scrub's check of one chunk, `ticks` from now, as SledClient.checkChunk: every
   * copy up is read; those missing are written again from one that holds it.
   */
  checkChunk(
    owner: string,
    sledChunkId: string,
    copies: readonly string[],
    ticks: number,
  ): Promise<CopyRepair[]> {
    return new Promise((resolve, reject) => {
      this.work.push({
        kind: "check",
        owner,
        readyTick: this.world.tick + ticks,
        sledChunkId,
        copies: [...copies],
        done: (outcome) => (outcome.ok ? resolve(outcome.value) : reject(outcome.error)),
      });
    });
  }

  /**
   * What `sled` holds under blob `key`, `ticks` from now, as SledClient.statBlob: its
   * size and CRC32C (of the bytes held, sound or not), or undefined when it holds none;
   * rejects when the sled is down (no answer).
   */
  statBlob(
    owner: string,
    key: string,
    sled: string,
    ticks: number,
  ): Promise<{ bytes: number; checksum: number } | undefined> {
    return new Promise((resolve, reject) => {
      this.work.push({
        kind: "blob-stat",
        owner,
        readyTick: this.world.tick + ticks,
        key,
        sled,
        done: (outcome) => (outcome.ok ? resolve(outcome.value) : reject(outcome.error)),
      });
    });
  }

  /**
   * What `sled` holds of a chunk, `ticks` from now, as SledClient.statChunk: its size and
   * CRC32C, or undefined when it holds none; rejects when the sled is down.
   */
  statChunk(
    owner: string,
    sledChunkId: string,
    sled: string,
    ticks: number,
  ): Promise<{ bytes: number; checksum: number } | undefined> {
    return new Promise((resolve, reject) => {
      this.work.push({
        kind: "chunk-stat",
        owner,
        readyTick: this.world.tick + ticks,
        sledChunkId,
        sled,
        done: (outcome) => (outcome.ok ? resolve(outcome.value) : reject(outcome.error)),
      });
    });
  }

  /**
   * Stores blob `key` on `to` again, `ticks` from now, as SledClient.copyBlob: from the
   * first of `from` whose copy is sound; fails with `fails`, with no sound source, with
   * `to` down, or with `to` holding the key already (write-once).
   */
  copyBlob(
    owner: string,
    key: string,
    from: readonly string[],
    to: string,
    ticks: number,
    fails: boolean,
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      this.work.push({
        kind: "blob-copy",
        owner,
        readyTick: this.world.tick + ticks,
        key,
        from: [...from],
        to,
        fails,
        done: (outcome) => (outcome.ok ? resolve(outcome.value) : reject(outcome.error)),
      });
    });
  }

  private completeBlobStat(work: Extract<SledWork, { kind: "blob-stat" }>): void {
    const up = this.options.sledUp ?? (() => true);
    if (!up(work.sled)) {
      work.done({ ok: false, error: new Error(`sled ${work.sled} did not answer`) });
      return;
    }
    const copy = this.blobs.get(work.key)?.copies.get(work.sled);
    work.done({
      ok: true,
      value: copy === undefined ? undefined : { bytes: copy.byteLength, checksum: crc32c(copy) },
    });
  }

  private completeBlobCopy(work: Extract<SledWork, { kind: "blob-copy" }>): void {
    const up = this.options.sledUp ?? (() => true);
    const blob = this.blobs.get(work.key);
    const source = work.from.find((sled) => {
      const copy = blob?.copies.get(sled);
      return up(sled) && copy !== undefined && crc32c(copy) === blob!.crc;
    });
    const fail = (why: string) =>
      work.done({ ok: false, error: new Error(`storing blob ${work.key} on ${work.to}: ${why}`) });
    if (source === undefined) fail("no sound copy");
    else if (work.fails || !up(work.to)) fail("sled failed");
    else if (blob!.copies.get(work.to) !== undefined) fail("the sled holds the key already");
    else {
      blob!.copies.set(work.to, blob!.copies.get(source));
      work.done({ ok: true, value: source });
    }
  }

  private completeCopy(work: Extract<SledWork, { kind: "copy" }>): void {
    const source = work.from.find((sled) => this.holds(sled, work.sledChunkId));
    const up = this.options.sledUp ?? (() => true);
    if (source === undefined) {
      work.done({
        ok: false,
        error: new BallastError(
          ErrorCode.Unavailable,
          `no sound copy of chunk ${work.sledChunkId} to copy to ${work.to}`,
        ),
      });
    } else if (work.fails || !up(work.to)) {
      work.done({
        ok: false,
        error: new BallastError(
          ErrorCode.Unavailable,
          `copying chunk ${work.sledChunkId} from ${source} to ${work.to}: sled failed`,
        ),
      });
    } else {
      this.hold(work.to, work.sledChunkId);
      work.done({ ok: true, value: source });
    }
  }

  private checkCopies(sledChunkId: string, copies: readonly string[]): CopyRepair[] {
    const up = this.options.sledUp ?? (() => true);
    const live = copies.filter((sled) => up(sled));
    const missing = live.filter((sled) => !this.holds(sled, sledChunkId));
    if (missing.length === 0) return [];
    const sound = live.some((sled) => this.holds(sled, sledChunkId));
    return missing.map((sled) => {
      if (!sound) {
        return {
          sled,
          found: "missing",
          repaired: false,
          error: `no sound copy of chunk ${sledChunkId} to repair from`,
        };
      }
      this.hold(sled, sledChunkId);
      return { sled, found: "missing", repaired: true };
    });
  }

  private completePut(work: Extract<SledWork, { kind: "blob" }>): void {
    const { world, options } = this;
    if (world.faultsOn && world.random.chance(options.blobPutFailRate)) {
      work.done({ ok: false, error: new Error(`blob ${work.key}: upload failed`) });
      return;
    }
    const holders = this.cut(work.owner) ? [] : this.upOf(work.sleds).slice(0, limits.chunkCopies);
    if (holders.length < limits.chunkCopies) {
      // As SledClient.putBlob: a blob short of its copies is not stored.
      work.done({
        ok: false,
        error: new Error(
          `blob ${work.key} reached ${holders.length} of ${limits.chunkCopies} sleds`,
        ),
      });
      return;
    }
    const copies = new Map<string, Uint8Array | undefined>();
    for (const sled of holders) {
      let copy: Uint8Array | undefined = work.data;
      if (world.faultsOn && world.random.chance(options.blobCopyLossRate)) {
        if (world.random.chance(0.5)) {
          copy = undefined; // lost
        } else {
          copy = new Uint8Array(work.data); // a copy (Buffer.slice is a view)
          const at = world.random.integer(0, copy.length - 1);
          copy[at] = copy[at]! ^ 0x5a;
        }
      }
      copies.set(sled, copy);
    }
    this.blobs.set(work.key, { crc: crc32c(work.data), copies });
    this.stored(work.owner);
    work.done({ ok: true, value: holders });
  }

  /** The sleds of `sleds` that are up now, in order. */
  private upOf(sleds: readonly string[]): string[] {
    const up = this.options.sledUp;
    return up === undefined ? [...sleds] : sleds.filter((sled) => up(sled));
  }

  private getBlob(key: string, sleds: readonly string[]): { data: Uint8Array; sled: string } {
    const blob = this.blobs.get(key);
    for (const sled of sleds) {
      const copy = blob?.copies.get(sled);
      if (copy !== undefined && crc32c(copy) === blob!.crc) return { data: copy, sled };
    }
    throw new Error(`no sound copy of blob ${key} on ${sleds.join(", ")}`);
  }
}

export interface FakeNetworkOptions {
  dropRate: number;
  duplicateRate: number;
  delayTicksMax: number;
}

/** Messages in flight: dropped, duplicated and delayed while faults are on. */
export class FakeNetwork<Envelope> {
  dropped = 0;
  private inFlight: { tick: number; envelope: Envelope }[] = [];

  constructor(
    private readonly world: SimWorld,
    private readonly options: FakeNetworkOptions,
  ) {}

  /**
   * Sends; `duplicable: false` for what must arrive at most once (a client's attempt).
   * `heldTicks`: it waits that much longer on its way (a frame unread in a socket).
   */
  send(envelope: Envelope, duplicable = true, heldTicks = 0): void {
    const { world, options } = this;
    if (world.faultsOn && world.random.chance(options.dropRate)) {
      this.dropped++;
      return;
    }
    const copies =
      world.faultsOn && duplicable && world.random.chance(options.duplicateRate) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      const delay = world.faultsOn ? world.random.integer(0, options.delayTicksMax) : 0;
      this.inFlight.push({ tick: world.tick + delay + heldTicks, envelope });
    }
  }

  get size(): number {
    return this.inFlight.length;
  }

  /**
   * Takes the messages due by now, in the order sent. `decide` may hold one back (it
   * waits in the socket) or lose it (a cut link, a full queue).
   */
  due(decide: (envelope: Envelope) => "deliver" | "hold" | "lose" = () => "deliver"): Envelope[] {
    const due: Envelope[] = [];
    let kept = 0;
    for (const entry of this.inFlight) {
      if (entry.tick > this.world.tick) {
        this.inFlight[kept++] = entry;
        continue;
      }
      const decision = decide(entry.envelope);
      if (decision === "hold") this.inFlight[kept++] = entry;
      else if (decision === "deliver") due.push(entry.envelope);
    }
    this.inFlight.length = kept;
    return due;
  }
}

/**
 * The coordinator's catalogue of checkpoint pointers, one per replica (key), as
 * catalogue.ts keeps them: an older pointer than the one recorded is ignored and
 * answered with nothing replaced. Records are answered at the next `complete`.
 */
export class FakeCheckpointRecords {
  readonly pointers = new Map<string, CheckpointPointer>();
  private waiting: {
    owner: string;
    key: string;
    pointer: CheckpointPointer;
    done: Done<{ replaced?: CheckpointPointer }>;
  }[] = [];

  record(
    owner: string,
    key: string,
    pointer: CheckpointPointer,
    done: Done<{ replaced?: CheckpointPointer }>,
  ): void {
    this.waiting.push({ owner, key, pointer, done });
  }

  get pending(): number {
    return this.waiting.length;
  }

  /** Loses the records `owner` has in flight (it was killed before they arrived). */
  lose(owner: string): void {
    this.waiting = this.waiting.filter((entry) => entry.owner !== owner);
  }

  complete(held: (owner: string) => boolean = () => false): void {
    const now = this.waiting;
    this.waiting = [];
    for (const entry of now) {
      if (held(entry.owner)) {
        this.waiting.push(entry);
        continue;
      }
      const current = this.pointers.get(entry.key);
      if (current !== undefined && current.opNum > entry.pointer.opNum) {
        entry.done({ ok: true, value: {} });
        continue;
      }
      this.pointers.set(entry.key, entry.pointer);
      entry.done({ ok: true, value: current === undefined ? {} : { replaced: current } });
    }
  }
}

/**
 * A node's clocks. The monotonic one reads `offsetMs + globalMs() × rate` and steps
 * forward (never back) by `step`. The wall clock runs off the same oscillator, as a real
 * machine's do (NTP's rate corrections move both), `wallAheadMs` ahead of it: only a step
 * of the wall clock alone (`stepWall`, either way) changes that. `standStill` is a frozen
 * VM whose clock is held (kvmclock): both stop, and neither catches up on resume unless
 * the wall clock is set right afterwards.
 */
export class DriftingClock implements ClockPort {
  /** How far the wall clock runs ahead of the monotonic one. */
  wallAheadMs = 0;

  constructor(
    private readonly globalMs: () => number,
    readonly rate = 1,
    public offsetMs = 0,
  ) {}

  nowMs(): number {
    return this.offsetMs + this.globalMs() * this.rate;
  }

  wallMs(): number {
    return this.nowMs() + this.wallAheadMs;
  }

  /** Both clocks at once, as the head node reads them for a read lease. */
  reading(): ClockReading {
    const monoMs = this.nowMs();
    return { monoMs, wallMs: monoMs + this.wallAheadMs };
  }

  /** Both clocks jump forward (the wall clock runs with the monotonic one). */
  step(ms: number): void {
    this.offsetMs += ms;
  }

  /** The wall clock alone steps, forward or back (NTP, an operator, a guest agent). */
  stepWall(ms: number): void {
    this.wallAheadMs += ms;
  }

  /** Both clocks stand still while `globalMs` of the simulation's time passes. */
  standStill(globalMs: number): void {
    this.offsetMs -= globalMs * this.rate;
  }
}
