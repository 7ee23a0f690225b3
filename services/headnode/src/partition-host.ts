// The async shell around one partition replica core. It opens the replica (recovering
// its journal and checkpoint, or rebuilding it from another replica's checkpoint), turns
// NATS requests into core inputs and core replies into NATS replies, and has the effect
// runner (effect-runner.ts) carry out the core's effects through the real ports
// (adapters.ts: journal and checkpoint files, sleds, NATS, this process's clocks). Time
// reaches the core as ticks and, for read leases, as readings of the clock port (the
// monotonic clock and the wall clock both); a clock is never compared across machines.
//
// Ordering (replica/effects.ts): journal effects reach the journal in the order the core
// produced them (the journal serializes and group-commits them), and the core hears of
// an append's durability only after its fsync. Sends and replies go out as they come.
//
// Failure model. A journal that fails (ENOSPC, EIO: an append or truncate rejected)
// fails this replica only, never the process: after a failed fsync what is on disk is
// unknown, so the replica latches failed at once. Its effect runner is closed (no
// completion reaches the core again, so nothing is acknowledged after the failure), its
// pending requests are answered Unavailable naming the cause, and from then on it takes
// no requests, replication messages or ticks, reports no primary, and shows the failure
// in its status and summary (node info). The head node stops serving it (headnode.ts);
// as a secondary it stops acknowledging, so its primary reports it stalled and the
// coordinator replaces it. Stopping the whole process instead would take every other
// partition down with it, and with a full disk it would crash-loop.
//
// A core that throws fails the same way, alone. Every call into the core and its effect
// runner passes one boundary (`contain`): handler inputs, carrying out effects (the
// journal's deferred hand-over too), ticks, and the runner's completions. A throw there (other than a refusal, a BallastError
// from an input, which its caller answers) is a bug or damage the core cannot recover
// from, a flush or control record that does not decode say: its state may be half
// changed, so the replica latches failed as above and logs the stack. Before, a throw
// from a handler left the core serving in a broken state, and one from a completion or
// a tick ended the process, every partition of the node with it (and, the same note
// replayed on every restart, in a crash loop).
//
// Files of a replica, under <data-dir>/partitions/<volume id>/<partition>/ (the volume's
// incarnation, so that a deleted and re-created volume never finds the old one's
// files): the journal, checkpoint.bin and rebuilt.bin (see adapters.ts; both checkpoint
// files are checksummed whole, and a damaged one is refused, never started from), and
// voter-epoch, the newest epoch the replica was configured a voter in (`storedEpoch`).
//
// Each checkpoint is also stored as a blob on two sleds (checkpoints/<volume id>/
// <partition>/<node>/<op>-<session>-<upload>, named by the core) and its pointer recorded
// with the coordinator, each step an effect of the core; once it is recorded the core
// releases journal notes and has the blob it replaced deleted. A kill -9 between the
// local file and the record leaves a local checkpoint newer than the recorded one: the
// core then holds every note its journal still has (see replica.ts), so a learner
// rebuilt from the recorded pointer can still catch up. A replacement replica with no
// state of its own is rebuilt from the pointer its configure names: the first sled copy
// that is whole and sound (CRC32C of the blob, and the snapshot's own checksums) wins.
//
// Ticks (issue 14). The head node asks a replica for a tick only when it is due
// (tick-schedule.ts): when its core's quiet ticks have run out, or at the next node tick
// after an input. So every input must reach the core through one gate, `input`, which
// catches up the ticks held back (held-ticks.ts), notes that something came in (the head
// node then checks whether the role changed) and makes the replica due at the next node
// tick; an input that bypassed it could leave the replica unasked until its old due tick
// or for ever. The core is therefore private: the head node and the replicator see it
// only as `replica` (HostedReplica: state to read, and the replicator's two inputs
// through the gate), and the effect runner's completions pass the gate through its
// `completion` hook. A lease renewal alone skips it (see `renewLease`).

import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { BallastError, ErrorCode, type MessageOf } from "@ballast/protocol";
import {
  activeSpanContext,
  contextOfSpan,
  counterFile,
  type Logger,
  type MeterGroups,
  meterGroupsOf,
  meterOf,
  RepeatLog,
  type Service,
  type SpanContext,
  SpanStatusCode,
} from "@ballast/runtime";
import {
  CheckpointFile,
  decodeNote,
  JournalFiles,
  NatsSleds,
  NatsTransport,
  processClock,
} from "./adapters.ts";
import { ByteSlab } from "./byte-slab.ts";
import { fetchCheckpoint } from "./checkpoint-fetch.ts";
import { type ReplicaLimits, tickMs } from "./constants.ts";
import { EffectRunner } from "./effect-runner.ts";
import { HeldTicks } from "./held-ticks.ts";
import { makeDirectory, removeDirectory } from "./journal/files.ts";
import { Journal, JournalUntrustedError, readNewestRecords } from "./journal/index.ts";
import {
  DetachedSleds,
  FlushContexts,
  ObservedJournal,
  type ObservedReplica,
  OpContexts,
  type ReplicaInstruments,
  replicaGauges,
  replicaInstruments,
  TracedTransport,
} from "./observability.ts";
import type { ReplicaPorts } from "./ports.ts";
import { failedReplicaOf, followerOnTheWire, primaryReportOf } from "./primary-report.ts";
import type {
  CheckpointPointer,
  ReadResult,
  ReplicationMessage,
  Reply,
} from "./replica/effects.ts";
import { type ByteRange, unmappedRanges } from "./replica/layering.ts";
import { PartitionMetadata } from "./replica/metadata.ts";
import type { KeptFence } from "./replica/ordering-fence.ts";
import {
  type ClientRequest,
  type ClockReading,
  type Configuration,
  type FollowerProgress,
  Replica,
} from "./replica/replica.ts";
import { chunksShortOfCopies, type DamagedCopies } from "./replicator.ts";
import type { FailedReplica, PrimaryReport } from "./report-state.ts";
import type { SledClient } from "./sled-client.ts";

/**
 * What others (the head node, the replicator) see of a hosted replica's core: state to
 * read, and the replicator's two inputs, which go through the host's gate like every
 * other input (see the module header).
 */
export interface HostedReplica {
  readonly configuration: Replica["configuration"];
  readonly metadata: Replica["metadata"];
  readonly recordedCheckpoint: Replica["recordedCheckpoint"];
  readonly lastOpNum: number;
  readonly commitOpNum: number;
  followers(): FollowerProgress[];
  recordCopies(chunkNumber: number, copies: readonly string[]): void;
  requestCheckpoint(): void;
  /** The core's ordering fence, to hand to a core reopening it (kept-fences.ts). */
  fenceToKeep(): KeptFence | undefined;
  /** Before the first configure: a closed core's fence, taken back at the same epoch. */
  carryFence(kept: KeptFence): void;
}

