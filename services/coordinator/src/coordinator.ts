// The coordinator's shell: its options, its timers, the leader's lifecycle and the one
// dispatch point for control requests. Every coordinator tracks membership from
// heartbeats (heartbeats.ts); only the leader — see leadership.ts — answers control
// requests and reconciles. Control state lives in the JetStream KV bucket
// `ballast-control` (catalogue.ts); a NATS server without JetStream is refused at start.
//
// The work itself is done by the parts this file wires together, each with only what
// it needs: reconciler.ts (the executor of the pure decisions in decisions.ts),
// configurer.ts (configure pushes to head nodes), volumes.ts (create, describe, list,
// resize, delete), snapshots.ts (snapshot create, list, delete; volume rollback), purger.ts (deletes a
// deleted incarnation's chunks and checkpoint blobs from the sleds, deciding with
// purge.ts), sweeper.ts (deletes live volumes' orphans, deciding with sweep.ts),
// delete-markers.ts (removes the control bucket's old delete markers),
// leftover-sweeper.ts (deletes objects of incarnations the catalogue no longer names,
// deciding with leftovers.ts), leftover-directories.ts (tells head nodes which
// incarnations they keep files of are gone, deciding with incarnations.ts), reports.ts (primaries' reports and checkpoint pointers),
// status.ts.
//
// Leadership and fencing: every partition record the leader writes carries its term,
// and a new tenure (a takeover, or leading again after a lapse such as a SIGSTOP)
// starts with empty bookkeeping (tenure.ts) and rewrites every partition record with
// its term before it decides anything, so a compare-and-set an ex-leader prepared
// fails. The control subjects (clients' requests, and services' reports apart so that
// NATS permissions can keep clients off them) are served exactly while leading, both
// into the one dispatch switch; a request that arrives
// as the lease lapses is refused as Unavailable, to be retried on the new leader.
// Every duration is measured on the monotonic clock (clock.ts); wall-clock times
// appear only in what is shown.

