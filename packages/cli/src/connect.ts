// How every command finds the cluster: `--nats URL`, else the BALLAST_NATS environment
// variable, else the cluster.json that `ballast up` wrote in the data directory.

import { resolve } from "node:path";
import { Bus, connectNats, createLogger, startTracing } from "@ballast/runtime";
import type { NatsConnection } from "@nats-io/transport-node";
import { clusterFilePath, readClusterFile } from "./cluster-file.ts";
import { cliConnectTimeoutMs } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";

export interface ClusterAddress {
  natsUrl: string;
  /** Where the URL came from, for messages. */
  source: string;
}

export async function findCluster(options: {
  nats?: string | undefined;
  dataDir: string;
  env?: Readonly<Record<string, string | undefined>>;
}): Promise<ClusterAddress> {
  if (options.nats !== undefined && options.nats !== "") {
    return { natsUrl: options.nats, source: "--nats" };
  }
  const fromEnv = (options.env ?? process.env).BALLAST_NATS;
  if (fromEnv !== undefined && fromEnv !== "") return { natsUrl: fromEnv, source: "BALLAST_NATS" };
  const file = await readClusterFile(options.dataDir);
  if (file === undefined) {
    throw new CliError(
      exitCodes.unreachable,
      `no cluster found: pass --nats URL, set BALLAST_NATS, or start one with \`ballast up\` (looked for ${clusterFilePath(resolve(options.dataDir))})`,
    );
  }
  return { natsUrl: file.natsUrl, source: clusterFilePath(options.dataDir) };
}

export interface CliConnection {
  bus: Bus;
  connection: NatsConnection;
  close(): Promise<void>;
}

/** Connects the command to the cluster's NATS, failing fast with a clear error. */
export async function connectCli(address: ClusterAddress): Promise<CliConnection> {
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
      connectTimeoutMs: cliConnectTimeoutMs,
    });
  } catch (error) {
    await tracing.shutdown();
    throw new CliError(
      exitCodes.unreachable,
      `cannot reach NATS at ${address.natsUrl} (from ${address.source}): is the cluster running?`,
      { cause: error },
    );
  }
  return {
    bus: new Bus(connection, tracing.tracer),
    connection,
    async close() {
      await connection.drain().catch(() => undefined);
      await tracing.shutdown().catch(() => undefined);
    },
  };
}
