// Runs a local nats-server for `ballast up` and for the integration tests: loopback
// only, JetStream on with its store under the given directory and capped (constants.ts
// natsFileStoreBytesDefault says why), and max_payload raised to what the protocol needs.
// The server is a child of the launcher; its pid is written to cluster.json so that a
// later `ballast up` can stop one a crashed launcher left.
// Optionally: users with subject permissions (then anonymous connections are refused),
// TLS for clients with given certificates, and a route block that joins it to the other
// servers of a NATS cluster (JetStream clustered: each server has its own name and store).
// The config holds passwords, so it is written with mode 0600.
//
// Failure model: a server that does not become ready in time, or exits, or anything
// that throws after the spawn, ends with the child stopped (SIGTERM, then SIGKILL after
// a bound) before the error is thrown: a server left behind would hold the port and
// the JetStream store, and a later start beside it would put two servers on one store.
// A restart (`portExact`) takes the same port or fails; it never falls back to another
// port, which would mean a second server on the same store under a URL nobody uses.

import type { ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { delimiter, join } from "node:path";
import { limits, type RolePermissions } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import {
  natsFileStoreBytesDefault,
  natsMemoryStoreBytes,
  natsReadyTimeoutMs,
  staleNatsServerStopGraceMs,
} from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { isRunning, spawnChild, stopChild, stopStaleProcess } from "./processes.ts";

/**
 * How long a nats-server that is being started again on its existing JetStream store
 * may take to accept connections. It recovers every stream and consumer before it
 * listens, and that grows with the store: in the 30-minute chaos run (load average
 * 13 to 16 on 2 cores) 2,600 consumers took 5 s, 5,200 took 9 s, 7,900 took 13 s and
 * 9,800 took 16.5 s (about 1.7 ms each), so the first start's 15 s was too short. 60 s
 * covers about 35,000 consumers at that rate, and is still no longer than the chaos
 * nemesis waits for full strength after a fault, so a server that needs more is a fault
 * of its own to report, not a delay to absorb.
 */
export const natsRestartReadyTimeoutMs = 60_000;
/**
 * How long a nats-server that failed to start gets after SIGTERM before SIGKILL. It may
 * be in the middle of recovering its store; a kill then is no worse than a crash, which
 * the store survives.
 */
export const natsAbortGraceMs = 5000;

export const natsInstallHint =
  "nats-server is not installed. Install it with `sudo apt-get install nats-server` " +
  "(Debian/Ubuntu), or download it from https://github.com/nats-io/nats-server/releases, " +
  "or point Ballast at a running server with --nats nats://HOST:PORT.";

/**
 * Finds nats-server: the BALLAST_NATS_SERVER environment variable names the binary if
 * set (and must then be executable); otherwise PATH, and sbin where some packages put it.
 */
export function findNatsServer(env = process.env): string | undefined {
  const explicit = env.BALLAST_NATS_SERVER;
  if (explicit !== undefined && explicit !== "") {
    return isExecutable(explicit) ? explicit : undefined;
  }
  const directories = [
    ...(process.env.PATH ?? "").split(delimiter),
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/bin",
  ];
  for (const directory of directories) {
    if (directory === "") continue;
    const candidate = join(directory, "nats-server");
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Listens on 127.0.0.1:`port` briefly (0: a port the OS picks) and returns the port it
 * got, or undefined when it is taken.
 */
function tryPort(port: number): Promise<number | undefined> {
  return new Promise<number | undefined>((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(undefined));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
      const address = server.address();
      const chosen = typeof address === "object" && address !== null ? address.port : undefined;
      server.close(() => resolve(chosen));
    });
  });
}

/** A loopback port nobody listens on: `preferred` if it is free, else one the OS picks. */
export async function freePort(preferred?: number): Promise<number> {
  if (preferred !== undefined) {
    const port = await tryPort(preferred);
    if (port !== undefined) return port;
  }
  const port = await tryPort(0);
  if (port === undefined) throw new Error("cannot find a free loopback port");
  return port;
}

/** Whether nobody listens on 127.0.0.1:`port` (checked by listening on it briefly). */
async function portIsFree(port: number): Promise<boolean> {
  return (await tryPort(port)) !== undefined;
}

/**
 * Resolves once a NATS server at host:port sends its INFO line; `signal` ends the wait
 * early (the server exited: polling on would only keep the process alive).
 */
