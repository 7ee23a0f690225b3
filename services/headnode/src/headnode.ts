// The head node service: hosts partition replicas. Each replica is a PartitionHost
// (journal, checkpoint file, replica core). The head node subscribes, per replica, to
// the replica's replication subject, and, only while the replica is primary, to the
// partition's volume subject where clients send I/O; it ticks every core on a timer.
//
// Replica sets arrive as `headnode.configure.v1` on the node's inbox, from the
// coordinator (or a test's static assignment). A restarted head node recovers each
// replica from its checkpoint file and journal when it is configured again.

import {
  BallastError,
  ErrorCode,
  type Message,
  type MessageOf,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import type { CommonConfig, Served, Service } from "@ballast/runtime";
import { type ReplicaLimits, tickMs } from "./constants.ts";
import { PartitionHost } from "./partition-host.ts";
import type { Reply } from "./replica/effects.ts";
import { SledClient } from "./sled-client.ts";

type VolumeMessage = MessageOf<
  | "volume.write.v1"
  | "volume.read.v1"
  | "volume.trim.v1"
  | "volume.write-zeroes.v1"
  | "volume.flush.v1"
>;

interface Hosted {
  host: PartitionHost;
  replication: Served;
  volume: Served | undefined;
}

export class HeadNode {
  private readonly hosted = new Map<string, Hosted>();
  private readonly opening = new Map<string, Promise<Hosted>>();
  private readonly sleds: SledClient;
  private tickTimer: NodeJS.Timeout | undefined;

  /** `session` grows on every start (see session.ts). */
  constructor(
    private readonly service: Service,
    private readonly config: CommonConfig,
    private readonly session: number,
    private readonly limits: Partial<ReplicaLimits> = {},
  ) {
    this.sleds = new SledClient(service.bus, service.logger);
  }

  start(): void {
    this.service.serveInbox(["headnode.configure.v1", "headnode.replica.status.v1"], (message) => {
      switch (message.type) {
        case "headnode.configure.v1":
          return this.onConfigure(message);
        case "headnode.replica.status.v1":
          return this.hostOf(message.volume, message.partition).host.status();
        default: {
          const unreachable: never = message;
          throw new Error(`no handler for ${JSON.stringify(unreachable)}`);
        }
      }
    });
    this.service.setDescription(() => ({
      session: this.session,
      replicas: [...this.hosted.values()].map(({ host }) => host.summary()),
    }));
    this.tickTimer = setInterval(() => this.tick(), tickMs);
    this.service.onClose(async () => {
      clearInterval(this.tickTimer);
      await Promise.all([...this.hosted.values()].map(({ host }) => host.close()));
    });
  }

  private tick(): void {
    for (const hosted of this.hosted.values()) {
      hosted.host.tick();
      void this.followRole(hosted);
    }
  }

  private async onConfigure(
    message: MessageOf<"headnode.configure.v1">,
  ): Promise<ResultOf<"headnode.configure.v1">> {
    const members = [message.primary, ...message.secondaries, ...(message.learners ?? [])];
    if (new Set(members).size !== members.length) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `replica set names a node twice: ${members.join(", ")}`,
      );
    }
    if (
      !members.includes(this.service.nodeId) &&
      !this.hosted.has(`${message.volume}/${message.partition}`)
    ) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `${this.service.nodeId} is not in the replica set ${members.join(", ")} of ${message.volume}/${message.partition}`,
      );
    }
    // A replica set without this node (from the coordinator, after a failover) makes
    // the hosted replica idle: it stops serving the partition at once.
    const hosted = await this.open(message);
    const current = hosted.host.replica.configuration?.epoch;
    if (current !== undefined && message.epoch < current) {
      throw new BallastError(
        ErrorCode.WrongEpoch,
        `${message.volume}/${message.partition} is in epoch ${current}; refusing epoch ${message.epoch}`,
        { details: { epoch: message.epoch, currentEpoch: current } },
      );
    }
    hosted.host.configure(
      {
        epoch: message.epoch,
        primary: message.primary,
        secondaries: message.secondaries,
        learners: message.learners ?? [],
      },
      message.sleds,
      undefined, // leases move to headnode.report.v1 (in progress)
    );
    await this.followRole(hosted);
    return hosted.host.status();
  }

  private open(message: MessageOf<"headnode.configure.v1">): Promise<Hosted> {
    const key = `${message.volume}/${message.partition}`;
    const existing = this.hosted.get(key);
    if (existing !== undefined) return Promise.resolve(existing);
    let opening = this.opening.get(key);
    if (opening === undefined) {
      // A learner starts fresh, from the checkpoint it is given or, with none, from op 1
      // (a primary releases no note before a checkpoint is recorded): whatever this node
      // still holds of the partition is stale, and a learner counts for nothing, so
      // discarding it loses no acknowledged write.
      const isLearner = (message.learners ?? []).includes(this.service.nodeId);
      const rebuildFrom = isLearner ? message.checkpoint : undefined;
      opening = (async () => {
        const host = await PartitionHost.open(
          this.service,
          this.config.dataDir,
          {
            volume: message.volume,
            partition: message.partition,
            partitionStart: message.partitionStart,
            partitionBytes: message.partitionBytes,
          },
          this.sleds,
          this.session,
          rebuildFrom,
          this.limits,
          isLearner,
        );
        const replication = this.service.serve(
          subjects.replica.build(message.volume, message.partition, this.service.nodeId),
          { accept: ["replica.notes.v1", "replica.ack.v1"], traced: false },
          (replicationMessage) => host.onReplication(replicationMessage),
        );
        const hosted: Hosted = { host, replication, volume: undefined };
        this.hosted.set(key, hosted);
        return hosted;
      })();
      this.opening.set(key, opening);
      // Success or failure, the next configure must not reuse this attempt.
      opening.then(
        () => this.opening.delete(key),
        () => this.opening.delete(key),
      );
    }
    return opening;
  }

  /** Listens on the partition's volume subject exactly while this replica is primary. */
  private async followRole(hosted: Hosted): Promise<void> {
    const isPrimary = hosted.host.replica.roleName === "primary";
    if (isPrimary && hosted.volume === undefined) {
      const { volume, partition } = hosted.host.address;
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
  }

  private async onVolumeMessage(host: PartitionHost, message: VolumeMessage): Promise<unknown> {
    if (message.volume !== host.address.volume || message.partition !== host.address.partition) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `message for ${message.volume}/${message.partition} sent to ${host.address.volume}/${host.address.partition}`,
      );
    }
    switch (message.type) {
      case "volume.write.v1":
        return mutationResult(
          await host.request((requestId) => ({
            kind: "write",
            requestId,
            epoch: message.epoch,
            // The data aliases the NATS message; the replica keeps it until flushed.
            writes: message.writes.map((write) => ({
              offset: write.offset,
              data: Uint8Array.prototype.slice.call(write.data),
            })),
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

  private hostOf(volume: string, partition: number): Hosted {
    const hosted = this.hosted.get(`${volume}/${partition}`);
    if (hosted === undefined) {
      throw new BallastError(
        ErrorCode.NotFound,
        `${this.service.nodeId} hosts no replica of ${volume}/${partition}`,
      );
    }
    return hosted;
  }
}

function mutationResult(reply: Reply): ResultOf<"volume.write.v1"> {
  if (reply.kind !== "mutation") throw new Error(`mutation answered with ${reply.kind}`);
  return { opNumFirst: reply.opNumFirst, opNumLast: reply.opNumLast };
}
