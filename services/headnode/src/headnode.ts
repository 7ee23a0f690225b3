// The head node service: hosts partition replicas. Each replica is a PartitionHost
// (journal, checkpoint file, replica core). The head node subscribes, per replica, to
// the replica's replication subject, and, only while the replica is primary, to the
// partition's volume subject where clients send I/O; it ticks every core on a timer.
// A node tick asks only the replicas due at it (tick-schedule.ts): those whose quiet
// ticks have run out and those an input reached since the last tick, so an idle
// replica costs nothing between its deadlines (issue 14).
//
// Replica sets arrive as `headnode.configure.v1` on the node's inbox, from the
// coordinator (or a test's static assignment); configures of one partition are handled
// one at a time, and of those waiting only the newest is kept (an older one is answered
// Unavailable at once, so a hung one cannot fill the inbox with resends). A restarted
// head node recovers each replica from its checkpoint file and journal when it is
// configured again. Replicas are per incarnation of a volume
// (`volumeId`, the volume's name when absent): a configure of another incarnation of a
// hosted volume name closes the hosted replica and removes its files before the new
// one opens, so a re-created volume never reads the deleted one's bytes, and the old
// incarnation's epoch never refuses the new one. `headnode.drop.v1` (a volume deleted)
// closes and removes every replica of that incarnation, and later configures of it are
// refused; a drop resent while one for the incarnation waits shares its answer, a few at
// most, and past those is answered Unavailable at once (drop-runs.ts). A node that missed a drop for good (away past the purge record's life) finds
// the directories on its own: at start, and hourly, it asks the coordinator which of the
// incarnations it keeps files of but does not host are gone (`headnode.leftovers.v1`),
// and removes those (leftover-directories.ts). A configure that names this node a
// learner while it hosts the partition in any other state (it was a secondary, dropped,
// then re-added) discards that state and rebuilds from the configure's checkpoint: a
// learner must start from a point the primary can serve. Not a configure older than the
// newest epoch the replica's directory shows, with nothing hosted (after a restart): the
// epoch it was last configured a voter in (a file kept durably before its core takes the
// epoch) or of its journal's newest note. A delayed one, from a coordinator leader
// frozen past its tenure, would have a voter of the later epoch rebuilt, its journal of
// acknowledged notes removed; it is refused WrongEpoch and every file kept. A configure
// of a partition this node neither hosts nor belongs to answers NotFound: there is
// nothing to tell it. One that names the node out of a replica set it hosts closes the
// replica, keeping its files, once the out epoch is kept in its voter-epoch file (so that
// a delayed configure of an older epoch naming it a voter is still refused), and answers
// NotFound too: kept hosted and idle, it held its notes, journal and subscription for the
// process's life (review-leaks.md, H1). What to do with a configure is decided
// in configure-decision.ts, purely, for this shell and the failover simulator alike.
//
// Every headnodeReportIntervalMs the node reports its primaries to the coordinator
// (`headnode.report.v1`: commit point, whether the inherited tail is committed,
// followers' progress, stalls and rebuild needs), as a change to the state the
// coordinator holds of it (report-state.ts: an idle node sends an empty change). The
// answer is one lease for the node: it renews the read lease of each primary of that
// state but those it excludes, for leaseMs counted from when the report was sent, on
// this process's monotonic clock and on its wall clock both (either may stand still
// through a frozen VM: replica.ts); a primary with no answer lets its lease run out and
// stops serving reads (if it is leased: static assignments are not). The answer also names
// the sleds out of service; the replicator (replicator.ts) then makes new copies of the
// chunks its primaries list that are short of two live copies.
//
// A replica whose journal fails (a full or broken disk), or whose core throws, fails
// alone (partition-host.ts): the node stops serving its volume and replication subjects
// at once, reports it failed in its status and node info, and keeps every other replica
// running, and reports at once: a primary as `failed`, any other role in the report's
// `failures`, so that the coordinator drops it without waiting for a write to stall on
// it (as a secondary it no longer acknowledges) or for a configure refresh. A later configure of that partition
// reopens it as a restart would: journal recovery says what is durable. Except where
// the journal itself failed a write or sync (not a failure refused before the files):
// then its files cannot be trusted until the machine reboots (the page cache may serve
// writes the disk never took), the reopen is refused Unavailable, and the replica comes
// back only rebuilt as a learner, which removes its files (partition-host.ts,
// `openJournal`). One named out of the replica set is closed once its disk keeps the
// out epoch, as a healthy one is (configure-decision.ts, `close-out`).
//
// Snapshots: while primary, a replica also serves its partition's control subject, where
// the coordinator holds and releases mutation acknowledgements, takes and drops
// snapshots, and rolls the partition back to one (partition.snapshot.*.v1; see @ballast/protocol's messages/snapshot.ts).
// Reads of a snapshot are ordinary volume reads that name it.

import { readdir } from "node:fs/promises";
import { join } from "node:path";
import {
  BallastError,
  ErrorCode,
  limits,
  type Message,
  type MessageOf,
  type ResultOf,
  type SlowSledsInfo,
  subjects,
} from "@ballast/protocol";
import { type CommonConfig, KeyedLock, type Served, type Service } from "@ballast/runtime";
import {
  type ConfigureDecision,
  decideConfigure,
  partOf,
  type Refusal,
} from "./configure-decision.ts";
import { ConfigureQueue } from "./configure-queue.ts";
import {
  droppedIncarnationsMax,
  dropsJoinedMax,
  leftoverAskDeadlineMs,
  leftoverCheckIntervalMs,
  leftoverCheckRetryMs,
  type ReplicaLimits,
  reportDeadlineMs,
  reportSoonSpacingMs,
  tickMs,
} from "./constants.ts";
import { DropRuns } from "./drop-runs.ts";
import { removeDirectory } from "./journal/files.ts";
import { KeptFences } from "./kept-fences.ts";
import { leftoverCandidatesOf, removableOf, requestsOf } from "./leftover-directories.ts";
import { keepEpoch, PartitionHost, storedEpoch, storesReplica } from "./partition-host.ts";
import {
  nodeEntriesOf,
  renewalsOf,
  type UnopenedReplica,
  unopenedReporter,
} from "./primary-report.ts";
import type { Reply } from "./replica/effects.ts";
import { Replicator, type ReplicatorOptions } from "./replicator.ts";
import { ReportState } from "./report-state.ts";
import { retireReplica } from "./retire.ts";
import { nextSession } from "./session.ts";
import { SledClient, type SledClientOptions, sledBusOf } from "./sled-client.ts";
import { SledProbe } from "./sled-probe.ts";
import { TickSchedule } from "./tick-schedule.ts";

