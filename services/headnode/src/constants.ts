// Limits and defaults of the head node. Time inside the replica core is counted in
// ticks; the shell ticks every `tickMs`, so each *Ticks value is also given in ms.

import { checkpointBytesMax, checkpointHeaderBytesMax, limits } from "@ballast/protocol";

/** How often the shell ticks every replica core. */
export const tickMs = 20;

/**
 * Incarnations of deleted volumes this node remembers (`headnode.drop.v1`), so that a
 * configure for one that arrives late is refused instead of re-creating its replica.
 */
export const droppedIncarnationsMax = 4096;

/**
 * Drops of an incarnation that may wait on the one running for it and share its answer
 * (drop-runs.ts): the delete's, a purge pass's, and resends after the coordinator gave
 * up on one (dropDeadlineMs) while it waits behind a slow configure. A duplicate past it
 * is answered Unavailable at once, so the drops of one stuck partition hold at most
 * 1 + dropsJoinedMax of the inbox's handler slots.
 */
export const dropsJoinedMax = 4;

/**
 * Trace contexts of written ops a primary keeps until their data is flushed (tracing on
 * only), so the flush span can link to them: past it the oldest are forgotten, and a
 * flush after a long sled outage links to the newer writes only.
 */
export const flushContextOpsMax = 65_536;

/** Links one flush span carries at most (OpenTelemetry's default span link limit). */
export const flushSpanLinksMax = 128;

/**
 * Leftover directories (leftover-directories.ts): a head node asks the coordinator
 * which incarnations it keeps files of but does not host are gone at start, then every
 * `leftoverCheckIntervalMs`; after a check that could not finish (no leader, an older
 * coordinator, a full disk), again after `leftoverCheckRetryMs`. Each request waits at
 * most `leftoverAskDeadlineMs` (an answer may take a read of the whole catalogue).
 */
export const leftoverCheckIntervalMs = 60 * 60 * 1000;
export const leftoverCheckRetryMs = 60 * 1000;
export const leftoverAskDeadlineMs = 10_000;

/** How long a head node waits for the coordinator to answer a report. */
export const reportDeadlineMs = limits.headnodeReportIntervalMs * 2;

/**
 * How long after a leader term last answered a report a head node ignores answers in a
 * lower term (report-state.ts, ex-leaders). An ex-leader answers for at most
 * leaderLeaseMs − margin (2.5 s) after it wakes, while its successor answers about
 * every other report (500 ms apart): the fence holds through any such overlap. It
 * lapses so that a lower term is heard once no higher one answers any more (the
 * control store started afresh, its terms from 1 again): then a head node is without
 * grants for this long, not for good.
 */
export const exLeaderFenceMs = 10_000;

/**
 * The least time between the reports a head node sends early for its new leased
 * primaries (headnode.ts `reportSoon`). A report goes through every hosted replica, on
 * the node and again at the leader, and a head node given 8,192 new primaries one after
 * another sent one per configure, back to back, for as long as the configures lasted:
 * a quarter of the node's busy time and of the leader's. The primaries configured
 * within this wait for one report together.
 */
export const reportSoonSpacingMs = 100;

/**
 * The least time between the sled probes a head node begins when the leader asks for
 * them (sled-probe.ts): it asks in every answer while a primary of a partition the node
 * follows cannot flush, every headnodeReportIntervalMs (500 ms), and one probe per
 * second gives it fresh evidence without a blob per answer.
 */
export const sledProbeSpacingMs = 1_000;

/**
 * Probe blobs of this node a probe lists per sled, after its own, and deletes
 * (sled-probe.ts): those whose delete was lost, in this session or an earlier one. One
 * listing page; a probe leaks at most one blob, so a few probes clear any backlog.
 */
export const sledProbeSweepKeysMax = 32;

/**
 * The most a checkpoint spends on one extent of a tree, for the checkpoint budget of
 * snapshot takes (replica.ts, checkpointBudgetRefusal). A record (@ballast/btree's
 * checkpoint format) is five varints and a byte: in the densest tree, 512-byte extents
 * end to end, a gap of 1 byte, a length of 2, an op number of at most 8 (2^53), the
 * location code, a chunk number of at most 5 and an offset in a 4 MiB chunk of at most
 * 4: 21. Measured at about 13.5 (op numbers around 5e7); block framing adds 12 bytes per
 * 64 KiB, which the margin covers.
 */
export const checkpointExtentBytesMax = 21;

/**
 * What the checkpoint budget of a snapshot take counts for one chunk of the table: about
 * 67 bytes measured with 36-character sled chunk ids and two copies, nearly twice that
 * for longer ids and sled names. An estimate: the check before a checkpoint is written
 * (metadata.ts, snapshot) is exact.
 */
export const checkpointChunkEntryBytesMax = 128;

