// Runs a local nats-server for `ballast up` and for the integration tests: loopback
// only, JetStream on with its store under the given directory, and max_payload raised
// to what the protocol needs. The server is a child of the launcher; its pid is written
// to cluster.json so that a later `ballast up` can stop one a crashed launcher left.
// Optionally: users with subject permissions (then anonymous connections are refused),
// TLS for clients with given certificates, and a route block that joins it to the other
// servers of a NATS cluster (JetStream clustered: each server has its own name and store).
// The config holds passwords, so it is written with mode 0600.

import type { ChildProcess } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { delimiter, join } from "node:path";
import { limits, type RolePermissions } from "@ballast/protocol";
import { natsReadyTimeoutMs } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { isAlive, spawnChild, stopChild } from "./processes.ts";

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

/** A loopback port nobody listens on: `preferred` if it is free, else one the OS picks. */
export async function freePort(preferred?: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(undefined));
      server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
        const address = server.address();
        const chosen = typeof address === "object" && address !== null ? address.port : undefined;
        server.close(() => resolve(chosen));
      });
    });
  if (preferred !== undefined) {
    const port = await tryPort(preferred);
    if (port !== undefined) return port;
  }
  const port = await tryPort(0);
  if (port === undefined) throw new Error("cannot find a free loopback port");
  return port;
}

/** Resolves once a NATS server at host:port sends its INFO line. */
export async function waitForNats(port: number, timeoutMs = natsReadyTimeoutMs): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
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
  /** Where the server's log goes; defaults to nats-server.log in `directory`. */
  logPath?: string;
  /** Users and their permissions; none means anonymous access (bare test servers). */
  users?: { user: string; password: string; permissions: RolePermissions }[];
  /** TLS for client connections (PEM files). */
  tls?: NatsTlsFiles;
  /** Membership of a NATS cluster on loopback. */
  cluster?: NatsClusterMembership;
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
}): string {
  const lines = [
    "# Written by `ballast up`; rewritten on every start.",
    `listen: "127.0.0.1:${options.port}"`,
    `max_payload: ${limits.natsPayloadBytesMax}`,
    "jetstream {",
    `  store_dir: ${JSON.stringify(options.storeDir)}`,
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
  await mkdir(options.directory, { recursive: true });
  const storeDir = join(options.directory, "jetstream");
  const configPath = join(options.directory, "nats-server.conf");
  const logPath = options.logPath ?? join(options.directory, "nats-server.log");
  const port = await freePort(options.portPreferred);
  await writeFile(
    configPath,
    natsServerConfig({
      port,
      storeDir,
      users: options.users,
      tls: options.tls,
      cluster: options.cluster,
    }),
    { mode: 0o600 },
  );
  // writeFile keeps the mode of a file that exists already.
  await chmod(configPath, 0o600);
  const child = spawnChild({ command: binary, args: ["-c", configPath], logPath });
  const failed = new Promise<never>((_, reject) => {
    child.once("exit", (code) =>
      reject(
        new CliError(
          exitCodes.failed,
          `nats-server exited with code ${code} while starting; see ${logPath}`,
        ),
      ),
    );
  });
  failed.catch(() => undefined);
  await Promise.race([waitForNats(port), failed]);
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

/**
 * Stops a nats-server that a crashed launcher left behind, if `pid` is still that
 * server (its command line names our config file), so the new one can take the store.
 */
export async function stopStaleNatsServer(pid: number, configPath: string): Promise<boolean> {
  if (!isAlive(pid)) return false;
  let commandLine: string;
  try {
    commandLine = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").join(" ");
  } catch {
    return false;
  }
  if (!commandLine.includes("nats-server") || !commandLine.includes(configPath)) return false;
  process.kill(pid, "SIGTERM");
  for (let waited = 0; waited < 5000 && isAlive(pid); waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
  return true;
}
