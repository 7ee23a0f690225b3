// Deterministic simulation of a small cluster: several head nodes hosting the replicas of
// one volume's partitions (the real replica cores), a model coordinator that takes every
// membership decision with the real pure `decidePartition`, and clients that follow
// failovers. One seeded generator and a tick counter drive everything, so a seed replays
// exactly (`npm run simulate -- --failover --seed N`).
//
// Time: one tick is `tickMs` of the coordinator's monotonic clock. Each head node has its
// own monotonic clock, running at its own rate (within the drift the lease margin allows)
// from its own offset, and stepping forward now and then; leases are durations each side
// measures on its own clock, never a comparison of two clocks.
//
// The model coordinator keeps the partition records (as the KV store would: one writer,
// so every update by revision applies), declares a head node dead after
// `deadAfterTicks` of silence (crashed, paused or cut-off nodes stop reporting), and every
// `roundTicks` builds each partition's PartitionView (alive, load, replica count, the
// primary's newest report, lease, learners, the members their own nodes report failed,
// from the real lease book, the live nodes it dropped lately to avoid as learners, since
// when the primary has neither acknowledged nor reported the record's epoch) and
// applies the decision. It pushes the record to a member as the configurer does (and to
// a live former member until it answers that it holds nothing, having closed its replica
// with the out epoch kept on its disk: configure-decision.ts `close-out`): until
// the member acknowledges the record's epoch (but not every round to one that refused
// it for being on another disk: `otherDiskBackoff`), again
// once its node restarts (a newer session) or comes back from silence, and otherwise
// only at the slow refresh (configureRefreshTicks, 300 s). A learner's configuration
// carries the primary's newest checkpoint pointer and the epoch it was added in, and a
// head node that is told
// it is a learner it has not been since then starts that replica afresh from the
// checkpoint on the simulated sleds. Head nodes report their primaries (commit point,
// inherited tail, followers with stalls) every round, as changes to the state the
// coordinator holds of them (the head node's report-state.ts); the model coordinator
// keeps node leases in the real book (coordinator/src/leases.ts), and its answer renews
// the lease of every primary of the node it does not exclude.
//
// Faults while loaded: messages dropped, duplicated (not client requests: each attempt
// is assigned at most once, so the client model can reason about it), delayed; head
// nodes crash (the journal append in progress may be torn) and restart with a new
// session; pauses longer than a lease (a paused node neither ticks nor receives, messages
// to it wait, its monotonic clock runs on; with `frozenClockChance`, some pauses are a
// frozen VM whose clocks stand still, the wall clock set right on resume); clock rates
// and forward steps; a disk that
// stops completing writes while its node keeps reporting (gray failure), in one run of
// four for longer than a primary's stall bound and on into the settle phase, the clients
// pausing with it half the time (stopped processes: no request, retry or snapshot until
// the pause ends, so only what was in flight reaches a primary on that disk); a replica's
// journal that fails at its next write, failing that replica alone as partition-host.ts
// does (its runner closed, no ticks, messages or requests; its node reports it at once
// in `failures`; a later configure reopens it from its disk in a session of its own, or
// with `failedMarker` refuses it until its machine reboots, as the failed marker does),
// while loaded and, now and then, on a secondary once settled, at the snapshot's note of
// an idle partition, and with diskJournalFailChance on every replica of the disk at once;
// the session file's write, when a failed replica takes its new session, slow (so the
// takes of partitions reopened together overlap) or failing (the configure fails and is
// sent again); sustained
// network partitions (a node cut off from everyone, or only from its peers); chunk
// writes, checkpoint uploads and checkpoint copies on sleds that fail or are lost; sleds
// down (one at a time, or all but sled-1 when the volume is first created in some runs:
// configures name the live sleds, a member told of others is configured again at once as
// configurer.ts does, and a replica places chunks only on the sleds it was told of); and a
// volume deleted and re-created under the same name (a new incarnation: head nodes drop
// the old replicas, and the new one must never show the old bytes); and now and then a
// client's mutation attempt held on its way past the client's timeout (a link frame
// left unread at its primary) while the client retries and goes on: attempts carry the
// client library's ordering fence, and the `fence` check fails a run in which such a
// copy commits above a later acknowledged attempt of its client. With `corruptChance`,
// damage: replication messages whose note data had a bit flipped after its checksum was
// computed, or whose checksum field is wrong, and whole-chunk reads that hand the core
// damaged bytes; the `damage` check fails a run in which a replica commits a note whose
// data fails its checksum. With `endChangeRate`, the volume's end moves as resizes move
// it: one partition's served bytes lowered or raised in a new epoch of its record, with
// the same members (coordinator volumes.ts); the `end` check fails a run in which a
// primary answers a request reaching past the served bytes of the epoch it was sent in,
// whichever primary a failover made since (decisions carry the value into new records).
//
// Checkers (checker.ts): per partition incarnation, every committed op is the same note
// everywhere; no two different notes are acknowledged at one op; every acknowledged op
// was committed as sent; every read equals the model at the op it reflects and is never
// older than an op acknowledged before it began; once settled, every partition is back
// at full strength (replica count voters, no learners or joiners), every member's
// metadata is identical, a full read matches both the committed history and the client's
// own model of acknowledged writes, and every acknowledged op is committed; on every
// replica at every tick, the space accounting holds (referenced chunks are in the table,
// kept counts equal a recount, no drop refused), with drops and compactions frequent;
// primaries are asked now and then to take and drop snapshots, and once settled every
// snapshot reads as the committed history at the op it was taken at; a failed replica
// counts as not serving, and while faults are off a failed member other than the
// primary leaves its record within failedMemberTicksMax (its node reports it: no commit
// need stall on it first), the bound starting again while the coordinator fails the
// primary over or, with no voter to promote, keeps the record as it is (`unavailable`);
// and while loaded, no client's write waits longer than
// availabilityTicksMax for its partition to acknowledge a write while every node's
// faults stay as they are and the partition has a healthy voter (`checkAvailability`);
// and, loaded or settling, a primary whose own journal has kept a write waiting past its
// stall bound is no longer primary within stalledPrimaryTicksMax while faults stay as
// they are and a voting secondary is healthy (`checkOwnStalls`), however quiet its
// clients are; and sessions (`checkLife`, `sessionGiven`): no node is given one session
// twice, and a replica's life configured in an epoch an earlier life of that replica was
// configured in has a session above that life's (log matching compares epoch and
// session, and secondaries ignore older sessions); and epochs (`epoch-fence`): no
// replica's core takes an epoch below one its files were configured a voter in, or named
// out in while hosted (failed or not), as a voter configure that a coordinator leader
// frozen past its tenure held (`lateVoterConfigureChance`) would make it do, delivered
// once its node closed the replica out, or as it next starts.
//
// Each head node handles the configures and drops of one partition one at a time, in
// arrival order (headnode.ts's keyed lock), and retires a replica (removed, reopened after
// a failure, dropped) through retire.ts as the shell does: intake stopped (no ticks,
// messages or requests), the replica closed with the requests it holds answered, then
// the handlers in flight awaited. The requests a replica's core holds unanswered (client
// mutations and flushes, snapshot takes and drops) are those handlers, so a retire in
// the old order (the `close-after-handlers` sabotage) hangs on a write that waits for a
// newer epoch's acknowledgements, and the configures of the partition queue behind it
// until the node restarts. Of the configures queued, at most one waits, as in the shell
// (configure-queue.ts): a newer one answers the waiting one Unavailable, which the
// coordinator takes as no acknowledgement and resends on a later round (configurer.ts).
// With `configuresWaitOnHungDisk` (on by default), a configure that opens a replica
// waits while its node's disk hangs, as the shell's file reads and writes would, and the
// partition's later configures queue behind it; a primary left so reports nothing, and
// the coordinator fails it over once it has not confirmed its epoch for
// `primaryUnconfirmedMs` (decisions.ts, "Unconfirmed primaries"). Keeping the older
// waiting one instead (the rule reversed) is caught by no check: the coordinator resends
// every round until a member acknowledges the record's epoch, so it costs a round (none
// of seeds 1 to 500, short hangs only).
//
// Re-replication (`replicateChance`, off by default): the sleds keep which sled holds
// each chunk copy, sleds' stores are lost (down past the out bound, back empty), the
// model coordinator names the sleds out in its answers, and each head node runs the
// shell's own Replicator (replicator.ts) on its hosted replicas: passes, copies that
// take ticks, recordCopies, checkpoints re-stored and the scrub. See `replicateChance`
// for what is checked.
//
// The replica API this drives is adapted in one place (`ReplicaAdapter`); its effects are
// carried out by the head node's own effect runner (effect-runner.ts) through the seeded
// fakes of testing/fakes.ts (journal, checkpoint file, sleds, network, the coordinator's
// checkpoint records, drifting clocks), and a learner fetches its checkpoint as the head
// node does (checkpoint-fetch.ts).

import {
  decidePartition,
  failingOver,
  flushStalledNodes,
  knowsSleds,
  learnerCheckpoint,
  membersOf,
  otherDiskBackoff,
  outOfStep,
  type PartitionDecision,
  type PartitionRecord,
  type PartitionView,
  probeTargets,
  type Report,
  type Unconfirmed,
  unconfirmedSince,
  votingSecondaries,
} from "@ballast/coordinator/decisions";
import { LeaseBook } from "@ballast/coordinator/leases";
import { SledReach } from "@ballast/coordinator/sled-reach";
import { BallastError, crc32c, ErrorCode, formatVolumeId, limits } from "@ballast/protocol";
import { createLogger, KeyedLock } from "@ballast/runtime";
import { fetchCheckpoint } from "../checkpoint-fetch.ts";
import { decideConfigure, partOf } from "../configure-decision.ts";
import { ConfigureQueue } from "../configure-queue.ts";
import {
  followerLogBytesFactor,
  type ReplicaLimits,
  replicaLimitsDefault,
  sledProbeSpacingMs,
} from "../constants.ts";
import { EffectRunner, silentLog } from "../effect-runner.ts";
import type { ReplicaPorts } from "../ports.ts";
import {
  failedReplicaOf,
  nodeEntriesOf,
  primaryReportOf,
  type ReportAddress,
  type Reporter,
  renewalsOf,
  type UnopenedReplica,
  unopenedReporter,
} from "../primary-report.ts";
import type { CheckpointPointer, ReadResult, ReplicationMessage } from "../replica/effects.ts";
import { type Note, noteChecksum } from "../replica/note.ts";
import type { KeptFence } from "../replica/ordering-fence.ts";
import { type ClockReading, type Configuration, Replica } from "../replica/replica.ts";
import { type ReplicatedPartition, Replicator } from "../replicator.ts";
import {
  type FailedReplica,
  type Outgoing,
  type PrimaryReport,
  ReportState,
  sameEntry,
} from "../report-state.ts";
import { type RetirePorts, retireReplica } from "../retire.ts";
import type { SledClient } from "../sled-client.ts";
import {
  type ClientOutcome,
  randomRequest,
  resolveRead,
  type SimRequest,
} from "../testing/client.ts";
import {
  DriftingClock,
  FakeCheckpointFile,
  FakeCheckpointRecords,
  FakeJournal,
  FakeNetwork,
  FakeSleds,
  flipBit,
  recoveredFrom,
  SimRandom,
  type SimWorld,
  simWorld,
} from "../testing/fakes.ts";
import { AcknowledgedModel, type Attempt, Checker, type Violation } from "./checker.ts";

/** Ways to break the system on purpose, one per checker, to prove each can fail. */
export type Sabotage =
  /** The old coordinator (defect 1): a learner reported caught up becomes a secondary at once. */
  | "promote-on-stale-report"
  /** A disk that acknowledges journal writes it then loses in a crash. */
  | "disk-loses-acknowledged-writes"
  /** Primaries serve reads without checking their lease. */
  | "no-lease-check"
  /**
   * The lease check before the wall clock bounded it: the monotonic clock alone (the
   * head node reads it for the wall clock too). Found with `frozenClockChance`: a
   * primary frozen with its clocks held wakes believing its lease still runs.
   */
  | "lease-ignores-wall-clock"
  /** The coordinator never adds learners: partitions stay short of their replica count. */
  | "no-rebuild"
  /** A replica drops a chunk from its table that its tree still refers to. */
  | "drop-referenced-chunk"
  /** Head nodes renew every primary under their node lease, even those it excludes. */
  | "node-lease-ignores-exclusions"
  /**
   * Secondaries never say hello: one that restarts while its primary is idle never
   * learns the commit point, since current followers get no heartbeats.
   */
  | "no-follower-hello"
  /**
   * The coordinator before failure reports: it passes decisions no `failed` members, so
   * a secondary whose journal failed while its partition went on without it (or idle)
   * stays a member until a configure refresh reopens it.
   */
  | "coordinator-ignores-failures"
  /**
   * The system before disk ids: configures name no disk and the coordinator hears of
   * none, so a head node back on an empty disk under its old id opens the voter it was
   * (empty), and a secondary back that way is promoted when its primary dies. Found with
   * disk losses on (`diskLossChance`).
   */
  | "ignore-disk-ids"
  /**
   * The head node before the `no-replica` refusal (configure-decision.ts): a voter the
   * configure names no disk for opens whatever its disk stores, so on a record from
   * before disk ids (`legacyRecordChance`) a node back on an empty disk under its old id
   * opens the voter it was, empty. Found with disk losses on.
   */
  | "open-legacy-voters"
  /**
   * The system before primaries reported their own journal stalls (session 7): a
   * primary's report never carries `stalledMs`, so a primary whose disk hangs without
   * failing is never replaced, and its partition's writes wait as long as the disk does
   * while a secondary could have taken over. Found by the availability check, with the
   * long disk hangs on (`longDiskHangChance`).
   */
  | "ignore-primary-stall"
  /**
   * The head node before ed63a3d: a report leaves out an entry that says the same as the
   * one the coordinator holds, and that comparison (report-state.ts `sameEntry`) skipped
   * the primary's own `stalledMs`. A primary whose disk hangs while nothing else in its
   * entry changes (its one write in flight acknowledged by its followers, no new write
   * arriving) does not tell the coordinator of its stall, keeps its node lease, and is
   * not failed over until something else in its entry changes or its node sends its
   * whole state. Found by the stalled-primary check, with the long disk hangs on and the
   * clients pausing in them (`clientPauseChance`); see there for why only now and then.
   */
  | "report-ignores-own-stall"
  /**
   * The head node before review-reach R1: a primary's report never carries
   * `flushStalledMs`, so a primary cut from the sleds (which the coordinator sees up) is
   * never replaced: its journal is never released, and once it holds logBytesMax every
   * write waits for as long as the cut lasts while its secondary could flush. Found by
   * the availability check with sled cuts on (`sledCutRate`).
   */
  | "ignore-flush-stall"
  /**
   * The head node before review-reach R2's fix: a follower takes every note whatever it
   * holds, so one cut from the sleds (its checkpoints never stored, its journal never
   * released) grows its journal for as long as the cut lasts. Found by the
   * `journal-bound` check with sled cuts on.
   */
  | "unbounded-follower-log"
  /**
   * The head node before 3ae96e2: retiring a replica (a configure that removes or
   * reopens it, a dropped volume), it waits for the handlers in flight before it closes
   * the replica (retire.ts). A request the replica holds off the tick schedule is never
   * answered, so the retire never finishes, and every later configure of that partition
   * on that node waits behind it (chaos, stop-primary: the woken ex-primary, re-added as
   * a learner, was never rebuilt). Found by the settle check (full strength).
   */
  | "close-after-handlers"
  /**
   * The coordinator before session 9: it passes decisions no `primaryUnconfirmedSinceMs`,
   * so a primary whose configure hangs on its disk (it hosts nothing, so it reports
   * nothing) is kept as long as the disk hangs while a healthy secondary waits. Found by
   * the availability check with configures waiting on hung disks
   * (`configuresWaitOnHungDisk`) and long hangs.
   */
  | "keep-unconfirmed-primary"
  /**
   * The coordinator before 6523831: a member that acknowledged the record's epoch is
   * current whatever sleds its configure named, so one told of a single live sled (the
   * others down or late at the volume's creation) is told of the others only at the
   * slow refresh or a new epoch; until then its replica can flush nothing (a chunk needs
   * chunkCopies sleds) and its log grows.
   */
  | "configure-ignores-sleds"
  /**
   * The head node before c6bd9ac: a failed replica's new session is taken after the
   * replica is closed. When taking it fails (the session file's write: `sessionFailRate`)
   * the configure fails with nothing hosted, and the one sent again finds nothing failed
   * and opens the replica from its files in the node's session, the one its failed life
   * had in the same epoch: its next ops can match notes a secondary holds from before the
   * failure (log matching compares epoch and session). Found by the session check.
   */
  | "session-after-close"
  /**
   * The head node before 8608891: sessions taken with no lock, so two reopens of failed
   * replicas of different partitions on one node that both read the session file before
   * either wrote it take the same number. Found by the session check, with reopens of
   * several partitions at once on a node (see the simulation test).
   */
  | "session-unlocked"
  /**
   * The head node before the stored-epoch refusal (configure-decision.ts `storedEpoch`):
   * with nothing of the incarnation configured since its node started, a learner's
   * configure of an older epoch than its journal's notes rebuilds it afresh, removing
   * the notes it acknowledged as a voter since. Found with late learner configures on
   * (`lateLearnerConfigureChance`: a coordinator leader frozen inside its checkpoint read).
   */
  | "configure-ignores-stored-epoch"
  /**
   * The head node before a replica named out kept the out epoch on its disk (a healthy
   * one before close-out; a failed one, or one open nowhere after a restart, before
   * they were fenced the same way): with the epoch it was last a voter in stored, it
   * opens on a delayed configure of an older epoch naming it a voter
   * (`lateVoterConfigureChance`: a coordinator leader frozen past its tenure), at once or
   * after a restart. Found by the `epoch-fence` check.
   */
  | "close-out-forgets-epoch"
  /**
   * The client before the ordering fence (review-retries item 1): attempts carry no
   * `fence`, so a stale copy of an attempt its client timed out on, held in a socket
   * (`staleRequestChance`) while the client's retry and next request were acknowledged,
   * gets an op above theirs at the same primary in the same epoch. Found by the `fence`
   * check.
   */
  | "no-ordering-fence"
  /**
   * The coordinator configures members without the record's served bytes (the volume's
   * end within the partition, which a resize sets in a new epoch), as before head nodes
   * knew the end: its primaries acknowledge writes past a shrunk volume's end. Found by
   * the `end` check with `endChangeRate` on.
   */
  | "configure-ignores-end"
  /**
   * Re-replication (`replicateChance`) whose sled client answers a copy as soon as it is
   * asked, before the target holds the bytes (as a shell that records the new copy list
   * when it starts the copy rather than once it is written): the flush record can name
   * a sled the copy never reached (it failed, or the target went down). Found by the
   * `copy-list` check.
   */
  | "copy-answered-early"
  /**
   * Re-replication runs with no replicator on the head nodes (the simulator before this
   * one): a chunk whose copy was on a lost sled stays one copy short. Found by the
   * `re-replication` check once settled.
   */
  | "no-replicator"
  /**
   * Damaged notes (`corruptChance`) taken as sound: the damage lands before the
   * checksum is computed, as a secondary that checked no note checksums would take a
   * note damaged after it. Found by the `agreement` check (the secondary's note has
   * another checksum than the primary's) or by a read of the damaged bytes.
   */
  | "unchecked-note-checksums"
  /**
   * Re-replication whose sled client says every recorded checkpoint copy is in place and
   * sound (the replicator before it looked for them): a sled back empty under its old id
   * before it was declared out (`sledBackEmptyChance`) leaves the recorded checkpoint
   * at one copy until the next checkpoint. Found by the `checkpoint-copies` check once
   * settled.
   */
  | "checkpoint-copies-unchecked"
  /**
   * The coordinator before it asked head nodes to audit a sled back on another data
   * directory (the answer's `sledsToAudit`): no primary says it audited the sled, so it
   * stays unverified (and a primary whose own checkpoint look did not meet it left its
   * lost copies to the scrub's pace). Found by the `sled-audits` check once settled.
   */
  | "sled-audit-unasked"
  /**
   * The head node before it reported the voters it could not open (headnode.ts
   * `openFailed`): a replica whose files are refused (`corruptChance`) is in no report,
   * so the coordinator takes such a primary for one restarting until it has stayed
   * unconfirmed, and meanwhile drops a dead secondary, the one sound copy, as beside a
   * live primary. Found by the `availability` check.
   */
  | "silent-open-failure"
  /**
   * A primary that reports itself stalled when its writes are slow rather than when its
   * journal makes no progress: `stalledMs` is the age of the oldest request it holds.
   * The coordinator then fails over a primary on a disk that is slow but working, and
   * again wherever the load goes: flapping on load. Found by the `slow-disk` check
   * (`slowDiskRate`).
   */
  | "stall-on-slow-writes"
  /**
   * The head node before the failed marker (journal/failed-marker.ts): a replica whose
   * journal failed is reopened from its files in the same boot, and recovery reads the
   * failed append's notes from the page cache as if the disk held them. The replica
   * claims ops it does not durably hold, and its next durable append leaves a hole
   * behind them (what the `journal` check finds; the real journal's recovery would
   * refuse the files as corrupt after a reboot, or lose the ops). Needs `failedMarker`.
   */
  | "reopen-failed-journal"
  /**
   * The head node before a learner's rebuild kept its epoch (partition-host.ts
   * `keepEpoch`): a voter removed to be rebuilt whose checkpoint fetch fails keeps
   * nothing on its disk, and a delayed configure of an older epoch naming it a voter
   * (`lateVoterConfigureChance`) opens it empty, in the epoch and session an earlier life
   * used. Found by the `session` check (seed 9120891 with the options of
   * simulation.test.ts "a learner's epoch").
   */
  | "rebuild-forgets-epoch"
  /**
   * The coordinator before session 29: a primary counted out only for a flush stall (cut
   * from the sleds) with no secondary to take over stopped the round at "unavailable",
   * so its caught-up learner was never promoted and the partition waited out the whole
   * cut with nothing to fail over to. Found by the availability check (seed 9123815
   * with the options of simulation.test.ts "a cut primary's learner").
   */
  | "cut-primary-blocks-rebuild"
  /**
   * The replica before session 29: failed checkpoint stores never count as a flush
   * stall, so a primary cut from the sleds once its journal is full of flushed notes
   * (writes wait for room; no chunk write is tried to fail) is never reported, and kept
   * for the whole cut. Found by the availability check (seed 9126046 with the options of
   * simulation.test.ts "a learner's epoch").
   */
  | "checkpoint-failures-not-stalls"
  /**
   * The coordinator before session 29: it passes decisions no `reopening`, so a
   * secondary whose node has just restarted is promoted on its heartbeats alone, before
   * any configure has shown its files open. Back on damaged files, it took the record
   * from a failed (or just restarted) primary that held every acknowledged write, and the
   * partition stayed unavailable for good. Found by the settle check (seeds 9201217 and
   * 9201895 with the options of simulation.test.ts "a restarted secondary").
   */
  | "promote-reopening-secondary"
  /**
   * The head node before session 29: a primary's report does not say which learners it
   * has not heard from in its epoch (`unheard`), so a learner it never heard from,
   * reported at op 0, counts as caught up on a partition whose commit point is 0 (a new
   * volume's), joins, and becomes a voter that hosts nothing: its node refuses the voter
   * configures (`no-state`), and once it is promoted primary the partition never serves
   * again. Found by the settle check (seeds 9600248 and 9602764 with the options of
   * simulation.test.ts "an unheard learner"); since seed 9781027's fix the coordinator
   * does not promote such a voter, which has answered no configure (`unproven`), and
   * the run settles.
   */
  | "promote-unheard-learner"
  /**
   * The coordinator before session 30, with the failover of flush-stalled primaries on:
   * it promotes a secondary with no evidence that its node reaches the sleds (every
   * node counts as having stored just now). With two nodes cut at once, the primary's
   * partition went to a secondary cut from the sleds since before the stall began, which
   * could flush no more than the primary (review-diff19 D1, the sleds failing everyone,
   * is the same from the leader's side). Found by the sled-evidence check.
   */
  | "promote-without-sled-evidence"
  /**
   * The coordinator before stand-ins (session 31): a primary cut from the sleds whose
   * secondaries are all cut too is kept for as long as the cut lasts, though a spare
   * reaches the sleds. Found by the availability check once the journal fills.
   */
  | "no-stand-in"
  /**
   * The coordinator of session 31: no stand-in on a spare the partition avoids (dropped
   * within droppedNodeAvoidTicks), however healthy and whatever else is left, so a primary
   * and secondaries cut from the sleds with only such a spare waited for the cut to end.
   * Found by the availability check (first by the integration test of the cut).
   */
  | "stand-in-not-on-avoided"
  /**
   * The coordinator without `unproven`: a secondary placed before disk ids is promoted
   * before it has answered the record's epoch, on its heartbeats alone. One whose
   * configures had waited on a hung disk since the volume was placed took the record
   * from a failed primary, then refused the epoch for holding nothing (`no-replica`),
   * and the partition never served again. Found by the settle check (seed 9712321 with
   * simulation.test.ts's `unprovenShape`).
   */
  | "promote-unproven-secondary"
  /**
   * The coordinator before seed 9781027: a member with a disk recorded counts as proven
   * whether or not it has answered any configure of the partition, so a secondary placed
   * on the disk its last heartbeat named, back on another unheard, is promoted over a
   * dead primary, then found on another disk: one voter, its replica lost, `unavailable`
   * for good. Found by the settle check (seed 9781027).
   */
  | "promote-unheard-secondary"
  /**
   * The coordinator without a clock for joiners (`joinersSinceMs`): it keeps a joiner
   * that never matches the commit point in its joining epoch for good. A learner counted
   * caught up whose node then restarted and, on a frozen leader's late learner
   * configure, rebuilt it afresh and failed the fetch, joined hosting nothing, its node
   * refusing every voter configure (`no-state`); with no write to stall on it, the
   * partition stayed a copy short. Found by the settle check (seed 9714544 with
   * simulation.test.ts's `displacedShape`).
   */
  | "keep-silent-joiner";

/**
 * Every sabotage by name, for the command line (main.ts): a record of all of them, so
 * that the compiler refuses one left out or one that is not a Sabotage.
 */
export const sabotageNames: readonly Sabotage[] = Object.keys({
  "promote-on-stale-report": true,
  "disk-loses-acknowledged-writes": true,
  "no-lease-check": true,
  "lease-ignores-wall-clock": true,
  "no-rebuild": true,
  "drop-referenced-chunk": true,
  "node-lease-ignores-exclusions": true,
  "no-follower-hello": true,
  "coordinator-ignores-failures": true,
  "ignore-disk-ids": true,
  "open-legacy-voters": true,
  "ignore-primary-stall": true,
  "report-ignores-own-stall": true,
  "ignore-flush-stall": true,
  "unbounded-follower-log": true,
  "close-after-handlers": true,
  "keep-unconfirmed-primary": true,
  "configure-ignores-sleds": true,
  "session-after-close": true,
  "session-unlocked": true,
  "configure-ignores-stored-epoch": true,
  "close-out-forgets-epoch": true,
  "no-ordering-fence": true,
  "copy-answered-early": true,
  "no-replicator": true,
  "unchecked-note-checksums": true,
  "checkpoint-copies-unchecked": true,
  "silent-open-failure": true,
  "sled-audit-unasked": true,
  "configure-ignores-end": true,
  "stall-on-slow-writes": true,
  "reopen-failed-journal": true,
  "rebuild-forgets-epoch": true,
  "cut-primary-blocks-rebuild": true,
  "checkpoint-failures-not-stalls": true,
  "promote-reopening-secondary": true,
  "promote-unheard-learner": true,
  "promote-without-sled-evidence": true,
  "no-stand-in": true,
  "stand-in-not-on-avoided": true,
  "promote-unproven-secondary": true,
  "promote-unheard-secondary": true,
  "keep-silent-joiner": true,
} satisfies Record<Sabotage, true>) as Sabotage[];

