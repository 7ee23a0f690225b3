// The replica core of one volume partition: a synchronous state machine. Messages, client
// requests, completions and ticks go in; effects come out (see effects.ts for the
// ordering contract with the shell). It never awaits, reads a clock or draws a random
// number, so a simulator can run a whole partition from a seed and replay any failure.
//
// The protocol (both patents, and the brief):
// - The primary turns each client write, trim or write-zeroes into a note with the next
//   op number and its epoch, journals it, and sends it to every secondary of the epoch.
//   A note is *pending* until committed and is never readable while pending: reads go
//   through the metadata tree, which only committed notes reach.
// - The primary commits op N once its own journal and every secondary hold N durably;
//   commits happen strictly in op order; then the client is answered.
// - A secondary takes notes only from the current epoch's primary, only when its log
//   holds the note just before them (so logs that agree on one note agree on all before
//   it), and only in op order; it acknowledges the highest op it holds durably and has
//   matched against this primary session. It commits in op order as the commit point
//   reaches it.
// - A note of the same op number but another epoch or content replaces an uncommitted
//   tail (a new primary's log wins); a committed op is never replaced.
// - Flush: the primary packs live, committed journal bytes into a chunk, has the shell
//   write it to sleds, then proposes a flush record through the same op stream; every
//   replica moves those pieces' metadata to the chunk when the record commits. A
//   primary whose chunk writes all fail for want of sleds (not for their space) for
//   primaryStallTicks, or its checkpoint stores while its journal is half full of
//   flushed notes, says so (`flushStalledTicks`): cut from sleds others reach, it can
//   never release its journal, and its node reports it for a failover.
// - Reclaiming space: the next flush record drops chunks no tree refers to any more
//   (`drop`). Every compactionIntervalTicks the primary reads whole the chunks that are
//   mostly dead (`chunk.read`); once it has them all, the next flush also packs their
//   live extents (relocated pieces, matched on op number like any other) and drops them.
//   Nothing then refers to a dropped chunk: only flush records add references, and only
//   to their own new chunk.
// - Ordering fence (ordering-fence.ts): a write, trim or write-zeroes may carry its
//   client's session and a sequence that grows with every attempt. The primary refuses
//   (Superseded, before any op is assigned) an attempt numbered below one it already
//   took from the session in this epoch: a stale copy its client gave up on, which
//   would otherwise land after, and undo, a later acknowledged write.
// - Flush requests (NBD FLUSH and FUA) answer once every op assigned before they arrived
//   is committed, that is durable in the journal of every voting replica; they nudge a
//   flush to sleds but never wait for one.
// - Checkpoint: once flushed bytes pile up (or the shell asks, `requestCheckpoint`), a
//   replica snapshots its metadata and publishes it step by step (write the local file,
//   store the blob on sleds, record its pointer with the coordinator, see effects.ts);
//   a checkpoint asked for that fails is asked for again, so a request stands until one
//   is recorded; after any failure the next waits checkpointRetryTicks from the failed
//   one's start, so an outage of sleds or of the coordinator costs a partition one try
//   per pause rather than one per tick; a store that fails again (a sled dead, no
//   spare) waits twice the last pause, up to checkpointStoreRetryTicksMax, until a
//   sled comes back (retryCheckpointSoon). Once recorded, journal notes whose bytes are
//   all in chunks are released. Release on a primary waits for every voting follower,
//   and for a learner only while it makes progress (learnerPinTicks): a stuck learner
//   must not fill the journal until writes time out. What a follower held back when
//   the checkpoint was recorded goes at the first tick after it has the notes, not at
//   the next checkpoint (which needs newly flushed bytes: a full journal gets none).
//   A learner that then needs a released note is reported `needsRebuild`: it can never
//   catch up from this primary and must start again from a checkpoint.
// - Learners are replicated to but never counted for commit. A voting follower whose
//   lag keeps a commit waiting longer than commitStallTicks is reported stalled, so
//   that the coordinator can drop it (a hung disk that still heartbeats).
// - Idle followers get no heartbeats. A primary sends a follower an empty notes message
//   (the commit point, and its session) every heartbeatTicks while the follower may lack
//   an op, the commit point or the session, and nothing once its acks show all three (a
//   *current* voter). Nothing else needs those heartbeats: liveness is per head node
//   (membership), leases are per head node (the coordinator's grant on reports); stall
//   detection counts ticks a commit waits on a follower, and an idle primary has no
//   commit waiting (acks to heartbeats never counted as progress anyway); learners and
//   followers that need rebuilding are never current; a new epoch or a restarted primary
//   (a new session) makes every follower not current, and writes carry notes, resends
//   and commit points as before. A deposed primary learns of the newer epoch from its
//   first write's answers; until then its lease, not heartbeats, keeps it from serving
//   stale reads. What a heartbeat would tell a current follower it already knows, with
//   one exception: a follower that restarted forgets the commit point and the session
//   (it resumes from its journal, committed only through its checkpoint). So a
//   secondary that has taken no notes from its primary since its role began says hello
//   every helloTicks: an ack of `helloSession`, which the primary answers by treating
//   it as not current (heartbeats until it acknowledges this session). A lost hello or
//   heartbeat is repeated; a hello with a newer epoch deposes the primary as any ack
//   does. A follower that lost acknowledged state is outside the failure model, and a
//   write finds it (mismatch) as before. So an idle partition costs no replication
//   messages at all: traffic follows writes, not partitions (docs/performance.md).
// - Snapshots: a `control` note (control-record.ts) freezes a copy of the current tree
//   under a snapshot id when it commits, or drops one; every replica applies it at the
//   same op. `rollbackSnapshot` replaces the current tree with a copy of a snapshot's the
//   same way. `takeSnapshot` and `dropSnapshot` are idempotent by id (a retry after a
//   failover finds the note committed, or waits for it in the inherited tail). Reads may
//   name a snapshot and are then planned from its tree.
// - Holding acknowledgements (`holdAcks`, for snapshots across partitions): mutations
//   are still assigned and committed, but their replies wait until `releaseAcks` or the
//   hold's deadline tick. While every partition holds, no write is acknowledged, so a
//   write acknowledged before the hold is below every snapshot op taken during it, and a
//   write issued after another's acknowledgement cannot be in a snapshot that lacks it.
//   Any role change ends the hold; `releaseAcks` says whether it held throughout.
// - Reads on a leased primary need a read lease that has not run out. The lease counts
//   from the shell's reading of its clocks when it sent the report that won it
//   (`renewLease`, `read(…, now)`), and holds only while both the monotonic clock and
//   the wall clock say less than the lease has passed since: either clock may stand still
//   through a frozen VM (architecture.md, "Leases"), and a wall clock step can only end
//   it early. The core never compares clocks of two machines. A primary that stays
//   primary into a new epoch keeps its lease; any other role change drops it.
//
// Failure model: messages may be lost, duplicated, reordered or delayed; any replica may
// crash and restart from its durable journal and last checkpoint, losing what was not
// yet durable. A restarted primary gets a new session number, so acknowledgements meant
// for its previous life are ignored. A restart holds every note its journal still has:
// the journal drops notes only after a checkpoint is recorded (and keeps the note at the
// release point, so that a restart knows which note it resumes after), whereas the
// local checkpoint file may be newer than the recorded one; learners rebuilt from the
// recorded one must still find every note after it.

import {
  BallastError,
  crc32c,
  crc32cCombine,
  ErrorCode,
  limits,
  type MutationFence,
  sledLimits,
} from "@ballast/protocol";
import {
  checkpointChunkEntryBytesMax,
  checkpointExtentBytesMax,
  checkpointStallHeldShare,
  followerLogBytesFactor,
  type ReplicaLimits,
  replicaLimitsDefault,
} from "../constants.ts";
import { type ControlRecord, decodeControlRecord, encodeControlRecord } from "./control-record.ts";
import type {
  CheckpointPointer,
  Effect,
  ReadResult,
  ReplicationMessage,
  RequestId,
} from "./effects.ts";
import { encodeFlushRecord, type FlushRecord } from "./flush-record.ts";
import { CheckpointTooLargeError, PartitionMetadata } from "./metadata.ts";
import { type Note, noteBytes, noteChecksum, sameNote } from "./note.ts";
import { type KeptFence, OrderingFence } from "./ordering-fence.ts";

/**
 * The session a follower's hello acknowledges (`replica.ack.v1` with nothing matched):
 * sessions start at 1, so no primary ever has it.
 */
export const helloSession = 0;

/** One reading of the shell's two clocks, in ms. */
export interface ClockReading {
  /** The monotonic clock: never steps, but may stand still while the machine is frozen. */
  monoMs: number;
  /** The wall clock: may step either way (NTP, an operator, a guest agent after a freeze). */
  wallMs: number;
}

/** A read lease as granted: its end on the monotonic clock, and its wall-clock window. */
interface HeldLease {
  monoUntilMs: number;
  wallFromMs: number;
  wallUntilMs: number;
}

/**
 * Why `lease` does not cover `now` (undefined if it does): held only while the monotonic
 * clock is before its end and the wall clock inside its window. A wall clock stepped back
 * before the grant's send ends the lease too: that time is not to be trusted either, and
 * the next grant (one report later) starts a fresh window.
 */
function leaseEnded(
  lease: HeldLease | undefined,
  now: ClockReading | undefined,
): string | undefined {
  if (lease === undefined) return "none";
  if (now === undefined) return "cannot be checked without the clocks";
  if (now.monoMs >= lease.monoUntilMs)
    return `ran out ${Math.ceil(now.monoMs - lease.monoUntilMs)} ms ago`;
  if (now.wallMs >= lease.wallUntilMs)
    return `ran out by the wall clock ${Math.ceil(now.wallMs - lease.wallUntilMs)} ms ago, though not by the monotonic one (this machine was frozen, or its wall clock stepped forward)`;
  if (now.wallMs < lease.wallFromMs)
    return `is void: the wall clock stepped back ${Math.ceil(lease.wallFromMs - now.wallMs)} ms behind its grant`;
  return undefined;
}

export interface Configuration {
  epoch: number;
  primary: string;
  secondaries: readonly string[];
  /** Replicas being rebuilt: sent notes, not counted for commit. */
  learners?: readonly string[];
  /** The primary serves reads only under a read lease (absent: unleased, static sets). */
  leased?: boolean;
  /**
   * The partition's bytes, from its start, that lie inside the volume: the primary
   * refuses writes, trims and write-zeroes reaching past them, and reads of the volume
   * past them (OutOfRange), whatever size the client believes (a shrink it has not
   * heard of). Absent: the whole partition. Fixed for the epoch, as the rest is.
   */
  servedBytes?: number;
}

export interface ReplicaIdentity {
  nodeId: string;
  volume: string;
  /**
   * The volume's incarnation (a delete and re-create of the name get different ids);
   * chunk ids carry it, so that two incarnations never name a chunk alike. Defaults to
   * the volume's name, as in static assignments.
   */
  volumeId?: string;
  partition: number;
  /** The partition's first byte in the volume, and its size. */
  partitionStart: number;
  partitionBytes: number;
  /**
   * Grows on every start of the process (the shell keeps a durable counter): acks echo
   * it, and secondaries ignore messages from a session older than one they have seen.
   */
  session: number;
}

export interface Recovered {
  /** The last durable metadata snapshot, if any, already restored. */
  checkpoint?: { metadata: PartitionMetadata; opNum: number };
  /**
   * The checkpoint came from another replica (a rebuild), with no journal of our own:
   * start committed only through its flushed point, so that the notes after it (whose
   * bytes live only in journals) are received again. Re-applying the ones the snapshot
   * already reflects changes nothing: the tree keeps the stored extent on a tie.
   */
  rebuilt?: boolean;
  /** Every note in the durable journal, in op order, contiguous. */
  notes: readonly Note[];
}

export type MutationKind = "write" | "trim" | "zeroes";

/** Watches commits (simulation checkers, metrics); must not call back into the replica. */
export interface ReplicaObserver {
  committed?(note: Note): void;
}

export type ClientRequest =
  | {
      kind: "write";
      requestId: RequestId;
      epoch: number;
      writes: readonly { offset: number; data: Uint8Array }[];
      /** The attempt's ordering fence (ordering-fence.ts); absent: not fenced. */
      fence?: MutationFence;
    }
  | {
      kind: "trim" | "zeroes";
      requestId: RequestId;
      epoch: number;
      ranges: readonly { offset: number; length: number }[];
      fence?: MutationFence;
      /** A resize's trim of the tail: may reach past the served bytes (volume.trim.v1). */
      pastEnd?: boolean;
    }
  | { kind: "flush"; requestId: RequestId; epoch: number };

interface SecondaryProgress {
  /** A learner is replicated to but does not count for commit. */
  learner: boolean;
  /** Highest op it holds durably and matched against this session. */
  matchOpNum: number;
  /** Next op to send it. */
  nextOpNum: number;
  /** When it last advanced, or a resend began (resends wait resendTicks after it). */
  lastProgressTick: number;
  /** When matchOpNum last advanced (or the epoch began): how a learner shows progress. */
  lastAdvanceTick: number;
  lastSendTick: number;
  /** A learner that needs a note this primary has released: it must be rebuilt. */
  needsRebuild: boolean;
  /** Whether it has acknowledged anything in this epoch. */
  heard: boolean;
  /**
   * Whether its acknowledgements show it knows this primary session: set by an ack that
   * echoes it, cleared by a hello (an ack of session `helloSession`: it restarted, or
   * never heard this session). Part of what makes a follower current (heartbeatTicksOf).
   */
  inSession: boolean;
  /**
   * The commit point its acknowledgements say it knows. Once it holds every op, knows the
   * commit point and this session, heartbeats tell it nothing: it gets none.
   */
  knownCommitOpNum: number;
  /**
   * When a learner not yet heard from was last counted as silent, or since it has been a
   * learner of this primary unheard: kept across epochs (silentSince), else the epoch's start.
   */
  silentSinceTick: number;
}

/** What a primary knows of one follower (status and reports). */
export interface FollowerProgress {
  node: string;
  matchOpNum: number;
  learner: boolean;
  /** Set once a voting follower has kept a commit waiting commitStallTicks or longer. */
  stalledTicks?: number;
  /** Set for a learner that needs notes this primary has released. */
  needsRebuild?: boolean;
  /**
   * Set for a learner that has acknowledged nothing in this epoch: its 0 is no match of
   * an empty partition's commit point (its node may host nothing). A joiner was heard as
   * a learner before it joined, and a voter's silence shows as a stall: neither is marked
   * (that would change every new partition's reports, for nothing the leader acts on).
   */
  unheard?: boolean;
}

interface PendingReply {
  requestId: RequestId;
  opNumFirst: number;
  opNumLast: number;
  deadlineTick: number;
}

