// How every command finds the cluster: `--nats URL`, else the BALLAST_NATS environment
// variable, else the cluster.json that `ballast up` wrote in the data directory. The
// credentials come from the same place as the URL: with a URL from cluster.json, the
// role's file that `ballast up` made next to it (client unless the command needs more);
// with --nats or BALLAST_NATS, BALLAST_NATS_CREDS (a file) or BALLAST_NATS_USER and
// BALLAST_NATS_PASSWORD. BALLAST_NATS_CA names the CA for TLS, else cluster.json's.
// BALLAST_NATS_CONNECT_TIMEOUT_MS bounds the wait for NATS (cliConnectTimeoutMs); a command
// ends its connection within the runtime's natsCloseGraceMs (drainNats).

import { resolve } from "node:path";
import { ErrorCode, isBallastError, type NatsRole } from "@ballast/protocol";
import {
  Bus,
  checks,
  connectNats,
  createLogger,
  drainNats,
  type NatsAccess,
  natsAccessFromEnv,
  readCredentialsFile,
  startTracing,
} from "@ballast/runtime";
import type { NatsConnection } from "@nats-io/transport-node";
import { clusterFilePath, readClusterFile } from "./cluster-file.ts";
import {
  cliConnectTimeoutMs,
  cliConnectTimeoutMsMax,
  cliConnectTimeoutMsMin,
} from "./constants.ts";
import { CliError, cliErrorOf, exitCodes } from "./errors.ts";

export interface ClusterAddress {
  natsUrl: string;
  /** Where the URL came from, for messages. */
  source: string;
  /** Credentials and CA; absent means none (an open NATS). */
  access?: NatsAccess;
  /** The credentials file, when they came from one (to hand to a child service). */
  credentialsFile?: string;
}

export async function findCluster(options: {
  nats?: string | undefined;
  dataDir: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Whose credentials to take from a local cluster: client unless the command needs more. */
  role?: NatsRole;
}): Promise<ClusterAddress> {
  const env = options.env ?? process.env;
  let natsUrl: string | undefined;
  let source = "";
  if (options.nats !== undefined && options.nats !== "") {
    natsUrl = options.nats;
    source = "--nats";
  } else if (env.BALLAST_NATS !== undefined && env.BALLAST_NATS !== "") {
    natsUrl = env.BALLAST_NATS;
    source = "BALLAST_NATS";
  }
  const file = await readClusterFile(options.dataDir).catch(() => undefined);
  if (natsUrl === undefined) {
    if (file === undefined) {
      throw new CliError(
        exitCodes.unreachable,
        `no cluster found: pass --nats URL, set BALLAST_NATS, or start one with \`ballast up\` (looked for ${clusterFilePath(resolve(options.dataDir))})`,
      );
    }
    natsUrl = file.natsUrl;
    source = clusterFilePath(options.dataDir);
  }
  // A URL NATS could never be reached at is a mistake to name, not "is the cluster
  // running?" after the connect timeout.
  const problem = checks.natsUrl(natsUrl);
  if (problem !== undefined) {
    throw new CliError(
      source === "--nats" || source === "BALLAST_NATS" ? exitCodes.usage : exitCodes.unreachable,
      `${source}: ${problem}`,
    );
  }
  const address: ClusterAddress = { natsUrl, source };
  // The local cluster's files count only for that cluster's URL.
  const local = file !== undefined && file.natsUrl === natsUrl ? file : undefined;
  let access: NatsAccess = {};
  if (local?.credentialsDir !== undefined && source === clusterFilePath(options.dataDir)) {
    // A URL and its credentials come from the same place: cluster.json describes the
    // local cluster whole, whatever BALLAST_NATS_* say about some other one.
    const path = `${local.credentialsDir}/${options.role ?? "client"}.json`;
    try {
      access.credentials = readCredentialsFile(path);
      address.credentialsFile = path;
    } catch (error) {
      throw new CliError(exitCodes.unreachable, (error as Error).message, { cause: error });
    }
  } else {
    try {
      access = natsAccessFromEnv(env);
    } catch (error) {
      throw new CliError(exitCodes.usage, (error as Error).message, { cause: error });
    }
    if (env.BALLAST_NATS_CREDS) address.credentialsFile = env.BALLAST_NATS_CREDS;
  }
  if (access.caFile === undefined && local?.natsCa !== undefined) access.caFile = local.natsCa;
  address.access = access;
  return address;
}

/**
 * Where the local cluster of `dataDir` keeps the operator's credentials, as a command's
 * error names it: the file if cluster.json says where, else where `ballast up` writes it.
 */
export async function operatorCredentialsPath(dataDir: string): Promise<string> {
  const file = await readClusterFile(dataDir).catch(() => undefined);
  return file?.credentialsDir !== undefined
    ? `${file.credentialsDir}/operator.json`
    : `${resolve(dataDir)}/credentials/operator.json`;
}

