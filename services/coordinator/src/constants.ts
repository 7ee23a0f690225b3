// Limits and defaults of the coordinator.

/** Silence after which a service is declared dead. Five missed heartbeats by default. */
export const heartbeatTimeoutMsDefault = 5000;
export const heartbeatTimeoutMsMin = 100;
export const heartbeatTimeoutMsMax = 600_000;
/**
 * The fewest heartbeats a service must send per heartbeat timeout: with fewer, one late
 * or lost heartbeat has a live node declared dead, and it flaps (dead, back, configured
 * again, its partitions failed over). Services are configured apart from the coordinator
 * (`heartbeatIntervalMs`, up to a minute; the timeout down to 100 ms), so the coordinator
 * checks each one's reported interval against its timeout and logs an error naming both
 * settings (membership.ts, heartbeats.ts).
 */
export const heartbeatsPerTimeoutMin = 2;
/** Membership ticks this often a heartbeat timeout (heartbeats.ts `heartbeatTickMsOf`). */
export const heartbeatTicksPerTimeout = 4;
/** The shortest membership tick, whatever the timeout. */
export const heartbeatTickMsMin = 50;
/**
 * A membership tick that comes more than this many ticks after the one before says this
 * coordinator stalled (a long GC, a blocked event loop, a paused VM): heartbeats sent
 * meanwhile are still queued, unread, and Node runs the timers that fell due before it
 * reads them, so it listens afresh before it takes silence for death (heartbeats.ts).
 * As the link layer's `linkStallMsMin`, a tick one interval late. Counting only a stall
 * longer than the whole timeout, one just under it declared live nodes dead and the
 * leader failed their partitions over. A stall shorter than this leaves a node at most
 * this long silent on top of its real silence, half a timeout by default.
 */
export const heartbeatPauseTicksMin = 2;

/**
 * The most partitions one `cluster.status.v1` answer lists, summed over its volumes (a
 * partition at its longest encodes to about 1,660 bytes, so 1.7 MiB). A volume past the
 * budget is listed without its partitions, with `partitionCount` and
 * `partitionsOmitted`; the CLI describes it on its own. Without the budget, enough
 * partitions in the cluster made the answer too large, and status failed for everyone.
 */
export const statusPartitionsMax = 1024;

/** How long a status probe waits for each service's own description. */
export const probeDeadlineMs = 1000;

/**
 * How long the leader waits for each gateway to learn a shrink (describe the volume
 * again, attached.ts `tellShrunk`) before it logs that one as not told.
 */
export const shrinkNoticeDeadlineMs = 5000;

/**
 * The first pause before the leader tries again to finish a shrink begun and not
 * finished (`Volumes.resumeShrinks`); it doubles with each failure, up to
 * `shrinkResumePauseMsMax`. The leader looks for such shrinks every
 * `shrinkResumeCheckMs`.
 */
export const shrinkResumePauseMs = 10_000;
export const shrinkResumePauseMsMax = 5 * 60_000;
export const shrinkResumeCheckMs = 5000;

/** The most services membership tracks; heartbeats from more are refused and logged. */
export const membersMax = 4096;

/**
 * Silence after which a dead member is forgotten (membership.ts): it no longer counts
 * towards `membersMax`, is no longer shown, and joins afresh if it is heard again. An
 * hour, so that ids that never come back (gateways named after pods, decommissioned
 * sleds) leave, while a node down for a while is still listed dead. The coordinator
 * never evicts a sled before it can be declared out (the larger of this and
 * `sledOutAfterMs`), so an evicted sled is out of service too.
 */
export const memberEvictAfterMsDefault = 60 * 60 * 1000;

/**
 * The most head nodes membership evicted whose per-partition notes a leader's tenure
 * keeps (tenure.ts, `noteEvicted`): their acknowledgements, marked out of date, so that
 * one back un-restarted (cut off from the bus for over an hour, not killed) is still
 * told it is out of the partitions it left, as a node back from a shorter silence is.
 * Past it the earliest evicted one's notes go: each costs about one entry per partition
 * it was configured in, and replaced head nodes under new ids would otherwise pile up
 * for as long as the leader leads. Sixteen: a rack's worth cut off together.
 */