/**
 * A follower (secondary or learner) holds at most this many times logBytesMax of note data
 * unreleased; past it, it takes no new notes. Its journal is released only once its own
 * checkpoint is recorded: one that cannot store checkpoints (cut from the sleds only)
 * would otherwise grow its journal at the volume's write rate until its disk is full,
 * and then fail every replica on that disk, primaries included (review-reach R2). Taking
 * none, it keeps the primary's commits waiting: the primary reports it stalled past
 * commitStallMsMax and the coordinator drops it and adds a learner elsewhere, as for a
 * hung disk. Twice the primary's bound: a follower holds what the primary does plus what
 * its own checkpoint has not yet released (about releasable bytes, 64 MiB).
 */
export const followerLogBytesFactor = 2;

/**
 * A primary whose flushed notes, held until a checkpoint releases them, fill this share
 * of logBytesMax or more counts its failed checkpoint stores as a flush stall
 * (replica.ts onCheckpointFailed): cut from the sleds then, it has no chunk write to
 * fail, since writes wait for room and nothing new is flushed, yet it can release
 * nothing (session 29, simulator seed 9126046). Half: the level at which the journal
 * presses, a flush and a checkpoint due at once (replica.ts, logBytesMax / 2).
 */
export const checkpointStallHeldShare = 0.5;

export interface ReplicaLimits {
  /** Ops assigned but not yet committed; past it, new writes wait. */
  notesInflightMax: number;
  /** Bytes of note data held for unflushed or unreleased ops; past it, new writes wait. */
  logBytesMax: number;
  /**
   * Bytes of note data a follower holds unreleased; past it, it takes no new notes.
   * Absent: followerLogBytesFactor × logBytesMax.
   */
  followerLogBytesMax?: number;
  /**
   * Flushed bytes held for a checkpoint past which a primary's failed checkpoint stores
   * count as a flush stall. Absent: checkpointStallHeldShare × logBytesMax.
   */
  checkpointStallHeldBytes?: number;
  /** Client requests waiting for room; past it, requests answer Unavailable. */
  requestsWaitingMax: number;
  /**
   * Client sessions a primary remembers per partition for the ordering fence
   * (replica/ordering-fence.ts): past it, the one with the oldest admitted attempt is
   * forgotten …
   */
  fenceSessionsMax: number;
  /** … and one with no attempt admitted for this long is forgotten too. */
  fenceExpiryTicks: number;
  /** Notes per replication message, and bytes of note data per message. */
  notesPerMessageMax: number;
  replicationBytesMax: number;
  /** Without progress from a secondary for this long, resend from what it acknowledged. */
  resendTicks: number;
  /**
   * An empty notes message carries the commit point at least this often to a follower
   * that may lack an op, the commit point or the primary's session (none to one that has
   * all three) …
   */
  heartbeatTicks: number;
  /** … and a follower that has heard nothing from its primary says hello this often. */
  helloTicks: number;
  /** A client request not committed by then answers Timeout (it may still commit later). */
  requestDeadlineTicks: number;
  /** Flush once this many bytes are committed but not flushed … */
  flushBytesThreshold: number;
  /** … or once the oldest unflushed op has waited this long. */
  flushIntervalTicks: number;
  /** The largest chunk a flush writes. */
  chunkBytesMax: number;
  /** After a failed chunk write, wait this long before trying again. */
  flushRetryTicks: number;
  /** Checkpoint metadata once this many log bytes are flushed but not released … */
  checkpointReleasableBytes: number;
  /** … or this long after the last checkpoint when anything is releasable … */
  checkpointIntervalTicks: number;
  /** … or once this many ops have committed since the last checkpoint. */
  checkpointIntervalOps: number;
  /**
   * A checkpoint the shell asks for waits at least this long after the last one, and any
   * checkpoint after a failed one waits this long after the failed one's start.
   */
  checkpointRetryTicks: number;
  /**
   * The largest checkpoint header and whole checkpoint the core writes (the protocol's
   * checkpointHeaderBytesMax and checkpointBytesMax: what readers take and one sled blob
   * holds); a larger one is refused, never written. Tests set smaller ones.
   */
  checkpointHeaderBytesMax: number;
  checkpointBytesMax: number;
  /**
   * After a checkpoint refused as too large, the next try waits this long (60 s): what
   * made it too large lasts, and each try serializes every tree again.
   */
  checkpointRefusedRetryTicks: number;
  /**
   * After checkpoint stores that failed one after another (fewer than chunkCopies sleds
   * took the blob: a sled dead and no spare), the next try waits twice as long as the
   * last, from checkpointRetryTicks up to this (60 s): each try writes a blob to the
   * live sleds that becomes an orphan. A sled back (a new one configured, one back in
   * service) brings the next try forward again (Replica.retryCheckpointSoon).
   */
  checkpointStoreRetryTicksMax: number;
  /**
   * A voting follower that has kept a commit waiting this long is reported stalled
   * (commitStallMsMax of the protocol, in ticks): the coordinator then drops it.
   */
  commitStallTicks: number;
  /** A primary's own journal stall it reports (primaryStallMsMax of the protocol, in ticks). */
  primaryStallTicks: number;
  /**
   * Release waits for a learner only while it makes progress: it matched a new op
   * within this long (or has matched everything). A learner left behind is rebuilt.
   */
  learnerPinTicks: number;
  /**
   * A learner that has not answered at all for this long may be unable to fetch its
   * checkpoint: the primary records a fresh one for the learner that replaces it.
   */
  learnerSilentTicks: number;
  /**
   * A primary lists chunks no tree refers to any more in the next flush record's `drop`;
   * a record only for that is proposed at most this often.
   */
  dropIntervalTicks: number;
  /**
   * How often a primary looks for mostly-dead chunks to compact. Often enough that
   * compaction keeps up with overwrites (one compaction moves up to chunkBytesMax of
   * live bytes), and cheap when idle: a look is skipped while the partition's chunk and
   * live bytes have not changed since a look that found nothing.
   */
  compactionIntervalTicks: number;
  /** A chunk is compacted once at most this fraction of its bytes is still referenced. */
  compactionLiveRatioMax: number;
  /**
   * A chunk with at most this many referenced bytes is small: compaction merges small
   * chunks however live they are (chunkBytesMax / 8: 512 KiB), so that a trickle of
   * writes, a chunk per flush, cannot grow the chunk table without bound (replica.ts,
   * maybeStartCompaction).
   */
  compactionSmallChunkBytes: number;
  /**
   * Small chunks are merged only once there are this many (that are not mostly dead) of
   * one size class (powers of this over a sector): each merge then cuts the count by
   * several and makes a chunk about this many times larger, so a byte is rewritten about
   * once per class before its chunk is no longer small.
   */
  compactionSmallChunksMin: number;
  /**
   * Chunks one compaction reads at most (their live bytes together also stay within
   * chunkBytesMax): bounds what a primary holds in memory while it gathers them (8 of
   * 4 MiB: 32 MiB per compacting partition at worst).
   */
  compactionVictimsMax: number;
}

