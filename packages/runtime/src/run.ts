// The entry every service's main module calls. It parses and validates configuration,
// claims the data directory (holding its lock until the service has stopped: one
// process per directory, data-dir-lock.ts), starts tracing and logging, connects to
// NATS, lets the service set up its actor, starts heartbeats, and installs the shutdown
// path for SIGTERM, SIGINT and the death of the launcher that started it, and the crash
// policy.
//
// Crash policy (`installCrashPolicy`): an exception nothing caught, or a promise rejected
// with no handler, stops the process at once with exit code 1, after a fatal line in its
// JSON log and a line on stderr. Either means that a failure reached no code that
// decides what it means: an assertion of a core (a programmer's invariant, which stays
// on in production) in an asynchronous step, or an operating fault that some path
// forgot to handle. The process cannot tell the two apart, and running on after either
// may leave a replica half-changed with nobody knowing (a journal append whose failure
// nobody saw). Ballast is built to survive a crashed process (a head node reopens its
// journals, a primary is failed over, a sled's writes are crash-safe), not one that runs
// on in a state no one checked, so it stops; no orderly shutdown, which would answer
// requests from that state. A harmless stray rejection is a bug fixed where it starts,
// with a test, never swallowed here. Node exits with code 1 on both by itself; what this
// adds is the words, in the log the launcher keeps, not only a bare stack on stderr.

import { setTimeout as sleep } from "node:timers/promises";
import type { ServiceKind } from "@ballast/protocol";
import { Bus, connectNats, type NatsAccess, readableCaFile, readCredentialsFile } from "./bus.ts";
import { type ConfigOf, checks, describeOptions, type OptionSpecs, parseConfig } from "./config.ts";
import {
  heartbeatIntervalMsDefault,
  heartbeatIntervalMsMax,
  heartbeatIntervalMsMin,
  parentCheckIntervalMs,
  serviceNodeFlags,
} from "./constants.ts";
import { claimDataDir, type DataDirClaim, openToOthersWarning } from "./data-dir.ts";
import type { DataDirLock } from "./data-dir-lock.ts";
import { ConfigError, DataDirError } from "./errors.ts";
import { createLogger, type Logger } from "./logger.ts";
import { Service } from "./service.ts";
import { startTelemetry, type Telemetry } from "./telemetry.ts";