type VolumeMessage = MessageOf<
  | "volume.write.v1"
  | "volume.read.v1"
  | "volume.trim.v1"
  | "volume.write-zeroes.v1"
  | "volume.flush.v1"
>;

type Configure = MessageOf<"headnode.configure.v1">;

type PartitionControlMessage = MessageOf<
  | "partition.snapshot.hold.v1"
  | "partition.snapshot.take.v1"
  | "partition.snapshot.release.v1"
  | "partition.snapshot.drop.v1"
  | "partition.snapshot.rollback.v1"
>;

interface Hosted {
  host: PartitionHost;
  replication: Served | undefined;
  volume: Served | undefined;
  /** The partition's control subject (snapshots): served with `volume`, while primary. */
  control?: Served | undefined;
  /**
   * Opened afresh for a rebuild and configured only as a learner since: what it holds
   * came from the primary it learns from. Anything else this node holds of the
   * partition is discarded when it is (re-)added as a learner.
   */
  freshLearner: boolean;
  /** The last followRole run, settled either way (runs are chained: one at a time). */
  following?: Promise<void>;
  /** A followRole run queued behind `following`, not yet started: later calls share it. */
  followQueued?: Promise<void> | undefined;
}

export class HeadNode {
  private readonly hosted = new Map<string, Hosted>();
  /**
   * Per partition: a voter whose configure could not open it (its journal or checkpoint
   * refused, an open that failed), reported failed until a configure opens it, the node
   * is named out of its set or its incarnation is dropped (primary-report.ts).
   */
  private readonly unopened = new Map<string, UnopenedReplica>();
  /** Per partition: configures and drops, run one at a time in arrival order. */
  private readonly serially = new KeyedLock();
  /**
   * Per partition: configures under `serially`, at most one waiting behind the one
   * running (configure-queue.ts); see onConfigure.
   */
  private readonly configures = new ConfigureQueue<Configure, ResultOf<"headnode.configure.v1">>({
    lock: this.serially,
    orderOf: (message) => ({
      incarnation: message.volumeId ?? message.volume,
      epoch: message.epoch,
    }),
    run: (message) => this.configureNow(message),
    superseded: (key, kept) =>
      new BallastError(
        ErrorCode.Unavailable,
        `superseded by a newer configure of ${key} (epoch ${kept.epoch}) waiting on ${this.service.nodeId} for the one running; retry if still current`,
      ),
  });
  /**
   * Per incarnation: the drop running, which duplicates share, at most dropsJoinedMax
   * of them (drop-runs.ts); see onDrop.
   */
  private readonly drops = new DropRuns<ResultOf<"headnode.drop.v1">>({
    joinedMax: dropsJoinedMax,
    busy: (key) =>
      new BallastError(
        ErrorCode.Unavailable,
        `a drop of ${key} is running on ${this.service.nodeId}, waiting on a partition's configure, and ${dropsJoinedMax} more wait for its answer already; retry later`,
      ),
  });
  /**
   * Incarnations dropped, as `volume/volumeId` (the volume `anyVolume` for one the
   * coordinator said is gone, whatever its name), oldest first, at most
   * droppedIncarnationsMax.
   */
  private readonly dropped = new Set<string>();
  /** Ordering fences of replicas closed to be reopened in place (kept-fences.ts). */
  private readonly keptFences = new KeptFences();
  /** The next check for leftover directories (leftover-directories.ts). */
  private leftoverTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Directories of gone incarnations this process removed, for its node info. */
  private leftoverDirectoriesRemoved = 0;
  private readonly sleds: SledClient;
  /** Keeps two live copies of every chunk its primaries list (replicator.ts). */
  private readonly replicator: Replicator;
  /** Probes of the sleds the leader asks for (sled-probe.ts). */
  private readonly probe: SledProbe;
  private tickTimer: NodeJS.Timeout | undefined;
  /** When each hosted replica is next asked for a tick (tick-schedule.ts). */
  private readonly schedule = new TickSchedule<Hosted>();
  private reportTimer: NodeJS.Timeout | undefined;
  private reporting = false;
  /** What the coordinator holds of this node's primaries (report-state.ts). */
  private readonly reportState = new ReportState();
  private reportFailing = false;
  /** A report was asked for while one was on its way: send one more once it is done. */
  private reportAgain = false;
  /** An early report asked for within reportSoonSpacingMs of the last (`reportSoon`). */
  private reportSoonTimer: NodeJS.Timeout | undefined;
  /** When the last report began, on the monotonic clock. */
  private lastReportAtMs = Number.NEGATIVE_INFINITY;

  /** `session` grows on every start (see session.ts). */
  constructor(
    private readonly service: Service,
    private readonly config: CommonConfig,
    private readonly session: number,
    private readonly limits: Partial<ReplicaLimits> = {},
    sledOptions: SledClientOptions = {},
    replicatorOptions: Pick<
      ReplicatorOptions,
      "scrubIntervalMs" | "checkpointCheckIntervalMs"
    > = {},
  ) {
    this.sleds = new SledClient(
      sledBusOf(service.bus, service.nodeId),
      service.logger,
      sledOptions,
    );
    // A sled back before it was declared out: the only signal is its answering again.
    this.sleds.onAnswersAgain((sled) => {
      for (const { host } of this.hosted.values()) host.sledAnsweredAgain(sled);
    });
    this.replicator = new Replicator({
      ...replicatorOptions,
      sleds: this.sleds,
      logger: service.logger,
      partitions: () => [...this.hosted.values()].map(({ host }) => host),
    });
    // A probe that got its copies is reported at once: the leader waits on it to fail a
    // primary that cannot flush over to this node.
    this.probe = new SledProbe(
      this.sleds,
      { nodeId: service.nodeId, session },
      service.logger,
      () => this.reportSoon(),
    );
  }

