// A whole Ballast cluster on one machine, as separate processes: nats-server (unless an
// external one is given), coordinators, head nodes and sleds, each with its own data
// directory and log file under one root. `ballast up` runs one; the integration tests
// run them too, and use `kill` and `restart` to crash and revive single services.
// Node ids are stable (`head-1`, `sled-2`, …), so starting again on the same root
// brings back the same nodes with the same state.
//
// NATS access: a cluster that starts its own NATS makes one user per role (credentials
// under `credentials/`, see credentials.ts) and gives each service the file of its role
// only; anonymous connections are refused. With `natsCluster: 3` it runs three routed
// nats-servers on loopback and creates the control bucket with three replicas before
// the coordinators open it, so the catalogue survives the loss of one server; services
// get every URL and fail over. With an external NATS (`natsUrl`) the services inherit
// the launcher's BALLAST_NATS_* variables instead.
//
// A nats-server restart (after killNatsServer, or after one died) takes the same port
// and store or fails: it never starts on another port, and a start that fails leaves no
// server behind (nats-server.ts), so there is never a second server on one store.

import type { ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  buckets,
  type NatsRole,
  natsRoles,
  permissionsOf,
  type ServiceKind,
} from "@ballast/protocol";
import {
  connectNats,
  createLogger,
  type NatsAccess,
  type NatsCredentials,
  constants as runtimeConstants,
} from "@ballast/runtime";
import { Kvm } from "@nats-io/kv";
import type { ServiceRecord } from "./cluster-file.ts";
import {
  controlBucketHistory,
  natsClusterReadyTimeoutMs,
  natsClusterSizeMax,
} from "./constants.ts";
import {
  type CredentialName,
  credentialsFile,
  ensureCredentials,
  routeUser,
} from "./credentials.ts";
import {
  freePort,
  type NatsServerOptions,
  type NatsTlsFiles,
  natsRestartReadyTimeoutMs,
  type RunningNatsServer,
  startNatsServer,
} from "./nats-server.ts";
import { exited, isRunning, killChild, spawnChild, stopChild } from "./processes.ts";
import {
  repositoryRoot,
  type ServiceCommands,
  type ServiceRunner,
  serviceCommands,
  serviceRunner,
} from "./service-bundles.ts";

export interface LocalClusterOptions {
  dataDir: string;
  /** Use this NATS server instead of starting one. */
  natsUrl?: string;
  /** Port to prefer for a nats-server this cluster starts (the first, in a NATS cluster). */
  natsPortPreferred?: number;
  /** Client and route ports to prefer per server of a NATS cluster (from cluster.json). */
  natsPortsPreferred?: { port: number; routePort?: number }[];
  /** How many routed nats-servers to run (1 by default; 3 survives losing one). */
  natsCluster?: number;
  /** TLS for NATS client connections with these PEM files. */
  natsTls?: NatsTlsFiles;
  /** The cap on each started nats-server's JetStream store (natsFileStoreBytesDefault if absent). */
  natsStoreBytes?: number;
  /** Passwords to use instead of random ones (tests share one set across clusters). */
  natsPasswords?: Partial<Record<CredentialName, string>>;
  coordinators: number;
  headNodes: number;
  sleds: number;
  /** NBD gateways (none unless asked for). */
  gateways?: number;
  /** gateway-N listens on this port plus N - 1; 0 lets each pick a free port. */
  nbdPortFirst?: number;
  /** Extra environment for every service (log level, OTLP endpoint, intervals). */
  env?: Record<string, string>;
  /**
   * Give every service a Prometheus endpoint on a free loopback port (BALLAST_METRICS_PORT),
   * kept across restarts; see `metricsUrl`. Off: no service serves metrics.
   */
  metrics?: boolean;
  /**
   * How services run: from bundles or through tsx (service-bundles.ts); by default as
   * BALLAST_SERVICE_RUNNER says, else from bundles.
   */
  runner?: ServiceRunner;
  /** Make services stop by themselves if this process dies (the launcher does). */
  tieToParent?: boolean;
  /** Called when a service exits without being asked to. */
  onUnexpectedExit?: (service: ServiceRecord, code: number | string) => void;
}

