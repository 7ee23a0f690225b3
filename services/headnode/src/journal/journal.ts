// The note journal of one partition replica: a segmented, append-only, checksummed file
// journal with group commit. A replica writes every replicated note to it and
// acknowledges the note only once `append` has resolved, which means the note is on disk
// and synced. After a restart, even after kill -9 or power loss, `Journal.open` reads
// back every acknowledged note; once notes are flushed and checkpointed, the replica
// releases them and whole segment files are deleted.
//
// Model. The journal is a directory of segment files, each named by its first op number
// and holding a run of contiguous records (format.ts has the byte layout). Calls are
// checked and applied to an in-memory layout at once (layout.ts, the pure core), which
// returns the file effects; this class, the shell, runs those effects one operation at a
// time, in call order (operation-queue.ts). Appends group-commit: appends that arrive
// while an operation runs join one batch, which is written with one writev per segment
// and made durable by that same call: segment files are opened with O_DSYNC, so a writev
// returns only once its bytes are as durable as after an fdatasync (POSIX synchronized
// I/O data integrity completion). N concurrent appenders cost about N/batch syncs, and
// an append is never acknowledged by a sync that began before its write. One call, not a
// writev and then an fdatasync, because each is a trip through libuv's threadpool: a
// worker woken, a completion posted, the event loop woken. At queue depth 1 those fixed
// costs, on the primary and on every secondary, were a large part of a write's CPU.
//
// Blocking writes. A small commit (at most `blockingWriteBytesMax` bytes, constants.ts)
// skips the threadpool altogether when no record write of any journal of the process is
// on it and no runway extension of its own is being written: its writev runs on the
// event loop's own thread and holds the loop until the bytes are synced, a few hundred
// µs at most. That is the common case of a replica writing one note at a time, where the
// loop has nothing else to do meanwhile: measured (session 27), 22 % more 4 KiB writes a
// second at queue depth 1 and at 32, over five interleaved runs a side. A larger commit,
// or one while another is on the threadpool (a busy replica, or another partition's),
// goes to the threadpool as before, so that replicas of one process still sync in
// parallel and a busy loop is not held for long. The blocking write waits for the loop's
// check phase first (setImmediate), so that frames written in the same turn, a primary's
// notes to its secondaries above all, have left (they are corked until the turn's end)
// and the secondaries sync meanwhile. The durability and failure rules are the same
// either way.
//
// Runway. The last segment keeps zero bytes past its last record, written and synced
// ahead of the records that will overwrite them. An O_DSYNC write that extends a file
// must also commit the file's new size and extents (a file-system journal commit); one
// into blocks already allocated and written commits only the data. Measured on ext4,
// 4 KiB O_DSYNC writes: 400-560 µs appending, 127-195 µs overwriting zeros (etcd
// preallocates its WAL segments, PostgreSQL zero-fills its WAL files, for the same
// reason). When a batch starts with nothing queued behind it and the runway is low, the
// layout plans an extension (the next step of zeros), started once that batch's records
// are written (where the batch grows the file, its records take the disk's space first,
// and a full disk refuses the zeros, not them): the batch does not wait for it, and
// later ones find zeros to write into. The zeros go past every record planned before
// them, so they run alongside any record write that ends at or before their start (the
// commits of the runway left, which lasts a few extensions' time at the low-water mark);
// a commit that reaches past their start, or touches another segment, and every other
// operation (a roll's cut, a truncation, a release, close) first waits for them: zeros
// written after records past the old end would destroy those records, and a cut or a
// close would pull the file from under the zeros. Measured (session 27), a 1 MiB O_DSYNC
// write of zeros took 2 to 5 ms under QD32 writes, and held every commit queued behind
// it that long. Its zeros need not be durable for correctness (a crash leaves the file
// shorter or reading zeros, and recovery takes either), but the write is synced like any
// other (O_DSYNC) so that the size and extents are committed before records rely on
// them. Steps start small and double per extension up to a limit (constants.ts), so an
// idle replica's journal stays small. A full disk (ENOSPC, or EDQUOT for a quota) only
// stops the extensions: the zeros written of a refused one are cut off again (ftruncate
// back to the length before it, fdatasync), the layout takes it back, and none is tried
// until more records are appended or a new segment starts (runwayRetryAfterBytes). So a
// replica fails for want of space only when a record cannot be written, not up to a step
// early; and the replicas of a partition, which cross their runway marks at the same op,
// do not all fail together on a shared disk while their records still fit. Nothing else
// can be lost with it: every earlier write to the file returned synced (O_DSYNC), and
// the extension writes through a file description of its own, while the commits
// alongside it write through the journal's: the kernel tells a failed writeback of a
// file's pages to each open file description once, so each sync hears of any error the
// file's pages met, and a commit that finds the journal failed once written is not
// acknowledged. The refused write's own pages are then the only ones its error can
// concern, and the cut drops them. Any other error, or a failed cut, fails the journal
// as below. Before a new segment is created, the last one's runway is cut off
// (ftruncate, fdatasync), so no segment but the last has bytes after its last record; a
// truncation that cuts inside the last segment cuts its runway too.
//
// Durability, step by step:
// - an append resolves after its O_DSYNC writes have returned; until then its
//   commit's pages may reach the disk in any order, so every record carries the op its
//   commit began at in its segment (its sync start, format.ts), and recovery takes damage
//   confined to the last commit for a torn tail (recovery.ts);
// - a new segment's directory entry is fsync'ed before records in it are acknowledged,
//   and before any later segment exists; its header (and the nonce in it, format.ts) is
//   written and synced before any of its records, so a crash tears a header only while
//   no record follows it (recovery.ts relies on that);
// - a segment's data is durable before the next segment is created (its writes returned,
//   each synced), and so is the cut of its runway, so a torn write can only be at the
//   end of the last segment and only the last segment ends in zeros (which is what
//   recovery relies on);
// - truncation deletes segments newest first and release oldest first, each deletion
//   followed by a directory fsync, so a crash part way leaves a contiguous run of ops;
//   a cut inside a segment is fdatasync'ed before the call resolves.
//
// Failure model. A usage error (JournalUsageError) is raised before anything changes.
// An I/O error fails the journal for good (JournalFailedError): after a failed fsync the
// kernel may have dropped the unwritten pages, so the journal takes no more work; it
// never retries a write or a sync, since a retried sync that succeeds proves nothing of
// the pages dropped before it. Nor can the files say what is durable until the machine
// restarts: Linux may have marked the pages it could not write clean, so a read serves
// bytes the disk does not hold. So the failure is recorded with the kernel's boot id
// before the error reaches the caller (failed-marker.ts), and `open` refuses the journal
// for the rest of that boot (JournalUntrustedError); after a reboot recovery reads the
// disk and says what is durable, and the record is deleted. A failure to cut a torn
// tail while opening is recorded the same way. One process may have one Journal per
// directory; the head node owns its data directory, so no other process writes there.

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, open, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  currentBootId,
  constants as runtimeConstants,
  testWritesFail,
  testWritesHang,
} from "@ballast/runtime";
import {
  blockingWriteBytesMax as blockingWriteBytesMaxDefault,
  segmentBytesMaxCeiling,
  segmentBytesMaxDefault,
  segmentBytesMaxFloor,
  segmentNonceBytes,
} from "./constants.ts";
import {
  JournalAssertionError,
  JournalCorruptError,
  JournalFailedError,
  JournalUntrustedError,
  JournalUsageError,
} from "./errors.ts";
import { clearFailure, failedInBoot, readFailure, recordFailure } from "./failed-marker.ts";
import { syncDirectory, writeFully, writeFullySync, writeZeros } from "./files.ts";
import { bytesOf, segmentFileName } from "./format.ts";
import {
  coalesceWrites,
  type JournalRecord,
  type ReleasePlan,
  type RunwayExtension,
  SegmentLayout,
  type SegmentWrite,
  type TruncatePlan,
} from "./layout.ts";
import { OperationQueue } from "./operation-queue.ts";
import { recoverJournal } from "./recovery.ts";

