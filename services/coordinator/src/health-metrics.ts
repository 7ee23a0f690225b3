// What the leader knows of the data's safety, as Prometheus gauges: partitions short of
// live voters, partitions judged unavailable, chunks short of copies (as the primaries
// last reported them), sleds out of service, sleds in service that are not alive
// (their copies count but cannot be read), and sleds back on another data directory
// whose copies the primaries have not all audited yet (refilling). `ballast status --check` decides on the same
// facts (apps/cli health.ts); these let an operator who watches only metrics alert on
// them. The figures are a pure function of the tenure, membership and sled records
// (`clusterFigures`); the gauges read them at each scrape.
//
// Only the leader knows them: the gauges live in a meter group (runtime metrics.ts) that
// the leader acquires when it starts leading and releases when it stops, so a coordinator
// that no longer leads exports none of them rather than its last figures for ever (the
// SDK's own observable gauges keep the last value they saw). A scrape of the leader while
// its tenure has not yet fenced the catalogue observes nothing either.

import { limits } from "@ballast/protocol";
import { type Meter, meterGroupsOf } from "@ballast/runtime";
import { idOfVolume } from "./catalogue.ts";
import { volumeIdOf } from "./decisions.ts";
import { partitionKey } from "./leases.ts";
import type { SledRecord } from "./sleds.ts";
import type { Tenure } from "./tenure.ts";
import { failedField } from "./volumes.ts";

/** The meter group key of the leader's gauges. */
export const leaderMeterGroup = "leader";

export interface ClusterFigures {
  partitions: number;
  /** Fewer live voters that have not failed than the volume's replica count. */
  partitionsShortOfVoters: number;
  /** The leader's last decision found no member that can serve it. */
  partitionsUnavailable: number;
  /** No report from the record's primary (its short count is unknown). */
  partitionsUnreported: number;
  chunksShortOfCopies: number;
  sledsOut: number;
  /** In service (their copies count) but not alive. */
  sledsUnreachable: number;
  /** Back on another data directory, not yet audited by every primary (sleds.ts). */
  sledsRefilling: number;
}

export function clusterFigures(
  tenure: Pick<Tenure, "records" | "volumes" | "leases" | "unavailable" | "failedJournals">,
  aliveHeadNodes: ReadonlySet<string>,
  aliveSleds: ReadonlySet<string>,
  sleds: readonly (Pick<SledRecord, "id" | "state"> & { refilling?: unknown })[],
): ClusterFigures {
  const figures: ClusterFigures = {
    partitions: 0,
    partitionsShortOfVoters: 0,
    partitionsUnavailable: 0,
    partitionsUnreported: 0,
    chunksShortOfCopies: 0,
    sledsOut: 0,
    sledsUnreachable: 0,
    sledsRefilling: 0,
  };
  for (const { value: record } of tenure.records.values()) {
    const volume = tenure.volumes.get(record.volume);
    if (volume === undefined || idOfVolume(volume) !== volumeIdOf(record)) continue;
    figures.partitions++;
    const key = partitionKey(record);
    const report = tenure.leases.lastReportOf(record);
    // The voters describe names failed (volumes.ts): alive as services, serving nothing.
    const failed = new Set(
      failedField(record, report, tenure.leases, tenure.failedJournals.get(key)).failed,
    );
    const voters = [record.primary, ...record.secondaries].filter(
      (node) => aliveHeadNodes.has(node) && !failed.has(node),
    );
    if (voters.length < volume.replicaCount) figures.partitionsShortOfVoters++;
    if (tenure.unavailable.has(key)) figures.partitionsUnavailable++;
    if (report === undefined) figures.partitionsUnreported++;
    else figures.chunksShortOfCopies += report.chunksShortOfCopies ?? 0;
  }
  for (const sled of sleds) {
    if (sled.state === "out") figures.sledsOut++;
    else if (!aliveSleds.has(sled.id)) figures.sledsUnreachable++;
    // An out sled's copies count for nothing already: its audit waits for its return.
    if (sled.state === "in" && sled.refilling !== undefined) figures.sledsRefilling++;
  }
  return figures;
}

/**
 * Registers the leader's gauges on `meter` (a group's: see the module header), reading
 * `figures()` at each scrape; undefined observes nothing.
 */
export function observeClusterFigures(
  meter: Meter,
  figures: () => ClusterFigures | undefined,
): void {
  // One callback per gauge (meter groups offer no batch callbacks): each reads the
  // figures afresh, a pass over the leader's records per gauge and scrape.
  const from = (gauge: ReturnType<Meter["createObservableGauge"]>, name: keyof ClusterFigures) =>
    gauge.addCallback((result) => {
      const now = figures();
      if (now !== undefined) result.observe(now[name]);
    });
  from(
    meter.createObservableGauge("ballast_cluster_partitions", {
      description: "partitions of the volumes listed (leader only)",
    }),
    "partitions",
  );
  from(
    meter.createObservableGauge("ballast_cluster_partitions_short_of_voters", {
      description:
        "partitions with fewer live, unfailed voting members than replicas (leader only)",
    }),
    "partitionsShortOfVoters",
  );
  from(
    meter.createObservableGauge("ballast_cluster_partitions_unavailable", {
      description: "partitions no member can serve, as the leader last decided (leader only)",
    }),
    "partitionsUnavailable",
  );
  from(
    meter.createObservableGauge("ballast_cluster_partitions_unreported", {
      description: "partitions whose primary has not reported to this leader (leader only)",
    }),
    "partitionsUnreported",
  );
  from(
    meter.createObservableGauge("ballast_cluster_chunks_short_of_copies", {
      description: `chunks with fewer than ${limits.chunkCopies} copies on sleds in service, as primaries last reported (leader only)`,
    }),
    "chunksShortOfCopies",
  );
  from(
    meter.createObservableGauge("ballast_cluster_sleds_out", {
      description: "sleds declared out of service (leader only)",
    }),
    "sledsOut",
  );
  from(
    meter.createObservableGauge("ballast_cluster_sleds_unreachable", {
      description:
        "sleds in service that are not alive: their copies count but cannot be read (leader only)",
    }),
    "sledsUnreachable",
  );
  from(
    meter.createObservableGauge("ballast_cluster_sleds_refilling", {
      description:
        "sleds back on another data directory whose copies not every primary has audited yet (leader only)",
    }),
    "sledsRefilling",
  );
}

/** The leader's gauges while it leads: `start` when leading begins, `stop` when it ends. */
export class LeaderGauges {
  private held = false;

  constructor(
    private readonly meter: Meter,
    private readonly figures: () => ClusterFigures | undefined,
  ) {}

  start(): void {
    if (this.held) return;
    this.held = true;
    observeClusterFigures(meterGroupsOf(this.meter).acquire(leaderMeterGroup), this.figures);
  }

  stop(): void {
    if (!this.held) return;
    this.held = false;
    meterGroupsOf(this.meter).release(leaderMeterGroup);
  }
}
