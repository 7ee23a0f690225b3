// The coordinator's shell. Every coordinator tracks membership from heartbeats (so that
// one that takes over leadership already knows who is alive); only the leader — see
// leadership.ts — answers control requests and reconciles. Control state lives in the
// JetStream KV bucket `ballast-control` (catalogue.ts); a NATS server without
// JetStream is refused at start.
//
// Reconcile is pure decisions plus a thin executor. Every reconcileIntervalMs the
// leader takes each partition on its own, with a fresh reading of its monotonic clock,
// and asks decisions.ts what to do. Nothing in that loop awaits: an `update` is applied
// by compare-and-set on the record's revision in the background, with at most one in
// flight per partition, and configuration is pushed to head nodes in the background,
// with at most one request in flight per replica. So a slow or frozen head node delays
// nothing but its own configure requests: a node frozen by SIGSTOP and declared dead
// is replaced exactly as fast as a killed one.
//
// Configure: each member is sent the record (secondaries = votingSecondaries, learners
// with the primary's checkpoint pointer, the volume's incarnation, `leased` for the
// primary) when its epoch changed and every configureRefreshMs. A node that has left
// the partition is sent the new replica set until it answers once (or answers that it
// holds nothing, NotFound), then never again unless it restarts.
//
// Read leases (leases.ts): head nodes report their primaries in `headnode.report.v1`
// every headnodeReportIntervalMs; the answer renews each primary's lease as a duration.
// A decision to replace a primary marks the partition `replacing` in the same turn, so
// no grant slips in between the decision and its compare-and-set.
//
// Leadership and fencing: every partition record the leader writes carries its term,
// and a new tenure (a takeover, or leading again after a lapse such as a SIGSTOP)
// starts with empty bookkeeping (grants, reports, configured replicas, learners) and
// rewrites every partition record with its term before it decides anything, so a
// compare-and-set an ex-leader prepared fails. Every duration is measured on the
// monotonic clock (performance.now); wall-clock times appear only in what is shown.

import { randomBytes } from "node:crypto";
import {
  BallastError,
  buckets,
  ErrorCode,
  limits,
  type MessageOf,
  parseHeartbeatSubject,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import type { CommonConfig, ConfigOf, OptionSpecs, Served, Service } from "@ballast/runtime";
import { Kvm } from "@nats-io/kv";
import {
  Catalogue,
  type CheckpointPointer,
  type ControlStore,
  idOfVolume,
  termOf,
  type Versioned,
  type VolumeRecord,
} from "./catalogue.ts";
import {
  catalogueRefreshMs,
  configureDeadlineMs,
  configureRefreshMs,
  configuresInflightMax,
  dropDeadlineMs,
  droppedNodeAvoidMs,
  heartbeatTimeoutMsDefault,
  heartbeatTimeoutMsMax,
  heartbeatTimeoutMsMin,
  leaderLeaseDriftMarginMs,
  leaderLeaseMs,
  leaderRenewMs,
  learnerCatchUpMsMax,
  probeDeadlineMs,
  reconcileIntervalMs,
  reportAgeMsMax,
} from "./constants.ts";
import {
  decidePartition,
  type Load,
  membersOf,
  type PartitionRecord,
  volumeIdOf,
  votingSecondaries,
} from "./decisions.ts";
import { Leadership, type Leading } from "./leadership.ts";
import { type Grant, LeaseBook, partitionKey } from "./leases.ts";
import { type Heartbeat, Membership, type MembershipEvent } from "./membership.ts";
import { loadOf, placePartitions } from "./placement.ts";

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
  partitionBytes: {
    flag: "partition-bytes",
    env: "BALLAST_PARTITION_BYTES",
    type: "integer",
    default: limits.partitionBytesDefault,
    min: limits.partitionBytesMin,
    max: limits.partitionBytesMax,
    description: "partition size of new volumes that do not name one",
  },
} as const satisfies OptionSpecs;

type CoordinatorConfig = ConfigOf<typeof coordinatorOptions> & CommonConfig;
type StatusResult = ResultOf<"cluster.status.v1">;
type VolumeState = ResultOf<"volume.describe.v1">;

const controlRequests = [
  "cluster.status.v1",
  "volume.create.v1",
  "volume.describe.v1",
  "volume.list.v1",
  "volume.delete.v1",
  "checkpoint.record.v1",
  "headnode.report.v1",
] as const;

/**
 * The monotonic clock every duration is measured on (read through the global, so that
 * tests can drive it with fake timers).
 */
const now = () => globalThis.performance.now();

