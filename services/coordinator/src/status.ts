// The answer to `cluster.status.v1`: every member heard of, each volume described, and
// on request (`probe`) a probe of each healthy node's `node.info.v1`, each live sled's
// capacity (`sled.stat.v1`) with cluster totals, and what each volume stores on sleds
// (volumes.ts). Membership measures on the monotonic clock; what is shown is converted
// to wall-clock times. Summing the sleds' answers is pure (`capacityOf`, `totalsOf`).
//
// Failure model: a probe or stat that fails or times out is shown as that node's
// probeError or capacityError, and the totals count only the sleds that answered (and
// say how many did not); it never fails the status request.

import { type MessageOf, type ResultOf, subjects } from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import { now } from "./clock.ts";
import { probeDeadlineMs } from "./constants.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { Volumes } from "./volumes.ts";

type StatusResult = ResultOf<"cluster.status.v1">;
type ServiceEntry = StatusResult["services"][number];
export type SledCapacity = NonNullable<ServiceEntry["capacity"]>;
export type ClusterCapacity = NonNullable<StatusResult["capacity"]>;
type SledStat = ResultOf<"sled.stat.v1">;

/** A sled's capacity as status shows it: its totals, and which devices have failed. */
export function capacityOf(stat: SledStat): SledCapacity {
  return {
    capacityBytes: stat.capacityBytes,
    usedBytes: stat.usedBytes,
    freeBytes: stat.freeBytes,
    chunks: stat.chunks,
    blobs: stat.blobs,
    devices: stat.devices.length,
    failedDevices: stat.devices
      .filter((device) => device.failed)
      .map((device) => ({ device: device.device, path: device.path })),
  };
}

/** Cluster totals over the live sleds: those with a capacity are summed, the rest counted. */
export function totalsOf(services: readonly ServiceEntry[]): ClusterCapacity {
  const totals: ClusterCapacity = {
    sleds: 0,
    sledsUnanswered: 0,
    capacityBytes: 0,
    usedBytes: 0,
    freeBytes: 0,
    chunks: 0,
    blobs: 0,
    failedDevices: 0,
  };
  for (const entry of services) {
    if (entry.kind !== "sled" || !entry.healthy) continue;
    const capacity = entry.capacity;
    if (capacity === undefined) {
      totals.sledsUnanswered++;
      continue;
    }
    totals.sleds++;
    totals.capacityBytes += capacity.capacityBytes;
    totals.usedBytes += capacity.usedBytes;
    totals.freeBytes += capacity.freeBytes;
    totals.chunks += capacity.chunks;
    totals.blobs += capacity.blobs;
    totals.failedDevices += capacity.failedDevices.length;
  }
  return totals;
}

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
    if (!message.probe) {
      const volumes = (await this.volumes.list()).volumes;
      return { coordinator: this.service.nodeId, generatedAtMs: wallMs, services, volumes };
    }
    const live = services.filter((entry) => entry.healthy);
    const [, , listed] = await Promise.all([
      Promise.all(live.map((entry) => this.probe(entry))),
      Promise.all(live.filter((entry) => entry.kind === "sled").map((entry) => this.stat(entry))),
      this.volumes.list({ stored: true }),
    ]);
    return {
      coordinator: this.service.nodeId,
      generatedAtMs: wallMs,
      services,
      volumes: listed.volumes,
      capacity: totalsOf(services),
    };
  }

  private async probe(entry: ServiceEntry): Promise<void> {
    try {
      entry.info = await this.service.bus.request(
        subjects.node.build(entry.id),
        { type: "node.info.v1" },
        { deadlineMs: probeDeadlineMs },
      );
    } catch (error) {
      entry.probeError = (error as Error).message;
    }
  }

  private async stat(entry: ServiceEntry): Promise<void> {
    try {
      const stat = await this.service.bus.request(
        subjects.node.build(entry.id),
        { type: "sled.stat.v1" },
        { deadlineMs: probeDeadlineMs },
      );
      entry.capacity = capacityOf(stat);
    } catch (error) {
      entry.capacityError = (error as Error).message;
    }
  }
}