export const evictedHeadNodesNotedMax = 16;

/** How often the leader decides every partition (each with its own fresh time). */
export const reconcileIntervalMs = 500;

/**
 * Partitions a round decides in one synchronous stretch: a round over more goes on in
 * slices of this many, each in its own turn of the event loop, so that the leader's
 * lease renewal, heartbeats and requests run between them (a round over 16,384
 * unsettled partitions took seconds on a loaded machine, and the leader lost its lease).
 */
export const reconcileSliceMax = 256;

/**
 * How often the leader re-reads the whole catalogue. Between reads it decides from its
 * own copy, which only it writes during its term (writes are fenced by term).
 */
export const catalogueRefreshMs = 5000;

/**
 * With a watch on the catalogue (catalogue-changes.ts), a re-read that would find
 * nothing changed is skipped; the whole catalogue is still read at least this often.
 */
export const catalogueRereadMsMax = 60_000;

/** How long after a catalogue watch ends or fails it is started again. */
export const watchRetryMs = 1000;

/**
 * Volume names whose checkpoint pointer changes one coordinator counts at most
 * (catalogue-changes.ts, PointerChanges): past it the counts start again as a new
 * generation. About 125 bytes a name, so some 12 MiB; well above the live volumes a
 * leader's passes keep, so that only a coordinator that sweeps nothing (a standby)
 * reaches it.
 */
export const pointerCountsNamesMax = 100_000;

/**
 * A partition whose last decision was `keep` is decided again when an input of that
 * decision changes (reconciler.ts); at the latest after this long all the same, as a
 * safety net, each partition at its own point in the second half of the period so that
 * no round decides every partition (1,000 partitions: about 20 decisions a second).
 */
export const settledRecheckMs = 60_000;

/**
 * Configuration is pushed again to every member at least this often, as a safety net
 * only: a new epoch is pushed at once, and a member that restarts or comes back from
 * silence is pushed again as membership sees it (tenure.ts, forgetConfigured); a head
 * node drops a replica's configuration only when told to (a delete). Each member is due
 * at its own point in the second half of the period, and only when its partition is
 * decided (at least every settledRecheckMs), so the refresh is a trickle, not a burst:
 * 1,000 partitions of 2 replicas cost about 9 configures a second at 300 s (67 at 30 s,
 * 400 at 5 s).
 */
export const configureRefreshMs = 300_000;

/**
 * A member that refused the record's epoch for being on another disk than the record's
 * (`other-disk`: its replica was on a directory it no longer has) is sent that epoch
 * again only after this long (decisions.ts `otherDiskBackoff`), or at once when its
 * heartbeats name the record's disk again or it restarts. Without it the configurer
 * resent the configure every reconcile round (reconcileIntervalMs) for as long as the
 * member stayed in the record: a primary no secondary could replace, for ever. The
 * refusal holds until the node has that disk back, which a restart or a heartbeat
 * shows; this only bounds a missed sign: 60 rounds, one configure where 60 went out.
 */
export const configureOtherDiskRetryMs = 30_000;

/**
 * A primary whose reports still show an older epoch this long after it acknowledged
 * the record's has lost its configuration (configurer.ts): it is pushed again at once,
 * not at the next refresh. Several report intervals (headnodeReportIntervalMs, 500 ms)
 * and more than reportAgeMsMax, so a report sent before the acknowledgement never counts.
 */
export const configureVerifyMs = 5000;

/** How long a configure request to a head node may take. */
export const configureDeadlineMs = 2000;