import {
  adminRequests,
  BallastError,
  buckets,
  ErrorCode,
  isUnreadableRecord,
  limits,
  type MessageOf,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import {
  type CommonConfig,
  type ConfigOf,
  meterOf,
  type OptionSpecs,
  type Served,
  type Service,
  settlesWithin,
} from "@ballast/runtime";
import { Kvm } from "@nats-io/kv";
import { Catalogue, type ControlStore, UnreadableRecords } from "./catalogue.ts";
import { CatalogueChanges, type KeyWatch, PointerChanges } from "./catalogue-changes.ts";
import { CatalogueQueue } from "./catalogue-queue.ts";
import { now, wallNow } from "./clock.ts";
import { Configurer } from "./configurer.ts";
import {
  configureVerifyMs,
  configureVerifyMsMax,
  configureVerifyMsMin,
  deleteMarkerCleanupCheckMs,
  heartbeatTimeoutMsDefault,
  heartbeatTimeoutMsMax,
  heartbeatTimeoutMsMin,
  leaderLeaseDriftMarginMs,
  leaderLeaseMs,
  leaderReleaseWaitMs,
  leaderRenewMs,
  leftoverSweepIntervalFactor,
  memberEvictAfterMsDefault,
  purgePassIntervalMs,
  reconcileIntervalMs,
  shrinkResumeCheckMs,
  sledOutAfterMsDefault,
  sledOutAfterMsMax,
  sledOutAfterMsMin,
  storeMarkCheckMs,
  sweepDueCheckMs,
  sweepGraceMsDefault,
  sweepIntervalMsDefault,
  sweepTimeMsMax,
  sweepTimeMsMin,
} from "./constants.ts";
import { controlStoreFullError, controlStoreOf, isStoreFull } from "./control-store.ts";
import { DeleteMarkerCleanup } from "./delete-markers.ts";
import { HeadNodeFeatures } from "./head-node-features.ts";
import { clusterFigures, LeaderGauges } from "./health-metrics.ts";
import { Heartbeats, heartbeatTickMsOf } from "./heartbeats.ts";
import { Leadership, type Leading } from "./leadership.ts";
import { LeftoverDirectories } from "./leftover-directories.ts";
import { LeftoverSweeper } from "./leftover-sweeper.ts";
import { PeriodicFailures } from "./periodic-failures.ts";
import { Purger } from "./purger.ts";
import { Reconciler } from "./reconciler.ts";
import { Reports } from "./reports.ts";
import { SledReach } from "./sled-reach.ts";
import { SledRecords } from "./sled-records.ts";
import { Snapshots } from "./snapshots.ts";
import { reportsOfVolume, Status, snapshotBytesOf } from "./status.ts";
import { StoreMarks } from "./store-marks.ts";
import { Sweeper } from "./sweeper.ts";
import {
  forgetConfigured,
  newTenure,
  noteEvicted,
  noteJoined,
  remember,
  type Tenure,
  type Tenures,
} from "./tenure.ts";
import { Volumes } from "./volumes.ts";

export const coordinatorOptions = {
  heartbeatTimeoutMs: {
    flag: "heartbeat-timeout-ms",
    env: "BALLAST_HEARTBEAT_TIMEOUT_MS",
    type: "integer",
    default: heartbeatTimeoutMsDefault,
    min: heartbeatTimeoutMsMin,
    max: heartbeatTimeoutMsMax,
    description: "silence after which a service is declared dead",
  },
  sledOutAfterMs: {
    flag: "sled-out-after-ms",
    env: "BALLAST_SLED_OUT_AFTER_MS",
    type: "integer",
    default: sledOutAfterMsDefault,
    min: sledOutAfterMsMin,
    max: sledOutAfterMsMax,
    description: "silence after which a sled is declared out and its chunks copied again",
  },
  partitionBytes: {
    flag: "partition-bytes",
    env: "BALLAST_PARTITION_BYTES",
    type: "integer",
    default: limits.partitionBytesDefault,
    min: limits.partitionBytesMin,
    max: limits.partitionBytesMax,
    // Otherwise every create that names no partition size would be refused, for a
    // size its caller never gave.
    multipleOf: limits.sectorBytes,
    description: "partition size of new volumes that do not name one",
  },
  sweepIntervalMs: {
    flag: "sweep-interval-ms",
    env: "BALLAST_SWEEP_INTERVAL_MS",
    type: "integer",
    default: sweepIntervalMsDefault,
    min: sweepTimeMsMin,
    max: sweepTimeMsMax,
    description: "how often the leader sweeps the sleds for orphaned chunks and blobs",
  },
  configureVerifyMs: {
    flag: "configure-verify-ms",
    env: "BALLAST_CONFIGURE_VERIFY_MS",
    type: "integer",
    default: configureVerifyMs,
    min: configureVerifyMsMin,
    max: configureVerifyMsMax,
    description:
      "how long a primary may keep reporting an older epoch than it acknowledged (or itself failed, with no secondary) before it is configured again",
  },
  sweepGraceMs: {
    flag: "sweep-grace-ms",
    env: "BALLAST_SWEEP_GRACE_MS",
    type: "integer",
    default: sweepGraceMsDefault,
    min: sweepTimeMsMin,
    max: sweepTimeMsMax,
    description:
      "how long an orphan must stay one (two sweeps this far apart) before it is deleted",
  },
  keepFlushStalledPrimaries: {
    flag: "keep-flush-stalled-primaries",
    env: "BALLAST_KEEP_FLUSH_STALLED_PRIMARIES",
    type: "boolean",
    default: false,
    description:
      "never fail over a primary whose flushes all fail (by default one is, to a secondary that shows it reaches the sleds)",
  },
} as const satisfies OptionSpecs;

type CoordinatorConfig = ConfigOf<typeof coordinatorOptions> & CommonConfig;

/** What clients send (subjects.coordinator): reads, and requests that only add. */
const controlRequests = [
  "cluster.status.v1",
  "volume.create.v1",
  "volume.describe.v1",
  "volume.list.v1",
  "volume.clone.v1",
  "snapshot.create.v1",
  "snapshot.list.v1",
] as const;

/** What only services send (subjects.coordinatorServices), apart so clients cannot. */
const serviceRequests = [
  "checkpoint.record.v1",
  "headnode.report.v1",
  "headnode.leftovers.v1",
] as const;

/** The parts that work for the leader, made once the control store is open. */
interface Parts {
  catalogue: Catalogue;
  leadership: Leadership;
  reconciler: Reconciler;
  volumes: Volumes;
  purger: Purger;
  sweeper: Sweeper;
  leftovers: LeftoverSweeper;
  /** Answers head nodes asking which incarnations they keep files of are gone. */
  directories: LeftoverDirectories;
  reports: Reports;
  status: Status;
  sleds: SledRecords;
  snapshots: Snapshots;
  /** Watches the catalogue so that an idle one is not re-read (absent on a test store). */
  changes: CatalogueChanges | undefined;
  /** Watches checkpoint pointers so that the sweep reads only changed ones (idem). */
  pointers: PointerChanges | undefined;
  /** Removes old delete markers from the control bucket (does nothing on a test store). */
  markers: DeleteMarkerCleanup;
  /** The control store's marks on the sleds: whether it is the data's (store-marks.ts). */
  storeMarks: StoreMarks;
}

export class Coordinator {
  private readonly heartbeats: Heartbeats;
  private parts!: Parts;
  /** What the leader knows of the data's safety, as gauges while it leads. */
  private readonly leaderGauges: LeaderGauges;
  /** The control subjects served while leading: clients', and services'. */
  private control: Served[] | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly periodicFailures: PeriodicFailures;
  private leader: Tenure | undefined;
  private renewing = false;
  /**
   * Periodic and leader work running now (`every`, a fence): a graceful stop waits for
   * it before it releases the leader key, so that nothing this leader began still runs
   * once another leads.
   */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Catalogue changes, one at a time, each only while its tenure leads. */
  private readonly catalogueChanges: CatalogueQueue<Tenure>;
  private readonly tenures: Tenures = {
    held: () => this.leader,
    current: () => this.current(),
  };

  /** `store` replaces the JetStream KV bucket in tests. */
  constructor(
    private readonly service: Service,
    private readonly config: CoordinatorConfig,
    private readonly store?: ControlStore,
  ) {
    this.catalogueChanges = new CatalogueQueue(() => this.current(), service.nodeId);
    this.periodicFailures = new PeriodicFailures(service.logger);
    this.heartbeats = new Heartbeats({
      logger: service.logger,
      heartbeatTimeoutMs: config.heartbeatTimeoutMs,
      // A sled is declared out before it is forgotten: the purger counts out sleds as
      // gone for good, and an evicted one is not listed at all (purge.ts).
      evictAfterMs: Math.max(
        memberEvictAfterMsDefault,
        config.sledOutAfterMs ?? sledOutAfterMsDefault,
      ),
      onReturn: (nodeId) => forgetConfigured(this.leader, nodeId),
      // Only the leader's book of reports and notes are per node; a later tenure starts
      // empty. Its notes of the partitions it left stay a while (tenure.ts, noteEvicted).
      onEvicted: (nodeId) => {
        this.leader?.leases.forgetNode(nodeId);
        noteEvicted(this.leader, nodeId);
      },
      onJoined: (nodeId) => noteJoined(this.leader, nodeId),
    });
    this.leaderGauges = new LeaderGauges(meterOf(service), () => {
      const tenure = this.current();
      if (tenure === undefined || !tenure.ready) return undefined;
      return clusterFigures(
        tenure,
        this.heartbeats.aliveHeadNodes(),
        new Set(this.heartbeats.aliveSleds()),
        this.parts.sleds.list() ?? [],
      );
    });
  }

  async start(): Promise<void> {
    const kv: ControlStore = this.store ?? (await this.openControlStore());
    const storeId = await new Catalogue(kv).storeId();
    this.parts = this.assemble(kv, storeId);
    this.service.serve(
      subjects.heartbeat.pattern,
      { accept: ["heartbeat.v1"], traced: false },
      (heartbeat, context) => this.heartbeats.onHeartbeat(heartbeat, context.subject),
    );
    this.service.serveInbox([], () => undefined);
    this.service.setDescription(() => ({
      heartbeatTimeoutMs: this.config.heartbeatTimeoutMs,
      members: this.heartbeats.list().length,
      leader: this.parts.leadership.isLeader(),
      term: this.leader?.term,
      purgesPending: this.parts.purger.pending(),
      sweep: this.parts.sweeper.sweepStatus(),
      leftovers: this.parts.leftovers.leftoverStatus(),
      controlStore: this.parts.storeMarks.statusOf(),
    }));
    const tickMs = heartbeatTickMsOf(this.config.heartbeatTimeoutMs);
    this.every(tickMs, () => this.heartbeats.tick());
    this.every(leaderRenewMs, () => this.lead());
    this.every(reconcileIntervalMs, () => this.parts.reconciler.reconcile());
    this.every(purgePassIntervalMs, () => this.parts.purger.purge());
    this.every(shrinkResumeCheckMs, () => this.resumeShrinks());
    // Checked every sweepDueCheckMs: a new leader's first pass comes as soon as it is
    // ready, not a whole interval later (a coordinator restarted more often than the
    // interval never swept at all).
    this.every(Math.min(sweepDueCheckMs, this.config.sweepIntervalMs), () =>
      this.parts.sweeper.sweepIfDue(this.config.sweepIntervalMs),
    );
    const leftoverIntervalMs = this.config.sweepIntervalMs * leftoverSweepIntervalFactor;
    this.every(Math.min(sweepDueCheckMs, leftoverIntervalMs), () =>
      this.parts.leftovers.sweepIfDue(leftoverIntervalMs),
    );
    this.every(tickMs, () => this.parts.sleds.tick());
    this.every(storeMarkCheckMs, () => this.parts.storeMarks.check());
    this.every(deleteMarkerCleanupCheckMs, () => this.parts.markers.cleanIfDue());
    this.parts.changes?.start();
    this.parts.pointers?.start();
    this.service.onClose(async () => {
      this.parts.changes?.close();
      this.parts.pointers?.close();
      for (const timer of this.timers) clearInterval(timer);
      await Promise.all((this.control ?? []).map((one) => one.stop()));
      this.control = undefined;
      await this.releaseLeadership();
    });
    await this.lead();
  }

  private assemble(kv: ControlStore, storeId: string): Parts {
    const { service, heartbeats, tenures } = this;
    const catalogue = new Catalogue(kv, new UnreadableRecords(service.logger, service.meter));
    const changes =
      kv.watch === undefined ? undefined : new CatalogueChanges(kv.watch.bind(kv), service.logger);
    // ControlStore types its watch for counting only; JetStream KV's yields each entry's
    // key and revision, which the pointer watch reads.
    const pointers =
      kv.watch === undefined
        ? undefined
        : new PointerChanges(kv.watch.bind(kv) as unknown as KeyWatch, kv, service.logger);
    const leadership = new Leadership({
      kv,
      logger: service.logger,
      nodeId: service.nodeId,
      leaseMs: leaderLeaseMs,
      marginMs: leaderLeaseDriftMarginMs,
      clock: now,
      wallClock: wallNow,
    });
    const configurer = new Configurer(
      service,
      catalogue,
      tenures,
      heartbeats,
      this.config.configureVerifyMs ?? configureVerifyMs,
    );
    // Evidence that head nodes reach the sleds, from their reports (sled-reach.ts).
    const sledReach = new SledReach();
    const reconciler = new Reconciler({
      logger: service.logger,
      catalogue,
      heartbeats,
      configurer,
      tenures,
      sledReach,
      flushStallFailover: !this.config.keepFlushStalledPrimaries,
      ...(changes === undefined ? {} : { changes }),
    });
    const storeMarks = new StoreMarks({ service, heartbeats, tenures, catalogue, storeId });
    const features = new HeadNodeFeatures();
    const volumes = new Volumes({
      service,
      catalogue,
      heartbeats,
      configurer,
      tenures,
      marks: storeMarks,
      features,
      partitionBytesDefault: this.config.partitionBytes,
    });
    const graceMs = this.config.sweepGraceMs;

    const sleds = new SledRecords({
      logger: service.logger,
      catalogue,
      heartbeats,
      tenures,
      sledOutAfterMs: this.config.sledOutAfterMs,
    });
    const purger = new Purger({ service, catalogue, heartbeats, tenures, sleds });
    // A report that needs a decision at once (a failed replica, a stalled follower) has
    // the leader reconcile on the next turn, once however many such reports came in it.
    let reconcileQueued = false;
    const reconcileSoon = () => {
      if (reconcileQueued) return;
      reconcileQueued = true;
      setImmediate(() => {
        reconcileQueued = false;
        try {
          reconciler.reconcile();
        } catch (error) {
          service.logger.error({ error: String(error) }, "reconcile after a report failed");
        }
      });
    };
    const reports = new Reports(catalogue, heartbeats, sleds, reconcileSoon, features, sledReach);
    const status = new Status(service, heartbeats, volumes, sleds, () => storeMarks.statusOf());
    const snapshots = new Snapshots({
      service,
      catalogue,
      members: heartbeats,
      storeMarks,
    });
    const sweeper = new Sweeper({
      service,
      catalogue,
      heartbeats,
      tenures,
      marks: storeMarks,
      graceMs,
      snapshots,
      references: sleds,
      ...(pointers === undefined ? {} : { pointers }),
    });
    const markers = new DeleteMarkerCleanup({ store: kv, tenures, logger: service.logger });
    const leftovers = new LeftoverSweeper({
      service,
      catalogue,
      heartbeats,
      tenures,
      marks: storeMarks,
      graceMs,
    });
    const directories = new LeftoverDirectories({
      service,
      catalogue,
      tenures,
      marks: storeMarks,
    });
    return {
      catalogue,
      leadership,
      reconciler,
      volumes,
      purger,
      sweeper,
      leftovers,
      directories,
      reports,
      status,
      sleds,
      snapshots,
      changes,
      pointers,
      markers,
      storeMarks,
    };
  }

  private every(ms: number, work: () => unknown): void {
    // Its failures are said at a bounded rate however long their cause lasts.
    const task = `every-${ms}ms-${this.timers.length}`;
    this.timers.push(
      setInterval(() => {
        this.track(
          Promise.resolve()
            .then(work)
            .then(
              () => this.periodicFailures.succeeded(task, ms),
              (error) => {
                // A pass that refused to act on a control record that does not decode (the
                // sweeps, the purger): the catalogue warned of that record once; the pass
                // tries again next time, and acts once the record is repaired.
                if (isUnreadableRecord(error)) return;
                this.periodicFailures.failed(task, ms, error);
              },
            ),
        );
      }, ms),
    );
  }

  /** Keeps `work` (which must not reject) in `inFlight` until it settles. */
  private track(work: Promise<unknown>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  /**
   * A graceful stop (after the timers and the control subjects are stopped): waits up to
   * leaderReleaseWaitMs for the work in flight, then gives the leader key up so that
   * another coordinator leads at once rather than after the lease (leadership.ts).
   */
  private async releaseLeadership(): Promise<void> {
    const finished = await settlesWithin(Promise.all([...this.inFlight]), leaderReleaseWaitMs);
    const wasLeading = this.leader !== undefined;
    this.leader = undefined;
    if (!finished) {
      if (wasLeading) {
        this.service.logger.warn(
          { waitedMs: leaderReleaseWaitMs },
          "leader work still running at shutdown: not releasing the leadership; its lease runs out",
        );
      }
      return;
    }
    if (await this.parts.leadership.release()) {
      this.service.logger.info("released the leadership: another coordinator may lead at once");
    }
  }

  private async openControlStore() {
    try {
      const kv = await new Kvm(this.service.bus.connection).create(buckets.control, {
        history: 8,
      });
      // Not the KV itself: its keys() leaves a consumer on the server per call, and its
      // delete markers are removed by the leader once old (delete-markers.ts).
      return controlStoreOf(kv, this.service.logger);
    } catch (error) {
      if (isStoreFull(error)) throw controlStoreFullError(error);
      throw new BallastError(
        ErrorCode.Unavailable,
        `cannot open the control store (JetStream KV bucket ${buckets.control}): ${(error as Error).message}. Is JetStream enabled on the NATS server (nats-server -js)?`,
        { cause: error },
      );
    }
  }

  // ---------------------------------------------------------------- leadership

  /** The tenure this coordinator leads in right now, if any. */
  private current(): Tenure | undefined {
    const leading = this.parts.leadership.leading();
    const tenure = this.leader;
    return leading !== undefined && tenure?.tenure === leading.tenure ? tenure : undefined;
  }

  /** Takes or renews the lease; serves the control subject exactly while leading. */
  private async lead(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      // Why the lead ended, if it has, read before the renewal: one that finds the key
      // another's forgets the term, and with it the cause (a clock that ran out).
      const endedBefore = this.leader === undefined ? undefined : this.parts.leadership.leadEnded();
      const leading = await this.parts.leadership.renew();
      if (leading === undefined) {
        if (this.leader !== undefined || this.control !== undefined) {
          await this.stopLeading(endedBefore);
        }
        return;
      }
      if (this.leader?.tenure !== leading.tenure || this.leader.failed) this.startLeading(leading);
    } finally {
      this.renewing = false;
    }
  }

  /**
   * Finishes the shrinks begun and not finished (volumes.ts `resumeShrinks`), through the
   * catalogue queue like any resize.
   */
  private async resumeShrinks(): Promise<void> {
    const tenure = this.current();
    if (tenure === undefined) return;
    await this.parts.volumes.resumeShrinks(tenure, (work) =>
      this.catalogueChanges.run(tenure, work),
    );
  }

  private startLeading(leading: Leading): void {
    const tenure = newTenure(leading, now());
    this.leader = tenure;
    this.leaderGauges.start();
    this.service.logger.info(
      { term: tenure.term },
      leading.afterRelease === true
        ? "leading the cluster (its last leader released it: no lease waited out)"
        : "leading the cluster",
    );
    if (this.control === undefined) {
      this.control = [
        this.service.serve(
          subjects.coordinator.build(),
          { accept: controlRequests, queue: "coordinator" },
          (message) => this.onControl(message),
        ),
        this.service.serve(
          // What only the operator may send (@ballast/protocol permissions.ts): the
          // requests that destroy data, refused on the clients' subject above.
          subjects.coordinatorAdmin.build(),
          { accept: adminRequests, queue: "coordinator" },
          (message) => this.onControl(message),
        ),
        this.service.serve(
          subjects.coordinatorServices.pattern,
          { accept: serviceRequests, queue: "coordinator" },
          (message) => this.onControl(message),
        ),
      ];
    }
    this.track(this.fence(tenure));
  }

  /** Stamps every partition record with the tenure's term, then starts deciding. */
  private async fence(tenure: Tenure): Promise<void> {
    const { catalogue } = this.parts;
    try {
      const fenced = await catalogue.fence(tenure.term);
      // A volume record that does not decode is left out (reported): the reconciler
      // decides for every other volume, and never for that one.
      const volumes = await catalogue.volumes("skip");
      if (this.leader !== tenure) return;
      if (fenced.deposed) {
        this.service.logger.warn(
          { term: tenure.term },
          "a later leader's term is in the catalogue: not deciding anything",
        );
        return;
      }
      for (const volume of volumes) tenure.volumes.set(volume.name, volume);
      for (const entry of fenced.records) remember(tenure, entry);
      tenure.ready = true;
      tenure.refreshedAtMs = now();
      this.service.logger.info(
        { term: tenure.term, partitions: fenced.records.length },
        "fenced every partition record with this leader's term",
      );
    } catch (error) {
      tenure.failed = true;
      this.service.logger.error(
        { term: tenure.term, error: (error as Error).message },
        "could not fence the catalogue; will try again",
      );
    }
  }

  private async stopLeading(why?: string): Promise<void> {
    if (this.leader !== undefined) {
      const cause = why ?? this.parts.leadership.leadEnded();
      this.service.logger.warn({ why: cause }, "lost the leadership");
    }
    this.leader = undefined;
    this.leaderGauges.stop();
    const served = this.control ?? [];
    this.control = undefined;
    await Promise.all(served.map((one) => one.stop()));
  }

  // ---------------------------------------------------------------- control

  private onControl(
    message: MessageOf<
      | (typeof controlRequests)[number]
      | (typeof adminRequests)[number]
      | (typeof serviceRequests)[number]
    >,
  ) {
    const tenure = this.current();
    if (tenure === undefined) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `${this.service.nodeId} no longer leads; retry`,
      );
    }
    const { volumes, reports, status, snapshots, directories } = this.parts;
    switch (message.type) {
      case "cluster.status.v1":
        return status.onClusterStatus(message, tenure);
      case "volume.create.v1":
        return this.catalogueChanges.run(tenure, () => volumes.create(tenure, message));
      case "volume.describe.v1":
        return volumes.describe(message.name, {
          stored: message.stored === true,
          partitionsFrom: message.partitionsFrom,
        });
      case "volume.list.v1":
        return volumes.list();
      case "volume.delete.v1":
        return this.catalogueChanges.run(tenure, () =>
          volumes.delete(tenure, message.name, message.id, message.force),
        );
      case "volume.resize.v1":
        return this.catalogueChanges.run(tenure, () => volumes.resize(tenure, message));
      case "volume.clone.v1":
        return this.catalogueChanges.run(tenure, () => volumes.clone(tenure, message));
      case "snapshot.create.v1":
        return this.catalogueChanges.run(tenure, () => snapshots.create(message));
      case "snapshot.list.v1":
        return snapshots
          .list(message.volume)
          .then((listed) => withSnapshotBytes(listed, message.volume, tenure));
      case "snapshot.delete.v1":
        return this.catalogueChanges.run(tenure, () => snapshots.delete(message));
      case "volume.rollback.v1":
        return this.catalogueChanges.run(tenure, () => snapshots.rollback(message));
      case "checkpoint.record.v1":
        return reports.onCheckpointRecord(message);
      case "headnode.report.v1":
        return reports.onReport(tenure, message);
      case "headnode.leftovers.v1":
        return directories.onAsk(tenure, message);
      default: {
        const unreachable: never = message;
        throw new Error(`no handler for ${JSON.stringify(unreachable)}`);
      }
    }
  }
}

export const coordinatorDefinition = {
  kind: "coordinator" as const,
  options: coordinatorOptions,
  async start(service: Service, config: CoordinatorConfig) {
    await new Coordinator(service, config).start();
  },
};

/**
 * A listing with each snapshot's unique bytes, from what the volume's primaries last
 * reported to this leader (status.ts); unchanged when this coordinator holds no tenure.
 */
export function withSnapshotBytes(
  listed: ResultOf<"snapshot.list.v1">,
  volume: string,
  tenure: Tenure | undefined,
): ResultOf<"snapshot.list.v1"> {
  if (tenure === undefined || listed.snapshots.length === 0) return listed;
  const partitions = Math.max(
    ...listed.snapshots.map((snapshot) => snapshot.partitionCount ?? snapshot.partitions.length),
  );
  const bytes = snapshotBytesOf(reportsOfVolume(tenure, volume, partitions));
  return {
    snapshots: listed.snapshots.map((snapshot) => {
      const sum = bytes.get(snapshot.id);
      return sum === undefined
        ? snapshot
        : { ...snapshot, uniqueBytes: sum.uniqueBytes, uniqueBytesPartitions: sum.partitions };
    }),
  };
}
