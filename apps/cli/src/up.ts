// `ballast up`: starts a local cluster in the foreground and keeps it running until
// Ctrl-C or SIGTERM, then stops every child in order and leaves no process behind.
// Running it again on the same data directory brings back the same cluster; after a
// launcher that died without stopping its children, it first stops what that one left
// running (services, then nats-servers), so that no old process runs beside a new one.

import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import {
  DataDirInUseError,
  type DataDirLock,
  lockDataDir,
  openToOthersMode,
  openToOthersWarning,
  constants as runtimeConstants,
} from "@ballast/runtime";
import {
  clusterFilePath,
  type NatsServerRecord,
  readClusterFile,
  type ServiceRecord,
  writeClusterFile,
} from "./cluster-file.ts";
import { connectCli } from "./connect.ts";
import { childStopGraceMs, clusterReadyTimeoutMs } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { LocalCluster } from "./local-cluster.ts";
import { stopStaleNatsServer } from "./nats-server.ts";
import { nbdEndpointLines } from "./nbd-endpoints.ts";
import { isRunningWith, stopStaleProcess } from "./processes.ts";
import { type ClusterStatus, fetchStatus, formatDuration } from "./status.ts";

export interface UpOptions {
  dataDir: string;
  nats?: string | undefined;
  /** How many routed nats-servers to start (ignored with `nats`). */
  natsCluster?: number;
  /** TLS for NATS with these PEM files. */
  natsTls?: { cert: string; key: string; ca: string } | undefined;
  /** The cap on each started nats-server's JetStream store (natsFileStoreBytesDefault if absent). */
  natsStoreBytes?: number;
  coordinators: number;
  headNodes: number;
  sleds: number;
  gateways: number;
  nbdPort: number;
  demo: boolean;
  otlpEndpoint?: string | undefined;
  logLevel?: string | undefined;
  print: (line: string) => void;
}

export async function up(options: UpOptions): Promise<number> {
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: runtimeConstants.dataDirectoryMode });
  const openMode = await openToOthersMode(dataDir);
  if (openMode !== undefined) {
    // Left as the operator set it (a group may be let in on purpose); others never should.
    options.print(`! ${openToOthersWarning(dataDir, openMode)}`);
  }
  const previous = await readClusterFile(dataDir);
  const launcherLock = await claimLauncher(dataDir, previous?.launcherPid);
  try {
    return await upHolding(dataDir, previous, options);
  } finally {
    await launcherLock.release();
  }
}

/**
 * Makes this process the launcher of `dataDir`, or fails naming the one that is. The
 * claim is the data directory's lock (data-dir-lock.ts; each service locks its own
 * subdirectory), so a launcher that died holds nothing, and a pid the kernel has since
 * given to another program, or a dead launcher not yet reaped, is no launcher. A
 * launcher of a build before this lock holds none: the cluster file's pid counts while
 * its command line is still a `ballast up` one.
 */
export async function claimLauncher(
  dataDir: string,
  previousLauncherPid: number | undefined,
): Promise<DataDirLock> {
  let lock: DataDirLock;
  try {
    lock = await lockDataDir(dataDir, { kind: "launcher", nodeId: "ballast-up" });
  } catch (error) {
    if (error instanceof DataDirInUseError) throw alreadyRunning(dataDir, error.holder?.pid);
    throw error;
  }
  if (
    previousLauncherPid !== undefined &&
    previousLauncherPid !== process.pid &&
    (await isRunningWith(previousLauncherPid, (argv) => argv.includes("up")))
  ) {
    await lock.release();
    throw alreadyRunning(dataDir, previousLauncherPid);
  }
  return lock;
}

function alreadyRunning(dataDir: string, pid: number | undefined): CliError {
  return new CliError(
    exitCodes.failed,
    `a cluster is already running from ${dataDir} (launcher pid ${pid ?? "unknown"}); stop it first, or use another --data-dir`,
  );
}