/**
 * A primary that has neither acknowledged the configure of the record's epoch nor
 * reported in it this long after the leader first saw the epoch (or saw its
 * acknowledgement go: a restart) hosts nothing: its configure hangs (a hung disk while
 * it opens the replica, or a retire that hangs before it). The leader fails the
 * partition over as for a stalled primary (decisions.ts, "Unconfirmed primaries"): only
 * to a live secondary, which holds every acknowledged write, after the lease; the cost
 * is a rebuild of the lost copy. So it must exceed a normal open, whose first report
 * (every headnodeReportIntervalMs, 500 ms) confirms it: loading the local checkpoint and
 * replaying a journal of up to logBytesMax (256 MiB) plus the releasable bytes (64 MiB)
 * at a slow or shared disk's 20 MB/s is about 16 s; and a configure that times out
 * (configureDeadlineMs) and is resent the next round (reconcileIntervalMs) adds 2.5 s.
 * Not in the protocol's limits: only the leader measures it.
 */
export const primaryUnconfirmedMsMax = 20_000;

/**
 * How long the leader remembers that a head node reported a primary whose flushes all
 * fail (`flushStalledMs`). A primary so stalled is failed over only while no other head
 * node has reported one within this (decisions.ts `flushStalledNodes`): one node cut from
 * the sleds is cured by a failover, but stalls on two nodes mean the sleds fail writes
 * for everyone (a read-only device, say), and each failover would only drop a replica:
 * the promoted secondary stalls in turn. Past a lease wait (3 s and its margin) and a
 * stall bound (6 s) with room to spare, so that the promoted node's stall is seen before
 * it too is failed over; a second node cut alone within it waits that much longer.
 */
export const flushStallNodesMemoryMs = 30_000;

/**
 * Whether the leader fails a flush-stalled primary over at all (decisions.ts,
 * `flushStalledMs`). On by default since session 30, with positive evidence: the
 * failover goes only to a secondary whose node has stored something on the sleds since
 * the stall began (sled-reach.ts; asked for with a probe). Before, the guard above alone
 * told a node cut from the sleds from sleds failing everyone, and only when two nodes had
 * data to flush: with one node carrying the writes, sleds hung or shedding load for
 * everyone read as that node's cut, and the failover dropped the old primary, leaving
 * acknowledged writes that could not be flushed on one journal fewer (review-diff19 D1),
 * so it was off. The reconciler's option turns it off.
 */
export const flushStallFailover = true;

/**
 * How long the leader keeps asking a head node to probe the sleds (`probeSleds` in its
 * answers, sled-reach.ts) after it last wanted evidence from it: a few reports' worth
 * (headnodeReportIntervalMs, 500 ms), so that a lost answer or a probe begun within the
 * node's spacing (sledProbeSpacingMs, 1 s) is followed by another.
 */
export const sledProbeAskMs = 3_000;

/**
 * How recent a secondary's store to the sleds must be to count as evidence that its node
 * reaches them (decisions.ts `reachesSleds`), besides being from within the primary's
 * stall: a store made before the sleds began failing everyone's writes says nothing of
 * now (review 30, finding 3). Probes are begun once a second while asked for, each is
 * dated by a report a second or so before it, so one that reaches the sleds keeps its
 * evidence within this.
 */
export const sledEvidenceFreshMs = 5_000;

/**
 * Spare head nodes asked to probe the sleds for a flush-stalled primary none of whose
 * secondaries shows evidence of reaching them (decisions.ts `probeTargets`): a stand-in
 * learner goes on one that does. Each probe stores a chunk-sized blob a second, so few.
 */
export const standInProbesMax = 2;

/**
 * How long past the stall bound (when spares are first asked to probe) a stand-in waits
 * for a spare the partition does not avoid to give evidence before it may go on one it
 * avoids (decisions.ts `decideStandIn`): an avoided node (dropped within
 * droppedNodeAvoidMs, for a hung journal, say) that is primary elsewhere has fresh
 * evidence from its own flushes at once, and an idle healthy spare only once its probe
 * answers, a second or two later (sledProbeSpacingMs, reports every 500 ms). Within
 * sledEvidenceFreshMs, so the avoided one's evidence may still count.
 */