export interface JournalOptions {
  /** The journal's own directory, created (durably) if missing. */
  directory: string;
  /** A new segment file is started once the current one would grow past this. */
  segmentBytesMax?: number;
  /**
   * Commits of at most this many bytes may be written blocking the event loop (see
   * "Blocking writes" in the module header); 0 writes every commit on the threadpool.
   * By default `blockingWriteBytesMax` (constants.ts).
   */
  blockingWriteBytesMax?: number;
  /**
   * The kernel's boot id, which a failure is recorded with (see the module header); by
   * default the machine's (@ballast/runtime `currentBootId`). Tests give one to stand
   * for the same boot or a later one.
   */
  bootId?: string;
}

export interface RecoveredJournal {
  journal: Journal;
  /** Every intact record, in op order, contiguous; payloads are copies. */
  records: JournalRecord[];
  /** Bytes dropped from the end as a torn or incomplete write; 0 after a clean close. */
  tornTailBytes: number;
}

/** Appends that will be written and synced together; they wait for the same sync. */
interface AppendBatch {
  /** The first op of the batch: the sync start of its records (format.ts). */
  firstOpNum: number;
  writes: SegmentWrite[];
  durable: Promise<void>;
}

/**
 * Segment files are opened for reading and writing with O_DSYNC: every write is synced
 * as it is made (see the module header). Truncation still calls fdatasync: O_DSYNC covers
 * writes, not ftruncate.
 */