/** A take or drop of a snapshot, answered once its control note (at `opNum`) commits. */
interface ControlWaiter {
  requestId: RequestId;
  opNum: number;
  deadlineTick: number;
  /** Set at commit when the note was a rollback that found no snapshot of this id. */
  missing?: string;
}

interface FlushWaiter {
  requestId: RequestId;
  targetOpNum: number;
  deadlineTick: number;
}

interface FlushInFlight {
  chunkNumber: number;
  sledChunkId: string;
  record: FlushRecord;
  /** Set once the record is proposed as a note. */
  recordOpNum?: number;
}

type Role =
  | { name: "idle" }
  | {
      name: "primary";
      secondaries: Map<string, SecondaryProgress>;
      /** Reads wait until the tail inherited at the start of the epoch is committed. */
      readableFromOpNum: number;
    }
  | {
      name: "secondary";
      primarySession: number | undefined;
      matchedOpNum: number;
      primaryCommitOpNum: number;
      /** When it last said hello (or took the role), while primarySession is unknown. */
      lastHelloTick: number;
    };

export class Replica {
  readonly identity: ReplicaIdentity;
  readonly limits: ReplicaLimits;
  metadata: PartitionMetadata;
  configuration: Configuration | undefined;
  private role: Role = { name: "idle" };

  /** Notes held in memory: every op after the last release. */
  private readonly log = new Map<number, Note>();
  private logBytes = 0;

  /** The most note data a follower holds unreleased (followerLogBytesFactor). */
  get followerLogBytesMax(): number {
    return this.limits.followerLogBytesMax ?? followerLogBytesFactor * this.limits.logBytesMax;
  }

  /** Flushed bytes past which failed checkpoint stores count as a flush stall (checkpointStallHeldShare). */
  get checkpointStallHeldBytes(): number {
    return (
      this.limits.checkpointStallHeldBytes ?? checkpointStallHeldShare * this.limits.logBytesMax
    );
  }

  /** Bytes of note data held for unflushed or unreleased ops (for the simulator's checks). */
  get heldLogBytes(): number {
    return this.logBytes;
  }
  /**
   * Bytes of held notes whose data is all in chunks (op ≤ the flushed point): what a
   * checkpoint would let the journal release. Kept as a count so ticks need no scan.
   */
  private flushedHeldBytes = 0;
  lastOpNum = 0;
  durableOpNum = 0;
  commitOpNum = 0;
  private releasedOpNum = 0;
  private releasedEpoch = 0;
  private releasedSession = 0;
  private journalGeneration = 0;

  private tickCount = 0;
  private effects: Effect[] = [];
  private readonly pendingReplies: PendingReply[] = [];
  private readonly waitingRequests: { request: ClientRequest; deadlineTick: number }[] = [];
  /** On a primary: the highest attempt admitted per client session, this epoch. */
  private readonly fence: OrderingFence;
  /**
   * The fence of a closed core of this replica, handed over for the first configure
   * (carryFence): taken back if that configure is of the same epoch, dropped either way.
   */
  private carriedFence: KeptFence | undefined;
  private readonly flushWaiters: FlushWaiter[] = [];
  private readonly controlWaiters: ControlWaiter[] = [];
  /**
   * On a primary: mutation replies wait while this hold is in force (until `untilTick`,
   * or `releaseAcks`). Cleared by any role change.
   */
  private ackHold: { id: string; untilTick: number } | undefined;
  private flushInFlight: FlushInFlight | undefined;
  private flushRetryAtTick = 0;
  /**
   * The last chunk write failed because every sled that answered was out of space (and
   * no chunk write has succeeded since). With the journal half full too, writes are
   * refused at once with NoSpace (`sledsFullRefusal`) rather than left to time out.
   */
  private sledsFull = false;
  /**
   * On a primary: since when every chunk write has failed for want of sleds it can reach
   * (not for their space: that is `sledsFull`), or every checkpoint store while flushed
   * notes only a checkpoint releases held half its journal or more; undefined once a
   * chunk write or a checkpoint store succeeds, or the role changes. Its journal can then
   * never be released, and it fills (flushStalledTicks).
   */
  private flushFailingSinceTick: number | undefined;
  private proposedChunkNumber = -1;
  /**
   * Copy lists to record, chunk → sleds (re-replication, `recordCopies`): the next flush
   * record carries them. Held on a primary only; a lost record loses them, and the shell
   * records them again when it next finds the chunk short of copies.
   */
  private readonly pendingCopies = new Map<number, string[]>();
  /**
   * On a primary: the compaction gathering its victims, chunk → its bytes once read.
   * Handed to the next flush once complete; lost on a role change or a failed read.
   */
  private compaction: Map<number, Uint8Array | undefined> | undefined;
  private lastCompactionTick = 0;
  /**
   * The commit point at the last look for victims that found none: metadata changes only
   * by committing notes, so until the commit point moves there is nothing new to find
   * (an idle partition costs no scan of its chunk table).
   */
  private idleCompactionOpNum: number | undefined;
  /**
   * Live bytes with snapshots, and the tick and commit point they were counted at (see
   * spaceUsage). Dropped when a control note commits: a snapshot taken, dropped or rolled
   * back to changes the figures at once and is recounted at the next ask.
   */
  private liveBytesCache:
    | {
        tick: number;
        commitOpNum: number;
        liveBytes: number;
        snapshotBytes: { snapshot: string; uniqueBytes: number }[];
      }
    | undefined;
  private lastDropTick = 0;
  /**
   * The commit point at the last look for chunks to drop that found none: as for
   * compaction, nothing new can be unreferenced until the commit point moves, so an idle
   * primary neither scans its table nor keeps a timer for it (quietTicks).
   */
  private idleDropOpNum: number | undefined;
  /**
   * The checkpoint being published, and the step it waits on (see effects.ts): written
   * locally, then stored on sleds under `blobKey`, then recorded. One at a time.
   */
  private checkpointInFlight:
    | {
        opNum: number;
        flushedThroughOpNum: number;
        step: "write" | "store" | "record";
        snapshot: Uint8Array;
        blobKey: string;
        pointer?: CheckpointPointer;
        /** It was started with a request pending (requestCheckpoint): a failure keeps it. */
        asked: boolean;
      }
    | undefined;
  /** Checkpoints stored in this life: keeps every blob key of the session distinct. */
  private checkpointUploads = 0;
  /** The newest checkpoint stored on sleds and recorded in this life. */
  recordedCheckpoint: CheckpointPointer | undefined;
  private lastCheckpointTick = 0;
  /**
   * After a failed checkpoint, no other starts before this tick (checkpointRetryTicks
   * after the failed one started). Without it, flushed bytes that keep a checkpoint due
   * start one every tick while the cause lasts (no sled up to store on, a coordinator
   * without a leader): each writes and syncs the local file again and asks the sleds
   * again, for every partition, for the whole outage.
   */
  private checkpointRetryAtTick = 0;
  /**
   * Checkpoint stores that failed one after another since the last that succeeded (or
   * since a sled came back, retryCheckpointSoon): each doubles the pause before the next
   * try, up to checkpointStoreRetryTicksMax. A store that cannot reach chunkCopies sleds
   * (one of two dead) fails the same way until a sled comes back, and each try leaves an
   * orphan blob on the live one.
   */
  private checkpointStoreFailures = 0;
  /**
   * The last checkpoint this replica refused to write because it would be larger than
   * any sled stores or any reader takes back (CheckpointTooLargeError), until one is
   * taken again: status shows it. Nothing is released meanwhile, and the next try waits
   * checkpointRefusedRetryTicks (the snapshot is built before the refusal is known).
   */
  checkpointRefused: { opNum: number; error: CheckpointTooLargeError } | undefined;
  private lastCheckpointOpNum = 0;
  /** The flushed point of the newest checkpoint known stored and recorded: release stops there. */
  private checkpointFlushedThroughOpNum = 0;
  /**
   * A checkpoint is due even if nothing new is flushed (asked for, or a learner needs one).
   * Cleared when a checkpoint starts and set again if that one fails (onCheckpointFailed):
   * a request stands until a checkpoint started for it is recorded.
   */
  private checkpointRequested = false;
  /** The op the restored metadata reflects: no checkpoint is taken below it. */
  private readonly metadataThroughOpNum: number;
  /**
   * On a primary: when each durable, uncommitted run of ops became durable here (or the
   * epoch began), in op order: how long a commit has waited on a lagging follower.
   */
  private durableSince: { throughOpNum: number; tick: number }[] = [];
  /**
   * Since when an op assigned or appended here has waited for this journal without the
   * journal making anything more durable (undefined while nothing waits): a hung disk
   * under a primary, which its followers cannot report (ownStalledTicks).
   */
  private journalWaitSinceTick: number | undefined;
  /** On a leased primary: the read lease, while both of the shell's clocks keep inside it. */
  private lease: HeldLease | undefined;
  private readonly observer: ReplicaObserver;

  constructor(
    identity: ReplicaIdentity,
    recovered: Recovered = { notes: [] },
    limitsOverride: Partial<ReplicaLimits> = {},
    observer: ReplicaObserver = {},
  ) {
    this.identity = identity;
    this.observer = observer;
    this.limits = { ...replicaLimitsDefault, ...limitsOverride };
    this.fence = new OrderingFence(this.limits);
    this.metadata = recovered.checkpoint?.metadata ?? new PartitionMetadata();
    this.metadataThroughOpNum = recovered.checkpoint?.opNum ?? 0;
    const flushedThrough = this.metadata.flushedThroughOpNum;
    this.commitOpNum = recovered.rebuilt ? flushedThrough : (recovered.checkpoint?.opNum ?? 0);
    const first = recovered.notes[0];
    assert(
      first === undefined || first.opNum <= this.commitOpNum + 1,
      `journal starts at op ${first?.opNum}, after the checkpoint at ${this.commitOpNum}: notes are missing`,
    );
    // Every note the journal still has is held, even those whose bytes are in chunks:
    // the local checkpoint may be newer than the one recorded with the coordinator (a
    // crash between the two), and a learner rebuilt from the recorded one needs every
    // note after it. The journal keeps the note at its release point, which is where
    // this replica resumes; they are released again after the next recorded checkpoint.
    this.releasedOpNum =
      first === undefined ? flushedThrough : Math.min(flushedThrough, first.opNum);
    this.releasedEpoch = this.metadata.flushedThroughEpoch;
    this.releasedSession = this.metadata.flushedThroughSession;
    this.checkpointFlushedThroughOpNum = this.releasedOpNum;
    let previous = -1;
    for (const note of recovered.notes) {
      assert(
        previous === -1 || note.opNum === previous + 1,
        `journal notes not contiguous at ${note.opNum}`,
      );
      previous = note.opNum;
      if (note.opNum === this.releasedOpNum) {
        this.releasedEpoch = note.epoch;
        this.releasedSession = note.session;
      }
      if (note.opNum <= this.releasedOpNum) continue;
      this.hold(note);
      if (note.opNum <= flushedThrough) {
        this.flushedHeldBytes += noteBytes(note); // in chunks: a checkpoint releases it
      } else if (note.opNum <= this.commitOpNum && note.kind === "write") {
        // Committed before the checkpoint and not flushed: the tree refers to its bytes.
        this.metadata.unflushed.set(note.opNum, { offset: note.offset, length: note.length });
        this.metadata.unflushedBytes += note.length;
      }
    }
    this.lastOpNum = Math.max(this.commitOpNum, previous);
    this.durableOpNum = this.lastOpNum;
  }

  /** Takes the effects produced since the last call. */
  drainEffects(): Effect[] {
    const effects = this.effects;
    this.effects = [];
    return effects;
  }

  get roleName(): Role["name"] {
    return this.role.name;
  }

  /** On a primary: what each secondary and learner has matched, stalls, rebuilds. */
  followers(): FollowerProgress[] {
    if (this.role.name !== "primary") return [];
    return [...this.role.secondaries].map(([node, progress]) => {
      const stalledTicks = this.stalledTicksOf(progress);
      return {
        node,
        matchOpNum: progress.matchOpNum,
        learner: progress.learner,
        ...(stalledTicks >= this.limits.commitStallTicks ? { stalledTicks } : {}),
        ...(progress.needsRebuild ? { needsRebuild: true } : {}),
        ...(progress.learner && !progress.heard ? { unheard: true } : {}),
      };
    });
  }

  /**
   * On a primary: how long its own journal has kept an op waiting without making
   * anything more durable (a disk that hangs without failing), once that is
   * primaryStallTicks or longer; 0 otherwise. Its node reports it, and the coordinator
   * fails the partition over as for a failed primary: no follower can report this stall.
   */
  ownStalledTicks(): number {
    if (this.role.name !== "primary" || this.journalWaitSinceTick === undefined) return 0;
    const ticks = this.tickCount - this.journalWaitSinceTick;
    return ticks >= this.limits.primaryStallTicks ? ticks : 0;
  }

  /**
   * On a primary: how long every chunk write has failed for want of sleds (none that
   * answered was full), once that is primaryStallTicks or longer; 0 otherwise. A primary
   * that cannot reach the sleds its coordinator sees alive (a cut between them only)
   * flushes nothing, so its journal is never released: once it holds logBytesMax every
   * write waits and times out, and reads of flushed data fail, for as long as the cut
   * lasts. Its node reports it, and the coordinator fails the partition over to a
   * secondary, which holds every acknowledged write and may reach them.
   *
   * A cut that comes once the journal is mostly flushed notes is the same stall with no
   * chunk write to fail: the journal waits for a checkpoint, whose stores fail, and the
   * writes that would need a flush wait for room (onCheckpointFailed counts those stores).
   */
  flushStalledTicks(): number {
    if (this.role.name !== "primary" || this.flushFailingSinceTick === undefined) return 0;
    const ticks = this.tickCount - this.flushFailingSinceTick;
    return ticks >= this.limits.primaryStallTicks ? ticks : 0;
  }

  /**
   * On a primary: whether the tail it inherited at the start of its epoch is committed.
   * From then on, every op acknowledged by an earlier primary is on every voter of this
   * epoch (the coordinator's safe-promotion rule relies on it).
   */
  get tailCommitted(): boolean {
    return this.role.name === "primary" && this.commitOpNum >= this.role.readableFromOpNum;
  }

  /** Notes through this op are released: no follower can be served from before it. */
  get releasedThroughOpNum(): number {
    return this.releasedOpNum;
  }

  /**
   * How long a commit has waited on a voting follower: since the oldest op it lacks
   * became durable here (or the epoch began), if the primary could commit that op but
   * for it. Zero for learners, which never hold a commit.
   */
  private stalledTicksOf(progress: SecondaryProgress): number {
    if (progress.learner) return 0;
    const waitingOpNum = Math.max(progress.matchOpNum, this.commitOpNum) + 1;
    if (waitingOpNum > Math.min(this.durableOpNum, this.lastOpNum)) return 0;
    const since = this.durableSince.find((run) => run.throughOpNum >= waitingOpNum);
    return since === undefined ? 0 : this.tickCount - since.tick;
  }

