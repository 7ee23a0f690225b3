// The leader's gauges of the data's safety (health-metrics.ts): the figures as a pure
// function of a tenure, membership and sled records (unit: a tenure with a real lease
// book fed real reports), and the gauges on a real meter group that go when leading
// ends (the process's real telemetry, scraped over HTTP).

import { createServer } from "node:net";
import { startTelemetry } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import type { PartitionRecord } from "../src/decisions.ts";
import { clusterFigures, LeaderGauges } from "../src/health-metrics.ts";
import { partitionKey } from "../src/leases.ts";
import { newTenure } from "../src/tenure.ts";

const volume = { name: "vol", sizeBytes: 2, replicaCount: 2, partitionBytes: 1, createdAtMs: 1 };

function record(partition: number, extra: Partial<PartitionRecord> = {}): PartitionRecord {
  return {
    volume: "vol",
    volumeId: "vol",
    partition,
    partitionStart: partition,
    partitionBytes: 1,
    epoch: 1,
    primary: "head-1",
    secondaries: ["head-2"],
    term: 1,
    ...extra,
  };
}

function tenureWith(records: PartitionRecord[]) {
  const tenure = newTenure({ term: 1, tenure: 1 }, 0);
  tenure.ready = true;
  tenure.volumes.set("vol", volume as never);
  records.forEach((value, revision) => {
    tenure.records.set(partitionKey(value), { value, revision });
  });
  return tenure;
}

const primaryReport = (partition: number, short: number, failed?: true) => ({
  volume: "vol",
  volumeId: "vol",
  partition,
  epoch: 1,
  session: 1,
  commitOpNum: 1,
  tailCommitted: true,
  followers: [],
  chunksShortOfCopies: short,
  ...(failed === undefined ? {} : { failed }),
});

describe("clusterFigures (unit)", () => {
  test("counts partitions short of voters, unavailable, unreported, chunks short and sleds", () => {
    const records = [record(0), record(1, { secondaries: [] }), record(2)];
    const tenure = tenureWith(records);
    const alive = new Set(["head-1", "head-2"]);
    tenure.leases.onNodeReport(
      { node: "head-1", primaries: [primaryReport(0, 3), primaryReport(1, 0)] },
      (_, partition) => records[partition],
      alive,
      1,
    );
    tenure.unavailable.set(partitionKey(records[2]!), "primary head-1 is dead");
    const sleds = [
      { id: "sled-1", state: "in" as const },
      { id: "sled-2", state: "in" as const },
      { id: "sled-3", state: "out" as const },
      {
        id: "sled-4",
        state: "in" as const,
        refilling: { sinceMs: 1, partitions: 1, volumes: ["vol"] },
      },
    ];
    expect(clusterFigures(tenure, alive, new Set(["sled-1"]), sleds)).toEqual({
      partitions: 3,
      partitionsShortOfVoters: 1,
      partitionsUnavailable: 1,
      partitionsUnreported: 1,
      chunksShortOfCopies: 3,
      sledsOut: 1,
      sledsUnreachable: 2,
      sledsRefilling: 1,
    });
    // head-2 dies: partitions 0 and 2 lose a voter too.
    expect(
      clusterFigures(tenure, new Set(["head-1"]), new Set(["sled-1", "sled-2", "sled-4"]), sleds),
    ).toMatchObject({ partitionsShortOfVoters: 3, sledsUnreachable: 0 });
    // A primary reporting itself failed is no voter, alive or not.
    tenure.leases.onNodeReport(
      { node: "head-1", primaries: [primaryReport(0, 0, true), primaryReport(1, 0)] },
      (_, partition) => records[partition],
      alive,
      2,
    );
    expect(clusterFigures(tenure, alive, new Set(), [])).toMatchObject({
      partitionsShortOfVoters: 2,
      chunksShortOfCopies: 0,
    });
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address !== null ? address.port : 0;
}

test("the gauges are scraped while leading, and none once leading ends", async () => {
  const telemetry = await startTelemetry({
    metricsPort: await freePort(),
    serviceName: "coordinator",
    instanceId: "coordinator-1",
  });
  try {
    const scrape = async () => (await fetch(telemetry.metricsUrl as string)).text();
    const gauges = new LeaderGauges(telemetry.meter, () => ({
      partitions: 4,
      partitionsShortOfVoters: 1,
      partitionsUnavailable: 0,
      partitionsUnreported: 0,
      chunksShortOfCopies: 7,
      sledsOut: 0,
      sledsUnreachable: 1,
      sledsRefilling: 1,
    }));
    gauges.start();
    const leading = await scrape();
    expect(leading).toMatch(/^ballast_cluster_chunks_short_of_copies(\{[^}]*\})? 7$/m);
    expect(leading).toMatch(/^ballast_cluster_sleds_unreachable(\{[^}]*\})? 1$/m);
    expect(leading).toMatch(/^ballast_cluster_sleds_refilling(\{[^}]*\})? 1$/m);
    gauges.stop();
    // A coordinator that no longer leads says nothing, not its last figures.
    expect(await scrape()).not.toMatch(/^ballast_cluster_/m);
    gauges.start();
    expect(await scrape()).toMatch(/^ballast_cluster_partitions(\{[^}]*\})? 4$/m);
    gauges.stop();
  } finally {
    await telemetry.shutdown();
  }
});