/**
 * The cluster for a destructive command (`what`: "volume delete", …): `findCluster` with
 * the operator's credentials, whose absence is said as the permission it costs.
 */
export async function findClusterAsAdmin(
  what: string,
  options: { nats?: string | undefined; dataDir: string },
): Promise<ClusterAddress> {
  try {
    return await findCluster({ ...options, role: "operator" });
  } catch (error) {
    if (!(error instanceof CliError) || !/credentials/.test(error.message)) throw error;
    throw new CliError(
      error.exitCode,
      `permission denied: ${what} needs the operator (admin) credentials at ${await operatorCredentialsPath(options.dataDir)}, which this user cannot read: ${error.message}`,
      { cause: error },
    );
  }
}

/**
 * A destructive request NATS refused to carry (PermissionDenied: the credentials are
 * not the operator's) as a CLI error naming the credentials needed; other errors as
 * `cliErrorOf` makes them.
 */
export async function adminErrorOf(
  error: unknown,
  what: string,
  address: ClusterAddress,
  dataDir: string,
): Promise<unknown> {
  if (!isBallastError(error, ErrorCode.PermissionDenied)) return cliErrorOf(error);
  const user = address.access?.credentials?.user;
  const where =
    address.source === clusterFilePath(dataDir)
      ? `at ${await operatorCredentialsPath(dataDir)}`
      : `(BALLAST_NATS_CREDS naming the operator's file, which \`ballast up\` writes to ${await operatorCredentialsPath(dataDir)}; or BALLAST_NATS_USER=operator and its password)`;
  return new CliError(
    exitCodes.failed,
    `permission denied: ${what} needs the operator (admin) credentials ${where}; this command connected as ${user === undefined ? "a user" : `user ${user}`} (${address.credentialsFile ?? address.source}), whose role may not send it`,
    { cause: error },
  );
}

/**
 * How long a command waits for NATS: BALLAST_NATS_CONNECT_TIMEOUT_MS if set, else
 * cliConnectTimeoutMs. A value that is not a whole number of milliseconds within the
 * bounds is a usage error, not a silent default.
 */
export function cliConnectTimeoutOf(env: Readonly<Record<string, string | undefined>>): number {
  const text = env.BALLAST_NATS_CONNECT_TIMEOUT_MS?.trim();
  if (text === undefined || text === "") return cliConnectTimeoutMs;
  const value = Number(text);
  if (
    !/^\d+$/.test(text) ||
    !Number.isSafeInteger(value) ||
    value < cliConnectTimeoutMsMin ||
    value > cliConnectTimeoutMsMax
  ) {
    throw new CliError(
      exitCodes.usage,
      `BALLAST_NATS_CONNECT_TIMEOUT_MS must be a whole number of milliseconds from ${cliConnectTimeoutMsMin} to ${cliConnectTimeoutMsMax}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

export interface CliConnection {
  bus: Bus;
  connection: NatsConnection;
  close(): Promise<void>;
}

/** Connects the command to the cluster's NATS, failing fast with a clear error. */
export async function connectCli(address: ClusterAddress): Promise<CliConnection> {
  const connectTimeoutMs = cliConnectTimeoutOf(process.env);
  const logger = createLogger({ service: "cli", nodeId: "cli", level: "silent", destination: 2 });
  const tracing = startTracing({
    serviceName: "ballast-cli",
    instanceId: `cli-${process.pid}`,
    otlpEndpoint: process.env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined,
  });
  let connection: NatsConnection;
  try {
    connection = await connectNats({
      servers: address.natsUrl,
      name: "ballast-cli",
      logger,
      connectTimeoutMs,
      // Nothing known (say `ballast up --nats` on an external NATS): the BALLAST_NATS_*
      // variables of this process, as connectNats reads them by default.
      ...(address.access?.credentials === undefined && address.access?.caFile === undefined
        ? {}
        : { access: address.access }),
    });
  } catch (error) {
    await tracing.shutdown();
    const refused = /authoriz|authenticat/i.test(String((error as Error)?.message));
    throw new CliError(
      exitCodes.unreachable,
      refused
        ? `NATS at ${address.natsUrl} (from ${address.source}) refused the credentials${address.access?.credentials ? ` of user ${address.access.credentials.user}` : " (none given: set BALLAST_NATS_CREDS, or BALLAST_NATS_USER and BALLAST_NATS_PASSWORD)"}`
        : `cannot reach NATS at ${address.natsUrl} (from ${address.source}): is the cluster running?`,
      { cause: error },
    );
  }
  return {
    bus: new Bus(connection, tracing.tracer),
    connection,
    async close() {
      // Within natsCloseGraceMs: a command whose NATS went silent ends, not 30 to 40 s on.
      await drainNats(connection);
      await tracing.shutdown().catch(() => undefined);
    },
  };
}