async function upHolding(
  dataDir: string,
  previous: Awaited<ReturnType<typeof readClusterFile>>,
  options: UpOptions,
): Promise<number> {
  // Services first, while their NATS may still be up to drain to, as at every stop.
  for (const service of await stopStaleServices(previous?.services ?? [])) {
    options.print(`stopped ${service.id} pid ${service.pid} left by an earlier run`);
  }
  const previousServers =
    previous?.natsServers ?? (previous?.natsServer === undefined ? [] : [previous.natsServer]);
  for (const server of previousServers) {
    const stopped = await stopStaleNatsServer(server.pid, server.config);
    if (stopped) options.print(`stopped nats-server pid ${server.pid} left by an earlier run`);
  }
  if (options.nats !== undefined && options.natsCluster !== undefined && options.natsCluster > 1) {
    throw new CliError(exitCodes.usage, "--nats-cluster starts servers; it cannot go with --nats");
  }

  const env: Record<string, string> = {};
  if (options.otlpEndpoint !== undefined) env.OTEL_EXPORTER_OTLP_ENDPOINT = options.otlpEndpoint;
  if (options.logLevel !== undefined) env.BALLAST_LOG_LEVEL = options.logLevel;

  const startedAtMs = Date.now();
  let stopping = false;
  const cluster = await LocalCluster.start({
    dataDir,
    ...(options.nats === undefined ? {} : { natsUrl: options.nats }),
    ...(previousServers.length === 0
      ? {}
      : {
          natsPortsPreferred: previousServers.map((server) => ({
            port: server.port,
            ...(server.routePort === undefined ? {} : { routePort: server.routePort }),
          })),
        }),
    natsCluster: options.natsCluster ?? 1,
    ...(options.natsTls === undefined ? {} : { natsTls: options.natsTls }),
    ...(options.natsStoreBytes === undefined ? {} : { natsStoreBytes: options.natsStoreBytes }),
    coordinators: options.coordinators,
    headNodes: options.headNodes,
    sleds: options.sleds,
    gateways: options.gateways,
    nbdPortFirst: options.nbdPort,
    env,
    metrics: true,
    tieToParent: true,
    onUnexpectedExit(service, code) {
      if (!stopping) {
        options.print(
          `! ${service.id} (pid ${service.pid}) exited with ${code}; its log: ${service.log}`,
        );
      }
    },
  });
  const natsServers: NatsServerRecord[] = cluster.natsServers.flatMap((server) =>
    server === undefined
      ? []
      : [
          {
            pid: server.pid,
            port: server.port,
            ...(server.routePort === undefined ? {} : { routePort: server.routePort }),
            config: server.configPath,
            log: server.logPath,
            storeDir: server.storeDir,
          },
        ],
  );
  const clientCredentials = cluster.credentialsFile("client");
  const save = (extra: { stoppedAtMs?: number; running: boolean }) =>
    writeClusterFile(dataDir, {
      natsUrl: cluster.natsUrl,
      ...(natsServers[0] === undefined ? {} : { natsServer: natsServers[0], natsServers }),
      ...(clientCredentials === undefined ? {} : { credentialsDir: dirname(clientCredentials) }),
      ...(options.natsTls === undefined ? {} : { natsCa: options.natsTls.ca }),
      ...(extra.running ? { launcherPid: process.pid } : {}),
      startedAtMs,
      ...(extra.stoppedAtMs === undefined ? {} : { stoppedAtMs: extra.stoppedAtMs }),
      services: cluster.records(),
    });
  await save({ running: true });

  const stopSignal = new Promise<string>((resolveSignal) => {
    process.once("SIGINT", () => resolveSignal("SIGINT"));
    process.once("SIGTERM", () => resolveSignal("SIGTERM"));
  });

  options.print(`Ballast is starting from ${dataDir}`);
  if (natsServers.length === 0) options.print(`  nats        ${cluster.natsUrl} (external)`);
  for (const server of natsServers) {
    options.print(
      `  nats        ${options.natsTls === undefined ? "nats" : "tls"}://127.0.0.1:${server.port} (pid ${server.pid}, store ${server.storeDir}, log ${server.log})`,
    );
  }
  if (clientCredentials !== undefined) {
    options.print(
      `  credentials ${dirname(clientCredentials)} (one file per role, mode 0600; hand out client.json)`,
    );
  }
  for (const record of cluster.records()) {
    options.print(`  ${record.id.padEnd(14)}pid ${String(record.pid).padEnd(8)}log ${record.log}`);
    const metrics = cluster.metricsUrl(record.id);
    if (metrics !== undefined) options.print(`  ${"".padEnd(14)}metrics ${metrics}`);
  }
  options.print(`  cluster file ${clusterFilePath(dataDir)}`);

  const readiness = waitUntilHealthy(cluster, options.print);
  const first = await Promise.race([readiness.then(() => undefined), stopSignal]);
  if (first === undefined) {
    options.print(`ready in ${formatDuration(Date.now() - startedAtMs)}. In another shell, try:`);
    options.print(
      `  npx ballast status${options.dataDir === "./.ballast" ? "" : ` --data-dir ${options.dataDir}`}`,
    );
    options.print("  npx ballast status --json");
    if (options.demo) await createDemoVolume(cluster, options.print);
    for (const line of nbdEndpointLines({
      env: process.env,
      nbdPortFirst: options.nbdPort,
      gateways: options.gateways,
      exportName: options.demo ? "demo" : "<volume>",
    })) {
      options.print(line);
    }
    options.print("Press Ctrl-C to stop the cluster.");
  }
  const reason = first ?? (await stopSignal);
  stopping = true;
  options.print(`${reason}: stopping services, then NATS…`);
  await cluster.stop();
  await save({ running: false, stoppedAtMs: Date.now() });
  options.print("stopped; no Ballast process is left running.");
  return exitCodes.ok;
}