export interface FailoverOptions {
  seed: number;
  nodes: number;
  /** Replica count of each partition of the volume. */
  partitions: readonly (2 | 3)[];
  partitionBytes: number;
  loadTicks: number;
  settleTicksMax: number;
  /** Idle ticks after settling before the quiet restart: up to this many. */
  quietTicksBeforeRestart: number;
  /** Milliseconds of coordinator time per tick. */
  tickMs: number;
  /** Coordinator rounds and head node reports, every this many ticks. */
  roundTicks: number;
  /** Silence after which the coordinator declares a head node dead. */
  deadAfterTicks: number;
  /**
   * The configurer's safety-net refresh: a member configured in the record's epoch is
   * configured again only this long after (configureRefreshMs, 300 s, in ticks), or
   * when it restarts or comes back from silence.
   */
  configureRefreshTicks: number;
  learnerCatchUpMs: number;
  /**
   * How long a primary may have neither acknowledged nor reported the record's epoch
   * before the coordinator fails it over (PartitionView.primaryUnconfirmedMsMax; the
   * leader's primaryUnconfirmedMsMax, 20 s, allows for journal recovery of large
   * partitions, which takes no time here).
   */
  primaryUnconfirmedMs: number;
  /**
   * A live node dropped from a partition (stalled, or unable to catch up) is that
   * partition's last choice of learner for this long (the coordinator's
   * droppedNodeAvoidMs, 60 s, in ticks): a node whose disk hangs is not re-added over and
   * over while a healthy spare waits.
   */
  droppedNodeAvoidTicks: number;
  dropRate: number;
  duplicateRate: number;
  delayTicksMax: number;
  /** At most this many head nodes crashed, paused or cut off at once. */
  faultyNodesMax: number;
  crashRate: number;
  /**
   * Per crash: chance the node's disk is lost with it (an operator swapped a failed
   * disk): it comes back under the same node id on a new data directory (another disk
   * id) with every replica's journal, metadata and checkpoint file gone, its session
   * counted afresh from the clock (session.ts: here the tick, a clock that runs faster
   * than the real one's seconds) and the incarnations it had dropped forgotten.
   *
   * Its reports name its disk, as a head node's heartbeats do; the coordinator counts a
   * member back on another disk out of the partition (decisions.ts, "Lost disks") and the
   * node refuses a configure recorded on its old disk (configure-decision.ts). The
   * `ignore-disk-ids` sabotage shows what that prevents: an empty primary configured
   * again in its epoch hands out op numbers again over committed ones, and an empty
   * secondary is promoted.
   */
  diskLossChance: number;
  /**
   * Per volume creation: chance the volume is placed by a coordinator from before disk
   * ids (session 7's limit) and that coordinator is upgraded a little later. Until then
   * it hears no disk, records none and sends no `disksRecorded` (no disk is lost
   * meanwhile: that system lost writes to it); at the upgrade it starts afresh (a new
   * tenure configures every member again) and, half the time, an operator replaces an
   * original voter's disk at that moment: the node comes back under its old id before it
   * is counted dead. Today's coordinator records a member's disk from its answer and
   * counts one that refuses for holding nothing (`no-replica`) as on a lost disk
   * (decisions.ts, "Lost disks"). Drawn only when above 0.
   */
  legacyRecordChance: number;
  downTicksMax: number;
  pauseRate: number;
  pauseTicksMin: number;
  pauseTicksMax: number;
  diskHangRate: number;
  diskHangTicksMax: number;
  /**
   * Per loaded tick and healthy node: chance its disk turns slow, not hung (a failing or
   * throttled disk, a starved process), for `slowDiskTicks`: it makes work durable only
   * once every `slowDiskEveryTicks` (drawn per episode), each time all that is due. A
   * slow disk is a fault (it counts toward faultyNodesMax). Drawn from a generator of its
   * own, and only when above 0, so runs without it replay as before.
   */
  slowDiskRate: number;
  slowDiskTicks: readonly [number, number];
  /**
   * Kept below primaryStallTicks less diskDelayTicksMax, so that a primary on a slow
   * disk always sees its journal make progress within its stall bound: it must never
   * report itself stalled (the `slow-disk` check). Above commitStallTicks a secondary on
   * it keeps commits waiting past their bound and is dropped, as designed.
   */
  slowDiskEveryTicks: readonly [number, number];
  /**
   * Per run: chance of one long disk hang, from a tick early in the load
   * (longDiskHangFromTicks) on a node chosen then (half the time one hosting a
   * primary), lasting longDiskHangTicksMin to longDiskHangTicksMax: longer than the
   * primary's stall bound and often than the availability bound, and not ended when
   * faults go off (it may run on into the settle phase). Short hangs (diskHangTicksMax)
   * end before a primary's stall is reported; only a long one shows whether a primary
   * on a hung disk is replaced (the `ignore-primary-stall` sabotage).
   */
  longDiskHangChance: number;
  /**
   * A configure that opens a replica waits while its node's disk hangs, as the shell's
   * reads and writes of the replica's files would (and the partition's later configures
   * queue behind it, one waiting: configure-queue.ts). On by default (session 9): a
   * long hang on a new primary's node leaves the partition with no primary reporting,
   * which the coordinator before then, failing over only a primary that reports itself
   * failed or stalled, kept past the availability bound (4 of seeds 1 to 500: 49, 131,
   * 200, 209; a volume re-created onto the long-hung node; the
   * `keep-unconfirmed-primary` sabotage). Off, the open reads the hung disk at once.
   */
  configuresWaitOnHungDisk: boolean;
  longDiskHangFromTicks: readonly [number, number];
  longDiskHangTicksMin: number;
  longDiskHangTicksMax: number;
  /**
   * The availability check, while loaded: a client's write to a partition waits no
   * longer than this for some write to that partition to be acknowledged, counted from
   * the latest of: the write's attempt (the first one unanswered), the last change of any
   * node's faults (a crash, restart, pause, cut, disk hang or journal failure beginning
   * or ending) and the last tick the partition had no healthy voter (up, running, not cut
   * off, its disk not hung, its replica of the partition open and not failed, on its
   * recorded disk). A partition with a healthy voter is one the coordinator can make
   * available: by the primary itself, or by promoting that secondary once the primary is
   * dead, failed or stalled and its lease has run out. By default
   * `availabilityBoundTicks` of the run's own timings.
   */
  availabilityTicksMax?: number;
  /**
   * Per run, when its long disk hang starts: chance the clients pause with it for
   * clientPauseTicks, as client processes that are stopped (a suspended VM): they send no
   * new request and no retry, read no reply and time nothing out until the pause ends,
   * and no snapshot is asked for either (its note would change the entry too). Only what
   * was in flight when the hang began reaches a primary on the hung disk, so once its
   * followers have acknowledged that, the primary's own stall is the one thing its report
   * changes. Clients that go on retrying hide the `report-ignores-own-stall` sabotage:
   * each retry on the hung primary is a new op, and its acknowledgement a change that
   * carries the stall along. So does a whole report, which here is frequent: a node
   * reports every round whether or not the last one was answered, and one based on a
   * revision older than the coordinator's is refused with `full` (headnode.ts sends one
   * at a time), so the sabotage is caught only in pauses with no whole report for a
   * while. Drawn from a generator of its own, so that runs whose clients never pause
   * replay as before.
   */
  clientPauseChance: number;
  /**
   * How long a pause lasts: at least a primary's stall bound (reached that long after the
   * hang began, by a write in flight then) and stalledPrimaryTicksMax together, so that
   * a stall nobody hears of outlasts the stalled-primary check.
   */
  clientPauseTicks: readonly [number, number];
  /**
   * The stalled-primary check, loaded or settling: a primary whose own journal has kept a
   * write waiting past its stall bound (its reports say `stalledMs`) is no longer the
   * record's primary within this many ticks, counted from the latest of: the tick its
   * stall reached the bound, the last change of any node's faults or of the
   * coordinator's tenure (`legacyRecordChance`'s upgrade: see upgradeCoordinator), and
   * the last tick its partition had no healthy voting secondary to promote. By default
   * `stalledPrimaryBoundTicks` of the run's own timings.
   */
  stalledPrimaryTicksMax?: number;
  /**
   * Per loaded tick and healthy node: chance one of its replicas' journals fails at its
   * next append or truncation (a full or broken disk), failing that replica alone.
   */
  journalFailRate: number;
  /**
   * Per run: chance that, once settled, a secondary's journal fails at its next write
   * (a snapshot's note) while the partition is otherwise idle.
   */
  idleJournalFailChance: number;
  /** Journal failures may strike primaries too (see `mayFailJournal` for what that finds). */
  journalFailPrimaries: boolean;
  /**
   * Per journal failure: chance it strikes every replica on the node's disk (a disk
   * full, or gone read-only), not one alone. Their configures then reopen several failed
   * replicas of one node at about the same time, each taking a session of its own.
   * Drawn from the session generator, and only when above 0.
   */
  diskJournalFailChance: number;
  /**
   * Models the failed marker (journal/failed-marker.ts): a journal that fails keeps its
   * failed append readable (the page cache: FakeJournal `unsynced`) until its machine
   * reboots, and a head node refuses to open it in that boot, as partition-host.ts
   * `openJournal` does: the coordinator rebuilds the replica from its peers, and a lone
   * primary waits for a reboot (in the settle phase, its machine is rebooted). Off by
   * default, so that every seed and sabotage figure from before replays unchanged:
   * failed replicas are then reopened from their durable notes, as before the marker.
   */
  failedMarker: boolean;
  /**
   * With `failedMarker`: per crash, the chance it is a reboot of the machine (the page
   * cache gone, a journal failed in the old boot opened again). Drawn only when on.
   */
  rebootChance: number;
  /**
   * Per learner configure the coordinator sends: chance a copy is also held, as by a
   * coordinator leader frozen inside its checkpoint read (configurer.ts), and delivered
   * to that node when it next starts, before anything else reaches it: by then a newer
   * leader may have made it a voter that acknowledged writes. The head node refuses it
   * (configure-decision.ts, `storedEpoch`); the model coordinator sends no such copy of
   * its own. Drawn from a generator of its own, and only when above 0.
   */
  lateLearnerConfigureChance: number;
  /**
   * Per configure the coordinator sends a voter: chance a copy is also held, as by a
   * coordinator leader frozen past its tenure (configurer.ts), and delivered to that node
   * once it answers that it is out of a later epoch (having closed the replica out,
   * configure-decision.ts `close-out`, or kept the out epoch with nothing open,
   * `keepOutEpoch`): right after, or, with even odds, as its node next starts, if the
   * replica is closed then. Its head node refuses it from the out epoch kept on its disk
   * (the voter-epoch file), failed replica or not; opened, the replica would be a voter
   * of an epoch its members have left. The `epoch-fence` check fails a run in which a
   * replica's core takes an epoch below one its files were configured a voter in or
   * named out in. Drawn from a generator of its own, only when above 0.
   */
  lateVoterConfigureChance: number;
  /**
   * The model coordinator sends a live former member of a replica set the record's epoch
   * until it answers, as configurer.ts does; its head node closes the replica, the out
   * epoch kept on its disk (configure-decision.ts `close-out`). Off: former members never
   * hear they are out and keep their replicas idle, as the model did before (a test's
   * shape that needs a deposed primary to stay hosted until it is re-added).
   */
  tellFormerMembers: boolean;
  /**
   * A failed replica's new session is taken as session.ts does: the session file read,
   * the next number written durably (rename and fsync), one taker at a time per node.
   * While loaded, that write takes up to this many ticks (so the takes of partitions
   * configured at about the same time overlap), and fails with this chance (ENOSPC,
   * EIO): the configure then fails, and the coordinator sends it again. Drawn from a
   * generator of their own.
   */
  sessionWriteTicksMax: number;
  sessionFailRate: number;
  /**
   * While faults are off, a member other than the primary whose replica failed in the
   * record's epoch must leave the record within this many ticks: its node reports the
   * failure at once. Below commitStallTicks, so a coordinator that only drops it once a
   * commit has stalled on it is caught. It starts again while the primary is failed over
   * or counted out with none to promote (`failoverWaits`).
   */
  failedMemberTicksMax: number;
  netPartitionRate: number;
  netPartitionTicksMax: number;
  /**
   * Per loaded tick and node: chance the node is cut from every sled for a stretch of
   * sledCutTicks (a partial cut: the sleds stay up for the other head nodes and for the
   * coordinator, which keeps naming them live). Its chunk writes, whole-chunk reads,
   * checkpoint stores and fetches fail; reads of flushed ranges are not modelled as
   * failing. Drawn from a stream of its own, and only when above 0, so that runs
   * without it replay unchanged. With it on, replicas' journals are bounded at
   * sledCutLogBytesMax unless `limits` says otherwise, so that a primary that cannot
   * flush fills its journal and its writes wait within a run (review-reach R1).
   */
  sledCutRate: number;
  sledCutTicks: [number, number];
  /**
   * Per loaded tick: chance of a one-way or pairwise cut (review-reach), for 10 to
   * oneWayCutTicksMax ticks: one running head node and one other end (another head
   * node, the coordinator or the clients) stop hearing each other in one direction or
   * both, every other path working: answers lost but requests taken (grants, configure
   * acknowledgements, acks, replies), or requests lost while the other way works. A
   * cut between a primary and the clients alone is unavailability the design does not
   * cure (no one tells the coordinator; review-reach R3): the availability check counts
   * afresh while one lasts. Drawn from a stream of its own, and only when above 0.
   */
  oneWayCutRate: number;
  /** Past a commit stall, a failover and a lease, so that cuts outlast what they cause. */
  oneWayCutTicksMax: number;
  /** Each node's monotonic clock runs at 1 ± up to this. */
  clockRateDrift: number;
  /** Per tick and node: chance its monotonic clock jumps forward (up to clockStepMsMax). */
  clockStepRate: number;
  clockStepMsMax: number;
  /**
   * Per pause: chance it is a frozen VM whose clocks are held (kvmclock does so while a
   * guest is stopped): the node's monotonic and wall clocks stand still through it, and
   * the wall clock is set right as it resumes (a guest agent, or NTP stepping it). With
   * it above 0, the node's wall clock alone also steps, either way, as often as the
   * monotonic one steps forward (clockStepRate, up to clockStepMsMax). Drawn from a
   * generator of its own, and only when above 0, so that other runs replay as before.
   */
  frozenClockChance: number;
  /** Per run: chance the volume is deleted and re-created once while loaded. */
  recreateChance: number;
  /**
   * The re-created volume's records start at epoch 1 (as a fresh catalogue would) rather
   * than above every epoch of the deleted incarnation.
   */
  recreateAtEpochOne: boolean;
  diskDelayTicksMax: number;
  chunkFailRate: number;
  /** A checkpoint upload fails; each of its two copies on sleds is lost or corrupt. */
  checkpointUploadFailRate: number;
  checkpointCopyLossRate: number;
  checkpointUploadTicksMax: number;
  /**
   * Sleds in the cluster (sled-1 …). The coordinator's configures name the live ones
   * (configurer.ts), and a replica places new chunk copies on those alone.
   */
  sleds: number;
  /**
   * Per run: chance that only sled-1 is up when the volume is first created, the others
   * coming up sledsLateTicks later (`npm run bench` found a volume created so flushing
   * nothing until the slow refresh).
   */
  sledsLateChance: number;
  sledsLateTicks: readonly [number, number];
  /**
   * Per loaded tick: chance a sled goes down for up to sledDownTicksMax, while fewer
   * than sleds - chunkCopies are down (so the live ones can always take a chunk).
   */
  sledDownRate: number;
  sledDownTicksMax: number;
  clients: number;
  requestRate: number;
  /** Per loaded tick: chance a partition's primary is asked to take or drop a snapshot. */
  snapshotRate: number;
  clientTimeoutTicks: number;
  clientRetries: number;
  /**
   * Per mutation attempt sent while loaded: chance it is held on its way for longer than
   * the client waits (clientTimeoutTicks + 1 to 2 × clientTimeoutTicks), as a frame
   * unread in a link's socket at a primary that stopped reading the connection, while
   * the client's retry and next requests go another way. Lost if the node it is sent to
   * restarts meanwhile (a socket does not outlive its process). Drawn from a generator
   * of its own, so that a run in which no attempt is held replays as before. Off by
   * default, so that every seed and sabotage figure from before replays unchanged; CI's
   * shapes turn it on (simulation.test.ts), as does `--stale-requests P`.
   */
  staleRequestChance: number;
  /**
   * Per coordinator round while loaded: chance that one partition's served bytes (the
   * volume's end within it: coordinator resize.ts) change as a resize changes them, in a
   * new epoch of its record with the same members: lowered to a sector multiple drawn
   * from 0 to the whole partition, or back to whole. Every partition is whole again
   * once the faults stop. The `end` check: no write, trim or write-zeroes reaching past
   * the served bytes of the epoch it was sent in is acknowledged, and no read there
   * answered, across failovers (decisions carry the value into each new record) and
   * stale configures. Drawn from a generator of its own, and off by default, so that
   * every seed and sabotage figure from before replays unchanged; `--end-changes P`.
   */
  endChangeRate: number;
  /**
   * Per run: chance the run re-replicates, drawn from a generator of its own (0 by
   * default, so that every seed from before replays unchanged; `--replicate P`). Such a
   * run keeps which sleds hold each chunk copy, loses sleds' stores now and then
   * (`sledLossRate`), has the model coordinator declare a sled down for `sledOutTicks`
   * out (in the answers to reports, as sleds.ts and the leader do), and runs the head
   * node's own Replicator (replicator.ts) on every node: its passes (`planCopies`, the
   * copies, `recordCopies`, the checkpoint blobs re-stored) every
   * `replicateIntervalTicks` and when the out set changes, and its scrub
   * (`checkChunk`'s repair of a missing copy) every `scrubStepTicks`. Copies take up
   * to `copyTicksMax` ticks, so they race failovers, compactions, drops and lost flush
   * records. Checked: every copy a table lists was written there (`copy-list`), no
   * primary's table lists a chunk no sled holds (`chunk-lost`), and once settled every
   * chunk is back at chunkCopies live copies within `replicationSettleTicksMax`
   * (`re-replication`), and every primary's recorded checkpoint is stored on
   * chunkCopies sleds up that its pointer names (`checkpoint-copies`).
   */
  replicateChance: number;
  replicateIntervalTicks: number;
  scrubStepTicks: number;
  /** A whole scrub pass over a primary's table (the Replicator's scrubIntervalMs). */
  scrubIntervalMs: number;
  /** How often a recorded checkpoint's copies are looked for (checkpointCheckIntervalMs). */
  checkpointCheckIntervalMs: number;
  /** A sled down this long is out of service (the coordinator's sledOutAfterMs). */
  sledOutTicks: number;
  /**
   * Per loaded tick: chance a sled's store is lost (a failed disk) while every table's
   * chunks and every recorded checkpoint have chunkCopies live copies; it is down for
   * sledOutTicks and `sledLossTicks` more, then back empty. At most `sledLossesMax`.
   * A share of them (`sledBackEmptyChance`) is back empty before it is out (a disk
   * replaced, the sled restarted under its old id within sledOutTicks): nothing says
   * its copies are gone but the copies themselves.
   */
  sledLossRate: number;
  sledBackEmptyChance: number;
  /**
   * Per run that re-replicates and settles: chance that, once every copy is in place, a
   * sled a primary's recorded checkpoint names loses its store and is back at once under
   * its old id (never out), after the last checkpoint the load took: only the look for
   * the checkpoint's copies can restore it before the next checkpoint.
   */
  settledBackEmptyChance: number;
  sledLossTicks: readonly [number, number];
  sledLossesMax: number;
  copyTicksMax: number;
  /** While faults are on: chance a copy or a scrub's repair fails. */
  copyFailRate: number;
  replicationSettleTicksMax: number;
  /**
   * While faults are on: chance that a replication message of notes arrives damaged (one
   * note's data with a bit flipped after its checksum was computed, or its checksum
   * field wrong), and chance that a whole-chunk read hands the core bytes with a bit
   * flipped that got past the shell's check; and, four times that (filesDamageFactor),
   * chance that a crash leaves a replica's files damaged (a journal record before the
   * last commit, or the checkpoint file), so that every open of it is refused as
   * partition-host.ts refuses one, until it is rebuilt as a learner: only where another
   * voter holds a sound copy. Such a node is no fault (faultyNodesMax): it reports the
   * replica failed as headnode.ts does (`openFailed`), and the coordinator must fail over
   * to the sound copy with no fault budget spent. Drawn from a generator of its own (0 by
   * default, so that every seed from before replays unchanged; `--corrupt P`). Only
   * what the code claims to detect is damaged: note checksums (replica.ts checks them
   * before a note is journaled) and the chunk's recorded CRC32C (the core checks a
   * victim's bytes again before it relocates them), and damaged files as recovery
   * answers them (refused). Fields no checksum covers (op numbers, offsets) are the
   * transport's to guard (TCP), and which damage journal recovery cuts as a torn tail
   * and which it refuses is the journal's property and unit tests' (the crash here
   * tears the append in progress, as before). Checked: no
   * committed note's data fails its checksum (`damage`), every replica commits the
   * same note at an op (`agreement`), reads and acknowledgements as always, and the
   * cluster heals as always; a core that throws on damage is an `exception`.
   */
  corruptChance: number;
  limits: Partial<ReplicaLimits>;
  sabotage?: Sabotage;
}

/**
 * The availability check's bound (availabilityTicksMax), the sum of what may pass, with
 * every fault as it stands, before a waiting client's write is acknowledged: the
 * primary's own stall bound (primaryStallMsMax), after which its report says it is
 * stalled, or, where configures wait on hung disks, the coordinator's bound for a
 * primary that never takes the record's epoch (primaryUnconfirmedMs: its configure
 * hangs, so it reports nothing), whichever is longer; the failover (failoverTicks: a dead node declared dead, reports and rounds,
 * the promotion's configure, the new primary's inherited tail committed, with messages
 * dropped and delayed on the way); the lease the coordinator waits out before promoting
 * (primaryLeaseMs and its drift margin); and the client's side, three timeouts
 * (clientTimeoutTicks): its attempt on the old primary hangs there until it times out
 * before it asks the new one, and up to two more attempts may be lost on the way (a
 * request or a reply dropped). Runs of 2,000 seeds of each CI shape counted waits of up
 * to 214 ticks (the longest had lost a reply: one timeout more); with two timeouts
 * (253), a second loss in a row would be a false alarm now and then.
 */
export function availabilityBoundTicks(options: {
  tickMs: number;
  roundTicks: number;
  deadAfterTicks: number;
  clientTimeoutTicks: number;
  configuresWaitOnHungDisk: boolean;
  primaryUnconfirmedMs: number;
}): number {
  const ticks = (ms: number) => Math.ceil(ms / options.tickMs);
  const stallTicks = Math.max(
    ticks(limits.primaryStallMsMax),
    options.configuresWaitOnHungDisk ? ticks(options.primaryUnconfirmedMs) : 0,
  );
  return stallTicks + stalledPrimaryBoundTicks(options) + 3 * options.clientTimeoutTicks;
}

/**
 * The stalled-primary check's bound (stalledPrimaryTicksMax): the failover and lease
 * parts of the availability bound, which is what may pass once a primary's report says
 * it stalled before the coordinator has promoted another (failoverTicks: reports and
 * rounds, some lost or delayed, up to a dead node's silence; then the lease the
 * coordinator waits out). No client timeout is in it: the stall is the head node's to
 * report, whatever its clients do.
 */
export function stalledPrimaryBoundTicks(options: {
  tickMs: number;
  roundTicks: number;
  deadAfterTicks: number;
}): number {
  const failoverTicks = options.deadAfterTicks + 4 * options.roundTicks;
  const leaseTicks = Math.ceil(
    (limits.primaryLeaseMs + limits.primaryLeaseDriftMarginMs) / options.tickMs,
  );
  return failoverTicks + leaseTicks;
}

/**
 * The stand-in an update adds (decisions.ts "Stand-ins"): a member beyond the replica
 * count `count`, the primary unchanged; undefined for any other update.
 */
function addedStandIn(
  before: PartitionRecord,
  next: PartitionRecord,
  count: number,
): string | undefined {
  const members = membersOf(next);
  if (next.primary !== before.primary || members.length <= count) return undefined;
  if (members.length <= membersOf(before).length) return undefined;
  return members.find((node) => !membersOf(before).includes(node));
}

export const failoverDefaults: Omit<FailoverOptions, "seed"> = {
  nodes: 5,
  partitions: [3, 2],
  partitionBytes: 32 * 1024,
  loadTicks: 500,
  settleTicksMax: 2500,
  quietTicksBeforeRestart: 100,
  tickMs: 100,
  roundTicks: 5,
  deadAfterTicks: 20,
  configureRefreshTicks: 3000,
  learnerCatchUpMs: 8000,
  // The primary's stall bound: no replica open here takes seconds, and the availability
  // bound is unchanged (the leader's 20 s is sized for journal recovery of large ones).
  primaryUnconfirmedMs: limits.primaryStallMsMax,
  droppedNodeAvoidTicks: 600,
  dropRate: 0.03,
  duplicateRate: 0.02,
  delayTicksMax: 4,
  faultyNodesMax: 1,
  crashRate: 0.004,
  diskLossChance: 0.1,
  legacyRecordChance: 0.3,
  downTicksMax: 60,
  pauseRate: 0.002,
  pauseTicksMin: 35,
  pauseTicksMax: 90,
  diskHangRate: 0.002,
  diskHangTicksMax: 120,
  slowDiskRate: 0,
  slowDiskTicks: [60, 300],
  slowDiskEveryTicks: [3, 50],
  longDiskHangChance: 0.25,
  configuresWaitOnHungDisk: true,
  longDiskHangFromTicks: [10, 120],
  longDiskHangTicksMin: Math.ceil(limits.primaryStallMsMax / 100),
  longDiskHangTicksMax: 800,
  // Half: the other long hangs keep their load, whose writes the availability check needs.
  clientPauseChance: 0.5,
  // From a little above the stall bound (60 ticks) and stalledPrimaryBoundTicks (73).
  clientPauseTicks: [150, 300],
  journalFailRate: 0.002,
  idleJournalFailChance: 0.5,
  journalFailPrimaries: true,
  diskJournalFailChance: 0,
  failedMarker: false,
  rebootChance: 0.5,
  lateLearnerConfigureChance: 0,
  lateVoterConfigureChance: 0.2,
  tellFormerMembers: true,
  sessionWriteTicksMax: 2,
  sessionFailRate: 0.1,
  failedMemberTicksMax: 15,
  netPartitionRate: 0.002,
  netPartitionTicksMax: 150,
  sledCutRate: 0,
  oneWayCutRate: 0,
  oneWayCutTicksMax: 450,
  // Longer than a journal takes to fill at these rates plus the availability bound.
  sledCutTicks: [300, 700],
  clockRateDrift: 0.03,
  clockStepRate: 0.002,
  clockStepMsMax: 5000,
  frozenClockChance: 0,
  recreateChance: 0.25,
  recreateAtEpochOne: false,
  diskDelayTicksMax: 2,
  chunkFailRate: 0.1,
  checkpointUploadFailRate: 0.1,
  checkpointCopyLossRate: 0.1,
  checkpointUploadTicksMax: 3,
  sleds: 3,
  sledsLateChance: 0.3,
  sledsLateTicks: [20, 150],
  sledDownRate: 0.003,
  sledDownTicksMax: 150,
  clients: 5,
  requestRate: 0.5,
  snapshotRate: 0.03,
  clientTimeoutTicks: 60,
  clientRetries: 3,
  staleRequestChance: 0,
  endChangeRate: 0,
  replicateChance: 0,
  replicateIntervalTicks: 20,
  scrubStepTicks: 10,
  scrubIntervalMs: 5_000,
  checkpointCheckIntervalMs: 2_000,
  sledOutTicks: 30,
  sledLossRate: 0.2,
  sledBackEmptyChance: 0.5,
  settledBackEmptyChance: 0.5,
  sledLossTicks: [1, 200],
  sledLossesMax: 3,
  copyTicksMax: 8,
  copyFailRate: 0.1,
  replicationSettleTicksMax: 1500,
  corruptChance: 0,
  limits: {
    flushBytesThreshold: 8 * 1024,
    flushIntervalTicks: 20,
    chunkBytesMax: 16 * 1024,
    checkpointReleasableBytes: 16 * 1024,
    checkpointIntervalTicks: 60,
    resendTicks: 8,
    heartbeatTicks: 3,
    // Often, so that hellos meet every fault (restarts, cuts, epochs changing under them).
    helloTicks: 15,
    requestDeadlineTicks: 100,
    notesInflightMax: 64,
    notesPerMessageMax: 16,
    flushRetryTicks: 10,
    checkpointRetryTicks: 20,
    // commitStallMsMax and the head node's learner pin, at 100 ms a tick.
    commitStallTicks: Math.ceil(limits.commitStallMsMax / 100),
    primaryStallTicks: Math.ceil(limits.primaryStallMsMax / 100),
    learnerPinTicks: 50,
    learnerSilentTicks: 60,
    // Space reclamation often, so that drops and compactions meet every fault.
    dropIntervalTicks: 5,
    compactionIntervalTicks: 25,
    compactionVictimsMax: 4,
    // Small chunks at the head node's ratio, an eighth of chunkBytesMax: few chunks
    // here are that small, so the seeds the checker tests name keep their schedules;
    // simulation.test.ts runs seeds with eager merges too.
    compactionSmallChunkBytes: 2 * 1024,
  },
};

export interface FailoverResult {
  seed: number;
  violations: Violation[];
  stats: {
    ticks: number;
    acknowledgedMutations: number;
    reads: number;
    crashes: number;
    /** Crashes that took the node's disk with them (diskLossChance). */
    diskLosses: number;
    /** Volume incarnations written as records from before disk ids (legacyRecordChance). */
    legacyVolumes: number;
    /** Configures refused for holding nothing of a legacy record's partition (no-replica). */
    noReplicaRefusals: number;
    /**
     * Configures refused for being on another disk than the record's (other-disk), and
     * those the model coordinator then held back (configurer.ts, `otherDiskBackoff`).
     */
    otherDiskRefusals: number;
    otherDiskConfiguresHeld: number;
    /** Nodes killed and back once idle, in the same epoch (after settling). */
    quietRestarts: number;
    pauses: number;
    /** Pauses whose node's clocks stood still (frozenClockChance). */
    frozenPauses: number;
    diskHangs: number;
    /** Slow disk episodes (slowDiskRate). */
    slowDisks: number;
    /** Long disk hangs (longDiskHangChance), counted in diskHangs too. */
    longDiskHangs: number;
    /** Primaries replaced because their reports said their own journal stalled. */
    stallFailovers: number;
    /**
     * Primaries replaced because they had neither acknowledged nor reported the record's
     * epoch for primaryUnconfirmedMsMax (decisions.ts, "Unconfirmed primaries").
     */
    unconfirmedFailovers: number;
    /**
     * The longest wait the availability check counted that ended in an acknowledgement
     * (see availabilityTicksMax): how close a run came to the bound. Main reports the
     * largest over a range of seeds.
     */
    availabilityWaitTicksMax: number;
    /** Long disk hangs the clients paused with (clientPauseChance). */
    clientPauses: number;
    /**
     * The longest a primary stalled on its own journal stayed the record's primary, as
     * the stalled-primary check counts it (see stalledPrimaryTicksMax), until the
     * coordinator replaced it or the stall ended: how close a run came to that bound.
     */
    stalledPrimaryTicksMax: number;
    /** Journals armed to fail, and replicas that failed on one. */
    journalFailures: number;
    /** Journal failures called off on a secondary beside a lost primary copy (primaryCopyLost). */
    journalFailuresBesideLostPrimary: number;
    replicasFailed: number;
    netPartitions: number;
    /** Head nodes cut from every sled (sledCutRate), and flush-stalled failovers. */
    sledCuts: number;
    /** One-way cuts (oneWayCutRate), and of those the pairwise (both ways) ones. */
    oneWayCuts: number;
    pairCuts: number;
    flushStallFailovers: number;
    /**
     * Stand-in learners added (a learner beyond the replica count, for a primary cut
     * from the sleds beside secondaries cut too), and secondaries dropped from a
     * partition over its count.
     */
    standIns: number;
    /** Stand-ins on a spare the partition avoided (dropped lately): no other had evidence. */
    standInsOnAvoided: number;
    /**
     * Learners added for a primary cut from the sleds, short a voter, on a spare reaching
     * them while another live spare was cut too (decisions.ts `decideRebuild`, seed
     * 9790238).
     */
    rebuildsPastCutSpare: number;
    /**
     * Learners sent another checkpoint after one found the one it was sent unusable
     * (`checkpoint-unusable`, decisions.ts `learnerCheckpoint`, seed 9790455).
     */
    learnersPastUnusableCheckpoint: number;
    /**
     * Learner configures sent another replica's checkpoint, newer than the primary's own
     * or with the primary having none (seeds 9760592, 9761092).
     */
    learnersFromNewerCheckpoint: number;
    surplusDrops: number;
    recreates: number;
    promotions: number;
    rebuilds: number;
    epochs: number;
    messagesDropped: number;
    /**
     * Ticks in which some link carried more than linkMessagesPerTickMax messages (the
     * excess is dropped, as a full queue would): a sign of a message storm.
     */
    overloadedLinkTicks: number;
    /** Whole-chunk reads for compaction, and chunks dropped by committed records. */
    chunkReads: number;
    chunksDropped: number;
    /** Snapshot takes and drops asked of primaries, and snapshots read once settled. */
    snapshotRequests: number;
    snapshotsChecked: number;
    /**
     * Failed primaries a configure reopened in place, and of those, the ones whose
     * partition had a live voting secondary on its recorded disk at that moment (one
     * the coordinator could have promoted instead). Since the configurer holds a failed
     * primary that can be failed over (decisions.ts, `failingOver`), what is left of the
     * second are configures of a new epoch that reach a primary whose failure the
     * coordinator had not heard of yet (500 seeds: 4 of 19; before, 117 of 134).
     */
    primariesReopened: number;
    primariesReopenedOverSecondary: number;
    /**
     * Reopened cores handed their failed predecessor's non-empty ordering fence, and of
     * those, the ones whose first configure was of the same epoch and took it back
     * (headnode.ts, kept-fences.ts).
     */
    fencesCarried: number;
    fencesTakenBack: number;
    /**
     * Replicas retired while they held requests (handlers in flight), by a configure
     * (removed or reopened: a woken ex-primary re-added as a learner) and by a drop (the
     * volume deleted): each one the `close-after-handlers` sabotage hangs.
     */
    retiresHoldingRequests: number;
    dropsHoldingRequests: number;
    /**
     * Configures that waited on a hung disk to open a replica, and configures answered
     * Unavailable at once because another one waiting for the same partition was kept
     * (configure-queue.ts).
     */
    configuresWaitingOnDisk: number;
    configuresSuperseded: number;
    /** Late learner configures delivered to a node as it started, and those refused. */
    lateConfiguresDelivered: number;
    lateConfiguresRefused: number;
    /**
     * Late voter configures (lateVoterConfigureChance) delivered to a node that closed the
     * replica out, and those refused for an older epoch than its disk shows.
     */
    lateVoterConfiguresDelivered: number;
    lateVoterConfiguresRefused: number;
    /**
     * Configures sent to live former members of a replica set (configurer.ts), and the
     * replicas closed on being named out (configure-decision.ts `close-out`).
     */
    formerMembersTold: number;
    closedOut: number;
    /** Runs whose volume was created with sled-1 alone up (sledsLateChance), and sleds gone down. */
    sledsLate: number;
    sledOutages: number;
    /**
     * Sessions taken for failed replicas (not a start's), those whose write failed
     * (sessionFailRate), and those begun while another take of the same node was under
     * way (waiting for it, or with the `session-unlocked` sabotage, reading beside it).
     */
    sessionTakes: number;
    sessionTakesFailed: number;
    sessionTakesOverlapping: number;
    /**
     * Mutation attempts held past their client's timeout (staleRequestChance), and the
     * late replies to such attempts that said Superseded (refused by the ordering fence).
     */
    staleRequests: number;
    /** Served-bytes changes made (`endChangeRate`), and requests refused past the end. */
    endChanges: number;
    endRefused: number;
    staleRefused: number;
    /**
     * Runs that re-replicated (replicateChance), sleds' stores lost in them (those back
     * before they were out), chunk copies recorded by flush records (re-replication),
     * copies the scrub repaired, and checkpoint copies stored again.
     */
    replicating: number;
    sledLosses: number;
    sledsBackEmpty: number;
    copiesRecorded: number;
    copiesRepaired: number;
    /** Recorded checkpoints left with one stored copy once settled (settleReplication). */
    checkpointsShortSettled: number;
    /**
     * Damage injected (corruptChance): notes whose data had a bit flipped in flight,
     * notes whose checksum field was wrong, and whole-chunk reads that handed the core
     * damaged bytes.
     */
    notesDamaged: number;
    checksumsDamaged: number;
    chunkReadsDamaged: number;
    /** Replicas whose files a crash left damaged, and opens of them refused. */
    filesDamaged: number;
    opensRefused: number;
    /**
     * Voters opened from an incarnation's files that another incarnation's replica had
     * displaced, that replica removed by the configure (`displaced`).
     */
    displacedOpened: number;
    /**
     * Primaries configured primary again in a newer epoch after a follower's ack of that
     * epoch made them idle, lease grant in hand (the lease-kept check's case).
     */
    leasesKeptThroughIdle: number;
    /**
     * With `failedMarker`: opens refused because the replica's journal failed in this
     * boot; crashes that rebooted the machine; and reboots of the settle phase, for a
     * lone primary whose journal failed (nothing else brings it back).
     */
    opensRefusedFailedBoot: number;
    reboots: number;
    rebootsToSettle: number;
    /** Of those, beside secondaries whose files are refused (seeds 5202 and 5392). */
    rebootsBesideRefused: number;
    /** Nodes the coordinator upgrade took down once the load was over (seed 9610932). */
    upgradeCrashesSettling: number;
    /**
     * Coordinator upgrades while a primary's own stall was counted (the stalled-primary
     * count restarts there: seed 9713028).
     */
    upgradesDuringStalls: number;
    /**
     * Disk losses drawn and not taken because the partition's one other voter was a
     * primary the coordinator is failing over on its own report, its fault perhaps
     * already over (beingDropped, seed 9741540).
     */
    disksKeptBesideFailingPrimary: number;
    /**
     * Partition epochs in which the model coordinator, its primary counted out, kept a
     * live secondary from promotion only because it had answered no configure of the
     * partition, though the record has a disk for it (`unproven`, seed 9781027).
     */
    unheardSecondariesHeld: number;
    checkpointCopiesRestored: number;
    /**
     * Ticks a client's write waited on a partition whose primary is cut from the sleds
     * while no learner can rebuild it (no other member open and reaching the sleds, and no
     * sound copy of a checkpoint as new as the one a learner is given): the availability
     * check restarts its count then (seed 9772507).
     */
    rebuildBlockedWaitTicks: number;
  };
}

/**
 * A replica's files are damaged at a crash with this many times corruptChance: crashes
 * are rare beside messages, and at 0.05 a run would see about one damaged replica in
 * eight seeds otherwise.
 */
const filesDamageFactor = 4;

/** What one link delivers per tick at most; the rest is lost, as from a full queue. */
const linkMessagesPerTickMax = 64;

const volumeName = "sim";
/**
 * A replica's journal bound (logBytesMax) in runs with sled cuts: the partition's
 * bytes, so that a primary that cannot flush fills it within a cut while one that
 * flushes never comes near it.
 */
const sledCutLogBytesMax = 32 * 1024;
const noSledsOut: ReadonlySet<string> = new Set();
/**
 * How long the model coordinator remembers a node's flush stall (flushStalledNodes): 15 s,
 * past a lease and a stall bound as the leader's 30 s is, but short enough that a second
 * node cut within it still fails over within the availability bound.
 */
const flushStallMemoryMs = 15_000;
/** What the head nodes' replicators log goes nowhere. */
const replicatorLog = createLogger({ service: "headnode", nodeId: "simulation", level: "silent" });

// ---------------------------------------------------------------- the simulated world

/** A replica a head node hosts: its disk survives crashes, the core does not. */
interface Hosted {
  volumeId: string;
  partition: number;
  journal: FakeJournal;
  checkpoints: FakeCheckpointFile;
  /**
   * The newest epoch it was configured a voter in, kept on its disk before its core
   * takes it (partition-host.ts `recordVoterEpoch`).
   */
  voterEpoch: number | undefined;
  /**
   * The newest epoch its files were configured a voter in or named out in, whatever the
   * sabotage keeps on its disk: the `epoch-fence` check's record of what must fence them.
   */
  fenceEpoch: number | undefined;
  /**
   * The epoch this replica was added as a learner in, if it was rebuilt as one and has
   * been configured only as a learner since (a head node's freshLearner).
   */
  learnerSince: number | undefined;
  adapter: ReplicaAdapter | undefined;
  /** Carries out the adapter's core's effects; closed when that core's life ends. */
  runner: EffectRunner | undefined;
  /**
   * Being retired (retire.ts): its intake has stopped, as a head node's subscriptions
   * stop and it leaves the tick schedule, so it gets no ticks, replication messages or
   * requests and is not reported. Only a retire that waits on handlers (the
   * `close-after-handlers` sabotage) leaves one so past the message that began it.
   */
  retiring: boolean;
  /**
   * Closed and no longer hosted (headnode.ts `close` takes it out of `hosted`), its
   * files kept: a configure finds nothing hosted and opens it from them. Only the old
   * order of a failed replica's reopen leaves one so past its configure (the
   * `session-after-close` sabotage: the session taken after the close failed).
   */
  closed: boolean;
  /**
   * The ordering fence of its core closed after a failure (headnode.ts, kept-fences.ts),
   * in the node's life it was kept in: handed to the next core opened in that life.
   */
  keptFence: { life: number; fence: KeptFence } | undefined;
  /** The epoch of the fence carried into its core, until that core's first configure. */
  carriedEpoch?: number | undefined;
  /**
   * Its files were damaged on disk while its node was down (corruptChance): a journal
   * record before the last commit, or the checkpoint file. Recovery refuses them
   * (JournalCorruptError, CheckpointDamagedError), so every open fails, as
   * partition-host.ts `open` does, until a rebuild as a learner discards them.
   */
  filesDamaged?: boolean;
  /**
   * With `failedMarker`: the boot of its node's machine its journal failed in (the
   * marker's record). Its files are not opened in that boot; after a reboot they are,
   * and the record goes.
   */
  failedInBoot?: number;
}