export const standInAvoidedAfterMs = 4_000;

/** Configure requests outstanding at once, over every head node and partition. */
export const configuresInflightMax = 1024;

/**
 * Configure requests outstanding at once to one head node. A new volume of 16,384
 * partitions had 512 queued at each of its two head nodes, more than one could open
 * within configureDeadlineMs: the requests timed out and were sent again, and the
 * head nodes' queues never shrank. A short queue per node is answered in time.
 */
export const configuresPerNodeInflightMax = 32;

/**
 * How long a `headnode.drop.v1` to each head node may take, at a volume's delete and when
 * a purge pass tells a head node that missed it (purge.ts, "Drops owed").
 */
export const dropDeadlineMs = 2000;

/**
 * The leader lease and its renewal period, measured by each coordinator on its own
 * monotonic clock, and the margin for the two clocks' rates to differ over one lease:
 * a leader stops leaseMs − margin after it began its last renewal, another takes over
 * once the key has not changed for leaseMs + margin (see leadership.ts).
 */
export const leaderLeaseMs = 3000;
export const leaderRenewMs = 1000;
export const leaderLeaseDriftMarginMs = 500;
/**
 * How long a leader stopping gracefully waits for the leader work it has in flight (a
 * reconcile, a purge pass, a fence) before it releases the key (leadership.ts); past
 * this it releases nothing and the lease runs out instead.
 */
export const leaderReleaseWaitMs = 3000;

/**
 * A primary's report older than this is not acted on (stalls, learners' progress): its
 * primary has stopped reporting, and its lease runs out on its own.
 */
export const reportAgeMsMax = 2000;

/**
 * The least `--configure-verify-ms` (configureVerifyMs, above) takes: past reportAgeMsMax
 * by a report interval (headnodeReportIntervalMs, 500 ms), so that a report sent before
 * the acknowledgement never counts. The most: the refresh, which pushes it again anyway.
 */
export const configureVerifyMsMin = reportAgeMsMax + 500;
export const configureVerifyMsMax = configureRefreshMs;

/** A learner not caught up by then is dropped; the next round adds one afresh. */
export const learnerCatchUpMsMax = 30_000;

/**
 * A live node dropped from a partition (stalled, or unable to catch up) is the last
 * choice for that partition's next learner for this long.
 */
export const droppedNodeAvoidMs = 60_000;

/**
 * Purging a deleted volume incarnation's chunks and checkpoint blobs from the sleds
 * (purge.ts). The grace lets a head node's flush or upload that was in flight at the
 * delete land before the first pass (passes repeat, so one that lands later is caught
 * too); the record is forgotten once passes have found nothing on every known sled for
 * the retention time, or once it is this old while some sled stays silent.
 */
export const purgeGraceMs = 3000;
export const purgePassIntervalMs = 2000;
export const purgeRetainMs = 60_000;
export const purgeRecordAgeMsMax = 24 * 60 * 60 * 1000;

/** How long one sled list or delete request of a purge pass may take. */
export const purgeRequestDeadlineMs = 5000;

/** Pages of a sled's chunk or blob listing one purge pass reads, per incarnation. */
export const purgeListPagesMax = 100;

/**
 * The orphan sweep (sweep.ts, sweeper.ts): how often the leader compares the sleds'
 * objects of live volumes with what recorded checkpoints reference, and how long an
 * orphan must stay one (two passes at least this far apart) before it is deleted, so
 * that reads planned before a drop, rebuilds reading an old blob and uploads not yet
 * recorded finish first. Both can be shortened for tests (coordinator options).
 */
export const sweepIntervalMsDefault = 30_000;
export const sweepGraceMsDefault = 60_000;
export const sweepTimeMsMin = 100;
export const sweepTimeMsMax = 24 * 60 * 60 * 1000;

/** How long one sled request of a sweep pass (list, header read, delete) may take. */
export const sweepRequestDeadlineMs = 5000;