const segmentOpenFlags = constants.O_RDWR | constants.O_DSYNC;
/** A new segment: as above, and created by this call; a stale file by its name is a bug. */
const segmentCreateFlags = segmentOpenFlags | constants.O_CREAT | constants.O_EXCL;

/**
 * A new segment's nonce (format.ts): random, from the system's CSPRNG, so that nothing a
 * tenant writes can predict it. Drawn once per segment, so its cost does not matter.
 */
function drawSegmentNonce(): Uint8Array {
  return new Uint8Array(randomBytes(segmentNonceBytes));
}

/**
 * Whether the file system refused a write for want of space: ENOSPC (the disk or file
 * system is full) or EDQUOT (the owner's quota is). Both refuse to allocate blocks; an
 * O_DSYNC write can also report them from its sync, and then the pages they concern are
 * the write's own (see the module header on the runway).
 */
function isNoSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/** Directories with an open Journal in this process: two would overwrite each other. */
const openDirectories = new Set<string>();

/**
 * Record writes of every Journal of this thread (the process's event loop) now on
 * libuv's threadpool: while any is, no journal blocks the loop with a write of its own
 * ("Blocking writes").
 */
let threadpoolRecordWrites = 0;

export class Journal {
  readonly #directory: string;
  readonly #layout: SegmentLayout;
  readonly #queue = new OperationQueue();
  /** The segment file open for writing, once an operation has needed one. */
  #active: { firstOpNum: number; handle: FileHandle } | undefined;
  /** The batch that new appends join: queued and not yet started. */
  #batch: AppendBatch | undefined;
  #closed: Promise<void> | undefined;
  #failure: JournalFailedError | undefined;
  /**
   * Settles once the failure, if any, is recorded on disk (failed-marker.ts): nobody hears
   * of a failure before that, whichever operation meets it first.
   */
  #failureRecorded: Promise<void> = Promise.resolve();
  #syncCount = 0;
  #runwayRefusals = 0;
  /**
   * The runway extension being written, if any: the segment, where its zeros start, and
   * a promise that settles once it has (never rejects: a failure fails the journal).
   */
  #extension: { firstOpNum: number; position: number; done: Promise<void> } | undefined;

