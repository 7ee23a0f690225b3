// A volume's series on a head node go with it: a real partition host (real journal in a
// temporary directory, fake service and sleds, as in partition-host-report.test.ts) on
// the process's real telemetry (the OpenTelemetry SDK and its Prometheus exporter,
// scraped over HTTP). The host's requests, bytes, latency, journal and replica gauges
// are scraped while it serves; once it closes, as when its volume is deleted, none of
// them is in the next scrape (the SDK alone would keep them for the process's life). A
// failed replica's role gauge says `failed`, not the `idle` of an unconfigured one.

import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Service, startTelemetry, type Telemetry } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { PartitionHost } from "../src/partition-host.ts";
import type { Reply } from "../src/replica/effects.ts";
import type { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

let dataDir: string;
let telemetry: Telemetry;
let now = 0;

const fakeSleds = {
  writeChunk: async (_owner: unknown, _id: string, _data: Uint8Array, sleds: readonly string[]) =>
    sleds.slice(0, 2),
  putBlob: async (_key: string, _data: Uint8Array, sleds: readonly string[]) => sleds.slice(0, 2),
} as unknown as SledClient;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address !== null ? address.port : 0;
}

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-host-metrics-"));
  telemetry = await startTelemetry({
    metricsPort: await freePort(),
    serviceName: "headnode",
    instanceId: "head-1",
  });
});

afterEach(async () => {
  await telemetry.shutdown();
  await rm(dataDir, { recursive: true, force: true });
});

async function openHost(volume: string, partition: number): Promise<PartitionHost> {
  const service = Object.assign(new FakeService(), { meter: telemetry.meter });
  const host = await PartitionHost.open(
    service as unknown as Service,
    join(dataDir, `${volume}-${partition}`),
    { volume, volumeId: volume, partition, partitionStart: 0, partitionBytes: 1 << 20 },
    fakeSleds,
    1,
    undefined,
    { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9, checkpointIntervalOps: 1e9 },
  );
  host.attach({
    get now() {
      return now;
    },
    wake: () => undefined,
  });
  host.configure({ epoch: 1, primary: "head-1", secondaries: [] }, ["sled-1", "sled-2"]);
  return host;
}

/** Writes a block through `host` as its primary, ticking it until answered. */
async function write(host: PartitionHost): Promise<void> {
  let answered: Reply | undefined;
  void host
    .request((requestId) => ({
      kind: "write",
      requestId,
      epoch: 1,
      writes: [{ offset: 0, data: new Uint8Array(4096).fill(1) }],
    }))
    .then((reply) => {
      answered = reply;
    });
  for (let tick = 0; tick < 2000 && answered === undefined; tick++) {
    now++;
    host.tick(now);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  expect(answered?.kind).toBe("mutation");
}

async function scrape(): Promise<string> {
  return (await fetch(telemetry.metricsUrl as string)).text();
}

/** The names of the metrics with a series labelled `volume`. */
function seriesOf(text: string, volume: string): string[] {
  const names = text
    .split("\n")
    .filter((line) => line.includes(`volume="${volume}"`))
    .map((line) => line.slice(0, line.indexOf("{")));
  return [...new Set(names)].sort();
}

test("a closed partition host's volume leaves no series in the next scrape; another volume's stay", async () => {
  const gone = await openHost("gone", 0);
  const kept = await openHost("kept", 0);
  try {
    await write(gone);
    await write(kept);
    const served = seriesOf(await scrape(), "gone");
    expect(served).toEqual(
      expect.arrayContaining([
        "ballast_headnode_requests_total",
        "ballast_headnode_write_bytes_total",
        "ballast_headnode_request_seconds_bucket",
        "ballast_headnode_journal_bytes_total",
        "ballast_headnode_journal_sync_seconds_bucket",
        "ballast_headnode_requests_in_flight",
        "ballast_replica_role",
        "ballast_replica_commit_lag_ops",
      ]),
    );
    expect(seriesOf(await scrape(), "kept")).toEqual(served);

    await gone.close();
    const text = await scrape();
    expect(seriesOf(text, "gone")).toEqual([]);
    expect(seriesOf(text, "kept")).toEqual(served);
  } finally {
    await gone.close();
    await kept.close();
  }
});

test("a volume's series stay while another of its partitions is hosted, and go with the last; a closed replica's gauges go at once", async () => {
  const first = await openHost("vol", 0);
  const second = await openHost("vol", 1);
  try {
    await write(first);
    await write(second);
    await first.close();
    const text = await scrape();
    expect(text).toMatch(/^ballast_headnode_requests_total\{volume="vol",kind="write"[^}]*\} 2$/m);
    expect(text).not.toMatch(/^ballast_replica_role\{volume="vol",partition="0"/m);
    expect(text).toMatch(/^ballast_replica_role\{volume="vol",partition="1"/m);
    await second.close();
    expect(seriesOf(await scrape(), "vol")).toEqual([]);
  } finally {
    await first.close();
    await second.close();
  }
});

test("a failed replica's role gauge says failed, not idle, while it is hosted", async () => {
  const host = await openHost("sick", 0);
  try {
    await write(host);
    expect(await scrape()).toMatch(
      /^ballast_replica_role\{volume="sick",partition="0",role="primary"[^}]*\} 1$/m,
    );
    // The core throws at its next tick: the replica latches failed (partition-host.ts).
    vi.spyOn(
      (host as unknown as { ticks: { tick(now: number): unknown } }).ticks,
      "tick",
    ).mockImplementation(() => {
      throw new Error("a core that threw");
    });
    host.tick(++now);
    expect(host.failed).toBeDefined();
    const text = await scrape();
    expect(text).toMatch(
      /^ballast_replica_role\{volume="sick",partition="0",role="failed"[^}]*\} 1$/m,
    );
    expect(text).not.toMatch(/^ballast_replica_role\{volume="sick",partition="0",role="idle"/m);
  } finally {
    vi.restoreAllMocks();
    await host.close();
  }
});