/**
 * The control store's marks on the sleds (store-marks.ts): how often the leader looks
 * for live sleds not read since they started (each is read once per process, so an idle
 * check sends nothing), and how long one request of that (list, or a part of the mark's
 * upload) may take.
 */
export const storeMarkCheckMs = 1000;
export const storeMarkRequestDeadlineMs = 5000;

/** Pages of a sled's chunk or blob listing one sweep pass reads, per volume. */
export const sweepListPagesMax = 100;

/**
 * Chunk-table entries of checkpoint headers the sweep keeps between passes (a header
 * is read once per recorded pointer while it fits; beyond, every pass reads it again):
 * bounds the coordinator's memory at some tens of MiB.
 */
export const sweepHeaderCacheChunksMax = 200_000;

/** Deletes one pass sends at most (one at a time); the rest wait for the next pass. */
export const sweepDeletesPerPassMax = 1000;

/**
 * Objects a sweep pass's summary line names at most (of those deleted, and of those a
 * delete failed on); the rest are only counted. A pass logs one line of each kind, not
 * one per object (up to `sweepDeletesPerPassMax` a pass).
 */
export const sweepSummaryObjectsMax = 8;

/**
 * The leftover sweep (leftovers.ts, leftover-sweeper.ts): objects of incarnations the
 * catalogue no longer names. It runs every this many orphan-sweep intervals (5 min by
 * default), with the orphan sweep's grace; each pass lists at most this many pages
 * (of `sledLimits.chunkListEntriesMax` chunks or `blobListEntriesMax` blobs) of each
 * sled, continuing where the previous pass stopped; and it remembers at most this many
 * leftovers waiting out their grace.
 */
export const leftoverSweepIntervalFactor = 10;
export const leftoverListPagesMax = 20;
export const leftoverSightingsMax = 100_000;

/**
 * Silence after which a sled is declared out of service (sleds.ts): its copies count as
 * lost and primaries make new ones. Much longer than a heartbeat timeout, so that a sled
 * restart does not copy everything it holds; shorter by option in tests.
 */
export const sledOutAfterMsDefault = 60_000;
export const sledOutAfterMsMin = 100;
export const sledOutAfterMsMax = 24 * 60 * 60 * 1000;

/**
 * How long a sled stays out before it may be forgotten, its record deleted
 * (sled-forgetting.ts), if membership no longer lists it and no recorded checkpoint
 * names it: a day, so that a sled down for repairs is still listed out while it is
 * away, and ids that never return (sleds retired, or replaced under a new name) leave
 * the out set every report answer carries. Counted on the leader's clock from when it
 * declared the sled out, or from its tenure's start for one it loaded out.
 */
export const sledForgetAfterMsDefault = 24 * 60 * 60 * 1000;

/**
 * Snapshots (snapshots.ts): how long a create may take in all (every attempt), how long a
 * primary holds acknowledgements at most (writes wait no longer than this for their
 * replies, even if the leader dies mid-create), how long one partition request may
 * take, how long to wait before retrying one (no primary yet), and how many attempts a
 * create makes (each given up by a failover during it).
 */
export const snapshotCreateDeadlineMs = 10_000;
export const snapshotHoldMs = 3000;
export const snapshotStepDeadlineMs = 2000;
export const snapshotRetryMs = 100;
export const snapshotAttemptsMax = 3;

/**
 * A key listing's consumer (kv-keys.ts) is deleted when the listing ends; should the
 * delete fail, the server removes it after this long without a fetch.
 */
export const keyListingInactiveMs = 30_000;

/** Messages asked for per fetch when listing keys: headers only, so each is small. */
export const keyListingBatchMax = 256;

/** A fetch that delivers nothing in this long, with messages pending, fails the listing. */
export const keyListingFetchMs = 5000;

/**
 * A key listing reads until nothing is pending; one that has read this many messages
 * beyond what was pending when it began is being outrun by writes, and fails.
 */
export const keyListingOverrunMax = 10_000;