interface Managed {
  record: ServiceRecord;
  child: ChildProcess | undefined;
  stopping: boolean;
}

const idPrefix: Record<ServiceKind, string> = {
  coordinator: "coordinator",
  headnode: "head",
  sled: "sled",
  gateway: "gateway",
};

/** How one nats-server of this cluster is started (again, after a kill). */
type NatsServerSpec = NatsServerOptions & { portPreferred: number };

export class LocalCluster {
  readonly dataDir: string;
  /** Every server's URL, comma-separated (clients fail over between them). */
  readonly natsUrl: string;
  private readonly nats: (RunningNatsServer | undefined)[];
  private readonly natsSpecs: NatsServerSpec[];
  private readonly credentials: Record<CredentialName, NatsCredentials> | undefined;
  private readonly services = new Map<string, Managed>();
  private readonly options: LocalClusterOptions;
  /** How each kind of service is run; restarts run what the cluster started with. */
  private readonly commands: ServiceCommands;
  /** nats-servers being restarted now (a second start on one store must never begin). */
  private readonly natsRestarting = new Set<number>();
  /** Each service's metrics port, when `metrics` is on. */
  private readonly metricsPorts = new Map<string, number>();

  private constructor(
    options: LocalClusterOptions,
    natsUrl: string,
    natsServers: RunningNatsServer[],
    natsSpecs: NatsServerSpec[],
    credentials: Record<CredentialName, NatsCredentials> | undefined,
    commands: ServiceCommands,
  ) {
    this.options = options;
    this.commands = commands;
    this.dataDir = resolve(options.dataDir);
    this.natsUrl = natsUrl;
    this.nats = natsServers;
    this.natsSpecs = natsSpecs;
    this.credentials = credentials;
  }

  /** The (first) nats-server this cluster started, the current one after a restart. */
  get natsServer(): RunningNatsServer | undefined {
    return this.nats[0];
  }

  /** Every nats-server this cluster started, by index; undefined while one is killed. */
  get natsServers(): readonly (RunningNatsServer | undefined)[] {
    return this.nats;
  }

  /** The credentials file of a role, when this cluster made credentials. */
  credentialsFile(role: NatsRole): string | undefined {
    return this.credentials === undefined ? undefined : credentialsFile(this.dataDir, role);
  }

