// The answer to `cluster.status.v1`: every member heard of, each volume described, and
// on request (`probe`) a probe of each healthy node's `node.info.v1`, each live sled's
// capacity (`sled.stat.v1`) with cluster totals, each live head node's slow sleds (from
// its node info), and what each volume stores on sleds (volumes.ts). Membership
// measures on the monotonic clock; what is shown is converted to wall-clock times (a
// head node's slow sleds are durations as of its answer). Summing the sleds' answers is
// pure (`capacityOf`, `totalsOf`).
//
// It also shows every sled record (in or out of service, sled-records.ts) and, per
// volume, what its primaries last reported: chunks short of copies (re-replication to
// do) and, when reports carry them, the bytes of chunks and of those still referred to
// (the rest reclaimable). Sums cover the partitions whose primary has reported to this
// leader (`partitionsReported` of `partitions`).
//
// Failure model: a probe or stat that fails or times out is shown as that node's
// probeError or capacityError, and the totals count only the sleds that answered (and
// say how many did not); it never fails the status request.

import { type MessageOf, type ResultOf, subjects } from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import { now } from "./clock.ts";
import { probeDeadlineMs, statusPartitionsMax } from "./constants.ts";
import type { PartitionRecord } from "./decisions.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { SledRecords } from "./sled-records.ts";
import type { Tenure } from "./tenure.ts";
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
    ...(stat.damagedObjects === undefined ? {} : { damagedObjects: stat.damagedObjects }),
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

type Report = MessageOf<"headnode.report.v1">["primaries"][number];

/** What a volume's primaries last reported, summed over its partitions. */
export interface VolumeReported {
  partitions: number;
  partitionsReported: number;
  chunksShortOfCopies?: number;
  chunkBytes?: number;
  liveBytes?: number;
  reclaimableBytes?: number;
}

/**
 * Per snapshot id, the bytes only it refers to, summed over the partitions whose reports
 * give it, and how many partitions that is.
 */
export function snapshotBytesOf(
  reports: readonly (Report | undefined)[],
): Map<string, { uniqueBytes: number; partitions: number }> {
  const summed = new Map<string, { uniqueBytes: number; partitions: number }>();
  for (const report of reports) {
    for (const { snapshot, uniqueBytes } of report?.snapshotBytes ?? []) {
      const sum = summed.get(snapshot) ?? { uniqueBytes: 0, partitions: 0 };
      sum.uniqueBytes += uniqueBytes;
      sum.partitions += 1;
      summed.set(snapshot, sum);
    }
  }
  return summed;
}

/** What volume `name`'s primaries last reported to this tenure, by partition index. */
export function reportsOfVolume(
  tenure: Tenure,
  name: string,
  partitions: number,
): (Report | undefined)[] {
  const records = new Map<number, PartitionRecord>();
  for (const entry of tenure.records.values()) {
    if (entry.value.volume === name) records.set(entry.value.partition, entry.value);
  }
  return Array.from({ length: partitions }, (_, index) => {
    const record = records.get(index);
    return record === undefined ? undefined : tenure.leases.lastReportOf(record);
  });
}

/** Sums the primaries' reports of one volume's partitions (undefined: not reported). */
export function reportedOf(reports: readonly (Report | undefined)[]): VolumeReported {
  const summed: VolumeReported = { partitions: reports.length, partitionsReported: 0 };
  for (const report of reports) {
    if (report === undefined) continue;
    summed.partitionsReported++;
    if (report.chunksShortOfCopies !== undefined) {
      summed.chunksShortOfCopies = (summed.chunksShortOfCopies ?? 0) + report.chunksShortOfCopies;
    }
    if (report.chunkBytes !== undefined && report.liveBytes !== undefined) {
      summed.chunkBytes = (summed.chunkBytes ?? 0) + report.chunkBytes;
      summed.liveBytes = (summed.liveBytes ?? 0) + report.liveBytes;
      summed.reclaimableBytes = summed.chunkBytes - summed.liveBytes;
    }
  }
  return summed;
}