  // ---------------------------------------------------------------- configuration

  /**
   * The fence table to hand to a core that reopens this replica (ordering-fence.ts,
   * KeptFence); undefined when it holds nothing (never configured, deposed, or no fenced
   * attempt taken this epoch).
   */
  fenceToKeep(): KeptFence | undefined {
    const configuration = this.configuration;
    if (configuration === undefined || this.fence.size === 0) return undefined;
    const sessions = this.fence.kept(this.tickCount);
    return sessions.length === 0 ? undefined : { epoch: configuration.epoch, sessions };
  }

  /**
   * Hands this core, before its first configure, the fence a closed core of the same
   * replica kept (fenceToKeep): that configure takes it back if it is of the epoch the
   * table was built in, and drops it otherwise.
   */
  carryFence(kept: KeptFence): void {
    assert(
      this.configuration === undefined,
      "a fence is carried only into a core not yet configured",
    );
    this.carriedFence = kept;
  }

  /** A new replica set from the coordinator (or the test). Older epochs are ignored. */
  configure(configuration: Configuration): void {
    if (this.configuration !== undefined && configuration.epoch < this.configuration.epoch) return;
    if (this.configuration !== undefined && configuration.epoch === this.configuration.epoch)
      return;
    // Named primary by the configuration it held, whatever its role now: an ack of a
    // newer epoch makes a primary idle until that epoch's configure comes (onAck), and a
    // follower may hear of the epoch first (a learner added, a secondary dropped).
    const namedPrimary = this.configuration?.primary === this.identity.nodeId;
    this.configuration = configuration;
    this.failPendingRequests(ErrorCode.NotPrimary, `epoch ${configuration.epoch} began`);
    // Every attempt of the new epoch reaches this core after this point, and one of an
    // older epoch is refused by its epoch (ordering-fence.ts).
    this.fence.clear();
    // A core reopened in place (its journal failed) at the epoch its predecessor held
    // takes back that one's table: a stale copy read by this process after the reopen
    // names this epoch, and an empty table would admit it (ordering-fence.ts).
    if (this.carriedFence?.epoch === configuration.epoch) {
      this.fence.restore(this.carriedFence.sessions, this.tickCount);
    }
    this.carriedFence = undefined;
    this.ackHold = undefined;
    this.flushInFlight = undefined;
    this.pendingCopies.clear();
    this.compaction = undefined;
    // A lease is the coordinator's promise that no other node becomes this partition's
    // primary before it runs out (it tracks grants per partition and node, not per
    // epoch). So a primary that stays primary into a new epoch (a secondary dropped or
    // added) keeps it, and reads go on through routine membership changes, also when a
    // follower's ack of the new epoch made it idle first (before, that dropped the lease
    // and reads failed until the next grant: the failover-faults test's kill -9 run).
    // Any other role change drops it, and a primary again later needs a new grant.
    if (!(namedPrimary && configuration.primary === this.identity.nodeId)) {
      this.lease = undefined;
      // Likewise the count of failing flushes: a secondary dropped or added changes
      // nothing of the sleds this primary cannot reach.
      this.flushFailingSinceTick = undefined;
    }
    this.durableSince = [];
    this.journalWaitSinceTick = this.durableOpNum < this.lastOpNum ? this.tickCount : undefined;
    if (configuration.primary === this.identity.nodeId) {
      const before = this.role.name === "primary" ? this.role.secondaries : undefined;
      const secondaries = new Map<string, SecondaryProgress>();
      const followers = [
        ...configuration.secondaries.map((node) => ({ node, learner: false })),
        ...(configuration.learners ?? []).map((node) => ({ node, learner: true })),
      ];
      for (const { node, learner } of followers) {
        // Resend the whole uncommitted tail: the secondary may hold another epoch's.
        secondaries.set(node, {
          learner,
          matchOpNum: 0,
          nextOpNum: Math.max(this.commitOpNum, this.releasedOpNum) + 1,
          lastProgressTick: this.tickCount,
          lastAdvanceTick: this.tickCount,
          lastSendTick: -Infinity,
          needsRebuild: false,
          heard: false,
          inSession: false,
          knownCommitOpNum: 0,
          silentSinceTick: silentSince(before?.get(node), learner, this.tickCount),
        });
      }
      this.role = { name: "primary", secondaries, readableFromOpNum: this.lastOpNum };
      // The inherited durable tail waits for the followers from now on.
      if (this.durableOpNum > this.commitOpNum) {
        this.durableSince.push({ throughOpNum: this.durableOpNum, tick: this.tickCount });
      }
      this.advanceCommit();
      this.replicate(true);
    } else if (
      configuration.secondaries.includes(this.identity.nodeId) ||
      (configuration.learners ?? []).includes(this.identity.nodeId)
    ) {
      this.role = {
        name: "secondary",
        primarySession: undefined,
        matchedOpNum: this.commitOpNum,
        primaryCommitOpNum: this.commitOpNum,
        lastHelloTick: this.tickCount,
      };
    } else {
      this.role = { name: "idle" };
    }
  }

  // ---------------------------------------------------------------- client requests

  onClientRequest(request: ClientRequest): void {
    const refusal = this.refuseAsPrimary(request.epoch);
    if (refusal !== undefined) {
      this.replyError(request.requestId, refusal);
      return;
    }
    if (request.kind === "flush") {
      // Every write acknowledged before the flush arrived is committed, so durable in
      // every voter's journal: that is what a flush promises, and waits for sleds
      // would add nothing to it. Writes still in flight when it arrived are included
      // (NBD FUA and FLUSH may follow a write whose reply is on its way).
      this.flushWaiters.push({
        requestId: request.requestId,
        targetOpNum: this.lastOpNum,
        deadlineTick: this.tickCount + this.limits.requestDeadlineTicks,
      });
      this.answerFlushWaiters();
      // A hint: moving data to sleds shortens journals, but nobody waits for it.
      this.maybeStartFlush(true);
      return;
    }
    const invalid = this.validateMutation(request);
    if (invalid !== undefined) {
      this.replyError(request.requestId, invalid);
      return;
    }
    const full = this.sledsFullRefusal(request) ?? this.journalStuckRefusal(request);
    if (full !== undefined) {
      this.replyError(request.requestId, full);
      return;
    }
    const waits = this.waitingRequests.length > 0 || !this.hasRoomFor(request);
    if (waits && this.waitingRequests.length >= this.limits.requestsWaitingMax) {
      this.replyError(
        request.requestId,
        new BallastError(
          ErrorCode.Unavailable,
          `partition ${this.identity.partition} has ${this.waitingRequests.length} requests waiting (limit ${this.limits.requestsWaitingMax}); retry later`,
        ),
      );
      return;
    }
    // The fence is asked last, so that only an attempt taken (assigned now, or queued
    // for room in FIFO order) raises its session's sequence.
    if (request.fence !== undefined) {
      const decision = this.fence.admit(request.fence, this.tickCount);
      if (!decision.admitted) {
        this.replyError(
          request.requestId,
          supersededError(request.fence, decision.highestSequence),
        );
        return;
      }
    }
    if (waits) {
      this.waitingRequests.push({
        request,
        deadlineTick: this.tickCount + this.limits.requestDeadlineTicks,
      });
      return;
    }
    this.assign(request);
  }

  /** Whether it holds a read lease grant (run out or not): for the simulator's checks. */
  get holdsLeaseGrant(): boolean {
    return this.lease !== undefined;
  }

  /**
   * Renews the read lease of this primary for `leaseMs` from `sentAt` (the shell's clocks
   * as it sent the report the grant answers), if it is still the primary of `epoch`. A
   * grant for another epoch is ignored. Of two grants, the one whose monotonic end is
   * later is kept, each with its own wall-clock window: every grant the coordinator gave
   * is a promise on its own, and this keeps one of them whole.
   */
  renewLease(epoch: number, sentAt: ClockReading, leaseMs: number): void {
    if (this.role.name !== "primary" || this.configuration?.epoch !== epoch) return;
    const monoUntilMs = sentAt.monoMs + leaseMs;
    if (this.lease !== undefined && this.lease.monoUntilMs > monoUntilMs) return;
    this.lease = { monoUntilMs, wallFromMs: sentAt.wallMs, wallUntilMs: sentAt.wallMs + leaseMs };
  }