/** The node's tick schedule as a replica sees it (tick-schedule.ts). */
export interface ReplicaTicking {
  /** The node tick now: the last one taken. */
  readonly now: number;
  /** Makes this replica due at the next node tick. */
  wake(): void;
}

/** Before a head node attaches a replica to its schedule: tick 0, nothing to wake. */
const unattached: ReplicaTicking = { now: 0, wake() {} };

export interface PartitionAddress {
  volume: string;
  /** The volume's incarnation (the volume's name in static assignments). */
  volumeId: string;
  partition: number;
  partitionStart: number;
  partitionBytes: number;
}

/**
 * Why a replica stopped: its journal failed, with the file system's error code, or its
 * core threw (see the module header).
 */
export interface ReplicaFailure {
  what: string;
  /** The errno code (ENOSPC, EIO, …) when the file system gave one. */
  errno: string | undefined;
  message: string;
}

/** One range of a read plan, and one of its parts that lies in a sled chunk. */
type ReadRange = ReadResult["ranges"][number];
type ChunkPart = Extract<ReadRange["parts"][number], { kind: "chunk" }>;

interface Waiting {
  resolve(reply: Reply): void;
  reject(error: BallastError): void;
}

export class PartitionHost {
  readonly address: PartitionAddress;
  /** The core as others may use it (every input through the gate: `input`). */
  readonly replica: HostedReplica;
  /** The core itself: inputs reach it only through `input`. */
  private readonly core: Replica;
  private readonly journal: Journal;
  private readonly checkpoints: CheckpointFile;
  private readonly ports: ReplicaPorts;
  private readonly runner: EffectRunner;
  private readonly directory: string;
  private readonly service: Service;
  private readonly logger: Logger;
  private readonly waiting = new Map<number, Waiting>();
  private nextRequestId = 1;
  /** Holds back the ticks of an idle core (held-ticks.ts). */
  private ticks: HeldTicks;
  /** The node's tick schedule (`attach`). */
  private ticking: ReplicaTicking = unattached;
  /** An input reached the core since the head node last asked (`takeInputs`). */
  private inputs = false;
  /** Closed: inputs that still arrive make it due no more. */
  /** False while open; once closed, the error every request is answered with. */
  private closed: false | BallastError = false;
  /** Set once the journal has failed or the core threw: this replica is done (module header). */
  private failure: ReplicaFailure | undefined;
  /** Told once, when the replica fails; the head node stops serving it. */
  onFailure: (() => void) | undefined;
  private out: ReadonlySet<string> = new Set();
  /** Sleds the coordinator declared out (replicator.ts): copies there count as lost. */
  get sledsOut(): ReadonlySet<string> {
    return this.out;
  }
  /** A sled back in service may take the checkpoint copy stores lacked: tried soon. */
  set sledsOut(next: ReadonlySet<string>) {
    const back = [...this.out].some((sled) => !next.has(sled));
    this.out = next;
    if (back) this.sledCameBack();
  }
  /**
   * The new data directories of sleds the coordinator asked audited whose audit has
   * covered this replica's table (the head node reads them from its replicator).
   */
  auditedDisks: () => readonly string[] = () => [];
  /** Copies their sleds say a scrub found damaged (replicator.ts): counted as none. */
  damagedCopies: DamagedCopies = new Map();
  /** The newest epoch this replica was configured a voter in, as its directory keeps it. */
  private voterEpoch: number | undefined;
  /** The newest epoch it was named out in (`recordOutEpoch`), held whatever its disk did. */
  private outEpoch: number | undefined;
  /** Traces: each in-flight op's request span context (observability.ts). */
  private readonly opContexts = new OpContexts();
  /** Contexts of written ops until their data is flushed (the flush span links them). */
  private readonly flushContexts = new FlushContexts();
  /** Where kept write data is copied to out of messages (byte-slab.ts). */
  private readonly slab = new ByteSlab();
  private readonly instruments: ReplicaInstruments;
  /** Where the volume's meter comes from, released when this host closes. */
  private readonly meterGroups: MeterGroups;
  /** The scrape-time gauges' replicas (replicaGauges): the volume's hosted here. */
  private readonly gauged: Set<ObservedReplica>;
  private readonly journalFiles: JournalFiles;

  private constructor(
    address: PartitionAddress,
    replica: Replica,
    journal: Journal,
    checkpoints: CheckpointFile,
    directory: string,
    service: Service,
    sleds: SledClient,
  ) {
    this.address = address;
    this.core = replica;
    this.ticks = new HeldTicks(replica);
    this.replica = {
      get configuration() {
        return replica.configuration;
      },
      get metadata() {
        return replica.metadata;
      },
      get recordedCheckpoint() {
        return replica.recordedCheckpoint;
      },
      get lastOpNum() {
        return replica.lastOpNum;
      },
      get commitOpNum() {
        return replica.commitOpNum;
      },
      followers: () => replica.followers(),
      fenceToKeep: () => replica.fenceToKeep(),
      // No effects, and read only by the configure that follows (which the gate passes).
      carryFence: (kept) => replica.carryFence(kept),
      // A throw fails this replica and reaches the replicator as the failed replica's
      // error, so that it does not log a copy recorded that was not.
      recordCopies: (chunkNumber, copies) => {
        if (this.failure !== undefined) return;
        this.input((core) => core.recordCopies(chunkNumber, copies));
        this.run();
      },
      requestCheckpoint: () => {
        if (this.failure !== undefined) return;
        this.input((core) => core.requestCheckpoint());
        this.run();
      },
    };
    this.journal = journal;
    this.checkpoints = checkpoints;
    this.directory = directory;
    this.service = service;
    this.logger = service.logger.child({ volume: address.volume, partition: address.partition });
    // The volume's series are its own: they go when no partition of it is hosted here.
    this.meterGroups = meterGroupsOf(meterOf(service));
    const meter = this.meterGroups.acquire(address.volume);
    this.instruments = replicaInstruments(meter);
    this.gauged = replicaGauges(meter);
    this.journalFiles = new JournalFiles(journal);
    const transport = new NatsTransport(service, address);
    const natsSleds = new NatsSleds(sleds, {
      volume: address.volume,
      partition: address.partition,
    });
    this.ports = {
      journal: new ObservedJournal(
        service,
        this.journalFiles,
        this.opContexts,
        this.instruments,
        address.volume,
      ),
      checkpoints,
      sleds:
        service.tracer === undefined
          ? natsSleds
          : new DetachedSleds(service, natsSleds, this.flushContexts),
      // Tracing off: the plain transport, whose messages carry no headers.
      transport:
        service.tracer === undefined
          ? transport
          : new TracedTransport(service, address, transport, this.opContexts),
      clock: processClock,
    };
    this.gauged.add(this);
    this.runner = new EffectRunner(replica, this.ports, {
      reply: (requestId, reply) => this.settleRequest(requestId)?.resolve(reply),
      replyError: (requestId, error) => this.settleRequest(requestId)?.reject(error),
      fatal: (what, error) => this.fail(what, error),
      completion: (report) => this.containQuietly(() => this.input(report)),
      // Notes leave before the journal encodes them (effect-runner.ts, "Order"); handing
      // them over is carrying out effects too, within the boundary.
      deferJournal: (run) => queueMicrotask(() => this.containQuietly(run)),
      log: this.logger,
    });
  }