/**
 * The volumes with their partitions while `statusPartitionsMax` lasts, in order; each
 * one that no longer fits without them (`partitions` empty, `partitionCount`, `partitionsOmitted`),
 * so that the answer stays within a message however many partitions the cluster holds.
 * What the primaries reported is summed before, so it covers every partition.
 */
export function withinBudget<V extends { partitions: unknown[] }>(
  volumes: V[],
  budget: number = statusPartitionsMax,
): (V & { partitionCount: number; partitionsOmitted?: true })[] {
  let left = budget;
  return volumes.map((volume) => {
    const partitionCount = volume.partitions.length;
    if (partitionCount <= left) {
      left -= partitionCount;
      return { ...volume, partitionCount };
    }
    return { ...volume, partitions: [], partitionCount, partitionsOmitted: true as const };
  });
}

export class Status {
  constructor(
    private readonly service: Pick<Service, "bus" | "nodeId">,
    private readonly heartbeats: Pick<Heartbeats, "declareDeaths" | "list">,
    private readonly volumes: Pick<Volumes, "states">,
    private readonly sleds: Pick<SledRecords, "list">,
    /** The control store's marks on the sleds (store-marks.ts); absent in some tests. */
    private readonly controlStore?: () => NonNullable<StatusResult["controlStore"]>,
  ) {}

  async onClusterStatus(
    message: MessageOf<"cluster.status.v1">,
    tenure?: Tenure,
  ): Promise<StatusResult> {
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
    const sleds = this.sleds.list();
    const sledsField = {
      ...(sleds === undefined ? {} : { sleds }),
      ...(this.controlStore === undefined ? {} : { controlStore: this.controlStore() }),
    };
    if (!message.probe) {
      const volumes = withinBudget(this.withReports(await this.volumes.states(), tenure));
      return {
        coordinator: this.service.nodeId,
        generatedAtMs: wallMs,
        services,
        volumes,
        ...sledsField,
      };
    }
    const live = services.filter((entry) => entry.healthy);
    const [, , listed] = await Promise.all([
      Promise.all(live.map((entry) => this.probe(entry))),
      Promise.all(live.filter((entry) => entry.kind === "sled").map((entry) => this.stat(entry))),
      this.volumes.states({ stored: true }),
    ]);
    return {
      coordinator: this.service.nodeId,
      generatedAtMs: wallMs,
      services,
      volumes: withinBudget(this.withReports(listed, tenure)),
      capacity: totalsOf(services),
      ...sledsField,
    };
  }

  /** Each volume with what its primaries last reported to this leader (`reported`). */
  private withReports<V extends { name: string; partitions: { partition: number }[] }>(
    volumes: V[],
    tenure: Tenure | undefined,
  ): (V & { reported?: VolumeReported })[] {
    if (tenure === undefined) return volumes;
    const records = new Map<string, PartitionRecord>();
    for (const entry of tenure.records.values()) {
      records.set(`${entry.value.volume}/${entry.value.partition}`, entry.value);
    }
    return volumes.map((volume) => {
      const reports = volume.partitions.map((partition) => {
        const record = records.get(`${volume.name}/${partition.partition}`);
        return record === undefined ? undefined : tenure.leases.lastReportOf(record);
      });
      return { ...volume, reported: reportedOf(reports) };
    });
  }

  private async probe(entry: ServiceEntry): Promise<void> {
    try {
      const info = await this.service.bus.request(
        subjects.node.build(entry.kind, entry.id),
        { type: "node.info.v1" },
        { deadlineMs: probeDeadlineMs },
      );
      entry.info = info;
      // A head node's slow sleds, checked where its answer was decoded: on its entry, so
      // that scripts and `ballast status` need not know the shape of `info`.
      if (info.details.slowSleds !== undefined) entry.slowSleds = info.details.slowSleds;
    } catch (error) {
      entry.probeError = (error as Error).message;
    }
  }

  private async stat(entry: ServiceEntry): Promise<void> {
    try {
      const stat = await this.service.bus.request(
        subjects.node.build(entry.kind, entry.id),
        { type: "sled.stat.v1" },
        { deadlineMs: probeDeadlineMs },
      );
      entry.capacity = capacityOf(stat);
    } catch (error) {
      entry.capacityError = (error as Error).message;
    }
  }
}