interface SimulatedNode {
  id: string;
  up: boolean;
  /** The machine's boot: one more on every reboot (`rebootChance`). */
  boot: number;
  restartTick: number;
  pausedUntilTick: number;
  diskHungUntilTick: number;
  /** Its disk hang is the run's long one, which goes on when faults go off. */
  diskHangLong: boolean;
  /**
   * A slow disk (`slowDiskRate`): from `fromTick` until `untilTick` it makes work durable
   * only on every `everyTicks`-th tick. Undefined when it is not slow.
   */
  diskSlow: { fromTick: number; untilTick: number; everyTicks: number } | undefined;
  /**
   * Until this tick, cut off from everyone ("isolated"), from the other head nodes only
   * ("peers"), or from the other head nodes and the coordinator while clients still
   * reach it ("cluster": the deposed primary a lease exists for).
   */
  cut: { kind: "isolated" | "peers" | "cluster"; untilTick: number } | undefined;
  /** Until this tick, cut from every sled (sledCutRate) while the sleds are up. */
  sledsCutUntilTick: number;
  /** When the cut that lasts until sledsCutUntilTick began. */
  sledsCutFromTick: number;
  /**
   * Sled probes the leader asked for that got their copies (sled-probe.ts), and when the
   * last began (nowMs): its reports' `sledStores` add them to its chunk writes and blob
   * stores.
   */
  probeStores: number;
  lastProbeMs: number;
  /** Its data directory's id: a new one when the disk is lost. */
  disk: string;
  /** The session this life started in: a new one on every start (session.ts). */
  session: number;
  /**
   * The session file (session.ts): the last session taken on this disk, durable. A
   * replica reopened after its journal failed takes one of its own above the node's
   * (headnode.ts), and the next start goes beyond.
   */
  sessionStored: number;
  /**
   * Every session this node was given, on any of its disks: for the session check,
   * not the node's (sessions are unique per node: session.ts).
   */
  sessionsTaken: Set<number>;
  /** Session takes one at a time (session.ts `sessionFiles`; this life's). */
  sessionLock: KeyedLock;
  /** Session takes under way (this life's), for the overlap count. */
  sessionTakesRunning: number;
  /** Bumped on every start, so completions from an earlier life are dropped. */
  life: number;
  clock: DriftingClock;
  /** This pause holds its clocks (frozenClockChance). */
  clocksHeld: boolean;
  /** How far its clocks fell behind in this pause: its wall clock is set right on resume. */
  heldMs: number;
  hosted: Map<number, Hosted>;
  /**
   * Per partition, a voter a configure could not open (its files refused), reported
   * failed as headnode.ts reports it (primary-report.ts `unopenedReporter`; this life's).
   */
  unopened: Map<number, UnopenedReplica>;
  droppedVolumeIds: Set<string>;
  /**
   * Epochs kept on its disk for incarnations' partitions it holds nothing else of (a
   * partition directory with only its voter-epoch file, partition-host.ts `keepEpoch`:
   * a learner's rebuild whose fetch failed), by `volumeId/partition`. Lost with the disk.
   */
  keptEpochs: Map<string, number>;
  /**
   * Replicas of an incarnation closed with their files kept (a failed journal's open
   * refused, named out) whose partition another incarnation's replica took in `hosted`
   * since, by `volumeId/partition`: their directory stays on the disk (partition-host.ts
   * keeps each incarnation's apart), with its epochs and failed marker, for a delayed
   * configure of that incarnation to find. Lost with the disk.
   */
  displaced: Map<string, Hosted>;
  /** What the coordinator holds of this node's primaries (this life's). */
  reportState: ReportState;
  /**
   * Configures and drops of one partition, run one at a time in arrival order, as
   * headnode.ts's `serially` runs them (this life's: a crash abandons what waits).
   */
  serially: KeyedLock;
  /** Configures under `serially`, at most one waiting per partition (this life's). */
  configures: ConfigureQueue<ConfigureMessage, void>;
  /**
   * Partitions whose running configure or drop waits on handlers in flight or on the
   * hung disk: what arrives for them waits behind it (see `serially`).
   */
  stuck: Map<number, { promise: Promise<void>; resolve: () => void }>;
  /** Work waiting for the disk to answer again (this life's). */
  diskWaiters: (() => void)[];
  /** The head node's re-replication (this life's; runs that re-replicate only). */
  replicator: Replicator | undefined;
}

type Envelope =
  | { kind: "replication"; from: string; to: string; message: ReplicationMessage }
  | {
      kind: "request";
      client: number;
      to: string;
      attempt: number;
      request: SimRequest;
      /** For a request held in a socket: the target's session (its life) when sent. */
      heldFor?: number;
    }
  | { kind: "reply"; from: string; client: number; attempt: number; outcome: ClientOutcome }
  | { kind: "configure"; to: string; configure: ConfigureMessage }
  | { kind: "drop"; to: string; volumeId: string }
  | { kind: "report"; from: string; report: NodeReport }
  | {
      kind: "grant";
      to: string;
      /** The node's session the report was from: an answer to an earlier life is dropped. */
      session: number;
      sentAt: ClockReading;
      /** The report this answers, as its sender remembers it. */
      sent: Outgoing;
      /** The replicas it reported as primaries, as its sender remembers them. */
      reported: ReadonlyMap<string, ReplicaAdapter>;
      answer: Parameters<ReportState["onAnswer"]>[1];
      /** The sleds out of service (the answer's `sledsOut`), in runs that re-replicate. */
      sledsOut?: readonly string[];
      /** Sleds back on another data directory, to audit (the answer's `sledsToAudit`). */
      sledsToAudit?: readonly { sled: string; disk: string }[];
      /** The leader wants evidence that the node reaches the sleds (`probeSleds`). */
      probeSleds?: true;
    };

interface ConfigureMessage {
  volumeId: string;
  partition: number;
  configuration: Configuration;
  /** A fresh incarnation's first placement: voters start empty. */
  create: boolean;
  /** The disk the record has this member on, if any (configurer.ts). */
  disk?: string;
  /** The live sleds as the coordinator saw them (configurer.ts). */
  sleds: readonly string[];
  /** The sender records members' disks (configurer.ts): without `disk`, a legacy member. */
  disksRecorded: boolean;
  /** For a learner: the epoch it was added in, and the checkpoint to rebuild from. */
  learnerSince?: number;
  checkpoint?: CheckpointPointer;
}

interface NodeReport {
  node: string;
  /** Its data directory's id, as a head node's heartbeats carry it. */
  disk: string;
  session: number;
  /** The node's clocks when it sent the report: its leases count from here. */
  sentAt: ClockReading;
  /** A change to the state the coordinator holds of the node (report-state.ts). */
  sent: Outgoing;
  /** The replicas it reports as primaries (kept by the node: never read by the coordinator). */
  reported: ReadonlyMap<string, ReplicaAdapter>;
  /** Its stores that got their copies (the report's `sledStores`). */
  sledStores: number;
}

// ---------------------------------------------------------------- the replica adapter

/**
 * The replica core as the simulated head node drives it: configured as a leased primary
 * (unless the lease sabotage is on), leases renewed on the node's clocks, and
 * its report entries built by the head node's own pure functions (primary-report.ts).
 */
class ReplicaAdapter implements Reporter {
  readonly replica: Replica;
  private readonly leased: boolean;
  /** Off for the `ignore-primary-stall` sabotage: reports never say the primary stalled. */
  private readonly reportsOwnStall: boolean;
  /** Off for the `ignore-flush-stall` sabotage: reports never say its flushes all fail. */
  private readonly reportsFlushStall: boolean;

  private readonly address: ReportAddress;
  private readonly tickMs: number;
  /**
   * Set once its journal failed (partition-host.ts): the core is done, its runner
   * closed, and it takes no ticks, messages or requests until the replica is reopened.
   */
  failed: string | undefined;
  /** The tick it failed at; whether the failed-member check has flagged it. */
  failedAtTick = 0;
  /**
   * From when the failed-member bound counts: the failure, or later, the last tick its
   * partition's primary had failed too (a failed voter is dropped only while a primary
   * lives: with both failed, the primary's failover, which waits out its lease, comes first).
   */
  boundFromTick = 0;
  flaggedLate = false;
  /**
   * Requests the core holds, unanswered (client mutations and flushes, snapshot takes
   * and drops): each is a subscription's handler in flight on a head node, which a
   * retire's stopped intake waits for (retire.ts).
   */
  readonly held = new Set<number>();
  private idleWaiters: (() => void)[] = [];
  /**
   * For the `stall-on-slow-writes` sabotage: when each held request was handed over,
   * the ticks now, and the stall bound its reports use instead of the core's count.
   */
  private readonly heldSince = new Map<number, number>();
  private readonly stallOnSlowWrites: { tickNow: () => number; stallTicks: number } | undefined;
  /** Set for the `promote-unheard-learner` sabotage: reports never say a learner is unheard. */
  hidesUnheard = false;

  constructor(
    replica: Replica,
    leased: boolean,
    reportsOwnStall: boolean,
    reportsFlushStall: boolean,
    volumeId: string,
    tickMs: number,
    stallOnSlowWrites?: { tickNow: () => number; stallTicks: number },
  ) {
    this.replica = replica;
    this.leased = leased;
    this.reportsOwnStall = reportsOwnStall;
    this.reportsFlushStall = reportsFlushStall;

    this.address = { volume: volumeName, volumeId, partition: replica.identity.partition };
    this.tickMs = tickMs;
    this.stallOnSlowWrites = stallOnSlowWrites;
  }

  configure(configuration: Configuration): void {
    this.replica.configure({ ...configuration, leased: this.leased });
  }

  /** A request handed to the core: its handler runs until it is answered. */
  hold(requestId: number): void {
    this.held.add(requestId);
    if (this.stallOnSlowWrites !== undefined)
      this.heldSince.set(requestId, this.stallOnSlowWrites.tickNow());
  }