export async function waitForNats(
  port: number,
  timeoutMs = natsReadyTimeoutMs,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && signal?.aborted !== true) {
    const ready = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port });
      const done = (value: boolean) => {
        socket.destroy();
        resolve(value);
      };
      socket.setTimeout(1000, () => done(false));
      socket.once("data", (data) => done(data.toString("latin1").startsWith("INFO")));
      socket.once("error", () => done(false));
    });
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new CliError(
    exitCodes.failed,
    `nats-server did not accept connections on 127.0.0.1:${port} within ${timeoutMs} ms`,
  );
}

export interface NatsServerOptions {
  /** Directory for the config, the JetStream store and the log. */
  directory: string;
  /** Port to prefer (the one a previous run used); any free port otherwise. */
  portPreferred?: number;
  /**
   * Take exactly `portPreferred`, and fail if it is taken instead of choosing another:
   * for a restart, which must keep the URL its clients use and must never run a second
   * server on the store (the one holding the port may be an earlier server on it).
   */
  portExact?: boolean;
  /** How long to wait for the server to accept connections (natsReadyTimeoutMs if absent). */
  readyTimeoutMs?: number;
  /** Where the server's log goes; defaults to nats-server.log in `directory`. */
  logPath?: string;
  /** Users and their permissions; none means anonymous access (bare test servers). */
  users?: { user: string; password: string; permissions: RolePermissions }[];
  /** TLS for client connections (PEM files). */
  tls?: NatsTlsFiles;
  /** Membership of a NATS cluster on loopback. */
  cluster?: NatsClusterMembership;
  /** The JetStream file store's cap, `max_file_store` (natsFileStoreBytesDefault if absent). */
  fileStoreBytes?: number;
}

export interface NatsTlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface NatsClusterMembership {
  /** Distinct per server: JetStream clustering needs it. */
  serverName: string;
  /** The port this server takes routes on. */
  routePort: number;
  /** Route ports of every server of the cluster (this one's may be among them). */
  routePorts: number[];
  /** Routes authenticate, so that nobody bypasses the users through the route port. */
  routeUser: string;
  routePassword: string;
}

export const natsClusterName = "ballast";

/**
 * The `authorization` block of a nats-server config: each user with its allow-lists.
 * `password` is a config token as written: a quoted string, or `$VARIABLE` to take it
 * from the server's environment (as deploy/nats-auth.conf does).
 */
export function natsAuthorizationConfig(
  users: { user: string; password: string; permissions: RolePermissions }[],
): string {
  const lines = ["authorization {", "  users: ["];
  for (const { user, password, permissions } of users) {
    lines.push(
      "    {",
      `      user: ${JSON.stringify(user)}`,
      `      password: ${password}`,
      "      permissions: {",
      `        publish: { allow: ${JSON.stringify(permissions.publish)} }`,
      `        subscribe: { allow: ${JSON.stringify(permissions.subscribe)} }`,
      ...(permissions.responses === undefined
        ? []
        : [
            `        allow_responses: { max: ${permissions.responses.max}, expires: "${permissions.responses.expiresMs}ms" }`,
          ]),
      "      }",
      "    }",
    );
  }
  lines.push("  ]", "}");
  return lines.join("\n");
}

/** The variable deploy/nats-auth.conf takes a role's password from. */
export function natsPasswordVariable(role: string): string {
  return `BALLAST_NATS_PASSWORD_${role.toUpperCase()}`;
}