/** A new volume incarnation id: never reused, within the alphabet and length of ids. */
function newVolumeId(): string {
  return `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
}

/** The leader's state for one tenure; a new tenure starts from an empty one. */
interface Tenure {
  term: number;
  tenure: number;
  /** Set once every partition record carries this term: only then does it decide. */
  ready: boolean;
  /** Set when fencing failed: the next renewal starts the tenure's state again. */
  failed: boolean;
  leases: LeaseBook;
  /** Volumes by name, and partition records by partitionKey: the leader's copy. */
  volumes: Map<string, VolumeRecord>;
  records: Map<string, Versioned<PartitionRecord>>;
  /** Partitions with a compare-and-set (or a re-read after an unclear one) in flight. */
  inflight: Set<string>;
  /** Partitions whose last compare-and-set may or may not have applied. */
  unsure: Set<string>;
  /** Per partition, per node: the epoch it last acknowledged and when (monotonic). */
  configured: Map<string, Map<string, { epoch: number; atMs: number }>>;
  /** `${partitionKey}@${node}` of configure requests in flight. */
  configuring: Set<string>;
  /** `${partitionKey}@${node}@${epoch}` whose failure was logged: once each. */
  failuresLogged: Set<string>;
  /** Per partition, when this tenure first saw each learner. */
  learnersSince: Map<string, Map<string, number>>;
  /** Per partition, live nodes dropped from it and until when to avoid re-adding them. */
  dropped: Map<string, Map<string, number>>;
  /** The last non-update decision logged per partition: logged when it changes. */
  reasons: Map<string, string>;
  refreshedAtMs: number;
  refreshing: boolean;
  /** Grows on every create or delete, so a listing begun before one removes nothing. */
  generation: number;
}

export class Coordinator {
  private readonly membership: Membership;
  private catalogue!: Catalogue;
  private leadership!: Leadership;
  private control: Served | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private leader: Tenure | undefined;
  private renewing = false;
  /** Creates and deletes, one at a time. */
  private catalogueChanges: Promise<unknown> = Promise.resolve();
  /**
   * Since when membership has been heard without a gap: after a start or a pause
   * (SIGSTOP, a stalled event loop) heartbeats have not had time to arrive, and silence
   * is not taken for death until a heartbeat timeout has passed.
   */
  private listeningSinceMs = now();
  private lastTickAtMs = now();

  /** `store` replaces the JetStream KV bucket in tests. */
  constructor(
    private readonly service: Service,
    private readonly config: CoordinatorConfig,
    private readonly store?: ControlStore,
  ) {
    this.membership = new Membership({ heartbeatTimeoutMs: config.heartbeatTimeoutMs });
  }

  async start(): Promise<void> {
    const kv: ControlStore = this.store ?? (await this.openControlStore());
    this.catalogue = new Catalogue(kv);
    this.leadership = new Leadership({
      kv,
      nodeId: this.service.nodeId,
      leaseMs: leaderLeaseMs,
      marginMs: leaderLeaseDriftMarginMs,
      clock: now,
    });
    this.service.serve(
      subjects.heartbeat.pattern,
      { accept: ["heartbeat.v1"], traced: false },
      (heartbeat, context) => this.onHeartbeat(heartbeat, context.subject),
    );
    this.service.serveInbox([], () => undefined);
    this.service.setDescription(() => ({
      heartbeatTimeoutMs: this.config.heartbeatTimeoutMs,
      members: this.membership.list().length,
      leader: this.leadership.isLeader(),
      term: this.leader?.term,
    }));
    const tickMs = Math.max(50, Math.floor(this.config.heartbeatTimeoutMs / 4));
    this.every(tickMs, () => this.tickMembership());
    this.every(leaderRenewMs, () => this.lead());
    this.every(reconcileIntervalMs, () => this.reconcile());
    this.service.onClose(async () => {
      for (const timer of this.timers) clearInterval(timer);
      await this.control?.stop();
    });
    await this.lead();
  }

  private every(ms: number, work: () => unknown): void {
    this.timers.push(
      setInterval(() => {
        void Promise.resolve()
          .then(work)
          .catch((error) =>
            this.service.logger.error({ error: String(error) }, "periodic work failed"),
          );
      }, ms),
    );
  }

  private async openControlStore() {
    try {
      return await new Kvm(this.service.bus.connection).create(buckets.control, { history: 8 });
    } catch (error) {
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
    const leading = this.leadership.leading();
    const tenure = this.leader;
    return leading !== undefined && tenure?.tenure === leading.tenure ? tenure : undefined;
  }

  /** Takes or renews the lease; serves the control subject exactly while leading. */
  private async lead(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      const leading = await this.leadership.renew();
      if (leading === undefined) {
        if (this.leader !== undefined || this.control !== undefined) await this.stopLeading();
        return;
      }
      if (this.leader?.tenure !== leading.tenure || this.leader.failed) this.startLeading(leading);
    } finally {
      this.renewing = false;
    }
  }

  private startLeading(leading: Leading): void {
    const sinceMs = now();
    const tenure: Tenure = {
      ...leading,
      ready: false,
      failed: false,
      leases: new LeaseBook({
        leaderSinceMs: sinceMs,
        leaseMs: limits.primaryLeaseMs,
        driftMarginMs: limits.primaryLeaseDriftMarginMs,
        reportAgeMsMax,
      }),
      volumes: new Map(),
      records: new Map(),
      inflight: new Set(),
      unsure: new Set(),
      configured: new Map(),
      configuring: new Set(),
      failuresLogged: new Set(),
      learnersSince: new Map(),
      dropped: new Map(),
      reasons: new Map(),
      refreshedAtMs: sinceMs,
      refreshing: false,
      generation: 0,
    };
    this.leader = tenure;
    this.service.logger.info({ term: tenure.term }, "leading the cluster");
    if (this.control === undefined) {
      this.control = this.service.serve(
        subjects.coordinator.build(),
        { accept: controlRequests, queue: "coordinator" },
        (message) => this.onControl(message),
      );
    }
    void this.fence(tenure);
  }

  /** Stamps every partition record with the tenure's term, then starts deciding. */
  private async fence(tenure: Tenure): Promise<void> {
    try {
      const fenced = await this.catalogue.fence(tenure.term);
      const volumes = await this.catalogue.volumes();
      if (this.leader !== tenure) return;
      if (fenced.deposed) {
        this.service.logger.warn(
          { term: tenure.term },
          "a later leader's term is in the catalogue: not deciding anything",
        );
        return;
      }
      for (const volume of volumes) tenure.volumes.set(volume.name, volume);
      for (const entry of fenced.records) this.remember(tenure, entry);
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

  private async stopLeading(): Promise<void> {
    if (this.leader !== undefined) this.service.logger.warn("lost the leadership");
    this.leader = undefined;
    const served = this.control;
    this.control = undefined;
    await served?.stop();
  }

  /** Keeps a record in the leader's copy unless the copy holds a newer revision. */
  private remember(tenure: Tenure, entry: Versioned<PartitionRecord>): void {
    const key = partitionKey(entry.value);
    const cached = tenure.records.get(key);
    if (cached === undefined || entry.revision > cached.revision) tenure.records.set(key, entry);
  }

  private onControl(message: MessageOf<(typeof controlRequests)[number]>) {
    const tenure = this.current();
    if (tenure === undefined) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `${this.service.nodeId} no longer leads; retry`,
      );
    }
    switch (message.type) {
      case "cluster.status.v1":
        return this.onClusterStatus(message);
      case "volume.create.v1":
        return this.serialize(() => this.onVolumeCreate(tenure, message));
      case "volume.describe.v1":
        return this.describe(message.name);
      case "volume.list.v1":
        return this.onVolumeList();
      case "volume.delete.v1":
        return this.serialize(() => this.onVolumeDelete(tenure, message.name));
      case "checkpoint.record.v1":
        return this.onCheckpointRecord(message);
      case "headnode.report.v1":
        return this.onReport(tenure, message);
      default: {
        const unreachable: never = message;
        throw new Error(`no handler for ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const result = this.catalogueChanges.then(work);
    this.catalogueChanges = result.catch(() => undefined);
    return result;
  }

  // ---------------------------------------------------------------- membership

  private onHeartbeat(heartbeat: Heartbeat, subject: string): void {
    const from = parseHeartbeatSubject(subject);
    if (from === undefined || from.kind !== heartbeat.kind || from.nodeId !== heartbeat.nodeId) {
      this.service.logger.warn(
        { subject, kind: heartbeat.kind, nodeId: heartbeat.nodeId },
        "ignored a heartbeat whose subject does not match its content",
      );
      return;
    }
    this.reportEvents(this.membership.onHeartbeat(heartbeat, now()));
  }

  private tickMembership(): void {
    const nowMs = now();
    if (nowMs - this.lastTickAtMs > this.config.heartbeatTimeoutMs) {
      // This process did not run for a heartbeat timeout: heartbeats sent meanwhile
      // are still queued. Listen afresh before taking silence for death.
      this.service.logger.warn(
        { pausedMs: Math.round(nowMs - this.lastTickAtMs) },
        "this coordinator was paused: listening for heartbeats again before declaring deaths",
      );
      this.listeningSinceMs = nowMs;
    }
    this.lastTickAtMs = nowMs;
    if (!this.listening(nowMs)) this.reportEvents(this.membership.tick(nowMs));
  }

  /** True while membership has not yet been heard for a whole heartbeat timeout. */
  private listening(nowMs: number): boolean {
    return nowMs - this.listeningSinceMs < this.config.heartbeatTimeoutMs;
  }

  private reportEvents(events: MembershipEvent[]): void {
    const logger = this.service.logger;
    for (const event of events) {
      switch (event.type) {
        case "joined":
          logger.info(
            { member: event.member.id, kind: event.member.kind, pid: event.member.pid },
            "node joined",
          );
          break;
        case "restarted":
          logger.warn(
            { member: event.member.id, pid: event.member.pid, previousPid: event.previousPid },
            "node restarted",
          );
          this.forgetConfigured(event.member.id);
          break;
        case "rejoined":
          logger.info(
            { member: event.member.id, silentMs: Math.round(event.silentMs) },
            "node is back",
          );
          this.forgetConfigured(event.member.id);
          break;
        case "died":
          logger.warn(
            { member: event.member.id, kind: event.member.kind, silentMs: event.silentMs },
            `node declared dead: no heartbeat for ${Math.round(event.silentMs)} ms (timeout ${event.timeoutMs} ms)`,
          );
          break;
        case "refused":
          logger.warn({ member: event.nodeId, reason: event.reason }, "refused a heartbeat");
          break;
        default: {
          const unreachable: never = event;
          throw new Error(`unknown membership event ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  /**
   * A restarted node has lost its replicas' configuration, and a node back from silence
   * may have missed a failover: push to it again (members and deposed members alike).
   */
  private forgetConfigured(nodeId: string): void {
    for (const nodes of this.leader?.configured.values() ?? []) {
      const last = nodes.get(nodeId);
      if (last !== undefined) nodes.set(nodeId, { ...last, epoch: -1 });
    }
  }

  private aliveHeadNodes(): Set<string> {
    return new Set(this.membership.alive("headnode").map((member) => member.id));
  }

  private aliveSleds(): string[] {
    return this.membership.alive("sled").map((member) => member.id);
  }

  // ---------------------------------------------------------------- reconcile

  /** Leader only: every partition decided on its own; nothing here awaits. */
  private reconcile(): void {
    const tenure = this.current();
    if (tenure === undefined || !tenure.ready) return;
    const startMs = now();
    if (this.listening(startMs)) return;
    if (startMs - tenure.refreshedAtMs >= catalogueRefreshMs && !tenure.refreshing) {
      void this.refresh(tenure);
    }
    const alive = this.aliveHeadNodes();
    const sleds = this.aliveSleds();
    const load = loadOf(
      [...tenure.records.values()].map((entry) => entry.value),
      [...alive],
    );
    for (const entry of tenure.records.values()) this.step(tenure, entry, alive, sleds, load);
  }

  /** One partition: decide with a fresh time, then act without waiting. */
  private step(
    tenure: Tenure,
    entry: Versioned<PartitionRecord>,
    alive: ReadonlySet<string>,
    sleds: readonly string[],
    load: Map<string, Load>,
  ): void {
    const record = entry.value;
    const key = partitionKey(record);
    if (tenure.inflight.has(key)) return;
    const volume = tenure.volumes.get(record.volume);
    // Partitions of no listed volume are a create still under way or a delete that
    // died halfway: not a volume's, not reconciled.
    if (volume === undefined || idOfVolume(volume) !== volumeIdOf(record)) return;
    if (tenure.unsure.has(key)) {
      void this.reread(tenure, record);
      return;
    }
    const nowMs = now();
    const decision = decidePartition(record, {
      nowMs,
      alive,
      load,
      replicaCount: volume.replicaCount,
      report: tenure.leases.reportOf(record, nowMs),
      leaseUntilMs: tenure.leases.leaseUntilMs(record),
      learnersSinceMs: this.learnersSince(tenure, record, nowMs),
      learnerCatchUpMsMax,
      avoid: this.avoided(tenure, record, nowMs),
    });
    switch (decision.kind) {
      case "keep":
        tenure.leases.setReplacing(record, false);
        tenure.reasons.delete(key);
        this.configure(tenure, record, alive, sleds);
        return;
      case "unavailable":
        tenure.leases.setReplacing(record, false);
        this.note(tenure, record, "error", decision.reason);
        this.configure(tenure, record, alive, sleds);
        return;
      case "wait":
        // Set in the same turn as the decision: no grant may extend the lease it read.
        tenure.leases.setReplacing(record, true);
        this.note(tenure, record, "info", decision.reason);
        this.configure(tenure, record, alive, sleds);
        return;
      case "update":
        if (decision.record.primary !== record.primary) tenure.leases.setReplacing(record, true);
        tenure.inflight.add(key);
        tenure.reasons.delete(key);
        void this.apply(tenure, entry, decision.record, decision.reason);
        return;
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** When this tenure first saw each of the record's learners (forgetting former ones). */
  private learnersSince(
    tenure: Tenure,
    record: PartitionRecord,
    nowMs: number,
  ): ReadonlyMap<string, number> {
    const learners = record.learners ?? [];
    const key = partitionKey(record);
    if (learners.length === 0) {
      tenure.learnersSince.delete(key);
      return new Map();
    }
    const since = tenure.learnersSince.get(key) ?? new Map<string, number>();
    for (const node of since.keys()) if (!learners.includes(node)) since.delete(node);
    for (const node of learners) if (!since.has(node)) since.set(node, nowMs);
    tenure.learnersSince.set(key, since);
    return since;
  }

  /** Live nodes recently dropped from the partition (forgetting those whose time is up). */
  private avoided(tenure: Tenure, record: PartitionRecord, nowMs: number): ReadonlySet<string> {
    const key = partitionKey(record);
    const dropped = tenure.dropped.get(key);
    if (dropped === undefined) return new Set();
    for (const [node, untilMs] of dropped) if (nowMs >= untilMs) dropped.delete(node);
    if (dropped.size === 0) tenure.dropped.delete(key);
    return new Set(dropped.keys());
  }

  /** Logs a decision that changes nothing, once per distinct reason. */
  private note(
    tenure: Tenure,
    record: PartitionRecord,
    level: "info" | "error",
    reason: string,
  ): void {
    const key = partitionKey(record);
    // Waits count down: compare the reason without its numbers.
    const shape = reason.replace(/\d+/g, "#");
    if (tenure.reasons.get(key) === shape) return;
    tenure.reasons.set(key, shape);
    this.service.logger[level](
      { volume: record.volume, partition: record.partition, epoch: record.epoch },
      reason,
    );
  }

  /** Applies an update by compare-and-set, in the background of the decision loop. */
  private async apply(
    tenure: Tenure,
    current: Versioned<PartitionRecord>,
    next: PartitionRecord,
    reason: string,
  ): Promise<void> {
    const key = partitionKey(next);
    let settled = true;
    try {
      if (this.current() !== tenure) return;
      const outcome = await this.catalogue.updatePartition(next, current, tenure.term);
      if (this.leader !== tenure) return;
      if (!outcome.applied) {
        if (outcome.reason === "deposed") {
          this.service.logger.warn(
            { volume: next.volume, partition: next.partition, term: tenure.term },
            "a later leader wrote this partition: this coordinator no longer decides",
          );
          tenure.ready = false;
          return;
        }
        // Someone moved it on (an earlier write whose answer was lost): decide again
        // on a fresh read.
        const fresh = await this.catalogue.partition(next.volume, next.partition);
        if (this.leader === tenure && fresh !== undefined) this.remember(tenure, fresh);
        return;
      }
      const stored = { value: { ...next, term: tenure.term }, revision: outcome.revision };
      tenure.records.set(key, stored);
      const alive = this.aliveHeadNodes();
      const remaining = membersOf(next);
      for (const node of membersOf(current.value)) {
        if (remaining.includes(node) || !alive.has(node)) continue;
        // Dropped while alive: stalled, or could not catch up. Not the next learner.
        const dropped = tenure.dropped.get(key) ?? new Map<string, number>();
        dropped.set(node, now() + droppedNodeAvoidMs);
        tenure.dropped.set(key, dropped);
      }
      this.service.logger.warn(
        {
          volume: next.volume,
          partition: next.partition,
          epoch: next.epoch,
          primary: next.primary,
          secondaries: next.secondaries,
          joining: next.joining ?? [],
          learners: next.learners ?? [],
        },
        reason,
      );
      this.configure(tenure, stored.value, alive, this.aliveSleds());
    } catch (error) {
      // The write may or may not have landed: until a read says which, no lease is
      // granted on this partition (`replacing` stays) and nothing else is decided.
      settled = false;
      if (this.leader === tenure) tenure.unsure.add(key);
      this.service.logger.warn(
        { volume: next.volume, partition: next.partition, error: (error as Error).message },
        "could not record a partition decision; reading it again",
      );
    } finally {
      if (this.leader === tenure) {
        tenure.inflight.delete(key);
        if (settled) tenure.leases.setReplacing(next, false);
      }
    }
  }

  /** Reads back a partition whose last write is unclear, then lets it be decided again. */
  private async reread(tenure: Tenure, record: PartitionRecord): Promise<void> {
    const key = partitionKey(record);
    tenure.inflight.add(key);
    try {
      const fresh = await this.catalogue.partition(record.volume, record.partition);
      if (this.leader !== tenure) return;
      if (fresh !== undefined && volumeIdOf(fresh.value) === volumeIdOf(record)) {
        this.remember(tenure, fresh);
      }
      tenure.unsure.delete(key);
      tenure.leases.setReplacing(record, false);
    } catch (error) {
      this.service.logger.warn(
        { volume: record.volume, partition: record.partition, error: (error as Error).message },
        "could not read a partition record back; will retry",
      );
    } finally {
      if (this.leader === tenure) tenure.inflight.delete(key);
    }
  }

  /** Re-reads the whole catalogue into the leader's copy (a safety net, not a source). */
  private async refresh(tenure: Tenure): Promise<void> {
    tenure.refreshing = true;
    const generation = tenure.generation;
    try {
      const [volumes, partitions] = await Promise.all([
        this.catalogue.volumes(),
        this.catalogue.allPartitions(),
      ]);
      if (this.leader !== tenure) return;
      const names = new Set(volumes.map((volume) => volume.name));
      for (const volume of volumes) tenure.volumes.set(volume.name, volume);
      const listed = new Set<string>();
      for (const entry of partitions) {
        if (termOf(entry.value) > tenure.term) {
          this.service.logger.warn(
            { volume: entry.value.volume, partition: entry.value.partition, term: tenure.term },
            "a later leader wrote this partition: this coordinator no longer decides",
          );
          tenure.ready = false;
          return;
        }
        listed.add(partitionKey(entry.value));
        this.remember(tenure, entry);
      }
      if (generation === tenure.generation) {
        // Nothing was created or deleted meanwhile: what is not listed is gone.
        for (const name of tenure.volumes.keys()) if (!names.has(name)) tenure.volumes.delete(name);
        for (const [key, entry] of tenure.records) {
          if (!listed.has(key) && !tenure.inflight.has(key)) this.forget(tenure, entry.value);
        }
      }
      tenure.refreshedAtMs = now();
    } catch (error) {
      this.service.logger.warn({ error: (error as Error).message }, "could not read the catalogue");
    } finally {
      tenure.refreshing = false;
    }
  }

  /** Drops every piece of the tenure's state about a partition. */
  private forget(tenure: Tenure, record: PartitionRecord): void {
    const key = partitionKey(record);
    tenure.records.delete(key);
    tenure.leases.forget(record);
    tenure.configured.delete(key);
    tenure.learnersSince.delete(key);
    tenure.dropped.delete(key);
    tenure.reasons.delete(key);
    tenure.unsure.delete(key);
  }

  // ---------------------------------------------------------------- configure

  /**
   * Pushes the record to every live member whose configuration is out of date or due
   * for a refresh, and to live former members that have not heard they are out. Returns
   * once those requests settle; the decision loop never waits for it.
   */
  private configure(
    tenure: Tenure,
    record: PartitionRecord,
    alive: ReadonlySet<string>,
    sleds: readonly string[],
  ): Promise<void> {
    if (sleds.length === 0) return Promise.resolve();
    const key = partitionKey(record);
    const members = membersOf(record);
    let nodes = tenure.configured.get(key);
    if (nodes === undefined) {
      nodes = new Map();
      tenure.configured.set(key, nodes);
    }
    const nowMs = now();
    const sending: Promise<void>[] = [];
    for (const node of new Set([...members, ...nodes.keys()])) {
      if (!alive.has(node) || tenure.configuring.has(`${key}@${node}`)) continue;
      const member = members.includes(node);
      const last = nodes.get(node);
      if (!member && last === undefined) continue;
      const current = last?.epoch === record.epoch;
      if (current && (!member || nowMs - last.atMs < configureRefreshMs)) continue;
      if (tenure.configuring.size >= configuresInflightMax) break;
      sending.push(this.sendConfigure(tenure, record, node, member, sleds));
    }
    return Promise.all(sending).then(() => undefined);
  }

  private async sendConfigure(
    tenure: Tenure,
    record: PartitionRecord,
    node: string,
    member: boolean,
    sleds: readonly string[],
  ): Promise<void> {
    const key = partitionKey(record);
    const inflightKey = `${key}@${node}`;
    tenure.configuring.add(inflightKey);
    try {
      const learners = record.learners ?? [];
      const checkpoint = learners.includes(node)
        ? await this.catalogue.checkpoint(record.volume, record.partition, record.primary)
        : undefined;
      await this.service.bus.request(
        subjects.node.build(node),
        {
          type: "headnode.configure.v1",
          volume: record.volume,
          volumeId: volumeIdOf(record),
          partition: record.partition,
          partitionStart: record.partitionStart,
          partitionBytes: record.partitionBytes,
          epoch: record.epoch,
          primary: record.primary,
          secondaries: votingSecondaries(record),
          learners,
          ...(node === record.primary ? { leased: true } : {}),
          ...(checkpoint === undefined ? {} : { checkpoint }),
          sleds: [...sleds],
        },
        { deadlineMs: configureDeadlineMs },
      );
      if (this.leader !== tenure) return;
      tenure.configured.get(key)?.set(node, { epoch: record.epoch, atMs: now() });
      tenure.failuresLogged.delete(`${inflightKey}@${record.epoch}`);
    } catch (error) {
      if (this.leader !== tenure) return;
      const code = error instanceof BallastError ? error.code : undefined;
      const context = {
        node,
        volume: record.volume,
        partition: record.partition,
        epoch: record.epoch,
        error: (error as Error).message,
      };
      if (!member && (code === ErrorCode.NotFound || code === ErrorCode.InvalidArgument)) {
        // A former member that holds nothing of the partition: nothing to tell it.
        tenure.configured.get(key)?.delete(node);
        this.service.logger.debug(context, "a former member holds nothing of the partition");
        return;
      }
      const logged = `${inflightKey}@${record.epoch}`;
      if (tenure.failuresLogged.has(logged)) {
        this.service.logger.debug(context, "could not configure a replica; will retry");
      } else {
        tenure.failuresLogged.add(logged);
        this.service.logger.warn(context, "could not configure a replica; will retry");
      }
    } finally {
      if (this.leader === tenure) tenure.configuring.delete(inflightKey);
    }
  }

  // ---------------------------------------------------------------- reports and leases

  /** A head node's report: keep what its primaries say, renew the leases that may be. */
  private onReport(
    tenure: Tenure,
    message: MessageOf<"headnode.report.v1">,
  ): ResultOf<"headnode.report.v1"> {
    const granted: Grant[] = [];
    if (tenure.ready) {
      const alive = this.aliveHeadNodes();
      const nowMs = now();
      for (const report of message.primaries) {
        const volume = tenure.volumes.get(report.volume);
        if (volume === undefined) continue;
        const entry = tenure.records.get(`${idOfVolume(volume)}/${report.partition}`);
        if (entry === undefined || entry.value.volume !== report.volume) continue;
        const record = entry.value;
        if (tenure.leases.onReport(message.node, report, record, alive, nowMs)) {
          granted.push({ volume: report.volume, partition: report.partition, epoch: report.epoch });
        } else if (message.node !== record.primary) {
          // A deposed primary (woken from a pause, say), perhaps unknown to this
          // tenure: make sure the next configure round tells it it is out.
          const nodes = tenure.configured.get(partitionKey(record)) ?? new Map();
          if (!nodes.has(message.node)) nodes.set(message.node, { epoch: -1, atMs: 0 });
          tenure.configured.set(partitionKey(record), nodes);
        }
      }
    }
    return { leaseMs: limits.primaryLeaseMs, granted };
  }

  private async onCheckpointRecord(
    message: MessageOf<"checkpoint.record.v1">,
  ): Promise<ResultOf<"checkpoint.record.v1">> {
    // Only a member's pointer is kept: one from a replica of a deleted incarnation, or
    // from a node that has left, must never seed a learner.
    const record = await this.catalogue.partition(message.volume, message.partition);
    if (record === undefined || !membersOf(record.value).includes(message.node)) {
      throw new BallastError(
        ErrorCode.NotFound,
        `${message.node} is not a member of ${message.volume}/${message.partition}: checkpoint not recorded`,
      );
    }
    const { replaced } = await this.catalogue.recordCheckpoint(
      message.volume,
      message.partition,
      message.node,
      message.checkpoint,
    );
    return replaced === undefined ? {} : { replaced };
  }

  // ---------------------------------------------------------------- volumes

  private async onVolumeCreate(
    tenure: Tenure,
    message: MessageOf<"volume.create.v1">,
  ): Promise<VolumeState> {
    const replicaCount = message.replicaCount ?? limits.replicaCountMin;
    const partitionBytes = message.partitionBytes ?? this.config.partitionBytes;
    const problems: string[] = [];
    if (replicaCount < limits.replicaCountMin || replicaCount > limits.replicaCountMax) {
      problems.push(
        `replica count must be ${limits.replicaCountMin} or ${limits.replicaCountMax}, got ${replicaCount}`,
      );
    }
    if (message.sizeBytes === 0 || message.sizeBytes % limits.sectorBytes !== 0) {
      problems.push(
        `size must be a positive multiple of ${limits.sectorBytes} bytes, got ${message.sizeBytes}`,
      );
    }
    if (message.sizeBytes > limits.volumeBytesMax) {
      problems.push(
        `size must be at most ${limits.volumeBytesMax} bytes, got ${message.sizeBytes}`,
      );
    }
    if (
      partitionBytes % limits.sectorBytes !== 0 ||
      partitionBytes < limits.partitionBytesMin ||
      partitionBytes > limits.partitionBytesMax
    ) {
      problems.push(
        `partition size must be a multiple of ${limits.sectorBytes} from ${limits.partitionBytesMin} to ${limits.partitionBytesMax} bytes, got ${partitionBytes}`,
      );
    }
    if (
      problems.length === 0 &&
      Math.ceil(message.sizeBytes / partitionBytes) > limits.partitionsPerVolumeMax
    ) {
      problems.push(
        `${Math.ceil(message.sizeBytes / partitionBytes)} partitions is over the limit of ${limits.partitionsPerVolumeMax}: use larger partitions`,
      );
    }
    if (problems.length > 0) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `cannot create volume ${message.name}: ${problems.join("; ")}`,
      );
    }
    const alive = this.membership.alive("headnode").map((member) => member.id);
    const existing = await this.catalogue.allPartitions();
    const load = loadOf(
      existing.map((entry) => entry.value),
      alive,
    );
    const id = newVolumeId();
    const partitions = placePartitions(
      message.name,
      id,
      message.sizeBytes,
      partitionBytes,
      replicaCount,
      alive,
      load,
    );
    const volume: VolumeRecord = {
      name: message.name,
      id,
      sizeBytes: message.sizeBytes,
      replicaCount,
      partitionBytes,
      createdAtMs: Date.now(),
    };
    const stored = await this.catalogue.createVolume(volume, partitions, tenure.term);
    this.service.logger.info(
      { volume: volume.name, id, partitions: stored.length, replicaCount },
      "volume created",
    );
    if (this.leader === tenure) {
      tenure.generation++;
      tenure.volumes.set(volume.name, volume);
      for (const entry of stored) this.remember(tenure, entry);
      // Configured before the answer, so the volume serves I/O as soon as it is listed.
      const aliveSet = this.aliveHeadNodes();
      const sleds = this.aliveSleds();
      await Promise.all(
        stored.map((entry) => this.configure(tenure, entry.value, aliveSet, sleds)),
      );
    }
    return this.stateOf(
      volume,
      stored.map((entry) => entry.value),
    );
  }

  private async describe(name: string): Promise<VolumeState> {
    const volume = await this.catalogue.volume(name);
    if (volume === undefined) throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`);
    const id = idOfVolume(volume.value);
    const [partitions, checkpoints] = await Promise.all([
      this.catalogue.partitions(name),
      this.catalogue.checkpoints(name),
    ]);
    return this.stateOf(
      volume.value,
      partitions.map((entry) => entry.value).filter((record) => volumeIdOf(record) === id),
      checkpoints,
    );
  }

  private async onVolumeList(): Promise<ResultOf<"volume.list.v1">> {
    const volumes = await this.catalogue.volumes();
    return { volumes: await Promise.all(volumes.map((volume) => this.describe(volume.name))) };
  }

  /**
   * Removes the volume's records, then tells every live head node to drop the
   * incarnation's replicas. Best effort: a node that misses it (down, frozen) drops its
   * replica when a configure of another incarnation of the name reaches it.
   */
  private async onVolumeDelete(
    tenure: Tenure,
    name: string,
  ): Promise<ResultOf<"volume.delete.v1">> {
    const deleted = await this.catalogue.deleteVolume(name);
    if (deleted === undefined)
      throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`);
    const volumeId = idOfVolume(deleted);
    this.service.logger.info({ volume: name, id: volumeId }, "volume deleted from the catalogue");
    if (this.leader === tenure) {
      tenure.generation++;
      if (
        tenure.volumes.get(name) !== undefined &&
        idOfVolume(tenure.volumes.get(name)!) === volumeId
      ) {
        tenure.volumes.delete(name);
      }
      for (const entry of [...tenure.records.values()]) {
        if (entry.value.volume === name && volumeIdOf(entry.value) === volumeId) {
          this.forget(tenure, entry.value);
        }
      }
    }
    const nodes = this.membership.alive("headnode").map((member) => member.id);
    await Promise.all(
      nodes.map(async (node) => {
        try {
          const { dropped } = await this.service.bus.request(
            subjects.node.build(node),
            { type: "headnode.drop.v1", volume: name, volumeId },
            { deadlineMs: dropDeadlineMs },
          );
          this.service.logger.info(
            { node, volume: name, id: volumeId, dropped },
            "replicas dropped",
          );
        } catch (error) {
          this.service.logger.warn(
            { node, volume: name, id: volumeId, error: (error as Error).message },
            "could not tell a head node to drop a deleted volume's replicas",
          );
        }
      }),
    );
    return { name, deleted: true };
  }

  private stateOf(
    volume: VolumeRecord,
    partitions: PartitionRecord[],
    checkpoints: Map<number, Map<string, CheckpointPointer>> = new Map(),
  ): VolumeState {
    const nowMs = Date.now();
    const leases = this.current()?.leases;
    return {
      ...volume,
      id: idOfVolume(volume),
      partitions: partitions.map((record) => {
        const learners = record.learners ?? [];
        const report = leases?.lastReportOf(record);
        return {
          partition: record.partition,
          partitionStart: record.partitionStart,
          partitionBytes: record.partitionBytes,
          epoch: record.epoch,
          primary: record.primary,
          secondaries: record.secondaries,
          // Commit waits for every voting member, so each holds every acknowledged
          // write; joiners are not counted until they are secondaries.
          inSync: [record.primary, ...record.secondaries],
          learners,
          joining: record.joining ?? [],
          rebuilds: (report?.epoch === record.epoch ? report.followers : [])
            .filter((follower) => learners.includes(follower.node))
            .map((follower) => ({
              node: follower.node,
              matchOpNum: follower.matchOpNum,
              targetOpNum: report!.commitOpNum,
            })),
          checkpoints: [
            ...(checkpoints.get(record.partition) ?? new Map<string, CheckpointPointer>()),
          ].map(([node, pointer]) => ({
            node,
            opNum: pointer.opNum,
            ageMs: Math.max(0, nowMs - pointer.createdAtMs),
          })),
        };
      }),
    };
  }

  // ---------------------------------------------------------------- status

  private async onClusterStatus(message: MessageOf<"cluster.status.v1">): Promise<StatusResult> {
    const nowMs = now();
    const wallMs = Date.now();
    if (!this.listening(nowMs)) this.reportEvents(this.membership.tick(nowMs));
    // Membership measures on the monotonic clock; shown as wall-clock times.
    const services: StatusResult["services"] = this.membership.list().map((member) => {
      const ageMs = Math.max(0, Math.round(nowMs - member.lastHeartbeatAtMs));
      return {
        kind: member.kind,
        id: member.id,
        pid: member.pid,
        healthy: member.alive,
        startedAtMs: member.startedAtMs,
        lastHeartbeatAtMs: wallMs - ageMs,
        lastHeartbeatAgeMs: ageMs,
        version: member.version,
      };
    });
    if (message.probe) {
      await Promise.all(
        services
          .filter((entry) => entry.healthy)
          .map(async (entry) => {
            try {
              entry.info = await this.service.bus.request(
                subjects.node.build(entry.id),
                { type: "node.info.v1" },
                { deadlineMs: probeDeadlineMs },
              );
            } catch (error) {
              entry.probeError = (error as Error).message;
            }
          }),
      );
    }
    const volumes = (await this.onVolumeList()).volumes;
    return { coordinator: this.service.nodeId, generatedAtMs: wallMs, services, volumes };
  }
}

export const coordinatorDefinition = {
  kind: "coordinator" as const,
  options: coordinatorOptions,
  async start(service: Service, config: CoordinatorConfig) {
    await new Coordinator(service, config).start();
  },
};