  /** A request answered (by the core, or by its replica's close or failure). */
  answered(requestId: number): void {
    this.heldSince.delete(requestId);
    if (!this.held.delete(requestId) || this.held.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Settles once no handler is in flight. */
  handlersDone(): Promise<void> {
    if (this.held.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  renewLease(epoch: number, sentAt: ClockReading, leaseMs: number): void {
    // As partition-host.ts: a failed replica holds no lease.
    if (this.failed !== undefined) return;
    this.replica.renewLease(epoch, sentAt, leaseMs);
  }

  read(epoch: number, ranges: { offset: number; length: number }[], now: ClockReading): ReadResult {
    if (this.failed !== undefined)
      throw new BallastError(ErrorCode.Unavailable, `replica failed: ${this.failed}`);
    return this.replica.read(epoch, ranges, now);
  }

  get tailCommitted(): boolean {
    return this.failed === undefined && this.replica.tailCommitted;
  }

  /** Its entry of `failures`, as its head node reports it (primary-report.ts). */
  failureReport(): FailedReplica | undefined {
    return failedReplicaOf(this.replica, this.address, this.failed !== undefined);
  }

  /** The disks its node's replicator audited its table for (replicator.ts `auditedDisks`). */
  auditedDisks: () => readonly string[] = () => [];

  /** Its entry of `primaries`, as its head node reports it (primary-report.ts). */
  report(): PrimaryReport | undefined {
    const built = primaryReportOf(this.replica, this.address, this.failed !== undefined, {
      tickMs: this.tickMs,
      // The simulated coordinator declares no sled out.
      sledsOut: noSledsOut,
      auditedDisks: this.auditedDisks(),
    });
    // The sabotage: the followers as a head node before session 29 reported them.
    const report =
      built !== undefined && this.hidesUnheard
        ? { ...built, followers: built.followers.map(({ unheard: _, ...follower }) => follower) }
        : built;
    if (report !== undefined && this.stallOnSlowWrites !== undefined) {
      // The sabotage: the oldest request held, however the journal progresses.
      const { tickNow, stallTicks } = this.stallOnSlowWrites;
      const oldest = Math.min(...this.heldSince.values());
      const waited = tickNow() - oldest;
      return waited >= stallTicks ? { ...report, stalledMs: waited * this.tickMs } : report;
    }
    if (report === undefined || (this.reportsOwnStall && this.reportsFlushStall)) return report;
    const { stalledMs, flushStalledMs, ...rest } = report;
    return {
      ...rest,
      ...(stalledMs !== undefined && this.reportsOwnStall ? { stalledMs } : {}),
      ...(flushStalledMs !== undefined && this.reportsFlushStall ? { flushStalledMs } : {}),
    };
  }
}

/**
 * A retire's wait for the handlers in flight on a replica (its held requests), as a
 * stopped subscription's promise. Awaited while some are in flight, it says so
 * (`onWait`), so that the configures of the partition queue behind the retire; what that
 * returns is called once they have all finished. A thenable rather than a promise so
 * that the simulation sees when the retire awaits it, with no timer: in retire.ts's
 * order that is after the close has answered them all, and nothing waits.
 */
class HandlersInFlight implements PromiseLike<undefined> {
  constructor(
    private readonly adapter: ReplicaAdapter | undefined,
    private readonly onWait: () => () => void,
  ) {}

  // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose, to see when it is awaited
  then<A = undefined, B = never>(
    onDone?: ((value: undefined) => A | PromiseLike<A>) | null,
    onFailed?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): PromiseLike<A | B> {
    if (this.adapter === undefined || this.adapter.held.size === 0)
      return Promise.resolve(undefined).then(onDone, onFailed);
    const waited = this.onWait();
    return this.adapter
      .handlersDone()
      .then(() => {
        waited();
        return undefined;
      })
      .then(onDone, onFailed);
  }
}

/**
 * The order before 3ae96e2, for the `close-after-handlers` sabotage: the handlers in
 * flight awaited before the replica is closed (see retire.ts).
 */
async function retireHandlersFirst(ports: RetirePorts): Promise<void> {
  await ports.stopIntake();
  await ports.closeReplica();
}

// ---------------------------------------------------------------- clients

/** Client `index`'s session, for its attempts' fences: a fixed, valid hex id. */
function clientSession(index: number): string {
  return (index + 1).toString(16).padStart(limits.clientSessionHexLength, "0");
}

interface ClientAttempt {
  attempt: number;
  partition: number;
  volumeId: string;
  request: SimRequest;
  issuedTick: number;
  acknowledgedBefore: number;
  retriesLeft: number;
}

interface SimulatedClient {
  routes: Map<number, { node: string; epoch: number; volumeId: string }>;
  outstanding: ClientAttempt | undefined;
  /**
   * Per partition incarnation ("volumeId/partition"), the last mutation attempt
   * acknowledged and its first op: the `fence` check compares late replies with it.
   */
  acknowledged: Map<string, { attempt: number; opNumFirst: number }>;
}

/** What one partition incarnation is checked against. */
interface Watched {
  checker: Checker;
  model: AcknowledgedModel;
}

// ---------------------------------------------------------------- the simulation

export class FailoverSimulation {
  readonly options: FailoverOptions;
  private readonly random: SimRandom;
  private readonly world: SimWorld;
  private readonly violations: Violation[] = [];
  private readonly nodes: SimulatedNode[] = [];
  private readonly clients: SimulatedClient[] = [];
  private readonly network: FakeNetwork<Envelope>;
  private readonly sleds: FakeSleds;
  /**
   * Per sled, the tick it is down until (up from then on). Drawn from a generator of its
   * own, so that the other streams replay as before while no sled goes down.
   */
  private readonly sledDownUntil = new Map<string, number>();
  private readonly sledRandom: SimRandom;
  /** Draws which learner configures a frozen leader holds (`lateLearnerConfigureChance`). */
  private readonly lateConfigureRandom: SimRandom;
  /** Per node, per partition: the learner configure held for its next start. */
  private readonly lateConfigures = new Map<string, Map<number, ConfigureMessage>>();
  /** Draws which voter configures a frozen leader holds (`lateVoterConfigureChance`). */
  private readonly lateVoterRandom: SimRandom;
  /**
   * Per node, per partition: the newest voter configure held, to be delivered once the
   * node closes the replica out, at once or (`atStart`) as it next starts.
   */
  private readonly lateVoterConfigures = new Map<
    string,
    Map<number, { configure: ConfigureMessage; atStart: boolean }>
  >();
  /** Late voter configures on their way, to count their refusals. */
  private readonly lateVoterCopies = new WeakSet<ConfigureMessage>();
  /** The coordinator's checkpoint pointers, per volume id/partition/node. */
  private readonly checkpointRecords = new FakeCheckpointRecords();
  /**
   * The model coordinator's `unusableCheckpoints` (tenure.ts): per `volumeId/partition`,
   * the checkpoint blobs a learner found no usable copy of.
   */
  private readonly unusableCheckpoints = new Map<string, Set<string>>();
  private readonly watched = new Map<string, Watched>();
  private tickNow = 0;
  private nextAttempt = 1;
  private faultsOn = true;
  private faultsOffTick = 0;
  private recreateAtTick = -1;
  /** The run's long disk hang: from this tick (once there is room), this long. */
  private longHangAtTick = -1;
  private longHangTicks = 0;
  /**
   * The availability check's state: every node's faults as of the last tick, and since
   * when they have been so; per partition, the first write attempt not yet followed by
   * an acknowledged write, and the last tick the partition had no healthy voter.
   */
  private readonly availabilityTicksMax: number;
  private faultState = "";
  private faultStateSinceTick = 0;
  /**
   * The tick the model coordinator's current tenure began (its upgrade): the
   * stalled-primary check counts from it too (see upgradeCoordinator).
   */
  private tenureSinceTick = 0;
  private readonly availability = new Map<
    number,
    { waitingSinceTick: number | undefined; noVoterTick: number }
  >();
  /**
   * The clients pause until this tick (clientPauseChance), drawn from a generator of its
   * own, so that the other streams replay as before in runs where they do not.
   */
  private clientsPausedUntilTick = 0;
  private readonly pauseRandom: SimRandom;
  /** Which pauses hold their node's clocks, and wall clock steps (frozenClockChance). */
  private readonly frozenRandom: SimRandom;
  /** Sled cuts (sledCutRate), drawn apart so that runs without them replay unchanged. */
  private readonly sledCutRandom: SimRandom;
  /** One-way and pairwise cuts (oneWayCutRate), likewise. */
  private readonly oneWayRandom: SimRandom;
  /**
   * The directed links cut now (oneWayCutRate): nothing passes from `from` to `to`
   * ("coordinator" and "client" are ends too) until `untilTick`; `owner` is the head node
   * the cut counts as a fault of.
   */
  private oneWayCuts: { from: string; to: string; owner: string; untilTick: number }[] = [];
  /**
   * Session writes' times and failures, and journal failures of whole disks, drawn from a
   * generator of their own, so that the other streams replay as before while no failed
   * replica takes a session.
   */
  private readonly sessionRandom: SimRandom;
  /** Draws which attempts are held in a socket (staleRequestChance). */
  private readonly staleRandom: SimRandom;
  /** Draws the slow disks (`slowDiskRate`). */
  private readonly slowRandom: SimRandom;
  /** Draws the served-bytes changes (`endChangeRate`). */
  private readonly endRandom: SimRandom;
  /**
   * Each record epoch's served bytes, by "volumeId/partition/epoch" (absent: whole), for
   * the `end` check.
   */
  private readonly servedByEpoch = new Map<string, number>();
  /** Draws the damage of messages and chunk reads (corruptChance). */
  private readonly corruptRandom: SimRandom;
  /**
   * Re-replication (replicateChance): whether this run has it, and its draws (sled
   * losses, copy times and failures), from a generator of its own. Per sled, the tick
   * it last went down (out once down sledOutTicks).
   */
  private readonly replicating: boolean;
  private readonly replicateRandom: SimRandom;
  private readonly sledDownFrom = new Map<string, number>();
  /** Sleds whose current outage is a lost store. */
  private readonly lostSleds = new Set<string>();
  /** Stores lost so far: each sled comes back on a directory whose id counts them. */
  private disksLost = 0;
  /** Sleds whose store was lost, with their new directory's id, until heard up again. */
  private readonly newDisks = new Map<string, string>();
  /** Sleds heard from a new directory not yet audited by every primary (sleds.ts). */
  private readonly refilling = new Map<string, string>();
  /** Mutation attempts sent: whose, and to which partition incarnation (the fence check). */
  private readonly mutationAttempts = new Map<
    number,
    { client: number; partition: number; volumeId: string }
  >();
  /**
   * The session check's record, per node, partition incarnation and epoch: each life of
   * the node's replica (a core, from its open to its close, failure or crash) configured
   * in that epoch, and its session.
   */
  private readonly lives = new Map<string, { adapter: ReplicaAdapter; session: number }[]>();
  /**
   * The stalled-primary check's state, per partition: the primary replica stalled on its
   * own journal and since when (the tick its stall reached the bound), and the last tick
   * the partition had no healthy voting secondary.
   */
  private readonly stalledTicksMax: number;
  private readonly ownStalls = new Map<
    number,
    { adapter: ReplicaAdapter; sinceTick: number; flagged: boolean }
  >();
  private readonly noSecondaryTick = new Map<number, number>();
  private readonly stats: FailoverResult["stats"] = {
    ticks: 0,
    acknowledgedMutations: 0,
    reads: 0,
    crashes: 0,
    diskLosses: 0,
    legacyVolumes: 0,
    noReplicaRefusals: 0,
    otherDiskRefusals: 0,
    otherDiskConfiguresHeld: 0,
    quietRestarts: 0,
    pauses: 0,
    frozenPauses: 0,
    diskHangs: 0,
    slowDisks: 0,
    longDiskHangs: 0,
    stallFailovers: 0,
    unconfirmedFailovers: 0,
    availabilityWaitTicksMax: 0,
    clientPauses: 0,
    stalledPrimaryTicksMax: 0,
    journalFailures: 0,
    journalFailuresBesideLostPrimary: 0,
    replicasFailed: 0,
    netPartitions: 0,
    sledCuts: 0,
    oneWayCuts: 0,
    pairCuts: 0,
    flushStallFailovers: 0,
    standIns: 0,
    standInsOnAvoided: 0,
    rebuildsPastCutSpare: 0,
    learnersPastUnusableCheckpoint: 0,
    learnersFromNewerCheckpoint: 0,
    surplusDrops: 0,
    recreates: 0,
    promotions: 0,
    rebuilds: 0,
    epochs: 0,
    messagesDropped: 0,
    overloadedLinkTicks: 0,
    chunkReads: 0,
    chunksDropped: 0,
    snapshotRequests: 0,
    snapshotsChecked: 0,
    primariesReopened: 0,
    primariesReopenedOverSecondary: 0,
    fencesCarried: 0,
    fencesTakenBack: 0,
    retiresHoldingRequests: 0,
    dropsHoldingRequests: 0,
    configuresWaitingOnDisk: 0,
    configuresSuperseded: 0,
    lateConfiguresDelivered: 0,
    lateConfiguresRefused: 0,
    lateVoterConfiguresDelivered: 0,
    lateVoterConfiguresRefused: 0,
    formerMembersTold: 0,
    closedOut: 0,
    sledsLate: 0,
    sledOutages: 0,
    sessionTakes: 0,
    sessionTakesFailed: 0,
    sessionTakesOverlapping: 0,
    staleRequests: 0,
    endChanges: 0,
    endRefused: 0,
    staleRefused: 0,
    replicating: 0,
    sledLosses: 0,
    copiesRecorded: 0,
    copiesRepaired: 0,
    checkpointsShortSettled: 0,
    notesDamaged: 0,
    checksumsDamaged: 0,
    chunkReadsDamaged: 0,
    filesDamaged: 0,
    opensRefused: 0,
    displacedOpened: 0,
    leasesKeptThroughIdle: 0,
    opensRefusedFailedBoot: 0,
    reboots: 0,
    rebootsToSettle: 0,
    rebootsBesideRefused: 0,
    upgradeCrashesSettling: 0,
    upgradesDuringStalls: 0,
    disksKeptBesideFailingPrimary: 0,
    unheardSecondariesHeld: 0,
    sledsBackEmpty: 0,
    checkpointCopiesRestored: 0,
    rebuildBlockedWaitTicks: 0,
  };
  /** Snapshot ids drawn so far, and the request ids their takes and drops use (no client's). */
  private snapshotsDrawn = 0;
  private snapshotRequestId = 2 ** 40;
  /** The drop-referenced-chunk sabotage has struck. */
  private sabotagedDrop = false;

  // The model coordinator's state.
  private volumeId = "";
  private incarnation = 0;
  /**
   * Per partition, the voters of the incarnation's first record that have been voters
   * ever since: one that holds no replica has never acknowledged an op, so no op can have
   * committed, and it may start empty. Anyone else with nothing must rebuild as a learner.
   */
  private readonly originalVoters = new Map<number, Set<string>>();
  /** Record epochs counted in `unheardSecondariesHeld` (volume id, partition, epoch). */
  private readonly unheardHeld = new Set<string>();
  private readonly records = new Map<number, { record: PartitionRecord; revision: number }>();
  private readonly lastHeardTick = new Map<string, number>();
  private readonly reports = new Map<number, Report>();
  /**
   * Per partition, the tick at which a primary last sent a report naming each follower
   * unfit (stalled or needing a rebuild), or itself (`failsOverOnReport`): the
   * coordinator drops the follower, or fails the primary over, on that report, which may
   * still be on its way (anotherCopyOfAll).
   */
  private readonly namedUnfit = new Map<number, Map<string, number>>();
  /** Reports as first seen, for the stale-promotion sabotage. */
  private readonly staleReports = new Map<number, Report>();
  /** Node leases, as the real leader keeps them (coordinator/src/leases.ts). */
  private readonly leases = new LeaseBook({
    leaderSinceMs: Number.NEGATIVE_INFINITY,
    leaseMs: limits.primaryLeaseMs,
    driftMarginMs: limits.primaryLeaseDriftMarginMs,
    reportAgeMsMax: Number.POSITIVE_INFINITY,
  });
  private readonly learnersSince = new Map<number, Map<string, { ms: number; epoch: number }>>();
  /** As the reconciler: per partition, when each joiner joined (`joinersSinceMs`). */
  private readonly joinersSince = new Map<number, Map<string, number>>();
  /**
   * Per partition, since when its primary has not confirmed the record's epoch
   * (reconciler.ts `unconfirmed`): neither acknowledged its configure nor reported in it.
   */
  private readonly unconfirmed = new Map<number, Unconfirmed>();
  /** As the reconciler: when each node last reported a primary whose flushes all fail. */
  private readonly flushStalls = new Map<string, number>();
  /** Evidence that head nodes reach the sleds, as the real leader keeps it (sled-reach.ts). */
  private readonly sledReach = new SledReach();
  /**
   * Partitions whose last decision waited out a primary's lease to fail over (the
   * primary failed, stalled, unconfirmed or cut from the sleds), or found no voter to
   * fail over to and keeps the record as it is (`unavailable`: "it may yet recover",
   * decisions.ts): their failed members leave with that failover or once the primary
   * is back, not within failedMemberTicksMax (checkFailedMembers).
   */
  private readonly failoverWaits = new Set<number>();
  /** Per partition, live nodes dropped from it and until when to avoid re-adding them. */
  private readonly dropped = new Map<number, Map<string, number>>();
  /**
   * Per partition and member, the epoch its head node acknowledged a configure of and
   * when (configurer.ts `tenure.configured`): a member is pushed its record only when
   * that is not the record's epoch or the refresh is due.
   */
  private readonly configured = new Map<
    number,
    Map<string, { epoch: number; atTick: number; disk?: string; sleds: readonly string[] }>
  >();
  /** The tick the coordinator from before disk ids is upgraded at (legacyRecordChance). */
  private legacyUpgradeTick = -1;
  /**
   * Nodes whose disk the upgrade replaced once faults were off (upgradeCoordinator):
   * restarted at their restartTick by `step`, since injectFaults, which restarts crashed
   * nodes while loaded, no longer runs.
   */
  private readonly upgradeRestarts = new Set<SimulatedNode>();
  /** Per partition, members that refused an epoch for holding nothing (`no-replica`). */
  private readonly noReplica = new Map<number, Map<string, number>>();
  /**
   * Per partition, members whose acknowledgement a restart or a return from silence
   * forgot and that have acknowledged nothing since (tenure.ts `forgetConfigured` marks
   * it epoch −1; configurer.ts `reopeningMembers`).
   */
  private readonly reopening = new Map<number, Set<string>>();
  /**
   * Per partition, members that refused an epoch for being on another disk (`other-disk`)
   * and when (configurer.ts `tenure.otherDisk`): not sent it again for a while.
   */
  private readonly otherDisk = new Map<number, Map<string, { epoch: number; atMs: number }>>();
  /** Per head node, the newest report (session, seq) whose entries were taken. */
  private readonly reportsApplied = new Map<string, { session: number; seq: number }>();
  /** Each head node's disk, from its newest report (as membership keeps heartbeats'). */
  private readonly disks = new Map<string, string>();
  /** Each head node's newest session heard of: a newer one is a restart. */
  private readonly sessions = new Map<string, number>();

  constructor(options: FailoverOptions) {
    this.options = options;
    this.availabilityTicksMax = options.availabilityTicksMax ?? availabilityBoundTicks(options);
    this.stalledTicksMax = options.stalledPrimaryTicksMax ?? stalledPrimaryBoundTicks(options);
    // Neighbouring small seeds give xoroshiro's first outputs little entropy: mix first.
    this.random = new SimRandom(mixSeed(options.seed));
    this.world = simWorld(
      this.random,
      { tick: () => this.tickNow, faultsOn: () => this.faultsOn },
      (check, message) => this.fail(check, message),
    );
    this.network = new FakeNetwork(this.world, options);
    this.replicateRandom = new SimRandom(mixSeed(options.seed ^ 0x7e91c));
    this.replicating =
      options.replicateChance > 0 && this.replicateRandom.chance(options.replicateChance);
    if (this.replicating) this.stats.replicating = 1;
    this.sleds = new FakeSleds(this.world, {
      chunkFailRate: options.chunkFailRate,
      chunkWriteTicksMax: 4,
      blobPutFailRate: options.checkpointUploadFailRate,
      blobCopyLossRate: options.checkpointCopyLossRate,
      blobPutTicksMax: options.checkpointUploadTicksMax,
      sledUp: (sled) => this.sledUp(sled),
      // Only runs that re-replicate lose sleds' stores.
      perSledCopies: this.replicating,
      readDamaged: () => this.damageDrawn("chunk"),
      ownerCut: (owner) => this.sledsCut(owner),
    });
    this.corruptRandom = new SimRandom(mixSeed(options.seed ^ 0xc0bb7));
    this.sledRandom = new SimRandom(mixSeed(options.seed ^ 0x51ed5));
    this.pauseRandom = new SimRandom(mixSeed(options.seed ^ 0xc11e7));
    this.frozenRandom = new SimRandom(mixSeed(options.seed ^ 0xf203e));
    this.sledCutRandom = new SimRandom(mixSeed(options.seed ^ 0x5c07));
    this.oneWayRandom = new SimRandom(mixSeed(options.seed ^ 0x0e3a7));
    this.sessionRandom = new SimRandom(mixSeed(options.seed ^ 0x5e551));
    this.lateConfigureRandom = new SimRandom(mixSeed(options.seed ^ 0x1a7e));
    this.lateVoterRandom = new SimRandom(mixSeed(options.seed ^ 0x7e0c));
    this.staleRandom = new SimRandom(mixSeed(options.seed ^ 0x57a1e));
    this.slowRandom = new SimRandom(mixSeed(options.seed ^ 0x5102d));
    this.endRandom = new SimRandom(mixSeed(options.seed ^ 0xe2d));
    for (let index = 1; index <= options.sleds; index++) this.sledDownUntil.set(`sled-${index}`, 0);
    if (this.sledRandom.chance(options.sledsLateChance)) {
      const [from, to] = options.sledsLateTicks;
      const upAt = this.sledRandom.integer(from, to);
      this.stats.sledsLate++;
      for (const sled of this.sledDownUntil.keys())
        if (sled !== "sled-1") this.sledDownUntil.set(sled, upAt);
    }
    for (let index = 0; index < options.nodes; index++) {
      const drift = options.clockRateDrift;
      const serially = new KeyedLock();
      const node: SimulatedNode = {
        id: `head-${index + 1}`,
        up: true,
        restartTick: 0,
        boot: 1,
        pausedUntilTick: 0,
        diskHungUntilTick: 0,
        diskHangLong: false,
        diskSlow: undefined,
        cut: undefined,
        sledsCutUntilTick: 0,
        sledsCutFromTick: 0,
        probeStores: 0,
        lastProbeMs: Number.NEGATIVE_INFINITY,
        disk: `head-${index + 1}-disk-0`,
        session: 0,
        sessionStored: 0,
        sessionsTaken: new Set(),
        sessionLock: new KeyedLock(),
        sessionTakesRunning: 0,
        life: 0,
        clocksHeld: false,
        heldMs: 0,
        clock: new DriftingClock(
          () => this.nowMs(),
          1 + (this.integer(-1000, 1000) / 1000) * drift,
          this.integer(0, 1_000_000),
        ),
        hosted: new Map(),
        unopened: new Map(),
        droppedVolumeIds: new Set(),
        keptEpochs: new Map(),
        displaced: new Map(),
        reportState: this.newReportState(),
        serially,
        configures: this.configureQueue(() => node, serially),
        stuck: new Map(),
        diskWaiters: [],
        replicator: undefined,
      };
      this.nodes.push(node);
    }
    // Heard before the volume is created, as placement hears heartbeats first.
    if (options.sabotage !== "ignore-disk-ids") {
      for (const node of this.nodes) this.disks.set(node.id, node.disk);
    }
    for (let index = 0; index < options.clients; index++)
      this.clients.push({ routes: new Map(), outstanding: undefined, acknowledged: new Map() });
    if (this.chance(options.recreateChance))
      this.recreateAtTick = this.integer(options.loadTicks / 4, (options.loadTicks * 3) / 4);
    // Drawn only when on, so that runs without long hangs replay the same streams.
    if (options.longDiskHangChance > 0 && this.chance(options.longDiskHangChance)) {
      const [from, to] = options.longDiskHangFromTicks;
      this.longHangAtTick = this.integer(from, to);
      this.longHangTicks = this.integer(options.longDiskHangTicksMin, options.longDiskHangTicksMax);
    }
  }

  async run(): Promise<FailoverResult> {
    try {
      await this.runPhases();
    } catch (error) {
      this.fail("exception", `tick ${this.tickNow}: ${(error as Error).stack ?? error}`);
    }
    this.stats.ticks = this.tickNow;
    this.stats.messagesDropped = this.network.dropped;
    this.stats.chunkReads = this.sleds.chunkReads;
    for (const watched of this.watched.values()) {
      this.stats.chunksDropped += watched.checker.chunksDropped;
      this.stats.copiesRecorded += watched.checker.copiesRecorded;
    }
    return { seed: this.options.seed, violations: this.violations, stats: { ...this.stats } };
  }

  private fail(check: string, message: string): void {
    if (this.violations.length < 20) this.violations.push({ check, message });
  }

  private async runPhases(): Promise<void> {
    for (const node of this.nodes) await this.startNode(node);
    this.createVolume(false);
    for (let tick = 0; tick < this.options.loadTicks; tick++) await this.step(true);
    this.faultsOn = false;
    this.faultsOffTick = this.tickNow;
    // No client is left once loaded (their attempts are dropped): a pause ends here.
    this.clientsPausedUntilTick = 0;
    for (const node of this.nodes) {
      node.pausedUntilTick = 0;
      this.resumeClocks(node);
      // The long hang runs its course: a primary on it must be replaced while settling.
      if (!node.diskHangLong) node.diskHungUntilTick = 0;
      node.diskSlow = undefined;
      node.cut = undefined;
      if (!node.up) await this.startNode(node);
    }
    this.oneWayCuts = [];
    for (const sled of this.sledDownUntil.keys()) {
      // A lost store stays down until it is out (copies there count as lost), as drawn.
      const lostUntil = this.lostSleds.has(sled)
        ? (this.sledDownFrom.get(sled) ?? 0) + this.options.sledOutTicks + 1
        : 0;
      this.sledDownUntil.set(sled, Math.min(this.sledDownUntil.get(sled) ?? 0, lostUntil));
    }
    if (!(await this.settle())) return;
    // A quiet restart. Every primary takes one more snapshot: a control note, which its
    // secondaries commit but take no checkpoint for (checkpoints follow flushes). Once
    // settled and a while idle, a secondary of one partition is killed and back before
    // it is counted dead, so the partition keeps its epoch. It resumes from its journal
    // committed only through its last checkpoint, below the snapshot; its primary sends
    // a current follower nothing while idle, so only its hello lets it learn the commit
    // point and the cluster settle again.
    //
    // Before that snapshot, now and then, one secondary's journal is set to fail at its
    // next write: the snapshot's note. Its primary commits with the others, and the
    // partition is idle again, so no commit ever waits on it: only its own node's report
    // of the failure lets the coordinator drop it and rebuild the partition.
    if (this.chance(this.options.idleJournalFailChance)) this.failIdleSecondary();
    for (const partition of this.records.keys()) this.takeSnapshot(partition);
    if (!(await this.settle())) return;
    const quietTicks = this.integer(0, this.options.quietTicksBeforeRestart);
    for (let tick = 0; tick < quietTicks; tick++) await this.step(false);
    const partition = this.integer(0, this.options.partitions.length - 1);
    const secondaries = this.records.get(partition)?.record.secondaries ?? [];
    if (secondaries.length === 0) return await this.settleReplication();
    const node = this.node(secondaries[this.integer(0, secondaries.length - 1)]!);
    this.crash(node);
    this.stats.quietRestarts++;
    const downTicks = this.integer(1, Math.floor(this.options.deadAfterTicks / 2));
    for (let tick = 0; tick < downTicks; tick++) await this.step(false);
    await this.startNode(node);
    if (await this.settle()) await this.settleReplication();
  }

  /**
   * A secondary, joiner or learner whose replica failed in its record's epoch is dropped
   * within failedMemberTicksMax (counted from when faults went off, for one that failed
   * while loaded): its own node reports it, and the coordinator need not wait for a
   * commit to stall on it, which for an idle partition may be never.
   */
  private checkFailedMembers(): void {
    for (const [partition, { record }] of this.records) {
      const primaryFailed =
        this.node(record.primary).hosted.get(partition)?.adapter?.failed !== undefined;
      for (const member of membersOf(record)) {
        if (member === record.primary) continue;
        const hosted = this.node(member).hosted.get(partition);
        const adapter = hosted?.adapter;
        if (adapter?.failed === undefined || adapter.flaggedLate) continue;
        if (hosted?.volumeId !== this.volumeId) continue;
        if (adapter.replica.configuration?.epoch !== record.epoch) continue;
        // Beside a primary being failed over (its replica failed, or the coordinator
        // waiting out its lease: stalled, unconfirmed, cut from the sleds) a failed voter
        // is kept, and passed over for promotion (decisions.ts): the bound starts again
        // once the failover is decided. So is every member beside one the coordinator
        // counts out with no voter to promote (`unavailable`): the record waits as it is
        // for the primary to recover, and a change would reach a primary whose disk
        // hangs no sooner than its recovery. Seed 9 (--faulty-nodes 2 --disk-loss 0.5
        // --corrupt 0.1) kept a failed learner beside a primary stalled on its own
        // journal (durable 29 of 92) and a joiner, and dropped it one round after the
        // hang ended.
        if (primaryFailed || this.failoverWaits.has(partition))
          adapter.boundFromTick = this.tickNow;
        const since = Math.max(adapter.failedAtTick, adapter.boundFromTick, this.faultsOffTick);
        if (this.tickNow - since <= this.options.failedMemberTicksMax) continue;
        adapter.flaggedLate = true;
        this.watchedFor(this.volumeId, partition).checker.fail(
          "failed-member",
          `${member}'s replica failed at tick ${adapter.failedAtTick} (${adapter.failed}) and is still a member at epoch ${record.epoch}, ${this.tickNow - since} ticks later: ${this.describe()}`,
        );
      }
    }
  }

  /** Arms a journal failure on a secondary of a partition of three or more. */
  private failIdleSecondary(): void {
    const candidates: { node: SimulatedNode; hosted: Hosted }[] = [];
    for (const [partition, { record }] of this.records) {
      if (record.secondaries.length < 2) continue;
      for (const secondary of record.secondaries) {
        const node = this.node(secondary);
        const hosted = node.hosted.get(partition);
        if (hosted !== undefined) candidates.push({ node, hosted });
      }
    }
    if (candidates.length === 0) return;
    const { node, hosted } = candidates[this.integer(0, candidates.length - 1)]!;
    hosted.journal.failNext(() => this.mayFailJournal(node, hosted));
    this.stats.journalFailures++;
  }

  /** Steps without load until back at full strength, then checks the settled state. */
  private async settle(): Promise<boolean> {
    let settled = false;
    for (let tick = 0; tick < this.options.settleTicksMax && !settled; tick++) {
      if (this.options.failedMarker) await this.rebootLoneFailedPrimaries();
      await this.step(false);
      settled = this.isSettled();
    }
    if (!settled) {
      this.fail(
        "settle",
        `not back at full strength within ${this.options.settleTicksMax} ticks: ${this.describe()}`,
      );
    } else {
      this.checkSettled();
    }
    return settled;
  }

  /**
   * With `failedMarker`, while settling: a primary whose journal failed in this boot,
   * with no voting secondary to promote, waits for its machine to reboot (its files are
   * refused until then, and no peer holds the partition whole): the operator reboots
   * it, as `test/integration/journal-failure.test.ts` does. Only once faults are off;
   * while loaded, crashes reboot now and then (`rebootChance`). A secondary whose files
   * are refused (damaged, or failed in its own boot) is none to promote: the coordinator
   * keeps it beside the failed primary, waiting (seed 9201217: one back on damaged
   * files beside a primary whose journal had failed).
   */
  private async rebootLoneFailedPrimaries(): Promise<void> {
    for (const [partition, { record }] of this.records) {
      const promotable = record.secondaries.some((secondary) => {
        const other = this.node(secondary);
        const copy = other.hosted.get(partition);
        return copy?.volumeId === this.volumeId && this.filesOpen(other, copy);
      });
      if (promotable) continue;
      const node = this.node(record.primary);
      const hosted = node.hosted.get(partition);
      if (!node.up || hosted === undefined || hosted.failedInBoot !== node.boot) continue;
      if (hosted.volumeId !== this.volumeId) continue;
      this.crash(node, false, true);
      this.stats.rebootsToSettle++;
      if (record.secondaries.length > 0) this.stats.rebootsBesideRefused++;
      await this.startNode(node);
    }
  }

  private chance(probability: number): boolean {
    return this.random.chance(probability);
  }

  private integer(from: number, to: number): number {
    return this.random.integer(from, to);
  }

  private nowMs(): number {
    return this.tickNow * this.options.tickMs;
  }

  /** The node's clocks as its head node reads them for a read lease. */
  private leaseClock(node: SimulatedNode): ClockReading {
    const reading = node.clock.reading();
    // The sabotage: the monotonic clock alone, read for the wall clock too.
    return this.options.sabotage === "lease-ignores-wall-clock"
      ? { monoMs: reading.monoMs, wallMs: reading.monoMs }
      : reading;
  }

  private node(id: string): SimulatedNode {
    const node = this.nodes.find((candidate) => candidate.id === id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  private running(node: SimulatedNode): boolean {
    return node.up && node.pausedUntilTick <= this.tickNow;
  }

  private watchedFor(volumeId: string, partition: number): Watched {
    const key = `${volumeId}/${partition}`;
    let watched = this.watched.get(key);
    if (watched === undefined) {
      watched = { checker: new Checker(this.violations, key), model: new AcknowledgedModel() };
      this.watched.set(key, watched);
    }
    return watched;
  }

  // ---------------------------------------------------------------- one tick

  private async step(load: boolean): Promise<void> {
    this.tickNow++;
    if (load) {
      await this.injectFaults();
      if (this.tickNow === this.recreateAtTick) this.recreateVolume();
      if (!this.clientsPaused()) {
        this.issueRequests();
        this.snapshotRequests();
      }
    } else {
      for (const node of this.upgradeRestarts) {
        if (!node.up && this.tickNow < node.restartTick) continue;
        this.upgradeRestarts.delete(node);
        if (!node.up) await this.startNode(node);
      }
    }
    for (const node of this.nodes) {
      if (node.cut !== undefined && node.cut.untilTick <= this.tickNow) node.cut = undefined;
    }
    if (this.oneWayCuts.length > 0) {
      this.oneWayCuts = this.oneWayCuts.filter((cut) => cut.untilTick > this.tickNow);
    }
    // Faults that began or ended above count from this tick, for what it delivers too
    // (a reply held by the clients' pause and read as it ends).
    this.noteFaultState();
    this.completeWork();
    await this.deliverMessages();
    for (const node of this.nodes) {
      if (!this.running(node)) continue;
      for (const hosted of node.hosted.values()) {
        const adapter = hosted.adapter;
        if (adapter === undefined || adapter.failed !== undefined || hosted.retiring) continue;
        adapter.replica.tick();
        this.execute(node, hosted);
        this.sabotageDrop(adapter.replica);
        this.watchedFor(hosted.volumeId, hosted.partition).checker.space(
          node.id,
          adapter.replica.metadata,
        );
      }
      if (this.tickNow % this.options.roundTicks === 0) this.sendReport(node);
      // The replicator's timers (replicator.ts start()), on the simulated clock.
      if (node.replicator !== undefined) {
        if (this.tickNow % this.options.replicateIntervalTicks === 0) void node.replicator.pass();
        if (this.tickNow % this.options.scrubStepTicks === 0) void node.replicator.scrubStep();
      }
    }
    if (this.replicating) this.checkCopies();
    if (this.tickNow % this.options.roundTicks === 0) this.coordinatorRound();
    if (!this.clientsPaused()) this.expireClientAttempts();
    if (load) this.checkAvailability();
    this.checkOwnStalls();
    if (!this.faultsOn) this.checkFailedMembers();
  }

  /** The sabotage: once, halfway through the load, a replica loses a referenced chunk. */
  private sabotageDrop(replica: Replica): void {
    if (this.options.sabotage !== "drop-referenced-chunk" || this.sabotagedDrop) return;
    if (this.tickNow < this.options.loadTicks / 2) return;
    const metadata = replica.metadata;
    for (const chunkNumber of metadata.chunks.keys()) {
      if (metadata.refBytes(chunkNumber) === 0) continue;
      metadata.chunks.delete(chunkNumber);
      this.sabotagedDrop = true;
      return;
    }
  }

  private faultyNodes(): number {
    return this.nodes.filter((node) => this.faulty(node)).length;
  }

  /** Whether the node has a fault of its own now (what faultyNodesMax counts). */
  private faulty(node: SimulatedNode): boolean {
    return (
      !node.up ||
      node.pausedUntilTick > this.tickNow ||
      node.cut !== undefined ||
      node.sledsCutUntilTick > this.tickNow ||
      this.oneWayCuts.some((cut) => cut.owner === node.id) ||
      node.diskHungUntilTick > this.tickNow ||
      this.diskSlow(node) !== undefined ||
      this.journalFaulty(node) ||
      this.onLostDisk(node)
    );
  }

  /**
   * Whether a record still has the node on a disk it has lost: it stays a fault until the
   * coordinator has counted it out, as a dead node is one until it is declared dead.
   */
  private onLostDisk(node: SimulatedNode): boolean {
    for (const [partition, { record }] of this.records) {
      const disk = record.disks?.[node.id];
      if (disk !== undefined && disk !== node.disk) return true;
      // A voter of a legacy record (no disk) that holds nothing of it: its disk was lost.
      const voter = [record.primary, ...votingSecondaries(record)].includes(node.id);
      if (disk === undefined && voter && node.hosted.get(partition)?.volumeId !== this.volumeId)
        return true;
    }
    return false;
  }

  /**
   * Whether an armed journal failure may strike now: on a secondary, joiner or learner
   * (the failures its node reports), and on a primary unless journalFailPrimaries is off.
   * A failed replica is reopened in a session of its own (headnode.ts): reopened in the
   * node's session, a primary at the same epoch named chunks (and notes) as its failed
   * life did, and a sled saw one chunk id written with different data (a 500-seed run).
   * And a failed primary with no secondary to promote waited for the configure refresh
   * (300 s): it is now pushed again once its reports say it failed (outOfStep).
   * Never on a secondary beside a lost primary copy (`primaryCopyLost`).
   */
  private mayFailJournal(node: SimulatedNode, hosted: Hosted): boolean {
    if (hosted.volumeId !== this.volumeId) return true;
    const record = this.records.get(hosted.partition)?.record;
    if (record !== undefined && this.primaryCopyLost(node, hosted.partition, record)) {
      this.stats.journalFailuresBesideLostPrimary++;
      return false;
    }
    const primary = record?.primary === node.id || hosted.adapter?.replica.roleName === "primary";
    if (!primary) return true;
    return this.options.journalFailPrimaries;
  }

  /**
   * Whether `node` is a secondary of the partition whose primary's copy is lost: files
   * damaged at a crash, or a disk the record no longer finds. Those were lost only while
   * `node` was a sound copy (anotherSoundCopy, anotherCopyOfAll), and a journal failure
   * on it then is a second fault to the same data: the coordinator drops a failed
   * secondary while it counts the primary alive, as designed. Seed 198 (--corrupt 0.25
   * --faulty-nodes 2) damaged a primary's files as it crashed, and its one secondary's
   * journal failed two ticks later; the coordinator, still counting the primary alive,
   * dropped the secondary, the primary came back unable to open its files, and no voter
   * held the acknowledged writes. A primary's journal failing beside a secondary whose
   * files are damaged stays allowed: the primary is kept, waiting for a reboot (seeds
   * 5392, 5811, 9201217).
   */
  private primaryCopyLost(
    node: SimulatedNode,
    partition: number,
    record: PartitionRecord,
  ): boolean {
    if (record.primary === node.id || !record.secondaries.includes(node.id)) return false;
    const primary = this.node(record.primary);
    const disk = record.disks?.[record.primary];
    if (disk !== undefined && disk !== primary.disk) return true;
    const hosted = primary.hosted.get(partition);
    return hosted?.volumeId === this.volumeId && hosted.filesDamaged === true;
  }

  /**
   * A replica of the node's has a journal armed to fail, or has failed on one and is
   * still a member of its partition. One the coordinator has dropped is no fault any
   * more: it lingers, closed, until a configure reopens it or it is rebuilt, which for
   * a node the coordinator avoids as a learner (droppedNodeAvoidTicks) may be long.
   */
  private journalFaulty(node: SimulatedNode): boolean {
    for (const hosted of node.hosted.values()) {
      if (hosted.journal.failing) return true;
      if (hosted.adapter?.failed === undefined) continue;
      const record = this.records.get(hosted.partition)?.record;
      const member = record !== undefined && membersOf(record).includes(node.id);
      if (member && hosted.volumeId === this.volumeId) return true;
    }
    return false;
  }

  /**
   * Whether every partition `node` is a voter of has another voter, up, free of faults
   * and counted alive, that holds a replica of it on its disk, with files that open: one
   * copy lost at a time. Losing the last copy of acknowledged
   * writes is data loss no replica count of two survives, and a partition left with no
   * voter to promote stays unavailable, which is right but not what the checkers test.
   */
  private anotherCopyOfAll(node: SimulatedNode, failingPrimaryCounts = false): boolean {
    const alive = this.aliveNodes();
    for (const [partition, { record }] of this.records) {
      const voters = [record.primary, ...record.secondaries];
      if (!voters.includes(node.id)) continue;
      // Up, and known to the coordinator to be: one it still counts dead may be dropped
      // from the record on the strength of a primary that has just lost its disk.
      // With files that open: seed 29 of the 4-node shape (with --corrupt and
      // --end-changes) lost a primary's disk while its one other voter's files had been
      // damaged at a crash, two faults taking both copies (as anotherSoundCopy guards).
      // Free of faults of its own: with --faulty-nodes 2, seed 7 (--disk-loss 0.5
      // --corrupt 0.1) lost a secondary's disk while its primary, the one other voter,
      // was cut off; the coordinator counted the primary dead first and promoted the
      // secondary, still counted alive, and with it back on an empty disk the one copy
      // left was out of the record. Seed 37 did the same with a paused primary and a
      // secondary's files damaged. A node with a fault may be failed over or dropped
      // before the one that lost its disk is counted dead.
      const copy = voters.some(
        (other) =>
          other !== node.id &&
          this.countedCopy(partition, record, other, alive, failingPrimaryCounts),
      );
      if (!copy) return false;
    }
    return true;
  }

  /**
   * Whether `hosted`'s files open on `node` now: not damaged (`filesDamaged`), and not of
   * a journal that failed in this boot (`failedMarker`: refused until a reboot). With
   * the marker, seed 242 at journalFailRate 0.02 lost a primary's disk while the one
   * other voter's journal had failed in that boot, so no copy could be opened.
   */
  private filesOpen(node: SimulatedNode, hosted: Hosted): boolean {
    return hosted.filesDamaged !== true && hosted.failedInBoot !== node.boot;
  }

  /**
   * Whether the coordinator drops `voter` from the record while its primary lives, on
   * what the primary reported or the voter's own node says: a follower its primary names
   * stalled or needing a rebuild (in the report the coordinator holds for the record's
   * epoch, or in one sent lately and maybe still on its way), or a replica that has
   * failed. Such a voter is no other copy: seed 229 of the 4-node shape lost a primary's
   * disk two ticks after it reported its only secondary stalled (cut off, just healed);
   * the coordinator, which still counted the primary alive, dropped the secondary (as
   * designed), and with the primary's disk gone no voter was left that provably held
   * every acknowledged write. "Unavailable" was then the right answer, and two faults at
   * once, not what the checkers test (see docs/testing.md).
   *
   * The primary is being failed over on its own report: stalled on its own journal or
   * failing every flush for primaryStallMsMax, or failed (decisions.ts decideMembership),
   * in the report the coordinator holds for the record's epoch or in one sent lately.
   * Its fault (a disk hang, a cut from the sleds) may be over, so `faulty` no longer
   * counts it, while that report still stands until the next one: seed 9741540 (three
   * nodes, every fault kind) lost head-2's disk three ticks after head-1's disk hang
   * ended; the coordinator, holding head-1's report of a 9.2 s stall, promoted head-2
   * (still counted alive) that very tick and dropped head-1, and with head-2 back on an
   * empty disk no voter of the record held the acknowledged writes. `failingPrimaryCounts`:
   * the rule before, for the `disksKeptBesideFailingPrimary` stat.
   */
  private beingDropped(
    partition: number,
    record: PartitionRecord,
    voter: string,
    failingPrimaryCounts = false,
  ): boolean {
    const named = this.namedUnfit.get(partition)?.get(voter);
    const namedLately =
      named !== undefined && this.tickNow - named <= this.options.delayTicksMax + 1;
    if (voter === record.primary) {
      if (failingPrimaryCounts) return false;
      const held = this.reports.get(partition);
      return (held?.epoch === record.epoch && failsOverOnReport(held)) || namedLately;
    }
    const hosted = this.node(voter).hosted.get(partition);
    if (hosted?.adapter?.failed !== undefined) return true;
    if (this.leases.failedMembers(record).has(voter)) return true;
    const report = this.reports.get(partition);
    const unfit = (follower: Report["followers"][number]) =>
      follower.node === voter &&
      ((follower.stalledMs ?? 0) >= limits.commitStallMsMax || follower.needsRebuild === true);
    if (report?.epoch === record.epoch && report.followers.some(unfit)) return true;
    return namedLately;
  }

  /**
   * Whether a voter of `hosted`'s partition other than `node`, up, free of faults and
   * counted alive, holds it on its disk with files that open (`filesOpen`); true
   * if `node` is no voter of it. Damage to the last copy is data loss, as in
   * anotherCopyOfAll.
   */
  private anotherSoundCopy(node: SimulatedNode, hosted: Hosted): boolean {
    if (hosted.volumeId !== this.volumeId) return true;
    const record = this.records.get(hosted.partition)?.record;
    if (record === undefined) return true;
    const voters = [record.primary, ...record.secondaries];
    if (!voters.includes(node.id)) return true;
    const alive = this.aliveNodes();
    return voters.some(
      (other) => other !== node.id && this.countedCopy(hosted.partition, record, other, alive),
    );
  }

  /**
   * Whether `voter`'s copy of the partition is one the coordinator will go on counting
   * (anotherCopyOfAll, anotherSoundCopy): up, free of faults, counted alive, the
   * volume's, with files that open, not being dropped, and configured: a replica still
   * idle after its node restarted is not. Seed 951937 (every fault kind on) lost a
   * primary's disk while its one other voter had just come back, idle: the coordinator,
   * whose view of it lagged, counted it dead a few ticks later and dropped it, leaving the
   * primary alone in the record on an empty disk and every write on a learner the
   * coordinator may never promote (not proven to hold them all).
   */
  private countedCopy(
    partition: number,
    record: PartitionRecord,
    voter: string,
    alive: ReadonlySet<string>,
    failingPrimaryCounts = false,
  ): boolean {
    const node = this.node(voter);
    const hosted = node.hosted.get(partition);
    return (
      !this.faulty(node) &&
      alive.has(voter) &&
      hosted?.volumeId === this.volumeId &&
      this.filesOpen(node, hosted) &&
      hosted.adapter !== undefined &&
      hosted.adapter.replica.roleName !== "idle" &&
      !this.beingDropped(partition, record, voter, failingPrimaryCounts)
    );
  }

  /** A pause that held the node's clocks has ended: its wall clock is set right. */
  private resumeClocks(node: SimulatedNode): void {
    if (!node.clocksHeld) return;
    node.clock.stepWall(node.heldMs);
    node.clocksHeld = false;
    node.heldMs = 0;
  }

  private async injectFaults(): Promise<void> {
    const options = this.options;
    this.injectSledFaults();
    if (this.replicating) this.injectSledLoss();
    if (this.longHangAtTick >= 0 && this.tickNow >= this.longHangAtTick) this.startLongHang();
    for (const node of this.nodes) {
      if (!node.up) {
        if (this.tickNow >= node.restartTick) await this.startNode(node);
        continue;
      }
      if (this.chance(options.clockStepRate))
        node.clock.step(this.integer(1, options.clockStepMsMax));
      const frozen = options.frozenClockChance > 0 ? this.frozenRandom : undefined;
      if (frozen?.chance(options.clockStepRate)) {
        const ms = frozen.integer(1, options.clockStepMsMax);
        node.clock.stepWall(frozen.chance(0.5) ? ms : -ms);
      }
      if (node.pausedUntilTick > this.tickNow) {
        if (node.clocksHeld) {
          node.clock.standStill(options.tickMs);
          node.heldMs += options.tickMs * node.clock.rate;
        }
        continue;
      }
      this.resumeClocks(node);
      const room = this.faultyNodes() < options.faultyNodesMax;
      const healthy =
        node.cut === undefined && node.diskHungUntilTick <= this.tickNow && !this.diskSlow(node);
      if (!room || !healthy) continue;
      if (this.chance(options.crashRate)) {
        // Drawn only when on, so that runs without disk losses replay the same streams.
        const loseDisk = options.diskLossChance > 0 && this.chance(options.diskLossChance);
        // Before disk ids a lost disk lost writes (legacyRecordChance): none is lost then.
        const mayLose = loseDisk && !this.beforeUpgrade();
        const another = mayLose && this.anotherCopyOfAll(node);
        if (mayLose && !another && this.anotherCopyOfAll(node, true))
          this.stats.disksKeptBesideFailingPrimary++;
        this.crash(node, another);
      } else if (this.chance(options.pauseRate)) {
        this.stats.pauses++;
        node.pausedUntilTick =
          this.tickNow + this.integer(options.pauseTicksMin, options.pauseTicksMax);
        node.clocksHeld = frozen?.chance(options.frozenClockChance) ?? false;
        if (node.clocksHeld) this.stats.frozenPauses++;
      } else if (this.chance(options.diskHangRate)) {
        this.stats.diskHangs++;
        node.diskHungUntilTick = this.tickNow + this.integer(10, options.diskHangTicksMax);
        node.diskHangLong = false;
      } else if (this.chance(options.journalFailRate) && node.hosted.size > 0) {
        // Its next append or truncation fails (at once if loaded, or at the next write
        // of an idle partition): the replica fails alone, as partition-host.ts does.
        const hosted = [...node.hosted.values()];
        const chosen = hosted[this.integer(0, hosted.length - 1)]!;
        // Now and then the disk: every replica on it fails at its next write.
        const wholeDisk =
          options.diskJournalFailChance > 0 &&
          this.sessionRandom.chance(options.diskJournalFailChance);
        for (const one of wholeDisk ? hosted : [chosen]) {
          one.journal.failNext(() => this.mayFailJournal(node, one));
          this.stats.journalFailures++;
        }
      } else if (this.chance(options.netPartitionRate)) {
        this.stats.netPartitions++;
        const kinds = ["isolated", "peers", "cluster"] as const;
        node.cut = {
          kind: kinds[this.integer(0, kinds.length - 1)]!,
          untilTick: this.tickNow + this.integer(10, options.netPartitionTicksMax),
        };
      } else if (options.slowDiskRate > 0 && this.slowRandom.chance(options.slowDiskRate)) {
        this.startSlowDisk(node);
      }
    }
    this.injectSledCuts();
    this.injectOneWayCuts();
  }

  /**
   * Now and then (oneWayCutRate) a running head node with no fault and one other end stop
   * hearing each other one way, or both ways while every other path works (see there).
   */
  private injectOneWayCuts(): void {
    const options = this.options;
    if (options.oneWayCutRate <= 0) return;
    const random = this.oneWayRandom;
    if (!random.chance(options.oneWayCutRate)) return;
    if (this.faultyNodes() >= options.faultyNodesMax) return;
    const candidates = this.nodes.filter((node) => this.running(node) && node.cut === undefined);
    if (candidates.length === 0) return;
    const owner = candidates[random.integer(0, candidates.length - 1)]!.id;
    const others = [
      ...this.nodes.filter((node) => node.id !== owner).map((node) => node.id),
      "coordinator",
      "client",
    ];
    const other = others[random.integer(0, others.length - 1)]!;
    const untilTick = this.tickNow + random.integer(10, options.oneWayCutTicksMax);
    const way = random.integer(0, 2);
    if (way !== 1) this.oneWayCuts.push({ from: owner, to: other, owner, untilTick });
    if (way !== 0) this.oneWayCuts.push({ from: other, to: owner, owner, untilTick });
    this.stats.oneWayCuts++;
    if (way === 2) this.stats.pairCuts++;
  }

  /** Whether a one-way cut stands between the clients and `nodeId`, either way. */
  private clientsCutFrom(nodeId: string): boolean {
    return this.oneWayCuts.some(
      (cut) =>
        (cut.from === "client" && cut.to === nodeId) ||
        (cut.from === nodeId && cut.to === "client"),
    );
  }

  /** Now and then a head node is cut from every sled (sledCutRate), one at a time. */
  private injectSledCuts(): void {
    const options = this.options;
    if (options.sledCutRate <= 0) return;
    for (const node of this.nodes) {
      if (!this.sledCutRandom.chance(options.sledCutRate)) continue;
      if (!this.running(node) || this.faultyNodes() >= options.faultyNodesMax) continue;
      const [from, to] = options.sledCutTicks;
      if (node.sledsCutUntilTick <= this.tickNow) node.sledsCutFromTick = this.tickNow;
      node.sledsCutUntilTick = this.tickNow + this.sledCutRandom.integer(from, to);
      this.stats.sledCuts++;
    }
  }

  /** The replica cores' limits: the options', as sabotage and sled cuts change them. */
  private replicaLimits(): Partial<ReplicaLimits> {
    const limits =
      this.options.sledCutRate > 0
        ? { logBytesMax: sledCutLogBytesMax, ...this.options.limits }
        : this.options.limits;
    if (this.options.sabotage === "unbounded-follower-log") {
      return { ...limits, followerLogBytesMax: Number.POSITIVE_INFINITY };
    }
    if (this.options.sabotage === "checkpoint-failures-not-stalls") {
      return { ...limits, checkpointStallHeldBytes: Number.POSITIVE_INFINITY };
    }
    return this.options.sabotage === "no-follower-hello"
      ? { ...limits, helloTicks: Number.POSITIVE_INFINITY }
      : limits;
  }

  /**
   * A primary failed over because it cannot flush goes to a node that reaches the sleds:
   * never to one cut from them since before the stall began, which could have stored
   * nothing since (the leader's evidence, sled-reach.ts). A node cut later may still have
   * given evidence before its cut, so only a cut that covers the whole stall counts.
   */
  private checkSledEvidence(partition: number, promoted: string, flushStalledMs: number): void {
    const node = this.node(promoted);
    const stallFromTick = this.tickNow - Math.ceil(flushStalledMs / this.options.tickMs);
    if (node.sledsCutUntilTick > this.tickNow && node.sledsCutFromTick < stallFromTick) {
      this.fail(
        "sled-evidence",
        `tick ${this.tickNow}: p${partition} failed over for a flush stall of ${flushStalledMs} ms to ${promoted}, cut from the sleds since tick ${node.sledsCutFromTick}`,
      );
    }
  }

  /** Whether a head node is cut from every sled now (sledCutRate). */
  private sledsCut(nodeId: string): boolean {
    const node = this.nodes.find((one) => one.id === nodeId);
    return node !== undefined && node.sledsCutUntilTick > this.tickNow;
  }

  /**
   * The node's disk turns slow (`slowDiskRate`): for a drawn while it makes work durable
   * only every `everyTicks` ticks, kept short enough that a primary on it sees its
   * journal progress within its own stall bound (`slowDiskEveryTicks`).
   */
  private startSlowDisk(node: SimulatedNode): void {
    const options = this.options;
    const stallTicks =
      options.limits.primaryStallTicks ?? Math.ceil(limits.primaryStallMsMax / options.tickMs);
    const [everyMin, everyMax] = options.slowDiskEveryTicks;
    const [from, to] = options.slowDiskTicks;
    node.diskSlow = {
      fromTick: this.tickNow,
      untilTick: this.tickNow + this.slowRandom.integer(from, to),
      everyTicks: this.slowRandom.integer(
        everyMin,
        Math.max(everyMin, Math.min(everyMax, stallTicks - options.diskDelayTicksMax - 2)),
      ),
    };
    this.stats.slowDisks++;
  }

  /** The node's slow disk episode, while it lasts. */
  private diskSlow(node: SimulatedNode): SimulatedNode["diskSlow"] {
    const slow = node.diskSlow;
    if (slow !== undefined && slow.untilTick <= this.tickNow) node.diskSlow = undefined;
    return node.diskSlow;
  }

  /**
   * A primary on a disk that is slow but makes progress within its stall bound must not
   * say it stalled: the coordinator would fail it over, and again wherever the load went
   * (a storage system that flaps on load). Only a stall begun in the slow episode counts.
   */
  private checkSlowDiskReports(
    node: SimulatedNode,
    primaries: Iterable<{ volumeId?: string; partition: number; stalledMs?: number }>,
  ): void {
    const slow = this.diskSlow(node);
    if (slow === undefined || !this.running(node) || node.diskHungUntilTick > this.tickNow) return;
    for (const primary of primaries) {
      const stalledMs = primary.stalledMs ?? 0;
      if (primary.volumeId !== this.volumeId || stalledMs < limits.primaryStallMsMax) continue;
      const sinceTick = this.tickNow - Math.floor(stalledMs / this.options.tickMs);
      if (sinceTick < slow.fromTick) continue;
      this.fail(
        "slow-disk",
        `tick ${this.tickNow}: ${node.id} reports its primary of partition ${primary.partition} stalled for ${stalledMs} ms, while its disk is slow but makes work durable every ${slow.everyTicks} ticks (since tick ${slow.fromTick}): the coordinator would fail over a primary that makes progress`,
      );
    }
  }

  /**
   * No replica's journal holds more than a follower may (followerLogBytesFactor times
   * logBytesMax) and a primary's journal more: one whose journal is never released (a follower cut
   * from the sleds) must stop taking notes and be dropped, not grow until its disk fills
   * and fails every replica on it.
   */
  private checkJournalBound(node: SimulatedNode): void {
    for (const hosted of node.hosted.values()) {
      const replica = hosted.adapter?.replica;
      if (replica === undefined) continue;
      // A margin of one primary's journal more: a note that replaces one held in place,
      // a primary promoted with a follower's journal.
      const { logBytesMax } = { ...replicaLimitsDefault, ...this.replicaLimits() };
      const boundBytes = (followerLogBytesFactor + 1) * logBytesMax;
      if (replica.heldLogBytes <= boundBytes) continue;
      this.fail(
        "journal-bound",
        `tick ${this.tickNow}: ${node.id}'s ${replica.roleName} of partition ${hosted.partition} holds ${replica.heldLogBytes} bytes of notes unreleased, past ${boundBytes}: its journal grows without bound`,
      );
    }
  }

  /**
   * The run's long disk hang, once there is room for a fault: half the time on the node
   * of a partition's primary, else on any node that is running, connected and not hung.
   */
  private startLongHang(): void {
    if (this.faultyNodes() >= this.options.faultyNodesMax) return;
    const candidates = this.nodes.filter(
      (node) =>
        this.running(node) &&
        node.cut === undefined &&
        node.diskHungUntilTick <= this.tickNow &&
        !this.diskSlow(node),
    );
    if (candidates.length === 0) return;
    const primaries = [...this.records.values()]
      .map(({ record }) => candidates.find((node) => node.id === record.primary))
      .filter((node): node is SimulatedNode => node !== undefined);
    const among = primaries.length > 0 && this.chance(0.5) ? primaries : candidates;
    const node = among[this.integer(0, among.length - 1)]!;
    node.diskHungUntilTick = this.tickNow + this.longHangTicks;
    node.diskHangLong = true;
    this.longHangAtTick = -1;
    this.stats.diskHangs++;
    this.stats.longDiskHangs++;
    const options = this.options;
    if (options.clientPauseChance > 0 && this.pauseRandom.chance(options.clientPauseChance)) {
      const [from, to] = options.clientPauseTicks;
      this.clientsPausedUntilTick = this.tickNow + this.pauseRandom.integer(from, to);
      this.stats.clientPauses++;
    }
  }

  private clientsPaused(): boolean {
    return this.clientsPausedUntilTick > this.tickNow;
  }

  // ---------------------------------------------------------------- availability

  private availabilityOf(partition: number) {
    let entry = this.availability.get(partition);
    if (entry === undefined) {
      entry = { waitingSinceTick: undefined, noVoterTick: this.tickNow };
      this.availability.set(partition, entry);
    }
    return entry;
  }

  /** A node's faults as the availability check compares them from tick to tick. */
  /** Whether a sled is up now. */
  private sledUp(sled: string): boolean {
    return (this.sledDownUntil.get(sled) ?? Number.POSITIVE_INFINITY) <= this.tickNow;
  }

  /** The sleds up now, as the coordinator's membership sees them (`aliveSleds`). */
  private liveSleds(): string[] {
    return [...this.sledDownUntil.keys()].filter((sled) => this.sledUp(sled));
  }

  /** A sled goes down now and then, while the others up can still take a chunk. */
  private injectSledFaults(): void {
    const options = this.options;
    if (!this.sledRandom.chance(options.sledDownRate)) return;
    const sleds = [...this.sledDownUntil.keys()];
    if (sleds.length - this.liveSleds().length >= sleds.length - limits.chunkCopies) return;
    const sled = sleds[this.sledRandom.integer(0, sleds.length - 1)]!;
    if (!this.sledUp(sled)) return;
    this.lostSleds.delete(sled);
    this.sledDownFrom.set(sled, this.tickNow);
    this.sledDownUntil.set(
      sled,
      this.tickNow + this.sledRandom.integer(1, options.sledDownTicksMax),
    );
    this.stats.sledOutages++;
  }

  // ---------------------------------------------------------------- re-replication

  /** The sleds out of service: down for sledOutTicks or more (sleds.ts, sledOutAfterMs). */
  private sledsOut(): string[] {
    return [...this.sledDownUntil.keys()].filter(
      (sled) =>
        !this.sledUp(sled) &&
        this.tickNow - (this.sledDownFrom.get(sled) ?? 0) >= this.options.sledOutTicks,
    );
  }

  /**
   * A sled's store is lost now and then (a failed disk), while the others up can take
   * every chunk and nothing is short of copies: a loss before the last one is repaired
   * could lose data with a sound replicator too. It is down long enough to be declared
   * out, then back, empty; or (sledBackEmptyChance) back empty under its old id before
   * it is out, so only a look at the copies finds them gone.
   */
  private injectSledLoss(): void {
    const options = this.options;
    if (this.stats.sledLosses >= options.sledLossesMax) return;
    if (!this.replicateRandom.chance(options.sledLossRate)) return;
    const sleds = [...this.sledDownUntil.keys()];
    if (sleds.length - this.liveSleds().length >= sleds.length - limits.chunkCopies) return;
    if (!this.repaired()) return;
    const up = this.liveSleds();
    const sled = up[this.replicateRandom.integer(0, up.length - 1)]!;
    this.sleds.loseStore(sled);
    this.newDisk(sled);
    this.sledDownFrom.set(sled, this.tickNow);
    this.stats.sledLosses++;
    if (this.replicateRandom.chance(options.sledBackEmptyChance)) {
      // Not a lost sled to settling either: brought back at once, still not out.
      this.lostSleds.delete(sled);
      this.sledDownUntil.set(
        sled,
        this.tickNow + this.replicateRandom.integer(1, options.sledOutTicks - 1),
      );
      this.stats.sledsBackEmpty++;
      return;
    }
    this.lostSleds.add(sled);
    const [from, to] = options.sledLossTicks;
    this.sledDownUntil.set(
      sled,
      this.tickNow + options.sledOutTicks + this.replicateRandom.integer(from, to),
    );
  }

  /**
   * Settled, with every copy in place: a sled that a primary's recorded checkpoint names
   * loses its store and is back next tick under its old id, never out.
   */
  private loseCheckpointSled(): void {
    if (!this.repaired()) return;
    for (const [partition, { record }] of this.records) {
      const replica = this.node(record.primary).hosted.get(partition)?.adapter?.replica;
      const sled = replica?.recordedCheckpoint?.sleds.find((one) => this.sledUp(one));
      if (sled === undefined) continue;
      this.sleds.loseStore(sled);
      this.newDisk(sled);
      this.lostSleds.delete(sled);
      this.sledDownFrom.set(sled, this.tickNow);
      this.sledDownUntil.set(sled, this.tickNow + 1);
      this.stats.sledLosses++;
      this.stats.sledsBackEmpty++;
      return;
    }
  }

  /**
   * Whether every copy a loss could take has another: every member of every partition
   * serving, each primary with nothing uncommitted (a chunk written lately is in a flush
   * record not yet in any table), no sled work in flight, and nothing short of copies.
   */
  private repaired(): boolean {
    if (this.sleds.pending > 0) return false;
    for (const [partition, { record }] of this.records) {
      for (const member of membersOf(record)) {
        const node = this.node(member);
        const hosted = node.hosted.get(partition);
        const adapter = hosted?.adapter;
        if (!this.running(node) || adapter === undefined || adapter.failed !== undefined)
          return false;
        if (hosted?.retiring !== false || hosted.volumeId !== this.volumeId) return false;
        const replica = adapter.replica;
        if (member !== record.primary) continue;
        if (replica.roleName !== "primary" || replica.configuration?.epoch !== record.epoch)
          return false;
        if (!adapter.tailCommitted || replica.commitOpNum !== replica.lastOpNum) return false;
      }
    }
    return this.shortCopies().length === 0;
  }

  /**
   * Chunks of the volume's members on nodes up with fewer than chunkCopies live copies
   * (listed, on a sled up that holds one), and the primaries' recorded checkpoints with
   * fewer than chunkCopies (stored on a sled up that their pointer names), described
   * (those with `kind` only).
   */
  /** A sled's store is lost: it comes back on a new data directory, with a new id. */
  private newDisk(sled: string): void {
    this.disksLost++;
    this.newDisks.set(sled, this.disksLost.toString(16).padStart(32, "0"));
  }

  /**
   * The model leader's sled records (sled-records.ts): a sled heard (up) from a new
   * directory is refilling until every partition's primary's last report entry says it
   * audited that directory (`auditedDisks`, from the real lease book); the sleds still
   * refilling, for the answer's `sledsToAudit`.
   */
  private sledsToAudit(): { sled: string; disk: string }[] {
    for (const [sled, disk] of this.newDisks) {
      if (!this.sledUp(sled)) continue;
      this.refilling.set(sled, disk);
      this.newDisks.delete(sled);
    }
    for (const [sled, disk] of this.refilling) {
      const audited = [...this.records.values()].every(
        ({ record }) => this.leases.lastReportOf(record)?.auditedDisks?.includes(disk) === true,
      );
      if (audited) this.refilling.delete(sled);
    }
    return [...this.refilling].map(([sled, disk]) => ({ sled, disk }));
  }

  /** Sleds in service heard from a new directory that not every primary has audited. */
  private unverifiedSleds(): string[] {
    this.sledsToAudit();
    const out = new Set(this.sledsOut());
    return [...this.refilling.keys()].filter((sled) => !out.has(sled));
  }

  private shortCopies(kind?: "chunk" | "checkpoint"): string[] {
    const short: string[] = [];
    for (const node of this.nodes) {
      if (!node.up) continue;
      for (const hosted of node.hosted.values()) {
        const adapter = hosted.adapter;
        if (adapter === undefined || adapter.failed !== undefined) continue;
        if (hosted.volumeId !== this.volumeId) continue;
        // A replica no longer a member (idle until it hears it is out) is no one's to repair.
        const record = this.records.get(hosted.partition)?.record;
        if (record === undefined || !membersOf(record).includes(node.id)) continue;
        const replica = adapter.replica;
        for (const [chunkNumber, entry] of kind === "checkpoint" ? [] : replica.metadata.chunks) {
          const live = entry.copies.filter((sled) => this.sleds.holds(sled, entry.sledChunkId));
          if (live.length >= limits.chunkCopies) continue;
          short.push(
            `${node.id} partition ${hosted.partition} chunk ${chunkNumber} (${entry.sledChunkId}) lists [${entry.copies.join(", ")}], held by [${[...this.sleds.holdersOf(entry.sledChunkId)].join(", ")}]`,
          );
        }
        const pointer = replica.roleName === "primary" ? replica.recordedCheckpoint : undefined;
        if (pointer === undefined || kind === "chunk") continue;
        const blob = this.sleds.blobs.get(pointer.blobKey);
        const stored = pointer.sleds.filter(
          (sled) => this.sledUp(sled) && blob?.copies.get(sled) !== undefined,
        );
        if (stored.length >= limits.chunkCopies) continue;
        short.push(
          `${node.id} partition ${hosted.partition} checkpoint ${pointer.blobKey} lists [${pointer.sleds.join(", ")}], stored on [${stored.join(", ")}]`,
        );
      }
    }
    return short;
  }

  /** Every tick of a run that re-replicates: the copy lists of every replica's table. */
  private checkCopies(): void {
    for (const node of this.nodes) {
      if (!node.up) continue;
      for (const hosted of node.hosted.values()) {
        const adapter = hosted.adapter;
        if (adapter === undefined || adapter.failed !== undefined) continue;
        // The record's primary once its inherited tail is committed: a deposed one, or
        // one still committing its tail, may list chunks dropped since.
        const record = this.records.get(hosted.partition)?.record;
        const primary =
          hosted.volumeId === this.volumeId &&
          record?.primary === node.id &&
          adapter.replica.configuration?.epoch === record.epoch &&
          adapter.replica.roleName === "primary" &&
          adapter.tailCommitted;
        this.watchedFor(hosted.volumeId, hosted.partition).checker.copies(
          node.id,
          adapter.replica.metadata,
          this.sleds,
          primary,
        );
      }
    }
  }

  /**
   * Once settled, a run that re-replicates steps on (as long as replicationSettleTicksMax)
   * until every chunk is back at chunkCopies live copies and every recorded checkpoint
   * is stored on chunkCopies sleds up that its pointer names: a copy on a sled out is
   * replaced by a new checkpoint, one lost on a sled back empty before it was out is
   * stored there again (replicator.ts), within a few checkpointCheckIntervalMs.
   */
  private async settleReplication(): Promise<void> {
    if (!this.replicating) return;
    if (this.replicateRandom.chance(this.options.settledBackEmptyChance)) {
      // Once every copy has another (repaired), bounded as the settling below is.
      for (let tick = 0; tick < this.options.replicationSettleTicksMax; tick++) {
        if (this.repaired()) break;
        await this.step(false);
      }
      this.loseCheckpointSled();
    }
    let short = this.shortCopies();
    let unverified = this.unverifiedSleds();
    for (
      let tick = 0;
      tick < this.options.replicationSettleTicksMax && (short.length > 0 || unverified.length > 0);
      tick++
    ) {
      await this.step(false);
      short = this.shortCopies();
      unverified = this.unverifiedSleds();
    }
    const sledsOut = `sleds out: [${this.sledsOut().join(", ")}]`;
    const chunks = this.shortCopies("chunk");
    if (chunks.length > 0) {
      this.fail(
        "re-replication",
        `${chunks.length} chunks short of ${limits.chunkCopies} live copies ${this.options.replicationSettleTicksMax} ticks after settling (${sledsOut}): ${chunks.slice(0, 4).join("; ")}`,
      );
    }
    const checkpoints = this.shortCopies("checkpoint");
    if (checkpoints.length > 0) {
      this.fail(
        "checkpoint-copies",
        `${checkpoints.length} recorded checkpoints stored on fewer than ${limits.chunkCopies} of the sleds up their pointers name ${this.options.replicationSettleTicksMax} ticks after settling (${sledsOut}): ${checkpoints.slice(0, 4).join("; ")}`,
      );
    }
    if (unverified.length > 0) {
      this.fail(
        "sled-audits",
        `sleds back on a new data directory not audited by every primary ${this.options.replicationSettleTicksMax} ticks after settling: ${unverified.map((sled) => `${sled} (${this.refilling.get(sled)})`).join(", ")}`,
      );
    }
  }

  /** The head node's Replicator of this life of `node`, on the simulated sleds. */
  private newReplicator(node: SimulatedNode): Replicator {
    const life = node.life;
    const options = this.options;
    const random = this.replicateRandom;
    const ticks = () => random.integer(1, options.copyTicksMax);
    const fails = () => this.faultsOn && random.chance(options.copyFailRate);
    const port = this.sleds.port(node.id);
    const sleds: Pick<
      SledClient,
      "copyChunk" | "checkChunk" | "statBlob" | "copyBlob" | "getBlob" | "statChunk"
    > = {
      copyChunk: (_owner, chunkId, from, to) => {
        const copy = this.sleds.copyChunk(node.id, chunkId, from, to, ticks(), fails());
        if (options.sabotage !== "copy-answered-early") return copy;
        copy.catch(() => {});
        return Promise.resolve(from[0]!);
      },
      checkChunk: async (_owner, chunkId, copies) => {
        const outcomes = await this.sleds.checkChunk(node.id, chunkId, copies, ticks());
        this.stats.copiesRepaired += outcomes.filter((outcome) => outcome.repaired).length;
        return outcomes;
      },
      statBlob: async (key, sled) => {
        const found = await this.sleds.statBlob(node.id, key, sled, ticks());
        if (options.sabotage !== "checkpoint-copies-unchecked") return found;
        // The sabotage: every copy is in place, whatever the sled holds.
        const held = [...(this.sleds.blobs.get(key)?.copies.values() ?? [])].find(
          (copy) => copy !== undefined,
        );
        return held === undefined ? found : { bytes: held.byteLength, checksum: crc32c(held) };
      },
      getBlob: (key, bytes, from) =>
        port.getBlob(
          key,
          bytes,
          options.sabotage === "checkpoint-copies-unchecked"
            ? // The sabotage: a copy reads sound if any sled holds one.
              [...from, ...(this.sleds.blobs.get(key)?.copies.keys() ?? [])]
            : from,
        ),
      statChunk: (_owner, chunkId, sled) => this.sleds.statChunk(node.id, chunkId, sled, ticks()),
      copyBlob: async (key, _bytes, from, to) => {
        const source = await this.sleds.copyBlob(node.id, key, from, to, ticks(), fails());
        this.stats.checkpointCopiesRestored++;
        return source;
      },
    };
    return new Replicator({
      sleds,
      logger: replicatorLog,
      partitions: () =>
        node.life === life && node.up
          ? [...node.hosted.values()].flatMap((hosted) => this.replicatedOf(node, life, hosted))
          : [],
      scrubIntervalMs: options.scrubIntervalMs,
      checkpointCheckIntervalMs: options.checkpointCheckIntervalMs,
      clock: () => node.clock.nowMs(),
    });
  }

  /**
   * A hosted replica as the replicator sees it (partition-host.ts): its role "idle" once
   * its core is gone (closed, failed, retiring, its node restarted).
   */
  private replicatedOf(node: SimulatedNode, life: number, hosted: Hosted): ReplicatedPartition[] {
    const adapter = hosted.adapter;
    if (adapter === undefined) return [];
    const serving = () =>
      node.life === life &&
      node.up &&
      hosted.adapter === adapter &&
      adapter.failed === undefined &&
      !hosted.retiring;
    return [
      {
        address: { volume: volumeName, volumeId: hosted.volumeId, partition: hosted.partition },
        get roleName() {
          return serving() ? adapter.replica.roleName : "idle";
        },
        replica: adapter.replica,
        get sleds() {
          return hosted.runner?.sleds ?? [];
        },
      },
    ];
  }

  /**
   * A node's faults as the availability and stalled-primary checks compare them. Each
   * episode is named with the tick it ends: a pause, hang or slow disk drawn on the tick
   * the last one of its kind ended is a new fault, and restarts their counts as any does.
   * (Seed 920106 with --slow-disks 0.01 among other faults: a slow disk's second episode
   * began as its first ended, the two read as one unchanged fault for 484 ticks, longer
   * than any one episode lasts, and a primary on it that acknowledged no write within the
   * clients' timeout was flagged unavailable, though its disk made progress throughout.)
   */
  private faultsOf(node: SimulatedNode): string {
    const slow = this.diskSlow(node);
    return [
      node.up ? "up" : "down",
      node.pausedUntilTick > this.tickNow ? `paused<${node.pausedUntilTick}` : "",
      node.cut === undefined ? "" : `${node.cut.kind}<${node.cut.untilTick}`,
      node.sledsCutUntilTick > this.tickNow ? `sleds-cut<${node.sledsCutUntilTick}` : "",
      this.oneWayCuts
        .filter((cut) => cut.owner === node.id)
        .map((cut) => `${cut.from}>${cut.to}<${cut.untilTick}`)
        .join("+"),
      node.diskHungUntilTick > this.tickNow ? `hung<${node.diskHungUntilTick}` : "",
      slow === undefined ? "" : `slow<${slow.untilTick}`,
      this.journalFaulty(node) ? "journal" : "",
      this.onLostDisk(node) ? "lost" : "",
      node.disk,
    ].join(",");
  }

  /**
   * A voter of the record (its primary or a voting secondary, one the coordinator may
   * promote) is healthy (`healthyVoter`).
   */
  private hasHealthyVoter(partition: number, record: PartitionRecord): boolean {
    return [record.primary, ...record.secondaries].some((voter) =>
      this.healthyVoter(partition, record, voter),
    );
  }

  /**
   * Up, running, not cut off, its disk not hung, on its recorded disk, with its replica
   * of this incarnation open and its journal neither failed nor armed to fail.
   */
  private healthyVoter(partition: number, record: PartitionRecord, voter: string): boolean {
    const node = this.node(voter);
    if (!this.running(node) || node.cut !== undefined) return false;
    if (this.oneWayCuts.some((cut) => cut.owner === voter)) return false;
    if (node.diskHungUntilTick > this.tickNow) return false;
    const disk = record.disks?.[voter];
    if (disk !== undefined && disk !== node.disk) return false;
    const hosted = node.hosted.get(partition);
    if (hosted?.volumeId !== this.volumeId || hosted.journal.failing) return false;
    if (hosted.retiring) return false;
    return hosted.adapter !== undefined && hosted.adapter.failed === undefined;
  }

  /**
   * A node outside the record that could take a stand-in learner (decisions.ts
   * "Stand-ins"): running, not cut off, its disk neither hung, slow nor failing, and
   * reaching the sleds.
   */
  private healthySpare(record: PartitionRecord): boolean {
    const members = membersOf(record);
    return this.nodes.some(
      (node) =>
        !members.includes(node.id) &&
        this.running(node) &&
        node.cut === undefined &&
        !this.oneWayCuts.some((cut) => cut.owner === node.id) &&
        node.diskHungUntilTick <= this.tickNow &&
        this.diskSlow(node) === undefined &&
        !this.journalFaulty(node) &&
        !this.onLostDisk(node) &&
        !this.sledsCut(node.id),
    );
  }

  /** The record's healthy voting secondaries, one at least, are all cut from the sleds. */
  private secondariesAllCut(partition: number, record: PartitionRecord): boolean {
    const healthy = record.secondaries.filter((secondary) =>
      this.healthyVoter(partition, record, secondary),
    );
    return healthy.length > 0 && healthy.every((secondary) => this.sledsCut(secondary));
  }

  /**
   * No rebuild can take the partition over from its primary: no other member is healthy
   * (`healthyVoter`: its replica of this incarnation open) and reaching the sleds, and the
   * checkpoint a new learner is given has no sound copy (whole, by the blob's CRC32C) on
   * a live sled it names, so every learner's fetch fails.
   */
  private rebuildBlocked(partition: number, record: PartitionRecord): boolean {
    const others = membersOf(record).filter((member) => member !== record.primary);
    if (
      others.some(
        (member) => this.healthyVoter(partition, record, member) && !this.sledsCut(member),
      )
    )
      return false;
    const given = this.learnerPointer(record);
    if (given === undefined) return false;
    const sound = (pointer: CheckpointPointer) => {
      const blob = this.sleds.blobs.get(pointer.blobKey);
      return pointer.sleds.some((sled) => {
        const copy = blob?.copies.get(sled);
        return this.sledUp(sled) && copy !== undefined && crc32c(copy) === blob!.crc;
      });
    };
    // Any recorded checkpoint of the partition as new as the one given, sound, would make
    // the coordinator's choice the fault (seeds 9760592, 9761092), still counted. An older
    // one is no way out (the notes after it may have been released through the newer),
    // but for the primary's own of its current life: it released nothing past that one,
    // and a learner is sent it once one has found the newer unusable (learnerCheckpoint,
    // seed 9790455), so a wait beside it still counts.
    const own = this.checkpointRecords.pointers.get(
      `${this.volumeId}/${partition}/${record.primary}`,
    );
    const primary = this.node(record.primary).hosted.get(partition);
    if (
      own !== undefined &&
      primary?.volumeId === this.volumeId &&
      primary.adapter?.replica.recordedCheckpoint?.blobKey === own.blobKey &&
      sound(own)
    )
      return false;
    const prefix = `${this.volumeId}/${partition}/`;
    for (const [key, pointer] of this.checkpointRecords.pointers) {
      if (!key.startsWith(prefix) || pointer.opNum < given.opNum) continue;
      if (sound(pointer)) return false;
    }
    return true;
  }

  /**
   * The node's primaries' flushes stalled within the model coordinator's memory, and
   * another node's too, so that it fails none of them over (decisions.ts).
   */
  private flushStalledWithAnother(nodeId: string): boolean {
    const stalled = flushStalledNodes(this.flushStalls, this.nowMs(), flushStallMemoryMs);
    return stalled > 1 && this.flushStalls.has(nodeId);
  }

  /** From when the wait of a partition's clients counts (see availabilityTicksMax). */
  private waitCountsFrom(entry: { waitingSinceTick: number | undefined; noVoterTick: number }) {
    return Math.max(
      entry.waitingSinceTick ?? this.tickNow,
      this.faultStateSinceTick,
      entry.noVoterTick,
    );
  }

  /**
   * While loaded: a partition with a healthy voter, in a stretch where no node's faults
   * change, acknowledges a waiting client's write within availabilityTicksMax. Legitimate
   * unavailability (no voter left to promote, a coordinator cut off from the partition's
   * nodes, a recovery under way from a fault that just began or ended) restarts the count.
   */
  private checkAvailability(): void {
    // A paused client waits for itself: the count starts afresh once the pause ends.
    if (this.clientsPaused()) return;
    for (const [partition, { record }] of this.records) {
      const entry = this.availabilityOf(partition);
      if (!this.hasHealthyVoter(partition, record)) entry.noVoterTick = this.tickNow;
      // Its primary and the clients cut apart: nothing tells the coordinator (R3).
      if (this.clientsCutFrom(record.primary)) entry.noVoterTick = this.tickNow;
      // Its primary's flushes stall while another node's do too: the coordinator keeps
      // it by design, reading stalls on two nodes as sleds that fail everyone
      // (flushStalledNodes), until the other's stall leaves its memory. Seed 931410 with
      // two faulty nodes, both cut from the sleds at once, waited 314 ticks.
      if (this.flushStalledWithAnother(record.primary)) entry.noVoterTick = this.tickNow;
      // Its primary cut from the sleds, and its healthy secondaries (one at least) too:
      // none can store anything, so none gives the evidence a failover needs
      // (sled-reach.ts). A healthy spare takes a stand-in learner that is then promoted
      // (decisions.ts "Stand-ins"), and the wait counts; with none, the coordinator keeps
      // the primary by design. With no healthy secondary at all it rebuilds, and the
      // wait counts (sabotage cut-primary-blocks-rebuild).
      if (
        this.sledsCut(record.primary) &&
        this.secondariesAllCut(partition, record) &&
        !this.healthySpare(record)
      )
        entry.noVoterTick = this.tickNow;
      // Its primary cut from the sleds, no other member open and reaching them, and
      // neither the checkpoint a learner is given (learnerCheckpoint) nor any recorded as
      // new with a sound copy on a live sled (checkpointCopyLossRate damaged or lost
      // both): no learner or stand-in can rebuild, and the primary cannot store a fresh
      // checkpoint while cut, so only its journal holds the partition until the cut ends.
      // The coordinator adds a learner and drops it after learnerCatchUpMs, in turn, as
      // designed (architecture.md "Silence across epochs"); an older checkpoint is no way
      // out, needing notes the primary may have released through the newer. Seed
      // 9772507: head-5, alone in partition 1 (its secondary dropped on a 74 s disk
      // hang), cut for 50 s with both copies of its checkpoint at op 11 damaged, waited
      // 314 ticks.
      if (this.sledsCut(record.primary) && this.rebuildBlocked(partition, record)) {
        if (entry.waitingSinceTick !== undefined) this.stats.rebuildBlockedWaitTicks++;
        entry.noVoterTick = this.tickNow;
      }
      if (entry.waitingSinceTick === undefined) continue;
      const from = this.waitCountsFrom(entry);
      if (this.tickNow - from <= this.availabilityTicksMax) continue;
      this.watchedFor(this.volumeId, partition).checker.fail(
        "available",
        `tick ${this.tickNow}: no write acknowledged for ${this.tickNow - from} ticks (since tick ${from}; bound ${this.availabilityTicksMax}) while a client waited, every node's faults unchanged and a healthy voter there: ${this.describe()}`,
      );
      // Flagged once per stretch; the next write waiting counts afresh.
      entry.waitingSinceTick = undefined;
    }
  }

  /**
   * Every node's faults as the availability and stalled-primary checks compare them,
   * and since when they have been so. Sleds down count as faults too (with fewer than
   * chunkCopies up nothing flushes), and so do the clients' pause (a write waits for
   * the client as well as for the partition).
   */
  private noteFaultState(): void {
    const state = `${this.nodes.map((node) => this.faultsOf(node)).join(" ")} ${this.liveSleds().join(",")}${this.clientsPaused() ? " clients-paused" : ""}`;
    if (state !== this.faultState) {
      this.faultState = state;
      this.faultStateSinceTick = this.tickNow;
    }
  }

  /**
   * Loaded or settling: a primary whose own journal has kept a write waiting past its
   * stall bound, while its node runs and reaches the cluster and a voting secondary is
   * healthy, stops being the record's primary within stalledPrimaryTicksMax, the count
   * restarting as the availability check's does. Its report says it stalled whatever its
   * clients do, so this holds while they pause too (clientPauseChance), when a write in
   * flight is all that reaches it.
   */
  private checkOwnStalls(): void {
    for (const [partition, { record }] of this.records) {
      const node = this.node(record.primary);
      const hosted = node.hosted.get(partition);
      const adapter = hosted?.adapter;
      const stalled =
        this.running(node) &&
        node.cut === undefined &&
        hosted?.volumeId === this.volumeId &&
        !hosted.retiring &&
        adapter !== undefined &&
        adapter.failed === undefined &&
        adapter.replica.roleName === "primary" &&
        adapter.replica.configuration?.epoch === record.epoch &&
        adapter.replica.ownStalledTicks() > 0;
      const known = this.ownStalls.get(partition);
      if (known !== undefined && (!stalled || known.adapter !== adapter)) {
        // Replaced, or its stall over: how long it took, counted as below.
        const took = this.tickNow - this.stallCountsFrom(partition, known.sinceTick);
        this.stats.stalledPrimaryTicksMax = Math.max(this.stats.stalledPrimaryTicksMax, took);
        this.ownStalls.delete(partition);
      }
      const healthySecondary = record.secondaries.some((secondary) =>
        this.healthyVoter(partition, record, secondary),
      );
      if (!healthySecondary) this.noSecondaryTick.set(partition, this.tickNow);
      if (!stalled) continue;
      let stall = this.ownStalls.get(partition);
      if (stall === undefined) {
        stall = { adapter, sinceTick: this.tickNow, flagged: false };
        this.ownStalls.set(partition, stall);
      }
      const from = this.stallCountsFrom(partition, stall.sinceTick);
      if (stall.flagged || this.tickNow - from <= this.stalledTicksMax) continue;
      stall.flagged = true;
      this.watchedFor(this.volumeId, partition).checker.fail(
        "stalled-primary",
        `tick ${this.tickNow}: ${record.primary} has kept a write waiting on its own journal for ${adapter.replica.ownStalledTicks()} ticks and is still primary at epoch ${record.epoch}, ${this.tickNow - from} ticks after the count began (tick ${from}; bound ${this.stalledTicksMax}) with every node's faults unchanged and a healthy voting secondary: ${this.describe()}`,
      );
    }
  }

  private stallCountsFrom(partition: number, sinceTick: number): number {
    return Math.max(
      sinceTick,
      this.faultStateSinceTick,
      this.tenureSinceTick,
      this.noSecondaryTick.get(partition) ?? 0,
    );
  }

  /** A client sent a write to the partition: it waits, unless one waits already. */
  private writeWaiting(volumeId: string, partition: number): void {
    if (volumeId !== this.volumeId) return;
    const entry = this.availabilityOf(partition);
    entry.waitingSinceTick ??= this.tickNow;
  }

  /** A write to the partition was refused past the volume's end: it waits no more. */
  private writeRefused(volumeId: string, partition: number): void {
    if (volumeId !== this.volumeId) return;
    this.availabilityOf(partition).waitingSinceTick = undefined;
  }

  /** A write to the partition was acknowledged: nobody waits without progress. */
  private writeAcknowledged(volumeId: string, partition: number): void {
    if (volumeId !== this.volumeId) return;
    const entry = this.availabilityOf(partition);
    if (entry.waitingSinceTick === undefined) return;
    const waited = this.tickNow - this.waitCountsFrom(entry);
    this.stats.availabilityWaitTicksMax = Math.max(this.stats.availabilityWaitTicksMax, waited);
    entry.waitingSinceTick = undefined;
  }

  // ---------------------------------------------------------------- head nodes

  private async startNode(node: SimulatedNode): Promise<void> {
    node.up = true;
    // Taken before the node serves anything: nothing else takes one meanwhile.
    node.session = this.sessionGiven(node, node.sessionStored + 1);
    node.sessionStored = node.session;
    node.life++;
    node.reportState = this.newReportState();
    node.unopened = new Map();
    if (this.replicating && this.options.sabotage !== "no-replicator") {
      node.replicator = this.newReplicator(node);
    }
    // Closed out before it stopped (its files kept): what a frozen leader's late voter
    // configure is delivered to as it starts (`lateVoterConfigureChance`).
    const closedOut = [...node.hosted.values()]
      .filter((hosted) => hosted.closed && hosted.fenceEpoch !== undefined)
      .map((hosted) => hosted.partition);
    for (const hosted of node.hosted.values()) await this.openReplica(node, hosted);
    for (const partition of closedOut) this.deliverLateVoter(node, partition, true);
    // A frozen leader's learner configures, which reach the node before its own
    // coordinator's (`lateLearnerConfigureChance`).
    const late = this.lateConfigures.get(node.id);
    this.lateConfigures.delete(node.id);
    for (const message of late?.values() ?? []) {
      this.stats.lateConfiguresDelivered++;
      await this.configure(node, message);
    }
  }

  /**
   * A session given to `node` (a start's, or a failed replica's): the session check's
   * first half. Sessions are unique per node (session.ts): one given twice names two
   * lives' notes, chunks and checkpoints the same way.
   */
  private sessionGiven(node: SimulatedNode, session: number): number {
    if (node.sessionsTaken.has(session))
      this.fail(
        "session",
        `tick ${this.tickNow}: ${node.id} was given session ${session} a second time (its session file holds ${node.sessionStored})`,
      );
    node.sessionsTaken.add(session);
    return session;
  }

  /**
   * Takes a failed replica's new session as session.ts `nextSession` does: reads the
   * session file, then writes the next number (above the node's own) durably, one taker
   * at a time per node (with no lock for the `session-unlocked` sabotage). While the
   * disk hangs it waits, and the partition's configures queue behind it. While loaded
   * the write takes up to sessionWriteTicksMax ticks and may fail (sessionFailRate).
   * Undefined if it failed, or if the node restarted meanwhile. The write is one in-place
   * overwrite of the file's lower copy and its sync (a counter file), one disk step as the
   * rename was; a failed one may in fact have stored its number, and the model keeps the
   * old one, the case where the next take computes the failed take's number again (never
   * used: a failed take's session is given to nobody).
   */
  private async takeSession(node: SimulatedNode, partition: number): Promise<number | undefined> {
    const life = node.life;
    const options = this.options;
    // Behind another take, it waits as the partition's configure does: with the
    // partition's configures queued behind it (`stuck`).
    const behind = node.sessionTakesRunning > 0 ? this.stuckOf(node, partition) : undefined;
    if (behind !== undefined) {
      this.stats.sessionTakesOverlapping++;
      behind.resolve();
    }
    node.sessionTakesRunning++;
    const take = async (): Promise<number | undefined> => {
      if (behind !== undefined && node.stuck.get(partition) === behind)
        node.stuck.delete(partition);
      if (!(await this.diskAnswers(node, partition))) return undefined;
      const session = Math.max(node.sessionStored, node.session) + 1;
      const loaded = this.faultsOn;
      const writeTicks = loaded ? this.sessionRandom.integer(0, options.sessionWriteTicksMax) : 0;
      const fails = loaded && this.sessionRandom.chance(options.sessionFailRate);
      if (writeTicks > 0 && !(await this.diskTicks(node, partition, writeTicks))) return undefined;
      if (node.life !== life || !node.up) return undefined;
      this.stats.sessionTakes++;
      if (fails) {
        this.stats.sessionTakesFailed++;
        return undefined;
      }
      node.sessionStored = session;
      return this.sessionGiven(node, session);
    };
    try {
      return options.sabotage === "session-unlocked"
        ? await take()
        : await node.sessionLock.run("session", take);
    } finally {
      if (node.life === life) node.sessionTakesRunning--;
    }
  }

  /**
   * Waits `ticks` ticks of the node's disk answering (a hang adds to them), with the
   * partition's configures queued behind (`stuck`). False if the node restarted.
   */
  private async diskTicks(node: SimulatedNode, partition: number, ticks: number): Promise<boolean> {
    const life = node.life;
    const stuck = this.stuckOf(node, partition);
    stuck.resolve();
    const readyTick = this.tickNow + ticks;
    await new Promise<void>((resolve) => {
      const wait = () => (this.tickNow >= readyTick ? resolve() : node.diskWaiters.push(wait));
      node.diskWaiters.push(wait);
    });
    if (node.stuck.get(partition) === stuck) node.stuck.delete(partition);
    return node.life === life && node.up;
  }

  /**
   * The session check's second half: a life of a replica configured in an epoch an
   * earlier life of that replica (same node and partition incarnation) was configured in
   * must have a session above that life's. Log matching compares op, epoch and session:
   * a life in the same epoch and session as an earlier one can assign an op number that
   * life gave another note (one its journal lost), and a secondary holding that note
   * takes it as matched; secondaries ignore sessions older than one they have seen.
   */
  private checkLife(node: SimulatedNode, hosted: Hosted, adapter: ReplicaAdapter, epoch: number) {
    const key = `${node.id} ${hosted.volumeId}/${hosted.partition} e${epoch}`;
    const session = adapter.replica.identity.session;
    let lives = this.lives.get(key);
    if (lives === undefined) {
      lives = [];
      this.lives.set(key, lives);
    }
    if (lives.some((life) => life.adapter === adapter)) return;
    for (const earlier of lives) {
      if (earlier.session < session) continue;
      this.fail(
        "session",
        `tick ${this.tickNow}: ${node.id}'s replica of ${hosted.volumeId}/${hosted.partition} was configured in epoch ${epoch} in session ${session}, and an earlier life of it in that epoch had session ${earlier.session}`,
      );
    }
    lives.push({ adapter, session });
  }

  /** Builds a replica core from its disk, as a head node does on start. */
  private async openReplica(
    node: SimulatedNode,
    hosted: Hosted,
    session = node.session,
  ): Promise<void> {
    const failedThisBoot = hosted.failedInBoot === node.boot;
    const reopenFailed = failedThisBoot && this.options.sabotage === "reopen-failed-journal";
    if (hosted.filesDamaged === true || (failedThisBoot && !reopenFailed)) {
      // Refused, as partition-host.ts `open` (and `openJournal`, for a journal that
      // failed in this boot): nothing hosted, the files kept; a configure that opens it
      // fails (no acknowledgement), and one that rebuilds it as a learner discards them.
      if (hosted.filesDamaged === true) this.stats.opensRefused++;
      else this.stats.opensRefusedFailedBoot++;
      hosted.adapter = undefined;
      hosted.runner = undefined;
      hosted.closed = true;
      return;
    }
    // After a reboot the disk is what recovery reads: the marker goes (failed-marker.ts).
    if (!failedThisBoot) hosted.failedInBoot = undefined;
    const recovered = await recoveredFrom(hosted.journal, hosted.checkpoints, reopenFailed);
    const replica = new Replica(
      {
        nodeId: node.id,
        volume: volumeName,
        partition: hosted.partition,
        partitionStart: hosted.partition * this.options.partitionBytes,
        partitionBytes: this.options.partitionBytes,
        session,
      },
      recovered,
      this.replicaLimits(),
      {
        committed: (note) =>
          this.watchedFor(hosted.volumeId, hosted.partition).checker.committed(node.id, note),
      },
    );
    // As headnode.ts: the fence of the failed core this one replaces, kept in this life
    // (a restart loses it, and the frames it guards with it).
    const kept = hosted.keptFence;
    hosted.keptFence = undefined;
    if (kept?.life === node.life) {
      replica.carryFence(kept.fence);
      hosted.carriedEpoch = kept.fence.epoch;
      this.stats.fencesCarried++;
    }
    const adapter = new ReplicaAdapter(
      replica,
      this.options.sabotage !== "no-lease-check",
      this.options.sabotage !== "ignore-primary-stall",
      this.options.sabotage !== "ignore-flush-stall",
      hosted.volumeId,
      this.options.tickMs,
      this.options.sabotage === "stall-on-slow-writes"
        ? {
            tickNow: () => this.tickNow,
            stallTicks:
              this.options.limits.primaryStallTicks ??
              Math.ceil(limits.primaryStallMsMax / this.options.tickMs),
          }
        : undefined,
    );
    adapter.hidesUnheard = this.options.sabotage === "promote-unheard-learner";
    hosted.adapter = adapter;
    adapter.auditedDisks = () =>
      node.replicator?.auditedDisks(hosted.volumeId, hosted.partition) ?? [];
    hosted.closed = false;
    hosted.runner = new EffectRunner(replica, this.portsOf(node, hosted), {
      // Replies are matched to client attempts by the request id (the attempt number).
      reply: (requestId, reply) => {
        adapter.answered(requestId);
        this.replyTo(node, requestId, { ok: true, reply });
      },
      replyError: (requestId, error) => {
        adapter.answered(requestId);
        this.replyTo(node, requestId, { ok: false, error });
      },
      fatal: (what, error) => this.failReplica(node, hosted, adapter, what, error),
    });
    // None until configured (headnode.ts: a replica's sleds come with each configure).
  }

  private portsOf(node: SimulatedNode, hosted: Hosted): ReplicaPorts {
    const recordKey = `${hosted.volumeId}/${hosted.partition}/${node.id}`;
    return {
      journal: hosted.journal,
      checkpoints: hosted.checkpoints,
      sleds: this.sleds.port(node.id),
      transport: {
        send: (to, message) => this.send({ kind: "replication", from: node.id, to, message }),
        recordCheckpoint: (pointer, done) =>
          this.checkpointRecords.record(node.id, recordKey, pointer, done),
      },
      clock: node.clock,
    };
  }

  /**
   * The journal failed (the only fatal effect): as partition-host.ts does, the replica
   * latches failed and its runner closes, so no completion reaches the core and nothing
   * is acknowledged after the failure; the node keeps running its other replicas and
   * reports at once (a failed primary as `failed`, any other role in `failures`).
   * Anything else fatal is a defect.
   */
  private failReplica(
    node: SimulatedNode,
    hosted: Hosted,
    adapter: ReplicaAdapter,
    what: string,
    error: Error,
  ): void {
    if (!what.startsWith("journal") || (error as NodeJS.ErrnoException).code !== "EIO") {
      this.fail("exception", `${node.id}: ${what}: ${error.message}`);
      return;
    }
    if (adapter.failed !== undefined || hosted.adapter !== adapter) return;
    adapter.failed = `${what} (${error.message})`;
    adapter.failedAtTick = this.tickNow;
    // The journal records the boot before anyone hears of the failure (journal.ts).
    if (this.options.failedMarker) hosted.failedInBoot = node.boot;
    hosted.runner?.close();
    // What it holds is answered at once, as partition-host.ts does.
    this.answerHeld(
      node,
      adapter,
      new BallastError(ErrorCode.Unavailable, `${node.id}'s replica failed: ${adapter.failed}`),
    );
    this.stats.replicasFailed++;
    if (this.running(node)) this.sendReport(node);
  }

  /** Answers every request the replica holds with `error` (its close or failure). */
  private answerHeld(node: SimulatedNode, adapter: ReplicaAdapter, error: BallastError): void {
    for (const requestId of [...adapter.held]) {
      adapter.answered(requestId);
      this.replyTo(node, requestId, { ok: false, error });
    }
  }

  private replyTo(node: SimulatedNode, requestId: number, outcome: ClientOutcome): void {
    this.send({
      kind: "reply",
      from: node.id,
      client: this.clientOf(requestId),
      attempt: requestId,
      outcome,
    });
  }

  /** `loseDisk`: the node's data directory is gone too (see diskLossChance). */
  private crash(node: SimulatedNode, loseDisk = false, reboot = false): void {
    this.stats.crashes++;
    node.up = false;
    // Drawn only when on, so that runs without the marker replay the same streams.
    if (reboot || (this.options.failedMarker && this.chance(this.options.rebootChance))) {
      node.boot++;
      this.stats.reboots++;
      for (const hosted of node.hosted.values()) hosted.journal.reboot();
    }
    node.restartTick = this.tickNow + this.integer(1, this.options.downTicksMax);
    // Its configures and drops die with the process, those waiting on handlers too.
    node.serially = new KeyedLock();
    node.configures = this.configureQueue(() => node, node.serially);
    node.stuck = new Map();
    node.diskWaiters = [];
    node.sessionLock = new KeyedLock();
    node.sessionTakesRunning = 0;
    // Its copies in flight may still land on their sleds; nothing records them.
    void node.replicator?.close();
    node.replicator = undefined;
    for (const hosted of node.hosted.values()) {
      hosted.adapter = undefined;
      hosted.runner?.close();
      hosted.runner = undefined;
      hosted.retiring = false;
      hosted.journal.crash();
      hosted.checkpoints.crash();
      // Damage found at the next open (corruptChance). A torn tail needs none drawn: the
      // crash already tears the append in progress, and which damage recovery cuts as a
      // torn tail is the journal's property tests' (journal-property.test.ts).
      // Only where another voter holds the partition, as a disk is lost (anotherCopyOfAll).
      if (
        hosted.journal.notes.length > 0 &&
        this.anotherSoundCopy(node, hosted) &&
        this.damageDrawn("files")
      ) {
        hosted.filesDamaged = true;
      }
      if (this.options.sabotage === "disk-loses-acknowledged-writes") {
        hosted.journal.loseNewest(this.integer(1, 3));
      }
    }
    // What the head node keeps in memory only (the incarnations it dropped) is gone
    // with any restart.
    node.droppedVolumeIds.clear();
    if (!loseDisk) return;
    // A new, empty data directory: no replica is stored, and nextSession finds no
    // session file, so the next start counts from the clock (session.ts).
    this.stats.diskLosses++;
    node.hosted.clear();
    node.keptEpochs.clear();
    node.displaced.clear();
    node.disk = `${node.id}-disk-${this.stats.diskLosses}`;
    node.sessionStored = this.tickNow;
  }

  private execute(_node: SimulatedNode, hosted: Hosted): void {
    hosted.runner?.run();
  }

  /**
   * Completes disk, sled and coordinator work due by now. A hung disk completes nothing;
   * a paused process hears of nothing (the kernel finishes the writes, the process
   * learns of them when it runs again); a crashed one's runner is closed and hears
   * nothing either.
   */
  private completeWork(): void {
    for (const node of this.nodes) {
      if (!this.running(node) || node.diskHungUntilTick > this.tickNow) continue;
      // A slow disk makes work durable only on every everyTicks-th tick of its episode,
      // one journal write at a time: its writes queue, but each turn makes progress.
      const slow = this.diskSlow(node);
      if (slow !== undefined && (this.tickNow - slow.fromTick) % slow.everyTicks !== 0) continue;
      for (const hosted of node.hosted.values()) {
        hosted.journal.complete(slow === undefined ? Number.POSITIVE_INFINITY : 1);
        hosted.checkpoints.complete();
      }
      const waiters = node.diskWaiters;
      node.diskWaiters = [];
      for (const waiter of waiters) waiter();
    }
    const stalled = (id: string) => {
      const node = this.node(id);
      return (
        node.up && (node.pausedUntilTick > this.tickNow || node.diskHungUntilTick > this.tickNow)
      );
    };
    // Chunk writes wait only for a paused process; checkpoint uploads and records are
    // steps of its checkpoint, which a hung disk holds up too.
    this.sleds.complete((owner, kind) =>
      kind === "chunk" || kind === "copy" || kind === "check"
        ? this.node(owner).up && this.node(owner).pausedUntilTick > this.tickNow
        : stalled(owner),
    );
    this.checkpointRecords.complete(stalled);
  }

  /**
   * The node's configures as headnode.ts queues them (configure-queue.ts), under `lock`,
   * its `serially` of this life: work queued in an earlier life is not done.
   */
  private configureQueue(
    node: () => SimulatedNode,
    lock: KeyedLock,
  ): ConfigureQueue<ConfigureMessage, void> {
    const queue: ConfigureQueue<ConfigureMessage, void> = new ConfigureQueue({
      lock,
      orderOf: (message) => ({ incarnation: message.volumeId, epoch: message.configuration.epoch }),
      run: async (message) => {
        if (node().configures === queue && node().up) await this.onConfigure(node(), message);
      },
      superseded: (key, kept) => {
        this.stats.configuresSuperseded++;
        return new BallastError(
          ErrorCode.Unavailable,
          `superseded by a newer configure of ${key} (epoch ${kept.configuration.epoch}) waiting on ${node().id}`,
        );
      },
    });
    return queue;
  }

  /**
   * Hands a configure to the node's queue. Returns once it has been answered or, if the
   * work running for the partition waits (`stuck`), at once: it then waits behind that,
   * or is superseded, as in `serially`.
   */
  private async configure(node: SimulatedNode, message: ConfigureMessage): Promise<void> {
    const done = node.configures.submit(String(message.partition), message).catch((error) => {
      // Superseded: answered Unavailable, which the coordinator takes as no
      // acknowledgement and resends on a later round (configurer.ts); the model's
      // coordinator hears nothing, which it treats the same.
      if (error instanceof BallastError && error.code === ErrorCode.Unavailable) return;
      this.fail("exception", `tick ${this.tickNow}: ${node.id}: ${(error as Error).stack}`);
    });
    await Promise.race([done, this.stuckOf(node, message.partition).promise]);
  }

  /**
   * Waits, if the node's disk hangs, until it answers again, with the partition's
   * configures and drops queued behind (`stuck`). False if the node restarted meanwhile:
   * what it was doing is gone.
   */
  private async diskAnswers(node: SimulatedNode, partition: number): Promise<boolean> {
    if (!this.options.configuresWaitOnHungDisk || node.diskHungUntilTick <= this.tickNow)
      return true;
    this.stats.configuresWaitingOnDisk++;
    const life = node.life;
    const stuck = this.stuckOf(node, partition);
    stuck.resolve();
    await new Promise<void>((resolve) => node.diskWaiters.push(resolve));
    if (node.stuck.get(partition) === stuck) node.stuck.delete(partition);
    return node.life === life && node.up;
  }

  /**
   * Runs `work` among the node's configures and drops of `partition`, one at a time in
   * arrival order (headnode.ts `serially`). Returns once it has finished or, if the work
   * running for the partition waits on handlers in flight (`stuck`), at once: this work
   * then waits behind it, for as long as it does (or until the node restarts: a process
   * that is gone does nothing of what it had queued).
   */
  private async serially(
    node: SimulatedNode,
    partition: number,
    work: () => Promise<void>,
  ): Promise<void> {
    const life = node.life;
    const done = node.serially
      .run(String(partition), async () => {
        if (node.life === life && node.up) await work();
      })
      .catch((error: unknown) =>
        this.fail("exception", `tick ${this.tickNow}: ${node.id}: ${(error as Error).stack}`),
      );
    await Promise.race([done, this.stuckOf(node, partition).promise]);
  }

  /** Settles once the work running for the node's partition waits on handlers. */
  private stuckOf(node: SimulatedNode, partition: number) {
    let stuck = node.stuck.get(partition);
    if (stuck === undefined) {
      let resolve = () => {};
      const promise = new Promise<void>((settle) => {
        resolve = settle;
      });
      stuck = { promise, resolve };
      node.stuck.set(partition, stuck);
    }
    return stuck;
  }

  /**
   * Retires a hosted replica as headnode.ts `close` does, in retire.ts's order (the old
   * one for the `close-after-handlers` sabotage), with the simulated node's ports: intake
   * stopped (`retiring`: no ticks, replication messages or requests, not reported), the
   * runner closed and every request it holds answered `reason`, and the handlers in
   * flight (those requests) awaited. False if the node restarted meanwhile: what it was
   * doing is gone.
   */
  private async retire(
    node: SimulatedNode,
    hosted: Hosted,
    reason: BallastError,
    by: "configure" | "drop",
  ): Promise<boolean> {
    const life = node.life;
    const adapter = hosted.adapter;
    if ((adapter?.held.size ?? 0) > 0) {
      if (by === "configure") this.stats.retiresHoldingRequests++;
      else this.stats.dropsHoldingRequests++;
    }
    const ports: RetirePorts = {
      stopIntake: () => {
        hosted.retiring = true;
        return new HandlersInFlight(adapter, () => {
          // Awaited while some are in flight: configures of the partition wait behind.
          const stuck = this.stuckOf(node, hosted.partition);
          stuck.resolve();
          return () => {
            if (node.stuck.get(hosted.partition) === stuck) node.stuck.delete(hosted.partition);
          };
        });
      },
      closeReplica: async () => {
        hosted.runner?.close();
        if (adapter !== undefined) this.answerHeld(node, adapter, reason);
      },
    };
    if (this.options.sabotage === "close-after-handlers") await retireHandlersFirst(ports);
    else await retireReplica(ports);
    if (node.life !== life) return false;
    hosted.retiring = false;
    return true;
  }

  /** As headnode.ts: decided in configure-decision.ts, carried out on simulated disks. */
  private async onConfigure(node: SimulatedNode, message: ConfigureMessage): Promise<void> {
    const life = node.life;
    const { configuration } = message;
    const part = partOf(node.id, configuration);
    const keptKey = `${message.volumeId}/${message.partition}`;
    // As headnode.ts reads the message's incarnation's own directory: one closed with its
    // files kept, displaced by another incarnation's replica, is what this node stores
    // of it (its epochs, its failed marker), the closed one in its place kept beside it.
    const current = node.hosted.get(message.partition);
    const displaced = node.displaced.get(keptKey);
    if (displaced !== undefined && (current === undefined || current.closed)) {
      node.displaced.delete(keptKey);
      if (current !== undefined)
        node.displaced.set(`${current.volumeId}/${current.partition}`, current);
      node.hosted.set(message.partition, displaced);
    }
    const found = node.hosted.get(message.partition);
    // The message's incarnation's own directory: the replica found, or one still displaced
    // because another incarnation's replica is open in its place (a deleted incarnation's
    // late learner configure rebuilt one after a restart). headnode.ts reads that
    // directory whatever it hosts: its epochs, whether it stores a replica, and, opening
    // a voter from what is stored, its files.
    const own = found?.volumeId === message.volumeId ? found : node.displaced.get(keptKey);
    const configured = found?.adapter?.replica.configuration;
    // As headnode.ts: where nothing of the incarnation is hosted with a configuration, the
    // newest epoch of the notes its journal holds (the sabotage: not looked at).
    // With nothing of it hosted, the epoch its directory may keep alone (`keptEpochs`).
    const storedEpoch =
      part === "none" ||
      (found?.volumeId === message.volumeId && !found.closed && configured !== undefined) ||
      this.options.sabotage === "configure-ignores-stored-epoch"
        ? undefined
        : own !== undefined
          ? newestEpochOf(own.journal.notes, own.voterEpoch)
          : node.keptEpochs.get(keptKey);
    const decision = decideConfigure(
      {
        volumeId: message.volumeId,
        epoch: configuration.epoch,
        part,
        // One closed with its files kept (the `session-after-close` sabotage) is opened
        // from them, as the head node (which is not told of first placements) does.
        create: own?.closed === true ? undefined : message.create,
        disk: message.disk,
        disksRecorded: message.disksRecorded,
      },
      {
        disk: node.disk,
        // What its disk stores of the incarnation (hosted survives crashes here).
        ...(this.options.sabotage === "open-legacy-voters" ? {} : { stored: own !== undefined }),
        deleted: node.droppedVolumeIds.has(message.volumeId),
        storedEpoch,
        hosted:
          found === undefined || found.closed
            ? undefined
            : {
                volumeId: found.volumeId,
                failed: found.adapter?.failed !== undefined,
                epoch: configured?.epoch,
                // A former member told it is out closes its replica (and clears
                // freshLearner); one that never heard it (down, cut off) still holds it:
                // the learner period a replica was rebuilt for stands for it. A core not configured since its
                // node started is one a head node has not opened yet, and rebuilds.
                freshLearner:
                  configured !== undefined &&
                  found.learnerSince !== undefined &&
                  found.learnerSince === message.learnerSince,
              },
      },
    );
    let hosted = found?.closed === true ? undefined : found;
    if (decision.kind !== "apply") {
      // A failed replica's new session, taken before it is retired (headnode.ts): taking
      // it can fail, and the configure then fails with the failed replica still hosted,
      // so the one sent again reopens it in a new session too. The sabotage takes it
      // after the close, as before c6bd9ac.
      const newSession = decision.kind === "open" && decision.session === "new";
      const sessionFirst = newSession && this.options.sabotage !== "session-after-close";
      let session = node.session;
      if (sessionFirst) {
        const taken = await this.takeSession(node, message.partition);
        if (taken === undefined) return;
        session = taken;
      }
      if (found !== undefined && !found.closed && decision.retire === "close-out") {
        // As headnode.ts: named out, idle in the out epoch first (a failed core takes no
        // configure), that epoch kept on its disk (with the voter epoch: partition-host.ts
        // `recordOutEpoch`), then closed. The sabotage keeps it nowhere.
        const adapter = found.adapter;
        if (adapter !== undefined && adapter.failed === undefined) {
          adapter.configure(configuration);
          found.learnerSince = undefined;
          this.execute(node, found);
        }
        if (
          this.options.sabotage !== "close-out-forgets-epoch" &&
          (found.voterEpoch === undefined || configuration.epoch > found.voterEpoch)
        ) {
          found.voterEpoch = configuration.epoch;
        }
        this.stats.closedOut++;
      }
      if (found !== undefined && !found.closed && decision.retire !== "keep") {
        const retired = await this.retire(
          node,
          found,
          new BallastError(
            ErrorCode.NotPrimary,
            `the request's outcome is unknown: ${node.id} closed its replica of ${message.partition} for epoch ${configuration.epoch}`,
          ),
          "configure",
        );
        if (!retired) return;
        // Removed: its disks go; closed (failed): its disks stay, to reopen from, and its
        // fence is kept for the core that reopens it (headnode.ts), named out too.
        if (decision.retire === "remove") {
          node.hosted.delete(found.partition);
          node.keptEpochs.delete(`${found.volumeId}/${found.partition}`);
        }
        const failed = found.adapter?.failed !== undefined;
        if (decision.retire === "close" || (failed && decision.retire === "close-out")) {
          const fence = found.adapter?.replica.fenceToKeep();
          found.keptFence = fence === undefined ? undefined : { life, fence };
        }
        // Named out (or closed and refused: the shell's close takes it out of `hosted`):
        // no longer hosted, its files kept to reopen (or rebuild) from.
        if (decision.retire === "close-out" || decision.kind === "refuse") {
          found.adapter = undefined;
          found.runner = undefined;
          found.closed = true;
        }
      }
      if (decision.kind === "refuse" && decision.keepOutEpoch === true && own !== undefined) {
        // As headnode.ts: named out with its files open nowhere, the out epoch kept in
        // them all the same (the sabotage keeps it nowhere).
        if (
          this.options.sabotage !== "close-out-forgets-epoch" &&
          (own.voterEpoch === undefined || configuration.epoch > own.voterEpoch)
        ) {
          own.voterEpoch = configuration.epoch;
        }
      }
      if (decision.kind === "refuse" && decision.refusal.reason === "not-a-member") {
        // Named out, its files stored (open or not, failed or not): from now on they must
        // fence at the out epoch, whatever the head node kept of it.
        if (own !== undefined) this.raiseFenceEpoch(own, configuration.epoch);
        this.deliverLateVoter(node, message.partition, false);
      }
      if (decision.forget !== undefined) node.droppedVolumeIds.add(decision.forget);
      if (decision.kind === "refuse") {
        // As headnode.ts: out of the set or deleted, nothing of it is reported.
        if (decision.refusal.reason !== "older-epoch") node.unopened.delete(message.partition);
        if (decision.refusal.reason === "no-replica") this.stats.noReplicaRefusals++;
        if (decision.refusal.reason === "older-epoch" && storedEpoch !== undefined) {
          this.stats.lateConfiguresRefused++;
          if (this.lateVoterCopies.has(message)) this.stats.lateVoterConfiguresRefused++;
        }
        if (decision.refusal.reason === "other-disk") this.stats.otherDiskRefusals++;
        // As headnode.ts answers it, NotFound with the refusal named (configurer.ts).
        if (decision.refusal.reason === "other-disk" && this.linked(node.id, "coordinator")) {
          this.onOtherDisk({
            from: node.id,
            session: node.session,
            volumeId: message.volumeId,
            partition: message.partition,
            epoch: configuration.epoch,
          });
        }
        // As headnode.ts answers it, NotFound: a former member is forgotten (configurer.ts).
        if (decision.refusal.reason === "not-a-member" && this.linked(node.id, "coordinator")) {
          this.onFormerMember(node.id, node.session, message.volumeId, message.partition);
        }
        if (decision.refusal.reason === "no-replica" && this.linked(node.id, "coordinator")) {
          this.onNoReplica({
            from: node.id,
            session: node.session,
            volumeId: message.volumeId,
            partition: message.partition,
            epoch: configuration.epoch,
          });
        }
        return;
      }
      // Opening reads the replica's files and writes the session file: on a hung disk it
      // waits until the disk answers, and the partition's configures queue behind it.
      if (!(await this.diskAnswers(node, message.partition))) return;
      // As headnode.ts: one dropped while it waited (the drop waits only for replicas
      // already hosted) is not opened; a closed one is the drop's to remove.
      if (node.droppedVolumeIds.has(message.volumeId)) return;
      if (decision.retire === "close" && part === "primary") this.countReopen(message);
      if (newSession && !sessionFirst) {
        const taken = await this.takeSession(node, message.partition);
        if (taken === undefined) {
          // Failed after the close: the replica is no longer hosted, its files stay.
          if (found !== undefined && decision.retire === "close" && node.life === life) {
            found.adapter = undefined;
            found.closed = true;
          }
          return;
        }
        session = taken;
      }
      if (decision.from === "rebuild") {
        // As headnode.ts: the learner's epoch kept on its disk first, whatever the fetch
        // does (the sabotage keeps it nowhere).
        if (this.options.sabotage !== "rebuild-forgets-epoch") {
          const kept = node.keptEpochs.get(keptKey);
          if (kept === undefined || configuration.epoch > kept)
            node.keptEpochs.set(keptKey, configuration.epoch);
        }
        // A learner starts afresh from the primary's newest checkpoint on sleds; a failed
        // fetch leaves it unhosted, and the next configuration tries again. The first copy
        // that is whole (the blob's CRC32C) and sound (the snapshot's own checksums) wins,
        // as partition-host fetches it.
        let snapshot: Uint8Array | undefined;
        if (message.checkpoint !== undefined) {
          try {
            snapshot = (
              await fetchCheckpoint(this.sleds.port(node.id), message.checkpoint, silentLog)
            ).bytes;
          } catch (error) {
            // As the configurer hears the refusal: no copy whole and sound on any sled
            // that answered (not a cut learner's), so the next learner gets another.
            if (error instanceof BallastError && error.details?.refusal === "checkpoint-unusable") {
              const key = `${message.volumeId}/${message.partition}`;
              const known = this.unusableCheckpoints.get(key) ?? new Set<string>();
              known.add(message.checkpoint.blobKey);
              this.unusableCheckpoints.set(key, known);
            }
            return;
          }
        }
        // Rebuilt afresh: what a displaced directory of the incarnation held is gone.
        node.displaced.delete(keptKey);
        hosted = this.newHosted(message.volumeId, message.partition, message.learnerSince);
        hosted.checkpoints.rebuiltFrom = snapshot;
        // Its directory, with the epoch kept in it (partition-host.ts `open`).
        hosted.voterEpoch = node.keptEpochs.get(keptKey);
        node.keptEpochs.delete(keptKey);
        this.stats.rebuilds++;
      } else if (own?.closed === true) {
        // Closed, not hosted: opened from what its files hold (headnode.ts `open`), one
        // displaced by the replica just removed too. Before, that one was left aside and
        // a voter was opened empty beside it (seed 9713115).
        if (own !== found) this.stats.displacedOpened++;
        node.displaced.delete(keptKey);
        hosted = own;
      } else if (decision.retire !== "close") {
        // A voter with nothing of its own: a fresh incarnation's first placement.
        hosted = this.newHosted(message.volumeId, message.partition, undefined);
      }
      // Another incarnation's replica closed with its files kept stays on the disk.
      const replaced = node.hosted.get(message.partition);
      if (replaced !== undefined && replaced !== hosted && replaced.closed) {
        if (replaced.volumeId !== message.volumeId)
          node.displaced.set(`${replaced.volumeId}/${replaced.partition}`, replaced);
      }
      node.hosted.set(message.partition, hosted!);
      await this.openReplica(node, hosted!, session);
      if (hosted!.adapter === undefined) {
        this.openFailed(node, message, part);
        return;
      }
      node.unopened.delete(message.partition);
    }
    const adapter = hosted?.adapter;
    if (hosted === undefined || adapter === undefined) return;
    // As partition-host.ts `configure`: the runner places chunks on the sleds named.
    if (adapter.failed === undefined && hosted.runner !== undefined)
      hosted.runner.sleds = [...message.sleds];
    this.checkLife(node, hosted, adapter, configuration.epoch);
    // As headnode.ts: a voter's epoch kept on its disk before its core takes it.
    if (
      (part === "primary" || part === "secondary") &&
      (hosted.voterEpoch === undefined || configuration.epoch > hosted.voterEpoch)
    ) {
      hosted.voterEpoch = configuration.epoch;
    }
    // The epoch-fence check: no core of these files takes an epoch below one they were
    // configured a voter in or named out in (a delayed configure a leader frozen past
    // its tenure sends: `lateVoterConfigureChance`).
    if (hosted.fenceEpoch !== undefined && configuration.epoch < hosted.fenceEpoch) {
      this.fail(
        "epoch-fence",
        `tick ${this.tickNow}: ${node.id}'s replica of partition ${message.partition} (${message.volumeId}) took epoch ${configuration.epoch} as ${part}, though its files were a voter or named out in epoch ${hosted.fenceEpoch}`,
      );
    }
    if (part === "primary" || part === "secondary") {
      this.raiseFenceEpoch(hosted, configuration.epoch);
    }
    if (hosted.carriedEpoch !== undefined) {
      if (hosted.carriedEpoch === configuration.epoch) this.stats.fencesTakenBack++;
      hosted.carriedEpoch = undefined;
    }
    // A primary staying primary into a newer epoch keeps its read lease (the coordinator
    // promises per partition and node), also when a follower's ack of that epoch made it
    // idle first: otherwise reads of a partition with a healthy primary fail until the
    // next grant (the failover-faults integration test's kill -9 run, CI of a888fe8).
    const held = adapter.replica.configuration;
    const keepsLease =
      held !== undefined &&
      held.primary === node.id &&
      configuration.primary === node.id &&
      configuration.epoch > held.epoch &&
      adapter.replica.holdsLeaseGrant;
    const idleBefore = adapter.replica.roleName === "idle";
    adapter.configure(configuration);
    if (keepsLease) {
      if (idleBefore) this.stats.leasesKeptThroughIdle++;
      if (!adapter.replica.holdsLeaseGrant) {
        this.fail(
          "lease-kept",
          `tick ${this.tickNow}: ${node.id}, primary of partition ${message.partition} in epoch ${held.epoch} and again in ${configuration.epoch}, lost its read lease on the configure${idleBefore ? " (made idle by a follower's ack of the newer epoch)" : ""}: its reads fail until the next grant`,
        );
      }
    }
    // Once a voter (or out of the set), it is no longer what a rebuild started from.
    if (part !== "learner") hosted.learnerSince = undefined;
    this.execute(node, hosted);
    // Acknowledged, as the head node answers the configure request: the answer rides
    // the request's link, and is lost only with it cut (drawing nothing from the
    // generator, so runs without journal failures and with configureRefreshTicks 0 replay
    // the streams of the model that pushed every round).
    if (!this.linked(node.id, "coordinator")) return;
    this.onConfigured({
      from: node.id,
      session: node.session,
      volumeId: message.volumeId,
      partition: message.partition,
      epoch: configuration.epoch,
      disk: node.disk,
      sleds: [...message.sleds],
    });
  }

  /**
   * As headnode.ts `openFailed`: a voter whose open was refused is reported failed in
   * the configure's epoch, at once (the sabotage: in no report, as before).
   */
  private openFailed(node: SimulatedNode, message: ConfigureMessage, part: string): void {
    if (this.options.sabotage === "silent-open-failure") return;
    if (part !== "primary" && part !== "secondary") {
      node.unopened.delete(message.partition);
      return;
    }
    const held = node.unopened.get(message.partition);
    const epoch = message.configuration.epoch;
    if (held !== undefined && held.address.volumeId === message.volumeId && held.epoch > epoch) {
      return;
    }
    node.unopened.set(message.partition, {
      address: { volume: volumeName, volumeId: message.volumeId, partition: message.partition },
      epoch,
      primary: part === "primary",
      session: node.session,
    });
    this.sendReport(node);
  }

  /** The epoch-fence check's record: `epoch` is one the replica's files must fence at. */
  private raiseFenceEpoch(hosted: Hosted, epoch: number): void {
    if (hosted.fenceEpoch === undefined || epoch > hosted.fenceEpoch) hosted.fenceEpoch = epoch;
  }

  /**
   * Delivers the voter configure a frozen leader held for `node`'s replica of `partition`
   * (`lateVoterConfigureChance`), now that the replica is closed out: the copies drawn
   * for now (`atStart` false) right after the close, the others as the node starts.
   */
  private deliverLateVoter(node: SimulatedNode, partition: number, atStart: boolean): void {
    const held = this.lateVoterConfigures.get(node.id);
    const late = held?.get(partition);
    if (late === undefined || late.atStart !== atStart) return;
    held!.delete(partition);
    this.stats.lateVoterConfiguresDelivered++;
    this.lateVoterCopies.add(late.configure);
    // Queued behind the configure that closed it (the partition's configures run one at
    // a time); never in place of a newer one waiting (configure-queue.ts `supersedes`).
    void this.configure(node, late.configure);
  }

  /** A replica with empty disks. */
  private newHosted(volumeId: string, partition: number, learnerSince: number | undefined): Hosted {
    return {
      volumeId,
      partition,
      journal: new FakeJournal(this.world, this.options.diskDelayTicksMax),
      checkpoints: new FakeCheckpointFile(this.world, 4),
      voterEpoch: undefined,
      fenceEpoch: undefined,
      learnerSince,
      adapter: undefined,
      runner: undefined,
      retiring: false,
      closed: false,
      keptFence: undefined,
    };
  }

  /** As headnode.ts: remembered at once, each replica closed and removed in its turn. */
  private async onDrop(node: SimulatedNode, volumeId: string): Promise<void> {
    node.droppedVolumeIds.add(volumeId);
    for (const key of [...node.keptEpochs.keys()]) {
      if (key.startsWith(`${volumeId}/`)) node.keptEpochs.delete(key);
    }
    for (const key of [...node.displaced.keys()]) {
      if (key.startsWith(`${volumeId}/`)) node.displaced.delete(key);
    }
    for (const [partition, unopened] of node.unopened) {
      if (unopened.address.volumeId === volumeId) node.unopened.delete(partition);
    }
    for (const hosted of [...node.hosted.values()]) {
      if (hosted.volumeId !== volumeId) continue;
      await this.serially(node, hosted.partition, async () => {
        if (node.hosted.get(hosted.partition) !== hosted) return;
        const shutdown = new BallastError(ErrorCode.ShuttingDown, `${node.id} is shutting down`);
        if (await this.retire(node, hosted, shutdown, "drop")) node.hosted.delete(hosted.partition);
      });
    }
  }

  /** What a head node holds of the coordinator's state, compared as the sabotage says. */
  private newReportState(): ReportState {
    if (this.options.sabotage !== "report-ignores-own-stall") return new ReportState();
    // The comparison before ed63a3d: every field but the primary's own stall.
    return new ReportState((a, b) => {
      const { stalledMs: _a, ...restA } = a;
      const { stalledMs: _b, ...restB } = b;
      return sameEntry(restA, restB);
    });
  }

  private sendReport(node: SimulatedNode): void {
    // As headnode.ts builds and renews its reports (primary-report.ts).
    // One being retired is no longer hosted there (headnode.ts `close`).
    const { primaries, failures, reported } = nodeEntriesOf(
      [...node.hosted.values()].flatMap((hosted) =>
        hosted.retiring ? [] : (hosted.adapter ?? []),
      ),
      [...node.unopened.values()].map(unopenedReporter),
    );
    this.checkSlowDiskReports(node, primaries.values());
    this.checkJournalBound(node);
    for (const primary of primaries.values()) {
      if (primary.volumeId !== this.volumeId) continue;
      if (failsOverOnReport(primary)) {
        const named = this.namedUnfit.get(primary.partition) ?? new Map<string, number>();
        named.set(node.id, this.tickNow);
        this.namedUnfit.set(primary.partition, named);
      }
      for (const follower of primary.followers) {
        if ((follower.stalledMs ?? 0) < limits.commitStallMsMax && follower.needsRebuild !== true)
          continue;
        const named = this.namedUnfit.get(primary.partition) ?? new Map<string, number>();
        named.set(follower.node, this.tickNow);
        this.namedUnfit.set(primary.partition, named);
      }
    }
    this.send({
      kind: "report",
      from: node.id,
      report: {
        node: node.id,
        disk: node.disk,
        session: node.session,
        sentAt: this.leaseClock(node),
        sent: node.reportState.next(primaries, failures),
        reported,
        sledStores: this.sleds.storesOf(node.id) + node.probeStores,
      },
    });
  }

  private onGrant(node: SimulatedNode, envelope: Extract<Envelope, { kind: "grant" }>): void {
    if (envelope.session !== node.session) return;
    const answer =
      this.options.sabotage === "node-lease-ignores-exclusions"
        ? { ...envelope.answer, excluded: [] }
        : envelope.answer;
    const granted = node.reportState.onAnswer(envelope.sent, answer);
    const hostedNow = (volume: string, partition: number) => {
      const hosted = volume === volumeName ? node.hosted.get(partition) : undefined;
      return hosted?.retiring === false ? hosted.adapter : undefined;
    };
    for (const { replica, epoch } of renewalsOf(granted, envelope.reported, hostedNow)) {
      replica.renewLease(epoch, envelope.sentAt, envelope.answer.leaseMs);
    }
    // As headnode.ts: a new out set starts a pass at once; sleds to audit are audited.
    if (envelope.sledsOut !== undefined) node.replicator?.setOut(envelope.sledsOut);
    if (envelope.sledsToAudit !== undefined) node.replicator?.askAudits(envelope.sledsToAudit);
    // As sled-probe.ts: one probe per sledProbeSpacingMs, which gets its copies unless the
    // node is cut from the sleds or too few are up (modelled at once, with no draw).
    if (envelope.probeSleds === true && this.nowMs() - node.lastProbeMs >= sledProbeSpacingMs) {
      node.lastProbeMs = this.nowMs();
      if (!this.sledsCut(node.id) && this.liveSleds().length >= limits.chunkCopies)
        node.probeStores++;
    }
  }

  // ---------------------------------------------------------------- the model coordinator

  private createVolume(recreated: boolean): void {
    const highestEpoch = Math.max(0, ...[...this.records.values()].map((r) => r.record.epoch));
    this.incarnation++;
    this.volumeId = formatVolumeId(this.incarnation, "sim");
    const epoch = recreated && !this.options.recreateAtEpochOne ? highestEpoch + 1 : 1;
    for (const { record } of this.records.values()) this.leases.forget(record);
    this.records.clear();
    this.reports.clear();
    this.staleReports.clear();
    this.learnersSince.clear();
    this.joinersSince.clear();
    this.unconfirmed.clear();
    this.dropped.clear();
    this.configured.clear();
    this.noReplica.clear();
    this.otherDisk.clear();
    // Drawn only when on, so that runs without legacy records replay the same streams.
    const legacy =
      this.options.legacyRecordChance > 0 && this.chance(this.options.legacyRecordChance);
    this.legacyUpgradeTick = legacy ? this.tickNow + this.integer(20, 150) : -1;
    if (legacy) this.stats.legacyVolumes++;
    const alive = this.aliveNodes();
    const load = new Map(this.nodes.map((node) => [node.id, 0]));
    this.options.partitions.forEach((replicaCount, partition) => {
      const chosen = [...alive]
        .sort((a, b) => load.get(a)! - load.get(b)! || a.localeCompare(b))
        .slice(0, replicaCount);
      for (const node of chosen) load.set(node, load.get(node)! + 1);
      const record: PartitionRecord = {
        volume: volumeName,
        volumeId: this.volumeId,
        partition,
        partitionStart: partition * this.options.partitionBytes,
        partitionBytes: this.options.partitionBytes,
        epoch,
        primary: chosen[0]!,
        secondaries: chosen.slice(1),
        learners: [],
        joining: [],
        ...(this.beforeUpgrade() ? {} : this.disksOf(chosen)),
      };
      this.records.set(partition, { record, revision: 1 });
      // The book judges reports against the records: told of each change, as tenure.ts does.
      this.leases.recordChanged(volumeName, partition);
      this.originalVoters.set(partition, new Set(chosen));
      this.pushConfiguration(record);
    });
    for (const client of this.clients) client.routes.clear();
  }

  private recreateVolume(): void {
    this.stats.recreates++;
    // A new incarnation's partitions: the availability check starts over.
    this.availability.clear();
    this.faultStateSinceTick = this.tickNow;
    const old = this.volumeId;
    // The client closes the deleted volume: what it had in flight may still land in
    // either incarnation, so it counts as unknown in the new one too.
    const inFlight = this.clients
      .map((client) => client.outstanding)
      .filter((attempt): attempt is ClientAttempt => attempt !== undefined);
    for (const node of this.nodes) this.send({ kind: "drop", to: node.id, volumeId: old });
    this.createVolume(true);
    for (const attempt of inFlight) {
      const entries = attemptEntries(attempt.request);
      if (entries !== undefined)
        this.watchedFor(this.volumeId, attempt.partition).model.issued(attempt.attempt, entries);
    }
  }

  /** A failed primary reopened in place: could a secondary have been promoted instead? */
  private countReopen(message: ConfigureMessage): void {
    this.stats.primariesReopened++;
    const record = this.records.get(message.partition)?.record;
    if (record === undefined) return;
    const alive = this.aliveNodes();
    const promotable = record.secondaries.some(
      (node) =>
        alive.has(node) &&
        (record.disks?.[node] === undefined || record.disks[node] === this.disks.get(node)),
    );
    if (promotable) this.stats.primariesReopenedOverSecondary++;
  }

  /** The disks heard of the given nodes, as placement.ts records them. */
  private disksOf(nodes: readonly string[]): { disks?: Record<string, string> } {
    const known = nodes.flatMap((node) => {
      const disk = this.disks.get(node);
      return disk === undefined ? [] : [[node, disk] as const];
    });
    return known.length === 0 ? {} : { disks: Object.fromEntries(known) };
  }

  /** The disks of the live nodes, as the reconciler passes them (none before disk ids). */
  private liveDisks(alive: ReadonlySet<string>): Map<string, string> {
    if (this.beforeUpgrade()) return new Map();
    return new Map([...this.disks].filter(([node]) => alive.has(node)));
  }

  private aliveNodes(): Set<string> {
    const alive = new Set<string>();
    for (const node of this.nodes) {
      const heard = this.lastHeardTick.get(node.id) ?? 0;
      if (this.tickNow - heard <= this.options.deadAfterTicks) alive.add(node.id);
    }
    return alive;
  }

  private loadOf(alive: ReadonlySet<string>): Map<string, { replicas: number; primaries: number }> {
    const load = new Map<string, { replicas: number; primaries: number }>();
    for (const node of alive) load.set(node, { replicas: 0, primaries: 0 });
    for (const { record } of this.records.values()) {
      for (const member of membersOf(record)) {
        const entry = load.get(member);
        if (entry === undefined) continue;
        entry.replicas++;
        if (member === record.primary) entry.primaries++;
      }
    }
    return load;
  }

  /** Whether the coordinator is still one from before disk ids (legacyRecordChance). */
  private beforeUpgrade(): boolean {
    return this.legacyUpgradeTick >= 0 && this.tickNow < this.legacyUpgradeTick;
  }

  /**
   * The coordinator from before disk ids is upgraded: a new tenure, which configures
   * every member again; half the time an original voter's disk is replaced meanwhile and
   * the node is back under its old id before it is counted dead.
   */
  private upgradeCoordinator(): void {
    this.legacyUpgradeTick = -1;
    this.configured.clear();
    this.otherDisk.clear();
    // The new tenure restarts the stalled-primary count, as a fault does. It must hear
    // each member placed before disk ids answer again before it may promote one
    // (`unproven`), and decides the partition `unavailable` meanwhile, which leaves the
    // primary's lease unfrozen (reconciler.ts): a primary failed over for its own stall
    // is granted a fresh lease by its next report, and the failover that follows the
    // answers waits that lease out: up to a lease and some rounds after the upgrade,
    // however long the stall had been counted. Seed 9713028: head-1's stall was counted
    // from tick 84, and its failover waited for a lease that ran out at tick 121 when the
    // upgrade came at 120; head-1's report at 124 was granted a lease to tick 157, and the
    // promotion at 160 came 76 ticks after 84 (bound 73), 40 after the upgrade. Not a
    // coordinator defect: a real leader's new tenure waits as long whatever it grants
    // (leases.ts: no primary is replaced before `leaderSinceMs` + primaryLeaseMs + margin,
    // since the previous leader may have granted a lease just before it stopped), which
    // this model, one lease book across the upgrade, does not show. The availability
    // count is left alone: its bound keeps three client timeouts beyond the failover and
    // the lease, room for that lease, and restarted here it let the
    // `cut-primary-blocks-rebuild` sabotage pass at seed 9123815 (its wait, counted
    // across an upgrade, is flagged one tick past the bound).
    if (this.ownStalls.size > 0) this.stats.upgradesDuringStalls++;
    this.tenureSinceTick = this.tickNow;
    if (!this.chance(0.5)) return;
    const voters = [...this.originalVoters.values()].flatMap((nodes) => [...nodes]);
    const candidates = this.nodes.filter(
      (node) =>
        voters.includes(node.id) &&
        node.up &&
        node.pausedUntilTick <= this.tickNow &&
        node.cut === undefined &&
        node.diskHungUntilTick <= this.tickNow &&
        this.anotherCopyOfAll(node),
    );
    if (candidates.length === 0 || this.faultyNodes() >= this.options.faultyNodesMax) return;
    const node = candidates[this.integer(0, candidates.length - 1)]!;
    this.crash(node, true);
    node.restartTick = this.tickNow + this.integer(1, Math.floor(this.options.deadAfterTicks / 2));
    // A recreate late in the load may put the upgrade past it (seed 9610932: tick 511 of
    // 500): injectFaults restarts nobody then, and the node stayed down for good, its
    // partitions short of a replica with no live node to rebuild on.
    if (!this.faultsOn) {
      this.upgradeRestarts.add(node);
      this.stats.upgradeCrashesSettling++;
    }
  }

  private coordinatorRound(): void {
    if (this.legacyUpgradeTick >= 0 && this.tickNow >= this.legacyUpgradeTick) {
      this.upgradeCoordinator();
    }
    this.changeEnds();
    const alive = this.aliveNodes();
    const load = this.loadOf(alive);
    for (const [partition, entry] of this.records) {
      const record = entry.record;
      let decision: PartitionDecision = this.sabotagedPromotion(partition, record);
      if (decision.kind === "keep") {
        const since = this.learnersSince.get(partition) ?? new Map();
        const report = this.reports.get(partition);
        // As the reconciler: the primary's acknowledgement and its current report in the
        // lease book (a restart's new session lists only what the node hosts now).
        const unconfirmed = unconfirmedSince(
          record,
          this.unconfirmed.get(partition),
          this.configured.get(partition)?.get(record.primary),
          this.leases.reportOf(record, this.nowMs()),
          this.nowMs(),
        );
        if (unconfirmed.sinceMs === undefined) this.unconfirmed.delete(partition);
        else this.unconfirmed.set(partition, unconfirmed);
        const stalled = this.leases.reportOf(record, this.nowMs())?.flushStalledMs ?? 0;
        if (stalled >= limits.primaryStallMsMax) this.flushStalls.set(record.primary, this.nowMs());
        // As the reconciler: where a failover could follow, the secondaries' nodes are
        // asked for evidence that they reach the sleds, which a failover to one needs.
        const askEvidence =
          stalled > 0 &&
          this.liveSleds().length >= limits.chunkCopies &&
          flushStalledNodes(this.flushStalls, this.nowMs(), flushStallMemoryMs) <= 1;
        if (askEvidence) {
          const targets = probeTargets(record, stalled, {
            nowMs: this.nowMs(),
            alive,
            load,
            replicaCount: this.options.partitions[partition]!,
            avoid: this.avoided(partition),
            storedSinceMs: this.sledReach,
          });
          for (const node of targets) this.sledReach.askProbe(node, this.nowMs());
        }
        const view: PartitionView = {
          nowMs: this.nowMs(),
          alive,
          disks: this.liveDisks(alive),
          proven: this.provenOf(record),
          noReplica: this.noReplicaOf(record),
          unproven: this.unprovenOf(record),
          load:
            this.options.sabotage === "no-rebuild"
              ? new Map([...load].filter(([node]) => membersOf(record).includes(node)))
              : load,
          replicaCount: this.options.partitions[partition]!,
          ...(report === undefined ? {} : { report }),
          liveSleds: this.liveSleds().length,
          flushStalledNodes: flushStalledNodes(this.flushStalls, this.nowMs(), flushStallMemoryMs),
          primaryFlushStalledLately: this.flushStalls.has(record.primary),
          // The failover of flush-stalled primaries, on by default in the leader
          // (constants.ts flushStallFailover).
          flushStallFailover: true,
          ...(askEvidence
            ? {
                sledStoredSinceMs:
                  this.options.sabotage === "promote-without-sled-evidence"
                    ? new Map(this.nodes.map((node) => [node.id, this.nowMs()]))
                    : this.sledReach,
              }
            : {}),
          leaseUntilMs: this.leases.leaseUntilMs(record),
          learnersSinceMs: new Map([...since].map(([node, value]) => [node, value.ms])),
          learnerCatchUpMsMax: this.options.learnerCatchUpMs,
          ...(this.options.sabotage === "keep-silent-joiner"
            ? {}
            : { joinersSinceMs: this.joinersSince.get(partition) ?? new Map() }),
          primaryUnconfirmedMsMax: this.options.primaryUnconfirmedMs,
          avoid: this.avoided(partition),
          // Members whose own node reports them failed, as the real reconciler passes
          // them (the sabotage: the coordinator before failure reports, which had none).
          ...(this.options.sabotage === "coordinator-ignores-failures"
            ? {}
            : {
                failed: this.leases.failedMembers(record),
                unopened: this.leases.unopenedMembers(record),
                reopening: this.reopeningOf(record),
              }),
          ...(unconfirmed.sinceMs === undefined ||
          this.options.sabotage === "keep-unconfirmed-primary"
            ? {}
            : { primaryUnconfirmedSinceMs: unconfirmed.sinceMs }),
        };
        decision = decidePartition(record, view);
        if (
          this.options.sabotage === "cut-primary-blocks-rebuild" &&
          decision.kind === "update" &&
          decision.record.primary === record.primary &&
          record.secondaries.every((node) => !alive.has(node)) &&
          stalled >= limits.primaryStallMsMax &&
          this.liveSleds().length >= limits.chunkCopies &&
          flushStalledNodes(this.flushStalls, this.nowMs(), flushStallMemoryMs) <= 1
        )
          decision = { kind: "unavailable", reason: "sabotage: cut-primary-blocks-rebuild" };
        // The coordinator before stand-ins: a learner beyond the replica count is never
        // added, so a primary cut from the sleds beside secondaries cut too is kept; and
        // the one of session 31, which never put one on a spare the partition avoids.
        const standIn =
          decision.kind === "update"
            ? addedStandIn(record, decision.record, this.options.partitions[partition]!)
            : undefined;
        if (this.options.sabotage === "no-stand-in" && standIn !== undefined)
          decision = { kind: "unavailable", reason: "sabotage: no-stand-in" };
        if (
          this.options.sabotage === "stand-in-not-on-avoided" &&
          standIn !== undefined &&
          this.avoided(partition).has(standIn)
        )
          decision = { kind: "unavailable", reason: "sabotage: stand-in-not-on-avoided" };
      }
      if (decision.kind === "unavailable") this.countUnheardHeld(record, alive);
      this.leases.setReplacing(record, decision.kind === "wait");
      if (decision.kind === "wait" || decision.kind === "unavailable")
        this.failoverWaits.add(partition);
      else this.failoverWaits.delete(partition);
      if (decision.kind === "update") {
        const report = this.reports.get(partition);
        if (
          decision.record.primary !== record.primary &&
          report?.epoch === record.epoch &&
          (report.stalledMs ?? 0) >= limits.primaryStallMsMax
        )
          this.stats.stallFailovers++;
        if (
          decision.record.primary !== record.primary &&
          report?.epoch === record.epoch &&
          (report.flushStalledMs ?? 0) >= limits.primaryStallMsMax
        ) {
          this.stats.flushStallFailovers++;
          // Counted out for the cut alone (decisions.ts `onlyCut`): a dead, failed or
          // self-stalled primary is replaced whatever its secondaries reach.
          if (
            alive.has(record.primary) &&
            report.failed !== true &&
            (report.stalledMs ?? 0) < limits.primaryStallMsMax &&
            this.unconfirmed.get(partition)?.sinceMs === undefined
          )
            this.checkSledEvidence(partition, decision.record.primary, report.flushStalledMs ?? 0);
        }
        const unconfirmedFrom = this.unconfirmed.get(partition)?.sinceMs;
        if (
          decision.record.primary !== record.primary &&
          alive.has(record.primary) &&
          unconfirmedFrom !== undefined &&
          this.nowMs() - unconfirmedFrom >= this.options.primaryUnconfirmedMs
        )
          this.stats.unconfirmedFailovers++;
        this.applyUpdate(partition, entry, decision.record);
      }
      this.pushConfiguration(this.records.get(partition)!.record);
    }
  }

  /**
   * `unheardSecondariesHeld`: the partition is decided unavailable while a live secondary
   * with a disk recorded, heard on no other, has answered no configure of the partition
   * (neither restarted since an answer, `reopening`, nor refused for another disk): the
   * coordinator before seed 9781027 promoted it. Once per record epoch.
   */
  private countUnheardHeld(record: PartitionRecord, alive: ReadonlySet<string>): void {
    const configured = this.configured.get(record.partition);
    const reopening = this.reopening.get(record.partition);
    const unheard = record.secondaries.some(
      (node) =>
        alive.has(node) &&
        record.disks?.[node] !== undefined &&
        this.disks.get(node) === record.disks[node] &&
        configured?.get(node) === undefined &&
        reopening?.has(node) !== true,
    );
    const key = `${record.volumeId}/${record.partition}/${record.epoch}`;
    if (!unheard || this.unheardHeld.has(key)) return;
    this.unheardHeld.add(key);
    this.stats.unheardSecondariesHeld++;
  }

  /** Live nodes recently dropped from the partition (reconciler.ts `avoided`). */
  private avoided(partition: number): ReadonlySet<string> {
    const dropped = this.dropped.get(partition);
    if (dropped === undefined) return new Set();
    for (const [node, untilTick] of dropped) if (this.tickNow >= untilTick) dropped.delete(node);
    return new Set(dropped.keys());
  }

  /**
   * The defect-1 coordinator, for the sabotage: a learner the primary once reported as
   * caught up (however long ago) becomes a secondary at once, with no joining epoch.
   */
  private sabotagedPromotion(partition: number, record: PartitionRecord): PartitionDecision {
    if (this.options.sabotage !== "promote-on-stale-report") return { kind: "keep" };
    const report = this.staleReports.get(partition);
    if (report === undefined || report.epoch > record.epoch) return { kind: "keep" };
    const learners = record.learners ?? [];
    const caughtUp = learners.find((node) =>
      report.followers.some(
        (follower) => follower.node === node && follower.matchOpNum >= report.commitOpNum,
      ),
    );
    if (caughtUp === undefined) return { kind: "keep" };
    return {
      kind: "update",
      record: {
        ...record,
        epoch: record.epoch + 1,
        secondaries: [...record.secondaries, caughtUp],
        learners: learners.filter((node) => node !== caughtUp),
      },
      reason: "sabotage: promote on a stale report",
    };
  }

  /**
   * `endChangeRate`: while loaded, now and then one partition's served bytes change as a
   * resize changes them (a new epoch, the same members: coordinator volumes.ts
   * `setLimits`); once the faults stop, every partition is whole again.
   */
  private changeEnds(): void {
    const rate = this.options.endChangeRate;
    if (rate <= 0) return;
    if (!this.faultsOn) {
      for (const [partition, entry] of this.records) {
        if (entry.record.servedBytes === undefined) continue;
        const { servedBytes: _, ...whole } = entry.record;
        this.changeEnd(partition, entry, { ...whole, epoch: entry.record.epoch + 1 });
      }
      return;
    }
    if (!this.endRandom.chance(rate) || this.records.size === 0) return;
    const partitions = [...this.records.keys()];
    const partition = partitions[this.endRandom.integer(0, partitions.length - 1)]!;
    const entry = this.records.get(partition)!;
    const sectors = this.options.partitionBytes / limits.sectorBytes;
    const { servedBytes: _, ...whole } = entry.record;
    const next =
      entry.record.servedBytes !== undefined && this.endRandom.chance(0.5)
        ? { ...whole, epoch: entry.record.epoch + 1 }
        : {
            ...entry.record,
            epoch: entry.record.epoch + 1,
            servedBytes: this.endRandom.integer(0, sectors - 1) * limits.sectorBytes,
          };
    this.changeEnd(partition, entry, next);
  }

  private changeEnd(
    partition: number,
    entry: { record: PartitionRecord; revision: number },
    next: PartitionRecord,
  ): void {
    this.stats.endChanges++;
    this.applyUpdate(partition, entry, next);
  }

  /**
   * The `end` check, on a request a primary answered: none reaches past the served bytes
   * of the epoch it was sent in (the primary accepts a request only in its own epoch).
   */
  private checkEnd(attempt: ClientAttempt): void {
    const served = this.servedByEpoch.get(
      `${attempt.volumeId}/${attempt.partition}/${attempt.request.epoch}`,
    );
    if (served === undefined) return;
    const end = attempt.partition * this.options.partitionBytes + served;
    const request = attempt.request;
    const ranges =
      request.kind === "write"
        ? request.writes.map((write) => ({ offset: write.offset, length: write.data.byteLength }))
        : request.kind === "flush"
          ? []
          : request.kind === "read"
            ? [{ offset: request.offset, length: request.length }]
            : request.ranges;
    const past = ranges.find((range) => range.offset + range.length > end);
    if (past === undefined) return;
    this.watchedFor(attempt.volumeId, attempt.partition).checker.fail(
      "end",
      `tick ${this.tickNow}: a ${request.kind} of [${past.offset}, ${past.offset + past.length}) on partition ${attempt.partition} was answered in epoch ${request.epoch}, whose record ends the volume at ${end} (attempt ${attempt.attempt})`,
    );
  }

  private applyUpdate(
    partition: number,
    entry: { record: PartitionRecord; revision: number },
    next: PartitionRecord,
  ): void {
    const before = entry.record;
    this.stats.epochs++;
    const avoidedBefore = this.avoided(partition);
    // As the reconciler does: a member dropped while alive is not the next learner.
    const alive = this.aliveNodes();
    const remaining = membersOf(next);
    for (const node of membersOf(before)) {
      if (remaining.includes(node) || !alive.has(node)) continue;
      const dropped = this.dropped.get(partition) ?? new Map<string, number>();
      dropped.set(node, this.tickNow + this.options.droppedNodeAvoidTicks);
      this.dropped.set(partition, dropped);
    }
    if (next.primary !== before.primary) this.stats.promotions++;
    const count = this.options.partitions[partition]!;
    const standIn = addedStandIn(before, next, count);
    if (standIn !== undefined) {
      this.stats.standIns++;
      if (avoidedBefore.has(standIn)) this.stats.standInsOnAvoided++;
    }
    const added = membersOf(next).filter((node) => !membersOf(before).includes(node));
    if (
      membersOf(before).length < count &&
      next.primary === before.primary &&
      this.sledsCut(before.primary) &&
      added.some((node) => !this.sledsCut(node)) &&
      this.nodes.some(
        (node) =>
          !membersOf(next).includes(node.id) && this.running(node) && this.sledsCut(node.id),
      )
    )
      this.stats.rebuildsPastCutSpare++;
    if (
      1 + before.secondaries.length > count &&
      next.primary === before.primary &&
      next.secondaries.length < before.secondaries.length
    )
      this.stats.surplusDrops++;
    if (next.servedBytes !== undefined) {
      this.servedByEpoch.set(`${this.volumeId}/${partition}/${next.epoch}`, next.servedBytes);
    }
    entry.record = next;
    entry.revision++;
    this.leases.recordChanged(volumeName, partition);
    const voters = [next.primary, ...votingSecondaries(next)];
    const originals = this.originalVoters.get(partition);
    for (const node of [...(originals ?? [])]) if (!voters.includes(node)) originals!.delete(node);
    let since = this.learnersSince.get(partition);
    if (since === undefined) {
      since = new Map();
      this.learnersSince.set(partition, since);
    }
    for (const node of [...since.keys()]) {
      if (!(next.learners ?? []).includes(node)) since.delete(node);
    }
    for (const node of next.learners ?? []) {
      if (!since.has(node)) since.set(node, { ms: this.nowMs(), epoch: next.epoch });
    }
    const joined = this.joinersSince.get(partition) ?? new Map<string, number>();
    this.joinersSince.set(partition, joined);
    for (const node of [...joined.keys()]) {
      if (!(next.joining ?? []).includes(node)) joined.delete(node);
    }
    for (const node of next.joining ?? []) if (!joined.has(node)) joined.set(node, this.nowMs());
  }

  /** The partition's newest checkpoint pointer of any replica (catalogue.ts `newestCheckpoint`). */
  private newestCheckpoint(partition: number): CheckpointPointer | undefined {
    let newest: CheckpointPointer | undefined;
    const prefix = `${this.volumeId}/${partition}/`;
    for (const [key, pointer] of this.checkpointRecords.pointers) {
      if (key.startsWith(prefix) && (newest === undefined || pointer.opNum > newest.opNum))
        newest = pointer;
    }
    return newest;
  }

  /**
   * As configurer.ts (learnerCheckpoint): the checkpoint a learner is configured with,
   * the newer of the primary's own and the partition's newest of any replica (seeds
   * 9760592, 9761092).
   */
  private learnerPointer(record: PartitionRecord): CheckpointPointer | undefined {
    const own = this.checkpointRecords.pointers.get(
      `${this.volumeId}/${record.partition}/${record.primary}`,
    );
    // The simulated replicas name their blobs by the volume's name (no volumeId in their
    // identity, as in a static assignment); the pointers here are this incarnation's
    // already, keyed by its volume id.
    return learnerCheckpoint(
      own,
      this.newestCheckpoint(record.partition),
      volumeName,
      record.partition,
      new Set(this.liveSleds()),
      this.unusableCheckpoints.get(`${this.volumeId}/${record.partition}`),
    );
  }

  private pushConfiguration(record: PartitionRecord): void {
    const originals = this.originalVoters.get(record.partition);
    const since = this.learnersSince.get(record.partition);
    const pointer = this.learnerPointer(record);
    const own = this.checkpointRecords.pointers.get(
      `${this.volumeId}/${record.partition}/${record.primary}`,
    );
    if (pointer !== undefined && pointer !== own) this.stats.learnersFromNewerCheckpoint++;
    const newest = this.newestCheckpoint(record.partition);
    if (
      (record.learners ?? []).length > 0 &&
      pointer !== undefined &&
      newest !== undefined &&
      pointer !== newest &&
      this.unusableCheckpoints.get(`${this.volumeId}/${record.partition}`)?.has(newest.blobKey)
    )
      this.stats.learnersPastUnusableCheckpoint++;
    const configured = this.configured.get(record.partition);
    const report = this.reports.get(record.partition);
    const alive = this.aliveNodes();
    const view = {
      alive,
      disks: this.liveDisks(alive),
      noReplica: this.noReplicaOf(record),
      unproven: this.unprovenOf(record),
      ...(this.options.sabotage === "coordinator-ignores-failures"
        ? {}
        : {
            unopened: this.leases.unopenedMembers(record),
            reopening: this.reopeningOf(record),
          }),
    };
    // As configurer.ts: nothing is sent while no sled is live, and a member that lacks a
    // live sled is out of date (the sabotage: the rule before 6523831).
    const sleds = this.liveSleds();
    if (sleds.length === 0) return;
    for (const member of membersOf(record)) {
      // As configurer.ts: a failed primary is sent nothing while it is failed over.
      if (member === record.primary && failingOver(record, report, view)) continue;
      const last = configured?.get(member);
      if (
        last?.epoch === record.epoch &&
        (knowsSleds(last.sleds, sleds) || this.options.sabotage === "configure-ignores-sleds") &&
        this.tickNow - last.atTick < this.options.configureRefreshTicks &&
        // As configurer.ts: a primary whose reports contradict its acknowledgement (an
        // older epoch, or failed) is pushed again once the verify time has passed.
        !(
          member === record.primary &&
          outOfStep(
            record,
            report,
            { epoch: last.epoch, atMs: last.atTick * this.options.tickMs },
            this.nowMs(),
            view,
          )
        )
      )
        continue;
      // As configurer.ts: a member that refused the epoch for being on another disk is
      // not sent it every round.
      const refused = this.otherDisk.get(record.partition)?.get(member);
      if (otherDiskBackoff(record, member, refused, view.disks, this.nowMs())) {
        this.stats.otherDiskConfiguresHeld++;
        continue;
      }
      const learnerSince = since?.get(member)?.epoch;
      const configure: ConfigureMessage = {
        volumeId: this.volumeId,
        partition: record.partition,
        configuration: this.configurationOf(record),
        create: originals?.has(member) === true,
        sleds,
        ...(record.disks?.[member] === undefined ? {} : { disk: record.disks[member] }),
        // Today's coordinator records disks; one before disk ids did not.
        disksRecorded: this.options.sabotage !== "ignore-disk-ids" && !this.beforeUpgrade(),
        ...(learnerSince === undefined ? {} : { learnerSince }),
        ...(learnerSince === undefined || pointer === undefined ? {} : { checkpoint: pointer }),
      };
      this.send({ kind: "configure", to: member, configure });
      if (
        (record.learners ?? []).includes(member) &&
        this.options.lateLearnerConfigureChance > 0 &&
        this.lateConfigureRandom.chance(this.options.lateLearnerConfigureChance)
      ) {
        const held = this.lateConfigures.get(member) ?? new Map<number, ConfigureMessage>();
        held.set(record.partition, configure);
        this.lateConfigures.set(member, held);
      }
      if (
        this.options.lateVoterConfigureChance > 0 &&
        partOf(member, configure.configuration) !== "learner" &&
        this.lateVoterRandom.chance(this.options.lateVoterConfigureChance)
      ) {
        const held = this.lateVoterConfigures.get(member) ?? new Map();
        held.set(record.partition, { configure, atStart: this.lateVoterRandom.chance(0.5) });
        this.lateVoterConfigures.set(member, held);
      }
    }
    // As configurer.ts: a live former member that has not heard the record's epoch is
    // sent it too, naming it nowhere; it closes its replica (configure-decision.ts
    // `close-out`) and answers NotFound, and is then forgotten (`onFormerMember`).
    const members = membersOf(record);
    for (const [node, last] of this.options.tellFormerMembers ? (configured ?? []) : []) {
      if (members.includes(node) || !alive.has(node) || last.epoch === record.epoch) continue;
      this.stats.formerMembersTold++;
      this.send({
        kind: "configure",
        to: node,
        configure: {
          volumeId: this.volumeId,
          partition: record.partition,
          configuration: this.configurationOf(record),
          create: false,
          sleds,
          disksRecorded: this.options.sabotage !== "ignore-disk-ids" && !this.beforeUpgrade(),
        },
      });
    }
  }

  /** The replica set a configure of `record` carries, to members and former members alike. */
  private configurationOf(record: PartitionRecord) {
    return {
      epoch: record.epoch,
      primary: record.primary,
      secondaries: votingSecondaries(record),
      learners: record.learners ?? [],
      // As configurer.ts: the volume's end within the partition, when the record has one.
      ...(record.servedBytes === undefined || this.options.sabotage === "configure-ignores-end"
        ? {}
        : { servedBytes: record.servedBytes }),
    };
  }

  /** A head node acknowledged a configure: it holds that epoch (configurer.ts). */
  private onConfigured(envelope: {
    from: string;
    session: number;
    volumeId: string;
    partition: number;
    epoch: number;
    /** The disk holding the replica, as a head node's answer names it. */
    disk: string;
    /** The sleds the configure named, kept as configurer.ts keeps them. */
    sleds: readonly string[];
  }): void {
    if (envelope.volumeId !== this.volumeId) return;
    if (!this.heardSession(envelope.from, envelope.session)) return;
    let configured = this.configured.get(envelope.partition);
    if (configured === undefined) {
      configured = new Map();
      this.configured.set(envelope.partition, configured);
    }
    configured.set(envelope.from, {
      epoch: envelope.epoch,
      atTick: this.tickNow,
      sleds: envelope.sleds,
      // The system before disk ids heard none.
      ...(this.options.sabotage === "ignore-disk-ids" || this.beforeUpgrade()
        ? {}
        : { disk: envelope.disk }),
    });
    this.noReplica.get(envelope.partition)?.delete(envelope.from);
    this.otherDisk.get(envelope.partition)?.delete(envelope.from);
    this.reopening.get(envelope.partition)?.delete(envelope.from);
  }

  /**
   * A head node outside the record's replica set holds nothing of the partition: nothing
   * more to tell it (configurer.ts, "a former member holds nothing").
   */
  private onFormerMember(from: string, session: number, volumeId: string, partition: number) {
    if (volumeId !== this.volumeId) return;
    if (!this.heardSession(from, session)) return;
    const record = this.records.get(partition)?.record;
    if (record !== undefined && membersOf(record).includes(from)) return;
    this.configured.get(partition)?.delete(from);
    this.reopening.get(partition)?.delete(from);
  }

  /** A head node refused an epoch for holding nothing of the partition (configurer.ts). */
  private onNoReplica(envelope: {
    from: string;
    session: number;
    volumeId: string;
    partition: number;
    epoch: number;
  }): void {
    if (envelope.volumeId !== this.volumeId) return;
    if (!this.heardSession(envelope.from, envelope.session)) return;
    let refused = this.noReplica.get(envelope.partition);
    if (refused === undefined) {
      refused = new Map();
      this.noReplica.set(envelope.partition, refused);
    }
    refused.set(envelope.from, envelope.epoch);
  }

  /** A head node refused an epoch for being on another disk (configurer.ts). */
  private onOtherDisk(envelope: {
    from: string;
    session: number;
    volumeId: string;
    partition: number;
    epoch: number;
  }): void {
    if (envelope.volumeId !== this.volumeId) return;
    if (!this.heardSession(envelope.from, envelope.session)) return;
    let refused = this.otherDisk.get(envelope.partition);
    if (refused === undefined) {
      refused = new Map();
      this.otherDisk.set(envelope.partition, refused);
    }
    refused.set(envelope.from, { epoch: envelope.epoch, atMs: this.nowMs() });
  }

  /**
   * Members not yet reopened since a restart (configurer.ts `reopeningMembers`; the
   * sabotage: none).
   */
  private reopeningOf(record: PartitionRecord): Set<string> {
    const reopening = this.reopening.get(record.partition);
    if (reopening === undefined || this.options.sabotage === "promote-reopening-secondary")
      return new Set();
    return new Set(membersOf(record).filter((node) => reopening.has(node)));
  }

  /** Members that refused the record's epoch for holding nothing (`noReplicaMembers`). */
  private noReplicaOf(record: PartitionRecord): Set<string> {
    const refused = this.noReplica.get(record.partition) ?? new Map<string, number>();
    const members = membersOf(record);
    return new Set(
      [...refused]
        .filter(([node, epoch]) => epoch === record.epoch && members.includes(node))
        .map(([node]) => node),
    );
  }

  /**
   * Members with no disk recorded that have not answered the record's epoch, and members
   * that have answered no configure of the partition in this tenure, disk recorded or not
   * (configurer.ts `unprovenMembers`). A restart deletes the answer here and notes the
   * member `reopening`, where the real tenure marks it epoch −1: an answer heard all the
   * same, so a `reopening` member is not unheard (counted so, it hid the sabotage
   * `promote-reopening-secondary`). None from the coordinator before disk ids, which
   * knew of no disks (the sabotages: none at all, or only those with no disk recorded).
   */
  private unprovenOf(record: PartitionRecord): Set<string> {
    if (this.beforeUpgrade() || this.options.sabotage === "promote-unproven-secondary")
      return new Set();
    const configured = this.configured.get(record.partition);
    const reopening = this.reopening.get(record.partition);
    const unheard = (node: string) =>
      configured?.get(node) === undefined &&
      reopening?.has(node) !== true &&
      this.options.sabotage !== "promote-unheard-secondary";
    return new Set(
      membersOf(record).filter(
        (node) =>
          unheard(node) ||
          (record.disks?.[node] === undefined && configured?.get(node)?.epoch !== record.epoch),
      ),
    );
  }

  /** Members whose answer to the record's epoch named their disk (`provenDisks`). */
  private provenOf(record: PartitionRecord): Map<string, string> {
    const proven = new Map<string, string>();
    const configured = this.configured.get(record.partition);
    for (const node of membersOf(record)) {
      const last = configured?.get(node);
      if (last?.disk === undefined || last.epoch !== record.epoch) continue;
      if (record.disks?.[node] === undefined) proven.set(node, last.disk);
    }
    return proven;
  }

  /**
   * Notes a session heard from a node; false if it is older than one already heard. A
   * newer one is a restart, whose replicas must be configured again (tenure.ts
   * `forgetConfigured`).
   */
  private heardSession(node: string, session: number): boolean {
    const known = this.sessions.get(node);
    if (known !== undefined && session < known) return false;
    if (known !== undefined && session > known) this.forgetConfigured(node);
    this.sessions.set(node, session);
    return true;
  }

  private forgetConfigured(node: string): void {
    for (const [partition, configured] of this.configured) {
      if (!configured.delete(node)) continue;
      const reopening = this.reopening.get(partition) ?? new Set<string>();
      reopening.add(node);
      this.reopening.set(partition, reopening);
    }
    // As tenure.ts: restarted, it may have its old disk back.
    for (const refused of this.otherDisk.values()) refused.delete(node);
  }

  private onReport(report: NodeReport): void {
    // Back from silence (declared dead meanwhile): configured again, as after a restart.
    const heard = this.lastHeardTick.get(report.node);
    if (heard !== undefined && this.tickNow - heard > this.options.deadAfterTicks)
      this.forgetConfigured(report.node);
    this.heardSession(report.node, report.session);
    this.lastHeardTick.set(report.node, this.tickNow);
    const { sent } = report;
    // Reports overtake each other on the way: an older one (its session and seq) must not
    // replace what a newer one said, as the lease book, where the real leader reads them,
    // refuses it (it once put a failed primary's healthy past back in place for good).
    const applied = this.reportsApplied.get(report.node);
    const newer =
      applied === undefined ||
      report.session > applied.session ||
      (report.session === applied.session && sent.seq > applied.seq);
    if (newer && this.options.sabotage !== "ignore-disk-ids")
      this.disks.set(report.node, report.disk);
    if (newer && sent.base === undefined && report.session > (applied?.session ?? 0)) {
      // A new session's whole state replaces what an earlier life reported, in the lease
      // book the real leader reads reports from: a partition it no longer lists (its
      // replica could not be opened) has no current report, so its primary counts as
      // unconfirmed. Kept here, a dead life's report hid that for good.
      for (const [partition, known] of this.reports) {
        if (this.records.get(partition)?.record.primary !== report.node) continue;
        const listed = sent.primaries.some(
          (primary) => primary.volumeId === this.volumeId && primary.partition === partition,
        );
        if (!listed && known.session < report.session) this.reports.delete(partition);
      }
    }
    if (newer) this.reportsApplied.set(report.node, { session: report.session, seq: sent.seq });
    // As reports.ts: evidence that the node reaches the sleds (of the newest reports only,
    // as the lease book takes them).
    if (newer) {
      this.sledReach.heard(
        report.node,
        { session: report.session, seq: sent.seq, base: sent.base, sledStores: report.sledStores },
        this.nowMs(),
      );
    }
    for (const primary of sent.primaries) {
      if (primary.volumeId !== this.volumeId) continue;
      const entry = this.records.get(primary.partition);
      if (entry === undefined) continue;
      const record = entry.record;
      if (record.primary !== report.node || primary.epoch !== record.epoch) continue;
      const known = this.reports.get(primary.partition);
      if (newer && (known === undefined || known.epoch <= primary.epoch))
        this.reports.set(primary.partition, primary);
      if (!this.staleReports.has(primary.partition) || this.chance(0.05))
        this.staleReports.set(primary.partition, primary);
    }
    // The lease, as the real leader decides it: counted from when it answers, plus the
    // margin for clock-rate drift.
    const recordOf = (volume: string, partition: number) =>
      volume === volumeName ? this.records.get(partition)?.record : undefined;
    const outcome = this.leases.onNodeReport(
      {
        node: report.node,
        session: report.session,
        seq: sent.seq,
        base: sent.base,
        primaries: sent.primaries,
        gone: sent.gone,
        failures: sent.failures,
        failuresGone: sent.failuresGone,
      },
      recordOf,
      this.aliveNodes(),
      this.nowMs(),
    );
    // The book judges again only what changed (leases.ts): once it accepts a report, its
    // verdicts must be those a judgement of every entry gives.
    const problems =
      outcome.full === true ? [] : this.leases.verify(report.node, recordOf, this.aliveNodes());
    for (const problem of problems) this.fail("lease-book", `tick ${this.tickNow}: ${problem}`);
    this.send({
      kind: "grant",
      to: report.node,
      session: report.session,
      sentAt: report.sentAt,
      sent,
      reported: report.reported,
      answer: {
        leaseMs: limits.primaryLeaseMs,
        granted: outcome.granted,
        ...(outcome.accepted === undefined ? {} : { accepted: outcome.accepted }),
        ...(outcome.held === undefined ? {} : { held: outcome.held }),
        ...(outcome.heldFailures === undefined ? {} : { heldFailures: outcome.heldFailures }),
        excluded: outcome.excluded,
        ...(outcome.full === true ? { full: true } : {}),
      },
      ...(this.replicating ? { sledsOut: this.sledsOut() } : {}),
      ...(this.replicating && this.options.sabotage !== "sled-audit-unasked"
        ? { sledsToAudit: this.sledsToAudit() }
        : {}),
      ...(this.sledReach.probeWanted(report.node, this.nowMs()) ? { probeSleds: true } : {}),
    });
  }

  // ---------------------------------------------------------------- network

  /** Whether a message can pass from `from` to `to` now ("coordinator" and "client" are ends too). */
  private linked(from: string, to: string): boolean {
    for (const cut of this.oneWayCuts) if (cut.from === from && cut.to === to) return false;
    const nodeEnd = (id: string) => this.nodes.find((node) => node.id === id);
    const a = nodeEnd(from);
    const b = nodeEnd(to);
    for (const [end, other] of [
      [a, b],
      [b, a],
    ] as const) {
      const cut = end?.cut;
      if (cut === undefined) continue;
      if (cut.kind === "isolated") return false;
      if (other !== undefined) return false; // another head node
      if (cut.kind === "cluster" && (from === "coordinator" || to === "coordinator")) return false;
    }
    return true;
  }

  private endpoints(envelope: Envelope): { from: string; to: string } {
    switch (envelope.kind) {
      case "replication":
        return { from: envelope.from, to: envelope.to };
      case "request":
        return { from: "client", to: envelope.to };
      case "reply":
        return { from: envelope.from, to: "client" };
      case "configure":
      case "drop":
      case "grant":
        return { from: "coordinator", to: envelope.to };
      case "report":
        return { from: envelope.from, to: "coordinator" };
      default: {
        const unreachable: never = envelope;
        throw new Error(`unknown envelope ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private send(envelope: Envelope): void {
    // Client requests are never duplicated: each attempt is assigned at most once.
    this.network.send(envelope, envelope.kind !== "request");
  }

  private async deliverMessages(): Promise<void> {
    const perLink = new Map<string, number>();
    let overloaded = false;
    const due = this.network.due((envelope) => {
      const { from, to } = this.endpoints(envelope);
      if (!this.linked(from, to)) return "lose"; // lost to the network partition
      const target = this.nodes.find((node) => node.id === to);
      if (target?.up && target.pausedUntilTick > this.tickNow) return "hold"; // waits in the socket
      if (to === "client" && this.clientsPaused()) return "hold"; // read once the client runs
      const link = `${from}>${to}`;
      const carried = (perLink.get(link) ?? 0) + 1;
      perLink.set(link, carried);
      if (carried > linkMessagesPerTickMax && from !== "coordinator" && to !== "coordinator") {
        overloaded = true;
        return "lose";
      }
      return "deliver";
    });
    if (overloaded) this.stats.overloadedLinkTicks++;
    for (const envelope of due) await this.deliver(envelope);
  }

  private async deliver(envelope: Envelope): Promise<void> {
    switch (envelope.kind) {
      case "replication": {
        const node = this.node(envelope.to);
        if (!node.up) return;
        const hosted = node.hosted.get(envelope.message.partition);
        // A failed replica takes no replication messages: it acknowledges nothing. Nor does
        // one being retired: its subscription has stopped.
        if (hosted?.adapter === undefined || hosted.adapter.failed !== undefined) return;
        if (hosted.retiring) return;
        const message = this.damageDrawn("message")
          ? this.damaged(envelope.message)
          : envelope.message;
        hosted.adapter.replica.onReplicationMessage(message);
        this.execute(node, hosted);
        return;
      }
      case "request":
        this.deliverRequest(envelope);
        return;
      case "reply":
        this.receiveReply(envelope.client, envelope.attempt, envelope.outcome);
        return;
      case "configure": {
        const node = this.node(envelope.to);
        const { configure } = envelope;
        if (node.up) await this.configure(node, configure);
        return;
      }
      case "drop": {
        const node = this.node(envelope.to);
        if (node.up) await this.onDrop(node, envelope.volumeId);
        return;
      }
      case "report":
        this.onReport(envelope.report);
        return;
      case "grant": {
        const node = this.node(envelope.to);
        if (node.up) this.onGrant(node, envelope);
        return;
      }
      default: {
        const unreachable: never = envelope;
        throw new Error(`unknown envelope ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Whether damage strikes this message or chunk read (corruptChance). */
  private damageDrawn(what: "message" | "chunk" | "files"): boolean {
    const chance =
      what === "files"
        ? Math.min(1, this.options.corruptChance * filesDamageFactor)
        : this.options.corruptChance;
    if (chance <= 0 || !this.faultsOn || !this.corruptRandom.chance(chance)) return false;
    if (what === "chunk") this.stats.chunkReadsDamaged++;
    if (what === "files") this.stats.filesDamaged++;
    return true;
  }

  /**
   * `message` as damage in flight left it (corruptChance): one note's data with a bit
   * flipped after its checksum was computed (the checksum computed after the damage,
   * for the `unchecked-note-checksums` sabotage), or its checksum field wrong. A copy:
   * the sender's notes and any duplicate of the message stay whole.
   */
  private damaged(message: ReplicationMessage): ReplicationMessage {
    if (message.type !== "replica.notes.v1" || message.notes.length === 0) return message;
    const random = this.corruptRandom;
    const index = random.integer(0, message.notes.length - 1);
    const note = message.notes[index]!;
    const copy: Note = { ...note };
    if (note.data !== undefined && note.data.byteLength > 0 && random.chance(0.75)) {
      copy.data = flipBit(note.data, random);
      if (this.options.sabotage === "unchecked-note-checksums") {
        copy.checksum = noteChecksum(copy.data);
      }
      this.stats.notesDamaged++;
    } else {
      copy.checksum = (note.checksum ^ (1 << random.integer(0, 31))) >>> 0;
      this.stats.checksumsDamaged++;
    }
    const notes = [...message.notes];
    notes[index] = copy;
    return { ...message, notes };
  }

  // ---------------------------------------------------------------- clients

  private clientOf(attempt: number): number {
    return this.clients.findIndex((client) => client.outstanding?.attempt === attempt);
  }

  private route(client: SimulatedClient, partition: number) {
    let route = client.routes.get(partition);
    if (route === undefined) {
      const record = this.records.get(partition)!.record;
      route = { node: record.primary, epoch: record.epoch, volumeId: this.volumeId };
      client.routes.set(partition, route);
    }
    return route;
  }

  private issueRequests(): void {
    this.clients.forEach((client, index) => {
      if (client.outstanding !== undefined || !this.chance(this.options.requestRate)) return;
      const partition = this.integer(0, this.options.partitions.length - 1);
      this.issue(index, partition, this.newRequest(partition), this.options.clientRetries);
    });
  }

  /**
   * Now and then asks a partition's primary to take a new snapshot or drop one it has
   * (replies go to no client). Once settled, every replica must have the same snapshots
   * (the metadata fingerprints include them) and each must read as the model at its op.
   */
  private snapshotRequests(): void {
    if (!this.chance(this.options.snapshotRate)) return;
    const partition = this.integer(0, this.options.partitions.length - 1);
    const record = this.records.get(partition)?.record;
    if (record === undefined) return;
    const node = this.node(record.primary);
    const hosted = node.hosted.get(partition);
    const replica = hosted?.adapter?.replica;
    if (!node.up || hosted === undefined || hosted.volumeId !== this.volumeId || !replica) return;
    if (hosted.adapter?.failed !== undefined || hosted.retiring) return;
    const taken = [...replica.metadata.snapshots.keys()];
    const requestId = this.snapshotRequestId++;
    // The control subject's handler waits for the reply, as a client's does.
    hosted.adapter?.hold(requestId);
    if (taken.length > 0 && this.chance(0.3)) {
      replica.dropSnapshot(requestId, record.epoch, taken[this.integer(0, taken.length - 1)]!);
    } else {
      replica.takeSnapshot(requestId, record.epoch, `sim-${this.snapshotsDrawn++}`);
    }
    this.stats.snapshotRequests++;
    this.execute(node, hosted);
  }

  /** Asks a partition's primary to take a new snapshot (its reply goes to no client). */
  private takeSnapshot(partition: number): void {
    const record = this.records.get(partition)?.record;
    if (record === undefined) return;
    const node = this.node(record.primary);
    const hosted = node.hosted.get(partition);
    const replica = hosted?.adapter?.replica;
    if (!node.up || hosted === undefined || hosted.volumeId !== this.volumeId || !replica) return;
    if (hosted.adapter?.failed !== undefined || hosted.retiring) return;
    const requestId = this.snapshotRequestId++;
    hosted.adapter?.hold(requestId);
    replica.takeSnapshot(requestId, record.epoch, `sim-${this.snapshotsDrawn++}`);
    this.stats.snapshotRequests++;
    this.execute(node, hosted);
  }

  private newRequest(partition: number): SimRequest {
    const { partitionBytes } = this.options;
    return randomRequest(this.random, partition * partitionBytes, partitionBytes);
  }

  /** Sends one attempt of a request along the client's route. */
  private issue(clientIndex: number, partition: number, template: SimRequest, retries: number) {
    const client = this.clients[clientIndex]!;
    const route = this.route(client, partition);
    const attempt = this.nextAttempt++;
    const request = { ...template, requestId: attempt, epoch: route.epoch } as SimRequest;
    const mutates =
      request.kind === "write" || request.kind === "trim" || request.kind === "zeroes";
    if (mutates) {
      // Attempt numbers grow with every attempt sent: each is a sequence above every
      // one its client sent before, as the client library's (fence.ts).
      if (this.options.sabotage !== "no-ordering-fence") {
        request.fence = { session: clientSession(clientIndex), sequence: attempt };
      }
      this.mutationAttempts.set(attempt, {
        client: clientIndex,
        partition,
        volumeId: route.volumeId,
      });
    }
    const watched = this.watchedFor(route.volumeId, partition);
    const entries = attemptEntries(request);
    if (entries !== undefined) {
      watched.model.issued(attempt, entries);
      this.writeWaiting(route.volumeId, partition);
    }
    client.outstanding = {
      attempt,
      partition,
      volumeId: route.volumeId,
      request,
      issuedTick: this.tickNow,
      acknowledgedBefore: watched.checker.highestAcknowledgedOpNum,
      retriesLeft: retries,
    };
    const { staleRequestChance, clientTimeoutTicks } = this.options;
    if (mutates && this.faultsOn && this.staleRandom.chance(staleRequestChance)) {
      // Held in a socket past the client's timeout: the client retries, goes on, and
      // this copy arrives late (unless the node's process ends meanwhile).
      this.stats.staleRequests++;
      const heldTicks = clientTimeoutTicks + this.staleRandom.integer(1, clientTimeoutTicks);
      this.network.send(
        {
          kind: "request",
          client: clientIndex,
          to: route.node,
          attempt,
          request,
          heldFor: this.node(route.node).session,
        },
        false,
        heldTicks,
      );
      return;
    }
    this.send({ kind: "request", client: clientIndex, to: route.node, attempt, request });
  }

  private deliverRequest(envelope: Extract<Envelope, { kind: "request" }>): void {
    const node = this.node(envelope.to);
    if (!node.up) return;
    // A frame held in a socket of a process that has ended since is gone with it.
    if (envelope.heldFor !== undefined && envelope.heldFor !== node.session) return;
    const { request } = envelope;
    const hosted = node.hosted.get(this.partitionOf(request));
    const adapter = hosted?.adapter;
    const refuse = (error: BallastError) =>
      this.send({
        kind: "reply",
        from: node.id,
        client: envelope.client,
        attempt: envelope.attempt,
        outcome: { ok: false, error },
      });
    if (hosted === undefined || adapter === undefined) {
      refuse(new BallastError(ErrorCode.NotPrimary, `${node.id} hosts no such replica`));
      return;
    }
    if (adapter.failed !== undefined) {
      // The head node serves no failed replica's volume subject.
      refuse(new BallastError(ErrorCode.NotPrimary, `${node.id}'s replica failed`));
      return;
    }
    if (hosted.retiring) {
      // Nor one it is retiring: its subscription has stopped.
      refuse(new BallastError(ErrorCode.NotPrimary, `${node.id} is closing its replica`));
      return;
    }
    if (request.kind !== "read") {
      // Its handler waits for the reply: in flight until the core answers.
      adapter.hold(request.requestId);
      adapter.replica.onClientRequest(request);
      this.execute(node, hosted);
      return;
    }
    let read: ReadResult;
    try {
      read = adapter.read(
        request.epoch,
        [{ offset: request.offset, length: request.length }],
        this.leaseClock(node),
      );
    } catch (error) {
      if (!(error instanceof BallastError)) throw error;
      refuse(error);
      return;
    }
    // The client checks what it would be given, against the incarnation it reads.
    const outstanding = this.clients[envelope.client]?.outstanding;
    if (outstanding?.attempt === envelope.attempt) {
      const watched = this.watchedFor(outstanding.volumeId, outstanding.partition);
      watched.checker.read(
        request.offset,
        this.resolveRead(read, watched.checker),
        read.asOfOpNum,
        outstanding.acknowledgedBefore,
      );
      this.stats.reads++;
    }
    this.send({
      kind: "reply",
      from: node.id,
      client: envelope.client,
      attempt: envelope.attempt,
      outcome: { ok: true, reply: { kind: "read", read } },
    });
  }

  private partitionOf(request: SimRequest): number {
    const offset =
      request.kind === "write"
        ? request.writes[0]!.offset
        : request.kind === "flush"
          ? -1
          : request.kind === "read"
            ? request.offset
            : request.ranges[0]!.offset;
    if (offset >= 0) return Math.floor(offset / this.options.partitionBytes);
    // A flush names no range: the client sent it to this attempt's partition.
    const outstanding = this.clients.find(
      (client) => client.outstanding?.attempt === request.requestId,
    )?.outstanding;
    return outstanding?.partition ?? 0;
  }

  private resolveRead(read: ReadResult, checker: Checker): Uint8Array {
    return resolveRead(read, this.sleds.chunks, (check, message) => checker.fail(check, message));
  }

  private receiveReply(clientIndex: number, attempt: number, outcome: ClientOutcome): void {
    const client = this.clients[clientIndex];
    const outstanding = client?.outstanding;
    if (outstanding === undefined || outstanding.attempt !== attempt) {
      this.checkLateReply(attempt, outcome); // late or given up
      return;
    }
    client!.outstanding = undefined;
    if (outcome.ok) this.checkEnd(outstanding);
    else if (outcome.error.code === ErrorCode.OutOfRange) {
      // Past the volume's end (`endChangeRate`): an answer, not retried (as the client
      // library's), and no wait for the partition to acknowledge.
      this.stats.endRefused++;
      this.writeRefused(outstanding.volumeId, outstanding.partition);
      return;
    }
    if (outcome.ok) {
      if (outcome.reply.kind !== "mutation") return;
      const request = outstanding.request;
      if (request.kind === "read" || request.kind === "flush") {
        this.fail("client", `attempt ${attempt} (${request.kind}) got a mutation reply`);
        return;
      }
      this.stats.acknowledgedMutations++;
      const watched = this.watchedFor(outstanding.volumeId, outstanding.partition);
      watched.checker.acknowledged(request, outcome.reply.opNumFirst, outcome.reply.opNumLast);
      watched.model.acknowledgedAt(attempt, outcome.reply.opNumFirst);
      client!.acknowledged.set(`${outstanding.volumeId}/${outstanding.partition}`, {
        attempt,
        opNumFirst: outcome.reply.opNumFirst,
      });
      this.writeAcknowledged(outstanding.volumeId, outstanding.partition);
      return;
    }
    this.retry(clientIndex, outstanding);
  }

  /**
   * The `fence` check, on the reply to an attempt its client no longer waits for: a
   * mutation attempt must never commit at an op above that of a later attempt of its
   * client already acknowledged on the same partition incarnation. The client sends one
   * request at a time, so a later attempt was issued after this one was given up on:
   * committing this one after it lets a copy the client gave up on land over a write it
   * was told is done (with overlapping ranges, undoing it). Committed ops are one order
   * across epochs, so the comparison holds whichever epochs the two were in.
   */
  private checkLateReply(attempt: number, outcome: ClientOutcome): void {
    const sent = this.mutationAttempts.get(attempt);
    if (sent === undefined) return;
    if (!outcome.ok) {
      if (outcome.error.code === ErrorCode.Superseded) this.stats.staleRefused++;
      return;
    }
    if (outcome.reply.kind !== "mutation") return;
    const later = this.clients[sent.client]?.acknowledged.get(`${sent.volumeId}/${sent.partition}`);
    if (later === undefined || later.attempt <= attempt) return;
    if (outcome.reply.opNumFirst > later.opNumFirst) {
      this.fail(
        "fence",
        `client ${sent.client}'s attempt ${attempt} on partition ${sent.partition} committed at op ${outcome.reply.opNumFirst}, after its later attempt ${later.attempt} was acknowledged at op ${later.opNumFirst}`,
      );
    }
  }

  /** After an error or a timeout: learn the current route, and try again if allowed. */
  private retry(clientIndex: number, outstanding: ClientAttempt): void {
    const client = this.clients[clientIndex]!;
    client.outstanding = undefined;
    client.routes.delete(outstanding.partition);
    if (outstanding.volumeId !== this.volumeId || outstanding.retriesLeft <= 0) return;
    this.issue(
      clientIndex,
      outstanding.partition,
      outstanding.request,
      outstanding.retriesLeft - 1,
    );
  }

  private expireClientAttempts(): void {
    this.clients.forEach((client, index) => {
      const outstanding = client.outstanding;
      if (outstanding === undefined) return;
      if (this.tickNow - outstanding.issuedTick <= this.options.clientTimeoutTicks) return;
      if (this.faultsOn) this.retry(index, outstanding);
      else client.outstanding = undefined;
    });
  }

  // ---------------------------------------------------------------- settling

  private isSettled(): boolean {
    if (this.sleds.pending > 0) return false;
    for (const [partition, { record }] of this.records) {
      if ((record.learners ?? []).length > 0 || (record.joining ?? []).length > 0) return false;
      // Whole again (`endChangeRate`): the settled reads cover every partition entire.
      if (record.servedBytes !== undefined) return false;
      const members = membersOf(record);
      if (members.length !== this.options.partitions[partition]) return false;
      const replicas: Replica[] = [];
      for (const member of members) {
        const node = this.node(member);
        const hosted = node.hosted.get(partition);
        const replica = hosted?.adapter?.replica;
        if (!node.up || hosted?.volumeId !== this.volumeId || replica === undefined) return false;
        // A failed replica serves nothing, nor one being retired: the partition is short
        // of a copy.
        if (hosted.adapter?.failed !== undefined || hosted.retiring) return false;
        if (replica.configuration?.epoch !== record.epoch) return false;
        if (hosted.journal.pending > 0) return false;
        replicas.push(replica);
      }
      const primary = this.node(record.primary).hosted.get(partition)!.adapter!;
      if (primary.replica.roleName !== "primary" || !primary.tailCommitted) return false;
      try {
        // Settled includes a primary that serves reads: it holds a current lease.
        primary.read(
          record.epoch,
          [{ offset: partition * this.options.partitionBytes, length: limits.sectorBytes }],
          this.leaseClock(this.node(record.primary)),
        );
      } catch (error) {
        if (error instanceof BallastError && error.code === ErrorCode.Unavailable) return false;
        throw error;
      }
      const last = primary.replica.lastOpNum;
      if (
        !replicas.every((replica) => replica.commitOpNum === last && replica.durableOpNum >= last)
      )
        return false;
    }
    return true;
  }

  private checkSettled(): void {
    for (const [partition, { record }] of this.records) {
      const watched = this.watchedFor(this.volumeId, partition);
      const primary = this.node(record.primary).hosted.get(partition)!.adapter!.replica;
      const expected = primary.metadata.fingerprint();
      for (const member of membersOf(record)) {
        const hosted = this.node(member).hosted.get(partition)!;
        const replica = hosted.adapter!.replica;
        watched.checker.space(member, replica.metadata);
        // Every sled is up once faults are off: a member told of too few of them can
        // place no chunk, so its log only grows until writes wait for room (the
        // `configure-ignores-sleds` sabotage: a volume created with one sled up).
        const told = hosted.runner?.sleds ?? [];
        if (told.filter((sled) => this.sledUp(sled)).length < limits.chunkCopies)
          watched.checker.fail(
            "sleds",
            `${member} was told of sleds [${told.join(", ")}] of [${this.liveSleds().join(", ")}] live once settled: its replica can flush nothing`,
          );
        if (replica.metadata.fingerprint() !== expected)
          watched.checker.fail(
            "metadata",
            `${member}'s metadata differs from the primary's once settled`,
          );
      }
      const read = primary.read(
        record.epoch,
        [{ offset: partition * this.options.partitionBytes, length: this.options.partitionBytes }],
        this.leaseClock(this.node(record.primary)),
      );
      const bytes = this.resolveRead(read, watched.checker);
      const start = partition * this.options.partitionBytes;
      watched.checker.read(start, bytes, read.asOfOpNum, watched.checker.highestAcknowledgedOpNum);
      watched.model.checkSettled(watched.checker, start / limits.sectorBytes, bytes);
      watched.checker.allAcknowledgedCommitted(primary.commitOpNum);
      // Each snapshot reads as the committed history at the op it was taken at.
      for (const id of primary.metadata.snapshots.keys()) {
        const frozen = primary.read(
          record.epoch,
          [{ offset: start, length: this.options.partitionBytes }],
          this.leaseClock(this.node(record.primary)),
          id,
        );
        watched.checker.read(start, this.resolveRead(frozen, watched.checker), frozen.asOfOpNum, 0);
        this.stats.snapshotsChecked++;
      }
    }
  }

  private describe(): string {
    const parts: string[] = [];
    for (const [partition, { record }] of this.records) {
      const members = membersOf(record).map((member) => {
        const node = this.node(member);
        const adapter = node.hosted.get(partition)?.adapter;
        const replica = adapter?.replica;
        return replica === undefined
          ? `${member}: ${node.up ? "no replica" : "down"}`
          : `${member}: ${adapter?.failed === undefined ? "" : "FAILED "}${replica.roleName} e${replica.configuration?.epoch} last ${replica.lastOpNum} durable ${replica.durableOpNum} commit ${replica.commitOpNum}`;
      });
      parts.push(
        `p${partition} e${record.epoch} primary ${record.primary} secondaries [${record.secondaries}] joining [${record.joining ?? []}] learners [${record.learners ?? []}] {${members.join("; ")}}`,
      );
    }
    return parts.join(" | ");
  }
}

/**
 * Whether a primary's report is one the coordinator fails it over on, secondary
 * permitting (decisions.ts decideMembership): failed, stalled on its own journal, or
 * failing every flush, for primaryStallMsMax or more. The flush stall is failed over
 * only on more conditions (sleds alive, evidence); counted here all the same, as a disk
 * loss refused is only one fault fewer.
 */
function failsOverOnReport(
  report: Pick<Report, "failed" | "stalledMs" | "flushStalledMs">,
): boolean {
  return (
    report.failed === true ||
    (report.stalledMs ?? 0) >= limits.primaryStallMsMax ||
    (report.flushStalledMs ?? 0) >= limits.primaryStallMsMax
  );
}

/** A 32-bit integer hash (the finaliser of MurmurHash3), so that seeds 1, 2, 3 … differ widely. */
function mixSeed(seed: number): number {
  let hash = seed | 0;
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) | 0;
}

/** A mutation's entries as the client model sees them; undefined for reads and flushes. */
function attemptEntries(request: SimRequest): Attempt | undefined {
  const sector = (offset: number) => offset / limits.sectorBytes;
  switch (request.kind) {
    case "write":
      return {
        entries: request.writes.map((write) => {
          const values: number[] = [];
          for (let at = 0; at < write.data.length; at += limits.sectorBytes)
            values.push(write.data[at]!);
          return { firstSector: sector(write.offset), values };
        }),
      };
    case "trim":
    case "zeroes":
      return {
        entries: request.ranges.map((range) => ({
          firstSector: sector(range.offset),
          values: new Array<number>(range.length / limits.sectorBytes).fill(0),
        })),
      };
    case "flush":
    case "read":
      return undefined;
    default: {
      const unreachable: never = request;
      throw new Error(`unknown request ${JSON.stringify(unreachable)}`);
    }
  }
}

/** The newest of `voterEpoch` and the epochs of `notes` (a journal's): undefined for none. */
function newestEpochOf(notes: readonly Note[], voterEpoch: number | undefined): number | undefined {
  let newest = voterEpoch;
  for (const note of notes) if (newest === undefined || note.epoch > newest) newest = note.epoch;
  return newest;
}

export async function simulateFailover(
  seed: number,
  overrides: Partial<Omit<FailoverOptions, "seed">> = {},
): Promise<FailoverResult> {
  return new FailoverSimulation({ ...failoverDefaults, ...overrides, seed }).run();
}
