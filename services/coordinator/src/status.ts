// The answer to `cluster.status.v1`: every member heard of, each volume described, and
// on request a probe of each healthy node's `node.info.v1`. Membership measures on the
// monotonic clock; what is shown is converted to wall-clock times.
//
// Failure model: a probe that fails or times out is shown as that node's probeError;
// it never fails the status request.

import { type MessageOf, type ResultOf, subjects } from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import { now } from "./clock.ts";
import { probeDeadlineMs } from "./constants.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { Volumes } from "./volumes.ts";

type StatusResult = ResultOf<"cluster.status.v1">;

export class Status {
  constructor(
    private readonly service: Pick<Service, "bus" | "nodeId">,
    private readonly heartbeats: Pick<Heartbeats, "declareDeaths" | "list">,
    private readonly volumes: Pick<Volumes, "list">,
  ) {}

  async onClusterStatus(message: MessageOf<"cluster.status.v1">): Promise<StatusResult> {
    const nowMs = now();
    const wallMs = Date.now();
    this.heartbeats.declareDeaths(nowMs);
    const services: StatusResult["services"] = this.heartbeats.list().map((member) => {
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
    const volumes = (await this.volumes.list()).volumes;
    return { coordinator: this.service.nodeId, generatedAtMs: wallMs, services, volumes };
  }
}
