// Traces and metrics on the whole stack (issue 15). One NBD write through the gateway
// must be one trace: the gateway's NBD request span at the root, the client request,
// the primary's handling, its replication to the secondary with the secondary's
// handling under it (the traceparent rides in the replica.notes.v1 headers), the
// journal syncs and the commit. And every service serves Prometheus metrics; after N
// writes through the client library, the primaries' per-volume write counters sum to N;
// the gateway's per-export series live while a connection holds the export.

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { BallastClient } from "@ballast/client";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { libnbdPython } from "../support/faults.ts";
import { type ReceivedSpan, startOtlpReceiver } from "../support/otlp-receiver.ts";

const run = promisify(execFile);
const mebibyte = 1024 * 1024;
let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
let cluster: TestCluster;
let nbdUrl: string;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    gateways: 1,
    nbdPortFirst: 0,
    metrics: true,
    // OTEL_BSP_SCHEDULE_DELAY (a standard variable the SDK reads): spans arrive in 0.2 s,
    // not the default 5 s.
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: "200" },
  });
  for (const name of ["traced", "counted"]) {
    await cluster.bus.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name,
      sizeBytes: 16 * mebibyte,
      partitionBytes: 8 * mebibyte,
      replicaCount: 2,
    });
  }
  const nbd = await waitFor("the gateway's NBD address", async () => {
    const result = await cluster.bus.request(subjects.node.build("gateway", "gateway-1"), {
      type: "node.info.v1",
    });
    return typeof result.details.nbd === "string" ? (result.details.nbd as string) : undefined;
  });
  nbdUrl = `${nbd}/traced`;
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  await receiver?.close();
});

/** The chain of spans from `span` up to its root (as far as the receiver has them). */
function ancestry(span: ReceivedSpan, spans: readonly ReceivedSpan[]): ReceivedSpan[] {
  const chain = [span];
  for (let at = span; at.parentSpanId !== ""; ) {
    const parent = spans.find((one) => one.spanId === at.parentSpanId);
    if (parent === undefined) break;
    chain.push(parent);
    at = parent;
  }
  return chain;
}

test("one NBD write is one trace from the gateway through the primary to the secondary", async () => {
  // nbdsh is `python3 -m nbd`, with the Python that has libnbd's bindings.
  await run(libnbdPython, ["-m", "nbd", "-u", nbdUrl, "-c", 'h.pwrite(b"\\x5a" * 4096, 0)'], {
    timeout: 30_000,
  });

  // The primary's handling first, so that on code without replication spans the test
  // fails where the gap is: the secondary's span is missing.
  // (The only write of the cluster so far.)
  const primaryHandle = await waitFor("the primary's handling", () =>
    receiver.spans.find(
      (s) => s.service === "ballast-headnode" && s.name === "handle volume.write.v1",
    ),
  );
  const inTrace = () => receiver.spans.filter((s) => s.traceId === primaryHandle.traceId);
  const secondaryHandle = await waitFor("the secondary's handling of the notes", () =>
    inTrace().find(
      (s) =>
        s.service === "ballast-headnode" &&
        s.name === "handle replica.notes.v1" &&
        s.instance !== primaryHandle.instance,
    ),
  );
  const root = await waitFor("the gateway's NBD write span, in the same trace", () =>
    inTrace().find((s) => s.service === "ballast-gateway" && s.name === "nbd write"),
  );
  expect(root.parentSpanId).toBe("");
  // Parented hop by hop up to the NBD request: secondary handle → replicate notes (on
  // the primary) → the primary's handling → the client's send → the NBD request.
  const chain = await waitFor("the secondary's chain up to the root", () => {
    const spans = inTrace();
    const found = ancestry(secondaryHandle, spans);
    return found[found.length - 1]?.spanId === root.spanId ? found : undefined;
  });
  expect(chain.map((s) => `${s.instance}:${s.name}`)).toEqual([
    `${secondaryHandle.instance}:handle replica.notes.v1`,
    `${primaryHandle.instance}:replicate notes`,
    `${primaryHandle.instance}:handle volume.write.v1`,
    "gateway-1:send volume.write.v1",
    "gateway-1:nbd write",
  ]);
  // The journal syncs of both replicas and the primary's commit are in the same trace.
  const syncs = await waitFor("a journal sync on each replica", () => {
    const found = inTrace().filter((s) => s.name === "journal sync");
    return new Set(found.map((s) => s.instance)).size === 2 ? found : undefined;
  });
  const secondarySync = syncs.find((s) => s.instance === secondaryHandle.instance);
  expect(secondarySync?.parentSpanId).toBe(secondaryHandle.spanId);
  const primarySync = syncs.find((s) => s.instance === primaryHandle.instance);
  expect(primarySync?.parentSpanId).toBe(primaryHandle.spanId);
  const commit = inTrace().find((s) => s.name === "commit");
  expect(commit?.parentSpanId).toBe(primaryHandle.spanId);

  // The flush that later carries the write's data to the sleds is a trace of its own (a
  // background job, after the write was answered) linked to the primary's handling of
  // the write; the sled writes nest under it.
  const flush = await waitFor("the primary's flush of the write, linked to it", () =>
    receiver.spans.find(
      (s) =>
        s.name === "flush chunk" &&
        s.instance === primaryHandle.instance &&
        s.links.some(
          (link) => link.traceId === primaryHandle.traceId && link.spanId === primaryHandle.spanId,
        ),
    ),
  );
  expect(flush.parentSpanId).toBe("");
  expect(flush.traceId).not.toBe(primaryHandle.traceId);
  await waitFor("a sled write under the flush", () =>
    receiver.spans.find(
      (s) =>
        s.traceId === flush.traceId &&
        s.parentSpanId === flush.spanId &&
        s.name === "send sled.chunk.write.v1",
    ),
  );
}, 60_000);

