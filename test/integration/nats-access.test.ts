// Access control on real processes (issue 15): every service runs as its own NATS role,
// a client-role connection does volume I/O but is refused publishing replication, a
// sled's inbox, a head node's inbox (control), a heartbeat and the control bucket's
// JetStream API, and an anonymous or wrongly authenticated connection is refused.

import { stat } from "node:fs/promises";
import { join } from "node:path";
import { BallastClient } from "@ballast/client";
import { encodeMessage, subjects } from "@ballast/protocol";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, test } from "vitest";
import { connectTestBus, startTestCluster, type TestCluster } from "../support/cluster.ts";

const mebibyte = 1024 * 1024;
let cluster: TestCluster;
/** The first server's URL: a bare connect should not fail over. */
let firstUrl: string;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2 });
  firstUrl = cluster.cluster.natsUrl.split(",")[0]!;
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "access",
    sizeBytes: 8 * mebibyte,
    partitionBytes: 8 * mebibyte,
    replicaCount: 2,
  });
}, 60_000);
afterAll(() => cluster?.stop());

test("a client does volume I/O and is refused replication, sled and control subjects", async () => {
  const client = await connectTestBus(cluster.cluster.natsUrl, "client");
  try {
    const volume = await new BallastClient(client.bus).openVolume("access");
    const data = new Uint8Array(4096).fill(0x5a);
    await volume.write(8192, data);
    expect(await volume.read(8192, 4096)).toEqual(data);

    const refused: string[] = [];
    const watching = (async () => {
      for await (const status of client.bus.connection.status()) {
        if (status.type === "error") refused.push(String(status.error));
      }
    })();
    const forbidden = [
      subjects.replica.build("access", 0, "head-1"),
      subjects.node.build("sled-1"),
      subjects.node.build("head-1"),
      subjects.heartbeat.build("headnode", "head-9"),
      "$JS.API.STREAM.INFO.KV_ballast-control",
      "$KV.ballast-control.volume.access",
    ];
    const junk = encodeMessage({ type: "cluster.status.v1" });
    for (const subject of forbidden) client.bus.connection.publish(subject, junk);
    await client.bus.connection.flush();
    await expect
      .poll(() => forbidden.filter((s) => !refused.some((e) => e.includes(`"${s}"`))), {
        timeout: 5000,
      })
      .toEqual([]);
    for (const error of refused) expect(error).toMatch(/permissions violation for publish/i);

    // A request to a sled fails instead of reaching it.
    await expect(
      client.bus.connection.request(subjects.node.build("sled-1"), junk, { timeout: 2000 }),
    ).rejects.toThrow(/permission|timeout|no responders/i);
    // Nor may a client listen to replication.
    const before = refused.length;
    client.bus.connection.subscribe(subjects.replica.build("access", 0, "head-2"));
    await client.bus.connection.flush();
    await expect
      .poll(() => refused.slice(before).join(" "), { timeout: 5000 })
      .toMatch(/permissions violation for subscription/i);
    // The connection survives the refusals and still does I/O.
    expect(await volume.read(8192, 4096)).toEqual(data);
    void watching;
  } finally {
    await client.close();
  }
}, 60_000);

test("an anonymous connection and a wrong password are refused", async () => {
  await expect(connect({ servers: firstUrl, reconnect: false, timeout: 3000 })).rejects.toThrow(
    /authorization/i,
  );
  await expect(
    connect({
      servers: firstUrl,
      user: "client",
      pass: "not-the-password",
      reconnect: false,
      timeout: 3000,
    }),
  ).rejects.toThrow(/authorization/i);
});

test("the credentials and the server config are readable by their owner only", async () => {
  const files = [
    join(cluster.dataDir, "credentials", "client.json"),
    join(cluster.dataDir, "credentials", "coordinator.json"),
    join(cluster.dataDir, "nats", "nats-server.conf"),
  ];
  for (const file of files) expect(((await stat(file)).mode & 0o777).toString(8)).toBe("600");
  expect(((await stat(join(cluster.dataDir, "credentials"))).mode & 0o777).toString(8)).toBe("700");
});