  /** The boot this journal was opened in: a failure is recorded with it. */
  readonly #bootId: string;
  /** JournalOptions.blockingWriteBytesMax. */
  readonly #blockingWriteBytesMax: number;

  private constructor(
    directory: string,
    layout: SegmentLayout,
    bootId: string,
    blockingWriteBytesMax: number,
  ) {
    this.#directory = directory;
    this.#layout = layout;
    this.#bootId = bootId;
    this.#blockingWriteBytesMax = blockingWriteBytesMax;
  }

  /** Recovers the journal in `options.directory` (see recovery.ts) and opens it. */
  static async open(options: JournalOptions): Promise<RecoveredJournal> {
    const {
      directory: directoryGiven,
      segmentBytesMax = segmentBytesMaxDefault,
      blockingWriteBytesMax = blockingWriteBytesMaxDefault,
      bootId: bootIdGiven,
    } = options ?? {};
    if (typeof directoryGiven !== "string" || directoryGiven === "") {
      throw new JournalUsageError(
        `cannot open a journal: the directory ${JSON.stringify(directoryGiven)} is not a path`,
      );
    }
    if (
      !Number.isSafeInteger(segmentBytesMax) ||
      segmentBytesMax < segmentBytesMaxFloor ||
      segmentBytesMax > segmentBytesMaxCeiling
    ) {
      throw new JournalUsageError(
        `cannot open a journal with segmentBytesMax ${segmentBytesMax}: it must be a whole number from ${segmentBytesMaxFloor} to ${segmentBytesMaxCeiling}`,
      );
    }
    if (
      !Number.isSafeInteger(blockingWriteBytesMax) ||
      blockingWriteBytesMax < 0 ||
      blockingWriteBytesMax > segmentBytesMaxCeiling
    ) {
      throw new JournalUsageError(
        `cannot open a journal with blockingWriteBytesMax ${blockingWriteBytesMax}: it must be a whole number from 0 to ${segmentBytesMaxCeiling}`,
      );
    }
    const directory = resolve(directoryGiven);
    if (openDirectories.has(directory)) {
      throw new JournalUsageError(
        `cannot open the journal in ${directory}: this process has it open already`,
      );
    }
    openDirectories.add(directory);
    const bootId = bootIdGiven ?? (await currentBootId());
    try {
      const failure = await readFailure(directory);
      if (failure !== undefined && failedInBoot(failure, bootId)) {
        throw new JournalUntrustedError(directory, failure, bootId);
      }
      const recovery = await recoverJournal(directory);
      // Failed in an earlier boot: the disk was read, and is what the journal now holds.
      if (failure !== undefined) await clearFailure(directory);
      const layout = new SegmentLayout(
        segmentBytesMax,
        recovery.segments,
        recovery.runwayBytes,
        drawSegmentNonce,
      );
      const journal = new Journal(directory, layout, bootId, blockingWriteBytesMax);
      return { journal, records: recovery.records, tornTailBytes: recovery.tornTailBytes };
    } catch (error) {
      openDirectories.delete(directory);
      if (
        error instanceof JournalCorruptError ||
        error instanceof JournalAssertionError ||
        error instanceof JournalUntrustedError
      ) {
        throw error;
      }
      // A torn tail whose cut failed: the files now read as cut, the disk may not be.
      if (error instanceof JournalFailedError) {
        await recordFailure(directory, bootId, error.cause);
        throw error;
      }
      throw new JournalFailedError(directory, "cannot open the journal", { cause: error });
    }
  }

  get directory(): string {
    return this.#directory;
  }

  /** The lowest op stored, counting appends and truncations called but not yet done. */
  get firstOpNum(): number | undefined {
    return this.#layout.firstOpNum;
  }