/** The value of every sample of `name` whose labels include `labels`, from a scrape. */
function samples(text: string, name: string, labels: Record<string, string>): number[] {
  const values: number[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const matches = Object.entries(labels).every(([key, value]) =>
      line.includes(`${key}="${value}"`),
    );
    if (matches) values.push(Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return values;
}

test("every service serves metrics, and the primaries count exactly the writes made", async () => {
  const ids = cluster.cluster.ids();
  const scrape = async (id: string) => {
    const url = cluster.cluster.metricsUrl(id);
    expect(url, `${id} has a metrics endpoint`).toBeDefined();
    const response = await fetch(url as string);
    expect(response.status).toBe(200);
    return response.text();
  };
  const sumOverHeadNodes = async () => {
    let sum = 0;
    for (const id of cluster.cluster.ids("headnode")) {
      for (const value of samples(await scrape(id), "ballast_headnode_writes_total", {
        volume: "counted",
      })) {
        sum += value;
      }
    }
    return sum;
  };
  const before = await sumOverHeadNodes();

  const writes = 37;
  const volume = await new BallastClient(cluster.bus).openVolume("counted");
  try {
    const data = new Uint8Array(4096).fill(0x33);
    // Spread over both partitions, one write at a time, none adjacent.
    for (let index = 0; index < writes; index++) {
      await volume.write((index * 2 * 4096 * 53) % (16 * mebibyte), data);
    }
  } finally {
    await volume.close();
  }

  // Counted when answered: the sum is exact once the replies are in.
  expect((await sumOverHeadNodes()) - before).toBe(writes);

  const texts = new Map<string, string>();
  for (const id of ids) texts.set(id, await scrape(id));
  // The gateway's series of an export live while a connection holds it: scraped from
  // the NBD client itself, between its write and its disconnect; gone once it has gone.
  const gatewayMetrics = cluster.cluster.metricsUrl("gateway-1") as string;
  const { stdout: whileConnected } = await run(
    libnbdPython,
    [
      "-m",
      "nbd",
      "-u",
      nbdUrl,
      "-c",
      `h.pwrite(b"\\x5a" * 4096, 0)
import urllib.request
print(urllib.request.urlopen(${JSON.stringify(gatewayMetrics)}).read().decode())`,
    ],
    { timeout: 30_000 },
  );
  expect(
    samples(whileConnected, "ballast_gateway_requests_total", {
      volume: "traced",
      operation: "write",
    }),
  ).toEqual([1]);
  await waitFor("the gateway's series of the export to go with its connection", async () =>
    (await scrape("gateway-1")).includes('volume="traced"') ? undefined : true,
  );
  for (const id of cluster.cluster.ids("sled")) {
    const text = texts.get(id) ?? "";
    expect(samples(text, "ballast_sled_capacity_bytes", {})[0]).toBeGreaterThan(0);
    expect(samples(text, "ballast_sled_used_bytes", {}).length).toBe(1);
  }
  const roles = cluster.cluster
    .ids("headnode")
    .flatMap((id) => samples(texts.get(id) ?? "", "ballast_replica_role", { role: "primary" }));
  // Two volumes of two partitions each: four primaries in all.
  expect(roles.reduce((a, b) => a + b, 0)).toBe(4);
  for (const id of cluster.cluster.ids("headnode")) {
    expect(texts.get(id)).toContain("ballast_headnode_journal_bytes_total");
    expect(texts.get(id)).toContain("ballast_replica_commit_lag_ops");
  }
  for (const id of cluster.cluster.ids("coordinator")) {
    expect(texts.get(id)).toBeDefined();
  }
}, 90_000);
