// Support for integration tests: real nats-server and real service processes in a
// temporary directory, and a client bus to talk to them. Every address is loopback and
// every cluster is stopped by the test that started it.
//
// NATS access: each service runs as its own role (LocalCluster hands it its file). The
// test process itself is the operator: every cluster of this test process shares one
// set of passwords, and BALLAST_NATS_USER/BALLAST_NATS_PASSWORD name the operator's, so
// that the test bus, in-process commands and `ballast` subprocesses started with
// `--nats URL` get in. Tests of the access model connect with the role they exercise
// (clusterAccess / connectTestBus with a role).

import { access, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type CredentialName,
  LocalCluster,
  type LocalClusterOptions,
  randomPassword,
  routeUser,
} from "@ballast/cli";
import { type NatsRole, natsRoles, subjects } from "@ballast/protocol";
import { Bus, connectNats, createLogger, type NatsAccess, startTracing } from "@ballast/runtime";

/** The inbox of service `id` of a local cluster: the subject carries the service's kind. */
export function nodeInbox(cluster: LocalCluster, id: string): string {
  const record = cluster.records().find((candidate) => candidate.id === id);
  if (record === undefined) throw new Error(`no service ${JSON.stringify(id)} in this cluster`);
  return subjects.node.build(record.kind, id);
}

/** The passwords of every cluster this test process starts (made once per process). */
export const testPasswords = Object.fromEntries(
  [...natsRoles, routeUser].map((name) => [name, randomPassword()]),
) as Record<CredentialName, string>;

/** How a process with `role` reaches a cluster started by this test process. */
export function testAccess(role: NatsRole): NatsAccess {
  return { credentials: { user: role, password: testPasswords[role] } };
}

process.env.BALLAST_NATS_USER = "operator";
process.env.BALLAST_NATS_PASSWORD = testPasswords.operator;
delete process.env.BALLAST_NATS_CREDS;

/**
 * For tests: fast membership (beats every 200 ms, dead after 1.5 s of silence), and
 * small sled devices (2 × 64 MiB) so that a machine with little free disk still runs
 * the suite; tests that need other sizes set their own.
 */
export const testEnv = {
  BALLAST_HEARTBEAT_INTERVAL_MS: "200",
  BALLAST_HEARTBEAT_TIMEOUT_MS: "1500",
  BALLAST_LOG_LEVEL: "debug",
  BALLAST_SLED_DEVICES: "2",
  BALLAST_SLED_DEVICE_BYTES: String(64 * 1024 * 1024),
};

export async function temporaryDirectory(prefix = "ballast-test-"): Promise<{
  path: string;
  remove(): Promise<void>;
}> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Whether `path` exists (any kind of file), without throwing. */
export async function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export interface TestCluster {
  cluster: LocalCluster;
  bus: Bus;
  dataDir: string;
  stop(): Promise<void>;
}

export async function startTestCluster(
  options: Partial<Omit<LocalClusterOptions, "dataDir">> = {},
): Promise<TestCluster> {
  const directory = await temporaryDirectory();
  const cluster = await LocalCluster.start({
    dataDir: directory.path,
    coordinators: options.coordinators ?? 1,
    headNodes: options.headNodes ?? 0,
    sleds: options.sleds ?? 0,
    ...options,
    natsPasswords: testPasswords,
    env: { ...testEnv, ...options.env },
  });
  // A start that fails after the processes began (a bus that cannot connect, a
  // service never healthy: under load, past the hook's timeout) stops them: otherwise
  // they ran on after the test file, beside every later one.
  let client: Awaited<ReturnType<typeof connectTestBus>> | undefined;
  try {
    client = await connectTestBus(cluster.natsUrl, "operator", options.natsTls?.ca);
    await waitUntilHealthy(client.bus, cluster.ids());
  } catch (error) {
    await client?.close();
    await cluster.stop().catch(() => undefined);
    await directory.remove().catch(() => undefined);
    throw error;
  }
  const started = client;
  return {
    cluster,
    bus: started.bus,
    dataDir: directory.path,
    async stop() {
      await started.close();
      // BALLAST_TEST_KEEP_DATA=1 keeps logs and data for a look after a failure, from a
      // graceful stop. Otherwise the directory goes next, so the processes are killed:
      // a graceful stop took 0.4 to 0.5 s of every test file, for nothing any test reads.
      const keep = Boolean(process.env.BALLAST_TEST_KEEP_DATA);
      await cluster.stop({ kill: !keep });
      if (keep) process.stderr.write(`kept ${directory.path}\n`);
      else await directory.remove();
    },
  };
}

/**
 * A bus to the cluster as `role` (the operator, with full access, unless told), trusting
 * `caFile` when the cluster runs TLS.
 */
export async function connectTestBus(
  natsUrl: string,
  role: NatsRole = "operator",
  caFile?: string,
) {
  const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
  const tracing = startTracing({ serviceName: "ballast-test", instanceId: "test" });
  const connection = await connectNats({
    servers: natsUrl,
    name: `test-${role}`,
    logger,
    access: { ...testAccess(role), ...(caFile === undefined ? {} : { caFile }) },
  });
  return {
    bus: new Bus(connection, tracing.tracer),
    connection,
    async close() {
      await connection.drain().catch(() => undefined);
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
}

/** Waits until the coordinator reports every id healthy. */
export async function waitUntilHealthy(bus: Bus, ids: readonly string[], timeoutMs = 20_000) {
  return waitFor(
    `${ids.join(", ")} to be healthy`,
    async () => {
      const status = await bus.request(
        subjects.coordinator.build(),
        { type: "cluster.status.v1" },
        { deadlineMs: 1000 },
      );
      const healthy = new Set(status.services.filter((s) => s.healthy).map((s) => s.id));
      return ids.every((id) => healthy.has(id)) ? status : undefined;
    },
    timeoutMs,
    200,
  );
}

/**
 * For tests that count a sled's objects or bytes exactly: waits until the leading
 * coordinator has left its control store's mark on each of `sleds` (coordinator
 * store-marks.ts: read and left once per sled process), then deletes the marks. A sled
 * restarted afterwards is marked again.
 */
export async function removeStoreMarks(test: TestCluster, sleds = test.cluster.ids("sled")) {
  for (const sled of sleds) {
    const subject = subjects.node.build("sled", sled);
    const marks = await waitFor(
      `the control store's mark on ${sled}`,
      async () => {
        const listed = await test.bus.request(subject, {
          type: "sled.blob.list.v1",
          prefix: "control-store/",
        });
        return listed.blobs.length > 0 ? listed.blobs : undefined;
      },
      20_000,
      100,
    );
    for (const mark of marks) {
      await test.bus.request(subject, { type: "sled.blob.delete.v1", key: mark.key });
    }
  }
}

/**
 * For tests that count a sled's objects or bytes exactly across a volume's create and
 * delete: deletes the catalogue-sequence marks each create leaves on the sleds
 * (coordinator store-marks.ts), which stay after the volume is gone.
 */
export async function removeSequenceMarks(test: TestCluster, sleds = test.cluster.ids("sled")) {
  for (const sled of sleds) {
    const subject = subjects.node.build("sled", sled);
    const listed = await test.bus.request(subject, {
      type: "sled.blob.list.v1",
      prefix: "catalogue-sequence/",
    });
    for (const mark of listed.blobs) {
      await test.bus.request(subject, { type: "sled.blob.delete.v1", key: mark.key });
    }
  }
}