  /**
   * Plans a read on the primary. Synchronous: the plan is a consistent cut at the commit
   * point. `now` is the shell's reading of its clocks; a leased primary refuses reads
   * unless both say its lease has not run out (another primary may exist once it has).
   */
  read(
    epoch: number,
    ranges: readonly { offset: number; length: number }[],
    now?: ClockReading,
    snapshotId?: string,
  ): ReadResult {
    const refusal = this.refuseAsPrimary(epoch);
    if (refusal !== undefined) throw refusal;
    const role = this.role as Extract<Role, { name: "primary" }>;
    if (this.configuration!.leased === true) {
      const ended = leaseEnded(this.lease, now);
      if (ended !== undefined) {
        const where = `${this.identity.volume}/${this.identity.partition}`;
        throw new BallastError(
          ErrorCode.Unavailable,
          ended === "none"
            ? `the primary of ${where} holds no read lease in epoch ${epoch} yet; retry`
            : `the read lease of the primary of ${where} ${ended}; retry`,
          { details: { epoch } },
        );
      }
    }
    if (this.commitOpNum < role.readableFromOpNum) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `the primary of partition ${this.identity.partition} is committing its inherited tail (op ${this.commitOpNum} of ${role.readableFromOpNum}); retry`,
      );
    }
    let total = 0;
    // A snapshot keeps the size it was taken at (a clone reads its parent's below its
    // overlap, past a shrink of the parent since): only reads of the volume are bounded.
    const bounded = snapshotId === undefined;
    for (const range of ranges) {
      const problem = this.checkRange(range.offset, range.length, bounded);
      if (problem !== undefined) throw problem;
      total += range.length;
    }
    if (total > limits.requestDataBytesMax) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `a read may return at most ${limits.requestDataBytesMax} bytes; asked for ${total}`,
      );
    }
    // A snapshot reads as of the op it was taken at.
    let asOfOpNum = this.commitOpNum;
    if (snapshotId !== undefined) {
      const frozen = this.metadata.snapshots.get(snapshotId);
      if (frozen === undefined) throw this.noSnapshot(snapshotId);
      asOfOpNum = frozen.opNum;
    }
    return {
      asOfOpNum,
      ranges: ranges.map((range) => ({
        offset: range.offset,
        length: range.length,
        parts: this.metadata.planRead(
          range.offset,
          range.length,
          (opNum) => this.log.get(opNum)?.data,
          snapshotId,
        ),
      })),
    };
  }

  private refuseAsPrimary(epoch: number): BallastError | undefined {
    const configuration = this.configuration;
    if (configuration === undefined || this.role.name !== "primary") {
      return new BallastError(
        ErrorCode.NotPrimary,
        `${this.identity.nodeId} is not the primary of ${this.identity.volume}/${this.identity.partition}`,
        {
          details: { primary: configuration?.primary ?? null, epoch: configuration?.epoch ?? null },
        },
      );
    }
    if (epoch !== configuration.epoch) {
      return new BallastError(
        ErrorCode.WrongEpoch,
        `request for epoch ${epoch}, but ${this.identity.volume}/${this.identity.partition} is in epoch ${configuration.epoch}`,
        { details: { epoch, currentEpoch: configuration.epoch, primary: configuration.primary } },
      );
    }
    return undefined;
  }

  /**
   * Why the range cannot be served (undefined if it can): unaligned, empty, outside the
   * partition, or, when `bounded`, past the volume's end within it (the epoch's
   * `servedBytes`).
   */
  private checkRange(offset: number, length: number, bounded: boolean): BallastError | undefined {
    const { partitionStart, partitionBytes } = this.identity;
    if (offset % limits.sectorBytes !== 0 || length % limits.sectorBytes !== 0) {
      return new BallastError(
        ErrorCode.Unaligned,
        `offset ${offset} and length ${length} must be multiples of ${limits.sectorBytes}`,
        { details: { offset, length, sectorBytes: limits.sectorBytes } },
      );
    }
    if (length === 0) {
      return new BallastError(ErrorCode.InvalidArgument, `a range at ${offset} has length 0`);
    }
    if (offset < partitionStart || offset + length > partitionStart + partitionBytes) {
      return new BallastError(
        ErrorCode.OutOfRange,
        `range [${offset}, ${offset + length}) is outside partition ${this.identity.partition} [${partitionStart}, ${partitionStart + partitionBytes})`,
        { details: { offset, length, partitionStart, partitionBytes } },
      );
    }
    const servedBytes = this.configuration?.servedBytes;
    if (bounded && servedBytes !== undefined && offset + length > partitionStart + servedBytes) {
      const volumeEnd = partitionStart + servedBytes;
      return new BallastError(
        ErrorCode.OutOfRange,
        `range [${offset}, ${offset + length}) reaches past the end of volume ${this.identity.volume} at ${volumeEnd} (it was shrunk); describe the volume again`,
        { details: { offset, length, volumeEnd, pastVolumeEnd: true } },
      );
    }
    return undefined;
  }

  private validateMutation(
    request: Exclude<ClientRequest, { kind: "flush" }>,
  ): BallastError | undefined {
    let total = 0;
    if (request.kind === "write") {
      for (const write of request.writes) {
        const problem = this.checkRange(write.offset, write.data.byteLength, true);
        if (problem !== undefined) return problem;
        total += write.data.byteLength;
      }
    } else {
      // Only a resize's trim of the tail may reach past the end (volume.trim.v1).
      const bounded = !(request.kind === "trim" && request.pastEnd === true);
      for (const range of request.ranges) {
        const problem = this.checkRange(range.offset, range.length, bounded);
        if (problem !== undefined) return problem;
      }
    }
    if (total > limits.requestDataBytesMax) {
      return new BallastError(
        ErrorCode.PayloadTooLarge,
        `a write request may carry at most ${limits.requestDataBytesMax} bytes; it carries ${total}`,
      );
    }
    return undefined;
  }

  /**
   * Full sleds: while the last flush failed for no space and the journal is at least half
   * full, a write or write-zeroes could only wait for room that is not coming, so it is
   * answered NoSpace now. Trims are always taken: they are how space comes back.
   */
  private sledsFullRefusal(request: ClientRequest): BallastError | undefined {
    const adds = request.kind === "write" || request.kind === "zeroes";
    if (!adds || !this.sledsFull || this.logBytes < this.limits.logBytesMax / 2) return undefined;
    return new BallastError(
      ErrorCode.NoSpace,
      `sleds are full: partition ${this.identity.partition} of ${this.identity.volume} cannot flush (its sleds answered NoSpace) and its journal holds ${this.logBytes} of ${this.limits.logBytesMax} bytes; trim or free space and retry`,
      { details: { logBytes: this.logBytes, logBytesMax: this.limits.logBytesMax } },
    );
  }

  /**
   * A checkpoint refused as too large (`checkpointRefused`) with the journal at least half
   * full: nothing releases the journal until a checkpoint fits again (snapshots deleted),
   * so a write or write-zeroes is answered NoSpace now, with the reason, rather than left
   * to wait for room and time out. Trims are still taken.
   */
  private journalStuckRefusal(request: ClientRequest): BallastError | undefined {
    const adds = request.kind === "write" || request.kind === "zeroes";
    const refused = this.checkpointRefused;
    if (!adds || refused === undefined || this.logBytes < this.limits.logBytesMax / 2) {
      return undefined;
    }
    return new BallastError(
      ErrorCode.NoSpace,
      `partition ${this.identity.partition} of ${this.identity.volume} cannot release its journal (${this.logBytes} of ${this.limits.logBytesMax} bytes): its checkpoint was refused (${refused.error.message}); delete snapshots of this volume and retry`,
      { details: { logBytes: this.logBytes, logBytesMax: this.limits.logBytesMax } },
    );
  }

  private hasRoomFor(request: ClientRequest): boolean {
    const count =
      request.kind === "write"
        ? request.writes.length
        : request.kind === "flush"
          ? 0
          : request.ranges.length;
    const bytes =
      request.kind === "write"
        ? request.writes.reduce((sum, write) => sum + write.data.byteLength, 0)
        : 0;
    const inflight = this.lastOpNum - this.commitOpNum;
    return (
      (inflight === 0 || inflight + count <= this.limits.notesInflightMax) &&
      (this.logBytes === 0 || this.logBytes + bytes <= this.limits.logBytesMax)
    );
  }

  private assign(request: Exclude<ClientRequest, { kind: "flush" }>): void {
    const epoch = this.configuration!.epoch;
    const notes: Note[] =
      request.kind === "write"
        ? request.writes.map((write) => ({
            opNum: 0,
            epoch,
            session: this.identity.session,
            kind: "write" as const,
            offset: write.offset,
            length: write.data.byteLength,
            data: write.data,
            checksum: noteChecksum(write.data),
          }))
        : request.ranges.map((range) => ({
            opNum: 0,
            epoch,
            session: this.identity.session,
            kind: request.kind,
            offset: range.offset,
            length: range.length,
            checksum: 0,
          }));
    const opNumFirst = this.lastOpNum + 1;
    this.propose(notes);
    this.pendingReplies.push({
      requestId: request.requestId,
      opNumFirst,
      opNumLast: this.lastOpNum,
      deadlineTick: this.tickCount + this.limits.requestDeadlineTicks,
    });
  }

  /** Gives notes op numbers, journals them and sends them. Primary only. */
  private propose(notes: Note[]): void {
    for (const note of notes) {
      note.opNum = ++this.lastOpNum;
      this.hold(note);
    }
    this.journalWaitSinceTick ??= this.tickCount;
    this.effects.push({ type: "journal.append", generation: this.journalGeneration, notes });
    this.replicate(false);
  }

  // ---------------------------------------------------------------- snapshots

  /**
   * On the primary: freezes the current tree as snapshot `id` through the op stream, and
   * answers `{kind: "control", opNum}` (the op it was taken at) once committed. A take of
   * an id already taken answers at once with its op; one whose note is already proposed
   * (the inherited tail of a new primary) waits for that note.
   */
  takeSnapshot(requestId: RequestId, epoch: number, id: string): void {
    const refusal = this.refuseAsPrimary(epoch);
    if (refusal !== undefined) {
      this.replyError(requestId, refusal);
      return;
    }
    const taken = this.metadata.snapshots.get(id);
    if (taken !== undefined) {
      this.effects.push({
        type: "reply",
        requestId,
        reply: { kind: "control", opNum: taken.opNum },
      });
      return;
    }
    if (this.proposedControl({ kind: "snapshot.take", id }) === undefined) {
      const overBudget = this.checkpointBudgetRefusal(id);
      if (overBudget !== undefined) {
        this.replyError(requestId, overBudget);
        return;
      }
    }
    this.proposeControl(requestId, { kind: "snapshot.take", id });
  }

  /**
   * The checkpoint budget of a snapshot take: a checkpoint is one sled blob
   * (checkpointBytesMax) and holds every tree in full, so a take is refused (NoSpace,
   * before anything is proposed) when the trees frozen so far, the one it would freeze
   * (the current tree), and a reserve for the current tree at its worst would not fit:
   * one 512-byte extent per sector of the partition (at most partitionBytesMax's worth,
   * and at least what it holds now), at checkpointExtentBytesMax each, with the chunk
   * table at checkpointChunkEntryBytesMax a chunk. The reserve is what keeps writes
   * from ever making the checkpoint too large to store once snapshots are taken: only
   * partitions larger than partitionBytesMax (made before it was lowered) can still
   * outgrow it, and their checkpoint is then refused, never written (maybeCheckpoint).
   */
  private checkpointBudgetRefusal(id: string): BallastError | undefined {
    const current = this.metadata.tree.extentCount;
    let frozen = 0;
    for (const { tree } of this.metadata.snapshots.values()) frozen += tree.extentCount;
    const pending = this.pendingSnapshotTakes();
    frozen += pending * current;
    const partitionSectors =
      Math.min(this.identity.partitionBytes, limits.partitionBytesMax) / limits.sectorBytes;
    const reserve = Math.max(current, partitionSectors);
    const projected =
      (frozen + current + reserve) * checkpointExtentBytesMax +
      this.metadata.chunks.size * checkpointChunkEntryBytesMax;
    const budget = this.limits.checkpointBytesMax;
    if (projected <= budget) return undefined;
    const { volume, partition } = this.identity;
    return new BallastError(
      ErrorCode.NoSpace,
      `snapshot ${id} refused on ${volume}/${partition}: its checkpoint would need up to ${projected} bytes (${this.metadata.snapshots.size + pending} snapshots of ${frozen} extents, this one of ${current}, a reserve of ${reserve} for the volume's writes, ${this.metadata.chunks.size} chunks), more than the ${budget} one checkpoint holds; delete snapshots of this volume first`,
      {
        details: {
          snapshot: id,
          projectedBytes: projected,
          budgetBytes: budget,
          snapshots: this.metadata.snapshots.size + pending,
          frozenExtents: frozen,
          extents: current,
        },
      },
    );
  }

  /** Snapshot takes proposed and not yet committed (each will freeze about the current tree). */
  private pendingSnapshotTakes(): number {
    let count = 0;
    for (let opNum = this.commitOpNum + 1; opNum <= this.lastOpNum; opNum++) {
      const note = this.log.get(opNum);
      if (note?.kind !== "control" || note.data === undefined) continue;
      if (decodeControlRecord(note.data).kind === "snapshot.take") count++;
    }
    return count;
  }

  /**
   * On the primary: drops snapshot `id` through the op stream; answers once committed
   * (at once if no such snapshot exists or is being taken: a drop is idempotent).
   */
  dropSnapshot(requestId: RequestId, epoch: number, id: string): void {
    const refusal = this.refuseAsPrimary(epoch);
    if (refusal !== undefined) {
      this.replyError(requestId, refusal);
      return;
    }
    if (!this.hasOrIsTaking(id)) {
      this.effects.push({
        type: "reply",
        requestId,
        reply: { kind: "control", opNum: this.commitOpNum },
      });
      return;
    }
    this.proposeControl(requestId, { kind: "snapshot.drop", id });
  }

  /**
   * On the primary: replaces the current tree with a copy of snapshot `id` through the op
   * stream (every replica at the same op); answers the op once committed. NotFound if the
   * partition has no such snapshot (and none being taken), here or when the note commits:
   * a drop proposed before it commits first, and the rollback then changes nothing. A
   * retry proposes the rollback again: with no write between, the same tree results.
   */
  rollbackSnapshot(requestId: RequestId, epoch: number, id: string): void {
    const refusal = this.refuseAsPrimary(epoch);
    if (refusal !== undefined) {
      this.replyError(requestId, refusal);
      return;
    }
    if (!this.hasOrIsTaking(id)) {
      this.replyError(requestId, this.noSnapshot(id));
      return;
    }
    this.proposeControl(requestId, { kind: "snapshot.rollback", id });
  }

  /** Whether snapshot `id` is taken here, or its take is proposed and not yet committed. */
  private hasOrIsTaking(id: string): boolean {
    return (
      this.metadata.snapshots.has(id) ||
      this.proposedControl({ kind: "snapshot.take", id }) !== undefined
    );
  }

  private noSnapshot(id: string): BallastError {
    return new BallastError(
      ErrorCode.NotFound,
      `${this.identity.volume}/${this.identity.partition} has no snapshot ${id}`,
      { details: { snapshot: id } },
    );
  }

  /** The snapshots this replica has: id → the op it was taken at. */
  snapshotOps(): Map<string, number> {
    return new Map([...this.metadata.snapshots].map(([id, frozen]) => [id, frozen.opNum]));
  }

  private proposeControl(requestId: RequestId, record: ControlRecord): void {
    const deadlineTick = this.tickCount + this.limits.requestDeadlineTicks;
    const proposed = this.proposedControl(record);
    if (proposed !== undefined) {
      this.controlWaiters.push({ requestId, opNum: proposed, deadlineTick });
      return;
    }
    const data = encodeControlRecord(record);
    const note: Note = {
      opNum: 0,
      epoch: this.configuration!.epoch,
      session: this.identity.session,
      kind: "control",
      offset: 0,
      length: 0,
      data,
      checksum: noteChecksum(data),
    };
    this.propose([note]);
    this.controlWaiters.push({ requestId, opNum: note.opNum, deadlineTick });
  }

  /** The op of an uncommitted control note with the same record, if one is proposed. */
  private proposedControl(record: ControlRecord): number | undefined {
    const encoded = Buffer.from(encodeControlRecord(record));
    for (let opNum = this.commitOpNum + 1; opNum <= this.lastOpNum; opNum++) {
      const note = this.log.get(opNum);
      if (note?.kind === "control" && note.data !== undefined && encoded.equals(note.data)) {
        return opNum;
      }
    }
    return undefined;
  }

  /**
   * On the primary of `epoch`: mutation replies wait from now until `releaseAcks(id)` or
   * `forTicks` ticks have passed, whichever is first; assigning and committing go on.
   * Returns the last op assigned so far. A new hold replaces one in force. Throws a
   * refusal off the primary.
   */
  holdAcks(epoch: number, id: string, forTicks: number): { lastOpNum: number } {
    const refusal = this.refuseAsPrimary(epoch);
    if (refusal !== undefined) throw refusal;
    this.ackHold = { id, untilTick: this.tickCount + forTicks };
    return { lastOpNum: this.lastOpNum };
  }

  /**
   * Ends hold `id` and answers the mutations it kept waiting. Returns whether that hold
   * was in force until now (not ended by its deadline, a role change or another hold):
   * a snapshot taken under a hold that ended early is not crash-consistent.
   */
  releaseAcks(id: string): { held: boolean } {
    const held = this.ackHold?.id === id;
    if (held) {
      this.ackHold = undefined;
      this.answerCommitted();
    }
    return { held };
  }

  /** Whether mutation replies are held now. */
  get holdingAcks(): boolean {
    return this.ackHold !== undefined;
  }

  private hold(note: Note): void {
    this.log.set(note.opNum, note);
    this.logBytes += noteBytes(note);
  }

  // ---------------------------------------------------------------- replication

  /** Sends each secondary what it lacks, within the in-flight window. */
  private replicate(heartbeat: boolean): void {
    if (this.role.name !== "primary") return;
    for (const [to, progress] of this.role.secondaries) {
      let sent = false;
      // A learner that needs released notes would only answer each batch with another
      // mismatch: it gets heartbeats alone (which tell it apart once it is rebuilt).
      while (
        !progress.needsRebuild &&
        progress.nextOpNum <= this.lastOpNum &&
        progress.nextOpNum - progress.matchOpNum - 1 < this.limits.notesInflightMax
      ) {
        if (progress.nextOpNum <= this.releasedOpNum) {
          // The notes it needs are released: it must be rebuilt from a checkpoint.
          break;
        }
        const notes: Note[] = [];
        let bytes = 0;
        for (let opNum = progress.nextOpNum; opNum <= this.lastOpNum; opNum++) {
          const note = this.log.get(opNum)!;
          if (notes.length >= this.limits.notesPerMessageMax) break;
          if (notes.length > 0 && bytes + noteBytes(note) > this.limits.replicationBytesMax) break;
          notes.push(note);
          bytes += noteBytes(note);
        }
        this.sendNotes(to, progress.nextOpNum - 1, notes);
        progress.nextOpNum += notes.length;
        progress.lastSendTick = this.tickCount;
        sent = true;
      }
      if (!sent && heartbeat) {
        // Carries the commit point, and lets the secondary learn this session.
        this.sendNotes(to, Math.max(progress.matchOpNum, this.releasedOpNum), []);
        progress.lastSendTick = this.tickCount;
      }
    }
  }

  private sendNotes(to: string, previousOpNum: number, notes: Note[]): void {
    const configuration = this.configuration!;
    this.send(to, {
      type: "replica.notes.v1",
      volume: this.identity.volume,
      partition: this.identity.partition,
      epoch: configuration.epoch,
      primary: this.identity.nodeId,
      session: this.identity.session,
      commitOpNum: this.commitOpNum,
      previousOpNum,
      ...this.assignedIn(previousOpNum),
      notes,
    });
  }

  /** Which note op `opNum` is: its epoch and session (zeros for op 0 or unknown). */
  private identityOf(opNum: number): { epoch: number; session: number } {
    const { previousEpoch, previousSession } = this.assignedIn(opNum);
    return { epoch: previousEpoch, session: previousSession };
  }

  /** The epoch and session op `opNum` was assigned in (zeros for op 0 or unknown). */
  private assignedIn(opNum: number): { previousEpoch: number; previousSession: number } {
    if (opNum === this.releasedOpNum) {
      return { previousEpoch: this.releasedEpoch, previousSession: this.releasedSession };
    }
    const note = this.log.get(opNum);
    return { previousEpoch: note?.epoch ?? 0, previousSession: note?.session ?? 0 };
  }

  private send(to: string, message: ReplicationMessage): void {
    this.effects.push({ type: "send", to, message });
  }

  onReplicationMessage(message: ReplicationMessage): void {
    switch (message.type) {
      case "replica.notes.v1":
        this.onNotes(message);
        return;
      case "replica.ack.v1":
        this.onAck(message);
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unknown replication message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onNotes(message: Extract<ReplicationMessage, { type: "replica.notes.v1" }>): void {
    const configuration = this.configuration;
    if (configuration === undefined) return;
    if (message.epoch < configuration.epoch) {
      // A deposed primary: tell it the epoch it lost, so it stops.
      this.sendAck(message.primary, message.session, false);
      return;
    }
    if (message.epoch > configuration.epoch) return; // the shell learns the new epoch first
    const role = this.role;
    if (role.name !== "secondary" || message.primary !== configuration.primary) return;
    if (role.primarySession !== undefined && message.session < role.primarySession) {
      // A delayed message from the primary's previous life. Taking it could replace a
      // note this replica holds for the newer session, one the newer session may have
      // committed; sessions only grow, so it is simply ignored.
      return;
    }
    if (role.primarySession !== message.session) {
      // A restarted primary: what was matched or learned of the commit point under its
      // previous session says nothing about this one.
      role.primarySession = message.session;
      role.matchedOpNum = this.commitOpNum;
      role.primaryCommitOpNum = this.commitOpNum;
    }
    if (!this.holds(message.previousOpNum, message.previousEpoch, message.previousSession)) {
      this.sendAck(message.primary, message.session, true);
      return;
    }
    role.matchedOpNum = Math.max(role.matchedOpNum, message.previousOpNum);
    const appended: Note[] = [];
    let expected = message.previousOpNum + 1;
    for (const incoming of message.notes) {
      if (incoming.opNum !== expected) break; // not contiguous: take what is
      expected++;
      if (incoming.opNum <= this.commitOpNum) {
        role.matchedOpNum = Math.max(role.matchedOpNum, incoming.opNum);
        continue;
      }
      const held = this.log.get(incoming.opNum);
      // A copy of the note held (checked when it came) is matched, its data unused.
      if (held !== undefined && sameNote(held, incoming)) {
        role.matchedOpNum = Math.max(role.matchedOpNum, incoming.opNum);
        continue;
      }
      // Damaged in flight (its data or its checksum): taken as nothing, before it can
      // replace the note held at its op, since a copy whose checksum field was damaged
      // differs from it and would truncate it, and the notes after it, though
      // acknowledged. Every kind's: a flush or control record damaged would change the
      // chunk table or the trees on this replica alone (a flipped digit of a chunk number
      // or a snapshot id still decodes), and a trim's or zeroes' checksum is 0.
      if (incoming.checksum !== noteChecksum(incoming.data)) break;
      // A follower whose journal is not being released (its checkpoints cannot be
      // stored) takes no more past its bound, and is reported stalled by its primary
      // (followerLogBytesFactor). What it holds is replaced in place, never grown.
      if (
        held === undefined &&
        this.logBytes > 0 &&
        this.logBytes + noteBytes(incoming) > this.followerLogBytesMax
      ) {
        break;
      }
      if (held !== undefined) this.truncateAfter(incoming.opNum - 1, appended);
      const note = { ...incoming };
      this.hold(note);
      this.lastOpNum = note.opNum;
      appended.push(note);
      role.matchedOpNum = note.opNum;
    }
    if (appended.length > 0) {
      this.effects.push({
        type: "journal.append",
        generation: this.journalGeneration,
        notes: appended,
      });
    }
    role.primaryCommitOpNum = Math.max(role.primaryCommitOpNum, message.commitOpNum);
    this.advanceCommit();
    if (appended.length === 0) this.sendAck(message.primary, message.session, false);
  }

  /** Whether this replica's log holds op `opNum` as assigned in `epoch` and `session`. */
  private holds(opNum: number, epoch: number, session: number): boolean {
    if (opNum <= this.commitOpNum) return true; // committed ops are the same everywhere
    if (opNum > this.lastOpNum) return false;
    const note = this.log.get(opNum);
    return note !== undefined && note.epoch === epoch && note.session === session;
  }

  /** Drops the uncommitted tail after `opNum`; the journal drops it too, in order. */
  private truncateAfter(opNum: number, appended: Note[]): void {
    assert(opNum >= this.commitOpNum, `cannot truncate committed op ${opNum + 1}`);
    if (appended.length > 0) {
      // Notes appended earlier in this same message are before opNum + 1: keep them.
      this.effects.push({
        type: "journal.append",
        generation: this.journalGeneration,
        notes: appended.splice(0),
      });
    }
    for (let dropped = this.lastOpNum; dropped > opNum; dropped--) {
      const note = this.log.get(dropped);
      if (note !== undefined) {
        this.log.delete(dropped);
        this.logBytes -= noteBytes(note);
      }
    }
    this.lastOpNum = opNum;
    this.durableOpNum = Math.min(this.durableOpNum, opNum);
    this.journalGeneration++;
    this.effects.push({
      type: "journal.truncate",
      generation: this.journalGeneration,
      afterOpNum: opNum,
    });
  }

  private sendAck(to: string, session: number, mismatch: boolean): void {
    const configuration = this.configuration!;
    const matched = this.role.name === "secondary" ? this.role.matchedOpNum : this.commitOpNum;
    this.send(to, {
      type: "replica.ack.v1",
      volume: this.identity.volume,
      partition: this.identity.partition,
      epoch: configuration.epoch,
      from: this.identity.nodeId,
      session,
      durableOpNum: Math.min(this.durableOpNum, matched),
      commitOpNum: this.commitOpNum,
      mismatch,
    });
  }

  private onAck(message: Extract<ReplicationMessage, { type: "replica.ack.v1" }>): void {
    const configuration = this.configuration;
    if (configuration === undefined || this.role.name !== "primary") return;
    if (message.epoch > configuration.epoch) {
      // Someone holds a newer epoch: this primary is deposed. Stop serving.
      this.role = { name: "idle" };
      this.fence.clear();
      this.failPendingRequests(ErrorCode.WrongEpoch, `epoch ${message.epoch} exists`);
      return;
    }
    if (message.epoch < configuration.epoch) return;
    if (message.session === helloSession) {
      // A follower of this epoch that does not know this session (it restarted, or no
      // notes reached it): it is not current, so heartbeats resume until it acknowledges
      // one. What it matched stays: it acknowledged only what was durable.
      const progress = this.role.secondaries.get(message.from);
      if (progress !== undefined) progress.inSession = false;
      return;
    }
    if (message.session !== this.identity.session) return;
    const progress = this.role.secondaries.get(message.from);
    if (progress === undefined) return;
    progress.heard = true;
    progress.inSession = true;
    progress.knownCommitOpNum = Math.max(progress.knownCommitOpNum, message.commitOpNum);
    const matchBefore = progress.matchOpNum;
    // Committed ops are identical everywhere, so a secondary's commit point is matched.
    progress.matchOpNum = Math.max(
      progress.matchOpNum,
      Math.min(message.commitOpNum, this.lastOpNum),
    );
    if (message.mismatch) {
      // Resend from its commit point, but not from before what this primary still holds:
      // the prefix check at the release point tells whether it can still catch up.
      progress.nextOpNum = Math.max(message.commitOpNum, this.releasedOpNum) + 1;
      progress.lastProgressTick = this.tickCount;
      // Its log does not hold the note at the release point, and the next op it needs
      // is released: it can never catch up from here.
      // A voter too: a learner may have joined just as the notes it lacked were
      // released; the coordinator drops it, and it rebuilds as a learner.
      if (message.commitOpNum < this.releasedOpNum) progress.needsRebuild = true;
    } else {
      progress.matchOpNum = Math.max(
        progress.matchOpNum,
        Math.min(message.durableOpNum, this.lastOpNum),
      );
      progress.nextOpNum = Math.max(progress.nextOpNum, progress.matchOpNum + 1);
      progress.needsRebuild = false; // it matched at the release point or after
    }
    // Only an advance counts as progress: acks to heartbeats must not hold off a resend.
    if (progress.matchOpNum > matchBefore) {
      progress.lastProgressTick = this.tickCount;
      progress.lastAdvanceTick = this.tickCount;
    }
    this.advanceCommit();
    this.replicate(false);
  }

  /**
   * A journal operation that makes no note durable (a truncation, a release) completed.
   * The journal runs its operations one at a time in order, so the disk got through all
   * before it: an op still waiting has waited without progress only since now
   * (ownStalledTicks). Before, only appends counted, so on a disk slow but working
   * (seconds per operation) a release between two group commits doubled the wait the
   * primary saw and it reported itself stalled, to be failed over (found by the failover
   * simulator's slow disks).
   */
  onJournalProgress(): void {
    if (this.journalWaitSinceTick !== undefined) this.journalWaitSinceTick = this.tickCount;
  }

  onJournalDurable(throughOpNum: number, generation: number): void {
    if (generation !== this.journalGeneration) return; // written before a truncation
    if (throughOpNum <= this.durableOpNum) return;
    this.durableOpNum = Math.min(throughOpNum, this.lastOpNum);
    // The journal made progress: what still waits has waited since now.
    this.journalWaitSinceTick = this.durableOpNum < this.lastOpNum ? this.tickCount : undefined;
    if (this.role.name === "primary") {
      this.durableSince.push({ throughOpNum: this.durableOpNum, tick: this.tickCount });
    }
    this.advanceCommit();
    const role = this.role;
    if (role.name === "secondary" && role.primarySession !== undefined) {
      this.sendAck(this.configuration!.primary, role.primarySession, false);
    }
  }

  // ---------------------------------------------------------------- commit

  private advanceCommit(): void {
    let target: number;
    const role = this.role;
    if (role.name === "primary") {
      target = this.durableOpNum;
      for (const progress of role.secondaries.values()) {
        if (!progress.learner) target = Math.min(target, progress.matchOpNum);
      }
    } else if (role.name === "secondary") {
      target = Math.min(role.primaryCommitOpNum, role.matchedOpNum, this.durableOpNum);
    } else {
      return;
    }
    target = Math.min(target, this.lastOpNum);
    while (this.commitOpNum < target) {
      const note = this.log.get(this.commitOpNum + 1);
      // Once per committed op: the message is built only on failure.
      if (note === undefined) {
        assert(false, `op ${this.commitOpNum + 1} is to be committed but is not held`);
      }
      const flushedBefore = this.metadata.flushedThroughOpNum;
      const chunksBefore = this.metadata.chunks.size;
      const applied = this.metadata.apply(note);
      // Only once applied: an apply that throws (a record that does not decode) must not
      // leave the op counted committed, its tree update lost and the next commit after it.
      this.commitOpNum = note.opNum;
      // A take, drop or rollback: the snapshot set or the current tree changed whole.
      if (note.kind === "control") this.liveBytesCache = undefined;
      if (
        this.checkpointRefused !== undefined &&
        (note.kind === "control" || this.metadata.chunks.size < chunksBefore)
      ) {
        this.retryRefusedCheckpointSoon();
      }
      if (!applied) this.noteMissedRollback(note);
      this.countFlushedHeldBytes(flushedBefore);
      this.observer.committed?.(note);
      if (note.kind === "flush" && this.flushInFlight?.recordOpNum === note.opNum) {
        this.flushInFlight = undefined;
      }
    }
    if (role.name === "primary") {
      while (this.durableSince.length > 0 && this.durableSince[0]!.throughOpNum <= this.commitOpNum)
        this.durableSince.shift();
      this.answerCommitted();
      this.answerFlushWaiters();
    }
  }

  /**
   * A committed rollback note that found no snapshot (a drop committed before it): its
   * waiters are answered NotFound, as the proposal would have been had the drop come
   * first. Every replica applied the same no-op; only this answer differs from a done
   * rollback, so the requester never takes a partition left as it was for rolled back.
   */
  private noteMissedRollback(note: Note): void {
    const waiters = this.controlWaiters.filter((waiter) => waiter.opNum === note.opNum);
    if (waiters.length === 0 || note.kind !== "control" || note.data === undefined) return;
    const record = decodeControlRecord(note.data);
    if (record.kind !== "snapshot.rollback") return;
    for (const waiter of waiters) waiter.missing = record.id;
  }

  private answerCommitted(): void {
    while (this.controlWaiters.length > 0 && this.controlWaiters[0]!.opNum <= this.commitOpNum) {
      const waiter = this.controlWaiters.shift()!;
      if (waiter.missing !== undefined) {
        this.replyError(waiter.requestId, this.noSnapshot(waiter.missing));
        continue;
      }
      this.effects.push({
        type: "reply",
        requestId: waiter.requestId,
        reply: { kind: "control", opNum: waiter.opNum },
      });
    }
    if (this.ackHold !== undefined) return;
    while (
      this.pendingReplies.length > 0 &&
      this.pendingReplies[0]!.opNumLast <= this.commitOpNum
    ) {
      const pending = this.pendingReplies.shift()!;
      this.effects.push({
        type: "reply",
        requestId: pending.requestId,
        reply: { kind: "mutation", opNumFirst: pending.opNumFirst, opNumLast: pending.opNumLast },
      });
    }
  }

  /** Flush waiters target ops in arrival order, so the ones answered are a prefix. */
  private answerFlushWaiters(): void {
    while (this.flushWaiters.length > 0 && this.flushWaiters[0]!.targetOpNum <= this.commitOpNum) {
      const waiter = this.flushWaiters.shift()!;
      this.effects.push({
        type: "reply",
        requestId: waiter.requestId,
        reply: { kind: "flush", flushedOpNum: waiter.targetOpNum },
      });
    }
  }

  // ---------------------------------------------------------------- time

  /**
   * One tick of time, after `skipped` ticks the shell held back because quietTicks()
   * said they would change nothing but the count (see quietTicks). Ticks are counted
   * either way: every *Ticks limit keeps its meaning.
   */
  tick(skipped = 0): void {
    this.skipQuietTicks(skipped);
    this.tickCount++;
    const role = this.role;
    if (role.name === "primary") {
      if (this.ackHold !== undefined && this.tickCount >= this.ackHold.untilTick) {
        this.ackHold = undefined; // the deadline: a snapshot must not stall writes longer
        this.answerCommitted();
      }
      for (const progress of role.secondaries.values()) {
        if (
          progress.matchOpNum < this.lastOpNum &&
          this.tickCount - progress.lastProgressTick >= this.limits.resendTicks
        ) {
          progress.nextOpNum = progress.matchOpNum + 1; // go back and resend
          progress.lastProgressTick = this.tickCount;
        }
      }
      let heartbeat = false;
      for (const progress of role.secondaries.values()) {
        if (this.tickCount - progress.lastSendTick >= this.heartbeatTicksOf(progress)) {
          heartbeat = true;
        }
      }
      this.replicate(heartbeat);
      this.expireRequests();
      this.admitWaitingRequests();
      this.maybeStartCompaction(role);
      this.maybeStartFlush(false);
      this.checkpointForLearners(role);
      // Notes the recorded checkpoint covers that a follower held back when it was
      // recorded (a learner catching up, or any follower just after a new epoch, whose
      // match starts again from nothing) go once it has them. Waiting for the next
      // checkpoint instead waits for newly flushed bytes, which a full journal never gets.
      if (this.releasedOpNum < this.checkpointFlushedThroughOpNum) this.release();
    } else if (
      role.name === "secondary" &&
      role.primarySession === undefined &&
      this.tickCount - role.lastHelloTick >= this.limits.helloTicks
    ) {
      // No notes from this epoch's primary since the role began (a restart, or lost
      // messages): a current follower gets no heartbeats, so ask for one.
      role.lastHelloTick = this.tickCount;
      this.sendAck(this.configuration!.primary, helloSession, false);
    }
    this.maybeCheckpoint();
  }

  /**
   * How many of the next ticks are certain to change nothing but the tick count (no
   * effect, no reply, no state an input or a later tick could see): 0 when the next one
   * may do something. A shell may hold back that many ticks and pass them to the next
   * real one (`tick(skipped)`) without changing anything the core does, so an idle
   * replica costs no tick work. Asked afresh before each tick it holds back, so that an
   * input since (a request, a message, a completion, a configure, recordCopies,
   * requestCheckpoint) counts at once: after any input, 0 is likely until a real tick.
   *
   * Conservative by design: anything in flight (journal appends, a flush, a compaction,
   * a checkpoint), a snapshot's hold on acknowledgements, any request or waiter, any follower short of the last op, any learner
   * or committed data not yet flushed, answers 0. Only the timers of an idle replica
   * remain, and the bound is the nearest of them: a primary's heartbeat to each
   * follower not yet current (a current one gets none), its looks for drops and
   * compaction victims, a secondary's hello, the checkpoint interval, and the pause
   * after a failed checkpoint (a checkpoint due meanwhile waits for its end).
   */
  quietTicks(): number {
    if (this.effects.length > 0 || this.durableOpNum < this.lastOpNum) return 0;
    if (this.flushInFlight !== undefined || this.checkpointInFlight !== undefined) return 0;
    if (this.commitOpNum < this.metadataThroughOpNum) return 0;
    // Each bound below is the tick at which something falls due: the ticks before it
    // are quiet. (No closure here: this runs for every replica at every tick.)
    const next = this.tickCount + 1;
    let dueTick = Number.POSITIVE_INFINITY;
    // maybeCheckpoint, on every role: due when asked (paced), at once when enough is
    // releasable, else at the interval; never before a failed one's retry tick.
    let checkpointTick = Number.POSITIVE_INFINITY;
    if (this.checkpointRequested) {
      checkpointTick = this.lastCheckpointTick + this.limits.checkpointRetryTicks;
    }
    if (this.metadata.flushedThroughOpNum > this.checkpointFlushedThroughOpNum) {
      checkpointTick =
        this.flushedHeldBytes >= this.limits.checkpointReleasableBytes ||
        this.logBytes >= this.limits.logBytesMax / 2 ||
        this.commitOpNum - this.lastCheckpointOpNum >= this.limits.checkpointIntervalOps
          ? next
          : Math.min(checkpointTick, this.lastCheckpointTick + this.limits.checkpointIntervalTicks);
    }
    dueTick = Math.max(checkpointTick, this.checkpointRetryAtTick);
    if (dueTick <= next) return 0;
    const role = this.role;
    if (role.name === "secondary" && role.primarySession === undefined) {
      dueTick = Math.min(dueTick, role.lastHelloTick + this.limits.helloTicks);
    }
    if (role.name !== "primary") return Math.max(0, dueTick - next);
    if (
      this.pendingReplies.length > 0 ||
      this.waitingRequests.length > 0 ||
      this.flushWaiters.length > 0 ||
      this.pendingCopies.size > 0 ||
      this.compaction !== undefined ||
      this.ackHold !== undefined ||
      this.commitOpNum < this.lastOpNum ||
      this.commitOpNum < role.readableFromOpNum
    ) {
      return 0;
    }
    // Committed data not yet flushed: flushes count ticks (flushIntervalTicks).
    if (this.metadata.unflushed.size > 0) {
      const unflushed = this.metadata.unflushed.keys().next();
      if (unflushed.done !== true && unflushed.value <= this.commitOpNum) return 0;
    }
    // checkpointForLearners: a checkpoint a restart or a learner would ask for.
    if (this.recordedCheckpoint === undefined && this.releasedOpNum > 0) return 0;
    // A release the recorded checkpoint allows, held back by a follower (tick).
    if (this.releasedOpNum < this.checkpointFlushedThroughOpNum) return 0;
    for (const progress of role.secondaries.values()) {
      if (progress.learner || progress.needsRebuild) return 0;
      if (progress.matchOpNum < this.lastOpNum || progress.nextOpNum <= this.lastOpNum) return 0;
      const heartbeatTicks = this.heartbeatTicksOf(progress);
      if (heartbeatTicks !== Number.POSITIVE_INFINITY) {
        dueTick = Math.min(dueTick, progress.lastSendTick + heartbeatTicks);
      }
    }
    // The looks for chunks to drop and compaction victims, unless the last of each found
    // nothing at this commit point (then they cannot find anything until it moves).
    if (this.commitOpNum !== this.idleDropOpNum) {
      dueTick = Math.min(dueTick, this.lastDropTick + this.limits.dropIntervalTicks);
    }
    if (this.commitOpNum !== this.idleCompactionOpNum) {
      dueTick = Math.min(dueTick, this.lastCompactionTick + this.limits.compactionIntervalTicks);
    }
    return Math.max(0, dueTick - next);
  }

  /**
   * How often a follower gets a heartbeat: every heartbeatTicks while it may lack an op,
   * the commit point or this session; never once its acknowledgements say it has all
   * three (a current voter: see "Idle followers" in the module header).
   */
  private heartbeatTicksOf(progress: SecondaryProgress): number {
    const current =
      !progress.learner &&
      progress.inSession &&
      progress.matchOpNum >= this.lastOpNum &&
      progress.knownCommitOpNum >= this.commitOpNum;
    return current ? Number.POSITIVE_INFINITY : this.limits.heartbeatTicks;
  }

  /**
   * Counts ticks the shell held back, each quiet when it was held (see quietTicks),
   * without running one: before an input, so that the input finds the count it would
   * have found if ticked every time.
   */
  skipQuietTicks(count: number): void {
    this.tickCount += count;
  }

  private expireRequests(): void {
    const expired = (deadlineTick: number) => deadlineTick <= this.tickCount;
    for (let index = this.pendingReplies.length - 1; index >= 0; index--) {
      const pending = this.pendingReplies[index]!;
      if (expired(pending.deadlineTick)) {
        this.pendingReplies.splice(index, 1);
        this.replyError(pending.requestId, timeoutError(pending.opNumLast, this.commitOpNum));
      }
    }
    for (let index = this.waitingRequests.length - 1; index >= 0; index--) {
      const waiting = this.waitingRequests[index]!;
      if (expired(waiting.deadlineTick)) {
        this.waitingRequests.splice(index, 1);
        this.replyError(
          waiting.request.requestId,
          new BallastError(
            ErrorCode.Timeout,
            "the request waited for room in the replication window past its deadline",
          ),
        );
      }
    }
    for (let index = this.controlWaiters.length - 1; index >= 0; index--) {
      const waiter = this.controlWaiters[index]!;
      if (expired(waiter.deadlineTick)) {
        this.controlWaiters.splice(index, 1);
        this.replyError(waiter.requestId, timeoutError(waiter.opNum, this.commitOpNum));
      }
    }
    for (let index = this.flushWaiters.length - 1; index >= 0; index--) {
      const waiter = this.flushWaiters[index]!;
      if (expired(waiter.deadlineTick)) {
        this.flushWaiters.splice(index, 1);
        this.replyError(
          waiter.requestId,
          new BallastError(
            ErrorCode.Timeout,
            `flush through op ${waiter.targetOpNum} did not finish by its deadline`,
          ),
        );
      }
    }
  }

  private admitWaitingRequests(): void {
    while (this.waitingRequests.length > 0 && this.hasRoomFor(this.waitingRequests[0]!.request)) {
      const waiting = this.waitingRequests.shift()!;
      this.assign(waiting.request as Exclude<ClientRequest, { kind: "flush" }>);
    }
  }

  // ---------------------------------------------------------------- flush

  private maybeStartFlush(forced: boolean): void {
    const role = this.role;
    if (role.name !== "primary" || this.flushInFlight !== undefined) return;
    if (this.tickCount < this.flushRetryAtTick) return;
    // The inherited tail may hold a flush record of an earlier primary: until it is
    // committed, a new flush could reuse its chunk number or flush from a stale cut.
    if (this.commitOpNum < role.readableFromOpNum) return;
    const first = this.metadata.unflushed.entries().next();
    const hasData = first.done !== true && first.value[0] <= this.commitOpNum;
    const gathered = this.compactionGathered();
    // Chunks to drop are looked for (a scan of the table) at most every dropIntervalTicks.
    let dropsDue = false;
    if (
      this.tickCount - this.lastDropTick >= this.limits.dropIntervalTicks &&
      this.commitOpNum !== this.idleDropOpNum
    ) {
      this.lastDropTick = this.tickCount;
      dropsDue = this.metadata.unreferencedChunks().length > 0;
      this.idleDropOpNum = dropsDue ? undefined : this.commitOpNum;
    }
    const hasMaintenance = this.pendingCopies.size > 0 || gathered !== undefined || dropsDue;
    if (!hasData && !hasMaintenance) return;
    const due =
      forced ||
      hasMaintenance ||
      this.flushWaiters.length > 0 ||
      this.metadata.unflushedBytes >= this.limits.flushBytesThreshold ||
      this.logBytes >= this.limits.logBytesMax / 2 ||
      this.tickCount % this.limits.flushIntervalTicks === 0;
    if (!due) return;

    const pieces: number[] = [];
    const parts: Uint8Array[] = [];
    /** Each part's CRC32C where already known: a whole write's data (its note's). */
    const partChecksums: (number | undefined)[] = [];
    let bytes = 0;
    let throughOpNum = this.metadata.flushedThroughOpNum;
    let firstOpNum = throughOpNum + 1;
    // Compaction first: the live extents of its victims, from the bytes it read. Their
    // live bytes sum to at most chunkBytesMax (see maybeStartCompaction).
    const victims = gathered === undefined ? [] : [...gathered.keys()];
    if (gathered !== undefined) {
      this.compaction = undefined;
      for (const extent of this.metadata.extentsIn(new Set(victims))) {
        const location = extent.location as { kind: "chunk"; chunkId: number; offset: number };
        const victim = gathered.get(location.chunkId)!;
        pieces.push(extent.offset, extent.length, extent.opNum, bytes);
        parts.push(victim.subarray(location.offset, location.offset + extent.length));
        partChecksums.push(undefined);
        bytes += extent.length;
      }
    }
    for (const [opNum, range] of this.metadata.unflushed) {
      if (opNum > this.commitOpNum) break;
      const note = this.log.get(opNum)!;
      // What any tree still refers to: a snapshot may keep bytes the current tree lost.
      const live = this.metadata.journalRangesOf(opNum, range);
      const liveBytes = live.reduce((sum, piece) => sum + piece.length, 0);
      if (bytes > 0 && bytes + liveBytes > this.limits.chunkBytesMax) break;
      if (throughOpNum === this.metadata.flushedThroughOpNum) firstOpNum = opNum;
      for (const piece of live) {
        pieces.push(piece.offset, piece.length, opNum, bytes);
        parts.push(note.data!.subarray(piece.position, piece.position + piece.length));
        const whole =
          note.kind === "write" && piece.position === 0 && piece.length === note.data!.byteLength;
        partChecksums.push(whole ? note.checksum : undefined);
        bytes += piece.length;
      }
      throughOpNum = opNum;
    }
    const configuration = this.configuration!;
    if (bytes === 0) {
      // Everything it covers was overwritten: record the progress, write no chunk.
      const record: FlushRecord = this.withMaintenance(
        { throughOpNum, chunk: null, pieces: [] },
        victims,
      );
      this.flushInFlight = { chunkNumber: -1, sledChunkId: "", record };
      this.proposeFlushRecord();
      return;
    }
    const chunkNumber = Math.max(this.metadata.nextChunkNumber, this.proposedChunkNumber + 1);
    this.proposedChunkNumber = chunkNumber;
    const sledChunkId = sledChunkIdOf(this.identity, configuration.epoch, chunkNumber);
    const data = concat(parts, bytes);
    // Computed here, from the bytes the journal holds, before any sled sees them: the
    // record then lets every replica check a copy end to end, not just a sled's own view.
    // A whole write's data is not read again: its note's CRC32C (computed from those
    // bytes at assign, or checked against them on arrival) is combined in.
    let checksum = 0;
    for (let index = 0; index < parts.length; index++) {
      const part = parts[index]!;
      const known = partChecksums[index];
      checksum =
        known === undefined
          ? crc32c(part, checksum)
          : crc32cCombine(checksum, known, part.byteLength);
    }
    this.flushInFlight = {
      chunkNumber,
      sledChunkId,
      record: this.withMaintenance(
        {
          throughOpNum,
          chunk: { chunkNumber, sledChunkId, copies: [], bytes, checksum },
          pieces,
        },
        victims,
      ),
    };
    this.effects.push({
      type: "chunk.write",
      chunkNumber,
      sledChunkId,
      data,
      checksum,
      firstOpNum,
      throughOpNum,
    });
  }

  onChunkWritten(chunkNumber: number, copies: readonly string[]): void {
    const flush = this.flushInFlight;
    if (flush === undefined || flush.chunkNumber !== chunkNumber || flush.recordOpNum !== undefined)
      return;
    if (this.role.name !== "primary") return;
    this.sledsFull = false;
    this.flushFailingSinceTick = undefined;
    flush.record.chunk!.copies = [...copies];
    this.proposeFlushRecord();
  }

  /**
   * A chunk write failed; the flush is retried after flushRetryTicks. `reason` "no-space"
   * (every sled that failed answered NoSpace) makes writes that would wait for journal
   * room answer NoSpace instead, the waiting ones included; trims still go ahead.
   */
  onChunkFailed(chunkNumber: number, reason?: "no-space"): void {
    if (
      this.flushInFlight?.chunkNumber !== chunkNumber ||
      this.flushInFlight.recordOpNum !== undefined
    )
      return;
    // The maintenance it carried goes to the next record.
    for (const [chunkNumber, copies] of this.flushInFlight.record.copies ?? []) {
      if (!this.pendingCopies.has(chunkNumber)) this.pendingCopies.set(chunkNumber, copies);
    }
    this.flushInFlight = undefined;
    this.flushRetryAtTick = this.tickCount + this.limits.flushRetryTicks;
    this.sledsFull = reason === "no-space";
    // Full sleds are answered NoSpace below: nothing waits on them, and another primary
    // would find them as full. Sleds out of reach are this primary's alone, maybe.
    this.flushFailingSinceTick = this.sledsFull
      ? undefined
      : (this.flushFailingSinceTick ?? this.tickCount);
    if (!this.sledsFull) return;
    for (let index = this.waitingRequests.length - 1; index >= 0; index--) {
      const { request } = this.waitingRequests[index]!;
      const refusal = this.sledsFullRefusal(request);
      if (refusal === undefined) continue;
      this.waitingRequests.splice(index, 1);
      this.replyError(request.requestId, refusal);
    }
    this.admitWaitingRequests();
  }

  /**
   * On the primary: records that `chunkNumber`'s copies are now on `copies` (the shell
   * made a new copy because a sled holding one is out of service). The next flush
   * record carries it, so every replica's table changes at the same op; one is
   * proposed for it even with nothing to flush. Ignored off the primary or for a chunk
   * not in the table.
   */
  recordCopies(chunkNumber: number, copies: readonly string[]): void {
    if (this.role.name !== "primary") return;
    if (!this.metadata.chunks.has(chunkNumber)) return;
    if (copies.length === 0 || copies.length > 8) {
      throw new Error(`a chunk's copies must number 1 to 8, got ${copies.length}`);
    }
    this.pendingCopies.set(chunkNumber, [...copies]);
  }

  /**
   * Moves the pending maintenance into `record`: copy lists, and drops of every chunk no
   * tree refers to now and of the compaction `victims` the record relocates (none is
   * referenced once its pieces apply; writes meanwhile only take references away).
   */
  private withMaintenance(record: FlushRecord, victims: readonly number[]): FlushRecord {
    const copies: [number, string[]][] = [];
    for (const [chunkNumber, sleds] of this.pendingCopies) {
      if (this.metadata.chunks.has(chunkNumber)) copies.push([chunkNumber, sleds]);
    }
    this.pendingCopies.clear();
    const drop = new Set(this.metadata.unreferencedChunks());
    for (const chunkNumber of victims) {
      if (this.metadata.chunks.has(chunkNumber)) drop.add(chunkNumber);
    }
    return {
      ...record,
      ...(copies.length === 0 ? {} : { copies }),
      ...(drop.size === 0 ? {} : { drop: [...drop].sort((a, b) => a - b) }),
    };
  }

  // ---------------------------------------------------------------- compaction

  /**
   * Every compactionIntervalTicks, picks chunks mostly dead (referenced bytes at most
   * compactionLiveRatioMax of their size, but some), most dead bytes first, whose live
   * bytes fit one chunk, and reads them whole. Not while a flush is in flight that may
   * relocate some already.
   *
   * Small chunks (referenced bytes at most compactionSmallChunkBytes) are merged too,
   * however live, once compactionSmallChunksMin of one size class are not mostly dead
   * (smallChunksToMerge), after the mostly dead ones. Without it, a trickle of writes
   * (a flush at least every flushIntervalTicks makes a chunk) grows the chunk table
   * without bound: past about a million chunks its checkpoint header is more than a
   * reader takes (checkpointHeaderBytesMax), and checkpoints are refused. With it, every
   * chunk left out has more than compactionSmallChunkBytes referenced, so the table
   * holds at most the partition's distinct referenced bytes / compactionSmallChunkBytes
   * chunks, besides a few small ones per size class and the mostly dead ones. A lone
   * chunk is never rewritten for its size alone: that would free and merge nothing.
   */
  private maybeStartCompaction(role: Extract<Role, { name: "primary" }>): void {
    if (this.compaction !== undefined || this.flushInFlight !== undefined) return;
    if (this.commitOpNum < role.readableFromOpNum) return;
    if (this.tickCount - this.lastCompactionTick < this.limits.compactionIntervalTicks) return;
    // Before the timer is reset: a look that cannot find anything changes nothing, so
    // the ticks of an idle primary stay quiet (quietTicks leaves this timer out).
    if (this.commitOpNum === this.idleCompactionOpNum) return;
    this.lastCompactionTick = this.tickCount;
    const mostlyDead: { chunkNumber: number; live: number; dead: number }[] = [];
    const small: { chunkNumber: number; live: number }[] = [];
    // Each live byte once, however many trees (snapshots) share it.
    const distinct = this.metadata.distinctLiveBytes();
    for (const [chunkNumber, entry] of this.metadata.chunks) {
      const live = distinct.get(chunkNumber) ?? 0;
      if (live === 0) continue; // unreferenced: the next record drops it, nothing to move
      if (live <= entry.bytes * this.limits.compactionLiveRatioMax) {
        mostlyDead.push({ chunkNumber, live, dead: entry.bytes - live });
      } else if (live <= this.limits.compactionSmallChunkBytes) {
        small.push({ chunkNumber, live });
      }
    }
    mostlyDead.sort((a, b) => b.dead - a.dead || a.chunkNumber - b.chunkNumber);
    const candidates: { chunkNumber: number; live: number }[] = [...mostlyDead];
    candidates.push(...this.smallChunksToMerge(small));
    const victims = new Map<number, Uint8Array | undefined>();
    let liveBytes = 0;
    for (const candidate of candidates) {
      if (victims.size >= this.limits.compactionVictimsMax) break;
      if (liveBytes + candidate.live > this.limits.chunkBytesMax) continue;
      victims.set(candidate.chunkNumber, undefined);
      liveBytes += candidate.live;
    }
    // One small chunk alone, fully live: rewriting it would free and merge nothing.
    if (victims.size === 1 && mostlyDead.length === 0) victims.clear();
    if (victims.size === 0) {
      this.idleCompactionOpNum = this.commitOpNum;
      return;
    }
    this.idleCompactionOpNum = undefined;
    this.compaction = victims;
    for (const chunkNumber of victims.keys()) {
      const entry = this.metadata.chunks.get(chunkNumber)!;
      this.effects.push({
        type: "chunk.read",
        chunkNumber,
        sledChunkId: entry.sledChunkId,
        copies: [...entry.copies],
        bytes: entry.bytes,
        ...(entry.checksum === undefined ? {} : { checksum: entry.checksum }),
      });
    }
  }

  /**
   * The small chunks one compaction merges: those of one size class, the smallest class
   * with at least compactionSmallChunksMin of them, smallest first (none if no class has
   * that many). Classes are powers of compactionSmallChunksMin over a sector of live
   * bytes, so a merge makes a chunk about that many times the size of its victims: a
   * byte is rewritten about once per class (log base compactionSmallChunksMin of
   * compactionSmallChunkBytes over the size it was flushed in: 3 times from 4 KiB at
   * the defaults) rather than every time small chunks are merged (a trickle of 4 KiB
   * writes measured 9.4 bytes written to sleds per byte written when any 8 smallest were
   * merged). At rest fewer than compactionSmallChunksMin chunks are left in each class.
   */
  private smallChunksToMerge(
    small: { chunkNumber: number; live: number }[],
  ): { chunkNumber: number; live: number }[] {
    const fanIn = Math.max(2, this.limits.compactionSmallChunksMin);
    const byClass = new Map<number, { chunkNumber: number; live: number }[]>();
    for (const chunk of small) {
      let sizeClass = 0;
      for (let bound = limits.sectorBytes * fanIn; chunk.live >= bound; bound *= fanIn) {
        sizeClass++;
      }
      const members = byClass.get(sizeClass);
      if (members === undefined) byClass.set(sizeClass, [chunk]);
      else members.push(chunk);
    }
    for (const sizeClass of [...byClass.keys()].sort((a, b) => a - b)) {
      const members = byClass.get(sizeClass)!;
      if (members.length < this.limits.compactionSmallChunksMin) continue;
      return members.sort((a, b) => a.live - b.live || a.chunkNumber - b.chunkNumber);
    }
    return [];
  }

  /** The compaction's victims and their bytes, once every one is read. */
  private compactionGathered(): Map<number, Uint8Array> | undefined {
    if (this.compaction === undefined) return undefined;
    for (const data of this.compaction.values()) if (data === undefined) return undefined;
    return this.compaction as Map<number, Uint8Array>;
  }

  /** A victim's bytes, read whole (the shell checked them against its CRC32C). */
  onChunkRead(chunkNumber: number, data: Uint8Array): void {
    if (this.compaction?.has(chunkNumber) !== true) return;
    const entry = this.metadata.chunks.get(chunkNumber);
    // Checked again here: relocated bytes are served as the truth from then on.
    if (
      entry === undefined ||
      data.byteLength !== entry.bytes ||
      (entry.checksum !== undefined && crc32c(data) !== entry.checksum)
    ) {
      this.onChunkReadFailed(chunkNumber);
      return;
    }
    this.compaction.set(chunkNumber, data);
  }

  /** A victim could not be read: this compaction is given up; a later one picks again. */
  onChunkReadFailed(chunkNumber: number): void {
    if (this.compaction?.has(chunkNumber) !== true) return;
    this.compaction = undefined;
    this.lastCompactionTick = this.tickCount;
  }

  /**
   * Space of the partition on sleds: chunk bytes in the table, and those referenced. With
   * snapshots, live bytes and the bytes unique to each snapshot need a scan of every tree
   * (each shared byte counted once), so they are kept and counted again only when they
   * may have changed:
   * - at once after a snapshot take, drop or rollback commits (the cache is dropped):
   *   operators rotate snapshots and read the figures right after, to choose what to
   *   delete; these are rare, so a scan each costs little;
   * - after writes and flush records (anything else that commits), at most every
   *   spaceUsageRefreshTicks: under writes the figures change at every commit, and a
   *   scan at every report (twice a second) or status would be paid by the writes;
   * - never while nothing commits (the metadata changes only by committed notes), so an
   *   idle primary does not scan however often it is asked.
   * The refresh counts ticks, and an idle core's ticks are held back by its shell: a
   * reader must catch them up first (PartitionHost.report and status do), or the figures
   * of the last writes before an idle spell would wait for the next input.
   */
  spaceUsage(): {
    chunkBytes: number;
    liveBytes: number;
    snapshotBytes?: { snapshot: string; uniqueBytes: number }[];
  } {
    const chunkBytes = this.metadata.chunkBytes;
    if (this.metadata.snapshots.size === 0) {
      this.liveBytesCache = undefined;
      return { chunkBytes, liveBytes: this.metadata.liveBytes };
    }
    const cached = this.liveBytesCache;
    if (
      cached === undefined ||
      (cached.commitOpNum !== this.commitOpNum &&
        this.tickCount - cached.tick >= spaceUsageRefreshTicks)
    ) {
      const unique = this.metadata.snapshotUniqueBytes();
      this.liveBytesCache = {
        tick: this.tickCount,
        commitOpNum: this.commitOpNum,
        liveBytes: this.metadata.liveBytes,
        snapshotBytes: [...unique]
          .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
          .map(([snapshot, uniqueBytes]) => ({ snapshot, uniqueBytes })),
      };
    }
    const { liveBytes, snapshotBytes } = this.liveBytesCache!;
    return { chunkBytes, liveBytes, snapshotBytes };
  }

  private proposeFlushRecord(): void {
    const flush = this.flushInFlight!;
    const data = encodeFlushRecord(flush.record);
    const note: Note = {
      opNum: 0,
      epoch: this.configuration!.epoch,
      session: this.identity.session,
      kind: "flush",
      offset: 0,
      length: 0,
      data,
      checksum: noteChecksum(data),
    };
    this.propose([note]);
    flush.recordOpNum = note.opNum;
  }

  // ---------------------------------------------------------------- checkpoints and release

  /**
   * Asks for a checkpoint even if nothing new is flushed (at most one per
   * checkpointRetryTicks). The core asks itself when learners need one (below). The
   * request stands until a checkpoint taken for it is recorded: one that fails is taken
   * again (onCheckpointFailed), so a caller asks once.
   */
  requestCheckpoint(): void {
    this.checkpointRequested = true;
  }

  /**
   * A learner starts from a recorded checkpoint and needs every note after its flushed
   * point. With notes released but no checkpoint recorded in this life (a restart: the
   * catalogue's pointer may be older than what it resumed from), or with a learner that
   * needs released notes and commits since the last record, the primary records a
   * fresh checkpoint for the next learner to start from.
   */
  private checkpointForLearners(role: Extract<Role, { name: "primary" }>): void {
    if (this.checkpointRequested) return;
    for (const progress of role.secondaries.values()) {
      // A learner that never answers may be unable to fetch the checkpoint it was given
      // (every copy lost or damaged): the next learner needs another one, even with no
      // commit since.
      if (
        progress.learner &&
        !progress.heard &&
        this.tickCount - progress.silentSinceTick >= this.limits.learnerSilentTicks
      ) {
        progress.silentSinceTick = this.tickCount;
        this.checkpointRequested = true;
        return;
      }
    }
    const recorded = this.recordedCheckpoint?.opNum;
    if (recorded === undefined) {
      if (this.releasedOpNum > 0) this.checkpointRequested = true;
      return;
    }
    if (this.commitOpNum <= recorded) return;
    for (const progress of role.secondaries.values()) {
      if (progress.needsRebuild) {
        this.checkpointRequested = true;
        return;
      }
    }
  }

  private maybeCheckpoint(): void {
    if (this.checkpointInFlight !== undefined) return;
    // A rebuilt replica's tree already reflects ops up to the snapshot it came from,
    // past its commit point: a snapshot now would claim ops it has not committed.
    if (this.commitOpNum < this.metadataThroughOpNum) return;
    if (this.tickCount < this.checkpointRetryAtTick) return; // a failed one's pause
    const flushedThrough = this.metadata.flushedThroughOpNum;
    const requested =
      this.checkpointRequested &&
      this.tickCount - this.lastCheckpointTick >= this.limits.checkpointRetryTicks;
    if (flushedThrough <= this.checkpointFlushedThroughOpNum && !requested) return;
    const due =
      requested ||
      this.flushedHeldBytes >= this.limits.checkpointReleasableBytes ||
      this.logBytes >= this.limits.logBytesMax / 2 ||
      this.tickCount - this.lastCheckpointTick >= this.limits.checkpointIntervalTicks ||
      this.commitOpNum - this.lastCheckpointOpNum >= this.limits.checkpointIntervalOps;
    if (!due) return;
    const opNum = this.commitOpNum;
    let snapshot: Uint8Array;
    try {
      snapshot = this.metadata.snapshot(opNum, this.identityOf(flushedThrough), {
        headerBytesMax: this.limits.checkpointHeaderBytesMax,
        bytesMax: this.limits.checkpointBytesMax,
      });
    } catch (error) {
      if (!(error instanceof CheckpointTooLargeError)) throw error;
      this.refuseCheckpoint(opNum, error);
      return;
    }
    this.checkpointRefused = undefined;
    // A checkpoint may be stored again at the same op (a learner could not fetch the
    // last one): the upload count keeps every key of this session distinct.
    this.checkpointUploads++;
    const { nodeId, volume, volumeId, partition, session } = this.identity;
    const blobKey = `checkpoints/${volumeId ?? volume}/${partition}/${nodeId}/${opNum}-${session}-${this.checkpointUploads}`;
    this.checkpointInFlight = {
      opNum,
      flushedThroughOpNum: flushedThrough,
      step: "write",
      snapshot,
      blobKey,
      asked: this.checkpointRequested,
    };
    this.checkpointRequested = false;
    this.lastCheckpointTick = this.tickCount;
    this.lastCheckpointOpNum = opNum;
    this.effects.push({ type: "checkpoint.write", opNum, snapshot });
  }

  /**
   * A checkpoint that could not be stored or read back is not written at all: nothing is
   * released (the journal keeps every note it would have covered), a request stands, and
   * the next try waits checkpointRefusedRetryTicks, since what made it too large (many
   * snapshots, many extents) lasts far longer than a sled outage and each try serializes
   * every tree again. The shell logs the refusal; status shows it until a checkpoint is
   * taken. Writes that would wait for journal room are answered NoSpace meanwhile
   * (journalStuckRefusal).
   */
  private refuseCheckpoint(opNum: number, error: CheckpointTooLargeError): void {
    this.checkpointRefused = { opNum, error };
    this.lastCheckpointTick = this.tickCount;
    this.checkpointRetryAtTick = this.tickCount + this.limits.checkpointRefusedRetryTicks;
    this.effects.push({ type: "checkpoint.refused", opNum, error });
    for (let index = this.waitingRequests.length - 1; index >= 0; index--) {
      const { request } = this.waitingRequests[index]!;
      const refusal = this.journalStuckRefusal(request);
      if (refusal === undefined) continue;
      this.waitingRequests.splice(index, 1);
      this.replyError(request.requestId, refusal);
    }
  }

  /**
   * What made the refused checkpoint too large may be gone: a snapshot dropped or rolled
   * back (fewer or smaller trees), chunks dropped (a smaller table). The next try comes
   * at the usual pace after the last (checkpointRetryTicks), not checkpointRefusedRetryTicks
   * after it: a user who deleted snapshots to make room is not answered NoSpace for a
   * minute more. A try that is refused again backs off as before, and the next drop
   * brings it forward again; tries stay at least checkpointRetryTicks apart.
   */
  private retryRefusedCheckpointSoon(): void {
    this.checkpointRetryAtTick = Math.min(
      this.checkpointRetryAtTick,
      this.lastCheckpointTick + this.limits.checkpointRetryTicks,
    );
  }

  /** Adds the held notes a flush record just covered to what a checkpoint would release. */
  private countFlushedHeldBytes(flushedBefore: number): void {
    const flushedNow = this.metadata.flushedThroughOpNum;
    for (
      let opNum = Math.max(flushedBefore, this.releasedOpNum) + 1;
      opNum <= flushedNow;
      opNum++
    ) {
      this.flushedHeldBytes += noteBytes(this.log.get(opNum) ?? emptyNote);
    }
  }

  /** The checkpoint file is durable: store it on sleds next. */
  onCheckpointDurable(opNum: number): void {
    const checkpoint = this.checkpointInFlight;
    if (checkpoint?.opNum !== opNum || checkpoint.step !== "write") return;
    checkpoint.step = "store";
    this.effects.push({
      type: "checkpoint.store",
      opNum,
      blobKey: checkpoint.blobKey,
      snapshot: checkpoint.snapshot,
    });
  }

  /** The checkpoint is on sleds at `pointer`: record it with the coordinator next. */
  onCheckpointStored(opNum: number, pointer: CheckpointPointer): void {
    const checkpoint = this.checkpointInFlight;
    if (checkpoint?.opNum !== opNum || checkpoint.step !== "store") return;
    assert(
      pointer.blobKey === checkpoint.blobKey && pointer.opNum === opNum,
      `checkpoint ${opNum} stored as ${pointer.blobKey} at op ${pointer.opNum}, not as ${checkpoint.blobKey}`,
    );
    checkpoint.step = "record";
    checkpoint.pointer = pointer;
    this.checkpointStoreFailures = 0;
    // chunkCopies sleds took the blob: they are in reach (flushFailingSinceTick).
    this.flushFailingSinceTick = undefined;
    this.effects.push({ type: "checkpoint.record", opNum, pointer });
  }

  /**
   * The coordinator holds the pointer: a learner rebuilt from it finds every note after
   * it here, so the journal may release what it covers. The blob it replaced (`replaced`)
   * is deleted, unless it is this one (the same record again).
   */
  onCheckpointRecorded(opNum: number, replaced?: CheckpointPointer): void {
    const checkpoint = this.checkpointInFlight;
    if (checkpoint?.opNum !== opNum || checkpoint.step !== "record") return;
    this.checkpointInFlight = undefined;
    this.checkpointFlushedThroughOpNum = checkpoint.flushedThroughOpNum;
    this.recordedCheckpoint = checkpoint.pointer;
    if (replaced !== undefined && replaced.blobKey !== checkpoint.blobKey) {
      this.effects.push({ type: "blob.delete", blobKey: replaced.blobKey, sleds: replaced.sleds });
    }
    this.release();
  }

  /**
   * A step of the checkpoint failed (write, store or record): nothing is released, and
   * another is taken later. A blob stored but not recorded stays on its sleds.
   *
   * "Later" needs a reason to take one. Flushed bytes the recorded checkpoint lacks are
   * one (the interval, or the releasable bytes, bring it round again); a request is the
   * other, and it was cleared when this checkpoint started. So a checkpoint that was asked
   * for is asked for again: on an idle primary nothing else would ever retry it, and the
   * reason it was asked (a recorded blob with one live copy, a learner that cannot start)
   * would stay, unseen.
   *
   * Whatever its reason, the next one waits checkpointRetryTicks from this one's start
   * (checkpointRetryAtTick), the pace requestCheckpoint already keeps: what failed (no
   * sled up, no coordinator leader) rarely mends within a tick, and flushed bytes keep a
   * checkpoint due every tick until one is recorded. One that took longer than that to
   * fail is retried at once, as before: its own wait paced it. A store that failed (too
   * few sleds took the blob) after others that failed waits longer: the pause doubles
   * with each, up to checkpointStoreRetryTicksMax, until one is stored or a sled comes
   * back (retryCheckpointSoon).
   */
  onCheckpointFailed(opNum: number): void {
    const checkpoint = this.checkpointInFlight;
    if (checkpoint?.opNum !== opNum) return;
    this.checkpointInFlight = undefined;
    let pauseTicks = this.limits.checkpointRetryTicks;
    if (checkpoint.step === "store") {
      // Stores that keep failing (too few sleds took the blob) back off, bounded: what
      // cures them is a sled coming back, which brings the next one forward.
      this.checkpointStoreFailures++;
      pauseTicks = Math.min(
        pauseTicks * 2 ** Math.min(this.checkpointStoreFailures - 1, 30),
        Math.max(pauseTicks, this.limits.checkpointStoreRetryTicksMax),
      );
    }
    this.checkpointRetryAtTick = this.lastCheckpointTick + pauseTicks;
    if (checkpoint.asked) this.checkpointRequested = true;
    // A primary whose journal is half full or more of flushed notes waits on a store to
    // release them, not on a chunk write: writes wait for room, so no flush is tried and
    // none fails. A failed store is then its flush failing (flushStalledTicks), or a cut
    // from the sleds would keep the partition's writes waiting for as long as it lasts
    // while a secondary could take over (seed 9126046). Not with full sleds (sledsFull):
    // another primary would find them as full.
    if (
      checkpoint.step === "store" &&
      this.role.name === "primary" &&
      !this.sledsFull &&
      this.flushedHeldBytes >= this.checkpointStallHeldBytes
    ) {
      this.flushFailingSinceTick ??= this.tickCount;
    }
  }

  /**
   * A sled came back (the shell saw one configured that was not, or one leave the out
   * set): a checkpoint whose stores failed for want of sleds is tried again at the usual
   * pace after the last (checkpointRetryTicks), not at the end of its back-off, since the
   * journal is released only once one is recorded. The count of failures stays: a store
   * that fails again backs off from where it was, so a sled that keeps going silent and
   * answering again (slow, not dead) brings a try forward each time it answers, no more
   * (review-diff19 D2: each answer reset the back-off, which then never grew).
   */
  retryCheckpointSoon(): void {
    // Only stores' back-off: a refused one's (too large) is no sled's to end.
    if (this.checkpointStoreFailures === 0 || this.checkpointRefused !== undefined) return;
    this.checkpointRetryAtTick = Math.min(
      this.checkpointRetryAtTick,
      this.lastCheckpointTick + this.limits.checkpointRetryTicks,
    );
  }

  /**
   * Lets the journal drop notes whose bytes are all in chunks and in a recorded
   * checkpoint. A primary keeps what its voting followers lack (they must hold every
   * committed op), and what a learner lacks only while the learner makes progress and
   * the log is less than half full: a stuck learner must not hold the journal until
   * writes wait for room. A learner left behind learns so at its next message (its log
   * does not reach the release point) and is reported as needing a rebuild.
   */
  private release(): void {
    let through = this.checkpointFlushedThroughOpNum;
    if (this.role.name === "primary") {
      for (const progress of this.role.secondaries.values()) {
        if (!progress.learner || this.learnerPinsRelease(progress))
          through = Math.min(through, progress.matchOpNum);
      }
    }
    if (through <= this.releasedOpNum) return;
    const last = this.log.get(through);
    for (let opNum = this.releasedOpNum + 1; opNum <= through; opNum++) {
      const note = this.log.get(opNum);
      if (note !== undefined) {
        this.log.delete(opNum);
        this.logBytes -= noteBytes(note);
        this.flushedHeldBytes -= noteBytes(note); // released notes are all flushed
      }
    }
    this.releasedOpNum = through;
    this.releasedEpoch = last?.epoch ?? this.releasedEpoch;
    this.releasedSession = last?.session ?? this.releasedSession;
    // The journal keeps the note at the release point: after a restart, it says which
    // note (epoch and session) this replica resumes after.
    if (through > 1) this.effects.push({ type: "journal.release", throughOpNum: through - 1 });
  }

  private learnerPinsRelease(progress: SecondaryProgress): boolean {
    return (
      !progress.needsRebuild &&
      this.logBytes < this.limits.logBytesMax / 2 &&
      (progress.matchOpNum >= this.lastOpNum ||
        this.tickCount - progress.lastAdvanceTick < this.limits.learnerPinTicks)
    );
  }

  // ---------------------------------------------------------------- replies

  private replyError(requestId: RequestId, error: BallastError): void {
    this.effects.push({ type: "reply.error", requestId, error });
  }

  private failPendingRequests(code: ErrorCode, why: string): void {
    const error = () =>
      new BallastError(
        code,
        `the request's outcome is unknown: ${why}; retry with the current primary`,
      );
    for (const pending of this.pendingReplies.splice(0))
      this.replyError(pending.requestId, error());
    for (const waiting of this.waitingRequests.splice(0))
      this.replyError(waiting.request.requestId, error());
    for (const waiter of this.flushWaiters.splice(0)) this.replyError(waiter.requestId, error());
    for (const waiter of this.controlWaiters.splice(0)) this.replyError(waiter.requestId, error());
  }
}

/**
 * With snapshots, live bytes are recounted by a scan of every tree at most this often
 * (250 ticks, 5 s at the shell's 20 ms tick) while writes commit, however often reports
 * and status ask; a snapshot take, drop or rollback is counted at once (see spaceUsage).
 */
const spaceUsageRefreshTicks = 250;

const emptyNote: Note = {
  opNum: 0,
  epoch: 0,
  session: 0,
  kind: "trim",
  offset: 0,
  length: 0,
  checksum: 0,
};

/**
 * The sled's name of a chunk: unique across volumes and their incarnations (the volume
 * id), partitions, epochs, primary sessions and chunk numbers, since sleds name chunks
 * in one space. An id too long for the sled's limit shortens the incarnation to a hash
 * and the numbers to base 36; a hash collision cannot mix data up, because a sled
 * refuses to store other bytes under an existing chunk id.
 */
export function sledChunkIdOf(
  identity: Pick<ReplicaIdentity, "volume" | "volumeId" | "partition" | "session">,
  epoch: number,
  chunkNumber: number,
): string {
  const volumeId = identity.volumeId ?? identity.volume;
  const session = identity.session.toString(36);
  const readable = `${volumeId}-p${identity.partition}-e${epoch}-s${session}-c${chunkNumber}`;
  if (readable.length <= sledLimits.chunkIdLengthMax) return readable;
  const base36 = (value: number) => value.toString(36);
  return `${crc32c(new TextEncoder().encode(volumeId)).toString(36)}-p${base36(identity.partition)}-e${base36(epoch)}-s${session}-c${base36(chunkNumber)}`;
}

/**
 * Since when a follower of a new epoch counts as a silent learner (checkpointForLearners):
 * a learner this primary already had, and never heard from, keeps its count. Each
 * epoch used to start it again, so a primary whose learners were dropped and re-added in
 * turn (the coordinator drops one that has not caught up within learnerCatchUpMsMax; two
 * staggered learners change the epoch twice as often) never found one silent for
 * learnerSilentTicks and never stored a checkpoint its learners could fetch.
 */
function silentSince(
  before: SecondaryProgress | undefined,
  learner: boolean,
  tickCount: number,
): number {
  return learner && before?.learner === true && !before.heard ? before.silentSinceTick : tickCount;
}

function supersededError(fence: MutationFence, highestSequence: number): BallastError {
  return new BallastError(
    ErrorCode.Superseded,
    `attempt ${fence.sequence} of client session ${fence.session} arrived after its attempt ${highestSequence} was taken: a stale copy, not applied; send it again as a new attempt`,
    { details: { session: fence.session, sequence: fence.sequence, highestSequence } },
  );
}

function timeoutError(opNumLast: number, commitOpNum: number): BallastError {
  return new BallastError(
    ErrorCode.Timeout,
    `op ${opNumLast} was not committed by its deadline (committed through ${commitOpNum}): a secondary is slow or unreachable; the write may still commit`,
    { details: { opNum: opNumLast, commitOpNum } },
  );
}

function concat(parts: Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

export class ReplicaAssertionError extends Error {
  override readonly name = "ReplicaAssertionError";
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new ReplicaAssertionError(message);
}