  /** How a process with `role` reaches this cluster's NATS (for connectNats). */
  natsAccess(role: NatsRole): NatsAccess {
    return {
      ...(this.credentials === undefined ? {} : { credentials: this.credentials[role] }),
      ...(this.options.natsTls === undefined ? {} : { caFile: this.options.natsTls.ca }),
    };
  }

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    // First: a build that fails (or a bad BALLAST_SERVICE_RUNNER) leaves nothing started.
    const commands = await serviceCommands(options.runner ?? serviceRunner());
    const dataDir = resolve(options.dataDir);
    await mkdir(join(dataDir, "logs"), {
      recursive: true,
      mode: runtimeConstants.dataDirectoryMode,
    });
    const servers: RunningNatsServer[] = [];
    const specs: NatsServerSpec[] = [];
    let credentials: Record<CredentialName, NatsCredentials> | undefined;
    let natsUrl = options.natsUrl;
    if (natsUrl === undefined) {
      credentials = await ensureCredentials(dataDir, options.natsPasswords);
      specs.push(...(await natsServerSpecs(dataDir, options, credentials)));
      try {
        // In a NATS cluster every server must be up before any can elect a leader.
        for (const spec of specs) {
          const server = await startNatsServer(spec);
          servers.push(server);
          // A first start may have taken another port than the spec's (it was taken
          // meanwhile); restarts must come back on the one the services use.
          spec.portPreferred = server.port;
        }
      } catch (error) {
        await Promise.all(servers.map((server) => server.stop()));
        throw error;
      }
      natsUrl = servers.map((server) => server.url).join(",");
    }
    const cluster = new LocalCluster(options, natsUrl, servers, specs, credentials, commands);
    try {
      if (servers.length > 1) await cluster.createReplicatedControlBucket();
      const counts: [ServiceKind, number][] = [
        ["coordinator", options.coordinators],
        ["sled", options.sleds],
        ["headnode", options.headNodes],
        ["gateway", options.gateways ?? 0],
      ];
      for (const [kind, count] of counts) {
        for (let index = 1; index <= count; index++) {
          cluster.add(kind, `${idPrefix[kind]}-${index}`);
        }
      }
      if (options.metrics === true) {
        const taken = new Set<number>();
        for (const id of cluster.services.keys()) {
          let port = await freePort();
          while (taken.has(port)) port = await freePort();
          taken.add(port);
          cluster.metricsPorts.set(id, port);
        }
      }
      for (const id of cluster.services.keys()) cluster.spawn(id);
    } catch (error) {
      // Nothing this start began may outlive it: not the nats-servers, not a service.
      await cluster.stop().catch(() => undefined);
      throw error;
    }
    return cluster;
  }

  /** Where Prometheus scrapes service `id`, when the cluster serves metrics. */
  metricsUrl(id: string): string | undefined {
    const port = this.metricsPorts.get(id);
    return port === undefined ? undefined : `http://127.0.0.1:${port}/metrics`;
  }

  /** Every service with its current pid. */
  records(): ServiceRecord[] {
    return [...this.services.values()].map((managed) => ({ ...managed.record }));
  }

  ids(kind?: ServiceKind): string[] {
    return this.records()
      .filter((record) => kind === undefined || record.kind === kind)
      .map((record) => record.id);
  }

  pid(id: string): number {
    return this.managed(id).record.pid;
  }

  /** Sends a signal to one service (SIGKILL to crash it) and waits for it to exit. */
  async kill(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<number | string> {
    const managed = this.managed(id);
    const child = managed.child;
    if (child === undefined) throw new Error(`${id} is not running`);
    managed.stopping = true;
    const gone = exited(child);
    child.kill(signal);
    return gone;
  }

  /**
   * Starts a service again (after kill) with the same id and data directory; `env` adds
   * to the cluster's environment for this start only (a test's new boot id, say).
   */
  restart(id: string, env: Record<string, string> = {}): void {
    const managed = this.managed(id);
    if (isRunning(managed.child)) {
      throw new Error(`${id} is still running (pid ${managed.record.pid})`);
    }
    this.spawn(id, env);
  }

  /** Sends a signal to one service without waiting (SIGSTOP, SIGCONT, SIGUSR2). */
  signal(id: string, signal: NodeJS.Signals): void {
    const child = this.managed(id).child;
    if (!isRunning(child)) {
      throw new Error(`${id} is not running`);
    }
    child.kill(signal);
  }

  /** Whether a service's process is alive (it may be stopped by SIGSTOP). */
  isRunning(id: string): boolean {
    return isRunning(this.managed(id).child);
  }

  /**
   * Crashes one nats-server this cluster started (the first by default; SIGKILL by
   * default) and waits for it to exit.
   */
  async killNatsServer(signal: NodeJS.Signals = "SIGKILL", index = 0): Promise<void> {
    const server = this.nats[index];
    if (server === undefined) throw new Error(`nats-server ${index} is not running here`);
    const gone = exited(server.child);
    server.child.kill(signal);
    await gone;
    this.nats[index] = undefined;
  }

  /** Whether nats-server `index` of this cluster is running (not killed, not exited). */
  isNatsServerRunning(index = 0): boolean {
    return isRunning(this.nats[index]?.child);
  }

  /** The nats-servers this cluster started that are not running now (killed or exited). */
  natsServersDown(): number[] {
    return this.natsSpecs.flatMap((_, index) => (this.isNatsServerRunning(index) ? [] : [index]));
  }

  /**
   * Starts a nats-server again on the same port and store, after killNatsServer or after
   * it exited; services reconnect to the same URL by themselves. Fails with the reason if
   * the port is taken or the server is not ready within `readyTimeoutMs` (the default
   * allows for a JetStream store recovering under load); either way no server is left.
   */
  async restartNatsServer(index = 0, readyTimeoutMs = natsRestartReadyTimeoutMs): Promise<void> {
    const spec = this.natsSpecs[index];
    if (spec === undefined) throw new Error(`this cluster did not start nats-server ${index}`);
    if (this.isNatsServerRunning(index)) throw new Error(`nats-server ${index} is running`);
    if (this.natsRestarting.has(index)) {
      throw new Error(`nats-server ${index} is being restarted already`);
    }
    this.natsRestarting.add(index);
    try {
      this.nats[index] = undefined;
      this.nats[index] = await startNatsServer({ ...spec, portExact: true, readyTimeoutMs });
    } finally {
      this.natsRestarting.delete(index);
    }
  }

  /**
   * Stops every service (in parallel, gracefully), then the nats-servers it started.
   * Every process is stopped even if stopping one fails; the first failure is thrown.
   *
   * With `kill`, every process gets SIGKILL at once, as in a crash of the whole
   * machine: nothing drains or closes its files. For a caller that deletes the data
   * directory next and needs nothing a graceful stop does (the tests' teardown, where
   * the graceful stop of five services and NATS took 0.4 to 0.5 s of every test file).
   */
  async stop(options: { kill?: boolean } = {}): Promise<void> {
    const stop = options.kill === true ? killChild : stopChild;
    // A nats-server's own stop is stopChild on its process, as a service's is.
    const services = await Promise.allSettled(
      [...this.services.values()].map(async (managed) => {
        managed.stopping = true;
        if (managed.child !== undefined) await stop(managed.child);
      }),
    );
    const nats = await Promise.allSettled(
      this.nats.map((server) => (server === undefined ? undefined : stop(server.child))),
    );
    const failed = [...services, ...nats].find((result) => result.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  }

  /**
   * Creates the control bucket with one replica per server before any coordinator
   * opens it (the coordinator opens an existing bucket as it is). JetStream answers
   * only once the servers have elected a meta leader, so this retries until then.
   */
  private async createReplicatedControlBucket(): Promise<void> {
    const logger = createLogger({ service: "launcher", nodeId: "launcher", level: "silent" });
    const connection = await connectNats({
      servers: this.natsUrl,
      name: "ballast-launcher",
      logger,
      access: this.natsAccess("coordinator"),
    });
    try {
      const deadline = Date.now() + natsClusterReadyTimeoutMs;
      for (;;) {
        try {
          await new Kvm(connection).create(buckets.control, {
            history: controlBucketHistory,
            replicas: this.nats.length,
          });
          return;
        } catch (error) {
          if (Date.now() > deadline) {
            throw new Error(
              `the NATS cluster did not create the ${buckets.control} bucket within ${natsClusterReadyTimeoutMs} ms: ${(error as Error).message}`,
              { cause: error },
            );
          }
          await new Promise((resolveWait) => setTimeout(resolveWait, 500));
        }
      }
    } finally {
      await connection.close();
    }
  }

  private add(kind: ServiceKind, id: string): void {
    const record: ServiceRecord = {
      kind,
      id,
      pid: 0,
      dataDir: join(this.dataDir, id),
      log: join(this.dataDir, "logs", `${id}.log`),
    };
    this.services.set(id, { record, child: undefined, stopping: false });
  }

  private spawn(id: string, extraEnv: Record<string, string> = {}): void {
    const managed = this.managed(id);
    const { kind, dataDir, log } = managed.record;
    const env: Record<string, string> = { ...this.options.env, ...extraEnv };
    if (kind === "gateway") {
      const first = this.options.nbdPortFirst ?? 10_809;
      const index = Number(id.slice(id.lastIndexOf("-") + 1));
      env.BALLAST_NBD_PORT = String(first === 0 ? 0 : first + index - 1);
    }
    const metricsPort = this.metricsPorts.get(id);
    if (metricsPort !== undefined) env.BALLAST_METRICS_PORT = String(metricsPort);
    if (this.options.tieToParent) env.BALLAST_PARENT_PID = String(process.pid);
    if (this.credentials !== undefined) {
      // Only this role's file; clear what the launcher itself may have inherited.
      env.BALLAST_NATS_CREDS = credentialsFile(this.dataDir, kind);
      env.BALLAST_NATS_USER = "";
      env.BALLAST_NATS_PASSWORD = "";
    }
    if (this.options.natsTls !== undefined) env.BALLAST_NATS_CA = this.options.natsTls.ca;
    Object.assign(env, mallocTunablesFor(process.env, env));
    const child = spawnChild({
      command: process.execPath,
      args: [...this.commands[kind], "--id", id, "--data-dir", dataDir, "--nats", this.natsUrl],
      logPath: log,
      env,
      cwd: repositoryRoot,
    });
    managed.child = child;
    managed.stopping = false;
    managed.record.pid = child.pid ?? 0;
    child.once("exit", (code, signal) => {
      if (!managed.stopping && managed.child === child) {
        this.options.onUnexpectedExit?.({ ...managed.record }, code ?? signal ?? "unknown");
      }
    });
  }

  private managed(id: string): Managed {
    const managed = this.services.get(id);
    if (managed === undefined) {
      throw new Error(
        `no service ${JSON.stringify(id)} in this cluster (have ${this.ids().join(", ")})`,
      );
    }
    return managed;
  }
}

/** Where and how each nats-server of a cluster runs: ports, store, users, routes. */
async function natsServerSpecs(
  dataDir: string,
  options: LocalClusterOptions,
  credentials: Record<CredentialName, NatsCredentials>,
): Promise<NatsServerSpec[]> {
  const count = options.natsCluster ?? 1;
  if (!Number.isSafeInteger(count) || count < 1 || count > natsClusterSizeMax) {
    throw new Error(`natsCluster must be 1 to ${natsClusterSizeMax}, got ${count}`);
  }
  const users = natsRoles.map((role) => ({
    ...credentials[role],
    permissions: permissionsOf(role),
  }));
  const common = {
    users,
    ...(options.natsTls === undefined ? {} : { tls: options.natsTls }),
    ...(options.natsStoreBytes === undefined ? {} : { fileStoreBytes: options.natsStoreBytes }),
  };
  if (count === 1) {
    // One server keeps the layout of earlier versions (nats/, logs/nats-server.log).
    const port = await freePort(options.natsPortsPreferred?.[0]?.port ?? options.natsPortPreferred);
    return [
      {
        ...common,
        directory: join(dataDir, "nats"),
        logPath: join(dataDir, "logs", "nats-server.log"),
        portPreferred: port,
      },
    ];
  }
  const ports: { port: number; routePort: number }[] = [];
  const taken = new Set<number>();
  const pick = async (preferred: number | undefined) => {
    let port = await freePort(preferred);
    while (taken.has(port)) port = await freePort();
    taken.add(port);
    return port;
  };
  for (let index = 0; index < count; index++) {
    const preferred = options.natsPortsPreferred?.[index];
    const port = await pick(
      preferred?.port ?? (index === 0 ? options.natsPortPreferred : undefined),
    );
    ports.push({ port, routePort: await pick(preferred?.routePort) });
  }
  return ports.map(({ port, routePort }, index) => ({
    ...common,
    directory: join(dataDir, `nats-${index + 1}`),
    logPath: join(dataDir, "logs", `nats-server-${index + 1}.log`),
    portPreferred: port,
    cluster: {
      serverName: `nats-${index + 1}`,
      routePort,
      routePorts: ports.map((other) => other.routePort),
      routeUser,
      routePassword: credentials[routeUser].password,
    },
  }));
}

/**
 * The GLIBC_TUNABLES a service is spawned with, beside `given` (the variables the cluster
 * sets for it) and what it inherits: Ballast's malloc settings (runtime constants.ts,
 * `serviceMallocTunables`), unless either already names tunables of its own, which are
 * then left as they are.
 */
export function mallocTunablesFor(
  inherited: Readonly<Record<string, string | undefined>>,
  given: Readonly<Record<string, string>>,
): Record<string, string> {
  if (inherited.GLIBC_TUNABLES !== undefined || given.GLIBC_TUNABLES !== undefined) return {};
  return { GLIBC_TUNABLES: runtimeConstants.serviceMallocTunables };
}
