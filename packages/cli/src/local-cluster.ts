// A whole Ballast cluster on one machine, as separate processes: nats-server (unless an
// external one is given), coordinators, head nodes and sleds, each with its own data
// directory and log file under one root. `ballast up` runs one; the integration tests
// run them too, and use `kill` and `restart` to crash and revive single services.
// Node ids are stable (`head-1`, `sled-2`, …), so starting again on the same root
// brings back the same nodes with the same state.

import type { ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServiceKind } from "@ballast/protocol";
import type { ServiceRecord } from "./cluster-file.ts";
import { type RunningNatsServer, startNatsServer } from "./nats-server.ts";
import { exited, spawnChild, stopChild } from "./processes.ts";

export interface LocalClusterOptions {
  dataDir: string;
  /** Use this NATS server instead of starting one. */
  natsUrl?: string;
  /** Port to prefer for a nats-server this cluster starts. */
  natsPortPreferred?: number;
  coordinators: number;
  headNodes: number;
  sleds: number;
  /** NBD gateways (none unless asked for). */
  gateways?: number;
  /** gateway-N listens on this port plus N - 1; 0 lets each pick a free port. */
  nbdPortFirst?: number;
  /** Extra environment for every service (log level, OTLP endpoint, intervals). */
  env?: Record<string, string>;
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

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url));
const tsxLoader = import.meta.resolve("tsx");

export function serviceEntry(kind: ServiceKind): string {
  return join(repositoryRoot, "services", kind, "src", "main.ts");
}

export class LocalCluster {
  readonly dataDir: string;
  readonly natsUrl: string;
  private nats: RunningNatsServer | undefined;
  private readonly services = new Map<string, Managed>();
  private readonly options: LocalClusterOptions;

  private constructor(
    options: LocalClusterOptions,
    natsUrl: string,
    natsServer: RunningNatsServer | undefined,
  ) {
    this.options = options;
    this.dataDir = resolve(options.dataDir);
    this.natsUrl = natsUrl;
    this.nats = natsServer;
  }

  /** The nats-server this cluster started (the current one, after restartNatsServer). */
  get natsServer(): RunningNatsServer | undefined {
    return this.nats;
  }

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const dataDir = resolve(options.dataDir);
    await mkdir(join(dataDir, "logs"), { recursive: true });
    let natsServer: RunningNatsServer | undefined;
    let natsUrl = options.natsUrl;
    if (natsUrl === undefined) {
      natsServer = await startNatsServer({
        directory: join(dataDir, "nats"),
        logPath: join(dataDir, "logs", "nats-server.log"),
        ...(options.natsPortPreferred === undefined
          ? {}
          : { portPreferred: options.natsPortPreferred }),
      });
      natsUrl = natsServer.url;
    }
    const cluster = new LocalCluster(options, natsUrl, natsServer);
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
    for (const id of cluster.services.keys()) cluster.spawn(id);
    return cluster;
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

  /** Starts a service again (after kill) with the same id and data directory. */
  restart(id: string): void {
    const managed = this.managed(id);
    if (
      managed.child !== undefined &&
      managed.child.exitCode === null &&
      managed.child.signalCode === null
    ) {
      throw new Error(`${id} is still running (pid ${managed.record.pid})`);
    }
    this.spawn(id);
  }

  /** Sends a signal to one service without waiting (SIGSTOP, SIGCONT, SIGUSR2). */
  signal(id: string, signal: NodeJS.Signals): void {
    const child = this.managed(id).child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${id} is not running`);
    }
    child.kill(signal);
  }

  /** Whether a service's process is alive (it may be stopped by SIGSTOP). */
  isRunning(id: string): boolean {
    const child = this.managed(id).child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Crashes the nats-server this cluster started (SIGKILL by default) and waits for it. */
  async killNatsServer(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const server = this.nats;
    if (server === undefined) throw new Error("this cluster did not start its nats-server");
    const gone = exited(server.child);
    server.child.kill(signal);
    await gone;
  }

  /**
   * Starts the nats-server again on the same port and store, after killNatsServer. The
   * port must be free again; services reconnect to the same URL by themselves.
   */
  async restartNatsServer(): Promise<void> {
    const server = this.nats;
    if (server === undefined) throw new Error("this cluster did not start its nats-server");
    const restarted = await startNatsServer({
      directory: join(this.dataDir, "nats"),
      logPath: join(this.dataDir, "logs", "nats-server.log"),
      portPreferred: server.port,
    });
    if (restarted.port !== server.port) {
      await restarted.stop();
      throw new Error(`nats-server port ${server.port} is still taken; cannot restart on it`);
    }
    this.nats = restarted;
  }

  /** Stops every service (in parallel, gracefully), then the nats-server it started. */
  async stop(): Promise<void> {
    await Promise.all(
      [...this.services.values()].map(async (managed) => {
        managed.stopping = true;
        if (managed.child !== undefined) await stopChild(managed.child);
      }),
    );
    await this.nats?.stop();
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

  private spawn(id: string): void {
    const managed = this.managed(id);
    const { kind, dataDir, log } = managed.record;
    const env: Record<string, string> = { ...this.options.env };
    if (kind === "gateway") {
      const first = this.options.nbdPortFirst ?? 10_809;
      const index = Number(id.slice(id.lastIndexOf("-") + 1));
      env.BALLAST_NBD_PORT = String(first === 0 ? 0 : first + index - 1);
    }
    if (this.options.tieToParent) env.BALLAST_PARENT_PID = String(process.pid);
    const child = spawnChild({
      command: process.execPath,
      args: [
        "--import",
        tsxLoader,
        serviceEntry(kind),
        "--id",
        id,
        "--data-dir",
        dataDir,
        "--nats",
        this.natsUrl,
      ],
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