/**
 * The least `--flush-bytes` (ReplicaLimits.flushBytesThreshold) takes: one 4 KiB block,
 * a flush after every write.
 */
export const flushBytesMin = 4096;

/** The largest chunk a flush writes by default (ReplicaLimits.chunkBytesMax). */
const chunkBytesMaxDefault = 4 * 1024 * 1024;

export const replicaLimitsDefault: ReplicaLimits = {
  notesInflightMax: 4096,
  logBytesMax: 256 * 1024 * 1024,
  requestsWaitingMax: 1024,
  // A partition is written by a gateway or two (one session each) and now and then a
  // CLI run: 64 leaves room for many, at about 100 bytes each per primary partition.
  fenceSessionsMax: 64,
  // 30 minutes: well above how long a stale copy stays unread at a primary that keeps
  // its epoch. A link server reads again once its `linkUnansweredMax` (1024) requests
  // are answered, each within two request deadlines (30 s waiting for room, 30 s once
  // assigned); a sender's 64 MiB of 4 KiB writes ahead of the copy are 16 such rounds,
  // 16 minutes at the very worst.
  fenceExpiryTicks: Math.ceil((30 * 60 * 1000) / tickMs),
  notesPerMessageMax: limits.notesPerMessageMax,
  replicationBytesMax: 4 * 1024 * 1024,
  resendTicks: 25,
  heartbeatTicks: 10,
  helloTicks: 250,
  requestDeadlineTicks: 1500,
  flushBytesThreshold: 8 * 1024 * 1024,
  flushIntervalTicks: 50,
  chunkBytesMax: chunkBytesMaxDefault,
  flushRetryTicks: 25,
  checkpointReleasableBytes: 64 * 1024 * 1024,
  checkpointIntervalTicks: 500,
  checkpointIntervalOps: 100_000,
  checkpointRetryTicks: 100,
  checkpointHeaderBytesMax: checkpointHeaderBytesMax,
  checkpointBytesMax: checkpointBytesMax,
  checkpointRefusedRetryTicks: 3000,
  checkpointStoreRetryTicksMax: 3000,
  commitStallTicks: Math.ceil(limits.commitStallMsMax / tickMs),
  primaryStallTicks: Math.ceil(limits.primaryStallMsMax / tickMs),
  learnerPinTicks: 250,
  learnerSilentTicks: 750,
  dropIntervalTicks: 50,
  compactionIntervalTicks: 50,
  compactionLiveRatioMax: 0.5,
  compactionVictimsMax: 8,
  compactionSmallChunkBytes: chunkBytesMaxDefault / 8,
  compactionSmallChunksMin: 8,
};