  /** The highest op appended, durable or pending, after any truncation called so far. */
  get lastOpNum(): number | undefined {
    return this.#layout.lastOpNum;
  }

  /**
   * Bytes of all segment files, once the operations called so far have completed, and
   * the runway extensions they started (see `settled`): the disk space the journal
   * holds, the last segment's runway of zeros included.
   */
  get bytes(): number {
    return this.#layout.bytes;
  }

  /** Segment files, once the operations called so far have completed. */
  get segmentCount(): number {
    return this.#layout.segmentCount;
  }

  /**
   * Syncs made since open returned, for metrics and tests: fsync and fdatasync calls on
   * segment files and on the directory, and writes to segment files (each synced by
   * O_DSYNC), the writes of runway zeros included; recovery's own syncs are not counted.
   */
  get syncCount(): number {
    return this.#syncCount;
  }

  /**
   * Runway extensions the file system refused for want of space since open returned,
   * for metrics and tests: each stopped the extensions for a while, and failed nothing.
   */
  get runwayRefusals(): number {
    return this.#runwayRefusals;
  }

  /**
   * Appends records whose op numbers are contiguous and follow lastOpNum (any first op
   * when the journal is empty). Resolves once they are durable. The payloads are copied
   * before this returns, so the caller may reuse its buffers at once; except a record
   * given `framed` (JournalRecord), whose buffer the journal writes its header into and
   * writes as it is, with its `tail` after it: the caller must leave both alone until
   * the append settles.
   */
  append(records: readonly JournalRecord[]): Promise<void> {
    let writes: SegmentWrite[];
    try {
      this.#checkUsable("append");
      writes = this.#layout.planAppend(records, this.#batch?.firstOpNum);
    } catch (error) {
      return this.#rejectOnceRecorded(error);
    }
    const batch = this.#batch ?? this.#startBatch(records[0]!.opNum);
    for (const write of writes) batch.writes.push(write);
    return batch.durable;
  }

  /** Durably drops every record above `opNum` (a new primary's log replaces the tail). */
  truncateAfter(opNum: number): Promise<void> {
    let plan: TruncatePlan;
    try {
      this.#checkUsable("truncate");
      plan = this.#layout.planTruncateAfter(opNum);
    } catch (error) {
      return this.#rejectOnceRecorded(error);
    }
    return this.#enqueue("truncate", () => this.#truncate(plan));
  }

  /**
   * Deletes the segments all of whose records are at or below `opNum`, except the last
   * segment, which always stays (see SegmentLayout.planReleaseThrough). Records above
   * `opNum` always stay, and so may records at or below it that share their segment.
   */
  releaseThrough(opNum: number): Promise<void> {
    let plan: ReleasePlan;
    try {
      this.#checkUsable("release");
      plan = this.#layout.planReleaseThrough(opNum);
    } catch (error) {
      return this.#rejectOnceRecorded(error);
    }
    return this.#enqueue("release", () => this.#release(plan));
  }

  /**
   * Resolves once the operations called so far have settled, and the runway extensions
   * they started (an append does not wait for the extension its batch started). For
   * tests, which compare `bytes` with the files. Never rejects.
   */
  settled(): Promise<void> {
    this.#batch = undefined;
    return this.#queue.run(() => this.#extensionWritten());
  }