  start(): void {
    this.service.serveInbox(
      ["headnode.configure.v1", "headnode.replica.status.v1", "headnode.drop.v1"],
      (message) => {
        switch (message.type) {
          case "headnode.configure.v1":
            return this.onConfigure(message);
          case "headnode.replica.status.v1":
            return this.hostOf(message.volume, message.partition).host.status();
          case "headnode.drop.v1":
            return this.onDrop(message);
          default: {
            const unreachable: never = message;
            throw new Error(`no handler for ${JSON.stringify(unreachable)}`);
          }
        }
      },
    );
    this.service.setDescription(() => ({
      session: this.session,
      replicas: [...this.hosted.values()].map(({ host }) => host.summary()),
      leftoverDirectoriesRemoved: this.leftoverDirectoriesRemoved,
      // Its hits and misses, for benchmarks and operators (as the metrics count them).
      chunkCache: this.sleds.cache.stats(),
      // The sleds it asks last, seen slow lately, and the reads it hedged (slow-sleds.ts):
      // checked at the edge (protocol SlowSledsInfo), and shown by `ballast status`.
      slowSleds: this.sleds.slowStats() satisfies SlowSledsInfo,
    }));
    this.tickTimer = setInterval(() => this.tick(), tickMs);
    this.reportTimer = setInterval(() => void this.report(), limits.headnodeReportIntervalMs);
    this.replicator.start();
    void this.checkLeftovers();
    this.service.onClose(async () => {
      this.closed = true;
      clearInterval(this.tickTimer);
      clearInterval(this.reportTimer);
      clearTimeout(this.reportSoonTimer);
      clearTimeout(this.leftoverTimer);
      await this.replicator.close();
      await Promise.all([...this.hosted.values()].map(({ host }) => host.close()));
    });
  }

  /**
   * One node tick: ticks the replicas due at it and schedules each again where it says
   * (partition-host.ts). Only an input (or a failure) changes a replica's role, and each
   * makes it due, so what it serves is checked here only for those an input reached.
   */
  private tick(): void {
    const schedule = this.schedule;
    for (const hosted of schedule.advance()) {
      const host = hosted.host;
      schedule.due(hosted, host.tick(schedule.now));
      if (!host.takeInputs()) continue;
      // followRole is async and allocates: call it only when what it serves is out of
      // step with the role (it settles both synchronously, so this converges).
      const serving = hosted.volume !== undefined;
      const failed = host.failed !== undefined;
      if (
        (host.roleName === "primary") !== serving ||
        (failed && hosted.replication !== undefined)
      ) {
        void this.followRole(hosted);
      }
    }
  }

  // ---------------------------------------------------------------- reports and leases

  /**
   * Reports this node's primaries to the coordinator, as a change to the state it holds
   * (report-state.ts), and renews the leases its answer grants. The lease counts from
   * before the report was sent, so it always ends before the coordinator's own count of
   * the same grant (which starts when it answers). One report at a time: a slow
   * coordinator gets no pile of them.
   */
  private async report(): Promise<void> {
    if (this.reporting) {
      // Asked for at once (a replica failed) while one is on its way: send another
      // right after it, not a whole interval later.
      this.reportAgain = true;
      return;
    }
    this.reporting = true;
    this.reportAgain = false;
    this.lastReportAtMs = performance.now();
    try {
      const { primaries, failures, reported } = nodeEntriesOf(
        [...this.hosted.values()].map((hosted) => hosted.host),
        [...this.unopened.values()].map(unopenedReporter),
      );
      const outgoing = this.reportState.next(primaries, failures);
      // Both clocks, read before the request: the lease counts from here on each.
      const sentAt = { monoMs: performance.now(), wallMs: Date.now() };
      const answer = await this.service.bus.request(
        subjects.coordinatorServices.build("headnode"),
        {
          type: "headnode.report.v1",
          node: this.service.nodeId,
          session: this.session,
          seq: outgoing.seq,
          ...(outgoing.base === undefined ? {} : { base: outgoing.base }),
          primaries: outgoing.primaries,
          ...(outgoing.gone.length === 0 ? {} : { gone: outgoing.gone }),
          ...(outgoing.failures.length === 0 ? {} : { failures: outgoing.failures }),
          ...(outgoing.failuresGone.length === 0 ? {} : { failuresGone: outgoing.failuresGone }),
          // Its primaries refuse I/O past servedBytes: the coordinator shrinks volumes
          // only on head nodes that say so.
          enforcesServedBytes: true,
          // Evidence that it reaches the sleds, for the failover of a primary that cannot.
          sledStores: this.sleds.stores,
        },
        { deadlineMs: reportDeadlineMs },
      );
      const leaderTerm = this.reportState.leaderTerm;
      if (!this.reportState.admit(answer, performance.now())) {
        // A coordinator that no longer leads answered (frozen and woken with its wall
        // clock not yet set right, say): its grant would outlast what its successor
        // counts on. Nothing of it is used; the next report goes as after a lost answer.
        this.service.logger.warn(
          { term: answer.term, leaderTerm },
          "a report was answered by an ex-leader (its term is below one that answered lately): its lease grant is ignored",
        );
        return;
      }
      const granted = this.reportState.onAnswer(outgoing, answer);
      const hostedNow = (volume: string, partition: number) =>
        this.hosted.get(partitionKey(volume, partition))?.host;
      for (const { replica, epoch } of renewalsOf(granted, reported, hostedNow)) {
        replica.renewLease(epoch, sentAt, answer.leaseMs);
      }
      // The sleds out of service (absent while the leader does not know yet): copies
      // there count as lost, and the replicator makes new ones.
      if (answer.sledsOut !== undefined) {
        this.replicator.setOut(answer.sledsOut);
        for (const { host } of this.hosted.values()) host.sledsOut = this.replicator.sledsOut;
      }
      // Sleds back on another data directory, not yet verified: audited now, and each
      // primary whose table the audit covered says so in its next reports.
      if (answer.sledsToAudit !== undefined) this.replicator.askAudits(answer.sledsToAudit);
      // Fresh evidence that this node reaches the sleds, on the sleds it is configured with.
      if (answer.probeSleds === true) void this.probe.ask(this.probeTargets(answer.probeOn));
      if (this.reportFailing) {
        this.reportFailing = false;
        this.service.logger.info("reports reach the coordinator again");
      }
    } catch (error) {
      if (!this.reportFailing) {
        this.reportFailing = true;
        this.service.logger.warn(
          { error: (error as Error).message },
          "could not report to the coordinator; leased primaries stop serving reads once their leases run out",
        );
      }
    } finally {
      this.reporting = false;
      if (this.reportAgain) void this.report();
    }
  }

  /**
   * The sleds a probe may store on: every hosted replica's, but those out of service; a
   * node hosting none (a spare asked for a stand-in) uses the leader's live sleds
   * (`probeOn`), which it is otherwise never told of.
   */
  private probeTargets(probeOn: readonly string[] = []): string[] {
    const sleds = new Set<string>();
    for (const { host } of this.hosted.values()) {
      for (const sled of host.sleds) if (!this.replicator.sledsOut.has(sled)) sleds.add(sled);
    }
    if (sleds.size === 0) {
      for (const sled of probeOn) if (!this.replicator.sledsOut.has(sled)) sleds.add(sled);
    }
    return [...sleds].sort();
  }