  /** Opens (recovering) the replica's journal and checkpoint and builds its core. */
  static async open(
    service: Service,
    dataDir: string,
    address: PartitionAddress,
    sleds: SledClient,
    session: number,
    rebuildFrom?: CheckpointPointer,
    limits: Partial<ReplicaLimits> = {},
    fresh = false,
  ): Promise<PartitionHost> {
    const directory = partitionDirectory(dataDir, address.volumeId, address.partition);
    const checkpoints = new CheckpointFile(directory);
    // A rebuild discards the replica's state, not the epochs its directory was told of
    // (`keepEpoch`): kept, a delayed configure of an older epoch is still refused.
    const keptEpoch =
      fresh || rebuildFrom !== undefined ? await readVoterEpoch(directory) : undefined;
    if (fresh && rebuildFrom === undefined) await removeDirectory(directory);
    if (rebuildFrom !== undefined) {
      // Rebuilt from scratch: fetch first, so that a failed fetch leaves the old state.
      const owner = { volume: address.volume, partition: address.partition };
      const snapshot = await fetchCheckpoint(
        new NatsSleds(sleds, owner),
        rebuildFrom,
        service.logger,
      );
      await removeDirectory(directory);
      await makeDirectory(directory);
      await checkpoints.installRebuilt(snapshot.bytes);
      service.logger.info(
        {
          volume: address.volume,
          partition: address.partition,
          opNum: rebuildFrom.opNum,
          from: snapshot.sled,
        },
        "rebuilding from a checkpoint on sleds",
      );
    }
    // Every level made here has its parent synced: the journal syncs only the entry of
    // its own directory, and a crash that lost the partition's directory entry would
    // make a voter that acknowledged notes open as a replica never stored.
    await makeDirectory(directory);
    if (keptEpoch !== undefined)
      await keepEpoch(dataDir, address.volumeId, address.partition, keptEpoch);
    // A damaged checkpoint (CheckpointDamagedError, or a snapshot that does not restore)
    // throws before the journal opens: the replica is not opened at all. Starting without
    // it would be starting from damage, and discarding the replica's state to start empty
    // would let a voter forget notes it acknowledged. So the configure fails, naming the
    // file; as a member it acknowledges nothing, its primary reports it stalled and the
    // coordinator replaces it, and once this node is added as a learner its state is
    // discarded and rebuilt from another replica's checkpoint (headnode.ts).
    const stored = await checkpoints.read();
    const checkpoint =
      stored === undefined ? undefined : await PartitionMetadata.restore(stored.bytes);
    // Read before the journal opens: once it is open, every step that fails must close it.
    const voterEpoch = await readVoterEpoch(directory);
    const recovered = await openJournal(join(directory, "journal"), service.logger, address);
    try {
      const rebuilt = stored?.rebuilt === true;
      const notes = recovered.records.map((record) => decodeNote(record.payload));
      if (recovered.tornTailBytes > 0) {
        service.logger.warn(
          { volume: address.volume, partition: address.partition, bytes: recovered.tornTailBytes },
          "dropped a torn journal tail",
        );
      }
      const replica = new Replica(
        { nodeId: service.nodeId, ...address, session },
        { ...(checkpoint === undefined ? {} : { checkpoint }), notes, rebuilt },
        limits,
      );
      service.logger.info(
        {
          volume: address.volume,
          partition: address.partition,
          checkpointOpNum: checkpoint?.opNum ?? 0,
          journalNotes: notes.length,
          lastOpNum: replica.lastOpNum,
        },
        "replica recovered",
      );
      if (rebuilt) checkpoints.rebuiltFromOpNum = checkpoint?.opNum;
      // Built last: it takes the volume's meter and joins the gauges, which only its
      // close gives back.
      const host = new PartitionHost(
        address,
        replica,
        recovered.journal,
        checkpoints,
        directory,
        service,
        sleds,
      );
      host.voterEpoch = voterEpoch;
      return host;
    } catch (error) {
      // The journal holds its directory for the process (journal.ts): left open, every
      // later open of this replica, the rebuild as a learner included, would be refused
      // until a restart.
      await recovered.journal.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Keeps, durably, that this replica is configured a voter in `epoch`, before its core is
   * (headnode.ts): from then on a configure of an older epoch finds it stored
   * (`storedEpoch`) even with nothing hosted, though no note of that epoch reached the
   * journal. A voter answers for every op acknowledged before its epoch (the
   * coordinator's safe-promotion rule), notes of earlier epochs included.
   */
  async recordVoterEpoch(epoch: number): Promise<void> {
    if (this.voterEpoch !== undefined && epoch <= this.voterEpoch) return;
    // Raised in place (a counter file: no free block needed, see `voterEpochFile`); the
    // partition's configures, which call this, run one at a time (configure-queue.ts).
    await voterEpochFile(this.directory).raise(epoch);
    this.voterEpoch = epoch;
  }

  /**
   * Keeps, durably, that this replica was named out of the replica set in `epoch`, before
   * it is closed (configure-decision.ts, `close-out`): in the voter-epoch file, which then
   * holds the newest epoch it was configured a voter in or named out in. Either fences
   * the same way: a configure of an older epoch finds it stored (`storedEpoch`) and is
   * refused, as the idle core refused it while hosted. A failed replica's too: its
   * directory may be on a failing disk, so the epoch is held in memory first
   * (`fencedEpoch`), and a raise that fails leaves it hosted, fenced by that.
   */
  recordOutEpoch(epoch: number): Promise<void> {
    // Held first: should the disk refuse it (a failing one may), the replica stays
    // hosted, and `fencedEpoch` still refuses what its disk would have.
    if (this.outEpoch === undefined || epoch > this.outEpoch) this.outEpoch = epoch;
    return this.recordVoterEpoch(epoch);
  }

  /**
   * The epoch a configure of this replica is measured against (configure-decision.ts, the
   * hosted epoch): its core's, or the newest it was named out in, whichever is newer. A
   * healthy core is made idle in the out epoch before it is recorded, so the two differ
   * only for a failed replica, whose core takes no configure: without the out epoch, one
   * whose disk refused it would reopen on a delayed configure of an older epoch.
   */
  get fencedEpoch(): number | undefined {
    const configured = this.core.configuration?.epoch;
    if (configured === undefined) return this.outEpoch;
    return this.outEpoch === undefined ? configured : Math.max(configured, this.outEpoch);
  }

  /** A new replica set; `configuration.leased` makes a primary's reads need a lease. */
  configure(configuration: Configuration, sleds: readonly string[]): void {
    if (this.failure !== undefined) return;
    // A sled not configured before may take the checkpoint copy stores lacked.
    const grew = sleds.some((sled) => !this.runner.sleds.includes(sled));
    this.runner.sleds = [...sleds];
    this.input((core) => {
      core.configure(configuration);
      if (grew) core.retryCheckpointSoon();
    });
    this.run();
  }

  /**
   * `sled` answers again after requests to it went unanswered (sled-client.ts): back
   * before the coordinator declared it out, so no out set changes. If this replica stores
   * its checkpoints there, a store that failed for want of it is tried soon.
   */
  sledAnsweredAgain(sled: string): void {
    if (this.runner.sleds.includes(sled)) this.sledCameBack();
  }

  /**
   * A checkpoint whose stores failed for want of sleds (their back-off, replica.ts
   * onCheckpointFailed) is tried at the next tick due rather than at the end of its pause.
   */
  private sledCameBack(): void {
    if (this.failure !== undefined || this.closed) return;
    this.input((core) => core.retryCheckpointSoon());
  }

  /** The sleds of the current configuration: where new chunk copies may go. */
  get sleds(): readonly string[] {
    return this.runner.sleds;
  }

  /** Renews the primary's read lease of `epoch` for `leaseMs` from `sentAt` (the clock port's readings). */
  renewLease(epoch: number, sentAt: ClockReading, leaseMs: number): void {
    if (this.failure !== undefined) return;
    // The one input that skips the gate: a lease neither reads the tick count nor changes
    // what a tick does or the role (only `read` compares it, with the clock), and every
    // primary gets one every report, so waking each for it would make the node ask
    // every primary twice a second for nothing.
    try {
      this.core.renewLease(epoch, sentAt, leaseMs);
    } catch (error) {
      this.fail("the replica core threw", error); // as `containQuietly`, with no closure
    }
  }

  /**
   * What a primary, or a failed replica configured as primary, tells the coordinator
   * every report (primary-report.ts; undefined for any other). The core itself takes a
   * fresh checkpoint when a learner needs one.
   *
   * A primary's held ticks are counted first, as for status: its space figures are
   * refreshed by the tick count (Replica.spaceUsage), which stands still while its ticks
   * are held, so an idle primary would report the figures from before its last writes
   * until the next input. Counting them runs nothing on an idle core (one quietTicks
   * question); other roles report nothing and are left alone.
   */
  report(): PrimaryReport | undefined {
    if (this.core.roleName === "primary") this.catchUp();
    return primaryReportOf(this.core, this.address, this.failure !== undefined, {
      tickMs,
      sledsOut: this.sledsOut,
      damagedCopies: this.damagedCopies,
      auditedDisks: this.auditedDisks(),
    });
  }

  /**
   * What the head node tells the coordinator of this replica once it failed, unless it
   * is configured as primary (then `report` says so): undefined while it has not.
   */
  failureReport(): FailedReplica | undefined {
    return failedReplicaOf(this.core, this.address, this.failure !== undefined);
  }

  /**
   * Joins the node's tick schedule (tick-schedule.ts), before any input: the core's
   * tick count starts at the node's tick now.
   */
  attach(ticking: ReplicaTicking): void {
    this.ticking = ticking;
    this.ticks = new HeldTicks(this.core, ticking.now);
  }

  /**
   * Node tick `now` has come for this replica (it was due). Ticks the core said would
   * change nothing but its count (Replica.quietTicks) are held back and handed over with
   * the next tick that may do something. Returns the node tick at which to ask it next:
   * the next one after a tick ran, else the first that is not quiet (Infinity: not
   * until an input; a failed or closed replica is never asked again).
   */
  tick(now: number): number {
    if (this.failure !== undefined || this.closed) return Number.POSITIVE_INFINITY;
    // As `containQuietly`, with no closure: this runs for every replica at every tick.
    try {
      const { ran, dueTick } = this.ticks.tick(now);
      if (ran) this.runner.run();
      // Failed meanwhile without a throw (the journal): never asked again.
      return this.failure === undefined ? dueTick : Number.POSITIVE_INFINITY;
    } catch (error) {
      this.fail("the replica core threw", error);
      return Number.POSITIVE_INFINITY;
    }
  }

  /**
   * Whether an input reached the core (or it failed) since the last call: only then
   * can its role have changed, and the head node check what it serves.
   */
  takeInputs(): boolean {
    const inputs = this.inputs;
    this.inputs = false;
    return inputs;
  }

  /**
   * The one way in to the core (see the module header): catches up its held ticks (any
   * that must run, runs, with its effects, before the input), notes the input, makes the
   * replica due at the next node tick, then applies it. The caller carries out the
   * effects (`run`) when it is ready to.
   */
  private input<T>(apply: (core: Replica) => T): T {
    this.catchUp();
    // The held ticks threw: the core takes nothing more.
    if (this.failure !== undefined) throw this.failedError();
    this.inputs = true;
    if (!this.closed) this.ticking.wake();
    return this.contain(apply, "refusals");
  }

  /**
   * Counts the held ticks, before an input or for a reader of tick-counted state. Not
   * once failed or closed: such a core is ticked no more, and what reaches it still
   * (a message already on its way) counts for nothing. A throw fails the replica and
   * is not thrown on: a reader (status, the report) still reads it, as failed.
   */
  private catchUp(): void {
    if (this.failure !== undefined || this.closed) return;
    // As `containQuietly`, with no closure: this runs before every input.
    try {
      if (this.ticks.catchUp(this.ticking.now)) this.runner.run();
    } catch (error) {
      this.fail("the replica core threw", error);
    }
  }

  /**
   * The boundary every call into the core and its runner passes (see the module
   * header): a throw fails this replica alone, as a failed journal does, and the
   * caller gets the failed replica's Unavailable error. With "refusals" (an input from
   * a handler), a BallastError is the core refusing the request: thrown on as it is.
   */
  private contain<T>(work: (core: Replica) => T, refusals?: "refusals"): T {
    try {
      return work(this.core);
    } catch (error) {
      if (refusals !== undefined && error instanceof BallastError) throw error;
      this.fail("the replica core threw", error);
      throw this.failedError();
    }
  }

  /** `contain` for a caller nobody answers (a tick, a completion): a throw is latched only. */
  private containQuietly(work: (core: Replica) => void): void {
    try {
      this.contain(work);
    } catch {
      // Latched by contain: this replica has failed, and told the head node.
    }
  }

  onReplication(message: ReplicationMessage): void {
    // A failed replica acknowledges nothing: its primary sees it stall.
    if (this.failure !== undefined) return;
    // Decoded data aliases the message buffer: the core keeps notes, so they are copied,
    // unless large and in a buffer of their own (a frame a link assembled: byte-slab.ts).
    if (message.type === "replica.notes.v1" && message.notes.length > 0) {
      // Only notes past the last one held may be kept in place, judged together: a
      // resend is mostly notes the core already holds and skips, and one new note kept
      // in place would pin the whole resent frame while the log counts only its data.
      // The others are copied (if the core takes them after all, it holds a copy).
      const kept = this.slab.keepNotes(message.notes, this.core.lastOpNum);
      message.notes.forEach((note, index) => {
        if (note.data !== undefined) note.data = kept[index];
      });
    }
    this.input((core) => core.onReplicationMessage(message));
    this.run();
  }

  /**
   * The writes of one message with data to keep (the core keeps it until flushed and
   * released): a copy out of the message it arrived in, small ones in shared slabs, or
   * the data itself when it is large and in memory no one else writes or reuses
   * (byte-slab.ts, `keptInPlace`; judged over the whole message, whose large writes
   * share its buffer).
   */
  keepWrites(
    writes: readonly { offset: number; data: Uint8Array }[],
  ): { offset: number; data: Uint8Array }[] {
    const kept = this.slab.keepAll(writes.map((write) => write.data));
    return writes.map((write, index) => ({ offset: write.offset, data: kept[index]! }));
  }

  /** Runs a write, trim, zeroes or flush request to its reply. */
  request(build: (requestId: number) => ClientRequest): Promise<Reply> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    const requestId = this.nextRequestId++;
    const reply = this.replyTo(requestId);
    let request: ClientRequest;
    let lastBefore: number;
    let lastAfter: number;
    let handling: SpanContext | undefined;
    try {
      request = build(requestId);
      lastBefore = this.input((core) => {
        const last = core.lastOpNum;
        core.onClientRequest(request);
        return last;
      });
      // The ops the core gave this request now (none if it queued it): their sends and
      // journal syncs are traced under this request's span (observability.ts).
      lastAfter = this.core.lastOpNum;
      handling = this.service.tracer === undefined ? undefined : activeSpanContext();
      if (handling !== undefined && lastAfter > lastBefore) {
        this.opContexts.set(lastBefore + 1, lastAfter, handling);
        if (request.kind !== "flush") this.flushContexts.set(lastBefore + 1, lastAfter, handling);
      }
      this.run();
    } catch (error) {
      this.abandon(requestId, reply);
      throw error;
    }
    return this.observe(request, reply, handling, lastBefore + 1, lastAfter);
  }

  /**
   * Counts a client request (metrics) and, when traced, spans its wait for the commit;
   * forgets its ops' trace contexts once it is answered.
   */
  private async observe(
    request: ClientRequest,
    reply: Promise<Reply>,
    handling: SpanContext | undefined,
    opFirst: number,
    opLast: number,
  ): Promise<Reply> {
    const { instruments } = this;
    const volume = { volume: this.address.volume };
    const startedMs = performance.now();
    const commit =
      handling === undefined || this.service.tracer === undefined
        ? undefined
        : this.service.tracer.startSpan(
            "commit",
            { attributes: { "ballast.op_first": opFirst, "ballast.op_last": opLast } },
            contextOfSpan(handling),
          );
    instruments.inflight.add(1, volume);
    try {
      const answer = await reply;
      instruments.requests.add(1, { ...volume, kind: request.kind });
      if (request.kind === "write") {
        instruments.writes.add(request.writes.length, volume);
        let bytes = 0;
        for (const write of request.writes) bytes += write.data.byteLength;
        instruments.writeBytes.add(bytes, volume);
      }
      if (answer.kind === "mutation") commit?.setAttribute("ballast.op_last", answer.opNumLast);
      return answer;
    } catch (error) {
      commit?.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      instruments.inflight.add(-1, volume);
      instruments.requestSeconds.record((performance.now() - startedMs) / 1000, {
        ...volume,
        kind: request.kind,
      });
      commit?.end();
      if (opLast >= opFirst) this.opContexts.delete(opFirst, opLast);
    }
  }

  // ------------------------------------------------------------ snapshots

  /** The primary's epoch; NotPrimary off the primary. */
  private primaryEpoch(): number {
    const configuration = this.core.configuration;
    if (this.core.roleName !== "primary" || configuration === undefined) {
      throw new BallastError(
        ErrorCode.NotPrimary,
        `${this.service.nodeId} is not the primary of ${this.address.volume}/${this.address.partition}`,
      );
    }
    return configuration.epoch;
  }

  /** Holds mutation replies for up to `holdMs` (see Replica.holdAcks). */
  holdAcks(hold: string, holdMs: number): { epoch: number; lastOpNum: number } {
    this.refuseIfNotServing();
    const epoch = this.primaryEpoch();
    // The hold's deadline counts from the core's tick count: it must be caught up.
    const { lastOpNum } = this.input((core) =>
      core.holdAcks(epoch, hold, Math.ceil(holdMs / tickMs)),
    );
    return { epoch, lastOpNum };
  }

  /** Ends a hold; says whether it was in force throughout. */
  releaseAcks(hold: string): { held: boolean } {
    if (this.failure !== undefined) return { held: false };
    const result = this.input((core) => core.releaseAcks(hold));
    this.run();
    return result;
  }

  /** Takes (`take`) or drops a snapshot through the op stream; answers the op once committed. */
  async snapshotControl(
    action: "take" | "drop",
    snapshot: string,
  ): Promise<{ epoch: number; opNum: number }> {
    this.refuseIfNotServing();
    const epoch = this.primaryEpoch();
    const requestId = this.nextRequestId++;
    const reply = this.replyTo(requestId);
    try {
      this.input((core) => {
        if (action === "take") core.takeSnapshot(requestId, epoch, snapshot);
        else core.dropSnapshot(requestId, epoch, snapshot);
      });
      this.run();
    } catch (error) {
      this.abandon(requestId, reply);
      throw error;
    }
    const answer = await reply;
    if (answer.kind !== "control")
      throw new Error(`snapshot ${action} answered with ${answer.kind}`);
    return { epoch, opNum: answer.opNum };
  }

  /**
   * Rolls the partition back to snapshot `snapshot` through the op stream (a control
   * note; see Replica.rollbackSnapshot); answers the op once committed.
   */
  async rollbackSnapshot(snapshot: string): Promise<{ epoch: number; opNum: number }> {
    this.refuseIfNotServing();
    const epoch = this.primaryEpoch();
    const requestId = this.nextRequestId++;
    const reply = this.replyTo(requestId);
    try {
      this.input((core) => core.rollbackSnapshot(requestId, epoch, snapshot));
      this.run();
    } catch (error) {
      this.abandon(requestId, reply);
      throw error;
    }
    const answer = await reply;
    if (answer.kind !== "control") throw new Error(`rollback answered with ${answer.kind}`);
    return { epoch, opNum: answer.opNum };
  }

  /** Plans a read in the core, then fetches chunk parts from sleds. */
  async read(
    message: MessageOf<"volume.read.v1">,
  ): Promise<{ data: Uint8Array[]; unmapped?: ByteRange[][] }> {
    this.refuseIfNotServing();
    // The core checks the read lease against both clocks: once it has run out, another
    // primary may exist, and serving could return data older than a write acknowledged
    // there.
    const clock = this.ports.clock;
    const plan: ReadResult = this.input((core) =>
      core.read(
        message.epoch,
        message.reads,
        { monoMs: clock.nowMs(), wallMs: clock.wallMs() },
        message.snapshot,
      ),
    );
    // Ranges the chunk cache (or memory) answers whole are assembled now, with no
    // promise per range or part: at 4 KiB random reads nearly every range is one cached
    // chunk part. Only the others wait for sleds, together.
    const { ranges } = plan;
    const data: Uint8Array[] = new Array(ranges.length);
    let waiting: Promise<void>[] | undefined;
    try {
      for (let index = 0; index < ranges.length; index += 1) {
        const range = ranges[index]!;
        const now = this.assembleNow(range);
        if (now instanceof Uint8Array) {
          data[index] = now;
          continue;
        }
        waiting ??= [];
        waiting.push(this.assembleInto(data, index, range, now));
      }
    } catch (error) {
      // The sled reads already started are still seen: one failing later would be an
      // unhandled rejection, which ends the process.
      if (waiting !== undefined) void Promise.allSettled(waiting);
      throw error;
    }
    if (waiting !== undefined) await Promise.all(waiting);
    // A clone's reader asks which ranges fall through to its parent (layering.ts).
    if (message.unmapped !== true) return { data };
    return { data, unmapped: plan.ranges.map((range) => unmappedRanges(range.parts)) };
  }

  /**
   * The range's bytes when nothing of it needs a sled: its parts are zeros, memory, or
   * chunk ranges the cache holds (`readCachedChunk`). Otherwise, for `assemble`, the
   * chunk parts the cache did answer (by part index; undefined when none or no cache),
   * so that each part is looked up, and counted, once. The same bytes `assemble` would
   * answer: a lone part covering the range is answered as the view it is, anything else
   * is copied into a buffer of its own.
   */
  private assembleNow(range: ReadRange): Uint8Array | (Uint8Array | undefined)[] | undefined {
    const { parts } = range;
    const sleds = this.ports.sleds;
    if (sleds.readCachedChunk === undefined) return undefined;
    if (parts.length === 1) {
      const only = parts[0]!;
      if (only.offset === range.offset && only.length === range.length) {
        if (only.kind === "memory" && only.data.byteLength === range.length) return only.data;
        if (only.kind === "chunk") {
          const cached = this.cachedPart(only);
          return cached?.byteLength === range.length ? cached : undefined;
        }
      }
    }
    let cached: (Uint8Array | undefined)[] | undefined;
    let missed = false;
    for (let index = 0; index < parts.length; index += 1) {
      const part = parts[index]!;
      if (part.kind !== "chunk") continue;
      const found = this.cachedPart(part);
      if (found?.byteLength !== part.length) {
        missed = true;
        continue;
      }
      cached ??= new Array(parts.length);
      cached[index] = found;
    }
    if (missed) return cached;
    const bytes = new Uint8Array(range.length);
    for (let index = 0; index < parts.length; index += 1) {
      const part = parts[index]!;
      const at = part.offset - range.offset;
      if (part.kind === "memory") bytes.set(part.data, at);
      else if (part.kind === "chunk") bytes.set(cached![index]!, at);
    }
    return bytes;
  }

  private cachedPart(part: ChunkPart): Uint8Array | undefined {
    return this.ports.sleds.readCachedChunk?.(
      part.chunk.sledChunkId,
      part.chunkOffset,
      part.length,
      part.chunk,
    );
  }

  private async assembleInto(
    data: Uint8Array[],
    index: number,
    range: ReadRange,
    cached: (Uint8Array | undefined)[] | undefined,
  ): Promise<void> {
    data[index] = await this.assemble(range, cached);
  }

  /** `cached`: chunk parts (by index) already read from the cache, not to be read again. */
  private async assemble(
    range: ReadRange,
    cached?: readonly (Uint8Array | undefined)[],
  ): Promise<Uint8Array> {
    // A range that is one part (a sequential read of a flushed volume, or of fresh
    // writes) is that part's bytes, not a copy of them: a fresh buffer per MiB read was
    // garbage for the collector, and over a link the reply sends them by reference,
    // uncopied (headnode.ts, `repliesByReference`). Both kinds are never written again:
    // note data is a kept copy (or a private frame kept in place), and a sled's reply is
    // a buffer of its own.
    const only = range.parts.length === 1 ? range.parts[0]! : undefined;
    if (only !== undefined && only.offset === range.offset && only.length === range.length) {
      if (only.kind === "memory" && only.data.byteLength === range.length) return only.data;
      if (only.kind === "chunk") {
        const data = await this.readPart(only);
        if (data.byteLength === range.length) return data;
        const bytes = new Uint8Array(range.length);
        bytes.set(data);
        return bytes;
      }
    }
    const bytes = new Uint8Array(range.length);
    await Promise.all(
      range.parts.map(async (part, index) => {
        const at = part.offset - range.offset;
        switch (part.kind) {
          case "zero":
            return;
          case "memory":
            bytes.set(part.data, at);
            return;
          case "chunk":
            bytes.set(cached?.[index] ?? (await this.readPart(part)), at);
            return;
          default: {
            const unreachable: never = part;
            throw new Error(`unknown read part ${JSON.stringify(unreachable)}`);
          }
        }
      }),
    );
    return bytes;
  }

  private readPart(part: ChunkPart): Promise<Uint8Array> {
    return this.ports.sleds.readChunk(
      part.chunk.sledChunkId,
      part.chunk.copies,
      part.chunkOffset,
      part.length,
      part.chunk,
    );
  }

  /** The metadata digest, recomputed only when the commit point has moved. */
  private digestCache: { commitOpNum: number; digest: string } | undefined;

  private digest(): string {
    const commitOpNum = this.core.commitOpNum;
    if (this.digestCache?.commitOpNum !== commitOpNum) {
      this.digestCache = { commitOpNum, digest: this.core.metadata.digest() };
    }
    return this.digestCache.digest;
  }

  /** A few numbers per replica, cheap enough for every node-info request. */
  summary() {
    const replica = this.core;
    return {
      volume: this.address.volume,
      volumeId: this.address.volumeId,
      partition: this.address.partition,
      role: this.roleName,
      ...this.failureField(),
      epoch: replica.configuration?.epoch ?? 0,
      lastOpNum: replica.lastOpNum,
      commitOpNum: replica.commitOpNum,
    };
  }

  status() {
    // Follower stalls are counted in ticks: count the held ones first.
    this.catchUp();
    const replica = this.core;
    const primary = this.roleName === "primary";
    return {
      volume: this.address.volume,
      volumeId: this.address.volumeId,
      partition: this.address.partition,
      role: this.roleName,
      ...this.failureField(),
      epoch: replica.configuration?.epoch ?? 0,
      lastOpNum: replica.lastOpNum,
      durableOpNum: replica.durableOpNum,
      commitOpNum: replica.commitOpNum,
      flushedThroughOpNum: replica.metadata.flushedThroughOpNum,
      chunks: replica.metadata.chunks.size,
      extents: replica.metadata.tree.extentCount,
      ...replica.spaceUsage(),
      metadataDigest: this.digest(),
      followers: replica.followers().map((follower) => followerOnTheWire(follower, tickMs)),
      ...(primary
        ? {
            tailCommitted: replica.tailCommitted,
            chunksShortOfCopies: chunksShortOfCopies(
              replica.metadata.chunks,
              this.sledsOut,
              this.damagedCopies,
            ),
          }
        : {}),
      ...(replica.recordedCheckpoint === undefined
        ? {}
        : { checkpoint: replica.recordedCheckpoint }),
      ...(this.checkpoints.rebuiltFromOpNum === undefined
        ? {}
        : { rebuiltFromOpNum: this.checkpoints.rebuiltFromOpNum }),
      ...(replica.checkpointRefused === undefined
        ? {}
        : {
            checkpointRefused: `at op ${replica.checkpointRefused.opNum}: ${replica.checkpointRefused.error.message}`,
          }),
    };
  }

  /**
   * Stops the replica: its runner, and every request it holds, answered with `reason`
   * (by default: the node is shutting down). A request that reaches it afterwards is
   * refused with the same error, never held: nothing would answer it.
   */
  async close(reason?: BallastError): Promise<void> {
    this.closed =
      reason ?? new BallastError(ErrorCode.ShuttingDown, `${this.service.nodeId} is shutting down`);
    this.runner.close();
    if (this.gauged.delete(this)) this.meterGroups.release(this.address.volume);
    this.opContexts.clear();
    this.flushContexts.clear();
    for (const waiting of this.waiting.values()) waiting.reject(this.closed);
    this.waiting.clear();
    await this.journal.close();
  }

  /** Why a request is refused at once (failed or closed), if it is. */
  private refusal(): BallastError | undefined {
    if (this.failure !== undefined) return this.failedError();
    return this.closed === false ? undefined : this.closed;
  }

  private refuseIfNotServing(): void {
    const refused = this.refusal();
    if (refused !== undefined) throw refused;
  }

  /** Deletes the replica's files; only after `close`. */
  async remove(): Promise<void> {
    await removeDirectory(this.directory);
  }

  /** Carries out every effect the core has produced. */
  private run(): void {
    this.contain(this.runEffects);
  }

  /** `run`'s work, made once: it is on every request's path. */
  private readonly runEffects = (): void => this.runner.run();

  /**
   * The reply to request `requestId`, waited for from now on: before the core has the
   * request, which may answer it at once. A caller that then throws before awaiting it
   * takes the waiter out again, or the close would reject a promise nobody awaits (an
   * unhandled rejection, which ends the process).
   */
  private replyTo(requestId: number): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.set(requestId, { resolve, reject });
    });
  }

  /**
   * A request whose caller throws instead of awaiting its reply: the waiter is taken
   * out, and a reply settled already (effects carried out before the throw) is seen.
   */
  private abandon(requestId: number, reply: Promise<Reply>): void {
    this.waiting.delete(requestId);
    reply.catch(() => undefined);
  }

  private settleRequest(requestId: number): Waiting | undefined {
    const waiting = this.waiting.get(requestId);
    this.waiting.delete(requestId);
    return waiting;
  }

  /** Whether the journal failed or the core threw, and this replica stopped (module header). */
  get failed(): ReplicaFailure | undefined {
    return this.failure;
  }

  /**
   * The role it plays: a failed or closed replica plays none, whatever its core last
   * held. Work that read the role before a wait reads it again after (the replicator's
   * copies and scrub): a replica closed meanwhile (dropped, retired) must not read as a
   * primary still, or that work goes on for a partition this node no longer holds.
   */
  get roleName(): "primary" | "secondary" | "idle" {
    return this.failure === undefined && this.closed === false ? this.core.roleName : "idle";
  }

  /**
   * Test only: makes this replica's journal fail its next appends and truncations with
   * the given errno code, as a full or broken disk would. Never called outside tests.
   */
  injectJournalFailureForTesting(errno: "ENOSPC" | "EIO"): void {
    this.journalFiles.failForTesting = errno;
  }

  private failureField(): { failed?: string } {
    return this.failure === undefined ? {} : { failed: this.failure.message };
  }

  private failedError(): BallastError {
    const failure = this.failure;
    return new BallastError(
      ErrorCode.Unavailable,
      `${this.service.nodeId} no longer serves ${this.address.volume}/${this.address.partition}: ${failure?.message ?? "its journal failed"}`,
      { details: { errno: failure?.errno } },
    );
  }

  /**
   * The journal failed (what it holds is unknown) or the core threw (its state may be
   * half changed), so this replica must never acknowledge again. Latches the failure,
   * closes the runner (no completion reaches the core), answers what waits, and tells
   * the head node; the process and the other replicas carry on.
   */
  private fail(what: string, error: unknown): void {
    if (this.failure !== undefined) return;
    const errno = errnoOf(error);
    const cause = errno === "ENOSPC" ? "no space left on the disk" : String(error);
    this.failure = {
      what,
      errno,
      message: `${what} (${cause}); the replica stopped so that no acknowledgement is wrong`,
    };
    this.runner.close();
    this.logger.error(
      { error: String(error), errno, stack: error instanceof Error ? error.stack : undefined },
      `${what}; this replica stops acknowledging and serving, the others carry on`,
    );
    const failed = this.failedError();
    for (const waiting of this.waiting.values()) waiting.reject(failed);
    this.waiting.clear();
    // Its files stay for recovery to judge when it is opened again; the handles go.
    this.journal.close().catch(() => undefined);
    // Its role changed (it plays none now): the head node checks what it serves.
    this.inputs = true;
    if (!this.closed) this.ticking.wake();
    this.onFailure?.();
  }
}