  /** Waits for the operations called so far, then closes the files. Calling again is harmless. */
  close(): Promise<void> {
    this.#batch = undefined;
    this.#closed ??= this.#queue.run(async () => {
      try {
        await this.#extensionWritten();
        await this.#closeActive();
      } finally {
        openDirectories.delete(this.#directory);
      }
    });
    return this.#closed;
  }

  #checkUsable(action: string): void {
    if (this.#closed !== undefined) {
      throw new JournalUsageError(`cannot ${action}: the journal in ${this.#directory} is closed`);
    }
    if (this.#failure !== undefined) throw this.#failedBefore(action);
  }

  /** Rejects with `error` once a failure met meanwhile is recorded (#failureRecorded). */
  #rejectOnceRecorded(error: unknown): Promise<never> {
    return this.#failureRecorded.then(() => Promise.reject(error));
  }

  #failedBefore(action: string): JournalFailedError {
    return new JournalFailedError(
      this.#directory,
      `cannot ${action}: an earlier file operation failed, so the journal takes no more work`,
      { cause: this.#failure?.cause },
    );
  }

  #startBatch(firstOpNum: number): AppendBatch {
    const writes: SegmentWrite[] = [];
    const durable = this.#enqueue(
      "append",
      async () => {
        // Sealed from here on: appends that arrive during these writes and this sync join
        // the next batch, whose sync begins only after their writes.
        let extension: RunwayExtension | undefined;
        if (this.#batch?.writes === writes) {
          this.#batch = undefined;
          // One extension at a time: the next is planned, if still due, at a later seal,
          // so a refused one is taken back before another is planned past it.
          if (this.#extension === undefined) extension = this.#layout.planRunway();
        }
        await this.#commit(coalesceWrites(writes), extension);
      },
      { waitForExtension: false },
    );
    const batch = { firstOpNum, writes, durable };
    this.#batch = batch;
    return batch;
  }

  /**
   * Starts writing the runway extension planned when a batch was sealed, once that batch
   * is written (see the module header). The layout planned it when nothing was queued
   * behind the batch, so its zeros land past every record planned before them, and a
   * commit planned after them that reaches their start waits for them (#commit). Nothing
   * awaits it but the operations that must (#extensionWritten); a refusal for want of
   * space only stops extending for a while (#extendRunway); any other failure fails the
   * journal, and the next call says so.
   */
  #startExtension(extension: RunwayExtension): void {
    const done = this.#guarded("extend the runway", () => this.#extendRunway(extension)).catch(
      () => undefined,
    );
    const started = { firstOpNum: extension.firstOpNum, position: extension.position, done };
    this.#extension = started;
    void done.then(() => {
      if (this.#extension === started) this.#extension = undefined;
    });
  }

  /** Resolves once the runway extension being written, if any, has settled. Never rejects. */
  async #extensionWritten(): Promise<void> {
    while (this.#extension !== undefined) await this.#extension.done;
  }

  /**
   * Queues an operation after those called before it. Any operation queued behind it
   * starts a new batch, so that appends called later are not written before it. It
   * waits for a runway extension being written, unless `waitForExtension` is false (a
   * commit, which decides for itself: #commit).
   */
  #enqueue(
    action: string,
    operation: () => Promise<void>,
    { waitForExtension = true }: { waitForExtension?: boolean } = {},
  ): Promise<void> {
    this.#batch = undefined;
    return this.#queue.run(async () => {
      if (waitForExtension) await this.#extensionWritten();
      return this.#guarded(action, operation);
    });
  }

  /**
   * Runs a file operation unless the journal has failed, and fails the journal for good
   * if the operation throws (see the module header), recording it first.
   */
  async #guarded(action: string, operation: () => Promise<void>): Promise<void> {
    if (this.#failure !== undefined) {
      await this.#failureRecorded;
      throw this.#failedBefore(action);
    }
    try {
      await operation();
    } catch (error) {
      // A failure met elsewhere first (an extension alongside) is the journal's failure;
      // its record comes before anyone hears of it.
      if (this.#failure !== undefined) {
        await this.#failureRecorded;
        throw this.#failedBefore(action);
      }
      this.#failure = new JournalFailedError(this.#directory, `cannot ${action}`, {
        cause: error,
      });
      // Before anyone hears of it: a reopen in this boot must find the record.
      this.#failureRecorded = recordFailure(this.#directory, this.#bootId, error).then(
        () => undefined,
      );
      await this.#failureRecorded;
      throw this.#failure;
    }
  }

  /**
   * Writes a sealed batch, then starts `extension`, the runway extension planned at its
   * seal: after the batch's own writes, so that where the batch grows the file its
   * records take the disk's space before the zeros do (a full disk then refuses the
   * zeros, which fails nothing, and not the records). A write may run alongside an
   * extension being written only if it ends at or before the extension's zeros, in the
   * same segment, and neither creates a segment nor cuts one; otherwise it waits for them.
   * A commit that finds the journal failed once written (an extension alongside) is not
   * acknowledged.
   */
  async #commit(writes: readonly SegmentWrite[], extension?: RunwayExtension): Promise<void> {
    // Chaos tests' gray failure (BALLAST_TEST_FAULTS=1 and SIGUSR2): the commit hangs.
    await testWritesHang();
    testWritesFail(); // and its disk error (SIGURG): the commit fails with EIO, once
    for (const write of writes) {
      if (!this.#clearOfExtension(write)) await this.#extensionWritten();
      // An extension that failed alongside: the journal takes no more work.
      if (this.#failure !== undefined) throw this.#failure;
      // The segment before a roll is durable already (its writes returned synced), as it
      // must be before its successor exists: recovery takes damage in any segment but the
      // last for corruption, not for a torn write.
      if (write.cutRunway !== undefined) await this.#cut(write.cutRunway);
      if (write.create) await this.#createSegment(write.firstOpNum);
      const handle = await this.#activate(write.firstOpNum);
      // Each writev is a write and an fdatasync in one (O_DSYNC): count it as a sync.
      // Counted once written, not `+= await`: an extension's zeros are counted meanwhile.
      const calls = await this.#writeRecords(handle, write);
      this.#syncCount += calls;
    }
    // Written, but an extension alongside failed meanwhile: its error may have been
    // the only report of these pages' (module header, "Failure model").
    if (this.#failure !== undefined) throw this.#failure;
    if (extension !== undefined) this.#startExtension(extension);
  }

  /**
   * Writes a commit's bytes to `handle`, blocking the event loop when the write is small
   * and no other record write of the process is on the threadpool (see "Blocking writes"
   * in the module header); returns the writev calls made.
   */
  async #writeRecords(handle: FileHandle, write: SegmentWrite): Promise<number> {
    const bytes = bytesOf(write.buffers);
    if (this.#mayBlock(bytes)) {
      // After the frames this turn wrote (a primary's notes): they leave first.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.#mayBlock(bytes)) {
        return writeFullySync(handle.fd, write.buffers, write.position);
      }
    }
    threadpoolRecordWrites++;
    try {
      return await writeFully(handle, write.buffers, write.position);
    } finally {
      threadpoolRecordWrites--;
    }
  }

  /**
   * Whether a commit of `bytes` may be written blocking now ("Blocking writes"): small,
   * no record write of this thread on the threadpool, and no extension of this journal
   * being written (a small write synced beside 1 MiB of zeros to the same file took
   * 1.4 ms at the median, 3 ms at most, not a few hundred µs).
   */
  #mayBlock(bytes: number): boolean {
    return (
      bytes <= this.#blockingWriteBytesMax &&
      threadpoolRecordWrites === 0 &&
      this.#extension === undefined
    );
  }

  /** Whether `write` may run while the runway extension being written, if any, does. */
  #clearOfExtension(write: SegmentWrite): boolean {
    const extension = this.#extension;
    if (extension === undefined) return true;
    if (write.create || write.cutRunway !== undefined) return false;
    if (write.firstOpNum !== extension.firstOpNum) return false;
    return write.position + bytesOf(write.buffers) <= extension.position;
  }

  async #truncate(plan: TruncatePlan): Promise<void> {
    for (const firstOpNum of plan.deletions) await this.#deleteSegment(firstOpNum);
    if (plan.cut !== undefined) await this.#cut(plan.cut);
  }

  /** Cuts a segment file to `bytes`, durably: O_DSYNC covers writes, not ftruncate. */
  async #cut(cut: { firstOpNum: number; bytes: number }): Promise<void> {
    const handle = await this.#activate(cut.firstOpNum);
    await handle.truncate(cut.bytes);
    await this.#datasync(handle);
  }

  /**
   * Writes an extension's zeros through a file description of its own: the kernel reports
   * a failed writeback of a file's pages once per open file description, to whichever
   * sync asks first, so zeros and records written at once through one description could
   * each be told the other's error, and a commit miss its own.
   */
  async #extendRunway(extension: RunwayExtension): Promise<void> {
    let handle: FileHandle;
    try {
      handle = await open(this.#segmentPath(extension.firstOpNum), segmentOpenFlags);
    } catch {
      // Nothing written (no descriptor to spare, say: EMFILE): the zeros are not needed
      // (see the module header), so go on without them for a while, as after a refusal.
      this.#layout.withdrawRunway(extension);
      this.#runwayRefusals++;
      return;
    }
    try {
      await this.#writeZeros(extension, handle);
    } finally {
      await handle.close();
    }
  }

  async #writeZeros(extension: RunwayExtension, handle: FileHandle): Promise<void> {
    try {
      // Synced by O_DSYNC, so counted as syncs, like a commit's writes.
      const calls = await writeZeros(handle, extension.position, extension.bytes);
      this.#syncCount += calls;
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      // The zeros are not needed (see the module header): give back those written, so
      // that the file ends where the layout will say, and go on without them. A failed
      // cut is an I/O error like any other and fails the journal.
      await handle.truncate(extension.position);
      await this.#datasync(handle);
      this.#layout.withdrawRunway(extension);
      this.#runwayRefusals++;
    }
  }

  async #release(plan: ReleasePlan): Promise<void> {
    for (const firstOpNum of plan.deletions) await this.#deleteSegment(firstOpNum);
  }

  /** Creates a segment file and makes its name durable; it becomes the active segment. */
  async #createSegment(firstOpNum: number): Promise<void> {
    await this.#closeActive();
    // "wx" fails if the file exists: a stale segment by that name would be a bug, and
    // writing into it would mix its old bytes with the new records. Its owner's alone:
    // it holds volume data as written.
    const handle = await open(
      this.#segmentPath(firstOpNum),
      segmentCreateFlags,
      runtimeConstants.dataFileMode,
    );
    this.#active = { firstOpNum, handle };
    await this.#syncDirectory();
  }

  /** The handle of the segment to write to, opening it when another one is active. */
  async #activate(firstOpNum: number): Promise<FileHandle> {
    if (this.#active?.firstOpNum === firstOpNum) return this.#active.handle;
    await this.#closeActive();
    const handle = await open(this.#segmentPath(firstOpNum), segmentOpenFlags);
    this.#active = { firstOpNum, handle };
    return handle;
  }

  async #deleteSegment(firstOpNum: number): Promise<void> {
    if (this.#active?.firstOpNum === firstOpNum) await this.#closeActive();
    await unlink(this.#segmentPath(firstOpNum));
    await this.#syncDirectory();
  }

  /**
   * Closing loses nothing: the segment closed is synced, by the operation that wrote it
   * (each write is synced as it is made, runway zeros too, and a cut is fdatasync'ed).
   */
  async #closeActive(): Promise<void> {
    const active = this.#active;
    this.#active = undefined;
    await active?.handle.close();
  }

  async #datasync(handle: FileHandle): Promise<void> {
    this.#syncCount++;
    await handle.datasync();
  }

  async #syncDirectory(): Promise<void> {
    this.#syncCount++;
    await syncDirectory(this.#directory);
  }

  #segmentPath(firstOpNum: number): string {
    return join(this.#directory, segmentFileName(firstOpNum));
  }
}