/** Options every service takes. */
export const commonOptions = {
  nodeId: {
    flag: "id",
    env: "BALLAST_NODE_ID",
    type: "string",
    required: true,
    description: "this node's id (lowercase letters, digits, '-')",
    check: (value: string) =>
      /^[a-z0-9][a-z0-9-]{0,62}$/.test(value)
        ? undefined
        : `must be 1-63 lowercase letters, digits or '-', starting with a letter or digit; got ${JSON.stringify(value)}`,
  },
  nats: {
    flag: "nats",
    env: "BALLAST_NATS",
    type: "string",
    default: "nats://127.0.0.1:4222",
    description: "NATS server URL(s), comma-separated",
    check: checks.natsUrl,
  },
  natsCreds: {
    flag: "nats-creds",
    env: "BALLAST_NATS_CREDS",
    type: "string",
    description: 'file with this service\'s NATS user and password, JSON {"user","password"}',
  },
  natsUser: {
    flag: "nats-user",
    env: "BALLAST_NATS_USER",
    type: "string",
    description: "NATS user (when no --nats-creds file is given)",
  },
  natsPassword: {
    flag: "nats-password",
    env: "BALLAST_NATS_PASSWORD",
    type: "string",
    description: "NATS password for --nats-user (prefer the variable: flags show in ps)",
  },
  natsCa: {
    flag: "nats-ca",
    env: "BALLAST_NATS_CA",
    type: "string",
    description: "PEM file of the CA of the NATS servers' TLS certificates (tls://)",
  },
  dataDir: {
    flag: "data-dir",
    env: "BALLAST_DATA_DIR",
    type: "string",
    required: true,
    description: "directory for this node's state",
  },
  heartbeatIntervalMs: {
    flag: "heartbeat-interval-ms",
    env: "BALLAST_HEARTBEAT_INTERVAL_MS",
    type: "integer",
    default: heartbeatIntervalMsDefault,
    min: heartbeatIntervalMsMin,
    max: heartbeatIntervalMsMax,
    description: "how often to publish a heartbeat",
  },
  otlpEndpoint: {
    flag: "otlp-endpoint",
    env: "OTEL_EXPORTER_OTLP_ENDPOINT",
    type: "string",
    description: "OTLP/HTTP endpoint for traces, e.g. http://127.0.0.1:4318",
    check: checks.httpUrl,
  },
  metricsPort: {
    flag: "metrics-port",
    env: "BALLAST_METRICS_PORT",
    type: "integer",
    default: 0,
    min: 0,
    max: 65_535,
    description: "TCP port of the Prometheus endpoint (/metrics); 0 = no metrics",
  },
  metricsHost: {
    flag: "metrics-host",
    env: "BALLAST_METRICS_HOST",
    type: "string",
    default: "127.0.0.1",
    description: "address the Prometheus endpoint listens on",
  },
  logLevel: {
    flag: "log-level",
    env: "BALLAST_LOG_LEVEL",
    type: "string",
    default: "info",
    description: "fatal, error, warn, info, debug, trace or silent",
    check: checks.logLevel,
  },
  help: { flag: "help", type: "boolean", description: "print this help and exit" },
} as const satisfies OptionSpecs;

export type CommonConfig = ConfigOf<typeof commonOptions>;

export interface ServiceDefinition<T extends OptionSpecs> {
  kind: ServiceKind;
  /** Options beyond the common ones. */
  options: T;
  /**
   * Sets up the actor: opens files, registers subscriptions on `service`, and registers
   * closers with `service.onClose`. Throwing here stops the process with exit code 1.
   */
  start(service: Service, config: ConfigOf<T> & CommonConfig): Promise<void>;
}

export interface RunOptions {
  argv?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
}

/** Exit codes of a service process. */
export const exitCodes = { ok: 0, failed: 1, badConfig: 2 } as const;

/** Runs a service until it is told to stop; resolves with the process exit code. */
export async function runService<T extends OptionSpecs>(
  definition: ServiceDefinition<T>,
  run: RunOptions = {},
): Promise<number> {
  const specs = { ...commonOptions, ...definition.options };
  const argv = run.argv ?? process.argv.slice(2);
  const env = run.env ?? process.env;
  if (argv.includes("--help")) {
    process.stdout.write(`ballast ${definition.kind}\n\n${describeOptions(specs)}\n`);
    return exitCodes.ok;
  }
  let config: ConfigOf<typeof specs>;
  try {
    config = parseConfig(specs, { argv, env });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`ballast ${definition.kind}: ${error.message}\n`);
      return exitCodes.badConfig;
    }
    throw error;
  }
  const common = config as unknown as CommonConfig;
  const logger = createLogger({
    service: definition.kind,
    nodeId: common.nodeId,
    level: common.logLevel,
  });
  /** A reason the service cannot start: its log's fatal line, and one line on stderr. */
  const sayFatal = (message: string) => {
    logger.fatal(message);
    process.stderr.write(`ballast ${definition.kind}: ${message}\n`);
  };
  installCrashPolicy(definition.kind, logger);
  let claim: DataDirClaim;
  try {
    claim = await claimDataDir(common.dataDir, definition.kind, common.nodeId);
  } catch (error) {
    if (error instanceof DataDirError) {
      sayFatal(error.message);
      return exitCodes.badConfig;
    }
    throw error;
  }
  if (claim.openToOthersMode !== undefined) {
    // Left as it is (an operator may have set it): said, with the command that closes it.
    logger.warn(
      { dataDir: common.dataDir, mode: claim.openToOthersMode.toString(8) },
      `data directory ${openToOthersWarning(common.dataDir, claim.openToOthersMode)}`,
    );
  }
  if (!claim.lock.held) {
    logger.warn(
      { dataDir: common.dataDir, platform: process.platform },
      "data directory not locked (no abstract sockets here): make sure no other process runs on it",
    );
  }
  const stop = { workLeft: false };
  try {
    return await runClaimed(
      definition,
      config,
      common,
      logger,
      sayFatal,
      claim.identity.diskId,
      env,
      stop,
    );
  } finally {
    await releaseDataDir(claim.lock, stop.workLeft, logger);
  }
}