/** The nats-server configuration text (JSON maps are valid in its config syntax). */
export function natsServerConfig(options: {
  port: number;
  storeDir: string;
  users?: NatsServerOptions["users"];
  tls?: NatsTlsFiles | undefined;
  cluster?: NatsClusterMembership | undefined;
  fileStoreBytes?: number | undefined;
}): string {
  const lines = [
    "# Written by `ballast up`; rewritten on every start.",
    `listen: "127.0.0.1:${options.port}"`,
    `max_payload: ${limits.natsPayloadBytesMax}`,
    "jetstream {",
    `  store_dir: ${JSON.stringify(options.storeDir)}`,
    `  max_file_store: ${options.fileStoreBytes ?? natsFileStoreBytesDefault}`,
    `  max_memory_store: ${natsMemoryStoreBytes}`,
    "}",
  ];
  if (options.cluster !== undefined) {
    const { serverName, routePort, routePorts, routeUser, routePassword } = options.cluster;
    lines.push(
      `server_name: ${JSON.stringify(serverName)}`,
      "cluster {",
      `  name: ${natsClusterName}`,
      `  listen: "127.0.0.1:${routePort}"`,
      `  authorization: ${JSON.stringify({ user: routeUser, password: routePassword })}`,
      `  routes: ${JSON.stringify(
        routePorts.map((port) => `nats-route://${routeUser}:${routePassword}@127.0.0.1:${port}`),
      )}`,
      "}",
    );
  }
  if (options.users !== undefined) {
    lines.push(
      natsAuthorizationConfig(
        options.users.map(({ user, password, permissions }) => ({
          user,
          password: JSON.stringify(password),
          permissions,
        })),
      ),
    );
  }
  if (options.tls !== undefined) {
    lines.push(
      `tls: ${JSON.stringify({
        cert_file: options.tls.cert,
        key_file: options.tls.key,
        ca_file: options.tls.ca,
        timeout: 5,
      })}`,
    );
  }
  lines.push("");
  return lines.join("\n");
}

export interface RunningNatsServer {
  url: string;
  port: number;
  /** The route port, in a NATS cluster. */
  routePort?: number;
  pid: number;
  configPath: string;
  storeDir: string;
  logPath: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startNatsServer(options: NatsServerOptions): Promise<RunningNatsServer> {
  const binary = findNatsServer();
  if (binary === undefined) throw new CliError(exitCodes.missingTool, natsInstallHint);
  await mkdir(options.directory, { recursive: true, mode: runtimeConstants.dataDirectoryMode });
  const storeDir = join(options.directory, "jetstream");
  const configPath = join(options.directory, "nats-server.conf");
  const logPath = options.logPath ?? join(options.directory, "nats-server.log");
  const port = await choosePort(options, storeDir);
  await writeFile(
    configPath,
    natsServerConfig({
      port,
      storeDir,
      users: options.users,
      tls: options.tls,
      cluster: options.cluster,
      fileStoreBytes: options.fileStoreBytes,
    }),
    { mode: 0o600 },
  );
  // writeFile keeps the mode of a file that exists already.
  await chmod(configPath, 0o600);
  const child = spawnChild({ command: binary, args: ["-c", configPath], logPath });
  const giveUp = new AbortController();
  try {
    const failed = new Promise<never>((_, reject) => {
      child.once("exit", (code, signal) =>
        reject(
          new CliError(
            exitCodes.failed,
            `nats-server exited with ${code === null ? `signal ${signal}` : `code ${code}`} while starting`,
          ),
        ),
      );
      child.once("error", (error) =>
        reject(new CliError(exitCodes.failed, `cannot run ${binary}: ${error.message}`)),
      );
    });
    failed.catch(() => undefined);
    const readyTimeoutMs = options.readyTimeoutMs ?? natsReadyTimeoutMs;
    await Promise.race([waitForNats(port, readyTimeoutMs, giveUp.signal), failed]);
  } catch (error) {
    giveUp.abort();
    const wasRunning = child.pid !== undefined && isRunning(child);
    await abortChild(child);
    const stopped = wasRunning
      ? `; stopped it (pid ${child.pid}) so that it holds neither the port nor the store`
      : "";
    throw new CliError(exitCodes.failed, `${(error as Error).message}${stopped}; see ${logPath}`, {
      cause: error,
    });
  }
  return {
    url: `${options.tls === undefined ? "nats" : "tls"}://127.0.0.1:${port}`,
    port,
    ...(options.cluster === undefined ? {} : { routePort: options.cluster.routePort }),
    pid: child.pid ?? 0,
    configPath,
    storeDir,
    logPath,
    child,
    stop: () => stopChild(child),
  };
}

/** The port a start listens on: exactly the preferred one for a restart, else any free. */
async function choosePort(options: NatsServerOptions, storeDir: string): Promise<number> {
  if (options.portExact !== true) return freePort(options.portPreferred);
  const port = options.portPreferred;
  if (port === undefined) throw new Error("portExact needs portPreferred");
  if (!(await portIsFree(port))) {
    throw new CliError(
      exitCodes.failed,
      `cannot start nats-server on 127.0.0.1:${port}: the port is taken (by an earlier nats-server on ${storeDir}?); not starting it on another port, which would put a second server on that store`,
    );
  }
  return port;
}

/** Stops a child that failed to start, and waits until it is gone (unless it never ran). */
async function abortChild(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return;
  await stopChild(child, natsAbortGraceMs);
}

/**
 * Stops a nats-server that a crashed launcher left behind, if `pid` is still that
 * server (its command line names our config file), so the new one can take the store.
 */
export function stopStaleNatsServer(pid: number, configPath: string): Promise<boolean> {
  return stopStaleProcess(
    pid,
    (argv) =>
      argv.some((argument) => argument.includes("nats-server")) && argv.includes(configPath),
    staleNatsServerStopGraceMs,
  );
}