  /**
   * A report as soon as reportSoonSpacingMs has passed since the last one began (at once
   * if it has): for a new leased primary, which reads nothing until a report is
   * granted, without a report per configure when thousands come one after another.
   */
  private reportSoon(): void {
    if (this.reportSoonTimer !== undefined || this.closed) return;
    const waitMs = this.lastReportAtMs + reportSoonSpacingMs - performance.now();
    if (waitMs <= 0) {
      void this.report();
      return;
    }
    this.reportSoonTimer = setTimeout(() => {
      this.reportSoonTimer = undefined;
      void this.report();
    }, waitMs);
  }

  // ---------------------------------------------------------------- leftover directories

  /**
   * Removes the directories of gone incarnations left on disk (leftover-directories.ts),
   * then schedules the next check: after leftoverCheckIntervalMs, or sooner,
   * leftoverCheckRetryMs, when this one could not finish. Never throws.
   */
  private async checkLeftovers(): Promise<void> {
    let finished = false;
    try {
      finished = await this.removeLeftovers();
    } catch (error) {
      this.service.logger.warn(
        { error: (error as Error).message },
        "could not check this node's directories of deleted volumes; keeping them, checking again later",
      );
    }
    if (this.closed) return;
    const delayMs = finished ? leftoverCheckIntervalMs : leftoverCheckRetryMs;
    this.leftoverTimer = setTimeout(() => void this.checkLeftovers(), delayMs);
  }

  /**
   * One check: lists `partitions/`, then asks the coordinator about the incarnations it
   * holds no replica of, and removes those it answers are gone. Listing comes first: the
   * answer is sound only for directories that existed before the coordinator read its
   * records (coordinator leftover-directories.ts). Returns whether it finished; a
   * request that fails (no coordinator, no leader, one that predates the question)
   * keeps everything it had not yet removed.
   */
  private async removeLeftovers(): Promise<boolean> {
    const partitions = join(this.config.dataDir, "partitions");
    let onDisk: string[];
    try {
      const entries = await readdir(partitions, { withFileTypes: true });
      onDisk = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return true;
      throw error;
    }
    const candidates = leftoverCandidatesOf(onDisk, this.hostedVolumeIds());
    for (const volumeIds of requestsOf(candidates, limits.leftoverIncarnationsPerRequestMax)) {
      let answer: ResultOf<"headnode.leftovers.v1">;
      try {
        answer = await this.service.bus.request(
          subjects.coordinatorServices.build("headnode"),
          { type: "headnode.leftovers.v1", node: this.service.nodeId, volumeIds },
          { deadlineMs: leftoverAskDeadlineMs },
        );
      } catch (error) {
        this.service.logger.debug(
          { error: (error as Error).message, asked: volumeIds.length },
          "the coordinator did not say which incarnations on this disk are gone; keeping them",
        );
        return false;
      }
      for (const volumeId of removableOf(volumeIds, answer.gone, this.hostedVolumeIds())) {
        if (this.closed) return false;
        // Remembered first: a configure of it that opens meanwhile is closed and its
        // files removed once open (configureNow), and later ones are refused.
        this.rememberDropped(undefined, volumeId);
        if (this.hostedVolumeIds().has(volumeId)) continue;
        await removeDirectory(join(partitions, volumeId));
        this.leftoverDirectoriesRemoved++;
        this.service.logger.info(
          { volumeId },
          "removed the replica directory of a deleted volume that no drop reached (the coordinator names it in no record)",
        );
      }
    }
    return true;
  }

  /** The incarnations of the replicas hosted now. */
  private hostedVolumeIds(): Set<string> {
    return new Set([...this.hosted.values()].map(({ host }) => host.address.volumeId));
  }

  // ---------------------------------------------------------------- configure and drop

