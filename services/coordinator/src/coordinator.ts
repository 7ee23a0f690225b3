// The coordinator's shell. It feeds heartbeats and ticks into the Membership core, logs
// what the core decides, and answers the cluster's control requests. Control state
// (the volume catalogue, replica sets, leases) lives in the JetStream KV bucket
// `ballast-control`, which the coordinator creates on start; a NATS server without
// JetStream is refused with a clear error rather than discovered later.

import {
  BallastError,
  buckets,
  ErrorCode,
  type MessageOf,
  parseHeartbeatSubject,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import type { CommonConfig, ConfigOf, OptionSpecs, Service } from "@ballast/runtime";
import { Kvm } from "@nats-io/kv";
import {
  heartbeatTimeoutMsDefault,
  heartbeatTimeoutMsMax,
  heartbeatTimeoutMsMin,
  probeDeadlineMs,
} from "./constants.ts";
import { type Heartbeat, Membership, type MembershipEvent } from "./membership.ts";

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
} as const satisfies OptionSpecs;

type CoordinatorConfig = ConfigOf<typeof coordinatorOptions> & CommonConfig;
type StatusResult = ResultOf<"cluster.status.v1">;

export class Coordinator {
  private readonly membership: Membership;
  private tickTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly service: Service,
    private readonly config: CoordinatorConfig,
  ) {
    this.membership = new Membership({ heartbeatTimeoutMs: config.heartbeatTimeoutMs });
  }

  async start(): Promise<void> {
    await this.openControlStore();
    this.service.serve(
      subjects.heartbeat.pattern,
      { accept: ["heartbeat.v1"], traced: false },
      (heartbeat, context) => this.onHeartbeat(heartbeat, context.subject),
    );
    this.service.serve(
      subjects.coordinator.build(),
      { accept: ["cluster.status.v1"], queue: "coordinator" },
      (message) => {
        switch (message.type) {
          case "cluster.status.v1":
            return this.onClusterStatus(message);
          default: {
            const unreachable: never = message.type;
            throw new Error(`no handler for ${unreachable}`);
          }
        }
      },
    );
    this.service.serveInbox([], () => undefined);
    this.service.setDescription(() => ({
      heartbeatTimeoutMs: this.config.heartbeatTimeoutMs,
      members: this.membership.list().length,
    }));
    const tickMs = Math.max(50, Math.floor(this.config.heartbeatTimeoutMs / 4));
    this.tickTimer = setInterval(() => this.report(this.membership.tick(Date.now())), tickMs);
    this.service.onClose(() => clearInterval(this.tickTimer));
  }

  private async openControlStore(): Promise<void> {
    try {
      await new Kvm(this.service.bus.connection).create(buckets.control, { history: 8 });
    } catch (error) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `cannot open the control store (JetStream KV bucket ${buckets.control}): ${(error as Error).message}. Is JetStream enabled on the NATS server (nats-server -js)?`,
        { cause: error },
      );
    }
  }

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
          break;
        case "rejoined":
          logger.info({ member: event.member.id, silentMs: event.silentMs }, "node is back");
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
    // The volume catalogue arrives with the coordinator issue; until then there are none.
    return { coordinator: this.service.nodeId, generatedAtMs: nowMs, services, volumes: [] };
  }
}

export const coordinatorDefinition = {
  kind: "coordinator" as const,
  options: coordinatorOptions,
  async start(service: Service, config: CoordinatorConfig) {
    await new Coordinator(service, config).start();
  },
};
