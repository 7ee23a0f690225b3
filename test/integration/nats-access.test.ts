// Access control on real processes (issue 15): every service runs as its own NATS role,
// a client-role connection does volume I/O but is refused publishing replication, a
// sled's inbox, a head node's inbox (control), a heartbeat, a head node's report and
// the control bucket's JetStream API, and an anonymous or wrongly authenticated connection is refused.

import { execFile, execFileSync } from "node:child_process";
import { lstat, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BallastClient } from "@ballast/client";
import {
  type BallastError,
  buckets,
  ErrorCode,
  encodeMessage,
  type Message,
  subjects,
} from "@ballast/protocol";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import {
  connectTestBus,
  nodeInbox,
  startTestCluster,
  type TestCluster,
  temporaryDirectory,
  testAccess,
  waitUntilHealthy,
} from "../support/cluster.ts";

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
      subjects.node.build("sled", "sled-1"),
      subjects.node.build("headnode", "head-1"),
      subjects.heartbeat.build("headnode", "head-9"),
      "$JS.API.STREAM.INFO.KV_ballast-control",
      "$KV.ballast-control.volume.access",
      // Head nodes' reports have a subject of their own that clients may not publish.
      subjects.coordinatorServices.build("headnode"),
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

    // Nor does the clients' coordinator subject take a head node's report: a client
    // cannot renew a primary's lease or claim a partition's progress.
    await expect(
      client.bus.request(subjects.coordinator.build(), {
        type: "headnode.report.v1",
        node: "head-1",
        primaries: [],
      }),
    ).rejects.toThrow(/refused a headnode.report.v1 message/);
    // A request to a sled fails instead of reaching it.
    await expect(
      client.bus.connection.request(subjects.node.build("sled", "sled-1"), junk, { timeout: 2000 }),
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

test("only the operator deletes, resizes or rolls back a volume, or deletes a snapshot", async () => {
  const coordinator = subjects.coordinator.build();
  await cluster.bus.request(coordinator, {
    type: "volume.create.v1",
    name: "doomed",
    sizeBytes: 8 * mebibyte,
    partitionBytes: 8 * mebibyte,
    replicaCount: 2,
  });
  const client = await connectTestBus(cluster.cluster.natsUrl, "client");
  try {
    // Taking a snapshot only adds: the client may.
    await client.bus.request(
      coordinator,
      { type: "snapshot.create.v1", volume: "doomed", name: "s1" },
      { deadlineMs: 30_000 },
    );
    const destructive: Message[] = [
      { type: "volume.delete.v1", name: "doomed" },
      { type: "volume.resize.v1", name: "doomed", sizeBytes: 4 * mebibyte, allowShrink: true },
      { type: "volume.rollback.v1", volume: "doomed", snapshot: "s1", force: true },
      { type: "snapshot.delete.v1", volume: "doomed", name: "s1" },
    ];
    for (const message of destructive) {
      // The coordinator takes none of them on the clients' subject...
      const onClients = await client.bus
        .request(coordinator, message as never)
        .catch((error: BallastError) => error);
      expect((onClients as BallastError).code, message.type).toBe(ErrorCode.UnexpectedMessageType);
      // ...and NATS refuses the client's publish on the admin subject, said at once as
      // PermissionDenied rather than waited out as a Timeout.
      const onAdmin = await client.bus
        .request(subjects.coordinatorAdmin.build(), message as never, { deadlineMs: 60_000 })
        .catch((error: BallastError) => error);
      expect((onAdmin as BallastError).code, message.type).toBe(ErrorCode.PermissionDenied);
      expect((onAdmin as BallastError).message).toContain(
        `permission denied: NATS does not let user client publish on ${subjects.coordinatorAdmin.build()}`,
      );
    }
    // Nothing was destroyed.
    const described = await client.bus.request(coordinator, {
      type: "volume.describe.v1",
      name: "doomed",
    });
    expect(described.sizeBytes).toBe(8 * mebibyte);
    const listed = await client.bus.request(coordinator, {
      type: "snapshot.list.v1",
      volume: "doomed",
    });
    expect(listed.snapshots.map((snapshot) => snapshot.name)).toEqual(["s1"]);

    // The CLI with the client's credentials says what it needs, and exits 1.
    const clientFile = join(cluster.dataDir, "credentials", "client.json");
    const asClient = {
      BALLAST_NATS_CREDS: clientFile,
      BALLAST_NATS_USER: "",
      BALLAST_NATS_PASSWORD: "",
    };
    const refused = await runCli(
      ["volume", "delete", "doomed", "--nats", cluster.cluster.natsUrl],
      asClient,
    );
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(
      "permission denied: volume delete needs the operator (admin) credentials",
    );
    expect(refused.stderr).toContain(`this command connected as user client (${clientFile})`);
    const snapshotRefused = await runCli(
      ["snapshot", "delete", "doomed", "s1", "--nats", cluster.cluster.natsUrl],
      asClient,
    );
    expect(snapshotRefused.code, snapshotRefused.stderr).toBe(1);
    expect(snapshotRefused.stderr).toContain(
      "permission denied: snapshot delete needs the operator (admin) credentials",
    );

    // The operator may, by the CLI and by the bus.
    const byOperator = await runCli(
      ["snapshot", "delete", "doomed", "s1", "--nats", cluster.cluster.natsUrl],
      { BALLAST_NATS_CREDS: join(cluster.dataDir, "credentials", "operator.json") },
    );
    expect(byOperator.code, byOperator.stderr).toBe(0);
    const deleted = await cluster.bus.request(subjects.coordinatorAdmin.build(), {
      type: "volume.delete.v1",
      name: "doomed",
    });
    expect(deleted.deleted).toBe(true);
  } finally {
    await client.close();
  }
});

test("a client cannot make the coordinator answer into the control bucket", async () => {
  // NATS checks a publisher's permission on the subject, not on the reply subject, and
  // the coordinator (which may write the control bucket) publishes the reply as itself.
  // It used to answer any reply subject: this overwrote the leader record (no
  // coordinator led again) and a volume's record (the catalogue unreadable).
  const kv = await new Kvm(cluster.bus.connection).open(buckets.control);
  const keys = ["leader", "volume.access"];
  // The leader renews its record every leaderRenewMs (a new revision each time), so the
  // leader key is compared by what it says (the same coordinator in the same term) and
  // the volume's by revision (nothing rewrites it here).
  const leaderOf = async () => JSON.parse((await kv.get("leader"))?.string() ?? "null");
  const revisions = async () => [await leaderOf(), (await kv.get("volume.access"))?.revision];
  const before = await revisions();
  expect(before[0]).toMatchObject({ coordinator: expect.any(String), term: expect.any(Number) });
  expect(before[1]).toBeDefined();
  const client = await connectTestBus(cluster.cluster.natsUrl, "client");
  try {
    const describe = encodeMessage({ type: "volume.describe.v1", name: "access" });
    for (const key of keys) {
      client.connection.publish(subjects.coordinator.build(), describe, {
        reply: `$KV.${buckets.control}.${key}`,
      });
    }
    await client.connection.flush();
    // A request after them on the same subject is handled after them: once it is
    // answered, neither injection is in flight.
    const listed = (await client.bus.request(subjects.coordinator.build(), {
      type: "volume.list.v1",
    })) as { volumes: { name: string }[] };
    expect(await revisions()).toEqual(before);
    // The coordinator says so, once: the second drop, within repliesRefusedLogIntervalMs,
    // is counted in the next line rather than logged alone.
    const log = join(cluster.dataDir, "logs", "coordinator-1.log");
    const dropped = async () =>
      (await readFile(log, "utf8"))
        .split("\n")
        .filter((line) => line.includes("dropped a request whose reply subject is not an inbox"))
        .length;
    await expect.poll(dropped, { timeout: 10_000 }).toBe(1);
    expect(listed.volumes.map((volume) => volume.name)).toContain("access");
  } finally {
    await client.close();
  }
}, 60_000);

test("a gateway cannot listen on a sled's or a head node's inbox, nor send replies of its own", async () => {
  // Gateway credentials (every `ballast nbd` user's) could subscribe to every node inbox
  // and publish on every _INBOX: a rogue answered a head node's link offer for sled-1
  // and acknowledged chunk writes without storing them.
  const gateway = await connectTestBus(cluster.cluster.natsUrl, "gateway");
  try {
    const refused: string[] = [];
    const watching = (async () => {
      for await (const status of gateway.connection.status()) {
        if (status.type === "error") refused.push(String(status.error));
      }
    })();
    const foreign = [nodeInbox(cluster.cluster, "sled-1"), nodeInbox(cluster.cluster, "head-1")];
    for (const subject of foreign) gateway.connection.subscribe(subject);
    // Its own kind's inboxes it may serve.
    gateway.connection.subscribe(subjects.node.build("gateway", "gateway-9"));
    gateway.connection.publish("_INBOX.forged.1", encodeMessage({ type: "cluster.status.v1" }));
    await gateway.connection.flush();
    await expect
      .poll(() => refused.join("\n"), { timeout: 5000 })
      .toMatch(/permissions violation for publish to "_INBOX\.forged\.1"/i);
    for (const subject of foreign) {
      expect(refused.join("\n")).toMatch(
        new RegExp(
          `permissions violation for subscription to "${subject.replaceAll(".", "\\.")}"`,
          "i",
        ),
      );
    }
    expect(refused.join("\n")).not.toContain("gateway-9");
    // The sled still answers a head node's kind of request, as itself.
    const info = await cluster.bus.request(nodeInbox(cluster.cluster, "sled-1"), {
      type: "node.info.v1",
    });
    expect(info.nodeId).toBe("sled-1");
    void watching;
  } finally {
    await gateway.close();
  }
}, 60_000);

test("a client reads only the client role's replies", async () => {
  // It could subscribe to _INBOX.>: other roles' replies, the coordinator's JetStream
  // traffic (the control bucket's records) among them.
  const client = await connectTestBus(cluster.cluster.natsUrl, "client");
  try {
    const refused: string[] = [];
    const watching = (async () => {
      for await (const status of client.connection.status()) {
        if (status.type === "error") refused.push(String(status.error));
      }
    })();
    for (const subject of ["_INBOX.>", "_INBOX.coordinator.>", "_INBOX.headnode.>"]) {
      client.connection.subscribe(subject);
    }
    await client.connection.flush();
    await expect
      .poll(
        () => refused.filter((error) => /permissions violation for subscription/i.test(error)),
        {
          timeout: 5000,
        },
      )
      .toHaveLength(3);
    // Its own requests are answered (on _INBOX.client.…), by nats.js's request and by
    // the bus's.
    const status = await client.connection.request(
      subjects.coordinator.build(),
      encodeMessage({ type: "volume.list.v1" }),
      { timeout: 10_000 },
    );
    expect(status.subject.startsWith("_INBOX.client.")).toBe(true);
    await client.bus.request(subjects.coordinator.build(), { type: "volume.list.v1" });
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

test("every directory and file the cluster made under its data directory is its owner's alone", async () => {
  // A write gives the head nodes journal segments; the sleds have their device files,
  // every node its identity and counters, the launcher its logs.
  const volume = await new BallastClient(cluster.bus).openVolume("access");
  await volume.write(0, new Uint8Array(4096).fill(0x33));
  await volume.close();
  const modes = new Map<string, string>();
  const walk = async (directory: string): Promise<void> => {
    for (const entry of await readdir(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name);
      const relative = path.slice(cluster.dataDir.length + 1);
      modes.set(relative, ((await lstat(path)).mode & 0o777).toString(8));
      // nats-server makes its JetStream store itself, with modes of its own choosing
      // (checked below to keep others out): inside our 0700 directory either way.
      if (entry.isDirectory() && entry.name !== "jetstream") await walk(path);
    }
  };
  await walk(cluster.dataDir);
  const kinds = [...modes.keys()].join(" ");
  expect(kinds).toMatch(/\blogs\/sled-1\.log\b/);
  expect(kinds).toMatch(/\bsled-1\/device-/);
  expect(kinds).toMatch(/\bhead-1\/identity\.json\b/);
  expect(kinds).toMatch(/\bhead-\d\/partitions\/[^ ]+\/0\/journal\/segment-\d+\.log\b/);
  const wrong: string[] = [];
  for (const [path, mode] of modes) {
    const entry = await lstat(join(cluster.dataDir, path));
    const expected = entry.isDirectory() ? "700" : "600";
    if (path.endsWith("jetstream")) {
      if ((Number.parseInt(mode, 8) & 0o007) !== 0) wrong.push(`${path} ${mode} (open to others)`);
    } else if (mode !== expected) wrong.push(`${path} ${mode}, not ${expected}`);
  }
  expect(wrong).toEqual([]);
});

/** A throwaway CA and a certificate for 127.0.0.1 signed by it (openssl). */
async function makeCertificates(directory: string) {
  const file = (name: string) => join(directory, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=ballast-test-ca",
    "-keyout",
    file("ca-key.pem"),
    "-out",
    file("ca.pem"),
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    file("server-key.pem"),
    "-out",
    file("server.csr"),
  );
  await writeFile(file("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    "x509",
    "-req",
    "-in",
    file("server.csr"),
    "-CA",
    file("ca.pem"),
    "-CAkey",
    file("ca-key.pem"),
    "-CAcreateserial",
    "-days",
    "1",
    "-out",
    file("server.pem"),
    "-extfile",
    file("ext.cnf"),
  );
  return { cert: file("server.pem"), key: file("server-key.pem"), ca: file("ca.pem") };
}

test("with TLS the services and a client with the CA connect over tls://; without it, not", async () => {
  const certificates = await temporaryDirectory("ballast-tls-");
  let tls: TestCluster | undefined;
  try {
    const natsTls = await makeCertificates(certificates.path);
    tls = await startTestCluster({ natsTls });
    const url = tls.cluster.natsUrl;
    expect(url).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    // The harness's bus got in with the CA, and the coordinator (over TLS) answered it.
    await waitUntilHealthy(tls.bus, ["coordinator-1"]);
    const { credentials } = testAccess("client");
    await expect(
      connect({
        servers: url,
        user: credentials!.user,
        pass: credentials!.password,
        reconnect: false,
        timeout: 3000,
      }),
    ).rejects.toThrow(/certificate/i);
  } finally {
    await tls?.stop();
    await certificates.remove();
  }
}, 60_000);

test("a service whose credentials NATS refuses says so on stderr and exits, without a stack", async () => {
  const directory = await temporaryDirectory();
  try {
    const sledMain = join(process.cwd(), "services/sled/src/main.ts");
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ["--import", "tsx", sledMain, "--id", "sled-9", "--data-dir", directory.path],
        {
          env: {
            ...process.env,
            BALLAST_NATS: firstUrl,
            BALLAST_NATS_USER: "sled",
            BALLAST_NATS_PASSWORD: "not-the-password",
            BALLAST_LOG_LEVEL: "silent",
          },
          timeout: 60_000,
        },
        (error, _stdout, stderr) =>
          resolve({ code: error === null ? 0 : (error.code as number | null), stderr }),
      );
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^ballast sled: cannot connect to NATS at \S+ within \d+ ms: .*authorization/i,
    );
    expect(result.stderr).not.toMatch(/\n\s+at /);
  } finally {
    await directory.remove();
  }
});
