// The coordinator's shell. Every coordinator tracks membership from heartbeats (so that
// one that takes over leadership already knows who is alive); only the leader — holder
// of the KV lease, see leadership.ts — answers control requests and reconciles:
// it checks every partition against membership, applies failover decisions
// (placement.ts) by compare-and-set on the partition's KV record, and pushes each
// replica set to its head nodes. Control state lives in the JetStream KV bucket
// `ballast-control` (catalogue.ts); a NATS server without JetStream is refused at start.

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
import { Catalogue, type CheckpointPointer, type VolumeRecord } from "./catalogue.ts";
import {
  clockSkewMsMax,
  configureDeadlineMs,
  configureRefreshMs,
  heartbeatTimeoutMsDefault,
  heartbeatTimeoutMsMax,
  heartbeatTimeoutMsMin,
  leaderLeaseMs,
  leaderRenewMs,
  learnerCatchUpMsMax,
  primaryLeaseMs,
  primaryLeaseRenewMs,
  probeDeadlineMs,
  reconcileIntervalMs,
} from "./constants.ts";
import { Leadership } from "./leadership.ts";
import { type Heartbeat, Membership, type MembershipEvent } from "./membership.ts";
import {
  decideFailover,
  decideRebuild,
  loadOf,
  type PartitionRecord,
  placePartitions,
  promoteLearner,
} from "./placement.ts";

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
] as const;

export class Coordinator {
  private readonly membership: Membership;
  private catalogue!: Catalogue;
  private leadership!: Leadership;
  private control: Served | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  /** When each (partition, node) was last sent its configuration, and for which epoch. */
  private readonly configured = new Map<string, { epoch: number; atMs: number }>();
  private readonly startedAtMs = Date.now();
  /** When this coordinator last began to lead: leases granted before are unknown to it. */
  private leaderSinceMs = Number.POSITIVE_INFINITY;
  /** When each learner (partition@node) was first seen rebuilding. */
  private readonly learnersSince = new Map<string, number>();
  /** The furthest read lease granted to each partition's primary. */
  private readonly leases = new Map<string, { primary: string; untilMs: number }>();
  /** The last progress the primary reported for each partition's learners. */
  private readonly rebuilds = new Map<
    string,
    { node: string; matchOpNum: number; targetOpNum: number }[]
  >();
  private reconciling = false;

  constructor(
    private readonly service: Service,
    private readonly config: CoordinatorConfig,
  ) {
    this.membership = new Membership({ heartbeatTimeoutMs: config.heartbeatTimeoutMs });
  }

  async start(): Promise<void> {
    const kv = await this.openControlStore();
    this.catalogue = new Catalogue(kv);
    this.leadership = new Leadership({
      kv,
      nodeId: this.service.nodeId,
      leaseMs: leaderLeaseMs,
      clockSkewMsMax,
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
      leader: this.leadership.isLeader(Date.now()),
    }));
    const tickMs = Math.max(50, Math.floor(this.config.heartbeatTimeoutMs / 4));
    this.every(tickMs, () => this.report(this.membership.tick(Date.now())));
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

  /** Takes or renews the lease; serves the control subject exactly while leading. */
  private async lead(): Promise<void> {
    const leading = await this.leadership.renew(Date.now());
    if (leading && this.control === undefined) {
      this.service.logger.info("leading the cluster");
      this.leaderSinceMs = Date.now();
      this.control = this.service.serve(
        subjects.coordinator.build(),
        { accept: controlRequests, queue: "coordinator" },
        (message) => this.onControl(message),
      );
    } else if (!leading && this.control !== undefined) {
      this.service.logger.warn("lost the leadership");
      const served = this.control;
      this.control = undefined;
      await served.stop();
    }
  }