  /**
   * Configures run one at a time per partition, and at most one waits behind the one
   * running: a newer one arriving answers the older waiting one at once, Unavailable.
   * The coordinator gives up on a configure after configureDeadlineMs and sends it again
   * a round later, and acts only on the answer to its newest; without this, each resend
   * behind a configure that hangs held one of the inbox's handler slots, and one stuck
   * partition filled them all within minutes: then every configure of every partition on
   * the node, its node info, status and drops waited behind it.
   */
  private onConfigure(message: Configure): Promise<ResultOf<"headnode.configure.v1">> {
    const members = [message.primary, ...message.secondaries, ...(message.learners ?? [])];
    if (new Set(members).size !== members.length) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `replica set names a node twice: ${members.join(", ")}`,
      );
    }
    return this.configures.submit(partitionKey(message.volume, message.partition), message);
  }

  /** Carries out one configure; only under `serially` for its partition. */
  private async configureNow(message: Configure): Promise<ResultOf<"headnode.configure.v1">> {
    const volumeId = message.volumeId ?? message.volume;
    const key = partitionKey(message.volume, message.partition);
    const part = partOf(this.service.nodeId, message);
    const found = this.hosted.get(key);
    this.keptFences.configured(key, volumeId, message.epoch);
    // Looked at only where it decides, with nothing of the incarnation hosted: a voter
    // named no disk, or the node named out (configure-decision.ts, `keepOutEpoch`).
    const stored =
      found?.host.address.volumeId !== volumeId &&
      (part === "none" ||
        (message.disk === undefined &&
          message.disksRecorded === true &&
          (part === "primary" || part === "secondary")))
        ? await storesReplica(this.config.dataDir, volumeId, message.partition)
        : undefined;
    // Where nothing of the incarnation is hosted with a configuration, its directory says
    // which epochs are past (its voter epoch, its journal's newest note): a configure
    // older than them removes and opens nothing (configure-decision.ts). A hosted
    // replica's configured epoch says it.
    const configured =
      found?.host.address.volumeId === volumeId && found.host.replica.configuration !== undefined;
    const newest =
      part === "none" || configured
        ? undefined
        : await storedEpoch(this.config.dataDir, volumeId, message.partition);
    const decision = decideConfigure(
      {
        volumeId,
        epoch: message.epoch,
        part,
        disk: message.disk,
        disksRecorded: message.disksRecorded,
      },
      {
        disk: this.service.disk,
        stored,
        storedEpoch: newest,
        deleted: this.isDropped(message.volume, volumeId),
        hosted:
          found === undefined
            ? undefined
            : {
                volumeId: found.host.address.volumeId,
                failed: found.host.failed !== undefined,
                // A failed replica's core takes no configure: the out epoch beside it.
                epoch: found.host.fencedEpoch,
                freshLearner: found.freshLearner,
              },
      },
    );
    let hosted: Hosted;
    if (decision.kind === "apply") {
      hosted = found!;
    } else {
      // After a failure, in a session of its own (configure-decision.ts), taken before the
      // failed replica is retired: taking it can fail, and a replica closed by then is no
      // longer hosted, so the configure sent again would find nothing failed and reopen
      // it in the node's session, the one it used before the failure.
      const session =
        decision.kind === "open" && decision.session === "new"
          ? await nextSession(this.config.dataDir, this.session)
          : this.session;
      if (found !== undefined && decision.retire === "close-out") {
        // Named out: idle in the out epoch first, as a configure applied would leave it
        // (a failed core takes none), then that epoch kept on its disk, and only then
        // closed (configure-decision.ts): closed with a lower epoch stored, a delayed
        // configure of an older epoch naming it a voter would open it, a failed one too
        // once the machine reboots. Should the disk refuse, it stays hosted, idle or
        // failed, the out epoch held in memory (`fencedEpoch`), and the configure fails.
        if (found.host.failed === undefined) {
          this.configureCore(found, message);
          await this.followRole(found);
        }
        try {
          await found.host.recordOutEpoch(message.epoch);
        } catch (error) {
          this.service.logger.warn(
            {
              volume: message.volume,
              partition: message.partition,
              epoch: message.epoch,
              error: String(error),
            },
            "named out of the replica set, but its disk did not keep the out epoch: the replica stays hosted, the epoch held in memory",
          );
          throw error;
        }
      }
      if (found !== undefined && decision.retire !== "keep") {
        const failed = found.host.failed !== undefined;
        this.logRetire(message, found, decision);
        await this.close(
          key,
          found,
          decision.retire === "remove",
          new BallastError(
            ErrorCode.NotPrimary,
            `the request's outcome is unknown: ${this.service.nodeId} closed its replica of ${message.volume}/${message.partition} for epoch ${message.epoch}; retry with the current primary`,
          ),
        );
        // A failed replica, closed to be reopened from its files (or named out, which keeps
        // them too): its fence goes to the next core opened here (kept-fences.ts). Read
        // once closed: it takes nothing more.
        if (decision.retire === "close" || (failed && decision.retire === "close-out")) {
          this.keptFences.keep(key, found.host.address.volumeId, found.host.replica.fenceToKeep());
        }
      }
      if (decision.forget !== undefined) this.rememberDropped(message.volume, decision.forget);
      if (decision.kind === "refuse") {
        // Named out with its replica stored but open nowhere (a restart since): the out
        // epoch kept in its directory, as a close-out keeps it. Should the disk refuse,
        // the configure fails, to be sent again.
        if (decision.keepOutEpoch === true) {
          await keepEpoch(this.config.dataDir, volumeId, message.partition, message.epoch);
        }
        // Named out of the set, or of a deleted incarnation: nothing of it to report. An
        // older epoch than one stored says nothing of the newer configure that failed.
        if (decision.refusal.reason !== "older-epoch") this.unopened.delete(key);
        throw this.refusal(message, volumeId, decision.refusal);
      }
      try {
        // A learner's epoch kept before the rebuild discards anything: should the fetch
        // fail, nothing else is left of the replica here, and without it a delayed
        // configure of an older epoch naming this node a voter would open it empty
        // (configure-decision.ts, `storedEpoch`). Found by the simulator (seed 9120891).
        if (decision.from === "rebuild") {
          await keepEpoch(this.config.dataDir, volumeId, message.partition, message.epoch);
        }
        hosted = await this.open(message, volumeId, decision.from === "rebuild", session);
      } catch (error) {
        this.openFailed(key, message, volumeId, part);
        throw error;
      }
      this.unopened.delete(key);
      // Taken back by its first configure if of the epoch the closed core held.
      const carried = this.keptFences.take(key, volumeId);
      if (carried !== undefined) hosted.host.replica.carryFence(carried);
      if (this.isDropped(message.volume, volumeId)) {
        // Dropped while it opened (the drop waits only for replicas already hosted):
        // a deleted incarnation must not stay hosted, nor keep files.
        await this.close(key, hosted, true);
        throw new BallastError(
          ErrorCode.NotFound,
          `${message.volume} (id ${volumeId}) was deleted while ${this.service.nodeId} opened it`,
        );
      }
    }
    // A voter's epoch is kept on its disk before its core takes it: a delayed configure
    // of an older epoch then finds it even with nothing hosted (configure-decision.ts).
    if (part === "primary" || part === "secondary") {
      await hosted.host.recordVoterEpoch(message.epoch);
    }
    this.configureCore(hosted, message);
    await this.followRole(hosted);
    // A new leased primary reads nothing until a report is granted: report now rather
    // than at the next interval.
    if (part === "primary" && message.leased === true) this.reportSoon();
    // The disk that holds the replica: proof for a coordinator that has none recorded
    // (decisions.ts, "Lost disks"); a voter is never opened empty without it named.
    const disk = this.service.disk;
    return { ...hosted.host.status(), ...(disk === undefined ? {} : { disk }) };
  }

  /** Gives the hosted core the configure's replica set. */
  private configureCore(hosted: Hosted, message: Configure): void {
    // A replica set without this node makes the core idle: it stops serving the
    // partition at once (and is then closed: configure-decision.ts, `close-out`).
    hosted.host.configure(
      {
        epoch: message.epoch,
        primary: message.primary,
        secondaries: message.secondaries,
        learners: message.learners ?? [],
        leased: message.leased === true,
        ...(message.servedBytes === undefined ? {} : { servedBytes: message.servedBytes }),
      },
      message.sleds,
    );
    // Once a voter (or out of the set), it is no longer what a rebuild started from.
    if (partOf(this.service.nodeId, message) !== "learner") hosted.freshLearner = false;
  }

  /**
   * A configure could not open its replica: a voter's is reported failed in the
   * configure's epoch from now on (primary-report.ts `unopenedReporter`), and at once,
   * so that the coordinator fails a primary over to a sound secondary, or drops a
   * secondary, rather than wait for it as for one restarting. A learner counts for
   * nothing: the next configure rebuilds it afresh.
   */
  private openFailed(key: string, message: Configure, volumeId: string, part: string): void {
    if (part !== "primary" && part !== "secondary") {
      this.unopened.delete(key);
      return;
    }
    const held = this.unopened.get(key);
    if (held !== undefined && held.address.volumeId === volumeId && held.epoch > message.epoch) {
      return;
    }
    this.unopened.set(key, {
      address: { volume: message.volume, volumeId, partition: message.partition },
      epoch: message.epoch,
      primary: part === "primary",
      session: this.session,
    });
    void this.report();
  }

  /** Says why a hosted replica is closed before a configure is carried out. */
  private logRetire(
    message: Configure,
    hosted: Hosted,
    decision: Exclude<ConfigureDecision, { kind: "apply" }>,
  ): void {
    const where = { volume: message.volume, partition: message.partition };
    const was = hosted.host.address.volumeId;
    if (decision.retire === "close-out") {
      this.service.logger.info(
        { ...where, epoch: message.epoch, failed: hosted.host.failed !== undefined },
        "named out of the replica set: closing the replica, its files and out epoch kept",
      );
    } else if (hosted.host.failed !== undefined && decision.forget === undefined) {
      this.service.logger.info(
        where,
        "configured again after its journal failed: reopening the replica in a new session",
      );
    } else if (decision.forget === was) {
      // Ids are never reused: the hosted replica belongs to a deleted incarnation.
      this.service.logger.info(
        { ...where, volumeId: message.volumeId, was },
        "configured for another incarnation of the volume: removing the old replica",
      );
    } else {
      this.service.logger.info(
        { ...where, epoch: message.epoch },
        "added as a learner while holding the partition: discarding its state to rebuild afresh",
      );
    }
  }

  /** The error a refused configure answers. */
  private refusal(message: Configure, volumeId: string, refusal: Refusal): BallastError {
    const { volume, partition } = message;
    switch (refusal.reason) {
      case "other-disk":
        return new BallastError(
          ErrorCode.NotFound,
          `${this.service.nodeId} holds nothing of ${volume}/${partition} on this disk (${this.service.disk ?? "no id"}): its replica was on disk ${refusal.disk}, which this node no longer has`,
          // Named, so the coordinator stops resending it (configurer.ts `onOtherDisk`).
          { details: { refusal: "other-disk", disk: refusal.disk } },
        );
      case "deleted":
        return new BallastError(
          ErrorCode.NotFound,
          `${volume} (id ${volumeId}) was deleted; ${this.service.nodeId} hosts no replica of it`,
        );
      case "older-incarnation":
        return new BallastError(
          ErrorCode.NotFound,
          `${volume} (id ${volumeId}) is older than incarnation ${refusal.hostedVolumeId} hosted here: it was deleted`,
        );
      case "older-epoch":
        return new BallastError(
          ErrorCode.WrongEpoch,
          `${volume}/${partition} is in epoch ${refusal.currentEpoch}; refusing epoch ${message.epoch}`,
          { details: { epoch: message.epoch, currentEpoch: refusal.currentEpoch } },
        );
      case "not-a-member": {
        const members = [message.primary, ...message.secondaries, ...(message.learners ?? [])];
        return new BallastError(
          ErrorCode.NotFound,
          `${this.service.nodeId} is not in the replica set ${members.join(", ")} of ${volume}/${partition} and hosts no replica of it`,
        );
      }
      case "no-replica":
        return new BallastError(
          ErrorCode.NotFound,
          `${this.service.nodeId} holds nothing of ${volume}/${partition} on this disk (${this.service.disk ?? "no id"}) and the configure names no disk: refusing to open an empty ${partOf(this.service.nodeId, message)}, which would lack acknowledged writes (a disk replaced under the old node id)`,
          { details: { refusal: "no-replica" } },
        );
      case "no-state":
        return new BallastError(
          ErrorCode.NotFound,
          `${this.service.nodeId} holds nothing of ${volume}/${partition} and this is not its first placement`,
        );
      default:
        return refusal satisfies never;
    }
  }

  /**
   * Remembers a deleted incarnation, so that a late configure of it answers NotFound.
   * `volume` undefined: of whatever name (an incarnation the coordinator said is gone,
   * known here only by the id its directory is named after).
   */
  private rememberDropped(volume: string | undefined, volumeId: string): void {
    const incarnation = incarnationKey(volume ?? anyVolume, volumeId);
    this.dropped.delete(incarnation);
    this.dropped.add(incarnation);
    if (this.dropped.size > droppedIncarnationsMax) {
      this.dropped.delete(this.dropped.values().next().value!);
    }
  }

  private isDropped(volume: string, volumeId: string): boolean {
    return (
      this.dropped.has(incarnationKey(volume, volumeId)) ||
      this.dropped.has(incarnationKey(anyVolume, volumeId))
    );
  }

  /**
   * Remembers the incarnation as dropped at once (a configure of it is refused from
   * now), then closes and removes its replicas, each in its turn among its partition's
   * configures. A drop of the incarnation already running answers this one too, up to
   * dropsJoinedMax waiting on it; past that, Unavailable at once. The coordinator resends
   * a drop on every purge pass until one is answered, and each one queued behind a
   * configure that hangs held one of the inbox's handler slots (drop-runs.ts).
   */
  private onDrop(message: MessageOf<"headnode.drop.v1">): Promise<ResultOf<"headnode.drop.v1">> {
    this.rememberDropped(message.volume, message.volumeId);
    return this.drops.submit(incarnationKey(message.volume, message.volumeId), () =>
      this.dropNow(message),
    );
  }

  /** Carries out one drop of an incarnation already remembered as dropped. */
  private async dropNow(
    message: MessageOf<"headnode.drop.v1">,
  ): Promise<ResultOf<"headnode.drop.v1">> {
    const keys = [...this.hosted]
      .filter(
        ([, hosted]) =>
          hosted.host.address.volume === message.volume &&
          hosted.host.address.volumeId === message.volumeId,
      )
      .map(([key]) => key);
    let dropped = 0;
    this.keptFences.forgetIncarnation(message.volumeId);
    for (const [key, unopened] of this.unopened) {
      if (unopened.address.volumeId === message.volumeId) this.unopened.delete(key);
    }
    await Promise.all(
      keys.map((key) =>
        this.serially.run(key, async () => {
          const hosted = this.hosted.get(key);
          if (hosted === undefined || hosted.host.address.volumeId !== message.volumeId) return;
          await this.close(key, hosted, true);
          dropped++;
        }),
      ),
    );
    // Replicas of it this node holds on disk but has not opened since a restart. The
    // directory is per incarnation; another volume shares it only if a static volume
    // is named like this id, and then it stays.
    const shared = [...this.hosted.values()].some(
      ({ host }) =>
        host.address.volumeId === message.volumeId && host.address.volume !== message.volume,
    );
    if (!shared) {
      await removeDirectory(join(this.config.dataDir, "partitions", message.volumeId));
    }
    this.service.logger.info(
      { volume: message.volume, volumeId: message.volumeId, dropped },
      "dropped the replicas of a deleted volume",
    );
    return { dropped };
  }

  /** Stops serving a replica and closes it; `remove` deletes its files too. */
  /**
   * Closes a hosted replica. `reason`: what the requests it holds are answered (by
   * default, that the node is shutting down).
   *
   * Order matters (retire.ts, which the failover simulator runs too): its subscriptions
   * stop taking messages, then the replica is closed, which answers every request it
   * holds, and only then does this wait for the handlers in flight (a subscription's
   * stop waits for them). Off the tick schedule, nothing else would answer a held
   * request: a primary's write waits for acknowledgements that the members of a newer
   * epoch never send, and its deadline passes only on ticks. The other order hung the
   * configure that retired the replica, and every configure of the partition queued
   * behind it (chaos, stop-primary: the woken primary, re-added as a learner, was never
   * rebuilt).
   */
  private async close(
    key: string,
    hosted: Hosted,
    remove: boolean,
    reason?: BallastError,
  ): Promise<void> {
    if (this.hosted.get(key) === hosted) {
      this.hosted.delete(key);
      // Its re-replication and scrub state goes with it (a long-lived node would keep
      // every dropped partition's otherwise).
      const { volumeId, partition } = hosted.host.address;
      this.replicator.forgetPartition(volumeId, partition);
    }
    // Asked no more (inputs that still reach it wake it only while it is hosted).
    this.schedule.remove(hosted);
    const served = [hosted.replication, hosted.volume, hosted.control];
    hosted.replication = undefined;
    hosted.volume = undefined;
    hosted.control = undefined;
    await retireReplica({
      stopIntake: () => Promise.all(served.map((one) => one?.stop())),
      closeReplica: () => hosted.host.close(reason),
    });
    if (remove) {
      this.keptFences.forget(key);
      await hosted.host.remove();
    }
  }

  /** `session`: the replica's own, when it is not the node's (a reopen: see onConfigure). */
  private async open(
    message: Configure,
    volumeId: string,
    isLearner: boolean,
    session = this.session,
  ): Promise<Hosted> {
    // A learner starts fresh, from the checkpoint it is given or, with none, from op 1
    // (a primary releases no note before a checkpoint is recorded): whatever this node
    // still holds of the partition is stale, and a learner counts for nothing, so
    // discarding it loses no acknowledged write.
    const rebuildFrom = isLearner ? message.checkpoint : undefined;
    const host = await PartitionHost.open(
      this.service,
      this.config.dataDir,
      {
        volume: message.volume,
        volumeId,
        partition: message.partition,
        partitionStart: message.partitionStart,
        partitionBytes: message.partitionBytes,
      },
      this.sleds,
      session,
      rebuildFrom,
      this.limits,
      isLearner,
    );
    const replication = this.service.serve(
      subjects.replica.build(message.volume, message.partition, this.service.nodeId),
      // Also over links from other head nodes (runtime link-server.ts): the core takes
      // replication messages lost, duplicated or reordered, so a sender switching
      // between a link and NATS mid-stream is safe.
      { accept: ["replica.notes.v1", "replica.ack.v1"], traced: "when-carried", link: "replica" },
      (replicationMessage) => host.onReplication(replicationMessage),
    );
    host.sledsOut = this.replicator.sledsOut;
    host.damagedCopies = this.replicator.damagedCopies;
    host.auditedDisks = () =>
      this.replicator.auditedDisks(host.address.volumeId, host.address.partition);
    const hosted: Hosted = { host, replication, volume: undefined, freshLearner: isLearner };
    const key = partitionKey(message.volume, message.partition);
    this.hosted.set(key, hosted);
    const schedule = this.schedule;
    host.attach({
      get now() {
        return schedule.now;
      },
      wake: () => {
        if (this.hosted.get(key) === hosted) schedule.wake(hosted);
      },
    });
    schedule.wake(hosted);
    host.onFailure = () => {
      void this.followRole(hosted);
      // The coordinator must hear at once, whatever the replica's role: a failed
      // secondary or learner is otherwise seen only when a write stalls on it.
      void this.report();
    };
    return hosted;
  }

  /**
   * Serves the partition's volume and control subjects exactly while this replica is
   * primary (and hosted), and stops serving replication once it has failed.
   *
   * Runs one at a time per replica, each run reading the role when it starts and again
   * after every wait: the tick starts one outside the configures' lock, so it can
   * overlap a configure's. Two runs that overlapped each acted on what they had read
   * before a stop: a demotion (a deposing ack of the next epoch) stopped the control
   * subject after the configure of that epoch had made the replica primary again and
   * left the control subject served, and the primary served no snapshot request until
   * its role next changed (ticks saw primary and volume served agree). A call while a
   * run waits to start shares that run: it reads the role after the call anyway.
   */
  private followRole(hosted: Hosted): Promise<void> {
    if (hosted.followQueued !== undefined) return hosted.followQueued;
    const run = (hosted.following ?? Promise.resolve()).then(() => {
      hosted.followQueued = undefined;
      return this.followRoleNow(hosted);
    });
    hosted.followQueued = run;
    hosted.following = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Whether the NATS connection is open. Once it is closed for good the process is
   * stopping (runtime run.ts), and a subscription would throw (nats.js): what a replica
   * promoted meanwhile would serve is not subscribed to; nothing could arrive anyway.
   */
  private get connected(): boolean {
    return !this.service.bus.connection.isClosed();
  }

  /** Whether the replica should serve as primary now: hosted, and primary. */
  private servesAsPrimary(hosted: Hosted): boolean {
    const { volume, partition } = hosted.host.address;
    return (
      this.hosted.get(partitionKey(volume, partition)) === hosted &&
      hosted.host.roleName === "primary"
    );
  }

  /** One run of followRole (only ever one at a time per replica). */
  private async followRoleNow(hosted: Hosted): Promise<void> {
    const { volume, partition } = hosted.host.address;
    if (hosted.host.failed !== undefined && hosted.replication !== undefined) {
      // A failed replica takes no replication messages: it acknowledges nothing.
      const replication = hosted.replication;
      hosted.replication = undefined;
      await replication.stop();
    }
    // A replica closed meanwhile (dropped, replaced) serves nothing any more.
    const isPrimary = this.servesAsPrimary(hosted);
    if (isPrimary && hosted.volume === undefined && this.connected) {
      hosted.volume = this.service.serve(
        subjects.volume.build(volume, partition),
        {
          accept: [
            "volume.write.v1",
            "volume.read.v1",
            "volume.trim.v1",
            "volume.write-zeroes.v1",
            "volume.flush.v1",
          ],
          // Also over links from clients. Volume requests in flight together have no
          // order (as on a disk), but a request its client timed out on is not out of
          // flight: its frame may still sit unread in a link while the client's retry
          // and next write go over NATS. The ordering fence (replica/ordering-fence.ts)
          // refuses such a stale copy once a later attempt of its client was taken.
          link: "volume",
          // A read's answer is sent from where its bytes are: views of cached chunks
          // (never reused once lent: chunk-cache.ts), kept note data (never written
          // again: byte-slab.ts), sled replies and fresh buffers. None changes after.
          repliesByReference: true,
        },
        (message) => this.onVolumeMessage(hosted.host, message),
      );
      this.service.logger.info({ volume, partition }, "serving as primary");
    } else if (!isPrimary && hosted.volume !== undefined) {
      const served = hosted.volume;
      hosted.volume = undefined;
      await served.stop();
      this.service.logger.info(hosted.host.address, "no longer primary");
    }
    // The role may have changed during the stop (a configure made it primary again):
    // read afresh, never the value from before the wait.
    await this.followControl(hosted);
  }

  /**
   * Serves the partition's control subject (snapshots) exactly while primary, as read
   * now. Only from followRoleNow, so never two at once for a replica.
   */
  private async followControl(hosted: Hosted): Promise<void> {
    const { volume, partition } = hosted.host.address;
    const isPrimary = this.servesAsPrimary(hosted);
    if (isPrimary && hosted.control === undefined && this.connected) {
      hosted.control = this.service.serve(
        subjects.partitionControl.build(volume, partition),
        {
          accept: [
            "partition.snapshot.hold.v1",
            "partition.snapshot.take.v1",
            "partition.snapshot.release.v1",
            "partition.snapshot.drop.v1",
            "partition.snapshot.rollback.v1",
          ],
        },
        (message) => this.onControlMessage(hosted.host, message),
      );
    } else if (!isPrimary && hosted.control !== undefined) {
      const served = hosted.control;
      hosted.control = undefined;
      await served.stop();
    }
  }

  private async onControlMessage(
    host: PartitionHost,
    message: PartitionControlMessage,
  ): Promise<unknown> {
    const { volume, partition, volumeId } = host.address;
    if (message.volume !== volume || message.partition !== partition) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `message for ${message.volume}/${message.partition} sent to ${volume}/${partition}`,
      );
    }
    if (message.volumeId !== volumeId) {
      throw new BallastError(
        ErrorCode.NotFound,
        `${volume}/${partition} here is incarnation ${volumeId}, not ${message.volumeId}`,
      );
    }
    switch (message.type) {
      case "partition.snapshot.hold.v1":
        return host.holdAcks(message.hold, message.holdMs);
      case "partition.snapshot.release.v1":
        return host.releaseAcks(message.hold);
      case "partition.snapshot.take.v1":
        return host.snapshotControl("take", message.snapshot);
      case "partition.snapshot.drop.v1":
        return host.snapshotControl("drop", message.snapshot);
      case "partition.snapshot.rollback.v1":
        return host.rollbackSnapshot(message.snapshot);
      default: {
        const unreachable: never = message;
        throw new Error(`no handler for ${(unreachable as Message).type}`);
      }
    }
  }

  private async onVolumeMessage(host: PartitionHost, message: VolumeMessage): Promise<unknown> {
    if (message.volume !== host.address.volume || message.partition !== host.address.partition) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `message for ${message.volume}/${message.partition} sent to ${host.address.volume}/${host.address.partition}`,
      );
    }
    if (message.volumeId !== undefined && message.volumeId !== host.address.volumeId) {
      // Another incarnation of the name: the client's volume was deleted, or this node
      // has not yet heard of the new one. Either way describing again settles it.
      throw new BallastError(
        ErrorCode.WrongEpoch,
        `${host.address.volume}/${host.address.partition} here is incarnation ${host.address.volumeId}, not ${message.volumeId}; describe the volume again`,
        {
          details: {
            epoch: message.epoch,
            volumeId: message.volumeId,
            currentVolumeId: host.address.volumeId,
          },
        },
      );
    }
    switch (message.type) {
      case "volume.write.v1":
        return mutationResult(
          await host.request((requestId) => ({
            kind: "write",
            requestId,
            epoch: message.epoch,
            // The data aliases the message; the replica keeps it until flushed.
            writes: host.keepWrites(message.writes),
            fence: message.fence,
          })),
        );
      case "volume.trim.v1":
      case "volume.write-zeroes.v1":
        return mutationResult(
          await host.request((requestId) => ({
            kind: message.type === "volume.trim.v1" ? "trim" : "zeroes",
            requestId,
            epoch: message.epoch,
            ranges: message.ranges,
            fence: message.fence,
            ...(message.type === "volume.trim.v1" && message.pastEnd === true
              ? { pastEnd: true }
              : {}),
          })),
        );
      case "volume.flush.v1": {
        const reply = await host.request((requestId) => ({
          kind: "flush",
          requestId,
          epoch: message.epoch,
        }));
        if (reply.kind !== "flush") throw new Error(`flush answered with ${reply.kind}`);
        return { flushedOpNum: reply.flushedOpNum };
      }
      case "volume.read.v1":
        return host.read(message);
      default: {
        const unreachable: never = message;
        throw new Error(`no handler for ${(unreachable as Message).type}`);
      }
    }
  }

  /** Test only: ordering fences kept for replicas to reopen (kept-fences.ts). */
  get keptFencesForTesting(): number {
    return this.keptFences.size;
  }

  /**
   * Test only: makes the journal of the hosted replica of `volume`/`partition` fail from
   * its next append on (see PartitionHost.injectJournalFailureForTesting).
   */
  injectJournalFailureForTesting(volume: string, partition: number, errno: "ENOSPC" | "EIO"): void {
    this.hostOf(volume, partition).host.injectJournalFailureForTesting(errno);
  }

  private hostOf(volume: string, partition: number): Hosted {
    const hosted = this.hosted.get(partitionKey(volume, partition));
    if (hosted === undefined) {
      throw new BallastError(
        ErrorCode.NotFound,
        `${this.service.nodeId} hosts no replica of ${volume}/${partition}`,
      );
    }
    return hosted;
  }
}

function partitionKey(volume: string, partition: number): string {
  return `${volume}/${partition}`;
}

/** Stands for any volume name in `dropped`: no volume is named so (subjects.ts). */
const anyVolume = "*";

function incarnationKey(volume: string, volumeId: string): string {
  return `${volume}/${volumeId}`;
}

function mutationResult(reply: Reply): ResultOf<"volume.write.v1"> {
  if (reply.kind !== "mutation") throw new Error(`mutation answered with ${reply.kind}`);
  return { opNumFirst: reply.opNumFirst, opNumLast: reply.opNumLast };
}