/** Journals (by directory) refused for a failure in this boot, for the refusal's line. */
const untrustedRefusals = new RepeatLog();

/**
 * Opens the replica's journal. One that failed earlier in this boot of the machine is
 * refused (journal/failed-marker.ts): its files may read back writes that never reached
 * the disk, so recovery could hand the core ops it does not durably hold, on which it
 * might commit or be promoted. The configure then fails Unavailable, and the replica is
 * as one whose checkpoint is damaged: not opened, so it acknowledges nothing; as a
 * secondary it is dropped, as a primary it is failed over where a secondary can take
 * over (or the partition waits, unavailable, for a reboot of this machine), and once
 * this node is added as a learner the directory is removed and the replica rebuilt from
 * another's checkpoint (headnode.ts). After a reboot the disk is authoritative and the
 * journal opens as after any crash.
 */
async function openJournal(directory: string, logger: Logger, address: PartitionAddress) {
  try {
    const journal = await Journal.open({ directory });
    untrustedRefusals.end(directory);
    return journal;
  } catch (error) {
    if (!(error instanceof JournalUntrustedError)) throw error;
    // The coordinator may configure it again every round while the partition waits for
    // a reboot (a lone primary): said once per logRepeatIntervalMs, with the count.
    const due = untrustedRefusals.due(directory, performance.now());
    if (due !== undefined) {
      logger.error(
        {
          volume: address.volume,
          partition: address.partition,
          bootId: error.failedBootId,
          ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
        },
        "refusing to reopen a replica whose journal failed in this boot: its files may show writes that never reached the disk; it must be rebuilt from its peers",
      );
    }
    throw new BallastError(ErrorCode.Unavailable, error.message, {
      cause: error,
      details: { refusal: "journal-failed-this-boot" },
    });
  }
}