/**
 * Stops the services of `records` (an earlier run's cluster file) that its launcher left
 * running when it died (SIGKILL, a crash), in parallel; the ones stopped. They would
 * otherwise run beside the new ones, and hold their data directories so that the new
 * ones could not start (data-dir-lock.ts). A pid is signalled only while its command
 * line still names that service's id and data directory: never one the kernel reused.
 * Services usually stop by themselves once their launcher is gone (BALLAST_PARENT_PID),
 * but only at their next check, and may be part way through a long start or stop.
 */
export async function stopStaleServices(
  records: readonly ServiceRecord[],
  graceMs = childStopGraceMs,
): Promise<ServiceRecord[]> {
  const stopped = await Promise.all(
    records.map((record) =>
      stopStaleProcess(
        record.pid,
        (argv) =>
          followedBy(argv, "--id", record.id) && followedBy(argv, "--data-dir", record.dataDir),
        graceMs,
      ),
    ),
  );
  return records.filter((_, index) => stopped[index]);
}

/** Whether `flag` appears in `argv` with `value` as the next argument. */
function followedBy(argv: readonly string[], flag: string, value: string): boolean {
  return argv.some((argument, index) => argument === flag && argv[index + 1] === value);
}

/** `--demo`: a 1 GiB volume named demo with two replicas, unless it exists already. */
async function createDemoVolume(cluster: LocalCluster, print: (line: string) => void) {
  const client = await connectCli({
    natsUrl: cluster.natsUrl,
    source: "ballast up",
    access: cluster.natsAccess("client"),
  });
  try {
    await client.bus.request(
      subjects.coordinator.build(),
      { type: "volume.create.v1", name: "demo", sizeBytes: 2 ** 30, replicaCount: 2 },
      { deadlineMs: 15_000 },
    );
    print("created the demo volume: 1 GiB, two replicas (npx ballast volume describe demo)");
  } catch (error) {
    if (error instanceof BallastError && error.code === ErrorCode.AlreadyExists) {
      print("the demo volume is here from an earlier run (npx ballast volume describe demo)");
    } else {
      print(`! could not create the demo volume: ${(error as Error).message}`);
    }
  } finally {
    await client.close();
  }
}

async function waitUntilHealthy(cluster: LocalCluster, print: (line: string) => void) {
  const expected = new Set(cluster.ids());
  const deadline = Date.now() + clusterReadyTimeoutMs;
  const client = await connectCli({
    natsUrl: cluster.natsUrl,
    source: "ballast up",
    access: cluster.natsAccess("client"),
  });
  try {
    let last: ClusterStatus | undefined;
    while (Date.now() < deadline) {
      try {
        last = await fetchStatus(client.bus, cluster.natsUrl);
        const healthy = last.services.filter(
          (service) => service.healthy && expected.has(service.id),
        );
        if (healthy.length === expected.size) return;
      } catch {
        // The coordinator may not be up yet.
      }
      await new Promise((resolveWait) => setTimeout(resolveWait, 250));
    }
    const seen = new Set(
      last?.services.filter((service) => service.healthy).map((service) => service.id),
    );
    const missing = [...expected].filter((id) => !seen.has(id));
    print(
      `! not every service is healthy after ${clusterReadyTimeoutMs} ms: missing ${missing.join(", ")}; see their logs`,
    );
  } finally {
    await client.close();
  }
}