  private onControl(message: MessageOf<(typeof controlRequests)[number]>) {
    if (!this.leadership.isLeader(Date.now())) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `${this.service.nodeId} no longer leads; retry`,
      );
    }
    switch (message.type) {
      case "cluster.status.v1":
        return this.onClusterStatus(message);
      case "volume.create.v1":
        return this.onVolumeCreate(message);
      case "volume.describe.v1":
        return this.describe(message.name);
      case "volume.list.v1":
        return this.onVolumeList();
      case "volume.delete.v1":
        return this.onVolumeDelete(message.name);
      case "checkpoint.record.v1":
        return this.catalogue
          .recordCheckpoint(message.volume, message.partition, message.node, message.checkpoint)
          .then(({ replaced }) => (replaced === undefined ? {} : { replaced }));
      default: {
        const unreachable: never = message;
        throw new Error(`no handler for ${JSON.stringify(unreachable)}`);
      }
    }
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
    this.report(this.membership.onHeartbeat(heartbeat, Date.now()));
  }

  private report(events: MembershipEvent[]): void {
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
          logger.info({ member: event.member.id, silentMs: event.silentMs }, "node is back");
          this.forgetConfigured(event.member.id);
          break;
        case "died":
          logger.warn(
            { member: event.member.id, kind: event.member.kind, silentMs: event.silentMs },
            `node declared dead: no heartbeat for ${event.silentMs} ms (timeout ${event.timeoutMs} ms)`,
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
    for (const [key, last] of this.configured) {
      if (key.endsWith(`@${nodeId}`)) this.configured.set(key, { ...last, epoch: -1 });
    }
  }

  // ---------------------------------------------------------------- reconcile

  /** Leader only: failover by CAS, then push configurations that changed or are due. */
  private async reconcile(): Promise<void> {
    const nowMs = Date.now();
    if (!this.leadership.isLeader(nowMs) || this.reconciling) return;
    // A coordinator that just started has not heard every heartbeat yet: it must not
    // take silence for death.
    if (nowMs - this.startedAtMs < this.config.heartbeatTimeoutMs) return;
    this.reconciling = true;
    try {
      const alive = new Set(this.membership.alive("headnode").map((member) => member.id));
      const sleds = this.membership.alive("sled").map((member) => member.id);
      const partitions = await this.catalogue.allPartitions();
      const replicaCounts = new Map(
        (await this.catalogue.volumes()).map((volume) => [volume.name, volume.replicaCount]),
      );
      const load = loadOf(
        partitions.map((entry) => entry.value),
        [...alive],
      );
      const checkpoints = new Map<string, Map<number, Map<string, CheckpointPointer>>>();
      for (const entry of partitions) {
        let record = entry.value;
        const decision = decideFailover(record, alive, load);
        if (decision.kind === "unavailable") {
          this.service.logger.error(
            { volume: record.volume, partition: record.partition },
            decision.reason,
          );
          continue;
        }
        let next: { record: PartitionRecord; reason: string } | undefined =
          decision.kind === "change" ? decision : undefined;
        if (next === undefined) {
          const rebuild = decideRebuild(record, replicaCounts.get(record.volume) ?? 2, alive, load);
          if (rebuild !== undefined) {
            next = {
              record: rebuild,
              reason: `adding ${rebuild.learners?.[0]} as a learner to rebuild the partition`,
            };
          }
        }
        if (next === undefined && (record.learners ?? []).length > 0) {
          const caughtUp = await this.caughtUpLearner(record);
          const stuck = (record.learners ?? []).find((node) => {
            const key = `${record.volume}/${record.partition}@${node}`;
            if (!this.learnersSince.has(key)) this.learnersSince.set(key, nowMs);
            return caughtUp !== node && nowMs - this.learnersSince.get(key)! > learnerCatchUpMsMax;
          });
          if (stuck !== undefined && caughtUp === undefined) {
            this.learnersSince.delete(`${record.volume}/${record.partition}@${stuck}`);
            next = {
              record: {
                ...record,
                epoch: record.epoch + 1,
                learners: (record.learners ?? []).filter((node) => node !== stuck),
              },
              reason: `learner ${stuck} did not catch up within ${learnerCatchUpMsMax} ms: dropping it to start again`,
            };
          }
          if (caughtUp !== undefined) {
            next = {
              record: promoteLearner(record, caughtUp),
              reason: `learner ${caughtUp} caught up: promoting it to secondary`,
            };
          }
        }
        if (next !== undefined && next.record.primary !== record.primary) {
          const leaseUntilMs = this.leaseOf(record);
          if (nowMs <= leaseUntilMs + clockSkewMsMax) {
            // The old primary may still serve reads until its lease runs out.
            this.service.logger.info(
              {
                volume: record.volume,
                partition: record.partition,
                waitMs: leaseUntilMs + clockSkewMsMax - nowMs,
              },
              `waiting for ${record.primary}'s read lease to run out before promoting`,
            );
            continue;
          }
        }
        if (next !== undefined) {
          const applied = await this.catalogue.updatePartition(next.record, entry.revision);
          if (!applied) continue; // someone else changed it: decide again next round
          this.service.logger.warn(
            {
              volume: record.volume,
              partition: record.partition,
              epoch: next.record.epoch,
              primary: next.record.primary,
              secondaries: next.record.secondaries,
              learners: next.record.learners ?? [],
            },
            next.reason,
          );
          record = next.record;
        }
        if (!checkpoints.has(record.volume)) {
          checkpoints.set(record.volume, await this.catalogue.checkpoints(record.volume));
        }
        const rebuildFrom = checkpoints
          .get(record.volume)
          ?.get(record.partition)
          ?.get(record.primary);
        await this.push(record, alive, sleds, nowMs, rebuildFrom);
      }
    } finally {
      this.reconciling = false;
    }
  }

  /** The furthest lease `record.primary` may hold: granted by us, or by a leader before us. */
  private leaseOf(record: PartitionRecord): number {
    const granted = this.leases.get(`${record.volume}/${record.partition}`);
    const beforeUs = this.leaderSinceMs + primaryLeaseMs;
    return granted?.primary === record.primary ? Math.max(granted.untilMs, beforeUs) : beforeUs;
  }

  /** A learner the primary reports as matched through its commit point, if any. */
  private async caughtUpLearner(record: PartitionRecord): Promise<string | undefined> {
    try {
      const status = await this.service.bus.request(
        subjects.node.build(record.primary),
        { type: "headnode.replica.status.v1", volume: record.volume, partition: record.partition },
        { deadlineMs: configureDeadlineMs },
      );
      if (status.epoch !== record.epoch) return undefined;
      this.rebuilds.set(
        `${record.volume}/${record.partition}`,
        (status.followers ?? [])
          .filter((candidate) => candidate.learner)
          .map((candidate) => ({
            node: candidate.node,
            matchOpNum: candidate.matchOpNum,
            targetOpNum: status.commitOpNum,
          })),
      );
      const follower = (status.followers ?? []).find(
        (candidate) => candidate.learner && candidate.matchOpNum >= status.commitOpNum,
      );
      return follower?.node;
    } catch {
      return undefined;
    }
  }

  private async push(
    record: PartitionRecord,
    alive: ReadonlySet<string>,
    sleds: readonly string[],
    nowMs: number,
    rebuildFrom?: CheckpointPointer,
  ): Promise<void> {
    if (sleds.length === 0) return;
    // Members, and live nodes configured for this partition before but no longer
    // members (a deposed primary that is still running must hear that it is out).
    const prefix = `${record.volume}/${record.partition}@`;
    const previous = [...this.configured.keys()]
      .filter((key) => key.startsWith(prefix))
      .map((key) => key.slice(prefix.length));
    const learners = record.learners ?? [];
    const members = [
      ...new Set([record.primary, ...record.secondaries, ...learners, ...previous]),
    ].filter((member) => alive.has(member));
    await Promise.all(
      members.map(async (member) => {
        const key = `${record.volume}/${record.partition}@${member}`;
        const last = this.configured.get(key);
        const isPrimary = member === record.primary;
        const refreshMs = isPrimary ? primaryLeaseRenewMs : configureRefreshMs;
        if (last?.epoch === record.epoch && nowMs - last.atMs < refreshMs) return;
        let leaseExpiresAtMs: number | undefined;
        if (isPrimary) {
          // Counted as granted before it is sent: the message may arrive even if the
          // request times out.
          leaseExpiresAtMs = nowMs + primaryLeaseMs;
          const partitionKey = `${record.volume}/${record.partition}`;
          const granted = this.leases.get(partitionKey);
          const untilMs =
            granted?.primary === member
              ? Math.max(granted.untilMs, leaseExpiresAtMs)
              : leaseExpiresAtMs;
          this.leases.set(partitionKey, { primary: member, untilMs });
        }
        try {
          await this.service.bus.request(
            subjects.node.build(member),
            {
              type: "headnode.configure.v1",
              volume: record.volume,
              partition: record.partition,
              partitionStart: record.partitionStart,
              partitionBytes: record.partitionBytes,
              epoch: record.epoch,
              primary: record.primary,
              secondaries: record.secondaries,
              learners,
              ...(leaseExpiresAtMs === undefined ? {} : { leaseExpiresAtMs }),
              ...(learners.includes(member) && rebuildFrom !== undefined
                ? { checkpoint: rebuildFrom }
                : {}),
              sleds: [...sleds],
            },
            { deadlineMs: configureDeadlineMs },
          );
          this.configured.set(key, { epoch: record.epoch, atMs: nowMs });
        } catch (error) {
          this.service.logger.warn(
            {
              member,
              volume: record.volume,
              partition: record.partition,
              error: (error as Error).message,
            },
            "could not configure a replica; will retry",
          );
        }
      }),
    );
  }

  // ---------------------------------------------------------------- volumes

  private async onVolumeCreate(message: MessageOf<"volume.create.v1">): Promise<VolumeState> {
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
    const partitions = placePartitions(
      message.name,
      message.sizeBytes,
      partitionBytes,
      replicaCount,
      alive,
      load,
    );
    const volume: VolumeRecord = {
      name: message.name,
      sizeBytes: message.sizeBytes,
      replicaCount,
      partitionBytes,
      createdAtMs: Date.now(),
    };
    const stored = await this.catalogue.createVolume(volume, partitions);
    this.service.logger.info(
      { volume: volume.name, partitions: stored.length, replicaCount },
      "volume created",
    );
    const sleds = this.membership.alive("sled").map((member) => member.id);
    const aliveSet = new Set(alive);
    await Promise.all(stored.map((record) => this.push(record, aliveSet, sleds, Date.now())));
    return this.stateOf(volume, stored);
  }

  private async describe(name: string): Promise<VolumeState> {
    const volume = await this.catalogue.volume(name);
    if (volume === undefined) throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`);
    const partitions = await this.catalogue.partitions(name);
    return this.stateOf(
      volume.value,
      partitions.map((entry) => entry.value),
      await this.catalogue.checkpoints(name),
    );
  }

  private async onVolumeList(): Promise<ResultOf<"volume.list.v1">> {
    const volumes = await this.catalogue.volumes();
    return { volumes: await Promise.all(volumes.map((volume) => this.describe(volume.name))) };
  }

  private async onVolumeDelete(name: string): Promise<ResultOf<"volume.delete.v1">> {
    const deleted = await this.catalogue.deleteVolume(name);
    if (!deleted) throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`);
    this.service.logger.info({ volume: name }, "volume deleted from the catalogue");
    return { name, deleted };
  }

  private stateOf(
    volume: VolumeRecord,
    partitions: PartitionRecord[],
    checkpoints: Map<number, Map<string, CheckpointPointer>> = new Map(),
  ): VolumeState {
    const nowMs = Date.now();
    return {
      ...volume,
      partitions: partitions.map((record) => ({
        partition: record.partition,
        partitionStart: record.partitionStart,
        partitionBytes: record.partitionBytes,
        epoch: record.epoch,
        primary: record.primary,
        secondaries: record.secondaries,
        // Every member of an epoch holds every acknowledged write: commit waits for all.
        inSync: [record.primary, ...record.secondaries],
        learners: record.learners ?? [],
        rebuilds: (this.rebuilds.get(`${record.volume}/${record.partition}`) ?? []).filter(
          (entry) => (record.learners ?? []).includes(entry.node),
        ),
        checkpoints: [
          ...(checkpoints.get(record.partition) ?? new Map<string, CheckpointPointer>()),
        ].map(([node, pointer]) => ({
          node,
          opNum: pointer.opNum,
          ageMs: Math.max(0, nowMs - pointer.createdAtMs),
        })),
      })),
    };
  }

  // ---------------------------------------------------------------- status

  private async onClusterStatus(message: MessageOf<"cluster.status.v1">): Promise<StatusResult> {
    const nowMs = Date.now();
    this.report(this.membership.tick(nowMs));
    const services: StatusResult["services"] = this.membership.list().map((member) => ({
      kind: member.kind,
      id: member.id,
      pid: member.pid,
      healthy: member.alive,
      startedAtMs: member.startedAtMs,
      lastHeartbeatAtMs: member.lastHeartbeatAtMs,
      lastHeartbeatAgeMs: Math.max(0, nowMs - member.lastHeartbeatAtMs),
      version: member.version,
    }));
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
    return { coordinator: this.service.nodeId, generatedAtMs: nowMs, services, volumes };
  }
}

export const coordinatorDefinition = {
  kind: "coordinator" as const,
  options: coordinatorOptions,
  async start(service: Service, config: CoordinatorConfig) {
    await new Coordinator(service, config).start();
  },
};