/**
 * Orphans whose sightings the sweep hands from leader to leader (`sweep.sightings`,
 * sweeper.ts), most served first, and as many unrecorded snapshot ids; the rest wait
 * out their grace within one tenure as before. About 100 bytes each as JSON, so the record stays well below NATS's default
 * 1 MiB payload.
 */
export const sweepSightingsMax = 4096;

/**
 * How often the leader checks whether an orphan sweep pass is due: the first pass of a
 * tenure comes this soon after it is ready, the rest every sweep interval.
 */
export const sweepDueCheckMs = 1000;

/**
 * How often the leader removes old delete markers from the control bucket
 * (delete-markers.ts): each run is one listing of the bucket and a purge per marker.
 */
export const deleteMarkerCleanupIntervalMs = 10 * 60_000;

/** How often the leader checks whether a delete-marker cleanup is due. */
export const deleteMarkerCleanupCheckMs = 30_000;

/**
 * How old a delete marker must be before the cleanup removes it: far beyond any watch's
 * delivery delay and any compare-and-set that names a deleted key's revision, and
 * beyond any clock difference between the coordinator and the NATS server (the age is
 * the coordinator's wall clock less the server's store time); see delete-markers.ts.
 */
export const deleteMarkerAgeMs = 60 * 60_000;

/** Markers one cleanup removes at most (one purge request each); the rest wait a run. */
export const deleteMarkersRemovedPerRunMax = 10_000;

/**
 * A volume create (or clone) writes its volume record first, marked creating, and lists
 * it once every partition is written (catalogue.ts). A creating record older than this
 * is taken for one whose leader died or stalled: the next create of the name, or a
 * delete its clone pins hold up, removes it by compare-and-set, after which that leader
 * can never list it. Far longer than a create's few store writes take; safety does not
 * depend on it (removing a create that is still running only fails that create).
 */
export const volumeCreatingGraceMs = 60_000;

/**
 * A snapshot create writes its record first, marked creating, before any take, and
 * lists it once every partition has taken it (snapshots.ts). A creating record older
 * than this is taken for one whose leader died or stalled: the sweep (every pass) or the
 * next create of the name removes it by compare-and-set, after which that leader can
 * never list it and the trees it took are orphans the sweep drops. Well above a whole
 * create (`snapshotCreateDeadlineMs` and a step's deadline for the drops); safety does
 * not depend on it (a wall clock ahead only fails a create still running).
 */
export const snapshotCreatingGraceMs = 60_000;

/**
 * A rollback marks its snapshot's record before any partition rolls back and removes
 * the mark when it ends (snapshots.ts, "Rollback against a delete"); a delete of the
 * snapshot is refused while a mark is younger than this (from when the deleting leader
 * first saw it, on its monotonic clock). Well above a whole rollback (the attached
 * check, `snapshotCreateDeadlineMs` for the partitions, a store write or two), so only
 * a leader that died or stalled leaves a mark to expire; a rollback that outlives its
 * mark learns it when it reads the record back, and does not answer success if a
 * delete began. At most
 * `snapshotRollbackMarksMax` live marks on one record (one per leader running a
 * rollback to it: a leader runs catalogue changes one at a time).
 */
export const snapshotRollbackMarkMs = 60_000;
export const snapshotRollbackMarksMax = 8;
/**
 * Rollback marks whose first sighting a coordinator keeps (snapshots.ts
 * `RollbackMarkSightings`); marks live a minute and a leader writes one per rollback, so
 * this is far more than are ever live at once.
 */
export const rollbackMarkSightingsMax = 4096;
/** How many times a rollback marks (or unmarks) a record that keeps moving under it. */
export const snapshotRollbackMarkAttemptsMax = 5;

/**
 * Clone pins one snapshot or volume record may carry (catalogue.ts, `ClonePin`): a clone
 * past this is refused. About 150 bytes each as JSON, so a record stays well below
 * NATS's default 1 MiB payload; pins of clones since deleted are dropped as pins are added.
 */
export const clonePinsMax = 1024;