/** The errno code of a file-system error, looking through the journal's wrapping. */
function errnoOf(error: unknown): string | undefined {
  for (let at: unknown = error; at instanceof Error; at = at.cause) {
    const code = (at as NodeJS.ErrnoException).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** Where a replica's files live: per incarnation of the volume, then per partition. */
export function partitionDirectory(dataDir: string, volumeId: string, partition: number): string {
  return join(dataDir, "partitions", volumeId, String(partition));
}

/**
 * Whether the data directory stores a replica of the partition: its journal or a
 * checkpoint, which `PartitionHost.open` recovers from (an empty or absent partition
 * directory opens as a new, empty replica). configure-decision.ts, `no-replica`.
 */
export async function storesReplica(
  dataDir: string,
  volumeId: string,
  partition: number,
): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir(partitionDirectory(dataDir, volumeId, partition));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
  return entries.some((name) => storedNames.has(name));
}

/**
 * The newest epoch the data directory shows of the partition's replica: the epoch it was
 * last configured a voter in (`recordVoterEpoch`) or named out in (`recordOutEpoch`), or
 * of the newest note its journal
 * holds (an epoch never goes down along a log, and the journal keeps the note at its
 * release point, so the newest segment's notes show it; replicas kept by a build before
 * the voter-epoch file have only these), whichever is newer. Read without changing a
 * byte; undefined where it shows neither. configure-decision.ts, `storedEpoch`: a
 * configure older than this is a delayed one and never removes the directory.
 */
export async function storedEpoch(
  dataDir: string,
  volumeId: string,
  partition: number,
): Promise<number | undefined> {
  const directory = partitionDirectory(dataDir, volumeId, partition);
  let newest = await readVoterEpoch(directory);
  for (const record of await readNewestRecords(join(directory, "journal"))) {
    const { epoch } = decodeNote(record.payload);
    if (newest === undefined || epoch > newest) newest = epoch;
  }
  return newest;
}

/**
 * Keeps, durably, an epoch the node was configured in for the partition with nothing of
 * it open, in the partition's directory (made if missing), so that `storedEpoch` shows it:
 * the replica stored there was named out of the replica set in `epoch`, as
 * `recordOutEpoch` does for an open one (configure-decision.ts `keepOutEpoch`), or the
 * node is about to rebuild it afresh as a learner of `epoch` (headnode.ts: a rebuild whose
 * fetch fails leaves nothing else there, and a delayed configure of an older epoch naming
 * it a voter would open it empty). Raises only.
 */
export async function keepEpoch(
  dataDir: string,
  volumeId: string,
  partition: number,
  epoch: number,
): Promise<void> {
  const directory = partitionDirectory(dataDir, volumeId, partition);
  const stored = await readVoterEpoch(directory);
  if (stored !== undefined && epoch <= stored) return;
  await makeDirectory(directory);
  await voterEpochFile(directory).raise(epoch);
}

/** The file that keeps the newest epoch a replica was configured a voter in, or named out in. */
const voterEpochFileName = "voter-epoch";

/**
 * A replica directory's voter-epoch file: a counter file (runtime counter-file.ts), two
 * checksummed copies raised in place, so a configure needs no free block to keep its epoch
 * (before, the file was replaced through a temporary file and a rename, and on a full data
 * disk every configure of a voter failed with ENOSPC). A file of the first layout (the
 * epoch as text) is read, and converted at the next raise.
 */
function voterEpochFile(directory: string) {
  return counterFile(join(directory, voterEpochFileName), (bytes) => {
    const epoch = Number(bytes.toString("utf8").trim());
    return bytes.byteLength > 0 && Number.isSafeInteger(epoch) && epoch >= 0
      ? epoch
      : { damaged: "not a whole number" };
  });
}

/**
 * The epoch in a replica directory's voter-epoch file; undefined without one. Damage (no
 * valid copy, or text that is not a whole number) tells nothing: undefined, as for no
 * file. A file that cannot be read throws.
 */
async function readVoterEpoch(directory: string): Promise<number | undefined> {
  const stored = await voterEpochFile(directory).read();
  return "value" in stored ? stored.value : undefined;
}

/** What a partition directory holds once a replica opened there (adapters.ts). */
const storedNames: ReadonlySet<string> = new Set(["journal", "checkpoint.bin", "rebuilt.bin"]);