/**
 * Releases the data directory once the service has stopped, with every file closed: the
 * next process may have it. Not when the stop went on past a handler or a closer still
 * running (a write or sync hung on the disk): that work may still touch the files, so
 * the lock stays until the process is gone, which the kernel frees it at (its last
 * thread out, the hung one included).
 */
export async function releaseDataDir(
  lock: DataDirLock,
  workLeft: boolean,
  logger: Logger,
): Promise<void> {
  if (workLeft) {
    logger.warn(
      "work left running at stop: the data directory stays locked until the process ends",
    );
    return;
  }
  await lock.release();
}

/** The rest of runService, while this process holds the data directory. */
async function runClaimed<T extends OptionSpecs>(
  definition: ServiceDefinition<T>,
  config: ConfigOf<typeof commonOptions & T>,
  common: CommonConfig,
  logger: Logger,
  sayFatal: (message: string) => void,
  disk: string,
  env: Readonly<Record<string, string | undefined>>,
  /** Filled in once the service has stopped (see releaseDataDir). */
  stop: { workLeft: boolean },
): Promise<number> {
  let telemetry: Telemetry;
  try {
    telemetry = await startTelemetry({
      serviceName: `ballast-${definition.kind}`,
      instanceId: common.nodeId,
      otlpEndpoint: common.otlpEndpoint,
      metricsPort: common.metricsPort,
      metricsHost: common.metricsHost,
      onMetricsError: (error) => logger.warn({ err: error }, "metrics endpoint error"),
    });
  } catch (error) {
    const message = `cannot serve metrics on ${common.metricsHost}:${common.metricsPort}: ${(error as Error).message}`;
    sayFatal(message);
    return exitCodes.badConfig;
  }
  if (telemetry.metricsUrl !== undefined) {
    logger.info({ metrics: telemetry.metricsUrl }, "serving metrics");
  }
  let access: NatsAccess;
  try {
    access = natsAccessOf(common);
  } catch (error) {
    sayFatal((error as Error).message);
    return exitCodes.badConfig;
  }
  let connection: Awaited<ReturnType<typeof connectNats>>;
  try {
    connection = await connectNats({
      servers: common.nats,
      name: `${definition.kind}-${common.nodeId}`,
      logger,
      // Nothing given: connectNats falls back to the BALLAST_NATS_* variables of this
      // process (`ballast nbd` runs a gateway in the CLI's own process).
      ...(access.credentials === undefined && access.caFile === undefined ? {} : { access }),
    });
  } catch (error) {
    // Refused credentials, or no NATS within the connect timeout: said in words, not
    // thrown out of the process as an uncaught error with a stack.
    sayFatal((error as Error).message);
    await telemetry.shutdown().catch(() => undefined);
    return exitCodes.failed;
  }
  const service = new Service({
    kind: definition.kind,
    nodeId: common.nodeId,
    bus: new Bus(connection, telemetry.tracer, telemetry.meter),
    tracer: telemetry.tracer,
    meter: telemetry.meter,
    logger,
    heartbeatIntervalMs: common.heartbeatIntervalMs,
    disk,
  });

  const stopped = new Promise<string>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
    void watchParent(env.BALLAST_PARENT_PID, logger).then(resolve);
  });

  let exitCode: number = exitCodes.ok;
  try {
    await definition.start(service, config as ConfigOf<T> & CommonConfig);
    service.startHeartbeats();
    logger.info(
      { nats: common.nats, dataDir: common.dataDir, subjects: service.subjects },
      "started",
    );
    const missingFlags = missingNodeFlags(process.execArgv);
    if (missingFlags.length > 0) {
      logger.warn(
        { missing: missingFlags },
        "started without Ballast's node flags: expect more garbage collection (constants.ts, serviceNodeFlags)",
      );
    }
    const end = await Promise.race([
      stopped.then((reason) => ({ reason, failed: false })),
      connection.closed().then(() => ({ reason: "NATS connection closed", failed: false })),
      service.failed.then((reason) => ({ reason, failed: true })),
    ]);
    if (end.failed) {
      process.stderr.write(`ballast ${definition.kind}: ${end.reason}\n`);
      exitCode = exitCodes.failed;
    }
    await service.stop(end.reason);
    stop.workLeft = service.workLeftAtStop;
  } catch (error) {
    logger.fatal({ error: String(error), stack: (error as Error).stack }, "failed");
    // Also in words on stderr, as for a bad configuration: whoever started the process
    // (a terminal, `ballast nbd`) may not read its JSON log.
    process.stderr.write(`ballast ${definition.kind}: ${(error as Error).message ?? error}\n`);
    await service.stop("start failed");
    stop.workLeft = service.workLeftAtStop;
    exitCode = exitCodes.failed;
  }
  await telemetry.shutdown().catch(() => undefined);
  return exitCode;
}

/**
 * Installs the crash policy (module header) on this process: an uncaught exception or
 * an unhandled rejection is logged as fatal, said on stderr, and ends the process with
 * exit code 1 at once. Once per process; a second call changes nothing.
 */
export function installCrashPolicy(kind: string, logger: Logger): void {
  if (crashPolicyInstalled) return;
  crashPolicyInstalled = true;
  const crash = (event: string) => (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    try {
      logger.fatal(
        { event, error: message, stack: error instanceof Error ? error.stack : undefined },
        `${event}: stopping at once (crash policy, runtime run.ts)`,
      );
      process.stderr.write(`ballast ${kind}: ${event}: ${message}\n`);
    } finally {
      process.exit(exitCodes.failed);
    }
  };
  process.on("uncaughtException", crash("uncaught exception"));
  process.on("unhandledRejection", crash("unhandled rejection"));
}

let crashPolicyInstalled = false;

/** A service's NATS access from its options: a credentials file wins over user/password. */
function natsAccessOf(common: CommonConfig): NatsAccess {
  const access: NatsAccess = {};
  if (common.natsCreds !== undefined) access.credentials = readCredentialsFile(common.natsCreds);
  else if (common.natsUser !== undefined) {
    access.credentials = { user: common.natsUser, password: common.natsPassword ?? "" };
  }
  if (common.natsCa !== undefined) access.caFile = readableCaFile(common.natsCa);
  return access;
}

/** The flags of `serviceNodeFlags` that `execArgv` (this process's node flags) lacks. */
export function missingNodeFlags(execArgv: readonly string[]): string[] {
  return serviceNodeFlags.filter((flag) => !execArgv.includes(flag));
}

/** Resolves when the launcher that started this process is gone. */
async function watchParent(parentPid: string | undefined, logger: Logger): Promise<string> {
  const pid = Number(parentPid);
  if (!Number.isSafeInteger(pid) || pid <= 1) return new Promise<string>(() => undefined);
  for (;;) {
    await sleep(parentCheckIntervalMs, undefined, { ref: false });
    try {
      process.kill(pid, 0);
    } catch {
      logger.warn({ parentPid: pid }, "the launcher is gone; stopping");
      return "launcher exited";
    }
  }
}
